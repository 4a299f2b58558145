"""The GA session payload: translation of seed-style llm_configs, validation, the API base."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from voice.realtime.errors import RealtimeConfigError
from voice.realtime.session import (
    SessionValidationError,
    build_session,
    normalise_api_base,
    reset_warnings,
    session_from_llm_config,
    validate_session,
)

LOGGER = logging.getLogger("tests.realtime.session")


@pytest.fixture(autouse=True)
def fresh_warnings() -> Iterator[None]:
    reset_warnings()
    yield
    reset_warnings()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger=LOGGER.name)
    return caplog


def test_seed_llm_config_translates_to_a_ga_session() -> None:
    session = session_from_llm_config({"config_list": [{"model": "gpt-realtime", "voice": "marin"}]}, LOGGER)

    assert session == {
        "type": "realtime",
        "model": "gpt-realtime",
        "output_modalities": ["audio"],
        "audio": {"input": {"turn_detection": {"type": "server_vad"}}, "output": {"voice": "marin"}},
    }


def test_voice_defaults_to_alloy() -> None:
    session = session_from_llm_config({"config_list": [{"model": "gpt-realtime"}]}, LOGGER)

    assert session["audio"]["output"]["voice"] == "alloy"


def test_temperature_is_dropped_and_logged_once(logs: pytest.LogCaptureFixture) -> None:
    llm_config = {"config_list": [{"model": "gpt-realtime"}], "temperature": 0.6}

    first = session_from_llm_config(llm_config, LOGGER)
    session_from_llm_config(llm_config, LOGGER)

    assert "temperature" not in str(first)
    assert [r.getMessage() for r in logs.records if "temperature" in r.getMessage()] == [
        "llm_config['temperature'] is a beta-only option the GA Realtime API does not accept; it is ignored."
    ]


def test_a_prebuilt_session_overrides_the_translation() -> None:
    prebuilt = {
        "type": "realtime",
        "model": "gpt-realtime-mini",
        "instructions": "Be brief.",
        "output_modalities": ["text"],
        "audio": {"input": {"turn_detection": None, "noise_reduction": None}, "output": {"voice": "cedar"}},
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
    }

    session = session_from_llm_config(
        {"config_list": [{"model": "gpt-realtime", "voice": "alloy"}], "session": prebuilt}, LOGGER
    )

    assert session == prebuilt
    assert session["audio"]["input"]["turn_detection"] is None  # explicit null (push to talk) survives


def test_a_prebuilt_session_without_model_takes_the_config_list_model() -> None:
    session = session_from_llm_config(
        {"config_list": [{"model": "gpt-realtime-2"}], "session": {"instructions": "Hi"}}, LOGGER
    )

    assert session == {"type": "realtime", "instructions": "Hi", "model": "gpt-realtime-2"}


def test_a_prebuilt_session_with_beta_fields_is_refused() -> None:
    with pytest.raises(SessionValidationError) as excinfo:
        session_from_llm_config(
            {"config_list": [{"model": "gpt-realtime"}], "session": {"voice": "alloy", "temperature": 0.8}}, LOGGER
        )

    assert excinfo.value.problems == [
        "'voice' is a beta field; GA puts it in audio.output.voice",
        "'temperature' is a beta field; GA puts it in nothing: GA has no temperature",
    ]


@pytest.mark.parametrize(
    "llm_config",
    [{}, {"config_list": []}, {"config_list": [{}]}, {"config_list": [{"model": ""}]}, {"config_list": "x"}],
)
def test_a_config_without_a_model_is_a_config_error(llm_config: dict[str, Any]) -> None:
    with pytest.raises(RealtimeConfigError, match="config_list"):
        session_from_llm_config(llm_config, LOGGER)


def test_the_voice_config_payload_shape_is_valid() -> None:
    # The shape VoiceConfig.to_session_payload() produces.
    payload = {
        "type": "realtime",
        "model": "gpt-realtime",
        "instructions": "",
        "output_modalities": ["audio"],
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "turn_detection": {"type": "semantic_vad", "eagerness": "auto"},
                "noise_reduction": {"type": "far_field"},
                "transcription": {"model": "gpt-4o-mini-transcribe"},
            },
            "output": {"voice": "marin", "speed": 1.25},
        },
        "tools": [{"type": "function", "name": "calculator", "description": "d", "parameters": {"type": "object"}}],
        "tool_choice": "auto",
        "max_output_tokens": 4096,
    }

    assert validate_session(payload) == payload


@pytest.mark.parametrize(
    ("session", "problem"),
    [
        ({"type": "realtime", "model": "m", "colour": "blue"}, "colour: unknown field"),
        ({"type": "realtime", "model": "m", "audio": {"output": {"voice": "x", "pitch": 2}}},
         "audio.output.pitch: unknown field"),
        ({"type": "realtime", "model": "m", "audio": {"input": {"turn_detection": {"type": "server_vad", "x": 1}}}},
         "audio.input.turn_detection.x: unknown field"),
        ({"type": "realtime", "model": "m", "output_modalities": ["audio", "text"]}, "output_modalities:"),
        ({"type": "realtime", "model": "m", "max_output_tokens": 5000}, "max_output_tokens:"),
        ({"type": "realtime", "model": "m", "audio": {"output": {"speed": 3}}}, "audio.output.speed:"),
        ({"model": "m"}, "type: Field required"),
        ({"type": "realtime"}, "model: required"),
        ({"type": "realtime", "model": "m", "modalities": ["audio"]}, "'modalities' is a beta field"),
        ({"type": "realtime", "model": "m", "turn_detection": None}, "'turn_detection' is a beta field"),
        ({"type": "realtime", "model": "m", "input_audio_transcription": {}}, "'input_audio_transcription'"),
    ],
)  # fmt: skip
def test_validate_session_refuses_unknown_and_beta_fields(session: dict[str, Any], problem: str) -> None:
    with pytest.raises(SessionValidationError) as excinfo:
        validate_session(session)

    assert any(line.startswith(problem) for line in excinfo.value.problems), excinfo.value.problems
    assert excinfo.value.code == "session_invalid"


def test_a_partial_session_for_session_update_needs_no_model() -> None:
    assert validate_session({"type": "realtime", "instructions": "x"}, partial=True)


def test_validate_session_returns_a_copy() -> None:
    session = {"type": "realtime", "model": "m", "audio": {"output": {"voice": "ash"}}}

    validate_session(session)["audio"]["output"]["voice"] = "changed"

    assert session["audio"]["output"]["voice"] == "ash"


def test_build_session_adds_tools_with_tool_choice_and_transcription() -> None:
    tool = {"type": "function", "name": "t", "description": "", "parameters": {"type": "object"}}

    session = build_session(model="gpt-realtime", transcription_model="gpt-4o-mini-transcribe", tools=[tool])

    assert session["tools"] == [tool] and session["tool_choice"] == "auto"
    assert session["audio"]["input"]["transcription"] == {"model": "gpt-4o-mini-transcribe"}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, "https://api.openai.com/v1"),
        ("https://api.openai.com/v1/", "https://api.openai.com/v1"),
        ("http://127.0.0.1:8765/v1", "http://127.0.0.1:8765/v1"),
    ],
)
def test_api_base_is_normalised(given: str | None, expected: str) -> None:
    assert normalise_api_base(given, LOGGER) == expected


def test_a_legacy_sessions_url_is_cut_to_its_base_and_logged_once_as_deprecated(
    logs: pytest.LogCaptureFixture,
) -> None:
    legacy = "https://api.openai.com/v1/realtime/sessions"

    assert normalise_api_base(legacy, LOGGER) == "https://api.openai.com/v1"
    assert normalise_api_base(legacy, LOGGER) == "https://api.openai.com/v1"

    deprecations = [r for r in logs.records if "deprecated" in r.getMessage()]
    assert len(deprecations) == 1 and deprecations[0].levelno == logging.WARNING


def test_a_base_url_that_is_not_http_is_a_config_error() -> None:
    with pytest.raises(RealtimeConfigError, match="base_url"):
        normalise_api_base("ftp://example.com", LOGGER)
