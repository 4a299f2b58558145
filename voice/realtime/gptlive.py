"""GPT-Live (``/v1/live/sessions``) as a second protocol behind the same client interface.

docs/gpt-live.md says what GPT-Live is and which of its unknowns this code settles by a rule. Here:

* ``create_live_session``: the browser's offer goes to ``POST {base}/live/sessions`` as JSON
  (``{"session", "transport": {"type": "webrtc", "sdp"}}``), answered HTTP 201 with
  ``{"session": {"id"}, "transport": {"sdp"}}``; failures are the same typed errors as Realtime's.
* ``live_hangup``: ``POST {base}/live/sessions/{id}/hangup``; an ended session (404,
  ``session_id_not_found``) counts as hung up.
* ``GPTLiveSidebandClient``: the sideband ``wss://.../live/sessions/{id}/attach``, with the Realtime
  sideband's connection, reconnection, gap and tap logic (it subclasses it) and the seed's client API:
  ``send_function_result`` answers a delegation to this server with ``session.commentary.append`` and a
  function call of the delegated model with ``response.item.create`` (then ``response.create`` once the
  response's calls are all answered and it has ended); ``send_text`` (a typed line) becomes
  ``session.instructions.append`` under client delegation, a user message plus ``response.create``
  under Responses delegation; ``truncate_audio`` and ``session_update`` do nothing (GPT-Live has no
  truncation, and its configuration is fixed when the session is created).
* ``LiveEventMapper``: GPT-Live's frames as typed events (``gptlive_events``), including the rules that
  turn timed fragments into transcript lines and delegations into tool calls.

No Django here (DESIGN.md rule 1).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
from pydantic import ValidationError

from voice.realtime import boundedjson
from voice.realtime.calls import (
    CALL_ID_PATTERN,
    DEFAULT_TIMEOUT_SECONDS,
    MAX_ANSWER_CHARS,
    AuthProvider,
    CreatedCall,
    auth_headers,
    bearer_auth,
    raise_for_status,
    secrets_of,
    tls_context,
    upstream_error,
)
from voice.realtime.client import RealtimeClientProtocol, Role, register_realtime_client
from voice.realtime.errors import (
    RealtimeConfigError,
    RealtimeProtocolError,
    RealtimeRequestRejectedError,
    RealtimeTimeoutError,
    RealtimeUpstreamUnavailableError,
    redact,
)
from voice.realtime.events import FunctionCall, RealtimeEvent, parse_event, parse_frame
from voice.realtime.gptlive_events import (
    LiveAudioCopy,
    LiveBackendResponseDone,
    LiveDelegationEnded,
    LiveDelegationStarted,
    LiveSessionClosed,
    LiveSessionStarted,
    LiveTranscriptDelta,
    LiveTranscriptLineDone,
    LiveUsage,
    responses_usage,
)
from voice.realtime.gptlive_schema import MAX_APPEND_CHARS, validate_live_client_event, validate_media_session
from voice.realtime.sideband import OpenAIRealtimeSidebandClient

logger = logging.getLogger(__name__)

PROTOCOL = "gpt-live"
# Server-side settings travel with the session under this key and are taken out before it is sent.
SERVER_SETTINGS_KEY = "ag2_live"
DEFAULT_TRANSCRIPT_GAP_MS = 2000
_TERMINALS: dict[str, Literal["succeeded", "failed"]] = {
    "response.completed": "succeeded", "response.failed": "failed", "response.incomplete": "failed"}
_FACTORY_KEYWORDS = {"call_id", "on_frame", "on_gap", "auth"}


def split_session(session: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what GPT-Live is sent, this server's own settings) from a stored Live session payload."""
    wire = {key: value for key, value in session.items() if key != SERVER_SETTINGS_KEY}
    settings = session.get(SERVER_SETTINGS_KEY)
    return wire, dict(settings) if isinstance(settings, Mapping) else {}


def live_url(api_base: str, *parts: str) -> str:
    return "/".join([api_base.rstrip("/"), "live", "sessions", *(quote(p, safe="") for p in parts)])


async def create_live_session(
    api_base: str,
    offer_sdp: str,
    session: Mapping[str, Any],
    *,
    auth: AuthProvider | None = None,
    api_key: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    http: httpx.AsyncClient | None = None,
    service: str = "OpenAI",
) -> CreatedCall:
    """Create a GPT-Live WebRTC session for the browser's offer; return ``(answer_sdp, session_id)``.

    ``session`` is GPT-Live's ``MediaSessionConfig`` (``ag2_live`` is taken out first); it is checked here
    (``RealtimeConfigError`` when GPT-Live would refuse it). Errors as ``calls.create_call``'s.
    """
    if not isinstance(offer_sdp, str) or not offer_sdp.lstrip().startswith("v=0"):
        raise RealtimeRequestRejectedError(
            "The browser's call offer is not an SDP offer. Reload the page and try again.")
    wire, _ = split_session(session)
    try:
        checked = validate_media_session(wire)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise RealtimeConfigError(f"The GPT-Live session is not valid: {problems}") from None
    headers = await auth_headers(auth or bearer_auth(api_key))
    secrets = secrets_of(api_key, headers)
    body = {"session": checked, "transport": {"type": "webrtc", "sdp": offer_sdp}}
    url = live_url(api_base)
    try:
        async with asyncio.timeout(timeout):
            if http is not None:
                response = await http.post(url, headers=headers, json=body, timeout=timeout)
            else:
                async with httpx.AsyncClient(timeout=timeout, verify=tls_context()) as own:
                    response = await own.post(url, headers=headers, json=body)
    except (TimeoutError, httpx.TimeoutException):
        raise RealtimeTimeoutError(
            f"{service} did not answer the call request within {timeout:g} s. Try again; if it keeps happening, "
            "check the network."
        ) from None
    except httpx.HTTPError as exc:
        raise RealtimeUpstreamUnavailableError(
            f"Could not reach {service} to start the call ({type(exc).__name__}: {redact(str(exc), secrets)}). "
            "Try again in a moment."
        ) from None
    raise_for_status(response, secrets, action="start the call", model=checked.get("model"), service=service)
    try:
        answer = response.json()
        session_id = answer["session"]["id"]
        sdp = answer["transport"]["sdp"]
    except (ValueError, KeyError, TypeError):
        session_id = sdp = None
    if not isinstance(sdp, str) or not sdp.lstrip().startswith("v=") or len(sdp) > MAX_ANSWER_CHARS:
        raise RealtimeProtocolError(
            f"{service} answered HTTP {response.status_code} without an SDP answer. Check that the API base points "
            f"at {service} (or the emulator).",
            status_code=response.status_code,
        )
    if not isinstance(session_id, str) or not CALL_ID_PATTERN.match(session_id):
        raise RealtimeProtocolError(
            f"{service} answered HTTP {response.status_code} without a usable session id. Check that the API base "
            f"points at {service} (or the emulator).",
            status_code=response.status_code,
        )
    return CreatedCall(sdp, session_id)


async def live_hangup(api_base: str, session_id: str, *, auth: AuthProvider | None = None,
                      api_key: str | None = None, timeout: float = 5.0) -> bool:
    """End a GPT-Live session (as pydantic-ai does for WebRTC sessions too). True if it is gone."""
    if not CALL_ID_PATTERN.match(session_id or ""):
        logger.warning("Not hanging up a malformed GPT-Live session id %r", (session_id or "")[:40])
        return False
    headers = await auth_headers(auth or bearer_auth(api_key))
    try:
        async with httpx.AsyncClient(timeout=timeout, verify=tls_context()) as http:
            response = await http.post(live_url(api_base, session_id, "hangup"), headers=headers)
    except httpx.HTTPError as exc:
        logger.warning("Hang-up of GPT-Live session %s failed: %s", session_id, exc.__class__.__name__)
        return False
    if response.is_success or response.status_code == 404:
        return True
    code, _ = upstream_error(response, secrets_of(api_key, headers))
    if code == "session_id_not_found":
        return True
    logger.warning("Hang-up of GPT-Live session %s answered %d", session_id, response.status_code)
    return False


# --- frames -> typed events -----------------------------------------------------------------------------


Speaker = Literal["user", "assistant"]


@dataclass
class _Line:
    line_id: str
    role: Speaker
    end_ms: int


@dataclass
class _Delegation:
    delegation_id: str
    target: str
    started: float
    output: list[str] = field(default_factory=list)


@dataclass
class _BackendResponse:
    response_id: str
    delegation_id: str | None
    calls: set[str] = field(default_factory=set)  # function calls not yet answered
    made_calls: bool = False
    ended: bool = False


class LiveEventMapper:
    """GPT-Live's frames as typed events (the module docstring; docs/gpt-live.md, "Onto the record").

    Transcript lines (GPT-Live has no turns): a fragment joins the open line of its speaker when it starts
    within ``gap_ms`` of that line's end; otherwise that line is over and a new one starts. A fragment of
    one speaker ends the other speaker's line only once it is later than that line's end plus the gap, so
    the user's closing punctuation that arrives after the model started answering still lands on the
    user's line (an interleaving the reference notes). The session's close ends every line.
    """

    def __init__(self, *, gap_ms: int = DEFAULT_TRANSCRIPT_GAP_MS, backend_tool: str = "",
                 request_argument: str = "", responses_model: str = "",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.gap_ms = gap_ms
        self.backend_tool = backend_tool
        self.request_argument = request_argument
        self.responses_model = responses_model
        self._clock = clock
        self._lines: dict[Speaker, _Line] = {}  # the open line of each speaker
        self._last_line_id: str | None = None
        self._line_numbers = itertools.count(1)
        self._user_words: list[str] = []  # the user's words since the last delegation
        self.client_delegations: set[str] = set()
        self._delegations: dict[str, _Delegation] = {}
        self.responses: dict[str, _BackendResponse] = {}
        self._call_response: dict[str, str] = {}  # function call id -> its response
        self.session_id: str | None = None
        self.started = False

    def map_frame(self, text: str) -> list[RealtimeEvent]:
        try:
            message = boundedjson.loads(text)
        except ValueError:
            return [parse_frame(text)]  # an InvalidFrame saying what was wrong
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            return [parse_frame(text)]
        try:
            return self.map(message)
        except (ValidationError, ValueError, TypeError, KeyError) as exc:
            logger.warning("GPT-Live %s frame not understood (%s); kept as it came", message["type"],
                           type(exc).__name__)
            return [RealtimeEvent(type=message["type"], raw_message=message)]

    def map(self, message: dict[str, Any]) -> list[RealtimeEvent]:
        kind = message["type"]
        event_id = _text(message.get("event_id"))
        common: dict[str, Any] = {"event_id": event_id, "raw_message": message}
        if kind in ("session.started", "session.updated"):
            session = _object(message.get("session"))
            if kind == "session.started":
                self.started = True
                started_id = _text(session.get("id"))
                self.session_id = started_id if started_id is not None else self.session_id
            return [LiveSessionStarted(type=kind, session_id=session.get("id"), model=session.get("model"), **common)]
        if kind in ("session.input_transcript.delta", "session.output_transcript.delta"):
            role: Speaker = "user" if kind == "session.input_transcript.delta" else "assistant"
            return self._fragment(role, message, common)
        if kind == "session.input_audio.append":
            return [LiveAudioCopy(direction="input", audio=str(message.get("audio") or ""), raw_message={"type": kind})]
        if kind == "session.output_audio.delta":
            return [LiveAudioCopy(direction="output", audio=str(message.get("delta") or ""),
                                  start_ms=_ms(message.get("start_ms")), end_ms=_ms(message.get("end_ms")),
                                  raw_message={"type": kind})]
        if kind == "session.delegation.created":
            return self._delegation(message, common)
        if kind == "response.event":
            return self._response_event(message, common)
        if kind == "session.usage.updated":
            return [self._usage(message.get("usage"), final=False, common=common)]
        if kind == "session.closed":
            events: list[RealtimeEvent] = self._close_lines()
            events.append(self._usage(message.get("usage"), final=True, common=common))
            events.append(LiveSessionClosed(reason=str(message.get("reason") or ""), **common))
            return events
        if kind == "error":
            return [parse_event(message)]
        return [RealtimeEvent(type=kind, **common)]

    # --- transcript lines ---

    def _fragment(self, role: Speaker, message: dict[str, Any], common: dict[str, Any]) -> list[RealtimeEvent]:
        delta = _text(message.get("delta")) or ""
        start, end = _ms(message.get("start_ms")), _ms(message.get("end_ms"))
        at = start if start is not None else max((line.end_ms for line in self._lines.values()), default=0)
        events: list[RealtimeEvent] = []
        other = self._lines.get("assistant" if role == "user" else "user")
        if other is not None and at > other.end_ms + self.gap_ms:
            events.append(self._end_line(other))
        line = self._lines.get(role)
        if line is not None and at > line.end_ms + self.gap_ms:
            events.append(self._end_line(line))
            line = None
        previous = None
        if line is None:
            previous = self._last_line_id
            prefix = "in" if role == "user" else "out"
            line = _Line(f"live_{prefix}_{next(self._line_numbers)}", role, end if end is not None else at)
            self._lines[role] = line
            self._last_line_id = line.line_id
        line.end_ms = max(line.end_ms, end if end is not None else at)
        if role == "user" and delta:
            self._user_words.append(delta)
        events.append(LiveTranscriptDelta(role=role, line_id=line.line_id, previous_line_id=previous,
                                          delta=delta, start_ms=start, end_ms=end, **common))
        return events

    def _end_line(self, line: _Line) -> LiveTranscriptLineDone:
        self._lines.pop(line.role, None)
        return LiveTranscriptLineDone(role=line.role, line_id=line.line_id)

    def _close_lines(self) -> list[RealtimeEvent]:
        return [self._end_line(line) for line in list(self._lines.values())]

    # --- delegations ---

    def _delegation(self, message: dict[str, Any], common: dict[str, Any]) -> list[RealtimeEvent]:
        info = _object(message.get("delegation"))
        delegation_id, target = info.get("id"), info.get("target")
        if not isinstance(delegation_id, str) or not delegation_id:
            return [RealtimeEvent(type=message["type"], **common)]
        if delegation_id in self._delegations:
            return [RealtimeEvent(type=message["type"], **common)]  # "claim the ID once"
        self._delegations[delegation_id] = _Delegation(delegation_id, str(target), self._clock())
        if target == "client":
            self.client_delegations.add(delegation_id)
            request = "".join(self._user_words).strip()
            self._user_words.clear()
            arguments = {self.request_argument: request} if self.request_argument and request else {}
            # Served like a tool call by the agent's tool observer: bounded by the tool's timeout, cancelled
            # with the session, answered once (send_function_result), recorded as a tool call.
            return [FunctionCall(name=self.backend_tool, call_id=delegation_id, arguments=arguments,
                                 **common)]
        response_id = _text(info.get("response_id"))
        if response_id:
            self.responses.setdefault(response_id, _BackendResponse(response_id, delegation_id))
        return [LiveDelegationStarted(delegation_id=delegation_id, target=str(target), response_id=response_id,
                                      offset_ms=_ms(message.get("offset_ms")), **common)]

    def _response_event(self, message: dict[str, Any], common: dict[str, Any]) -> list[RealtimeEvent]:
        nested = _object(message.get("event"))
        kind = nested.get("type")
        delegation_id = _text(message.get("delegation_id"))
        response = _object(nested.get("response"))
        own_id = _text(response.get("id"))
        response_id = own_id if own_id is not None else nested.get("response_id")
        if kind == "response.created" and isinstance(response_id, str):
            self.responses.setdefault(response_id, _BackendResponse(response_id, delegation_id))
            return [RealtimeEvent(type="response.event", **common)]
        if kind == "response.output_text.delta" and delegation_id in self._delegations:
            delta = nested.get("delta")
            if isinstance(delta, str):
                self._delegations[delegation_id].output.append(delta)
            return [RealtimeEvent(type="response.event", **common)]
        if kind == "response.output_item.done":
            item = _object(nested.get("item"))
            if item.get("type") == "function_call" and item.get("status") in (None, "completed"):
                # "Read function calls from output_item.done" (the reference, 4.2): one call runs once.
                call = parse_event({**nested, "type": "response.output_item.done"})
                owner = self._owner(response_id, delegation_id)
                if isinstance(call, FunctionCall) and owner is not None:
                    owner.calls.add(call.call_id)
                    owner.made_calls = True
                    self._call_response[call.call_id] = owner.response_id
                call.raw_message = message
                return [call]
            return [RealtimeEvent(type="response.event", **common)]
        if kind in _TERMINALS:
            return self._terminal(kind, response, response_id, delegation_id, common)
        return [RealtimeEvent(type="response.event", **common)]

    def _owner(self, response_id: Any, delegation_id: str | None) -> _BackendResponse | None:
        if isinstance(response_id, str):
            return self.responses.setdefault(response_id, _BackendResponse(response_id, delegation_id))
        for response in reversed(list(self.responses.values())):
            if response.delegation_id == delegation_id and not response.ended:
                return response
        return None

    def _terminal(self, kind: str, response: dict[str, Any], response_id: Any, delegation_id: str | None,
                  common: dict[str, Any]) -> list[RealtimeEvent]:
        owner = self._owner(response_id, delegation_id)
        if owner is not None:
            owner.ended = True
            delegation_id = delegation_id or owner.delegation_id
        events: list[RealtimeEvent] = [LiveBackendResponseDone(
            response_id=response_id if isinstance(response_id, str) else None,
            status=str(response.get("status") or kind.rsplit(".", 1)[-1]),
            usage=responses_usage(response.get("usage")), model=self.responses_model, **common)]
        delegation = self._delegations.get(delegation_id or "")
        # A response that asked for functions goes on (response.create) with another response; the
        # delegation ends with the first that did not.
        if delegation is not None and not (owner is not None and owner.made_calls and _TERMINALS[kind] == "succeeded"):
            del self._delegations[delegation.delegation_id]
            events.append(LiveDelegationEnded(
                delegation_id=delegation.delegation_id, status=_TERMINALS[kind],
                output="".join(delegation.output),
                duration_ms=int((self._clock() - delegation.started) * 1000)))
        return events

    def answered(self, call_id: str) -> _BackendResponse | None:
        """A function call was answered; the response it belongs to when that response may now go on."""
        response_id = self._call_response.pop(call_id, None)
        response = self.responses.get(response_id or "")
        if response is None:
            return None
        response.calls.discard(call_id)
        return response if not response.calls else None

    # --- usage ---

    def _usage(self, usage: Any, *, final: bool, common: dict[str, Any]) -> LiveUsage:
        usage = usage if isinstance(usage, dict) else {}
        return LiveUsage(type="session.closed" if final else "session.usage.updated",
                         seconds=_seconds(usage.get("seconds")), standby_seconds=_seconds(usage.get("standby_seconds")),
                         final=final, **common)


def _object(value: Any) -> dict[str, Any]:
    """A JSON object of a frame, or an empty one when the frame had something else there."""
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    """A string of a frame, or None when the frame had something else there."""
    return value if isinstance(value, str) else None


def _ms(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 2**31:
        return None
    return int(value)


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 10**7:
        return 0.0
    return float(value)


# --- the client ---------------------------------------------------------------------------------------------


def attach_url(api_base: str, session_id: str) -> str:
    """``wss://<host>/v1/live/sessions/{id}/attach`` for an https base, ``ws://`` for http (the emulator)."""
    parts = urlsplit(live_url(api_base, session_id, "attach"))
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path, "", ""))


@register_realtime_client
class GPTLiveSidebandClient(OpenAIRealtimeSidebandClient):
    """The server's sideband to one GPT-Live session, with the seed's client API (module docstring).

    ``llm_config``: as the Realtime sideband's, with ``protocol: "gpt-live"`` and ``gptlive`` (all optional):
    ``transcript_gap_ms`` (the line rule), ``backend_tool`` (the tool a delegation to this server runs),
    ``request_argument`` (the tool's argument that gets the user's words since the last delegation),
    ``responses_model`` (the delegated model, whose tokens the record prices), ``delegation``
    (``client`` or ``responses``). Keyword arguments: ``call_id`` (the ``live_...`` session id) and the
    Realtime sideband's ``on_frame``, ``on_gap``, ``auth``.
    """

    supports: ClassVar[str] = "llm_config protocol 'gpt-live' with the keyword call_id (the Live session id)"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        options = _object(self._llm_config.get("gptlive"))
        gap = options.get("transcript_gap_ms", DEFAULT_TRANSCRIPT_GAP_MS)
        if isinstance(gap, bool) or not isinstance(gap, int) or not 0 < gap <= 60_000:
            raise RealtimeConfigError("llm_config['gptlive']['transcript_gap_ms'] must be 1-60000 milliseconds")
        self.delegation = str(options.get("delegation") or "client")
        self.mapper = LiveEventMapper(gap_ms=gap, backend_tool=str(options.get("backend_tool") or ""),
                                      request_argument=str(options.get("request_argument") or ""),
                                      responses_model=str(options.get("responses_model") or ""))
        self._continue_lock = asyncio.Lock()
        self._continuations: set[asyncio.Task[None]] = set()

    def sideband_url(self) -> str:
        return attach_url(self._base_url, self._call_id)

    def _parse(self, text: str) -> RealtimeEvent:
        events = self.mapper.map_frame(text)
        return events[-1]

    def _parse_all(self, text: str) -> list[RealtimeEvent]:
        return self.mapper.map_frame(text)

    def _check_outgoing(self, event: dict[str, Any]) -> None:
        if not isinstance(event, dict) or str(event.get("type", "")).startswith("ag2."):
            raise ValueError("Only GPT-Live client events go over the sideband, not ag2.* frames.")
        validate_live_client_event(event)

    def _observe(self, event: RealtimeEvent) -> None:
        super()._observe(event)
        if isinstance(event, LiveSessionStarted) and event.session_id:
            self._openai_session_id = event.session_id

    @property
    def started(self) -> bool:
        """GPT-Live said ``session.started`` (replayed on attach): the session runs, so the creation
        charge is credited (docs/gpt-live.md, "Cost")."""
        return self.mapper.started

    # --- the seed's client API, in GPT-Live's terms ---

    async def send_function_result(self, call_id: str, result: str) -> None:
        if call_id in self.mapper.client_delegations:
            self.mapper.client_delegations.discard(call_id)
            await self.send_event({"type": "session.commentary.append", "delegation_id": call_id,
                                   "content": bounded_content(result)})
            return
        await self.send_event({"type": "response.item.create",
                               "item": {"type": "function_call_output", "call_id": call_id, "output": result}})
        response = self.mapper.answered(call_id)
        if response is not None:
            await self._continue(response)

    async def _continue(self, response: Any) -> None:
        """``response.create`` once the response's calls are all answered *and* it has ended (the reference's
        unknown 10: pydantic-ai's order, which is never refused)."""
        async with self._continue_lock:
            if response.ended and not response.calls and response.made_calls:
                response.made_calls = False  # continued once
                await self.send_event({"type": "response.create"})

    def _after_event(self, event: RealtimeEvent) -> None:
        if isinstance(event, LiveBackendResponseDone) and event.response_id:
            response = self.mapper.responses.get(event.response_id)
            if response is not None and response.made_calls and not response.calls:
                task = asyncio.get_running_loop().create_task(self._continue(response))
                self._continuations.add(task)
                task.add_done_callback(self._continuations.discard)

    async def send_text(self, *, role: Role, text: str) -> None:
        if self.delegation == "responses":
            await self.send_event({"type": "response.item.create", "item": {
                "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})
            await self.send_event({"type": "response.create"})
            return
        await self.send_event({"type": "session.instructions.append", "delegation_id": None,
                               "content": bounded_content(f"The user typed: {text}")})

    async def truncate_audio(self, audio_end_ms: int, content_index: int, item_id: str) -> None:
        self.logger.debug("GPT-Live has no truncation; %s at %d ms left as it is", item_id, audio_end_ms)

    async def session_update(self, session_options: dict[str, Any]) -> None:
        # The voice's configuration is fixed at creation; session.update covers delegation.responses only.
        self.logger.info("GPT-Live session %s: configured at creation (%s not re-sent)", self._call_id,
                         ", ".join(sorted(session_options)) or "nothing")

    async def close_session(self) -> None:
        """Ask GPT-Live to end the session (``session.close``); ``session.closed`` follows on the sideband."""
        await self.send_event({"type": "session.close"})

    @classmethod
    def get_factory(
        cls, llm_config: dict[str, Any], logger: logging.Logger, **kwargs: Any
    ) -> Callable[[], RealtimeClientProtocol] | None:
        if not isinstance(llm_config, dict) or llm_config.get("protocol") != PROTOCOL:
            return None
        if "call_id" not in kwargs or not set(kwargs) <= _FACTORY_KEYWORDS:
            return None
        return lambda: cls(llm_config=llm_config, logger=logger, **kwargs)


def bounded_content(text: str) -> str:
    """An append's content within GPT-Live's limit (500 tokens; cut by characters, said so)."""
    text = text.strip() or "(no result)"
    if len(text) <= MAX_APPEND_CHARS:
        return text
    return text[: MAX_APPEND_CHARS - 20].rstrip() + " … (cut short)"


__all__ = [
    "PROTOCOL",
    "GPTLiveSidebandClient",
    "LiveEventMapper",
    "attach_url",
    "bounded_content",
    "create_live_session",
    "live_hangup",
    "split_session",
]
