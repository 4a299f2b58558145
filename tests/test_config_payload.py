"""VoiceConfig.to_session_payload() is a valid GA session object, and bad configs are form errors."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from voice.admin import VoiceConfigForm
from voice.models import VoiceConfig

pytestmark = pytest.mark.django_db

# Fields that only the shut-down beta interface had at the top level of a session.
BETA_FIELDS = {"voice", "modalities", "turn_detection", "temperature", "input_audio_format", "output_audio_format",
               "input_audio_transcription", "input_audio_noise_reduction", "max_response_output_tokens"}
GA_TOP_LEVEL = {"type", "model", "instructions", "output_modalities", "audio", "tools", "tool_choice",
                "max_output_tokens"}


def _form_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Support line", "slug": "support", "description": "", "is_active": "on", "model": "gpt-realtime-2.1",
        "voice": "cedar", "speed": "1.0", "output_modality": "audio", "instructions": "Be brief.",
        "max_output_tokens": "", "turn_detection": "server_vad", "vad_threshold": "0.5",
        "vad_prefix_padding_ms": "300", "vad_silence_duration_ms": "500", "vad_eagerness": "auto",
        "input_transcription_model": "gpt-transcribe", "noise_reduction": "", "tools": [],
        "secret_lifetime_seconds": "600", "max_session_seconds": "900", "truncation": "auto",
        "mcp_require_approval": "never",
        "call_mode": "server",
    }
    data.update(overrides)
    return data


def _form_errors(**overrides: Any) -> dict[str, list[str]]:
    form = VoiceConfigForm(data=_form_data(**overrides))
    assert not form.is_valid()
    return form.errors


def test_the_default_payload_is_a_ga_session_field_by_field() -> None:
    config = VoiceConfig.objects.get(slug="default")
    payload = config.to_session_payload()
    assert set(payload) == GA_TOP_LEVEL
    assert payload["type"] == "realtime"
    assert payload["model"] == "gpt-realtime-2.1"
    assert payload["instructions"] == config.instructions
    assert payload["output_modalities"] == ["audio"]
    assert payload["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert payload["audio"]["input"]["transcription"] == {"model": "gpt-transcribe"}
    assert payload["audio"]["input"]["turn_detection"] == {
        "type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500,
    }
    assert payload["audio"]["input"]["noise_reduction"] is None
    assert payload["audio"]["output"] == {"voice": "marin", "speed": 1.0}
    assert payload["tool_choice"] == "auto"
    assert payload["max_output_tokens"] == "inf"
    assert [t["name"] for t in payload["tools"]] == ["current_time", "calculator"]
    for tool in payload["tools"]:
        assert tool["type"] == "function"
        assert tool["parameters"]["type"] == "object"
        assert tool["description"]


def test_no_beta_field_ever_appears_in_any_payload() -> None:
    variants = [
        {"turn_detection": "semantic_vad", "vad_eagerness": "high"},
        {"turn_detection": "none"},
        {"output_modality": "text", "input_transcription_model": ""},
        {"noise_reduction": "far_field", "max_output_tokens": 512, "speed": 1.25},
    ]
    for overrides in variants:
        config = VoiceConfig(name="v", slug="v", **overrides)
        payload = config.to_session_payload()
        assert not BETA_FIELDS & set(payload), payload
        assert set(payload) <= GA_TOP_LEVEL
        assert set(payload["audio"]) == {"input", "output"}


def test_semantic_vad_none_and_text_only_render_as_ga_shapes() -> None:
    semantic = VoiceConfig(name="s", turn_detection="semantic_vad", vad_eagerness="low").to_session_payload()
    assert semantic["audio"]["input"]["turn_detection"] == {"type": "semantic_vad", "eagerness": "low"}
    manual = VoiceConfig(name="m", turn_detection="none").to_session_payload()
    assert manual["audio"]["input"]["turn_detection"] is None
    text = VoiceConfig(name="t", output_modality="text", input_transcription_model="").to_session_payload()
    assert text["output_modalities"] == ["text"]
    assert "transcription" not in text["audio"]["input"]
    capped = VoiceConfig(name="c", max_output_tokens=300, noise_reduction="near_field").to_session_payload()
    assert capped["max_output_tokens"] == 300
    assert capped["audio"]["input"]["noise_reduction"] == {"type": "near_field"}


def test_a_valid_form_saves_and_records_a_slug() -> None:
    form = VoiceConfigForm(data=_form_data(tools=["calculator"]))
    assert form.is_valid(), form.errors
    config = form.save()
    assert config.slug == "support"
    assert config.to_session_payload()["tools"][0]["name"] == "calculator"


def test_an_unknown_voice_is_a_form_error() -> None:
    assert "voice" in _form_errors(voice="robot")


def test_an_unknown_tool_is_a_form_error() -> None:
    assert "tools" in _form_errors(tools=["rm_rf"])


def test_an_unknown_tool_is_refused_by_model_validation_too() -> None:
    config = VoiceConfig(name="x", slug="x", tools=["calculator", "launch_rockets"])
    with pytest.raises(Exception) as excinfo:
        config.full_clean()
    assert "launch_rockets" in str(excinfo.value)


def test_both_output_modalities_are_refused() -> None:
    assert "output_modality" in _form_errors(output_modality="audio,text")
    config = VoiceConfig(name="y", slug="y", output_modality="both")
    with pytest.raises(Exception, match="output"):
        config.full_clean()


def test_a_second_default_is_a_form_error() -> None:
    errors = _form_errors(is_default="on")
    assert "is_default" in errors
    assert "already the default" in errors["is_default"][0]


@pytest.mark.parametrize("seconds", ["9", "7201", "0"])
def test_a_secret_lifetime_outside_10_to_7200_seconds_is_refused(seconds: str) -> None:
    assert "secret_lifetime_seconds" in _form_errors(secret_lifetime_seconds=seconds)


@pytest.mark.parametrize(
    ("field", "value"),
    [("vad_threshold", "1.5"), ("vad_threshold", "-0.1"), ("vad_prefix_padding_ms", "5000"),
     ("vad_silence_duration_ms", "50"), ("vad_silence_duration_ms", "9000"), ("vad_eagerness", "frantic"),
     ("speed", "3"), ("max_output_tokens", "5000")],
)
def test_turn_detection_and_output_parameters_out_of_range_are_refused(field: str, value: str) -> None:
    assert field in _form_errors(**{field: value})


def test_the_admin_shows_validation_errors_rather_than_a_server_error(superuser: User) -> None:
    client = Client()
    client.force_login(superuser)
    response = client.post("/admin/voice/voiceconfig/add/", _form_data(voice="robot", secret_lifetime_seconds="5"))
    assert response.status_code == 200
    assert b"errornote" in response.content
    assert not VoiceConfig.objects.filter(slug="support").exists()


def test_config_changes_keep_a_history_of_who_when_and_what(superuser: User) -> None:
    client = Client()
    client.force_login(superuser)
    config = VoiceConfig.objects.get(slug="default")
    data = _form_data(name=config.name, slug=config.slug, is_default="on", voice="sage",
                      tools=["current_time"])
    response = client.post(f"/admin/voice/voiceconfig/{config.pk}/change/", data)
    assert response.status_code == 302, response.content[:2000]
    response = client.post(f"/admin/voice/voiceconfig/{config.pk}/change/", {**data, "voice": "cedar"})
    assert response.status_code == 302, response.content[:2000]
    config.refresh_from_db()
    assert config.voice == "cedar"
    assert config.updated_by == superuser
    latest = config.history.latest()
    assert latest.history_user == superuser
    assert latest.history_type == "~"
    delta = latest.diff_against(latest.prev_record)
    assert [(c.field, c.old, c.new) for c in delta.changes] == [("voice", "sage", "cedar")]
    history_page = client.get(f"/admin/voice/voiceconfig/{config.pk}/history/")
    assert history_page.status_code == 200
