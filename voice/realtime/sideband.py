"""``OpenAIRealtimeSidebandClient``: the server's own connection to a call it created (server mode).

The browser holds the media; the server created the call (``calls.create_call``) and now attaches to it
with ``wss://.../realtime?call_id=rtc_...`` and the standard key. Every server event of the call arrives
here, parsed by the one parser (``events.parse_frame``); client events go out here, checked against the
client-event schemas first.

Connection behaviour (what the Django side can rely on):

* ``open()`` / ``connect()`` dial once; a failure raises the typed ``RealtimeError`` (401/403 auth, 404
  the call is unknown or over, 429, 5xx, timeout) with the key redacted, and leaves nothing running.
* When the socket drops while open (no close frame, a close code other than 1000, a missed keepalive
  pong), the client reconnects with jittered exponential backoff (``ReconnectPolicy``). Events of the
  call during the gap are lost upstream (OpenAI does not replay); the client queues a ``SidebandGap``
  event in the stream, in order, and calls ``on_gap(gap)``. Client events sent during the gap wait in a
  bounded buffer and go out, in order, once reconnected.
* A close with code 1000 from the server means the call ended (hang-up, expiry): no reconnection.
  A refusal that retrying cannot fix (401/403/404/400) ends reconnection at once; so do the policy's
  limits. Then a ``SidebandGap`` with ``ended_at=None`` is queued and the stream ends.
* The reader never dies silently: any failure is logged with its traceback and ends the stream
  (``end_reason == "reader_failed"``). ``end_reason`` says why a stream ended: ``closed`` (``close()``),
  ``call_ended``, ``gave_up``, ``reader_failed``, ``open_failed``.
* Raw frames: ``on_frame(RawFrame)`` sees every text frame in wire order, direction ``from_openai`` as
  read and ``to_openai`` once written, origin ``sideband``.
* Bounded everywhere: the event queue (``event_queue_size``), websockets' own incoming buffer
  (``max_queue`` frames), each frame (``max_frame_bytes``), the send buffer during a gap.

Transport: the ``websockets`` library (asyncio API), without permessage-deflate (its zlib contexts cost
far more memory per idle connection than the bandwidth it would save on small JSON events) and with one
shared TLS context; ``benchmarks/bench_sideband_client.py`` measures it against the ``openai`` SDK.

A second protocol (GPT-Live's ``/v1/live/sessions/{id}/attach``, ``voice.realtime.gptlive``) fits by
overriding ``sideband_url()``, ``_parse_all()`` and ``_check_outgoing()``; the connection, gap and tap
logic does not change.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import json
import logging
import random
import re
import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from voice.realtime.calls import (
    CALL_ID_PATTERN,
    AuthProvider,
    auth_headers,
    raise_for_status,
    secrets_of,
    tls_context,
)
from voice.realtime.client import (
    DEFAULT_EVENT_QUEUE_SIZE,
    ClientEventsMixin,
    FrameDirection,
    FrameTap,
    RawFrame,
    RealtimeClientBase,
    RealtimeClientProtocol,
    register_realtime_client,
)
from voice.realtime.errors import (
    REDACTED,
    RealtimeConfigError,
    RealtimeError,
    RealtimeProtocolError,
    RealtimeRateLimitedError,
    RealtimeTimeoutError,
    RealtimeUpstreamUnavailableError,
    redact,
)
from voice.realtime.events import (
    InvalidFrame,
    RealtimeEvent,
    SessionCreated,
    SessionUpdated,
    SidebandGap,
    parse_frame,
    validate_client_event,
)
from voice.realtime.providers import auth_for, credential_secrets, service_name
from voice.realtime.session import first_config, normalise_api_base

_module_logger = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT_SECONDS = 10.0
# Server events carry no audio on the sideband; the largest are session.* with long instructions and tool
# schemas, and response.done with its output. 4 MiB is ample and still bounds a runaway frame.
DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024
DEFAULT_PING_INTERVAL_SECONDS = 20.0
DEFAULT_PING_TIMEOUT_SECONDS = 20.0
DEFAULT_SEND_BUFFER_SIZE = 256
# websockets' incoming buffer, in frames, before it stops reading the socket (backpressure).
INCOMING_FRAME_BUFFER = 16
CLOSE_TIMEOUT_SECONDS = 2.0
# Refusals that another attempt cannot fix: the key, its permissions, the call (unknown or over).
_PERMANENT_STATUSES = {400, 401, 403, 404, 410, 422}
_FACTORY_KEYWORDS = {"call_id", "on_frame", "on_gap", "auth"}
_KEPT_HEADERS = {"content-type", "retry-after"}
_CREDENTIAL_HEADER = re.compile(r"(?im)^([<>] )?(authorization|api-key|proxy-authorization|cookie):.*$")


class _RedactCredentials(logging.Filter):
    """websockets logs every handshake header at DEBUG, the Authorization header included; the key must
    never reach a log line (DESIGN.md rule 6), so its wire logger gets this filter."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(_CREDENTIAL_HEADER.sub(lambda m: f"{m.group(1) or ''}{m.group(2)}: {REDACTED}", message))
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_wire_logger = logging.getLogger("voice.realtime.sideband.wire")
_wire_logger.addFilter(_RedactCredentials())

EndReason = Literal["closed", "call_ended", "gave_up", "reader_failed", "open_failed"]
GapCallback = Callable[[SidebandGap], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """How hard to try to get a dropped sideband back.

    Attempt ``n`` (from 1) waits ``min(max_delay, initial_delay * 2**(n-1))``, scaled by a random factor
    in [0.5, 1] so that many sessions dropped at once do not reconnect in step. Reconnection stops after
    ``max_attempts`` dials or ``give_up_after`` seconds since the drop, whichever comes first.
    """

    max_attempts: int = 8
    initial_delay: float = 0.25
    max_delay: float = 8.0
    give_up_after: float = 60.0

    def delay(self, attempt: int) -> float:
        base = min(self.max_delay, self.initial_delay * 2 ** max(0, attempt - 1))
        return base * (0.5 + random.random() / 2)

    @classmethod
    def from_config(cls, value: Any) -> ReconnectPolicy:
        if value is None:
            return cls()
        if isinstance(value, ReconnectPolicy):
            return value
        if not isinstance(value, dict):
            raise RealtimeConfigError(f"llm_config['reconnect'] must be an object, got {type(value).__name__}")
        unknown = set(value) - {"max_attempts", "initial_delay", "max_delay", "give_up_after"}
        if unknown:
            raise RealtimeConfigError(f"llm_config['reconnect'] has unknown keys {sorted(unknown)}")
        defaults = cls()
        return cls(
            max_attempts=int(_number(value.get("max_attempts", defaults.max_attempts), "reconnect.max_attempts", 0)),
            initial_delay=_number(value.get("initial_delay", defaults.initial_delay), "reconnect.initial_delay", 0),
            max_delay=_number(value.get("max_delay", defaults.max_delay), "reconnect.max_delay", 0),
            give_up_after=_number(value.get("give_up_after", defaults.give_up_after), "reconnect.give_up_after", 0),
        )


def sideband_url(api_base: str, call_id: str) -> str:
    """``wss://<host>/v1/realtime?call_id=...`` for an https base, ``ws://`` for http (the emulator)."""
    parts = urlsplit(api_base.rstrip("/"))
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path + "/realtime", urlencode({"call_id": call_id}), ""))


@register_realtime_client
class OpenAIRealtimeSidebandClient(ClientEventsMixin, RealtimeClientBase):
    """The server's sideband to one OpenAI Realtime call (GA), with the seed's client API.

    ``llm_config["config_list"][0]``: ``model`` (required, as for every client), ``api_key`` (the
    standard key; without one no Authorization header is sent, which suits the emulator), ``api_type``
    (``"openai"``, or ``"azure"``: then ``api_key`` goes in an ``api-key`` header, or ``azure_ad_token``
    as a Bearer token, and ``base_url`` is the resource's ``.../openai/v1``), ``base_url`` (default
    ``https://api.openai.com/v1``).

    Top-level ``llm_config`` keys, all optional: ``session_id`` (ours, for the logs), ``timeout`` (seconds
    to open the socket, default 10), ``event_queue_size`` (default 1000), ``max_frame_bytes`` (default
    4 MiB), ``ping_interval`` / ``ping_timeout`` (keepalive, default 20 / 20 s), ``send_buffer_size``
    (client events held during a gap, default 256), ``reconnect`` (``ReconnectPolicy`` fields).

    Keyword arguments: ``call_id`` (required), ``on_frame`` (raw-frame tap), ``on_gap`` (called, sync or
    async, with each ``SidebandGap``), ``auth`` (a credential hook, see ``calls.AuthProvider``).
    """

    supports: ClassVar[str] = (
        "api_type 'openai', 'azure' or absent, with the keyword call_id (and optionally on_frame, on_gap, auth)"
    )
    origin: ClassVar[Literal["sideband"]] = "sideband"

    def __init__(
        self,
        *,
        llm_config: dict[str, Any],
        call_id: str,
        logger: logging.Logger | None = None,
        on_frame: FrameTap | None = None,
        on_gap: GapCallback | None = None,
        auth: AuthProvider | None = None,
    ) -> None:
        if not isinstance(call_id, str) or not CALL_ID_PATTERN.match(call_id):
            raise RealtimeConfigError("call_id must be the id OpenAI gave the call (letters, digits, '_', '-').")
        self._llm_config = llm_config
        self._logger = logger
        self._call_id = call_id
        config = first_config(llm_config)
        self._model: str = config["model"]
        self._api_key: str | None = config.get("api_key") or None
        self._service = service_name(config.get("api_type"))
        self._base_url = normalise_api_base(config.get("base_url"), self.logger)
        self._session_id = str(llm_config.get("session_id") or uuid.uuid4())
        self._timeout = _number(llm_config.get("timeout", DEFAULT_CONNECT_TIMEOUT_SECONDS), "timeout", 0.001)
        self._max_frame_bytes = int(
            _number(llm_config.get("max_frame_bytes", DEFAULT_MAX_FRAME_BYTES), "max_frame_bytes", 1024)
        )
        self._ping_interval = _number(
            llm_config.get("ping_interval", DEFAULT_PING_INTERVAL_SECONDS), "ping_interval", 0.01
        )
        self._ping_timeout = _number(llm_config.get("ping_timeout", DEFAULT_PING_TIMEOUT_SECONDS), "ping_timeout", 0.01)
        self._send_buffer_size = int(
            _number(llm_config.get("send_buffer_size", DEFAULT_SEND_BUFFER_SIZE), "send_buffer_size", 0)
        )
        self.reconnect_policy = ReconnectPolicy.from_config(llm_config.get("reconnect"))
        queue_size = int(_number(llm_config.get("event_queue_size", DEFAULT_EVENT_QUEUE_SIZE), "event_queue_size", 1))
        super().__init__(event_queue_size=queue_size)

        self._auth = auth or auth_for(config)
        self._on_frame = on_frame
        self._on_gap = on_gap
        self._secrets: list[str] = credential_secrets(config)

        self._state: Literal["new", "open", "closed"] = "new"
        self._ws: ClientConnection | None = None  # None during a gap
        self._supervisor: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()
        self._pending: collections.deque[str] = collections.deque()
        self._finished = False  # no more sending: closed, call ended or gave up
        self._end_queued = False
        self._tap_failed = False
        self._active_responses: set[str] = set()
        self.gaps: list[SidebandGap] = []
        self.end_reason: EndReason | None = None
        # The error that ended the stream (open failed, reconnection refused or exhausted), if any.
        self.failure: RealtimeError | None = None
        # Only the id is kept: observers get the whole session in the SessionCreated event, and holding a
        # copy per client cost ~4 KiB of every idle session (benchmarks/bench_sideband_client.py).
        self._openai_session_id: str | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} call_id={self._call_id!r} session_id={self._session_id!r}>"

    # --- properties -------------------------------------------------------------------------------

    @property
    def logger(self) -> logging.Logger:
        return self._logger or _module_logger

    @property
    def call_id(self) -> str:
        return self._call_id

    @property
    def session_id(self) -> str:
        return self._session_id

    @property
    def model(self) -> str:
        return self._model

    @property
    def api_base(self) -> str:
        return self._base_url

    @property
    def url(self) -> str:
        return self.sideband_url()

    @property
    def connected(self) -> bool:
        """A socket is open right now (False before ``open()``, during a gap and after the end)."""
        return self._ws is not None and self._state == "open"

    @property
    def openai_session_id(self) -> str | None:
        """OpenAI's ``sess_...`` id, from the ``session.created`` the sideband gets on attach."""
        return self._openai_session_id

    # --- protocol hooks (override for another protocol) ----------------------------------------------

    def sideband_url(self) -> str:
        return sideband_url(self._base_url, self._call_id)

    def _parse(self, text: str) -> RealtimeEvent:
        return parse_frame(text)

    def _parse_all(self, text: str) -> list[RealtimeEvent]:
        """The typed events of one frame (one, for Realtime; GPT-Live's frames may mean several)."""
        return [self._parse(text)]

    def _after_event(self, event: RealtimeEvent) -> None:
        """Called once an event is queued (a protocol that must answer some events on its own does it here)."""

    def _check_outgoing(self, event: dict[str, Any]) -> None:
        """Raise ``ValueError`` (pydantic's ``ValidationError`` is one) unless ``event`` is a client event."""
        if not isinstance(event, dict) or str(event.get("type", "")).startswith("ag2."):
            raise ValueError("Only OpenAI client events go over the sideband, not ag2.* frames.")
        validate_client_event(event)

    # --- lifecycle --------------------------------------------------------------------------------

    async def open(self) -> None:
        """Dial the sideband and start reading. Raises the typed ``RealtimeError`` if it cannot attach."""
        if self._state != "new":
            raise RuntimeError(f"{type(self).__name__}.open() may be called once per client")
        self._state = "open"
        try:
            ws = await self._dial()
        except BaseException as exc:
            self._state = "closed"
            self._finished = True
            self.end_reason = "open_failed"
            self.failure = exc if isinstance(exc, RealtimeError) else None
            self._queue_end()
            if isinstance(exc, RealtimeError):
                self.logger.warning("Sideband of call %s could not open: [%s] %s", self._call_id, exc.code, exc)
            raise
        self._ws = ws
        self._stream_ended = False
        self.logger.info("Sideband of call %s open (session %s)", self._call_id, self._session_id)
        self._supervisor = asyncio.create_task(self._run(ws), name=f"sideband-{self._call_id}")

    async def close(self) -> None:
        """Stop reading and close the socket. Idempotent; safe before ``open()`` and from any task.

        Does not hang up the call (``calls.hangup`` does): another process may re-attach to it.
        """
        if self._state == "closed" and self._supervisor is None:
            self._queue_end()
            return
        self._state = "closed"
        self._finished = True
        if self.end_reason is None:
            self.end_reason = "closed"
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None and supervisor is not asyncio.current_task():
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        self._drop_pending()
        self._queue_end()

    @asynccontextmanager
    async def connect(self) -> AsyncGenerator[None, None]:
        """``open()`` on entry, ``close()`` on exit; nothing is left running."""
        await self.open()
        try:
            yield
        finally:
            await self.close()

    async def _start_own_reader(self) -> Callable[[], Awaitable[None]] | None:
        """``read_events()`` without ``connect()`` opens the sideband for as long as it reads."""
        if self._state != "new":
            return None
        await self.open()
        return self.close

    # --- sending ----------------------------------------------------------------------------------
    # send_function_result, send_text, truncate_audio and session_update are ClientEventsMixin's.

    async def send_event(self, event: dict[str, Any]) -> None:
        """Send one client event (checked against the client-event schemas: ``ValueError`` if malformed).

        During a gap it waits in the send buffer and goes out once reconnected; a full buffer, or a
        sideband that has ended, raises ``RealtimeUpstreamUnavailableError`` (the event is not sent).
        """
        self._check_outgoing(event)
        text = json.dumps(event, ensure_ascii=False)
        async with self._send_lock:
            if self._finished or self._state == "new":
                state = "has ended" if self._finished else "is not open yet"
                raise RealtimeUpstreamUnavailableError(f"The connection to the call {state}; the event was not sent.")
            ws = self._ws
            if ws is None:
                self._hold(text)
                return
            try:
                await ws.send(text)
            except ConnectionClosed:
                # The socket died under us; the reader will notice and reconnect, then this goes out.
                self._hold(text)
                return
            self._tap("to_openai", text)

    _send_client_event = send_event

    async def send_audio(self, audio: str) -> None:
        """The browser sends the audio over WebRTC; queue it so observers can log it (as the seed did)."""
        await self.queue_input_audio_buffer_delta(audio)

    def session_init_data(self) -> list[dict[str, Any]]:
        """Nothing: in server mode the session goes with ``create_call``, before the sideband opens."""
        return []

    def _hold(self, text: str) -> None:
        if len(self._pending) >= self._send_buffer_size:
            raise RealtimeUpstreamUnavailableError(
                "The connection to the call is down and too many events are waiting; the event was not sent."
            )
        self._pending.append(text)

    def _drop_pending(self) -> None:
        if self._pending:
            self.logger.warning(
                "Sideband of call %s ended with %d client event(s) unsent", self._call_id, len(self._pending)
            )
            self._pending.clear()

    # --- dialling ---------------------------------------------------------------------------------

    async def _dial(self) -> ClientConnection:
        url = self.sideband_url()
        headers = await auth_headers(self._auth)
        secrets = secrets_of(self._api_key, headers)
        self._secrets = secrets
        try:
            async with asyncio.timeout(self._timeout):
                return await websockets.connect(
                    url,
                    additional_headers=headers,
                    open_timeout=self._timeout,
                    close_timeout=CLOSE_TIMEOUT_SECONDS,
                    ping_interval=self._ping_interval,
                    ping_timeout=self._ping_timeout,
                    max_size=self._max_frame_bytes,
                    max_queue=INCOMING_FRAME_BUFFER,
                    compression=None,
                    ssl=tls_context() if url.startswith("wss:") else None,
                    user_agent_header=f"realtime-voice websockets/{websockets.__version__}",
                    logger=_wire_logger,
                )
        except InvalidStatus as exc:
            response = exc.response
            # The handshake's HTTP answer, read with the same rules as any other OpenAI answer.
            kept = {name: value for name, value in response.headers.raw_items() if name.lower() in _KEPT_HEADERS}
            as_http = httpx.Response(response.status_code, headers=kept, content=bytes(response.body or b""))
            raise_for_status(as_http, secrets, action="attach to the call", model=self._model, service=self._service)
            raise RealtimeProtocolError(
                f"{self._service} answered the sideband request with HTTP {response.status_code} instead of a "
                "websocket.",
                status_code=response.status_code,
            ) from None
        except TimeoutError:
            raise RealtimeTimeoutError(
                f"{self._service} did not accept the call's sideband connection within {self._timeout:g} s. Try again."
            ) from None
        except (OSError, WebSocketException) as exc:
            raise RealtimeUpstreamUnavailableError(
                f"Could not reach {self._service} for the call's sideband ({type(exc).__name__}: "
                f"{redact(str(exc), secrets)[:200]}). Try again in a moment."
            ) from None

    # --- reading ----------------------------------------------------------------------------------

    async def _run(self, ws: ClientConnection) -> None:
        """Read, and reconnect after drops, until the call ends, ``close()``, or reconnection gives up."""
        try:
            while True:
                reason = await self._pump(ws)
                if self._state == "closed":
                    return
                if ws.close_code == 1000:
                    self.end_reason = "call_ended"
                    self.logger.info("Sideband of call %s closed by OpenAI: the call ended", self._call_id)
                    return
                reconnected = await self._reconnect(reason)
                if reconnected is None:
                    self.end_reason = "gave_up"
                    return
                ws = reconnected
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.end_reason = "reader_failed"
            self.logger.error("Sideband reader of call %s failed; the event stream ends", self._call_id, exc_info=exc)
            current = self._ws
            if current is not None:
                with contextlib.suppress(Exception):
                    await current.close()
        finally:
            self._finished = True
            self._ws = None
            if self._state != "closed":
                self._drop_pending()
            self._queue_end()

    async def _pump(self, ws: ClientConnection) -> str:
        """Queue every frame of ``ws`` as a typed event until it closes; return how it closed."""
        try:
            async for message in ws:
                text = message if isinstance(message, str) else message.decode("utf-8", "replace")
                self._tap("from_openai", text)
                for event in self._parse_all(text):
                    self._observe(event)
                    # Waits while the queue is full: websockets then stops reading the socket (backpressure).
                    await self.add_event(event)
                    self._after_event(event)
        except ConnectionClosed:
            pass
        async with self._send_lock:
            if self._ws is ws:
                self._ws = None
        return _describe_close(ws)

    def _observe(self, event: RealtimeEvent) -> None:
        if isinstance(event, InvalidFrame):
            self.logger.warning(
                "Unreadable frame on the sideband of call %s: [%s] %s; frame: %r",
                self._call_id,
                event.code,
                event.message,
                event.excerpt,
            )
        elif isinstance(event, SessionCreated | SessionUpdated) and event.session_id:
            self._openai_session_id = event.session_id
        self._track_response(event)

    async def _reconnect(self, reason: str) -> ClientConnection | None:
        started_at = time.time()
        started = time.monotonic()
        policy = self.reconnect_policy
        self.logger.warning("Sideband of call %s dropped (%s); reconnecting", self._call_id, reason)
        attempts = 0
        while attempts < policy.max_attempts and time.monotonic() - started < policy.give_up_after:
            attempts += 1
            delay = policy.delay(attempts)
            if isinstance(self.failure, RealtimeRateLimitedError) and self.failure.retry_after:
                delay = max(delay, min(self.failure.retry_after, policy.max_delay))
            await asyncio.sleep(min(delay, max(0.0, policy.give_up_after - (time.monotonic() - started))))
            try:
                ws = await self._dial()
            except RealtimeError as exc:
                self.failure = exc
                permanent = exc.status_code in _PERMANENT_STATUSES
                self.logger.warning(
                    "Sideband of call %s: reconnection attempt %d failed: [%s] %s",
                    self._call_id,
                    attempts,
                    exc.code,
                    exc,
                )
                if permanent:
                    break
                continue
            self.failure = None
            gap = self._gap(started_at, time.time(), attempts, reason)
            self.logger.warning(
                "Sideband of call %s reconnected after %.2f s (%d attempt(s)); events in between were not received",
                self._call_id,
                gap.duration or 0.0,
                attempts,
            )
            await self._report_gap(gap)
            async with self._send_lock:
                # Held client events first, in order; later sends wait for the lock and follow them.
                while self._pending:
                    text = self._pending[0]
                    try:
                        await ws.send(text)
                    except ConnectionClosed:
                        break  # dropped again at once: they stay held for the next reconnection
                    self._pending.popleft()
                    self._tap("to_openai", text)
                self._ws = ws
            return ws
        self.logger.error(
            "Sideband of call %s could not be reconnected after %d attempt(s) in %.1f s; the event stream ends",
            self._call_id,
            attempts,
            time.monotonic() - started,
        )
        await self._report_gap(self._gap(started_at, None, attempts, reason))
        return None

    def _gap(self, started_at: float, ended_at: float | None, attempts: int, reason: str) -> SidebandGap:
        fields: dict[str, Any] = {
            "call_id": self._call_id,
            "started_at": started_at,
            "ended_at": ended_at,
            "attempts": attempts,
            "reason": reason,
        }
        return SidebandGap(**fields, raw_message={"type": "ag2.sideband_gap", **fields})

    async def _report_gap(self, gap: SidebandGap) -> None:
        self.gaps.append(gap)
        await self.add_event(gap)
        if self._on_gap is None:
            return
        try:
            result = self._on_gap(gap)
            if inspect.isawaitable(result):
                await result
        except Exception:
            self.logger.exception("on_gap callback failed for the sideband of call %s", self._call_id)

    def _tap(self, direction: FrameDirection, text: str) -> None:
        if self._on_frame is None:
            return
        try:
            self._on_frame(RawFrame(direction=direction, origin=self.origin, text=text, call_id=self._call_id))
        except Exception:
            if not self._tap_failed:
                self._tap_failed = True
                self.logger.exception("Raw-frame tap failed on the sideband of call %s (logged once)", self._call_id)

    def _queue_end(self) -> None:
        if not self._end_queued:
            self._end_queued = True
            # add_event(None) never waits (the end marker bypasses the bound), so this cannot block.
            self._ends_pending += 1
            self._event_queue.put_nowait(None)

    # --- registry ---------------------------------------------------------------------------------

    @classmethod
    def get_factory(
        cls, llm_config: dict[str, Any], logger: logging.Logger, **kwargs: Any
    ) -> Callable[[], RealtimeClientProtocol] | None:
        """A factory when ``api_type`` is ``"openai"``, ``"azure"`` or absent and ``call_id`` is given (with at most
        ``on_frame``, ``on_gap`` and ``auth`` besides); else ``None``."""
        try:
            api_type = llm_config["config_list"][0].get("api_type", "openai")
        except (KeyError, IndexError, TypeError, AttributeError):
            return None
        if api_type not in ("openai", "azure") or "call_id" not in kwargs or not set(kwargs) <= _FACTORY_KEYWORDS:
            return None
        if llm_config.get("protocol", "realtime") != "realtime":
            return None  # another protocol's session (GPT-Live: voice.realtime.gptlive)
        return lambda: cls(llm_config=llm_config, logger=logger, **kwargs)


def _describe_close(ws: ClientConnection) -> str:
    code = ws.close_code
    if ws.protocol.close_rcvd is None:
        return f"close {code} (no close frame from OpenAI)"
    reason = ws.close_reason
    return f"close {code}" + (f" ({reason[:80]})" if reason else "")


def _number(value: Any, name: str, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RealtimeConfigError(f"llm_config[{name!r}] must be a number, got {type(value).__name__}")
    if value < minimum:
        raise RealtimeConfigError(f"llm_config[{name!r}] must be at least {minimum:g}, got {value!r}")
    return float(value)


__all__ = ["GapCallback", "OpenAIRealtimeSidebandClient", "ReconnectPolicy", "sideband_url"]
