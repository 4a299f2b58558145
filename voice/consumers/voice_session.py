"""The voice session consumer: one voice session per connection (relay mode or server mode).

It parses, authorizes and dispatches (DESIGN.md rule 2). The record is kept by the Recorder, live
updates go out through the Broadcaster, tools run in the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from voice import live as live_sessions
from voice import sessions
from voice.broadcast import RESYNC_TYPE, Broadcaster
from voice.consumers._common import FLOOD_NOTICE_SECONDS, NoPerMessageThreadHop, query_param
from voice.models import SessionEvent, VoiceConfig, VoiceSession
from voice.protocol import CLOSE_NOT_LOGGED_IN, CLOSE_TIMEOUT
from voice.realtime import boundedjson
from voice.realtime.client import RawFrame
from voice.realtime.throttle import Throttle, ThrottledLog, TokenBucket
from voice.recording import Recorder
from voice.schemas import (
    Ag2ClientError,
    Ag2Hangup,
    Ag2Offer,
    Ag2Ready,
    Ag2Text,
    FrameError,
    check_outgoing,
    parse_browser_frame,
    parse_server_mode_frame,
)

logger = logging.getLogger(__name__)

FROM_BROWSER = SessionEvent.Direction.FROM_BROWSER
TO_BROWSER = SessionEvent.Direction.TO_BROWSER
INTERNAL = SessionEvent.Direction.INTERNAL
# Ending a relay session, the events the browser relayed before it hung up still reach the agent (tools,
# the record) for at most this long before the agent is stopped; their raw frames are logged regardless.
RELAY_DRAIN_SECONDS = 5.0


class _ConsumerSocket:
    """The consumer seen as the client's websocket: `send_json` out, `iter_text` in.

    Both directions pass the Recorder's tap on the way (relay mode: OpenAI's frames are heard here), so
    every frame the client sends or reads is logged once without the client knowing about recording.
    """

    def __init__(self, consumer: VoiceSessionConsumer) -> None:
        self._consumer = consumer
        self._incoming: asyncio.Queue[str | None] = asyncio.Queue()

    async def send_json(self, data: Any) -> None:
        await self._consumer.send_frame(data)

    def feed(self, text: str | None) -> None:
        self._incoming.put_nowait(text)

    async def iter_text(self) -> AsyncIterator[str]:
        while True:
            text = await self._incoming.get()
            if text is None:
                return
            yield text


class VoiceSessionConsumer(NoPerMessageThreadHop, AsyncJsonWebsocketConsumer):
    """One voice session per connection: mints the secret, relays events, records everything."""

    # This consumer only publishes (through the Broadcaster) and never listens on the channel layer.
    # Channels would otherwise tie the connection to a per-consumer receive loop on the layer, and a
    # Redis outage would kill every running voice session with it. No alias of this name is configured,
    # so channels gives the consumer no layer at all.
    channel_layer_alias = "voice-session-publishes-only"
    session: VoiceSession | None = None
    # Server mode: the call lives in a LiveSession, which this socket is attached to (or was).
    live: live_sessions.LiveSession | None = None
    ended: bool  # set by connect()

    async def send_json(self, content: Any, close: bool = False) -> None:
        # Every JSON frame to the page passes here (relay mode's client, the LiveSession, refusals).
        check_outgoing("voice", content)
        await super().send_json(content, close=close)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        except asyncio.CancelledError:
            if self.live is not None:
                # daphne is stopping: a server-mode call outlives the process. Release it (record flushed,
                # lease released, sideband closed without hanging up) and close with 1012: the page
                # resumes on whichever process answers, which re-opens the sideband to the same call.
                live_sessions.stopping()
                if self.live.browser is self:
                    await self.live.release(reason="server_shutdown", stopping=True)
                raise
            # daphne cancels every application on shutdown without a disconnect. End the session
            # properly so it does not stay "active", count against the user's limit, or lose its
            # buffered rows. Close the socket first: the browser then reconnects to another process
            # instead of seeing its call hung up under it.
            if self.session is not None and not self.ended:
                self.ended = True
                with contextlib.suppress(Exception):
                    await self.close(code=1000)
                # The process is going away: make the end of the session durable before the slower
                # clean-up (agent, broadcasts, hang-up), in case the process manager's grace runs out.
                if self.recorder is not None:
                    self.recorder.update_session(status=VoiceSession.Status.ENDED, ended_at=timezone.now(),
                                                 end_reason="server_shutdown")
                    # What the database cannot take now (it is down) is spooled, replayed at next start.
                    await self.recorder.close(stopping=True)
                await self._shutdown("server_shutdown", status=VoiceSession.Status.ENDED)
            elif self.recorder is not None:
                # Cancelled while already ending (e.g. a disconnect at shutdown): spool what it has not written.
                await self.recorder.close(stopping=True)
            raise

    async def connect(self) -> None:
        self.session = None
        self.recorder: Recorder | None = None
        self.broadcaster: Broadcaster | None = None
        self.agent_task: asyncio.Task[None] | None = None
        self.cap_task: asyncio.Task[None] | None = None
        self.ended = False
        self.client_failure: tuple[str, str] | None = None
        self.bucket = TokenBucket(settings.VOICE_MAX_MESSAGES_PER_SECOND, settings.VOICE_MAX_MESSAGES_PER_SECOND * 2)
        self.log = ThrottledLog(logger)
        self.flood_refused = 0  # frames ignored over the rate since the last accepted one
        self.relayed = 0  # OpenAI events the browser relayed (then the call is up and the agent reads them)
        self.flood_notice = Throttle(FLOOD_NOTICE_SECONDS)
        user = self.scope.get("user")
        await self.accept()
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_NOT_LOGGED_IN)
            return
        resume = query_param(self.scope, "resume")
        if resume is not None:
            try:
                self.live = await live_sessions.resume(self, user, resume)
            except live_sessions.Refused as refusal:
                logger.info("Resume of %r refused for %s: %s", resume[:60], user, refusal.code)
                await self.send_json(refusal.frame())
                await self.close(code=refusal.close_code)
                return
            self.session = self.live.session
            return
        slug = query_param(self.scope, "config")
        try:
            self.session = await sessions.start_session(user, slug,
                                                        recording=query_param(self.scope, "recording"))
        except sessions.SessionRefused as refusal:
            logger.info("Session refused for %s: %s", user, refusal.code)
            await self.send_json({"type": "ag2.error", "code": refusal.code, "message": refusal.message,
                                  "retryable": refusal.retryable})
            await self.close(code=refusal.close_code)
            return
        if self.session.mode == VoiceConfig.CallMode.SERVER:
            self.live = await live_sessions.LiveSession.start(self, self.session)
            return
        session_id = str(self.session.pk)
        self.broadcaster = Broadcaster(session_id)
        self.broadcaster.on_watched = self._resync
        self.recorder = Recorder(session_id, model=self.session.model, broadcaster=self.broadcaster,
                                 batch_size=settings.VOICE_RECORDER_BATCH_SIZE,
                                 flush_seconds=settings.VOICE_RECORDER_FLUSH_SECONDS)
        self.recorder.start()
        self.broadcaster.to_staff({"type": "session.started", "session": self.session.to_dict()})
        self.socket = _ConsumerSocket(self)
        self.agent = sessions.build_agent(self.session, self.socket, self.recorder)
        self.agent_task = asyncio.create_task(self._run_agent(), name=f"agent-{session_id}")
        self.cap_task = asyncio.create_task(self._enforce_cap(self.session.max_duration_seconds),
                                            name=f"cap-{session_id}")

    async def _resync(self) -> None:
        """A dashboard started watching: commit what it has not seen live, then have it re-read the record."""
        if self.recorder is not None and self.broadcaster is not None and not self.ended:
            await self.recorder.flush()
            self.broadcaster.to_session({"type": RESYNC_TYPE})

    # --- outgoing ----------------------------------------------------------------------------------

    async def send_frame(self, data: Any) -> None:
        if isinstance(data, dict) and not str(data.get("type", "")).startswith("ag2."):
            # A client event for the browser to put on its data channel: on its way to OpenAI.
            text = json.dumps(data)
            if self.recorder is not None:
                self.recorder.tap(RawFrame(direction="to_openai", origin="browser", text=text), data)
            if not self.ended:
                with contextlib.suppress(Exception):  # the socket may already be gone; the record is kept
                    await self.send(text_data=text)
            return
        if self.recorder is not None and isinstance(data, dict):
            self.recorder.record(TO_BROWSER, data)
        if not self.ended:
            with contextlib.suppress(Exception):  # the socket may already be gone; the record is kept
                await self.send_json(data)

    async def _error(self, code: str, message: str, *, retryable: bool = False) -> None:
        frame = {"type": "ag2.error", "code": code, "message": message, "retryable": retryable}
        await self.send_frame(frame)

    # --- incoming ----------------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # Every check here answers a bad frame with ag2.error and goes on (DESIGN.md rule 5): whatever a
        # browser sends, the session and what it recorded stay. Cheapest checks first.
        if self.session is None or self.ended:
            return
        if not self.bucket.take():
            await self._rate_limited()
            return
        if self.flood_refused:
            self._note("rate_limited", {"refused": self.flood_refused})
            self.flood_refused = 0
        if text_data is None:
            await self._refuse("invalid_frame", "Binary frames are not accepted; send JSON text.", None)
            return
        # Characters, not bytes: encoding the frame only to measure it would copy it once more. UTF-8
        # takes at most 4 bytes a character, so only frames that may be over the limit are encoded.
        if len(text_data) * 4 > settings.VOICE_MAX_FRAME_BYTES:
            size = len(text_data.encode("utf-8", "surrogatepass"))
            if size > settings.VOICE_MAX_FRAME_BYTES:
                self.log.warning("frame_too_large", "Session %s: frame of %d bytes refused", self._sid(), size)
                await self._refuse("frame_too_large", f"The message was {size} bytes; messages are limited to "
                                   f"{settings.VOICE_MAX_FRAME_BYTES} bytes. It was ignored.", text_data[:200],
                                   bytes=size)
                return
        try:
            data = boundedjson.loads(text_data)
        except ValueError as exc:
            # `msg`: the reason alone, without the position (JSONDecodeError, JSONTooDeepError alike).
            reason = getattr(exc, "msg", exc)
            await self._refuse("invalid_json", f"The message is not valid JSON: {reason}.", text_data)
            return
        if _has_lone_surrogate(text_data, data):
            await self._refuse("invalid_frame", "The message holds text that is not valid Unicode (an unpaired "
                               "surrogate escape). It was ignored.", text_data)
            return
        if self.live is not None:
            await self._server_mode_frame(data, text_data)
            return
        try:
            frame = parse_browser_frame(data)
        except FrameError as exc:
            await self._refuse(exc.code, exc.message, text_data)
            return
        if isinstance(frame, dict):
            # An OpenAI server event relayed from the data channel: logged here, where it is heard, and read
            # by the client's parser; the Recorder learns what it means from the typed event the agent sends.
            assert self.recorder is not None
            self.recorder.tap(RawFrame(direction="from_openai", origin="browser", text=text_data), frame)
            self.socket.feed(text_data)
            self.relayed += 1
            return
        self.recorder.record(FROM_BROWSER, frame.model_dump())  # type: ignore[union-attr]
        if isinstance(frame, Ag2Ready):
            await self._ready(frame)
        elif isinstance(frame, Ag2ClientError):
            await self._client_error(frame)
        elif isinstance(frame, Ag2Hangup):
            await self._finish("hangup")

    async def _server_mode_frame(self, data: Any, text_data: str) -> None:
        """Server mode: the browser is untrusted. Only the signalling frames and typed turns act; anything else is
        answered with ag2.error and logged (once, then counted), and changes nothing in the record: in
        this mode the consumer has no recorder, so `_refuse` writes no note."""
        live = self.live
        assert live is not None
        try:
            frame = parse_server_mode_frame(data)
        except FrameError as exc:
            await self._refuse(exc.code, exc.message, text_data)
            return
        if live.browser is not self or live.ended or live.released:
            return  # replaced by a newer socket, or the call is over: its close is on the way
        # Only what the frame means in this mode: extra fields, and a call id the browser cannot know, go.
        live.recorder.record(FROM_BROWSER, frame.model_dump(include=set(type(frame).model_fields) - {"call_id"}))
        if isinstance(frame, Ag2Offer):
            await live.offer(frame.sdp)
        elif isinstance(frame, Ag2Ready):
            await live.ready()
        elif isinstance(frame, Ag2ClientError):
            await live.client_error(frame.stage, frame.message)
        elif isinstance(frame, Ag2Hangup):
            await live.hangup()
        elif isinstance(frame, Ag2Text):
            await live.text(frame.text)

    async def _rate_limited(self) -> None:
        """A frame over the message rate: ignored. The browser hears of it once per episode, the log and
        the record once, then counts, so that a flood costs neither the log nor the record a row a frame."""
        self.flood_refused += 1
        rate = settings.VOICE_MAX_MESSAGES_PER_SECOND
        self.log.warning("rate_limited", "Session %s: frames over %d a second ignored", self._sid(), rate)
        if self.flood_notice.hit() is not None:
            await self._error("rate_limited", f"Too many messages: more than {rate} a second. Messages over the "
                              "limit are ignored; the call goes on.", retryable=True)

    async def _refuse(self, code: str, message: str, raw: str | None, **extra: Any) -> None:
        """A malformed frame: say so, log it (once, then counts), note it in the record, and go on."""
        self.log.info(f"refused:{code}", "Session %s: refused frame (%s): %s", self._sid(), code, message)
        # The note keeps the frame as received text, not as decoded values: these may be the very values
        # the database cannot store (a lone surrogate), and the note must never cost the batch it joins.
        excerpt = None
        if raw is not None:  # and NUL, which PostgreSQL cannot store, even where JSON was not parsed
            excerpt = raw[:2000].encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\ufffd")
        self._note("invalid_frame", {"code": code, "message": message, "frame": excerpt, **extra})
        await self._error(code, message)

    def _note(self, kind: str, payload: dict[str, Any]) -> None:
        if self.recorder is not None:
            self.recorder.record(INTERNAL, {"type": f"ag2.{kind}", **payload})

    async def _ready(self, frame: Ag2Ready) -> None:
        assert self.session is not None and self.recorder is not None
        fields: dict[str, Any] = {"status": VoiceSession.Status.ACTIVE, "connected_at": timezone.now()}
        if frame.call_id:
            fields["call_id"] = frame.call_id
            self.session.call_id = frame.call_id
        self.session.status = VoiceSession.Status.ACTIVE
        self.recorder.update_session(**fields)

    async def _client_error(self, frame: Ag2ClientError) -> None:
        assert self.session is not None
        logger.info("Session %s: browser reported %s error: %s", self._sid(), frame.stage, frame.message)
        self.client_failure = (frame.stage, frame.message)
        # Before the call is up, a browser-side failure means there will be no call: end the session.
        if self.session.status == VoiceSession.Status.CONNECTING:
            await self._finish(f"client_error:{frame.stage}", status=VoiceSession.Status.FAILED,
                               error=frame.message, notify=False)

    # --- running and ending --------------------------------------------------------------------------

    async def _run_agent(self) -> None:
        try:
            await self.agent.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The client has already told the browser with an ag2.error; end the session as failed.
            logger.warning("Session %s: agent stopped with %s", self._sid(), exc.__class__.__name__)
            # The record keeps what the user was told and the technical detail behind it (a URL, the
            # transport error, OpenAI's words), for whoever reviews the session in the admin.
            detail = getattr(exc, "detail", "")
            error = f"{exc} [{getattr(exc, 'code', type(exc).__name__)}{': ' + detail if detail else ''}]"
            if detail:
                self._note("upstream_error", {"code": getattr(exc, "code", ""), "message": str(exc),
                                              "detail": detail[:2000]})
            await self._finish("upstream_error", status=VoiceSession.Status.FAILED, error=error[:2000],
                               from_agent=True)

    async def _enforce_cap(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self._finish("max_duration", close_code=CLOSE_TIMEOUT)

    async def _finish(self, reason: str, *, status: str = VoiceSession.Status.ENDED, error: str = "",
                      close_code: int | None = 1000, notify: bool = True, from_agent: bool = False) -> None:
        """End the session once, whatever ended it: record why, stop everything, close the socket."""
        if self.ended or self.session is None:
            if close_code is not None:
                with contextlib.suppress(Exception):
                    await self.close(code=close_code)
            return
        if notify:
            await self.send_frame({"type": "ag2.close", "reason": reason})
        self.ended = True
        await self._shutdown(reason, status=status, error=error, from_agent=from_agent)
        if close_code is not None:
            with contextlib.suppress(Exception):
                await self.close(code=close_code)

    async def _shutdown(self, reason: str, *, status: str, error: str = "", from_agent: bool = False) -> None:
        assert self.session is not None and self.recorder is not None and self.broadcaster is not None
        self.ended = True
        if self.flood_refused:
            self._note("rate_limited", {"refused": self.flood_refused})
            self.flood_refused = 0
        self.log.flush()
        ended_at = timezone.now()
        self.recorder.update_session(status=status, ended_at=ended_at, end_reason=reason[:64], error=error)
        await self._drain_relayed(from_agent)
        for task in (self.cap_task, None if from_agent else self.agent_task):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        with contextlib.suppress(Exception):
            await self.agent.stop()
        self.socket.feed(None)
        for task in (self.cap_task, None if from_agent else self.agent_task):
            if task is not None and task is not asyncio.current_task():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        await self.recorder.close()
        self.session.status, self.session.ended_at, self.session.end_reason = status, ended_at, reason[:64]
        self.session.turns, self.session.total_tokens = self.recorder.turns, self.recorder.total_tokens
        self.session.input_tokens, self.session.output_tokens = self.recorder.input_tokens, self.recorder.output_tokens
        self.session.cost_usd = self.recorder.cost_usd
        self.broadcaster.to_staff({"type": "session.ended", "session": self.session.to_dict()})
        await self.broadcaster.close()
        if self.session.call_id and reason not in ("hangup",) and not reason.startswith("client_error"):
            # The browser may be gone without hanging up: end the call at OpenAI so it cannot linger.
            await sessions.hang_up_call(self.session)

    async def _drain_relayed(self, from_agent: bool) -> None:
        """End the relayed stream after what the browser sent, and let the agent take it all in (the
        Recorder and the tools work from the agent's typed events), within RELAY_DRAIN_SECONDS."""
        self.socket.feed(None)
        task = self.agent_task
        if not self.relayed or from_agent or task is None or task.done() or task is asyncio.current_task():
            return  # nothing relayed: nothing to wait for (the agent may still be creating the session)
        await asyncio.wait({task}, timeout=RELAY_DRAIN_SECONDS)
        if not task.done():
            logger.warning("Session %s: relayed events still unread after %.0f s; the agent is stopped",
                           self._sid(), RELAY_DRAIN_SECONDS)

    async def disconnect(self, code: int) -> None:
        if self.live is not None:
            # The call goes on without this socket, for the resume grace (or it was replaced, or is over).
            self.log.flush()
            await self.live.detach(self)
            return
        if self.session is not None and not self.ended:
            self.ended = True
            if self.client_failure is not None:
                # The browser reported its call failing (ICE, data channel) and then left.
                stage, message = self.client_failure
                await self._shutdown(f"client_error:{stage}", status=VoiceSession.Status.FAILED, error=message)
            else:
                await self._shutdown("disconnect", status=VoiceSession.Status.ENDED)

    def _sid(self) -> str:
        return str(self.session.pk) if self.session is not None else "-"


# A surrogate escape ("\\ud83d") or a raw surrogate: only then can decoded text hold an unpaired one.
_MAYBE_SURROGATE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}|[\ud800-\udfff]")


def _has_lone_surrogate(text: str, data: Any) -> bool:
    """Whether decoded JSON holds a lone surrogate: not Unicode text, and not storable in the database."""
    if not _MAYBE_SURROGATE.search(text):
        return False
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
