"""Frames from the browser: what is accepted, and the stable code for what is not."""

from __future__ import annotations

from typing import Any

import pytest

from voice.schemas import (
    MAX_OFFER_SDP_CHARS,
    Ag2ClientError,
    Ag2Hangup,
    Ag2Offer,
    Ag2Ready,
    FrameError,
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
