"""Live fan-out over the channel layer: the dashboard and a user's other tabs.

Two kinds of group:
- `voice.session.<uuid>`: everything about one session as it happens, deltas included; joined by staff
  watching that session.
- `voice.staff`: lifecycle, finished items, tool calls and usage of every session, no deltas; joined by
  every dashboard.

Publishing goes through an outbox drained by one task per session, so the voice session never waits
on the channel layer. If Redis is down, sends fail, are logged and counted, and the session and its
recording go on: the record is in the database, the dashboard catches up from its snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

STAFF_GROUP = "voice.staff"
# Channel-layer message type: the consumer method `dashboard_message` receives every one.
MESSAGE_TYPE = "dashboard.message"
SEND_TIMEOUT_SECONDS = 2.0


def session_group(session_id: str) -> str:
    return f"voice.session.{session_id}"


class Broadcaster:
    """Publishes one session's updates. Fire-and-forget for callers; ordered per session."""

    def __init__(self, session_id: str, *, outbox_size: int = 2000) -> None:
        self.session_id = session_id
        self.group = session_group(session_id)
        self.layer = get_channel_layer()
        self._outbox: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue(outbox_size)
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name=f"broadcast-{self.session_id}")

    def to_session(self, payload: dict[str, Any]) -> None:
        self._put(self.group, payload)

    def to_staff(self, payload: dict[str, Any]) -> None:
        self._put(STAFF_GROUP, payload)

    def to_both(self, payload: dict[str, Any]) -> None:
        self._put(STAFF_GROUP, payload)
        self._put(self.group, payload)

    def _put(self, group: str, payload: dict[str, Any]) -> None:
        payload.setdefault("session_id", self.session_id)
        try:
            self._outbox.put_nowait((group, payload))
        except asyncio.QueueFull:
            # Only reachable when the layer is stalled for a long time. Live views are best effort;
            # the database keeps the record, so we drop the update rather than grow without bound.
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                logger.warning("Broadcast outbox full for session %s: %d update(s) dropped", self.session_id,
                               self.dropped)

    async def _drain(self) -> None:
        while True:
            entry = await self._outbox.get()
            if entry is None:
                return
            group, payload = entry
            try:
                await asyncio.wait_for(
                    self.layer.group_send(group, {"type": MESSAGE_TYPE, "payload": payload}),
                    SEND_TIMEOUT_SECONDS,
                )
                self.sent += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broken layer must never break the voice session
                self.failed += 1
                if self.failed == 1 or self.failed % 100 == 0:
                    logger.warning("Broadcast to %s failed (%d so far): %r", group, self.failed, exc)

    async def close(self, grace_seconds: float = 2.0) -> None:
        """Send what is queued (for at most `grace_seconds`), then stop."""
        if self._task is None:
            return
        with contextlib.suppress(asyncio.QueueFull):
            self._outbox.put_nowait(None)
        try:
            async with asyncio.timeout(grace_seconds):
                await asyncio.shield(self._task)
        except (TimeoutError, asyncio.CancelledError):
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._task = None
