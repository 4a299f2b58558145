"""The dashboard consumer: staff see every live session and can watch one; a user watches their own.

What it sends, other than its own snapshots and errors, was published by the Broadcaster (voice/broadcast.py).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from redis.exceptions import RedisError

from voice import snapshots
from voice.broadcast import BATCH_TYPE, MESSAGE_TYPE, RESYNC_TYPE, STAFF_GROUP, session_group
from voice.consumers._common import FLOOD_NOTICE_SECONDS, NoPerMessageThreadHop, query_param
from voice.models import VoiceSession
from voice.protocol import CLOSE_FORBIDDEN, CLOSE_NOT_LOGGED_IN, CLOSE_TRY_AGAIN_LATER
from voice.realtime import boundedjson
from voice.realtime.throttle import Throttle, ThrottledLog, TokenBucket
from voice.schemas import check_outgoing, dashboard_request

logger = logging.getLogger(__name__)
# Process-wide: when Redis stops, every dashboard of the process fails at once; one line, then a count.
_layer_log = ThrottledLog(logger)

# A dashboard sends subscribe/unsubscribe requests, a few a minute; each costs a database read.
DASHBOARD_REQUESTS_PER_SECOND = 20
DASHBOARD_MAX_FRAME_CHARS = 1024
# What the dashboard consumer says itself; everything else it sends was published (voice/broadcast.py).
DASHBOARD_OWN_FRAMES = frozenset({"snapshot", "session.snapshot", "ag2.error"})


class DashboardConsumer(NoPerMessageThreadHop, AsyncJsonWebsocketConsumer):
    """Staff see every live session and can watch one; a user may watch only their own sessions."""

    async def send_json(self, content: Any, close: bool = False) -> None:
        check_outgoing("dashboard" if content.get("type") in DASHBOARD_OWN_FRAMES else "published", content)
        await super().send_json(content, close=close)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        except (RedisError, OSError) as exc:
            # The channel layer failed (Redis stopped or restarted): this dashboard can hear nothing more.
            # Close with "try again later" instead of crashing (1011 and a traceback per dashboard): the
            # page reconnects by itself and re-reads a snapshot once Redis is back.
            _layer_log.warning("layer_failed", "Dashboard closed, the channel layer failed: %r", exc)
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": CLOSE_TRY_AGAIN_LATER})

    async def connect(self) -> None:
        self.watching: str | None = None
        self.is_staff = False
        self.bucket = TokenBucket(DASHBOARD_REQUESTS_PER_SECOND, DASHBOARD_REQUESTS_PER_SECOND * 2)
        self.log = ThrottledLog(logger)
        self.flood_notice = Throttle(FLOOD_NOTICE_SECONDS)
        self.user = None
        user = self.scope.get("user")
        await self.accept()
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_NOT_LOGGED_IN)
            return
        self.user = user
        self.is_staff = bool(user.is_staff)
        if query_param(self.scope, "scope") != "own" and not self.is_staff:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        if self.is_staff:
            await self.channel_layer.group_add(STAFF_GROUP, self.channel_name)
            await self.send_json({"type": "snapshot", "sessions": await _live_sessions()})

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.user is None:  # refused at connect; the close is on its way
            return
        # Requests are tiny: anything big, binary, nested or too frequent is answered and ignored.
        if not self.bucket.take():
            self.log.warning("rate_limited", "Dashboard of %s: requests over the rate ignored", self.user)
            if self.flood_notice.hit() is not None:
                await self._error("rate_limited", "Too many requests; some were ignored. Wait a moment.")
            return
        if text_data is None or len(text_data) > DASHBOARD_MAX_FRAME_CHARS:
            self.log.info("invalid_frame", "Dashboard of %s: binary or oversized request refused", self.user)
            await self._error("invalid_frame", "Requests are short JSON text messages.")
            return
        try:
            content = boundedjson.loads(text_data)
        except ValueError as exc:
            self.log.info("invalid_json", "Dashboard of %s: request is not JSON (%s)", self.user, exc)
            await self._error("invalid_frame", f"The request is not valid JSON: {getattr(exc, 'msg', exc)}.")
            return
        await self.receive_json(content)

    async def _error(self, code: str, message: str) -> None:
        await self.send_json({"type": "ag2.error", "code": code, "retryable": code == "rate_limited",
                              "message": message})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        try:
            request = dashboard_request.validate_python(content)
        except Exception:
            await self._error("invalid_frame", "Send {'type': 'subscribe', 'session_id': <uuid>} or 'unsubscribe'.")
            return
        if request.type == "unsubscribe":
            await self._stop_watching()
            return
        wanted = str(request.session_id)
        # Authorize before joining: once in the group, this channel receives the session's stream, and
        # what is already queued for it arrives even after a discard. A stranger must never be in it.
        if not await _may_watch(wanted, self.user):
            await self._error("not_found", "No such session, or not yours to watch.")
            return
        # Join before reading the snapshot, so nothing committed in between is missed; the page
        # applies the live messages after the snapshot and tolerates repeats.
        await self.channel_layer.group_add(session_group(wanted), self.channel_name)
        snapshot = await _session_snapshot(wanted, self.user)
        if snapshot is None:
            if wanted != self.watching:
                await self.channel_layer.group_discard(session_group(wanted), self.channel_name)
            # The current subscription, if any, stays: a bad request should not cost a working view.
            await self._error("not_found", "No such session, or not yours to watch.")
            return
        if self.watching != wanted:
            await self._stop_watching()
        self.watching = wanted
        await self.send_json(snapshot)

    async def _stop_watching(self) -> None:
        if self.watching:
            await self.channel_layer.group_discard(session_group(self.watching), self.channel_name)
            self.watching = None

    async def dashboard_message(self, message: dict[str, Any]) -> None:
        await self._deliver(message["payload"])

    async def dashboard_batch(self, message: dict[str, Any]) -> None:
        # Updates the Broadcaster sent together under load: the page still gets one frame per update.
        for payload in message["payloads"]:
            await self._deliver(payload)

    async def _deliver(self, payload: dict[str, Any]) -> None:
        if not self.is_staff and payload.get("session_id") != self.watching:
            # A user sees only the session they are watching (and were authorized for); anything else
            # that reaches this channel, say queued before an unsubscribe, stops here.
            return
        if payload.get("type") == RESYNC_TYPE:
            # The session's stream starts now (voice/broadcast.py): re-read its record, which holds
            # everything recorded before, instead of passing the marker on to the page.
            if self.watching and payload.get("session_id") == self.watching:
                snapshot = await _session_snapshot(self.watching, self.user)
                if snapshot is not None:
                    await self.send_json(snapshot)
            return
        if not self.is_staff and ("session" in payload or "changes" in payload):
            payload = {**payload, "session": snapshots.without_call_id(payload.get("session")),
                       "changes": snapshots.without_call_id(payload.get("changes"))}
            payload = {k: v for k, v in payload.items() if v is not None}
        await self.send_json(payload)

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "log"):
            self.log.flush()
        if getattr(self, "is_staff", False):
            await self.channel_layer.group_discard(STAFF_GROUP, self.channel_name)
        watching = getattr(self, "watching", None)
        if watching:
            await self.channel_layer.group_discard(session_group(watching), self.channel_name)


assert (MESSAGE_TYPE, BATCH_TYPE) == ("dashboard.message", "dashboard.batch")  # the handlers above are named after them


@database_sync_to_async
def _live_sessions() -> list[dict[str, Any]]:
    return [dict(summary) for summary in snapshots.live_sessions()]


@database_sync_to_async
def _may_watch(session_id: str, user: Any) -> bool:
    """Staff may watch any session; a user only their own."""
    if user.is_staff:
        return True
    return VoiceSession.objects.for_user(user).filter(pk=session_id).exists()


@database_sync_to_async
def _session_snapshot(session_id: str, user: Any) -> dict[str, Any] | None:
    return snapshots.session_snapshot(session_id, user)
