"""Frames from the browser: what is accepted, and the stable code for what is not."""

from __future__ import annotations

from typing import Any

import pytest

from voice import schemas
from voice.schemas import (
    MAX_OFFER_SDP_CHARS,
    Ag2ClientError,
    Ag2Hangup,
    Ag2Offer,
    Ag2Ready,
    FrameError,
    OutgoingFrameError,
    check_outgoing,
    dashboard_request,
    parse_browser_frame,
    parse_server_mode_frame,
)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        ({"type": "ag2.ready", "call_id": "rtc_Ab-1_2"}, Ag2Ready),
        ({"type": "ag2.ready", "call_id": None}, Ag2Ready),
        ({"type": "ag2.ready"}, Ag2Ready),
        ({"type": "ag2.client_error", "stage": "sdp", "message": "401"}, Ag2ClientError),
        ({"type": "ag2.hangup"}, Ag2Hangup),
    ],
)
def test_valid_ag2_frames_parse_to_their_models(frame: dict[str, Any], expected: type) -> None:
    assert isinstance(parse_browser_frame(frame), expected)


def test_relayed_openai_events_pass_through_unchanged_even_unknown_ones() -> None:
    event = {"type": "response.some_future_event.delta", "event_id": "e1", "anything": [1, 2]}
    assert parse_browser_frame(event) is event


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ([], "invalid_frame"),
        ("text", "invalid_frame"),
        ({}, "invalid_frame"),
        ({"type": ""}, "invalid_frame"),
        ({"type": None}, "invalid_frame"),
        ({"type": "Response.Done"}, "invalid_frame"),
        ({"type": "a" * 101}, "invalid_frame"),
        ({"type": "<script>"}, "invalid_frame"),
        ({"type": "ag2.init"}, "unknown_frame"),
        ({"type": "ag2.ready", "call_id": "rtc_../../etc"}, "invalid_frame"),
        ({"type": "ag2.ready", "call_id": 12}, "invalid_frame"),
        ({"type": "ag2.client_error", "stage": "sdp", "message": "x" * 2001}, "invalid_frame"),
        ({"type": "ag2.client_error", "message": "no stage"}, "invalid_frame"),
    ],
)
def test_invalid_frames_raise_a_frame_error_with_a_stable_code(frame: Any, code: str) -> None:
    with pytest.raises(FrameError) as excinfo:
        parse_browser_frame(frame)
    assert excinfo.value.code == code
    assert excinfo.value.message


def test_dashboard_requests_are_typed() -> None:
    request = dashboard_request.validate_python({"type": "subscribe",
                                                 "session_id": "2b0c6a52-5d5c-4b59-9e3f-111111111111"})
    assert str(request.session_id).startswith("2b0c6a52")
    for bad in ({"type": "subscribe"}, {"type": "subscribe", "session_id": "1"}, {"type": "drop_tables"}):
        with pytest.raises(ValueError):
            dashboard_request.validate_python(bad)


# --- server mode: the browser may send four frames only -------------------------------------------------


@pytest.mark.parametrize("frame", [
    {"type": "ag2.offer", "sdp": "v=0\r\n"},
    {"type": "ag2.ready"},
    {"type": "ag2.client_error", "stage": "ice", "message": "failed"},
    {"type": "ag2.hangup"},
])
def test_the_four_signalling_frames_are_accepted_in_server_mode(frame: dict) -> None:
    assert parse_server_mode_frame(frame).type == frame["type"]


@pytest.mark.parametrize(("frame", "code"), [
    ({"type": "response.done", "response": {}}, "unexpected_frame"),
    ({"type": "conversation.item.create", "item": {}}, "unexpected_frame"),
    ({"type": "ag2.launch"}, "unexpected_frame"),
    ([1, 2], "unexpected_frame"),
    ({"no": "type"}, "unexpected_frame"),
    ({"type": "ag2.offer"}, "invalid_frame"),
    ({"type": "ag2.offer", "sdp": ""}, "invalid_frame"),
    ({"type": "ag2.offer", "sdp": "v" * (MAX_OFFER_SDP_CHARS + 1)}, "invalid_frame"),
    ({"type": "ag2.client_error", "stage": "kitchen"}, "invalid_frame"),
])
def test_anything_else_is_refused_in_server_mode(frame: object, code: str) -> None:
    with pytest.raises(FrameError) as refused:
        parse_server_mode_frame(frame)
    assert refused.value.code == code


def test_an_offer_carries_its_sdp() -> None:
    offer = parse_server_mode_frame({"type": "ag2.offer", "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"})
    assert isinstance(offer, Ag2Offer) and offer.sdp.startswith("v=0")


# --- outgoing frames: checked where they are sent when VOICE_VALIDATE_OUTGOING is on (the tests') -----

GOOD_OUTGOING: list[tuple[str, dict[str, Any]]] = [
    ("voice", {"type": "ag2.error", "code": "rate_limited", "message": "Slow down.", "retryable": True}),
    ("voice", {"type": "ag2.close", "reason": "hangup"}),
    ("voice", {"type": "ag2.answer", "sdp": "v=0\r\n"}),
    ("voice", {"type": "ag2.init", "protocol": 2, "mode": "server", "session_id": "s", "resumed": False,
               "session": {"model": "gpt-realtime"}}),
    ("voice", {"type": "ag2.init", "protocol": 2, "mode": "server", "session_id": "s", "resumed": True,
               "session": {}, "api": "gpt-live",
               "live": {"transcript_gap_ms": 2000, "typing": False, "recorded_by": "server"}}),
    ("voice", {"type": "response.create"}),  # an OpenAI client event: typed in voice.realtime.events
    ("dashboard", {"type": "snapshot", "sessions": []}),
    ("dashboard", {"type": "session.snapshot", "session_id": "s", "session": {}, "items": [], "tool_calls": [],
                   "events": [], "turns": [{"response_id": "r", "item_id": None, "latency_ms": 412,
                                            "measured_from": "vad"}],
                   "earlier": {"items": 0, "tool_calls": 0, "events": 0}, "transcript_url": "/sessions/s/"}),
    ("published", {"type": "delta", "session_id": "s", "item_id": "i", "role": "assistant", "delta": "Hel"}),
    ("published", {"type": "session.ended", "session_id": "s", "session": {"id": "s"}}),
    ("published", {"type": "session.resync", "session_id": "s"}),
]

BAD_OUTGOING: list[tuple[str, dict[str, Any]]] = [
    ("voice", {"type": "ag2.error", "code": "x", "message": "No retryable flag."}),
    ("voice", {"type": "ag2.close", "reason": "hangup", "call_id": "rtc_1"}),  # a field no schema describes
    ("voice", {"type": "ag2.init", "protocol": 2, "mode": "server", "session_id": "s", "session": {}}),
    ("voice", {"type": "ag2.surprise"}),
    ("dashboard", {"type": "snapshot"}),
    ("dashboard", {"type": "session.updated", "session_id": "s"}),  # published, not the consumer's own
    ("published", {"type": "delta", "session_id": "s", "delta": "no item"}),
    ("published", {"type": "usage", "usage": {}, "totals": {}}),  # no session_id
]


@pytest.mark.parametrize(("channel", "frame"), GOOD_OUTGOING)
def test_outgoing_frames_that_match_their_schema_pass(settings: Any, channel: Any, frame: dict[str, Any]) -> None:
    check_outgoing(channel, frame)


@pytest.mark.parametrize(("channel", "frame"), BAD_OUTGOING)
def test_an_outgoing_frame_that_does_not_match_fails_the_test(settings: Any, channel: Any,
                                                              frame: dict[str, Any]) -> None:
    with pytest.raises(OutgoingFrameError):
        check_outgoing(channel, frame)
    # The send points swallow errors; the list is what fails the test (tests/conftest.py).
    assert schemas.outgoing_problems
    schemas.outgoing_problems.clear()


def test_outgoing_frames_are_not_checked_when_the_setting_is_off(settings: Any) -> None:
    settings.VOICE_VALIDATE_OUTGOING = False
    check_outgoing("voice", {"type": "ag2.surprise"})
    assert not schemas.outgoing_problems
