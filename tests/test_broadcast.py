"""The Broadcaster's outbox: per-session order, batching under load, bounded sends, failures counted."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from channels.layers import channel_layers

from voice import broadcast
from voice.broadcast import BATCH_TYPE, MESSAGE_TYPE, STAFF_GROUP, Broadcaster, session_group


@pytest.fixture(autouse=True)
def _toy_payloads(settings: Any) -> None:
    """These tests are of the transport, with toy payloads; what is published is checked elsewhere
    (voice/schemas.py, at the send point, in every other test)."""
    settings.VOICE_VALIDATE_OUTGOING = False


class SlowLayer:
    """Records what is sent and how many sends overlap; each send takes a little while, like Redis."""

    def __init__(self, delay: float = 0.002, fail: bool = False) -> None:
        self.delay, self.fail = delay, fail
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.in_flight = self.most_in_flight = 0

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            if self.fail:
                raise ConnectionError("redis is down")
            self.sent.append((group, message))
        finally:
            self.in_flight -= 1

    def payloads(self, group: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for to, message in self.sent:
            if to == group:
                out.extend(message["payloads"] if message["type"] == BATCH_TYPE else [message["payload"]])
        return out


def _broadcaster(session_id: str, layer: Any) -> Broadcaster:
    b = Broadcaster(session_id)
    b.layer = layer
    b.watched = True  # these tests are about the outbox; watching is tested below
    return b


async def test_an_update_to_an_idle_outbox_goes_alone_and_at_once() -> None:
    layer = SlowLayer(delay=0)
    b = _broadcaster("s-idle", layer)
    b.to_session({"type": "delta", "delta": "hi"})
    await b.close()
    assert layer.sent == [(session_group("s-idle"), {"type": MESSAGE_TYPE,
                                                      "payload": {"type": "delta", "delta": "hi",
                                                                  "session_id": "s-idle"}})]
    assert (b.sent, b.failed, b.dropped) == (1, 0, 0)


async def test_a_burst_keeps_each_sessions_order_and_is_sent_in_batches() -> None:
    layer = SlowLayer()
    sessions = [_broadcaster(f"s{i}", layer) for i in range(20)]
    for n in range(50):
        for b in sessions:
            b.to_session({"type": "delta", "n": n})
            if n % 10 == 9:
                b.to_both({"type": "item", "n": n})
    await asyncio.gather(*(b.close(grace_seconds=10) for b in sessions))
    for b in sessions:
        assert [p["n"] for p in layer.payloads(b.group) if p["type"] == "delta"] == list(range(50))
        assert [p["n"] for p in layer.payloads(b.group) if p["type"] == "item"] == [9, 19, 29, 39, 49]
        assert b.sent == 60 and b.failed == 0
    staff = layer.payloads(STAFF_GROUP)
    assert len(staff) == 20 * 5 and {p["type"] for p in staff} == {"item"}
    updates = 20 * (50 + 10)
    assert len(layer.sent) < updates / 5  # batched: far fewer round trips than updates
    assert any(message["type"] == BATCH_TYPE for _, message in layer.sent)


async def test_sends_in_flight_are_bounded_whatever_the_number_of_sessions() -> None:
    # A task per session once meant a Redis connection per session: redis-py refuses the 101st.
    layer = SlowLayer(delay=0.005)
    sessions = [_broadcaster(f"many-{i}", layer) for i in range(300)]
    for b in sessions:
        b.to_session({"type": "event"})
    await asyncio.gather(*(b.close(grace_seconds=10) for b in sessions))
    assert sum(b.sent for b in sessions) == 300
    assert 1 < layer.most_in_flight <= broadcast.MAX_IN_FLIGHT


async def test_a_failing_layer_is_counted_and_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    layer = SlowLayer(delay=0, fail=True)
    b = _broadcaster("s-fail", layer)
    for _ in range(3):
        b.to_staff({"type": "session.updated"})
    await b.close()
    assert (b.sent, b.failed) == (0, 3)
    assert "Broadcast to voice.staff failed" in caplog.text


async def test_a_stalled_layer_drops_updates_beyond_the_limit_instead_of_growing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(broadcast, "SHARD_LIMIT", 10)
    stalled = asyncio.Event()

    class StalledLayer:
        async def group_send(self, group: str, message: dict[str, Any]) -> None:
            await stalled.wait()

    b = _broadcaster("s-stalled", StalledLayer())
    for _ in range(30):
        b.to_session({"type": "event"})
    assert b.dropped >= 19  # one may already be on its way; ten wait; the rest are dropped
    assert "Broadcast outbox full" in caplog.text
    await b.close(grace_seconds=0.05)  # gives up waiting instead of hanging the session's end
    stalled.set()
    await b.close(grace_seconds=5)
    assert b.sent + b.dropped == 30


async def test_a_real_channel_layer_delivers_a_burst_in_order(settings: Any) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends.clear()
    try:
        b = Broadcaster("s-real")
        channel = await b.layer.new_channel()
        await b.layer.group_add(b.group, channel)
        await broadcast.refresh_watches()
        for n in range(200):
            b.to_session({"type": "delta", "n": n})
        await b.close()
        got: list[int] = []
        while len(got) < 200:
            message = await asyncio.wait_for(b.layer.receive(channel), 2)
            got.extend(p["n"] for p in (message["payloads"] if message["type"] == BATCH_TYPE
                                        else [message["payload"]]))
        assert got == list(range(200))
    finally:
        channel_layers.backends.clear()


@pytest.fixture(params=["memory", "redis"])
def real_layer(request: pytest.FixtureRequest, settings: Any) -> Any:
    if request.param == "redis":
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                               "CONFIG": {"hosts": [request.getfixturevalue("redis_url")]}}}
    else:
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends.clear()
    yield request.param
    channel_layers.backends.clear()


async def test_a_session_streams_only_while_watched_and_a_new_watcher_triggers_its_hook(real_layer: str) -> None:
    b = Broadcaster(f"s-watch-{uuid.uuid4()}")
    hooks: list[str] = []

    async def on_watched() -> None:
        hooks.append("resync")

    b.on_watched = on_watched
    layer = b.layer
    staff = await layer.new_channel()
    await layer.group_add(STAFF_GROUP, staff)
    await broadcast.refresh_watches()
    assert not b.watched
    b.to_session({"type": "delta", "delta": "nobody sees this"})
    b.to_both({"type": "item", "text": "staff see this"})
    await b.close()
    assert b.unwatched == 2 and b.sent == 1  # only the staff copy went out

    b2 = Broadcaster(f"s-watch-{uuid.uuid4()}")
    b2.on_watched = on_watched
    watcher = await layer.new_channel()
    await layer.group_add(b2.group, watcher)
    await broadcast.refresh_watches()
    await asyncio.sleep(0)  # the hook runs as its own task
    assert b2.watched and hooks == ["resync"]
    await broadcast.refresh_watches()
    assert hooks == ["resync"]  # once per start of watching, not per poll
    b2.to_session({"type": "delta", "delta": "watched"})
    message = await asyncio.wait_for(layer.receive(watcher), 2)
    assert message["payload"]["delta"] == "watched"
    await layer.group_discard(b2.group, watcher)
    await broadcast.refresh_watches()
    assert not b2.watched
    await b2.close()
    await layer.group_discard(STAFF_GROUP, staff)


async def test_group_sizes_counts_members_of_many_groups_in_one_go(real_layer: str) -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    run = uuid.uuid4().hex  # Redis outlives the test run: never meet an earlier run's groups
    groups = [f"voice.session.sizes-{run}-{i}" for i in range(50)]
    for i, group in enumerate(groups):
        for _ in range(i % 3):
            await layer.group_add(group, await layer.new_channel())
    assert await broadcast.group_sizes(layer, groups) == [i % 3 for i in range(50)]
    assert await broadcast.group_sizes(SlowLayer(), groups[:2]) == [None, None]  # cannot tell: stream
