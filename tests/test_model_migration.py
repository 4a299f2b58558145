"""Migration 0003 moves the seeded default config off retiring models only where operators left the old
defaults untouched, says so in the config's history, and leaves operators' own choices alone."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from voice.models import ModelPrice, VoiceConfig

MIGRATION = "0003_models_prices_session_options"
migration = importlib.import_module(f"voice.migrations.{MIGRATION}")


def _back_to_seeded_defaults() -> VoiceConfig:
    """The default config as 0002 left it: old models, no history (update() records none)."""
    VoiceConfig.objects.filter(slug="default").update(model="gpt-realtime",
                                                      input_transcription_model="gpt-4o-mini-transcribe")
    VoiceConfig.history.all().delete()
    return VoiceConfig.objects.get(slug="default")


@pytest.mark.django_db
def test_untouched_old_defaults_move_to_the_replacements_with_a_history_entry() -> None:
    config = _back_to_seeded_defaults()
    migration.move_off_retiring_models(apps, None)
    config.refresh_from_db()
    assert (config.model, config.input_transcription_model) == ("gpt-realtime-2.1", "gpt-transcribe")
    latest = config.history.latest()
    assert latest.history_change_reason == "Moved off a model OpenAI is retiring (migration)"
    assert (latest.model, latest.input_transcription_model) == ("gpt-realtime-2.1", "gpt-transcribe")
    assert latest.history_user is None


@pytest.mark.django_db
def test_a_model_an_operator_chose_stays_and_only_the_untouched_field_moves(superuser: User) -> None:
    config = _back_to_seeded_defaults()
    # An operator tried gpt-realtime-1.5, then went back to gpt-realtime on purpose.
    for model in ("gpt-realtime-1.5", "gpt-realtime"):
        config.model = model
        config._change_reason = "operator"
        config.save()
    migration.move_off_retiring_models(apps, None)
    config.refresh_from_db()
    assert config.model == "gpt-realtime"  # their choice, though it retires: the admin and the check warn
    assert config.input_transcription_model == "gpt-transcribe"  # never touched: moved


@pytest.mark.django_db
def test_a_config_already_on_other_models_or_another_config_is_left_alone() -> None:
    VoiceConfig.objects.filter(slug="default").update(model="gpt-realtime-2", input_transcription_model="whisper-1")
    other = VoiceConfig.objects.create(name="Old line", slug="old-line", model="gpt-realtime",
                                       input_transcription_model="gpt-4o-mini-transcribe")
    migration.move_off_retiring_models(apps, None)
    default = VoiceConfig.objects.get(slug="default")
    assert (default.model, default.input_transcription_model) == ("gpt-realtime-2", "whisper-1")
    other.refresh_from_db()
    assert other.model == "gpt-realtime"  # an operator's own config: warned about, not changed


@pytest.mark.django_db
def test_prices_are_created_where_missing_and_edited_prices_are_kept() -> None:
    ModelPrice.objects.filter(model="gpt-realtime-2").delete()
    ModelPrice.objects.filter(model="gpt-realtime-2.1").update(text_output="30")
    migration.ensure_prices(apps, None)
    assert ModelPrice.objects.get(model="gpt-realtime-2").text_output == 24
    assert ModelPrice.objects.get(model="gpt-realtime-2.1").text_output == 30
    assert not ModelPrice.objects.filter(model="gpt-realtime-mini").exists()


@pytest.mark.django_db(transaction=True)
def test_the_real_migration_moves_a_site_seeded_by_0002() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([("voice", "0002_seed_defaults")])
    old_apps = executor.loader.project_state([("voice", "0002_seed_defaults")]).apps
    # A site as 0002 seeded it (going back does not undo 0003's move, so put the old defaults back).
    old_apps.get_model("voice", "VoiceConfig").objects.filter(slug="default").update(
        model="gpt-realtime", input_transcription_model="gpt-4o-mini-transcribe")
    old_apps.get_model("voice", "HistoricalVoiceConfig").objects.all().delete()
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([("voice", MIGRATION)])
    try:
        config = VoiceConfig.objects.using(connection.alias).values("model", "input_transcription_model").get(
            slug="default")
        assert (config["model"], config["input_transcription_model"]) == ("gpt-realtime-2.1", "gpt-transcribe")
    finally:
        # Leave the schema as the other tests expect it: every later migration applied again.
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
