"""Server-mode sessions through the real consumer (channels' WebsocketCommunicator) against the real
emulator: signalling, the record fed from the sideband, untrusted browser frames, errors, resume,
the ownership lease (acquire, hand-off, release), adoption of orphaned calls, the duration cap."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.utils import timezone

from tests.emulator.test_emulator_call import fast_script
from tests.server_mode import BrowserPeer, Emulator, eventually, running_emulator
from tests.ws_helpers import Peer, disconnect_peers, open_peer, started, stored, wait_for  # noqa: F401
from voice import lease, live
from voice.models import SessionEvent, ToolCall, TranscriptItem, VoiceConfig, VoiceSession
from voice.realtime import get_client

pytestmark = pytest.mark.django_db(transaction=True)

SERVER_FRAMES = {"ag2.init", "ag2.answer", "ag2.error", "ag2.close"}


@pytest.fixture
async def emulator(settings: Any) -> AsyncIterator[Emulator]:
    async with running_emulator(fast_script("default")) as emulator:
        settings.OPENAI_BASE_URL = emulator.base
        settings.USING_EMULATOR = True
        settings.OPENAI_API_KEY = ""
        settings.VOICE_RESUME_GRACE_SECONDS = 30
        settings.VOICE_HEARTBEAT_SECONDS = 0.2
        settings.VOICE_HEARTBEAT_GRACE_SECONDS = 1.0
        yield emulator
        for session in live.live_sessions():  # nothing outlives its test
            await session.finish("test_over", notify=False, close_code=None)


@pytest.fixture
def fast_reconnect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "SIDEBAND_RECONNECT",
                        {"initial_delay": 0.02, "max_delay": 0.1, "max_attempts": 20, "give_up_after": 10})


async def _set_up_call(owner: User, path: str = "/ws/voice/") -> tuple[Peer, dict[str, Any], BrowserPeer, str]:
    """A server-mode call: init, offer, answer, ready. Returns (socket, init, media peer, call id)."""
    peer, init = await started(owner, path)
    media = BrowserPeer()
    await peer.send({"type": "ag2.offer", "sdp": await media.offer()})
    answer = await peer.until("ag2.answer")
    await media.answer(answer["sdp"])
    await peer.send({"type": "ag2.ready"})
    session = await wait_for(lambda: _with_status(init["session_id"], "active"))
    assert session, "the session never became active"
    return peer, init, media, session.call_id


async def _with_status(session_id: str, status: str) -> VoiceSession | None:
    session = await stored(session_id)
    return session if session.status == status else None


@database_sync_to_async
def _events(session_id: str) -> list[dict[str, Any]]:
    return list(SessionEvent.objects.filter(session_id=session_id).order_by("seq").values(
        "seq", "direction", "type", "payload"))


@database_sync_to_async
def _items(session_id: str) -> list[TranscriptItem]:
    return list(VoiceSession.objects.get(pk=session_id).ordered_transcript())


async def _say(emulator: Emulator, call_id: str, text: str) -> None:
    """A user turn without a microphone, once the call is free (the last reply may still be playing)."""
    for _ in range(100):
        response = await emulator.control("POST", f"/_emulator/calls/{call_id}/turn", json={"text": text})
        if response.status_code != 409:
            break
        await asyncio.sleep(0.05)
    assert response.status_code == 202, response.text


async def _user_and_reply(session_id: str, count: int) -> list[TranscriptItem]:
    """Wait until `count` completed assistant messages are recorded; return the transcript."""
    async def done() -> list[TranscriptItem] | None:
        items = await _items(session_id)
        replies = [i for i in items if i.role == "assistant" and i.kind == "message" and i.status == "completed"]
        return items if len(replies) >= count else None

    items = await wait_for(done, timeout=10)
    assert items, f"no {count} finished replies in {await _items(session_id)}"
    return items


# --- signalling ------------------------------------------------------------------------------------------


async def test_a_server_mode_call_is_created_by_the_server_heard_on_the_sideband_and_hung_up(
    owner: User, emulator: Emulator
) -> None:
    peer, init, media, call_id = await _set_up_call(owner)
    assert (init["protocol"], init["mode"], init["resumed"]) == (2, "server", False)
    assert set(init["session"]) == {"model", "voice", "output_modalities"}  # display facts only
    assert call_id.startswith("rtc_")
    session = await stored(init["session_id"])
    assert session.mode == "server" and session.served_by == lease.PROCESS_TOKEN and session.connected_at
    call = await emulator.call(call_id)
    assert call["status"] == "active"
    # The server attached the sideband and sent its session update there, with the standard key.
    assert any(e["source"] == "sideband" and e.get("event", {}).get("type") == "session.update"
               for e in call["client_events"])

    await _say(emulator, call_id, "Hello, can you hear me?")
    items = await _user_and_reply(init["session_id"], 1)
    assert next((i.role, i.text) for i in items) == ("user", "Hello, can you hear me?")
    assert items[-1].text.startswith("Yes, I can hear you")

    await peer.send({"type": "ag2.hangup"})
    assert (await peer.until("ag2.close"))["reason"] == "hangup"
    assert await peer.closed() == 1000
    session = await stored(init["session_id"])
    assert (session.status, session.end_reason) == ("ended", "hangup")
    assert session.total_tokens > 0 and session.turns == 1
    await eventually(lambda: True)
    assert (await emulator.call(call_id))["status"] == "ended"
    # Nothing secret, and not the call id, ever went to the browser; the browser only sent ag2.* frames.
    assert set(peer.types()) <= SERVER_FRAMES
    assert call_id not in json.dumps(peer.frames) and "sk-" not in json.dumps(peer.frames)
    events = await _events(init["session_id"])
    from_browser = {e["type"] for e in events if e["direction"] == "from_browser" and e["type"].startswith("ag2.")}
    assert from_browser == {"ag2.offer", "ag2.ready", "ag2.hangup"}
    assert "response.done" in {e["type"] for e in events}  # from the sideband
    await media.close()


async def test_a_tool_call_is_answered_over_the_sideband(owner: User, emulator: Emulator) -> None:
    await emulator.control("POST", "/_emulator/script", json={"script": "tool_call"})
    peer, init, media, call_id = await _set_up_call(owner)
    await _say(emulator, call_id, "What time is it?")
    await _user_and_reply(init["session_id"], 1)

    async def answered() -> ToolCall | None:
        return await database_sync_to_async(ToolCall.objects.filter(session_id=init["session_id"]).first)()

    tool = await wait_for(answered, timeout=10)
    assert tool is not None and tool.name == "current_time"
    await eventually(lambda: True)
    call = await emulator.call(call_id)
    outputs = [e for e in call["client_events"] if e.get("event", {}).get("type") == "conversation.item.create"
               and e["event"]["item"]["type"] == "function_call_output"]
    assert [o["source"] for o in outputs] == ["sideband"]
    tool = await wait_for(lambda: _tool_status(init["session_id"], "succeeded"), timeout=10)
    assert tool.output == outputs[0]["event"]["item"]["output"]
    await peer.send({"type": "ag2.hangup"})
    await peer.closed()
    await media.close()


async def _tool_status(session_id: str, status: str) -> ToolCall | None:
    tool = await database_sync_to_async(ToolCall.objects.filter(session_id=session_id).first)()
    return tool if tool is not None and tool.status == status else None


async def test_no_client_secret_is_minted_in_server_mode(owner: User, emulator: Emulator) -> None:
    peer, init, media, call_id = await _set_up_call(owner)
    assert "config" not in init and "value" not in json.dumps(init)
    call = await emulator.call(call_id)
    assert call["session"]["model"] == "gpt-realtime-2.1"
    healthz = (await emulator.control("GET", "/healthz")).json()
    assert healthz["active_calls"] == 1
    await peer.send({"type": "ag2.hangup"})
    await peer.closed()
    await media.close()


# --- the browser is untrusted ------------------------------------------------------------------------------


@pytest.mark.parametrize("forged", [
    {"type": "response.done", "response": {"id": "resp_forged", "status": "completed",
                                           "usage": {"total_tokens": 999999, "input_tokens": 1, "output_tokens": 1}}},
    {"type": "response.output_item.done", "item": {"id": "item_f", "type": "function_call", "call_id": "call_f",
                                                   "name": "calculator", "arguments": "{\"expression\": \"1+1\"}"}},
    {"type": "conversation.item.input_audio_transcription.completed", "item_id": "item_x", "transcript": "forged"},
    {"type": "ag2.ready", "call_id": "rtc_forged"},  # allowed, but its call id means nothing here
    {"type": "ag2.launch"},
    {"type": "input_audio_buffer.delta", "delta": "AAAA"},
])
async def test_forged_frames_from_the_browser_change_nothing_in_the_record(
    owner: User, emulator: Emulator, forged: dict[str, Any]
) -> None:
    peer, init, media, call_id = await _set_up_call(owner)
    await asyncio.sleep(0.5)  # the sideband's session events are recorded
    await live.get(init["session_id"]).recorder.flush()
    before = await _events(init["session_id"])
    session_before = await stored(init["session_id"])
    await peer.send(forged)
    if forged["type"] != "ag2.ready":
        error = await peer.until("ag2.error")
        assert error["code"] == "unexpected_frame" and "ignored" in error["message"]
    else:
        await asyncio.sleep(0.2)
    await live.get(init["session_id"]).recorder.flush()
    after = await _events(init["session_id"])
    new = [e for e in after if e not in before]
    assert all(e["direction"] != "from_browser" or e["type"] == "ag2.ready" for e in new), new
    assert not any("forged" in json.dumps(e["payload"]) or "call_f" in json.dumps(e["payload"]) for e in new)
    session = await stored(init["session_id"])
    assert (session.total_tokens, session.call_id) == (session_before.total_tokens, call_id)
    assert not await database_sync_to_async(ToolCall.objects.filter(session_id=init["session_id"]).exists)()
    await peer.send({"type": "ag2.hangup"})
    await peer.closed()
    await media.close()


async def test_an_unexpected_frame_is_logged_once_then_counted(
    owner: User, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    peer, _init, media, _ = await _set_up_call(owner)
    for _ in range(5):
        await peer.send({"type": "response.create"})
        await peer.until("ag2.error")
    lines = [r for r in caplog.records if "unexpected_frame" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    await peer.send({"type": "ag2.hangup"})
    await peer.closed()
    await media.close()


# --- failures -----------------------------------------------------------------------------------------------


async def test_openai_failing_at_calls_is_an_error_a_person_can_act_on_and_nothing_is_left(
    owner: User, emulator: Emulator
) -> None:
    await emulator.control("POST", "/_emulator/faults", json={"calls_status": 503, "count": 1})
    peer, init = await started(owner)
    media = BrowserPeer()
    await peer.send({"type": "ag2.offer", "sdp": await media.offer()})
    error = await peer.until("ag2.error")
    assert error["code"] == "openai_unavailable" and error["retryable"] is True
    assert "Try again" in error["message"] and "http" not in error["message"]
    assert (await peer.until("ag2.close"))["reason"] == "upstream_error"
    assert await peer.closed() == 1000
    session = await stored(init["session_id"])
    assert (session.status, session.end_reason) == ("failed", "upstream_error")
    assert (await emulator.control("GET", "/_emulator/calls")).json()["calls"] == []
    assert live.get(init["session_id"]) is None
    await media.close()


async def test_a_sideband_that_cannot_attach_hangs_up_the_call_it_created(
    owner: User, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused_key(llm_config: dict[str, Any], logger: Any, **kwargs: Any) -> Any:
        # A client secret is refused on the sideband (standard key only), as OpenAI does.
        config = {**llm_config["config_list"][0], "api_key": "ek_not_a_standard_key"}
        return get_client({**llm_config, "config_list": [config]}, logger, **kwargs)

    monkeypatch.setattr(live, "get_client", refused_key)
    peer, init = await started(owner)
    media = BrowserPeer()
    await peer.send({"type": "ag2.offer", "sdp": await media.offer()})
    error = await peer.until("ag2.error")
    assert error["code"] == "openai_auth_failed"
    await peer.until("ag2.close")
    assert await peer.closed() == 1000
    session = await stored(init["session_id"])
    assert session.status == "failed" and session.call_id
    await eventually(lambda: True)
    assert (await emulator.call(session.call_id))["status"] == "ended"  # not left running at OpenAI
    assert "answer" not in " ".join(peer.types())
    await media.close()


async def test_a_second_offer_is_refused(owner: User, emulator: Emulator) -> None:
    peer, _init, media, _call_id = await _set_up_call(owner)
    await peer.send({"type": "ag2.offer", "sdp": "v=0\r\n"})
    assert (await peer.until("ag2.error"))["code"] == "unexpected_frame"
    assert len((await emulator.control("GET", "/_emulator/calls")).json()["calls"]) == 1
    await peer.send({"type": "ag2.hangup"})
    await peer.closed()
    await media.close()


# --- a session outlives its socket --------------------------------------------------------------------------


async def test_a_dropped_socket_resumes_the_same_call_and_session(owner: User, emulator: Emulator) -> None:
    peer, init, media, call_id = await _set_up_call(owner)
    session_id = init["session_id"]
    holder = live.get(session_id)
    await peer.ws.disconnect()
    await eventually(lambda: holder.browser is None, "the socket's departure")
    assert live.get(session_id) is holder  # the call goes on, in its grace
    again, resumed = await started(owner, f"/ws/voice/?resume={session_id}")
    assert (resumed["session_id"], resumed["resumed"], resumed["protocol"]) == (session_id, True, 2)
    assert live.get(session_id) is holder and holder.browser is not None
    assert (await emulator.call(call_id))["status"] == "active"
    await _say(emulator, call_id, "Still there?")
    await _user_and_reply(session_id, 1)
    await again.send({"type": "ag2.hangup"})
    await again.closed()
    session = await stored(session_id)
    assert (session.status, session.end_reason, session.call_id) == ("ended", "hangup", call_id)
    await media.close()


async def test_a_newer_socket_replaces_the_older_one(owner: User, emulator: Emulator) -> None:
    peer, init, media, _ = await _set_up_call(owner)
    again, _ = await started(owner, f"/ws/voice/?resume={init['session_id']}")
    assert await peer.closed() == live.CLOSE_REPLACED
    await again.send({"type": "ag2.hangup"})
    assert await again.closed() == 1000
    await media.close()


async def test_nobody_resumes_a_session_they_do_not_own_or_that_is_over(
    owner: User, stranger: User, emulator: Emulator
) -> None:
    peer, init, media, _ = await _set_up_call(owner)
    other, _ = await open_peer(stranger, f"/ws/voice/?resume={init['session_id']}")
    assert (await other.until("ag2.error"))["code"] == "not_found"
    assert await other.closed() == 4404
    garbage, _ = await open_peer(owner, "/ws/voice/?resume=not-a-uuid")
    assert await garbage.closed() == 4404
    await peer.send({"type": "ag2.hangup"})
    await peer.closed()
    late, _ = await open_peer(owner, f"/ws/voice/?resume={init['session_id']}")
    assert (await late.until("ag2.error"))["code"] == "call_ended"
    assert await late.closed() == 4404
    await media.close()


async def test_a_browser_that_never_comes_back_is_hung_up_after_the_grace(
    owner: User, emulator: Emulator, settings: Any
) -> None:
    settings.VOICE_RESUME_GRACE_SECONDS = 1.0
    peer, init, media, call_id = await _set_up_call(owner)
    await peer.ws.disconnect()
    session = await wait_for(lambda: _with_status(init["session_id"], "ended"), timeout=5)
    assert session.end_reason == "abandoned"
    await eventually(lambda: True)
    assert (await emulator.call(call_id))["status"] == "ended"
    await media.close()


async def test_a_process_that_stops_releases_the_call_and_another_takes_it_over_with_the_record(
    owner: User, emulator: Emulator
) -> None:
    peer, init, media, call_id = await _set_up_call(owner)
    session_id = init["session_id"]
    await _say(emulator, call_id, "Before the restart")
    await _user_and_reply(session_id, 1)
    old = live.get(session_id)
    await old.release(reason="server_shutdown", stopping=True)  # what daphne's cancellation does
    assert await peer.closed() == live.CLOSE_SERVICE_RESTART
    session = await stored(session_id)
    assert session.status == "active" and session.served_by == ""  # released, not ended
    assert (await emulator.call(call_id))["status"] == "active"
    last_seq = max(e["seq"] for e in await _events(session_id))

    # "Another process": a fresh LiveSession built from the database only.
    again, resumed = await started(owner, f"/ws/voice/?resume={session_id}")
    assert resumed["resumed"] is True
    new = live.get(session_id)
    assert new is not old and new.recorder.turns == 1
    await _say(emulator, call_id, "After the restart")
    items = await _user_and_reply(session_id, 2)
    assert [i.text for i in items if i.role == "user"] == ["Before the restart", "After the restart"]
    events = await _events(session_id)
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)) and max(seqs) > last_seq  # one gapless log
    assert "ag2.taken_over" in {e["type"] for e in events}
    await again.send({"type": "ag2.hangup"})
    await again.closed()
    session = await stored(session_id)
    assert (session.status, session.end_reason, session.turns) == ("ended", "hangup", 2)
    await media.close()


async def test_the_duration_cap_counts_from_the_start_across_a_take_over(owner: User, emulator: Emulator) -> None:
    peer, init, media, _ = await _set_up_call(owner)
    session_id = init["session_id"]
    await live.get(session_id).release(reason="server_shutdown", stopping=True)
    await peer.closed()
    almost = timezone.now() - timedelta(seconds=(await stored(session_id)).max_duration_seconds - 1)
    await database_sync_to_async(VoiceSession.objects.filter(pk=session_id).update)(started_at=almost)
    again, _resumed = await started(owner, f"/ws/voice/?resume={session_id}")
    assert (await again.until("ag2.close", timeout=5))["reason"] == "max_duration"
    assert await again.closed() == 4408
    await media.close()


# --- the lease ----------------------------------------------------------------------------------------------


@database_sync_to_async
def _server_session(user: User, **fields: Any) -> VoiceSession:
    config = VoiceConfig.objects.get(slug="default")
    return VoiceSession.objects.create(user=user, config=config, config_name=config.name, model=config.model,
                                       mode="server", session_payload=config.to_session_payload(), **fields)


async def test_the_lease_is_taken_when_free_ours_or_stale_and_never_from_a_live_holder(owner: User) -> None:
    stale = timezone.now() - timedelta(seconds=60)
    free = await _server_session(owner, status="active", call_id="rtc_a", served_by="")
    held = await _server_session(owner, status="active", call_id="rtc_b", served_by="other:1:x")
    dead = await _server_session(owner, status="active", call_id="rtc_c", served_by="other:2:y", heartbeat_at=stale)
    ended = await _server_session(owner, status="ended", call_id="rtc_d", served_by="")
    acquire = database_sync_to_async(lease.acquire)
    assert await acquire(str(free.pk), 30) and await acquire(str(free.pk), 30)  # free, then ours
    assert not await acquire(str(held.pk), 30)
    assert await acquire(str(dead.pk), 30)
    assert not await acquire(str(ended.pk), 30)
    assert await database_sync_to_async(lease.holder_of)(str(dead.pk)) == lease.PROCESS_TOKEN


async def test_a_hand_off_is_honoured_by_the_holder_at_its_heartbeat(owner: User) -> None:
    held = await _server_session(owner, status="active", call_id="rtc_h", served_by="holder:1:x")
    sid = str(held.pk)
    assert await database_sync_to_async(lease.request_handoff)(sid, holder="asker:2:y")
    give_up = await database_sync_to_async(VoiceSession.leases_to_give_up)([sid], "holder:1:x")
    assert give_up == [sid]
    # The holder renews only what it holds, and lets go of this one.
    assert await database_sync_to_async(lease.release)(sid, holder="holder:1:x")
    assert await database_sync_to_async(lease.acquire)(sid, 30, holder="asker:2:y")
    row = await stored(sid)
    assert (row.served_by, row.handoff_to) == ("asker:2:y", "")
    assert await database_sync_to_async(VoiceSession.leases_to_give_up)([sid], "holder:1:x") == [sid]
    assert await database_sync_to_async(VoiceSession.leases_to_give_up)([sid], "asker:2:y") == []


async def test_a_resume_waits_for_the_holders_hand_off(owner: User, emulator: Emulator) -> None:
    peer, init, media, _call_id = await _set_up_call(owner)
    session_id = init["session_id"]
    await live.get(session_id).release(reason="server_shutdown", stopping=True)
    await peer.closed()
    # Another (live) process holds it: its heartbeat is fresh.
    await database_sync_to_async(VoiceSession.objects.filter(pk=session_id).update)(
        served_by="elsewhere:9:z", heartbeat_at=timezone.now())

    async def holder_lets_go() -> None:
        await wait_for(lambda: _handoff_asked(session_id), timeout=5)
        await database_sync_to_async(lease.release)(session_id, holder="elsewhere:9:z")

    letting_go = asyncio.ensure_future(holder_lets_go())
    again, resumed = await started(owner, f"/ws/voice/?resume={session_id}")
    await letting_go
    assert resumed["resumed"] is True
    assert (await stored(session_id)).served_by == lease.PROCESS_TOKEN
    await again.send({"type": "ag2.hangup"})
    await again.closed()
    await media.close()


async def _handoff_asked(session_id: str) -> bool:
    return (await stored(session_id)).handoff_to == lease.PROCESS_TOKEN


async def test_the_writer_hands_a_session_off_when_asked(owner: User, emulator: Emulator) -> None:
    peer, init, media, call_id = await _set_up_call(owner)
    session_id = init["session_id"]
    await database_sync_to_async(lease.request_handoff)(session_id, holder="elsewhere:9:z")
    # At its next heartbeat this process lets go: sideband closed (no hang-up), lease released.
    assert await peer.closed(timeout=5) == live.CLOSE_REPLACED
    assert live.get(session_id) is None
    session = await stored(session_id)
    assert (session.status, session.served_by) == ("active", "")
    assert (await emulator.call(call_id))["status"] == "active"
    await media.close()


# --- orphans ---------------------------------------------------------------------------------------------------


async def test_an_orphaned_call_is_adopted_then_hung_up_when_nobody_resumes(
    owner: User, emulator: Emulator, settings: Any
) -> None:
    settings.VOICE_RESUME_GRACE_SECONDS = 1.0
    peer, init, media, call_id = await _set_up_call(owner)
    session_id = init["session_id"]
    old = live.get(session_id)
    await old.release(reason="server_shutdown", stopping=True)
    await peer.closed()
    # Its process died: stale heartbeat. The sweep of the old rule would have ended it as server_lost.
    stale = timezone.now() - timedelta(seconds=60)
    await database_sync_to_async(VoiceSession.objects.filter(pk=session_id).update)(
        served_by="dead:1:x", heartbeat_at=stale)
    assert await database_sync_to_async(VoiceSession.end_unserved)(1.0) == 0
    assert await live.adopt_orphans() == [session_id]
    assert live.get(session_id) is not None
    await eventually(lambda: True)
    assert (await emulator.call(call_id))["status"] == "active"
    session = await wait_for(lambda: _with_status(session_id, "ended"), timeout=5)
    assert session.end_reason == "abandoned"
    assert (await emulator.call(call_id))["status"] == "ended"
    types = [e["type"] for e in await _events(session_id)]
    assert "ag2.taken_over" in types
    await media.close()


async def test_relay_sessions_and_server_sessions_without_a_call_keep_the_old_rule(owner: User) -> None:
    stale = timezone.now() - timedelta(seconds=60)
    relay = await database_sync_to_async(VoiceSession.objects.create)(user=owner, status="active", heartbeat_at=stale)
    no_call = await _server_session(owner, status="connecting", heartbeat_at=stale)
    call = await _server_session(owner, status="active", call_id="rtc_o", heartbeat_at=stale, served_by="dead")
    assert await database_sync_to_async(VoiceSession.end_unserved)(30) == 2
    assert [(await stored(s.pk)).status for s in (relay, no_call, call)] == ["ended", "ended", "active"]


# --- the sideband drops ----------------------------------------------------------------------------------------


async def test_a_sideband_drop_reconnects_and_the_gap_is_noted(
    owner: User, emulator: Emulator, fast_reconnect: None
) -> None:
    peer, init, media, call_id = await _set_up_call(owner)
    session_id = init["session_id"]
    dropped = await emulator.control("POST", f"/_emulator/calls/{call_id}/sideband/drop", json={"refuse": 1})
    assert dropped.json()["dropped"] == 1

    async def gap_noted() -> list[dict[str, Any]]:
        await live.get(session_id).recorder.flush()
        return [e for e in await _events(session_id) if e["type"] == "ag2.sideband_gap"]

    gaps = await wait_for(gap_noted, timeout=5)
    assert gaps and gaps[0]["direction"] == "internal" and gaps[0]["payload"]["ended_at"] is not None
    assert gaps[0]["payload"]["attempts"] >= 2  # one refused, then back
    assert call_id not in json.dumps(gaps[0]["payload"])
    await _say(emulator, call_id, "After the gap")
    await _user_and_reply(session_id, 1)
    await peer.send({"type": "ag2.hangup"})
    await peer.closed()
    await media.close()


async def test_the_users_own_dashboard_never_sees_the_call_id_and_staff_do(
    owner: User, staff: User, emulator: Emulator
) -> None:
    peer, init = await started(owner)
    own, _ = await open_peer(owner, "/ws/dashboard/?scope=own")
    await own.send({"type": "subscribe", "session_id": init["session_id"]})
    await own.until("session.snapshot")
    media = BrowserPeer()
    await peer.send({"type": "ag2.offer", "sdp": await media.offer()})
    await media.answer((await peer.until("ag2.answer"))["sdp"])
    await peer.send({"type": "ag2.ready"})
    session = await wait_for(lambda: _with_status(init["session_id"], "active"))
    # Whatever streamed meanwhile (the changes, or a re-read snapshot), then a snapshot of the active call.
    await own.send({"type": "subscribe", "session_id": init["session_id"]})
    while not any(f["type"] == "session.snapshot" and f["session"]["status"] == "active" for f in own.frames):
        await own.next(timeout=5)
    assert session.call_id not in json.dumps(own.frames)
    watcher, _ = await open_peer(staff, "/ws/dashboard/")
    await watcher.send({"type": "subscribe", "session_id": init["session_id"]})
    assert (await watcher.until("session.snapshot"))["session"]["call_id"] == session.call_id
    await peer.send({"type": "ag2.hangup"})
    await peer.closed()
    await media.close()
