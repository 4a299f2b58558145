"""The channel layer on a real Redis, on a bad day: idle for long, stopped and restarted mid-session.

The layer is configured exactly as production configures it (`redis_channel_layer` in settings.py). The
outage test runs its own throwaway redis-server on a free port (no persistence), stopped and started by
its pid; the shared Redis is never touched.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from channels.layers import channel_layers
from channels_redis.core import RedisChannelLayer
from django.contrib.auth.models import User

from realtime_site.settings import REDIS_SOCKET_TIMEOUT_SECONDS, redis_channel_layer
from tests.conftest import IN_CI
from tests.ws_helpers import Peer, disconnect_peers, event_types, open_peer, started, stored, wait_for  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis,
              pytest.mark.usefixtures("relay_mode")]

# channels_redis' blocking read lasts `brpop_timeout` (5 s); a dashboard used to drop at the end of the
# first one. Three full cycles prove the fix; REDIS_IDLE_TEST_SECONDS=60 runs the full minute.
IDLE_SECONDS = float(os.environ.get("REDIS_IDLE_TEST_SECONDS", 3 * RedisChannelLayer.brpop_timeout + 1))


def _use_layer(settings: Any, url: str) -> None:
    settings.CHANNEL_LAYERS = {"default": redis_channel_layer(url)}
    channel_layers.backends.clear()


@pytest.fixture
def production_layer(settings: Any, redis_url: str) -> Iterator[str]:
    _use_layer(settings, redis_url)
    yield redis_url
    channel_layers.backends.clear()


def test_the_socket_timeout_outlasts_channels_redis_blocking_read() -> None:
    # If channels_redis ever lengthens its blocking read, the default must follow, or dashboards drop again.
    assert RedisChannelLayer.brpop_timeout + 5 <= REDIS_SOCKET_TIMEOUT_SECONDS
    host = redis_channel_layer("redis://127.0.0.1:6379/0")["CONFIG"]["hosts"][0]  # type: ignore[index]
    assert host["socket_timeout"] == REDIS_SOCKET_TIMEOUT_SECONDS


async def test_an_idle_dashboard_on_real_redis_stays_connected(owner: User, staff: User, emulator: str,
                                                               production_layer: str) -> None:
    dashboard, _ = await open_peer(staff, "/ws/dashboard/")
    await dashboard.until("snapshot")
    started_at = time.monotonic()
    # Nothing may arrive, a close (1011 after a socket timeout) included, for the whole idle time.
    assert await dashboard.ws.receive_nothing(timeout=IDLE_SECONDS, interval=0.5)
    assert time.monotonic() - started_at >= IDLE_SECONDS
    assert not dashboard.ws.future.done(), "the dashboard's consumer stopped while idle"
    # ...and it still hears what happens next.
    voice, init = await started(owner)
    frame = await dashboard.until("session.started", timeout=10)
    assert frame["session_id"] == init["session_id"]
    await voice.send({"type": "ag2.hangup"})
    await voice.closed()


# --- a throwaway Redis, stopped and restarted mid-session -------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThrowawayRedis:
    """A redis-server of our own on a free loopback port, without persistence, stopped by its pid."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def throwaway_redis(settings: Any) -> Iterator[ThrowawayRedis]:
    if shutil.which("redis-server") is None:
        message = "redis-server is not installed (the fault suite starts its own; .ci/run installs it)"
        if IN_CI:
            pytest.fail(f"CI: {message}", pytrace=False)
        pytest.skip(message)
    redis = ThrowawayRedis()
    redis.start()
    _use_layer(settings, redis.url)
    try:
        yield redis
    finally:
        redis.stop()
        channel_layers.backends.clear()


async def _collect_until(peer: Peer, want: Any, timeout: float = 10) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + timeout
    while not want(peer.frames):
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise AssertionError(f"timed out; got {peer.types()}")
        if await peer.next(remaining) is None:
            raise AssertionError(f"closed with {peer.close_code}; got {peer.types()}")
    return peer.frames


async def _reconnect_and_watch(staff: User, session_id: str) -> tuple[Peer, dict[str, Any]]:
    """What the dashboard page does after a drop: reconnect (with a pause) until it has its snapshot
    and the watched session's snapshot. Returns the dashboard and that session's snapshot."""
    deadline = asyncio.get_running_loop().time() + 20
    while True:
        peer, connected = await open_peer(staff, "/ws/dashboard/")
        try:
            assert connected
            await peer.until("snapshot", timeout=5)
            await peer.send({"type": "subscribe", "session_id": session_id})
            return peer, await peer.until("session.snapshot", timeout=5)
        except AssertionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)


async def _equals(value: Any, expected: Any) -> bool:
    return await value == expected


def _delta(i: int) -> dict[str, Any]:
    return {"type": "response.output_audio_transcript.delta", "response_id": "resp_r", "item_id": "item_r",
            "delta": f"part{i} "}


async def test_a_live_session_keeps_working_and_recording_while_redis_stops_and_restarts(
        owner: User, staff: User, emulator: str, throwaway_redis: ThrowawayRedis) -> None:
    voice, init = await started(owner)
    session_id = init["session_id"]
    await voice.send({"type": "ag2.ready", "call_id": "rtc_outage"})
    dashboard, _ = await open_peer(staff, "/ws/dashboard/")
    await dashboard.until("snapshot")
    await dashboard.send({"type": "subscribe", "session_id": session_id})
    await dashboard.until("session.snapshot")
    await dashboard.until("session.snapshot")  # the stream starts (voice/broadcast.py: watched sessions only)
    await voice.send(_delta(0))
    await _collect_until(dashboard, lambda fs: any(f.get("delta") == "part0 " for f in fs))

    # Redis stops mid-session.
    await asyncio.to_thread(throwaway_redis.stop)
    # The dashboard is told to come back later (1013), not crashed (1011); its page reconnects by itself.
    assert await dashboard.closed(timeout=20) == 1013
    # The voice session goes on: events are answered, recorded, tools still run.
    for i in range(1, 11):
        await voice.send(_delta(i))
    await voice.send({"type": "conversation.item.done", "previous_item_id": None,
                      "item": {"id": "item_r", "type": "message", "role": "assistant", "status": "completed",
                               "content": [{"type": "output_audio", "transcript": "said during the outage"}]}})
    await voice.send({"type": "ag2.nope"})  # the session still answers, too
    assert (await voice.until("ag2.error"))["code"] == "unknown_frame"

    # Recorded while Redis was down: the record's writer flushes every few hundred ms (sooner or later on
    # a loaded machine), and what a resync shows is what the record holds.
    from channels.db import database_sync_to_async

    from voice.models import TranscriptItem

    @database_sync_to_async
    def recorded_text() -> str:
        return TranscriptItem.objects.filter(session_id=session_id, item_id="item_r").values_list(
            "text", flat=True).first() or ""

    assert await wait_for(lambda: _equals(recorded_text(), "said during the outage"), timeout=15)

    # Redis comes back (empty: no persistence). A reconnecting dashboard resyncs from the record.
    await asyncio.to_thread(throwaway_redis.start)
    again, snapshot = await _reconnect_and_watch(staff, session_id)
    assert session_id in [s["id"] for s in again.frames[0]["sessions"]]
    texts = {item["item_id"]: item["text"] for item in snapshot["items"]}
    assert texts.get("item_r") == "said during the outage"  # recorded while Redis was down
    # ...and the live stream flows again.
    await voice.send({"type": "conversation.item.input_audio_transcription.delta", "item_id": "item_after",
                      "delta": "back live"})
    await _collect_until(again, lambda fs: any(f.get("delta") == "back live" for f in fs), timeout=10)

    await voice.send({"type": "ag2.hangup"})
    assert await voice.closed(timeout=15) == 1000
    session = await stored(session_id)
    assert (session.status, session.end_reason, session.call_id) == ("ended", "hangup", "rtc_outage")
    types = await event_types(session_id)
    assert "conversation.item.done" in types and "ag2.invalid_frame" in types  # deltas are folded into items
