"""The voice session websocket: who may connect, the init handshake, relaying, tools, limits, endings."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

from tests.ws_helpers import (  # noqa: F401  (disconnect_peers is an autouse fixture)
    disconnect_peers,
    event_types,
    function_call,
    open_peer,
    started,
    stored,
    wait_for,
)
from voice.models import SessionEvent, ToolCall, TranscriptItem, VoiceConfig, VoiceSession

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("relay_mode")]

async def test_an_anonymous_visitor_is_closed_with_4401() -> None:
    peer, connected = await open_peer(None)
    assert connected
    assert await peer.closed() == 4401


async def test_a_foreign_origin_is_refused(owner: User) -> None:
    _, connected = await open_peer(owner, origin=b"https://evil.example.com")
    assert not connected
    assert await database_sync_to_async(VoiceSession.objects.count)() == 0


async def test_a_user_gets_ag2_init_with_a_client_secret_and_ga_init_events(owner: User, emulator: str) -> None:
    peer, init = await started(owner)
    assert init["protocol"] == 1
    config = init["config"]
    assert config["value"].startswith("ek_")
    assert isinstance(config["expires_at"], int)
    assert config["model"] == "gpt-realtime-2.1"
    assert config["calls_url"] == f"{emulator}/realtime/calls"
    assert config["session"]["audio"]["output"]["voice"] == "marin"
    assert all(event["type"] == "session.update" for event in init["init"])
    assert "sk-" not in json.dumps(init)  # the server's key never reaches the browser
    update = await peer.until("session.update")
    assert [t["name"] for t in update["session"]["tools"]] == ["current_time", "calculator"]
    session = await stored(init["session_id"])
    assert session.status == "connecting"
    assert session.session_payload["model"] == "gpt-realtime-2.1"
    assert session.user_id == owner.pk
    await peer.send({"type": "ag2.hangup"})
    assert await peer.closed() == 1000


async def test_ag2_ready_marks_the_session_active_with_its_call_id(owner: User, emulator: str) -> None:
    peer, init = await started(owner)
    await peer.send({"type": "ag2.ready", "call_id": "rtc_abc123"})
    session = await wait_for(lambda: _active(init["session_id"]))
    assert session.call_id == "rtc_abc123"
    assert session.connected_at is not None
    await peer.send({"type": "ag2.hangup"})
    assert await peer.closed() == 1000
    session = await stored(init["session_id"])
    assert (session.status, session.end_reason) == ("ended", "hangup")
    assert session.ended_at is not None


async def _active(session_id: str) -> VoiceSession | None:
    session = await stored(session_id)
    return session if session.status == "active" else None


async def test_a_function_call_is_run_on_the_server_and_answered(owner: User, emulator: str) -> None:
    peer, init = await started(owner)
    await peer.send({"type": "ag2.ready", "call_id": "rtc_tool1"})
    await peer.send({"type": "response.created", "event_id": "ev1", "response": {"id": "resp_1"}})
    await peer.send(function_call("call_1", "calculator", {"expression": "6 * 7"}))
    output = await peer.until("conversation.item.create")
    assert output["item"]["type"] == "function_call_output"
    assert output["item"]["call_id"] == "call_1"
    assert "42" in output["item"]["output"]
    assert (await peer.until("response.create"))["type"] == "response.create"
    await peer.send({"type": "ag2.hangup"})
    await peer.closed()
    tool = await database_sync_to_async(ToolCall.objects.get)(session_id=init["session_id"], call_id="call_1")
    assert (tool.name, tool.arguments, tool.status) == ("calculator", {"expression": "6 * 7"}, "succeeded")
    assert "42" in tool.output and tool.duration_ms is not None


async def test_a_forged_tool_call_acts_only_for_the_sessions_user(owner: User, stranger: User,
                                                                  emulator: str) -> None:
    config = await database_sync_to_async(VoiceConfig.objects.get)(slug="default")
    config.tools = ["session_history"]
    await database_sync_to_async(config.save)()
    for _ in range(3):
        await database_sync_to_async(VoiceSession.objects.create)(user=stranger, status="ended")
    peer, _ = await started(owner)
    await peer.send(function_call("call_f", "session_history", {"user_id": stranger.pk, "username": "mallory"}))
    output = json.loads((await peer.until("conversation.item.create"))["item"]["output"])
    # Either refused (unexpected arguments) or answered for alice: never mallory's 3 sessions.
    assert "mallory" not in json.dumps(output)
    assert output.get("session_count") != 3
    await peer.send({"type": "ag2.hangup"})
    await peer.closed()


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", "invalid_json"),
        ("[1, 2, 3]", "invalid_frame"),
        ('{"no": "type"}', "invalid_frame"),
        ('{"type": 42}', "invalid_frame"),
        ('{"type": "ag2.launch"}', "unknown_frame"),
        ('{"type": "ag2.ready", "call_id": "not-a-call"}', "invalid_frame"),
        ('{"type": "ag2.client_error", "stage": "kitchen", "message": "x"}', "invalid_frame"),
    ],
)
async def test_a_malformed_frame_gets_ag2_error_and_the_session_goes_on(owner: User, emulator: str, raw: str,
                                                                        code: str) -> None:
    peer, init = await started(owner)
    await peer.ws.send_to(text_data=raw)
    error = await peer.until("ag2.error")
    assert error["code"] == code and error["message"] and error["retryable"] is False
    await peer.send({"type": "ag2.ready", "call_id": "rtc_after_error"})
    session = await wait_for(lambda: _active(init["session_id"]))
    assert session.call_id == "rtc_after_error"
    await peer.send({"type": "ag2.hangup"})
    await peer.closed()
    types = await event_types(init["session_id"])
    assert "ag2.invalid_frame" in types and "ag2.ready" in types


async def test_a_frame_over_the_size_limit_is_refused_and_the_session_goes_on(owner: User, emulator: str,
                                                                            settings: Any) -> None:
    settings.VOICE_MAX_FRAME_BYTES = 2048
    peer, init = await started(owner)
    await peer.send({"type": "ag2.ready", "call_id": "rtc_big"})
    await peer.send({"type": "rate_limits.updated", "rate_limits": [], "padding": "x" * 4096})
    error = await peer.until("ag2.error")
    assert error["code"] == "frame_too_large" and "2048 bytes" in error["message"]
    await peer.send({"type": "input_audio_buffer.speech_started", "item_id": "item_after", "audio_start_ms": 5})
    await peer.send({"type": "ag2.hangup"})
    assert await peer.closed() == 1000
    session = await stored(init["session_id"])
    assert (session.status, session.end_reason, session.call_id) == ("ended", "hangup", "rtc_big")
    types = await event_types(init["session_id"])
    assert "ag2.invalid_frame" in types and "input_audio_buffer.speech_started" in types


async def test_frames_over_the_message_rate_are_ignored_with_one_error_and_the_session_goes_on(
        owner: User, emulator: str, settings: Any) -> None:
    settings.VOICE_MAX_MESSAGES_PER_SECOND = 5
    peer, init = await started(owner)
    for i in range(40):
        await peer.send({"type": "rate_limits.updated", "event_id": f"e{i}", "rate_limits": []})
    error = await peer.until("ag2.error")
    assert error["code"] == "rate_limited" and error["retryable"] is True
    await asyncio.sleep(1.2)  # the bucket refills
    await peer.send({"type": "ag2.hangup"})
    assert await peer.closed() == 1000
    assert [f.get("code") for f in peer.frames].count("rate_limited") == 1  # one notice, not one per frame
    session = await stored(init["session_id"])
    assert session.end_reason == "hangup"
    notes = await database_sync_to_async(list)(
        SessionEvent.objects.filter(session_id=init["session_id"], type="ag2.rate_limited").values_list("payload",
                                                                                                        flat=True))
    refused = sum(n["refused"] for n in notes)
    recorded = (await event_types(init["session_id"])).count("rate_limits.updated")
    # A burst of twice the rate passed (a little more if sending was slow); every other frame is counted.
    assert recorded + refused == 40 and refused >= 25


async def test_concurrent_sessions_per_user_are_limited(owner: User, emulator: str, settings: Any) -> None:
    settings.VOICE_MAX_CONCURRENT_SESSIONS_PER_USER = 1
    first, _ = await started(owner)
    second, _ = await open_peer(owner)
    error = await second.until("ag2.error")
    assert error["code"] == "too_many_sessions" and error["retryable"] is True
    assert await second.closed() == 4429
    await first.send({"type": "ag2.hangup"})
    await first.closed()


async def test_session_starts_per_minute_are_limited(owner: User, emulator: str, settings: Any) -> None:
    settings.VOICE_MAX_SESSION_STARTS_PER_MINUTE = 2
    for _ in range(2):
        peer, _ = await started(owner)
        await peer.send({"type": "ag2.hangup"})
        await peer.closed()
    peer, _ = await open_peer(owner)
    assert (await peer.until("ag2.error"))["code"] == "rate_limited"
    assert await peer.closed() == 4429


async def test_an_unknown_config_is_refused_clearly(owner: User, emulator: str) -> None:
    peer, _ = await open_peer(owner, "/ws/voice/?config=no-such-config")
    error = await peer.until("ag2.error")
    assert error["code"] == "config_not_found" and "no-such-config" in error["message"]
    assert await peer.closed() == 4404


async def test_the_duration_cap_sends_ag2_close_then_4408(owner: User, emulator: str) -> None:
    await database_sync_to_async(VoiceConfig.objects.filter(slug="default").update)(max_session_seconds=1)
    peer, init = await started(owner)
    close = await peer.until("ag2.close", timeout=5)
    assert close["reason"] == "max_duration"
    assert await peer.closed() == 4408
    assert (await stored(init["session_id"])).end_reason == "max_duration"


async def test_an_upstream_failure_is_reported_and_the_session_fails(owner: User, emulator: str,
                                                                     settings: Any) -> None:
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"  # nothing listens on the discard port
    settings.OPENAI_TIMEOUT_SECONDS = 2
    peer, _ = await open_peer(owner)
    error = await peer.until("ag2.error")
    assert error["code"] == "openai_unavailable" and error["retryable"] is True
    # The user reads what to do, about the emulator that failed: no URL, no setting name.
    assert error["message"].startswith("The local OpenAI emulator is not running. Start it with `make run`")
    assert "127.0.0.1" not in error["message"] and "base_url" not in error["message"]
    close = await peer.until("ag2.close")
    assert close["reason"] == "upstream_error"
    assert await peer.closed() == 1000
    sessions = await database_sync_to_async(list)(VoiceSession.objects.filter(user=owner))
    assert [(s.status, s.end_reason) for s in sessions] == [("failed", "upstream_error")]
    # The admin's record keeps the technical detail.
    assert "http://127.0.0.1:9/v1/realtime/client_secrets" in sessions[0].error
    assert "ConnectError" in sessions[0].error
    assert "ag2.upstream_error" in await event_types(str(sessions[0].pk))


async def test_a_client_error_before_the_call_fails_the_session(owner: User, emulator: str) -> None:
    peer, init = await started(owner)
    await peer.send({"type": "ag2.client_error", "stage": "microphone", "message": "Permission denied"})
    await peer.closed()
    session = await stored(init["session_id"])
    assert (session.status, session.end_reason, session.error) == ("failed", "client_error:microphone",
                                                                    "Permission denied")


async def test_a_dropped_socket_ends_the_session_and_keeps_the_record(owner: User, emulator: str) -> None:
    peer, init = await started(owner)
    await peer.send({"type": "ag2.ready", "call_id": "rtc_drop"})
    await peer.send({"type": "conversation.item.added", "previous_item_id": None,
                     "item": {"id": "item_u", "type": "message", "role": "user",
                              "content": [{"type": "input_text", "text": "hello"}]}})
    await peer.ws.disconnect()
    session = await wait_for(lambda: _ended(init["session_id"]))
    assert session.end_reason == "disconnect"
    types = await event_types(init["session_id"])
    assert types[0] == "ag2.init" and "conversation.item.added" in types


async def _ended(session_id: str) -> VoiceSession | None:
    session = await stored(session_id)
    return session if session.status == "ended" else None


async def test_a_call_failing_after_it_was_up_fails_the_session_when_the_browser_leaves(owner: User,
                                                                                       emulator: str) -> None:
    peer, init = await started(owner)
    await peer.send({"type": "ag2.ready", "call_id": "rtc_ice"})
    await wait_for(lambda: _active(init["session_id"]))
    await peer.send({"type": "ag2.client_error", "stage": "ice", "message": "ICE connection failed"})
    await peer.ws.disconnect()
    session = await wait_for(lambda: _finished(init["session_id"]))
    assert (session.status, session.end_reason, session.error) == ("failed", "client_error:ice",
                                                                    "ICE connection failed")


async def _finished(session_id: str) -> VoiceSession | None:
    session = await stored(session_id)
    return session if session.status in ("ended", "failed") else None


async def test_relayed_events_do_not_hop_to_the_sync_thread(owner: User, emulator: str, monkeypatch: Any) -> None:
    """channels' default dispatch runs close_old_connections on the sync thread before every message;
    for a voice session that hop per relayed event cost two thirds of ingest throughput (benchmarks/)."""
    import channels.consumer

    hops = 0

    async def counting_hop() -> None:
        nonlocal hops
        hops += 1

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", counting_hop)
    peer, init = await started(owner)
    await peer.send({"type": "ag2.ready", "call_id": "rtc_nohop"})
    for i in range(50):
        await peer.send({"type": "input_audio_buffer.speech_started", "event_id": f"ev{i}", "item_id": f"i{i}",
                         "audio_start_ms": i})
    await peer.send({"type": "ag2.hangup"})
    assert await peer.closed() == 1000
    assert hops == 0
    types = await event_types(init["session_id"])
    assert types.count("input_audio_buffer.speech_started") == 50


async def test_nul_characters_cannot_make_a_sessions_record_unwritable(owner: User, emulator: str) -> None:
    # PostgreSQL text and jsonb refuse NUL: one such frame used to keep the whole batch from being written.
    peer, init = await started(owner)
    await peer.ws.send_to(text_data='{"type": "response.output_audio_transcript.delta", "item_id": "item_nul", '
                                    '"response_id": "resp_1", "delta": "a\\u0000b"}')
    await peer.ws.send_to(text_data='{"type": "weird\\u0000event", "x\\u0000": "\\u0000"}')
    await peer.send({"type": "ag2.hangup"})
    assert await peer.closed() == 1000
    types = await event_types(init["session_id"])
    assert "ag2.invalid_frame" in types and "ag2.hangup" in types  # refused (bad type), yet recorded
    item = await database_sync_to_async(TranscriptItem.objects.get)(session_id=init["session_id"], item_id="item_nul")
    assert item.text == "a\ufffdb"
