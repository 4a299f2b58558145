"""Operators: every config's history holds its original version (seen, diffed against, restorable), and a
form with errors never previews the rejected values as the payload."""

from __future__ import annotations

import importlib
from types import SimpleNamespace
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client

from tests.test_config_payload import _form_data
from voice.models import VoiceConfig

pytestmark = pytest.mark.django_db

MIGRATION = "0007_initial_config_history"
migration = importlib.import_module(f"voice.migrations.{MIGRATION}")


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _run_migration() -> None:
    migration.record_original_versions(apps, SimpleNamespace(connection=connection))


def _default_form_data(config: VoiceConfig, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": config.name, "slug": config.slug, "is_default": "on", "model": config.model, "voice": config.voice,
        "instructions": config.instructions, "tools": list(config.tools),
        "input_transcription_model": config.input_transcription_model, "description": config.description,
        "speed": str(config.speed), "vad_threshold": str(config.vad_threshold),
        "vad_prefix_padding_ms": str(config.vad_prefix_padding_ms),
        "vad_silence_duration_ms": str(config.vad_silence_duration_ms),
        "secret_lifetime_seconds": str(config.secret_lifetime_seconds),
        "max_session_seconds": str(config.max_session_seconds),
    }
    return _form_data(**{**values, **overrides})


def test_the_seeded_default_config_starts_its_history_with_the_version_it_was_seeded_with() -> None:
    config = VoiceConfig.objects.get(slug="default")
    history = list(config.history.order_by("history_date", "history_id"))
    first = history[0]
    assert first.history_type == "+"
    assert first.history_change_reason == migration.SEEDED_REASON
    assert first.history_date == config.created_at
    # What 0002 seeded, before 0003 moved it off retiring models (the next record says so).
    assert (first.model, first.input_transcription_model) == ("gpt-realtime", "gpt-4o-mini-transcribe")
    assert (first.name, first.instructions, first.tools) == (config.name, config.instructions, config.tools)
    assert history[1].history_change_reason == "Moved off a model OpenAI is retiring (migration)"
    assert history[1].diff_against(first).changed_fields == ["input_transcription_model", "model"]


def test_a_config_with_no_history_gets_its_current_values_as_its_earliest_known_version(owner: User) -> None:
    config = VoiceConfig.objects.create(name="Support", slug="support", model="gpt-realtime-2.1", voice="cedar")
    VoiceConfig.history.filter(id=config.pk).delete()  # as a config created by a migration would be
    _run_migration()
    records = list(config.history.all())
    assert len(records) == 1
    assert (records[0].history_type, records[0].history_change_reason) == ("+", migration.EARLIEST_REASON)
    assert (records[0].voice, records[0].history_date) == ("cedar", config.created_at)
    _run_migration()  # running again adds nothing
    assert config.history.count() == 1


def test_a_config_with_only_later_records_gets_its_earliest_one_as_original() -> None:
    config = VoiceConfig.objects.create(name="Support", slug="support", voice="cedar")
    config.voice = "sage"
    config.save()
    VoiceConfig.history.filter(id=config.pk, history_type="+").delete()
    _run_migration()
    first = config.history.earliest()
    assert (first.history_type, first.voice) == ("+", "sage")
    assert config.history.count() == 2


def test_new_configs_get_their_created_record_from_the_orm_and_the_admin(superuser: User) -> None:
    config = VoiceConfig.objects.create(name="Orm", slug="orm")
    assert [r.history_type for r in config.history.all()] == ["+"]
    response = _client(superuser).post("/admin/voice/voiceconfig/add/", _form_data())
    assert response.status_code == 302, response.content[:2000]
    added = VoiceConfig.objects.get(slug="support")
    assert [(r.history_type, r.history_user) for r in added.history.all()] == [("+", superuser)]


def test_the_first_edit_of_the_seeded_config_shows_a_real_change_and_the_original_can_be_restored(
    operator: User,
) -> None:
    client = _client(operator)
    config = VoiceConfig.objects.get(slug="default")
    original_instructions = config.instructions
    response = client.post(f"/admin/voice/voiceconfig/{config.pk}/change/",
                           _default_form_data(config, instructions="Answer like a pirate."))
    assert response.status_code == 302, response.content[:2000]

    page = client.get(f"/admin/voice/voiceconfig/{config.pk}/history/")
    assert page.status_code == 200
    records = list(page.context["page_obj"].object_list)
    assert [r.history_type for r in records] == ["~", "~", "+"]
    edit = records[0]
    changes = {c.field: (c.old, c.new) for c in edit.diff_against(edit.prev_record).changes}
    assert changes["instructions"] == (original_instructions, "Answer like a pirate.")
    assert set(changes) == {"instructions", "updated_by"}  # and who made it
    body = page.content.decode()
    assert "Answer like a pirate." in body and "Original version, as seeded" in body

    # The original is there to see and to restore (simple_history's revert).
    original = records[-1]
    form_url = f"/admin/voice/voiceconfig/{config.pk}/history/{original.history_id}/"
    seen = client.get(form_url)
    assert seen.status_code == 200 and original_instructions in seen.content.decode()
    reverted = client.post(form_url, _default_form_data(config, instructions=original_instructions,
                                                       model="gpt-realtime",
                                                       input_transcription_model="gpt-4o-mini-transcribe"))
    assert reverted.status_code == 302, reverted.content[:2000]
    config.refresh_from_db()
    assert (config.instructions, config.model) == (original_instructions, "gpt-realtime")
    assert config.history.latest().history_user == operator


def test_a_form_with_errors_previews_the_saved_payload_with_a_note_never_the_rejected_values(
    superuser: User,
) -> None:
    client = _client(superuser)
    config = VoiceConfig.objects.get(slug="default")
    response = client.post(f"/admin/voice/voiceconfig/{config.pk}/change/",
                           _default_form_data(config, instructions="REJECTED WORDS", speed="3"))
    assert response.status_code == 200 and b"errornote" in response.content
    body = response.content.decode()
    preview = body[body.index("payload-note"):]
    assert "nothing was saved: this is the payload of the saved config" in preview
    assert "REJECTED WORDS" not in preview
    assert config.instructions.replace("'", "&#x27;") in preview
    config.refresh_from_db()
    assert config.instructions != "REJECTED WORDS"

    # An add form with errors has nothing saved to preview, and says so.
    added = client.post("/admin/voice/voiceconfig/add/", _form_data(instructions="REJECTED WORDS", speed="3"))
    assert added.status_code == 200
    assert "No payload yet: the form has errors" in added.content.decode()

    # Without errors the preview is the config's own payload.
    page = client.get(f"/admin/voice/voiceconfig/{config.pk}/change/").content.decode()
    assert "payload-note" not in page and '"instructions"' in page


@pytest.mark.django_db(transaction=True)
def test_the_real_migration_records_the_seeded_default_once() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([("voice", "0006_scale_ordering_indexes")])
    old_apps = executor.loader.project_state([("voice", "0006_scale_ordering_indexes")]).apps
    history = old_apps.get_model("voice", "HistoricalVoiceConfig").objects
    # The current model has columns of later migrations: read the config as 0006 knew it.
    default_pk = old_apps.get_model("voice", "VoiceConfig").objects.get(slug="default").pk
    assert not history.filter(history_type="+", id=default_pk).exists()
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    config = VoiceConfig.objects.get(slug="default")
    assert [r.history_type for r in config.history.order_by("history_date", "history_id")] == ["+", "~"]
