"""Live fan-out over the channel layer: the dashboard and a user's other tabs.

Two kinds of group:
- `voice.session.<uuid>`: everything about one session as it happens, deltas included; joined by staff
  watching that session.
- `voice.staff`: lifecycle, finished items, tool calls and usage of every session, no deltas; joined by
  every dashboard.

Publishing never makes the voice session wait on the channel layer: updates go into a process-wide
outbox, split into a few shards by session so that each session's updates stay in order. A shard with
work has one task sending it; an idle shard has none. Why not a task per session, as before: every
session then held a Redis connection while it sent, and redis-py's pool refuses the 101st
(MaxConnectionsError), so 200 live sessions lost most of their updates (fan-out benchmark); the idle
task also cost memory per session. Now a process never has more than `MAX_IN_FLIGHT` sends under way.

Under load a shard's backlog goes out in batches: what is queued for one group becomes one
`dashboard.batch` message, and the groups of a batch are sent concurrently (one after the other, each
waiting its Redis round trips on a busy event loop, they made the slowest update wait for all the
others). An update that finds its shard idle is sent alone and at once, so batching adds no latency.

Only watched sessions stream: a session's own group gets its updates only while a dashboard has
joined it. Most sessions are watched by nobody, and publishing every relayed event of every session
to Redis just in case was a fifth of a server's CPU (fan-out benchmark). A poller per process asks
the layer, every `WATCH_POLL_SECONDS`, which of its sessions' groups have members (one pipelined
round trip for all of them). When a session becomes watched, its `on_watched` hook runs (the consumer
flushes the Recorder, then publishes `session.resync`) so the dashboard re-reads a snapshot that
holds everything recorded before the stream started: nothing falls in between. A layer we cannot
ask about its groups gets every update, as before.

If Redis is down, sends fail, are logged (once, then counts) and counted, and the session and its
recording go on: the record is in the database, the dashboard catches up from its snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels_redis.core import RedisChannelLayer

from voice.realtime.throttle import ThrottledLog
from voice.schemas import check_outgoing

logger = logging.getLogger(__name__)
_log = ThrottledLog(logger)

STAFF_GROUP = "voice.staff"
# Channel-layer message types: the consumer methods `dashboard_message` and `dashboard_batch`.
MESSAGE_TYPE = "dashboard.message"
BATCH_TYPE = "dashboard.batch"
SEND_TIMEOUT_SECONDS = 2.0
SHARDS = 8
MAX_BATCH = 100
MAX_IN_FLIGHT = 32  # group sends under way at once, per process: well inside redis-py's pool of 100
SHARD_LIMIT = 20_000  # queued updates per shard before new ones are dropped (a stalled layer)
WATCH_POLL_SECONDS = 0.5
RESYNC_TYPE = "session.resync"  # between servers only: the dashboard consumer answers it with a snapshot


def session_group(session_id: str) -> str:
    return f"voice.session.{session_id}"


_Entry = tuple["Broadcaster", str, dict[str, Any]]


class _Shard:
    """An ordered outbox, drained by a task that exists only while there is something to send."""

    def __init__(self, in_flight: asyncio.Semaphore) -> None:
        self.queue: deque[_Entry | asyncio.Future[None]] = deque()
        self.task: asyncio.Task[None] | None = None
        self.in_flight = in_flight  # shared by the process's shards

    def put(self, entry: _Entry | asyncio.Future[None]) -> bool:
        if len(self.queue) >= SHARD_LIMIT and not isinstance(entry, asyncio.Future):
            return False
        self.queue.append(entry)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._drain(), name="voice-broadcast")
        return True

    async def _drain(self) -> None:
        try:
            while self.queue:
                chunk = [self.queue.popleft() for _ in range(min(MAX_BATCH, len(self.queue)))]
                await _send_chunk(chunk, self.in_flight)
        finally:
            self.task = None


class _Outbox:
    def __init__(self) -> None:
        in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.shards = [_Shard(in_flight) for _ in range(SHARDS)]
        self.live: dict[Broadcaster, None] = {}  # insertion-ordered set of open broadcasters
        self.poller: asyncio.Task[None] | None = None
        self.hooks: set[asyncio.Task[None]] = set()

    def add(self, broadcaster: Broadcaster) -> None:
        self.live[broadcaster] = None
        if self.poller is None:
            self.poller = asyncio.get_running_loop().create_task(self._poll(), name="voice-watch-poller")

    async def _poll(self) -> None:
        try:
            while self.live:
                await self.refresh()
                await asyncio.sleep(WATCH_POLL_SECONDS)
        finally:
            self.poller = None

    async def refresh(self) -> None:
        """Ask the layer which open sessions are watched; start the stream of those newly watched."""
        by_layer: dict[Any, list[Broadcaster]] = {}
        for broadcaster in self.live:
            by_layer.setdefault(broadcaster.layer, []).append(broadcaster)
        for layer, broadcasters in by_layer.items():
            try:
                sizes = await group_sizes(layer, [b.group for b in broadcasters])
            except Exception as exc:  # Redis down: sends fail anyway; keep what we knew
                logger.debug("Watch poll failed: %r", exc)
                continue
            for broadcaster, size in zip(broadcasters, sizes, strict=True):
                watched = size is None or size > 0
                if watched and not broadcaster.watched:
                    broadcaster.watched = True
                    if broadcaster.on_watched is not None:
                        task = asyncio.get_running_loop().create_task(broadcaster.on_watched())
                        self.hooks.add(task)
                        task.add_done_callback(self.hooks.discard)
                elif not watched:
                    broadcaster.watched = False


# One outbox per event loop: a task belongs to its loop (tests run one loop per test).
_outboxes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Outbox] = weakref.WeakKeyDictionary()


async def group_sizes(layer: Any, groups: list[str]) -> list[int | None]:
    """How many channels have joined each group; None where the layer cannot tell (then assume some).

    channels has no public API for this, so it reads the two layers we deploy on: channels_redis'
    sorted set per group (members older than `group_expiry` no longer count, as in its group_send),
    one pipelined ZCOUNT per group, and the in-memory layer's dict.
    """
    if isinstance(layer, InMemoryChannelLayer):
        return [len(layer.groups.get(group, {})) for group in groups]
    if not isinstance(layer, RedisChannelLayer):
        return [None] * len(groups)
    oldest = int(time.time()) - layer.group_expiry
    by_connection: dict[int, list[int]] = {}
    for position, group in enumerate(groups):
        by_connection.setdefault(layer.consistent_hash(group), []).append(position)
    sizes: list[int | None] = [None] * len(groups)
    for index, positions in by_connection.items():
        async with layer.connection(index).pipeline(transaction=False) as pipe:
            for position in positions:
                pipe.zcount(layer._group_key(groups[position]), oldest, "+inf")
            counts = await pipe.execute()
        for position, count in zip(positions, counts, strict=True):
            sizes[position] = int(count)
    return sizes


async def refresh_watches() -> None:
    """Poll now instead of at the next tick: which of this process's sessions are watched."""
    await _outbox().refresh()


def _outbox() -> _Outbox:
    loop = asyncio.get_running_loop()
    outbox = _outboxes.get(loop)
    if outbox is None:
        outbox = _outboxes[loop] = _Outbox()
    return outbox


async def _send_chunk(chunk: list[_Entry | asyncio.Future[None]], in_flight: asyncio.Semaphore) -> None:
    """Send a chunk in order; a close marker is released once everything before it was sent."""
    by_group: dict[tuple[Any, str], list[_Entry]] = {}
    for entry in chunk:
        if isinstance(entry, asyncio.Future):
            await _send_groups(by_group, in_flight)
            by_group = {}
            if not entry.done():
                entry.set_result(None)
        else:
            broadcaster, group, _ = entry
            by_group.setdefault((broadcaster.layer, group), []).append(entry)
    await _send_groups(by_group, in_flight)


async def _send_groups(by_group: dict[tuple[Any, str], list[_Entry]], in_flight: asyncio.Semaphore) -> None:
    if len(by_group) == 1:
        ((layer, group), entries), = by_group.items()
        await _send_group(layer, group, entries, in_flight)
    elif by_group:
        await asyncio.gather(*(_send_group(layer, group, entries, in_flight)
                               for (layer, group), entries in by_group.items()))


async def _send_group(layer: Any, group: str, entries: list[_Entry], in_flight: asyncio.Semaphore) -> None:
    if len(entries) == 1:
        message: dict[str, Any] = {"type": MESSAGE_TYPE, "payload": entries[0][2]}
    else:
        message = {"type": BATCH_TYPE, "payloads": [payload for _, _, payload in entries]}
    error: Exception | None = None
    try:
        async with in_flight, asyncio.timeout(SEND_TIMEOUT_SECONDS):
            await layer.group_send(group, message)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a broken layer must never break a voice session
        error = exc
    for broadcaster, _, _ in entries:
        broadcaster._sent(group, error)


class Broadcaster:
    """Publishes one session's updates. Fire-and-forget for callers; ordered per session."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.group = session_group(session_id)
        self.layer = get_channel_layer()
        self._shard: _Shard | None = None
        # Whether a dashboard has joined this session's group, as the poller last saw it. A layer that
        # cannot tell us gets everything.
        self.watched = not isinstance(self.layer, InMemoryChannelLayer | RedisChannelLayer)
        # Run when the session becomes watched, before its stream starts (see the module docstring).
        self.on_watched: Callable[[], Coroutine[Any, Any, None]] | None = None
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self.unwatched = 0
        _outbox().add(self)  # the poller watches the session's group from now until close()

    def to_session(self, payload: dict[str, Any]) -> None:
        if self._watched():
            self._put(self.group, payload)

    def to_staff(self, payload: dict[str, Any]) -> None:
        self._put(STAFF_GROUP, payload)

    def to_both(self, payload: dict[str, Any]) -> None:
        self._put(STAFF_GROUP, payload)
        self.to_session(payload)

    def _watched(self) -> bool:
        if not self.watched:
            self.unwatched += 1
        return self.watched

    def _put(self, group: str, payload: dict[str, Any]) -> None:
        payload.setdefault("session_id", self.session_id)
        check_outgoing("published", payload)
        if not self._my_shard().put((self, group, payload)):
            # Only reachable when the layer is stalled for a long time. Live views are best effort;
            # the database keeps the record, so we drop the update rather than grow without bound.
            self.dropped += 1
            _log.warning("outbox_full", "Broadcast outbox full for session %s: %d update(s) dropped",
                         self.session_id, self.dropped)

    def _my_shard(self) -> _Shard:
        if self._shard is None:  # looked up once: this runs for every update
            self._shard = _outbox().shards[hash(self.session_id) % SHARDS]
        return self._shard

    def _sent(self, group: str, error: Exception | None) -> None:
        if error is None:
            self.sent += 1
            return
        self.failed += 1
        # Process-wide, once then counts: with Redis down every session's every update fails.
        _log.warning("send_failed", "Broadcast to %s failed (%d so far for this session): %r", group, self.failed,
                     error)

    async def close(self, grace_seconds: float = 2.0) -> None:
        """Wait (at most `grace_seconds`) until everything this session queued has been sent."""
        _outbox().live.pop(self, None)
        self.on_watched = None
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._my_shard().put(done)
        with contextlib.suppress(TimeoutError):
            # Shielded: giving up waiting must not cancel the marker other updates queue behind.
            async with asyncio.timeout(grace_seconds):
                await asyncio.shield(done)
