"""Parsing OpenAI Realtime server events (GA names and beta aliases) into typed events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from voice.realtime import events
from voice.realtime.events import (
    FunctionCall,
    FunctionCallArgumentsDone,
    InvalidFrame,
    RealtimeEvent,
    ResponseDone,
    ResponseOutputItemDone,
    parse_event,
    parse_frame,
    validate_client_event,
)

FIXTURE = Path(__file__).parent / "fixtures" / "ga_events.json"
CASES: list[dict[str, Any]] = json.loads(FIXTURE.read_text())["cases"]
REQUIRED_CLASSES = {
    "SessionCreated", "SessionUpdated", "AudioDelta", "SpeechStarted", "SpeechStopped", "InputAudioBufferDelta",
    "FunctionCall", "InputTranscriptionDelta", "InputTranscriptionCompleted", "OutputTranscriptDelta",
    "OutputTranscriptDone", "ResponseCreated", "ResponseDone", "ConversationItemAdded", "ConversationItemDone",
    "ConversationItemTruncated", "OutputAudioBufferStarted", "OutputAudioBufferStopped",
    "OutputAudioBufferCleared", "RateLimitsUpdated", "ErrorEvent",
}  # fmt: skip


def _case_id(case: dict[str, Any]) -> str:
    return f"{case['class']}<-{case['event']['type']}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_each_fixture_event_parses_to_its_class_and_reads_its_fields(case: dict[str, Any]) -> None:
    event = parse_event(case["event"])

    assert type(event).__name__ == case["class"]
    assert event.raw_message == case["event"]
    for field, expected in case["expect"].items():
        assert getattr(event, field) == expected, field


def test_the_fixture_has_a_case_for_every_event_class() -> None:
    covered = {case["class"] for case in CASES}
    registered = {cls.__name__ for cls in events.EVENT_CLASSES.values()} | {"FunctionCall", "RealtimeEvent"}

    assert covered >= REQUIRED_CLASSES
    assert covered >= registered


def test_every_beta_alias_has_a_fixture_case_parsing_to_the_ga_class() -> None:
    aliased = {case["event"]["type"] for case in CASES if "beta_alias_of" in case}

    assert set(events.BETA_ALIASES) == aliased
    for case in CASES:
        if "beta_alias_of" in case:
            ga = parse_event({**case["event"], "type": case["beta_alias_of"]})
            assert type(parse_event(case["event"])) is type(ga)


def test_beta_alias_keeps_the_received_type_in_raw_message() -> None:
    event = parse_event({"type": "response.audio.delta", "delta": "AA=="})

    assert event.type == "response.output_audio.delta"
    assert event.raw_message["type"] == "response.audio.delta"


def test_response_done_carries_typed_usage() -> None:
    case = next(c for c in CASES if c["class"] == "ResponseDone")
    event = parse_event(case["event"])

    assert isinstance(event, ResponseDone)
    assert event.usage is not None
    usage = case["usage"]
    assert event.usage.total_tokens == usage["total_tokens"]
    assert event.usage.input_tokens == usage["input_tokens"]
    assert event.usage.output_tokens == usage["output_tokens"]
    assert event.usage.input_token_details.audio_tokens == usage["input_token_details"]["audio_tokens"]
    assert event.usage.input_token_details.cached_tokens == usage["input_token_details"]["cached_tokens"]
    assert event.usage.input_token_details.cached_tokens_details.text_tokens == 576
    assert event.usage.output_token_details.audio_tokens == usage["output_token_details"]["audio_tokens"]
    assert event.output is not None and event.output[0].text == "It is ten past three in Paris."


def test_response_done_without_usage_or_with_null_counts_still_parses() -> None:
    cancelled = parse_event({"type": "response.done", "response": {"id": "resp_1", "status": "cancelled"}})
    nulls = parse_event(
        {"type": "response.done", "response": {"id": "resp_2", "usage": {"input_tokens": None, "total_tokens": 3}}}
    )

    assert isinstance(cancelled, ResponseDone) and cancelled.usage is None and cancelled.status == "cancelled"
    assert isinstance(nulls, ResponseDone) and nulls.usage is not None
    assert nulls.usage.input_tokens == 0 and nulls.usage.total_tokens == 3


def test_one_function_call_produces_one_function_call_event() -> None:
    # OpenAI announces a finished call twice; only output_item.done may run the tool.
    arguments_done = next(c["event"] for c in CASES if c["class"] == "FunctionCallArgumentsDone")
    item_done = next(c["event"] for c in CASES if c["class"] == "FunctionCall")

    parsed = [parse_event(arguments_done), parse_event(item_done)]

    assert isinstance(parsed[0], FunctionCallArgumentsDone)
    assert [type(e) for e in parsed].count(FunctionCall) == 1


def test_an_incomplete_function_call_item_does_not_become_a_function_call() -> None:
    message = {
        "type": "response.output_item.done",
        "response_id": "resp_1",
        "item": {"type": "function_call", "status": "incomplete", "name": "calculator", "call_id": "c1",
                 "arguments": "{\"expr"},
    }  # fmt: skip

    assert type(parse_event(message)) is ResponseOutputItemDone


def test_function_call_with_empty_arguments_gets_an_empty_dict() -> None:
    message = {"type": "response.output_item.done",
               "item": {"type": "function_call", "name": "f", "call_id": "c1", "arguments": ""}}  # fmt: skip

    event = parse_event(message)

    assert isinstance(event, FunctionCall) and event.arguments == {}


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]", "42"])
def test_function_call_arguments_that_are_not_a_json_object_become_an_error_event(arguments: str) -> None:
    message = {
        "type": "response.output_item.done",
        "item": {"type": "function_call", "name": "calculator", "call_id": "call_9", "arguments": arguments},
    }

    event = parse_event(message)

    assert isinstance(event, InvalidFrame)
    assert event.code == "invalid_function_arguments"
    assert (event.call_id, event.name) == ("call_9", "calculator")
    assert event.raw_message == message


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json at all", "invalid_json"),
        ("[1, 2, 3]", "not_an_object"),
        ('"a string"', "not_an_object"),
        ("{}", "missing_type"),
        ('{"type": 7}', "missing_type"),
        ('{"type": "response.output_audio.delta", "delta": 12}', "invalid_event"),
    ],
)
def test_bad_frames_become_invalid_frame_events(frame: str, code: str) -> None:
    event = parse_frame(frame)

    assert isinstance(event, InvalidFrame)
    assert event.code == code
    assert event.type == "ag2.invalid_frame"
    assert event.message


def test_a_frame_that_is_not_json_still_leaves_something_to_record() -> None:
    event = parse_frame("garbage")

    assert event.raw_message == {
        "type": "ag2.invalid_frame",
        "code": "invalid_json",
        "message": "Frame is not valid JSON",
        "excerpt": "garbage",
    }


def test_a_long_bad_frame_is_cut_in_the_error_event() -> None:
    event = parse_frame("x" * 10_000)

    assert isinstance(event, InvalidFrame)
    assert len(event.excerpt) <= events.FRAME_EXCERPT_CHARS + 1


def test_unknown_types_parse_to_a_plain_realtime_event_keeping_the_message() -> None:
    message = {"type": "something.new", "event_id": "e1", "payload": {"x": 1}}

    event = parse_event(message)

    assert type(event) is RealtimeEvent
    assert event.type == "something.new" and event.event_id == "e1" and event.raw_message == message


def test_ag2_frames_from_the_browser_parse_to_plain_events() -> None:
    event = parse_frame('{"type": "ag2.ready", "call_id": "rtc_123"}')

    assert type(event) is RealtimeEvent and event.raw_message["call_id"] == "rtc_123"


def test_input_audio_buffer_delta_can_be_built_like_the_seed_does() -> None:
    event = events.InputAudioBufferDelta(delta="AAAA", item_id=None, raw_message={})

    assert event.type == "input_audio_buffer.delta" and event.delta == "AAAA"


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "response.cancel"},
        {"type": "response.create"},
        {"type": "output_audio_buffer.clear"},
        {"type": "conversation.item.truncate", "item_id": "i", "content_index": 0, "audio_end_ms": 10},
        {"type": "conversation.item.create",
         "item": {"type": "function_call_output", "call_id": "c", "output": "{}"}},
        {"type": "conversation.item.create",
         "item": {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hi"}]}},
        {"type": "session.update", "session": {"type": "realtime", "instructions": "Be brief."}},
        {"type": "ag2.error", "code": "x", "message": "y", "retryable": False},
    ],
)  # fmt: skip
def test_client_event_schemas_accept_valid_frames(frame: dict[str, Any]) -> None:
    validate_client_event(frame)


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "response.cancl"},
        {"type": "conversation.item.truncate", "item_id": "i", "content_index": -1, "audio_end_ms": 10},
        {"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                      "content": [{"type": "text", "text": "beta"}]}},
        {"type": "session.update", "session": {"type": "realtime", "voice": "alloy"}},
        {"type": "session.update", "session": {"modalities": ["audio"]}},
        {"type": "ag2.error", "code": "x", "message": "y"},
        {"type": "response.create", "extra": 1},
    ],
)  # fmt: skip
def test_client_event_schemas_refuse_malformed_or_beta_frames(frame: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        validate_client_event(frame)
