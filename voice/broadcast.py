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
task also cost memory per session. Now a process never has more than `SHARDS` sends in flight.

Under load a shard's backlog goes out in batches: what is queued for one group becomes one
`dashboard.batch` message, one Redis round trip instead of one per update. An update that finds its
shard idle is sent alone and at once, so batching adds no latency.

If Redis is down, sends fail, are logged and counted, and the session and its recording go on: the
record is in the database, the dashboard catches up from its snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import deque
from typing import Any

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

STAFF_GROUP = "voice.staff"
# Channel-layer message types: the consumer methods `dashboard_message` and `dashboard_batch`.
MESSAGE_TYPE = "dashboard.message"
BATCH_TYPE = "dashboard.batch"
SEND_TIMEOUT_SECONDS = 2.0
SHARDS = 8
MAX_BATCH = 100
SHARD_LIMIT = 20_000  # queued updates per shard before new ones are dropped (a stalled layer)


def session_group(session_id: str) -> str:
    return f"voice.session.{session_id}"


_Entry = tuple["Broadcaster", str, dict[str, Any]]


class _Shard:
    """An ordered outbox, drained by a task that exists only while there is something to send."""

    def __init__(self) -> None:
        self.queue: deque[_Entry | asyncio.Future[None]] = deque()
        self.task: asyncio.Task[None] | None = None

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
                await _send_chunk(chunk)
        finally:
            self.task = None


# One set of shards per event loop: a task belongs to its loop (tests run one loop per test).
_shards: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[_Shard]] = weakref.WeakKeyDictionary()


def _shard_for(session_id: str) -> _Shard:
    loop = asyncio.get_running_loop()
    shards = _shards.get(loop)
    if shards is None:
        shards = _shards[loop] = [_Shard() for _ in range(SHARDS)]
    return shards[hash(session_id) % SHARDS]


async def _send_chunk(chunk: list[_Entry | asyncio.Future[None]]) -> None:
    """Send a chunk in order; a close marker is released once everything before it was sent."""
    by_group: dict[tuple[Any, str], list[_Entry]] = {}
    for entry in chunk:
        if isinstance(entry, asyncio.Future):
            await _send_groups(by_group)
            by_group = {}
            if not entry.done():
                entry.set_result(None)
        else:
            broadcaster, group, _ = entry
            by_group.setdefault((broadcaster.layer, group), []).append(entry)
    await _send_groups(by_group)


async def _send_groups(by_group: dict[tuple[Any, str], list[_Entry]]) -> None:
    for (layer, group), entries in by_group.items():
        if len(entries) == 1:
            message: dict[str, Any] = {"type": MESSAGE_TYPE, "payload": entries[0][2]}
        else:
            message = {"type": BATCH_TYPE, "payloads": [payload for _, _, payload in entries]}
        error: Exception | None = None
        try:
            async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
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
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    def to_session(self, payload: dict[str, Any]) -> None:
        self._put(self.group, payload)

    def to_staff(self, payload: dict[str, Any]) -> None:
        self._put(STAFF_GROUP, payload)

    def to_both(self, payload: dict[str, Any]) -> None:
        self._put(STAFF_GROUP, payload)
        self._put(self.group, payload)

    def _put(self, group: str, payload: dict[str, Any]) -> None:
        payload.setdefault("session_id", self.session_id)
        if not _shard_for(self.session_id).put((self, group, payload)):
            # Only reachable when the layer is stalled for a long time. Live views are best effort;
            # the database keeps the record, so we drop the update rather than grow without bound.
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning("Broadcast outbox full for session %s: %d update(s) dropped", self.session_id,
                               self.dropped)

    def _sent(self, group: str, error: Exception | None) -> None:
        if error is None:
            self.sent += 1
            return
        self.failed += 1
        if self.failed == 1 or self.failed % 100 == 0:
            logger.warning("Broadcast to %s failed (%d so far): %r", group, self.failed, error)

    async def close(self, grace_seconds: float = 2.0) -> None:
        """Wait (at most `grace_seconds`) until everything this session queued has been sent."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        _shard_for(self.session_id).put(done)
        with contextlib.suppress(TimeoutError):
            # Shielded: giving up waiting must not cancel the marker other updates queue behind.
            async with asyncio.timeout(grace_seconds):
                await asyncio.shield(done)
