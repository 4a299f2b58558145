"""The live dashboard: staff only, a snapshot on connect, live updates, per-session subscriptions.

The same scenarios run on the in-memory channel layer and on a real Redis.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from django.contrib.auth.models import User

from realtime_emulator import streams
from tests.ws_helpers import Peer, disconnect_peers, open_peer, started, wait_for  # noqa: F401  (autouse fixture)
from voice.models import VoiceSession
from voice.schemas import published_message

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("relay_mode")]


@pytest.fixture(params=["memory", "redis"])
def layer(request: pytest.FixtureRequest, settings: Any) -> str:
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                               "CONFIG": {"hosts": [url]}}}
    else:
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends.clear()
    yield request.param
    channel_layers.backends.clear()


async def collect(peer: Peer, want: Any, timeout: float = 5) -> list[dict[str, Any]]:
    """Frames until `want(frames)` holds; each one is checked against the published schema."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not want(peer.frames):
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise AssertionError(f"timed out; got {peer.types()}")
        await peer.next(remaining)
    return peer.frames


async def test_anonymous_and_plain_users_are_refused(owner: User, layer: str) -> None:
    anonymous, _ = await open_peer(None, "/ws/dashboard/")
    assert await anonymous.closed() == 4401
    plain, _ = await open_peer(owner, "/ws/dashboard/")
    assert await plain.closed() == 4403


async def test_staff_get_a_snapshot_then_live_lifecycle_items_and_usage(owner: User, staff: User, emulator: str,
                                                                       layer: str) -> None:
    await database_sync_to_async(VoiceSession.objects.create)(user=owner, status="active", config_name="Old")
    await database_sync_to_async(VoiceSession.objects.create)(user=owner, status="ended")
    dashboard, _ = await open_peer(staff, "/ws/dashboard/")
    snapshot = await dashboard.until("snapshot")
    assert [s["config"] for s in snapshot["sessions"]] == ["Old"]

    voice, init = await started(owner)
    session_id = init["session_id"]
    await collect(dashboard, lambda fs: any(f["type"] == "session.started" for f in fs))
    await voice.send({"type": "ag2.ready", "call_id": "rtc_dash1"})
    for frame in _turn():
        await voice.send(frame)
    frames = await collect(dashboard, lambda fs: any(f["type"] == "usage" for f in fs)
                           and sum(f["type"] == "item" for f in fs) >= 2)
    await voice.send({"type": "ag2.hangup"})
    frames = await collect(dashboard, lambda fs: any(f["type"] == "session.ended" for f in fs))
    live = [f for f in frames if f["type"] != "snapshot"]
    for frame in live:
        published_message.validate_python(frame)  # every message matches its typed schema
        assert frame["session_id"] == session_id
    kinds = [f["type"] for f in live]
    assert "delta" not in kinds and "event" not in kinds  # staff group: no per-token traffic
    texts = {f["item"]["role"]: f["item"]["text"] for f in live if f["type"] == "item"}
    assert texts == {"user": "Hello there", "assistant": "Hi! How can I help?"}
    ended = next(f for f in live if f["type"] == "session.ended")["session"]
    assert ended["status"] == "ended" and ended["end_reason"] == "hangup" and ended["turns"] == 1
    assert (ended["input_tokens"], ended["output_tokens"], ended["total_tokens"]) == (40, 20, 60)
    assert ended["call_id"] == "rtc_dash1"


async def test_subscribing_to_a_session_gives_its_snapshot_then_deltas_and_raw_events(
    owner: User, staff: User, emulator: str, layer: str
) -> None:
    voice, init = await started(owner)
    session_id = init["session_id"]
    await voice.send({"type": "ag2.ready", "call_id": "rtc_dash2"})
    await wait_for(lambda: _status(session_id, "active"))
    dashboard, _ = await open_peer(staff, "/ws/dashboard/")
    await dashboard.until("snapshot")
    await dashboard.send({"type": "subscribe", "session_id": session_id})
    snapshot = await dashboard.until("session.snapshot")
    assert snapshot["session"]["status"] == "active"
    assert [e["type"] for e in snapshot["events"]][:2] == ["ag2.init", "session.update"]
    # Nobody watched the session until now: its stream starts with a second, fresh snapshot.
    resync = await dashboard.until("session.snapshot")
    assert resync["session_id"] == session_id
    for frame in _turn():
        await voice.send(frame)
    frames = await collect(dashboard, lambda fs: any(f["type"] == "usage" for f in fs))
    deltas = "".join(f["delta"] for f in frames if f["type"] == "delta" and f["role"] == "assistant")
    assert deltas == "Hi! How can I help?"
    assert any(f["type"] == "event" and f["event"]["type"] == "response.done" for f in frames)
    await dashboard.send({"type": "subscribe", "session_id": "2b0c6a52-5d5c-4b59-9e3f-111111111111"})
    assert (await dashboard.until("ag2.error"))["code"] == "not_found"
    await voice.send({"type": "conversation.item.input_audio_transcription.delta", "item_id": "item_u9",
                      "delta": "still watching"})
    frames = await collect(dashboard, lambda fs: any(f.get("delta") == "still watching" for f in fs))
    await dashboard.send({"type": "unsubscribe"})
    await voice.send({"type": "ag2.hangup"})
    await voice.closed()


async def test_a_user_may_watch_only_their_own_sessions(owner: User, stranger: User, emulator: str,
                                                        layer: str) -> None:
    voice, init = await started(owner)
    own, _ = await open_peer(owner, "/ws/dashboard/?scope=own")
    await own.send({"type": "subscribe", "session_id": init["session_id"]})
    assert (await own.until("session.snapshot"))["session_id"] == init["session_id"]
    other, _ = await open_peer(stranger, "/ws/dashboard/?scope=own")
    await other.send({"type": "subscribe", "session_id": init["session_id"]})
    error = await other.until("ag2.error")
    assert error["code"] == "not_found"
    await other.send({"type": "subscribe", "session_id": "not-a-uuid"})
    assert (await other.until("ag2.error"))["code"] == "invalid_frame"
    await other.ws.send_to(text_data="{broken")
    assert (await other.until("ag2.error"))["code"] == "invalid_frame"
    await voice.send({"type": "ag2.hangup"})


async def test_a_dead_channel_layer_does_not_break_a_voice_session(owner: User, emulator: str,
                                                                   settings: Any) -> None:
    # Redis address with nothing listening: every publish fails; the session and its record go on.
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                           "CONFIG": {"hosts": ["redis://127.0.0.1:9/0"]}}}
    channel_layers.backends.clear()
    try:
        voice, init = await started(owner)
        await voice.send({"type": "ag2.ready", "call_id": "rtc_noredis"})
        for frame in _turn():
            await voice.send(frame)
        await voice.send({"type": "ag2.hangup"})
        assert await voice.closed(timeout=15) == 1000
        session = await database_sync_to_async(VoiceSession.objects.get)(pk=init["session_id"])
        assert (session.status, session.turns, session.call_id) == ("ended", 1, "rtc_noredis")
        items = await database_sync_to_async(lambda: [i.text for i in session.ordered_transcript()])()
        assert items == ["Hello there", "Hi! How can I help?"]
    finally:
        channel_layers.backends.clear()


async def _status(session_id: str, status: str) -> bool:
    session = await database_sync_to_async(VoiceSession.objects.get)(pk=session_id)
    return session.status == status


def _turn() -> list[dict[str, Any]]:
    user = streams.user_audio("item_u1")
    usage = {"total_tokens": 60, "input_tokens": 40, "output_tokens": 20,
             "input_token_details": {"text_tokens": 10, "audio_tokens": 30, "cached_tokens": 0},
             "output_token_details": {"text_tokens": 5, "audio_tokens": 15}}
    return [
        streams.item_added(user, None),
        streams.item_done(user, None),
        streams.transcription_completed("item_u1", "Hello there"),
        *streams.assistant_reply("resp_d1", "item_a1", ("Hi! ", "How can ", "I help?"), previous="item_u1",
                                 usage=usage),
    ]


def test_published_schemas_refuse_unknown_kinds_and_extra_fields() -> None:
    with pytest.raises(ValueError):
        published_message.validate_python({"type": "gossip", "session_id": "x"})
    with pytest.raises(ValueError):
        published_message.validate_python({"type": "delta", "session_id": "x", "item_id": "i", "role": "user",
                                           "delta": "a", "extra": 1})
    assert json.dumps(published_message.validate_python(
        {"type": "delta", "session_id": "x", "item_id": "i", "role": "user", "delta": "a"}).model_dump())


async def test_what_was_said_before_anyone_watched_reaches_the_dashboard_through_its_snapshot(
    owner: User, staff: User, emulator: str, layer: str
) -> None:
    # Unwatched sessions do not stream (voice/broadcast.py); starting to watch must lose nothing.
    voice, init = await started(owner)
    session_id = init["session_id"]
    await voice.send({"type": "ag2.ready", "call_id": "rtc_unwatched"})
    for frame in _turn():
        await voice.send(frame)
    await voice.send({"type": "response.output_audio_transcript.delta", "item_id": "item_late", "delta": "Still "})
    dashboard, _ = await open_peer(staff, "/ws/dashboard/")
    await dashboard.until("snapshot")
    await dashboard.send({"type": "subscribe", "session_id": session_id})
    frames = await collect(dashboard, lambda fs: sum(f["type"] == "session.snapshot" for f in fs) == 2)
    latest = [f for f in frames if f["type"] == "session.snapshot"][-1]
    texts = {item["item_id"]: item["text"] for item in latest["items"]}
    assert "Hi! How can I help?" in texts.values() and texts["item_late"] == "Still "
    await voice.send({"type": "response.output_audio_transcript.delta", "item_id": "item_late", "delta": "here."})
    frames = await collect(dashboard, lambda fs: any(f.get("delta") == "here." for f in fs))
    await voice.send({"type": "ag2.hangup"})
    await voice.closed()


async def test_subscribing_to_someone_elses_live_session_never_leaks_its_stream(
    owner: User, stranger: User, staff: User, emulator: str, layer: str
) -> None:
    """The group used to be joined before ownership was checked: 40 subscribes a second while another
    user's session streamed got the stranger that session's live deltas and transcription."""
    voice, init = await started(owner)
    session_id = init["session_id"]
    await voice.send({"type": "ag2.ready", "call_id": "rtc_private"})
    # A staff dashboard watches, so the session really streams deltas the whole time.
    watcher, _ = await open_peer(staff, "/ws/dashboard/")
    await watcher.send({"type": "subscribe", "session_id": session_id})
    await watcher.until("session.snapshot")
    spy, _ = await open_peer(stranger, "/ws/dashboard/?scope=own")

    async def stream() -> None:
        for i in range(120):
            await voice.send({"type": "response.output_audio_transcript.delta", "item_id": "item_secret",
                              "response_id": "resp_s", "delta": f"secret{i} "})
            await voice.send({"type": "conversation.item.input_audio_transcription.delta",
                              "item_id": "item_heard", "delta": f"heard{i} "})
            await asyncio.sleep(0.01)

    async def pester() -> None:
        for _ in range(60):  # about 40 a second, for 1.5 s
            await spy.send({"type": "subscribe", "session_id": session_id})
            await asyncio.sleep(0.025)

    await asyncio.gather(stream(), pester())
    # The watcher got the stream, so it was really flowing while the stranger asked.
    await collect(watcher, lambda fs: any(f.get("delta") == "secret119 " for f in fs), timeout=10)
    # Read everything the stranger got, until nothing more arrives for a second.
    while not await spy.ws.receive_nothing(timeout=1.0):
        await spy.next()
    leaked = [f for f in spy.frames if f.get("type") != "ag2.error"]
    assert leaked == [], f"the stranger received {len(leaked)} frame(s) of another user's session: {leaked[:3]}"
    assert {f["code"] for f in spy.frames} <= {"not_found", "rate_limited"}
    await voice.send({"type": "ag2.hangup"})
    await voice.closed()


def _timed_turn(n: int) -> dict[str, list[dict[str, Any]]]:
    """One user turn and the model's answer, in the phases a test spaces out in time."""
    response, item, user = f"resp_t{n}", f"item_a{n}", f"item_u{n}"
    return {
        "stopped": [streams.speech_started(user, 1000 * n), streams.speech_stopped(user, 1000 * n + 500)],
        "answer": [streams.response_created(response),
                   streams.output_item_added(response, streams.message(item, "assistant", status="in_progress"))],
        "audio": [streams.transcript_delta(response, item, f"Answer {n}.")],
        "started": [streams.audio_started(response)],
        "done": [streams.response_done(response, [], {"total_tokens": 6, "input_tokens": 4, "output_tokens": 2})],
    }


async def test_a_watched_session_shows_each_turns_latency_live_and_in_its_snapshot(
    owner: User, staff: User, emulator: str, layer: str
) -> None:
    voice, init = await started(owner)
    session_id = init["session_id"]
    await voice.send({"type": "ag2.ready", "call_id": "rtc_latency"})
    await wait_for(lambda: _status(session_id, "active"))
    dashboard, _ = await open_peer(staff, "/ws/dashboard/")
    await dashboard.until("snapshot")
    await dashboard.send({"type": "subscribe", "session_id": session_id})
    await collect(dashboard, lambda fs: sum(f["type"] == "session.snapshot" for f in fs) == 2)

    async def play(n: int, *, exact: bool) -> None:
        frames = _timed_turn(n)
        for phase, pause in (("stopped", 0.3), ("answer", 0.2), ("audio", 0.2), ("started", 0), ("done", 0)):
            if phase == "started" and not exact:
                continue  # OpenAI's sideband may never say when the audio started
            for frame in frames[phase]:
                await voice.send(frame)
            await asyncio.sleep(pause)

    def turns(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [f["turn"] for f in frames if f["type"] == "turn"]

    # Turn 1: output_audio_buffer.started says it exactly (0.7 s after the user stopped), published at once.
    await play(1, exact=True)
    frames = await collect(dashboard, lambda fs: any(f["type"] == "usage" for f in fs))
    (first,) = turns(frames)
    assert (first["response_id"], first["item_id"], first["measured_from"]) == (
        "resp_t1", "item_a1", "output_audio_buffer.started")
    assert 650 <= first["latency_ms"] < 1500, first
    # Turn 2: no output_audio_buffer event; measured from the first audio transcript delta (0.5 s), at
    # response.done.
    await play(2, exact=False)
    frames = await collect(dashboard, lambda fs: len(turns(fs)) == 2)
    second = turns(frames)[1]
    assert (second["response_id"], second["item_id"], second["measured_from"]) == (
        "resp_t2", "item_a2", "first_audio_delta")
    assert 450 <= second["latency_ms"] < 1300, second
    for frame in frames:
        if frame["type"] == "turn":
            published_message.validate_python(frame)

    await voice.send({"type": "ag2.hangup"})
    await voice.closed()
    # A dashboard that opens the session later reads the same latencies from the record.
    later, _ = await open_peer(staff, "/ws/dashboard/")
    await later.until("snapshot")
    await later.send({"type": "subscribe", "session_id": session_id})
    snapshot = await later.until("session.snapshot")
    assert snapshot["turns"] == [first, second]
