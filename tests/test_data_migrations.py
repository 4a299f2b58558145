"""The data migration seeds a usable site: a default config, published prices, the operators group."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Group

from voice.models import ModelPrice, VoiceConfig

pytestmark = pytest.mark.django_db


def test_one_default_config_exists_as_the_issue_describes() -> None:
    config = VoiceConfig.objects.get(is_default=True)
    assert config.is_active
    assert config.model == "gpt-realtime-2.1"  # moved off gpt-realtime by 0003 (shuts down 2027-01-20)
    assert config.voice == "marin"
    assert config.turn_detection == "server_vad"
    assert config.input_transcription_model == "gpt-transcribe"
    config.full_clean()  # the seeded config passes the same validation operators face


@pytest.mark.parametrize(
    ("model", "prices"),
    [
        ("gpt-realtime", ("4", "0.40", "16", "32", "0.40", "64")),
        ("gpt-realtime-1.5", ("4", "0.40", "16", "32", "0.40", "64")),
        ("gpt-realtime-2", ("4", "0.40", "24", "32", "0.40", "64")),
        ("gpt-realtime-2.1", ("4", "0.40", "24", "32", "0.40", "64")),
        ("gpt-realtime-2.1-mini", ("0.60", "0.06", "2.40", "10", "0.30", "20")),
    ],
)
def test_published_prices_are_seeded(model: str, prices: tuple[str, ...]) -> None:
    row = ModelPrice.objects.get(model=model)
    assert (row.text_input, row.text_cached_input, row.text_output, row.audio_input, row.audio_cached_input,
            row.audio_output) == tuple(Decimal(p) for p in prices)


def test_the_operators_group_exists() -> None:
    assert Group.objects.filter(name="Voice operators").exists()
