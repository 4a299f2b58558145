"""The emulator's GA validators, called directly: session updates, client events, items, responses."""

from __future__ import annotations

from typing import Any

import pytest

from realtime_emulator.validation import (
    VOICES,
    EmulatorError,
    check_client_event,
    default_session,
    validate_client_secret_request,
    validate_item,
    validate_response_params,
    validate_session,
)


def rejects(code: str, func: Any, *args: Any, **kwargs: Any) -> EmulatorError:
    with pytest.raises(EmulatorError) as caught:
        func(*args, **kwargs)
    assert caught.value.code == code, caught.value.message
    return caught.value


def test_the_voice_list_is_protocol_md_s():
    assert set(VOICES) == {"alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"}


def test_an_update_merges_into_the_current_session_without_touching_it():
    current = validate_session({"type": "realtime", "instructions": "A", "audio": {"output": {"voice": "ash"}}})
    updated = validate_session(
        {"type": "realtime", "audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}}, current=current
    )
    assert updated["instructions"] == "A"
    assert updated["audio"]["output"]["voice"] == "ash"
    assert updated["audio"]["input"]["turn_detection"] == {
        "type": "semantic_vad",
        "eagerness": "auto",
        "create_response": True,
        "interrupt_response": True,
    }
    assert current["audio"]["input"]["turn_detection"]["type"] == "server_vad"


def test_a_rejected_update_leaves_no_partial_change():
    current = default_session()
    snapshot = repr(current)
    rejects(
        "unknown_parameter", validate_session, {"type": "realtime", "instructions": "B", "bogus": 1}, current=current
    )
    assert repr(current) == snapshot


def test_the_model_cannot_change_and_the_voice_locks_after_audio():
    current = default_session()
    rejects("invalid_value", validate_session, {"type": "realtime", "model": "gpt-realtime-mini"}, current=current)
    assert validate_session({"type": "realtime", "model": "gpt-realtime"}, current=current)["model"] == "gpt-realtime"
    voice = {"type": "realtime", "audio": {"output": {"voice": "sage"}}}
    assert validate_session(voice, current=current)["audio"]["output"]["voice"] == "sage"
    rejects("cannot_update_voice", validate_session, voice, current=current, voice_locked=True)


@pytest.mark.parametrize("model", ["gpt-realtime", "gpt-realtime-mini", "gpt-realtime-2.1", "gpt-realtime-2.1-mini"])
def test_models_seen_in_protocol_md_are_accepted(model: str):
    assert validate_session({"type": "realtime", "model": model})["model"] == model


def test_beta_fields_are_named_with_their_ga_home():
    error = rejects("beta_api_shape_disabled", validate_session, {"type": "realtime", "voice": "alloy"})
    assert "session.audio.output.voice" in error.message
    assert error.param == "session.voice"


def test_beta_fields_win_over_unknown_field_reports():
    # A beta payload also lacks GA fields; the useful answer is "this is beta", not "voice is unknown".
    rejects("beta_api_shape_disabled", validate_session, {"modalities": ["text"], "voice": "alloy"})


def test_pcm_audio_must_be_24khz_and_g711_takes_no_rate():
    fmt = {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}
    rejects("invalid_value", validate_session, fmt)
    fmt["audio"]["input"]["format"] = {"type": "audio/pcmu", "rate": 8000}
    rejects("unknown_parameter", validate_session, fmt)
    fmt["audio"]["input"]["format"] = {"type": "audio/pcmu"}
    assert validate_session(fmt)["audio"]["input"]["format"] == {"type": "audio/pcmu"}


def test_transcription_needs_a_transcription_model():
    session = {"type": "realtime", "audio": {"input": {"transcription": {"language": "en"}}}}
    rejects("missing_required_parameter", validate_session, session)
    session["audio"]["input"]["transcription"] = {"model": "gpt-realtime"}
    rejects("invalid_value", validate_session, session)
    session["audio"]["input"]["transcription"] = {"model": "whisper-1", "language": "en", "prompt": "names"}
    assert validate_session(session)["audio"]["input"]["transcription"]["model"] == "whisper-1"


def test_speed_is_bounded():
    rejects("decimal_above_max_value", validate_session, {"type": "realtime", "audio": {"output": {"speed": 2}}})
    rejects("decimal_below_min_value", validate_session, {"type": "realtime", "audio": {"output": {"speed": 0.1}}})


def test_tool_names_are_unique_and_tool_choice_is_checked():
    tool = {"type": "function", "name": "lookup"}
    rejects("invalid_value", validate_session, {"type": "realtime", "tools": [tool, tool]})
    rejects("invalid_value", validate_session, {"type": "realtime", "tool_choice": "sometimes"})
    chosen = validate_session(
        {"type": "realtime", "tools": [tool], "tool_choice": {"type": "function", "name": "lookup"}}
    )
    assert chosen["tool_choice"] == {"type": "function", "name": "lookup"}


def test_a_client_secret_request_without_a_session_gets_the_defaults():
    seconds, session = validate_client_secret_request({})
    assert seconds == 600
    assert session == default_session()
    rejects("unknown_parameter", validate_client_secret_request, {"session": {"type": "realtime"}, "model": "x"})


@pytest.mark.parametrize(
    "event,code",
    [
        ([], "invalid_json"),
        ({"event_id": "e"}, "missing_required_parameter"),
        ({"type": 3}, "invalid_type"),
        ({"type": "response.audio.delta"}, "unknown_event"),
        ({"type": "response.create", "modalities": ["text"]}, "unknown_parameter"),
        ({"type": "response.create", "event_id": 7}, "invalid_type"),
    ],
)
def test_client_event_envelopes_are_checked(event: Any, code: str):
    rejects(code, check_client_event, event)


def test_known_client_events_pass():
    for event in (
        {"type": "session.update", "session": {}},
        {"type": "output_audio_buffer.clear", "event_id": "x"},
        {"type": "conversation.item.truncate", "item_id": "i", "content_index": 0, "audio_end_ms": 5},
    ):
        assert check_client_event(event) is event


def test_items_use_ga_content_types():
    user = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    assert validate_item(user)["content"] == [{"type": "input_text", "text": "hi"}]
    beta_assistant = {"type": "message", "role": "assistant", "content": [{"type": "text", "text": "hi"}]}
    rejects("invalid_value", validate_item, beta_assistant)
    ga_assistant = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hi"}]}
    assert validate_item(ga_assistant)["role"] == "assistant"
    rejects("missing_required_parameter", validate_item, {"type": "function_call_output", "output": "x"})
    rejects("invalid_type", validate_item, {"type": "function_call_output", "call_id": "c", "output": {"a": 1}})
    rejects("unknown_parameter", validate_item, {"type": "function_call_output", "call_id": "c", "output": "x", "n": 1})


def test_response_params_refuse_beta_and_unknown_fields():
    rejects("beta_api_shape_disabled", validate_response_params, {"voice": "alloy"})
    rejects("unknown_parameter", validate_response_params, {"stream": True})
    rejects("invalid_value", validate_response_params, {"output_modalities": ["audio", "text"]})
    params = validate_response_params({"conversation": "none", "metadata": {"k": "v"}, "max_output_tokens": 20})
    assert params == {"conversation": "none", "metadata": {"k": "v"}, "max_output_tokens": 20}
    assert validate_response_params(None) == {}
