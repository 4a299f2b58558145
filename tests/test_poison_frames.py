"""Poison at the consumers: whatever a browser sends, it gets an `ag2.error`, the log gets a line (then
counts), and the session goes on with its record intact (DESIGN.md rule 5).

Each scenario ends the same way: after the poison, a valid event is still recorded and a hang-up still
ends the session as "hangup", not as a crash (1011) or a cap.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

from tests.ws_helpers import Peer, disconnect_peers, event_types, open_peer, started, stored  # noqa: F401
from voice.models import SessionEvent

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("relay_mode")]

DEEP = "[" * 100_000 + "]" * 100_000  # about 200 KB: inside the frame limit, far past the recursion limit
DEEP_OBJECT = '{"type": "response.done", "response": ' + '{"a": ' * 5_000 + "1" + "}" * 5_000 + "}"


async def _still_serving(peer: Peer, session_id: str) -> None:
    """A valid event is recorded after the poison, and the user's hang-up ends the session normally."""
    await peer.send({"type": "input_audio_buffer.speech_started", "item_id": "item_alive", "audio_start_ms": 1})
    await peer.send({"type": "ag2.hangup"})
    assert await peer.closed(timeout=10) == 1000
    session = await stored(session_id)
    assert (session.status, session.end_reason) == ("ended", "hangup")
    assert "input_audio_buffer.speech_started" in await event_types(session_id)


@pytest.mark.parametrize("text", [DEEP, DEEP_OBJECT, '{"type": "x.y", "v": ' + "[" * 65 + "]" * 65 + "}"],
                         ids=["100k-nested-lists", "5k-nested-objects", "65-levels"])
async def test_deeply_nested_json_is_answered_with_an_error_and_the_session_goes_on(owner: User, emulator: str,
                                                                                   text: str) -> None:
    peer, init = await started(owner)
    await peer.ws.send_to(text_data=text)
    error = await peer.until("ag2.error")
    assert error["code"] == "invalid_json"
    assert "at most 64" in error["message"]
    await _still_serving(peer, init["session_id"])


async def test_json_nested_within_the_bound_is_accepted(owner: User, emulator: str) -> None:
    peer, init = await started(owner)
    nested = "[" * 60 + "]" * 60
    await peer.ws.send_to(text_data='{"type": "rate_limits.updated", "rate_limits": [], "deep": ' + nested + "}")
    await _still_serving(peer, init["session_id"])
    assert "rate_limits.updated" in await event_types(init["session_id"])
    assert not [f for f in peer.frames if f["type"] == "ag2.error"]


@pytest.mark.parametrize("text", [
    '{"type": "response.output_audio_transcript.delta", "item_id": "item_s", "delta": "a\\ud800b"}',
    '{"type": "conversation.item.added", "item": {"id": "item_t", "\\udfff": 1}}',
    '{"type": "ag2.client_error", "stage": "ice", "message": "\\udc00"}',
], ids=["lone-high-surrogate-in-delta", "lone-low-surrogate-in-key", "surrogate-in-ag2-frame"])
async def test_lone_surrogates_are_refused_and_never_reach_the_record(owner: User, emulator: str,
                                                                      text: str) -> None:
    peer, init = await started(owner)
    await peer.ws.send_to(text_data=text)
    error = await peer.until("ag2.error")
    assert error["code"] == "invalid_frame" and "Unicode" in error["message"]
    # A correctly paired surrogate (an emoji written as an escape) is ordinary text.
    await peer.ws.send_to(text_data='{"type": "conversation.item.input_audio_transcription.delta", '
                                    '"item_id": "item_e", "delta": "\\ud83d\\ude00"}')
    await _still_serving(peer, init["session_id"])
    note = await database_sync_to_async(
        lambda: SessionEvent.objects.get(session_id=init["session_id"], type="ag2.invalid_frame").payload)()
    assert "\\ud" in note["frame"] or "\\\\ud" in json.dumps(note)  # kept as text a database can store


@pytest.mark.parametrize("frame", [
    {"type": "ag2.init", "protocol": 1, "config": {"value": "ek_forged"}},
    {"type": "ag2.answer", "sdp": "v=0"},
    {"type": "<script>alert(1)</script>"},
    {"type": "Response.Done"},
    {"type": 42},
    {"no_type": True},
    ["a", "list"],
    "a string",
    None,
], ids=["forged-ag2-init", "unknown-ag2", "markup-type", "bad-case-type", "numeric-type", "no-type", "list",
        "string", "null"])
async def test_forged_and_shapeless_frames_are_refused_and_the_session_goes_on(owner: User, emulator: str,
                                                                              frame: Any) -> None:
    peer, init = await started(owner)
    await peer.ws.send_to(text_data=json.dumps(frame))
    error = await peer.until("ag2.error")
    assert error["code"] in {"invalid_frame", "unknown_frame"}
    await _still_serving(peer, init["session_id"])


async def test_binary_and_huge_frames_are_refused_and_the_session_goes_on(owner: User, emulator: str,
                                                                          settings: Any) -> None:
    peer, init = await started(owner)
    # Raw NUL and a lone surrogate in text that is not even JSON: refused, and its note still storable.
    await peer.ws.send_to(text_data="{\x00 not json \ud800")
    assert (await peer.until("ag2.error"))["code"] == "invalid_json"
    await peer.ws.send_to(bytes_data=b"\x00\x01binary")
    assert (await peer.until("ag2.error"))["code"] == "invalid_frame"
    huge = json.dumps({"type": "rate_limits.updated", "pad": "é" * (settings.VOICE_MAX_FRAME_BYTES // 2 + 10)})
    await peer.ws.send_to(text_data=huge)  # under the limit in characters, over it in UTF-8 bytes
    assert (await peer.until("ag2.error"))["code"] == "frame_too_large"
    await _still_serving(peer, init["session_id"])


async def test_a_flood_of_bad_frames_writes_a_bounded_number_of_log_lines(owner: User, emulator: str,
                                                                         settings: Any,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """One flooding connection wrote 584 warnings: now a condition is logged once, then as a count."""
    settings.VOICE_MAX_MESSAGES_PER_SECOND = 10_000  # every bad frame reaches the parsing checks
    peer, init = await started(owner)
    caplog.set_level(logging.DEBUG, logger="voice")
    caplog.clear()
    for i in range(1000):
        await peer.ws.send_to(text_data=["{broken", DEEP[:300], '{"type": "ag2.nope"}', '"\\ud800"'][i % 4])
    for _ in range(1000):
        await peer.until("ag2.error")  # every frame was answered
    await _still_serving(peer, init["session_id"])
    lines = [r for r in caplog.records if r.name.startswith("voice") and "refused frame" in r.getMessage()]
    # One line per kind of fault (4) and one count each when the session ends: not one per frame.
    assert 4 <= len(lines) <= 8, [r.getMessage() for r in lines]
    assert any("more in the last" in r.getMessage() for r in lines)


async def test_a_flood_over_the_message_rate_writes_a_bounded_number_of_log_lines(
        owner: User, emulator: str, settings: Any, caplog: pytest.LogCaptureFixture) -> None:
    settings.VOICE_MAX_MESSAGES_PER_SECOND = 5
    peer, init = await started(owner)
    caplog.set_level(logging.DEBUG, logger="voice")
    caplog.clear()
    for i in range(1000):
        await peer.send({"type": "rate_limits.updated", "event_id": f"f{i}", "rate_limits": []})
    assert (await peer.until("ag2.error"))["code"] == "rate_limited"
    assert await peer.ws.receive_nothing(timeout=0.5)  # one notice for the whole flood
    await asyncio.sleep(1.0)  # the bucket refills: the session takes frames again
    await peer.send({"type": "ag2.hangup"})
    assert await peer.closed(timeout=10) == 1000
    lines = [r for r in caplog.records if r.name.startswith("voice") and "over" in r.getMessage()]
    assert 1 <= len(lines) <= 3, [r.getMessage() for r in lines]
    assert (await stored(init["session_id"])).end_reason == "hangup"


async def test_the_dashboard_answers_deep_huge_binary_and_flooding_requests_and_stays_open(
        owner: User, staff: User) -> None:
    dashboard, _ = await open_peer(staff, "/ws/dashboard/")
    await dashboard.until("snapshot")
    for text in (DEEP, '{"type": "subscribe", "session_id": ' + "[" * 70 + "]" * 70 + "}", "{x", "x" * 5000):
        await dashboard.ws.send_to(text_data=text)
        assert (await dashboard.until("ag2.error"))["code"] == "invalid_frame"
    await dashboard.ws.send_to(bytes_data=b"\xff")
    assert (await dashboard.until("ag2.error"))["code"] == "invalid_frame"
    for _ in range(200):
        await dashboard.send({"type": "unsubscribe"})
    assert (await dashboard.until("ag2.error"))["code"] == "rate_limited"
    assert await dashboard.ws.receive_nothing(timeout=0.5)  # still open, and one notice only
