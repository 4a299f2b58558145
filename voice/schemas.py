"""The protocol module: typed schemas of every frame between browser and server, both ways (rule 4).

- Browser -> server on /ws/voice/: our own `ag2.*` frames (relay mode: or OpenAI server events relayed
  verbatim; OpenAI's events are typed in voice.realtime.events, and here we only insist on the envelope,
  because refusing an event OpenAI adds tomorrow would lose it from the record). Server mode: the
  `ag2.*` signalling frames and typed turns only.
- Server -> browser on /ws/voice/: `ag2.init` (relay mode's is typed next to the client that builds it,
  voice.realtime.events, which imports no Django), `ag2.answer`, `ag2.error`, `ag2.close`.
- Dashboards: their requests (`subscribe`, `unsubscribe`), what they are sent on connecting and
  subscribing (`snapshot`, `session.snapshot`, `ag2.error`), and every message published over the
  channel layer (`Published`).

Outgoing frames are checked against these schemas where they are sent when `VOICE_VALIDATE_OUTGOING`
is on (the test suite turns it on; production leaves it off, for speed): see `check_outgoing`.
The constants both sides share (close codes, socket paths) are in voice/protocol.py.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from voice.realtime.events import Ag2InitFrame as Ag2InitRelay

EVENT_TYPE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")


class FrameError(ValueError):
    """A frame we cannot accept; `code` is the stable `ag2.error` code sent back."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Frame(BaseModel):
    model_config = ConfigDict(extra="allow")


class Ag2Ready(_Frame):
    type: Literal["ag2.ready"]
    call_id: Annotated[str, Field(max_length=128, pattern=r"^rtc_[A-Za-z0-9_-]+$")] | None = None


class Ag2ClientError(_Frame):
    type: Literal["ag2.client_error"]
    stage: Literal["microphone", "sdp", "ice", "datachannel"]
    message: Annotated[str, Field(max_length=2000)] = ""


class Ag2Hangup(_Frame):
    type: Literal["ag2.hangup"]


Ag2Frame = Annotated[Ag2Ready | Ag2ClientError | Ag2Hangup, Field(discriminator="type")]
_ag2_adapter: TypeAdapter[Ag2Ready | Ag2ClientError | Ag2Hangup] = TypeAdapter(Ag2Frame)
KNOWN_AG2 = {"ag2.ready", "ag2.client_error", "ag2.hangup"}


def parse_browser_frame(data: Any) -> dict[str, Any] | Ag2Ready | Ag2ClientError | Ag2Hangup:
    """Validate one decoded frame from the browser: an ag2 model, or a relayed OpenAI event dict."""
    if not isinstance(data, dict):
        raise FrameError("invalid_frame", f"A frame must be a JSON object, not {type(data).__name__}.")
    kind = data.get("type")
    if not isinstance(kind, str) or not kind:
        raise FrameError("invalid_frame", "A frame must have a string 'type'.")
    if len(kind) > 100 or not EVENT_TYPE.match(kind):
        raise FrameError("invalid_frame", f"'type' is not an event name: {kind[:60]!r}.")
    if kind.startswith("ag2."):
        if kind == "ag2.text":
            # Relay mode: the browser holds the model's channel and sends a typed turn there itself.
            raise FrameError("unexpected_frame", "In this call, typed messages go over the call's own channel, "
                             "not to the server; the message was ignored.")
        if kind not in KNOWN_AG2:
            raise FrameError("unknown_frame", f"Unknown frame type {kind!r}.")
        try:
            return _ag2_adapter.validate_python(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or 'frame'}: {e['msg']}" for e in exc.errors())
            raise FrameError("invalid_frame", f"Invalid {kind}: {problems}.") from None
    return data


# --- server mode (protocol 2): the browser is untrusted ---------------------------------------------

MAX_OFFER_SDP_CHARS = 64 * 1024  # a browser's audio + data channel offer is a few kilobytes


class Ag2Offer(_Frame):
    type: Literal["ag2.offer"]
    sdp: Annotated[str, Field(min_length=1, max_length=MAX_OFFER_SDP_CHARS)]


# A typed turn: the chat page's input allows 2000 characters; a person types a line, not a document.
MAX_TEXT_CHARS = 2000
# C0 controls other than tab, newline and carriage return (and DEL): nothing a person types, and NUL is
# not storable in PostgreSQL text.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class Ag2Text(_Frame):
    """A typed user turn: `{"type": "ag2.text", "text": "..."}`. `text` arrives stripped of outer blanks."""

    type: Literal["ag2.text"]
    text: str

    @field_validator("text")
    @classmethod
    def _readable_line(cls, value: str) -> str:
        # Measured before stripping, so that a huge blank frame is refused as too long, not as empty.
        if len(value) > MAX_TEXT_CHARS:
            raise ValueError(f"it is {len(value)} characters long; at most {MAX_TEXT_CHARS} are accepted")
        value = value.strip()
        if not value:
            raise ValueError("it is empty")
        if _CONTROL.search(value):
            raise ValueError("it holds control characters")
        return value


ServerModeFrame = Ag2Offer | Ag2Ready | Ag2ClientError | Ag2Hangup | Ag2Text
_server_mode_adapter: TypeAdapter[ServerModeFrame] = TypeAdapter(
    Annotated[ServerModeFrame, Field(discriminator="type")])
SERVER_MODE_FRAMES = ("ag2.offer", "ag2.ready", "ag2.client_error", "ag2.hangup", "ag2.text")


def parse_server_mode_frame(data: Any) -> ServerModeFrame:
    """Validate one decoded frame of a server-mode browser: the four signalling frames and a typed turn.

    Anything else, OpenAI events above all, is `unexpected_frame`: in this mode nothing the browser says
    reaches the record, the cost or the tools (docs/architecture.md)."""
    kind = data.get("type") if isinstance(data, dict) else None
    if kind not in SERVER_MODE_FRAMES:
        shown = kind[:60] if isinstance(kind, str) else type(data).__name__
        raise FrameError("unexpected_frame", f"This connection accepts only {', '.join(SERVER_MODE_FRAMES)}; "
                         f"{shown!r} was ignored.")
    try:
        return _server_mode_adapter.validate_python(data)
    except ValidationError as exc:
        if kind == "ag2.text":
            raise FrameError("invalid_text", f"Your message was not sent: {_text_problem(exc)}.") from None
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or 'frame'}: {e['msg']}" for e in exc.errors())
        raise FrameError("invalid_frame", f"Invalid {kind}: {problems}.") from None


def _text_problem(exc: ValidationError) -> str:
    """The first problem with an ag2.text, in words for the person who typed it."""
    error = exc.errors()[0]
    reason = error.get("ctx", {}).get("error")
    if isinstance(reason, ValueError):
        return str(reason)
    if error["type"] == "missing":
        return "it has no text"
    return "its text is not a string"


class Subscribe(_Frame):
    type: Literal["subscribe"]
    session_id: uuid.UUID


class Unsubscribe(_Frame):
    type: Literal["unsubscribe"]


DashboardRequest = Annotated[Subscribe | Unsubscribe, Field(discriminator="type")]
dashboard_request: TypeAdapter[Subscribe | Unsubscribe] = TypeAdapter(DashboardRequest)


# --- what goes over the channel layer (and on to dashboards) --------------------------------------


class _Published(BaseModel):
    model_config = ConfigDict(extra="forbid")
    session_id: str


class DeltaMessage(_Published):
    type: Literal["delta"]
    item_id: str
    role: str
    delta: str


class EventMessage(_Published):
    type: Literal["event"]
    event: dict[str, Any]


class ItemMessage(_Published):
    type: Literal["item"]
    item: dict[str, Any]


class ToolCallMessage(_Published):
    type: Literal["tool_call"]
    tool_call: dict[str, Any]


class UsageMessage(_Published):
    type: Literal["usage"]
    usage: dict[str, Any]
    totals: dict[str, Any]


class TurnMessage(_Published):
    """A turn's latency: the user stopped speaking -> the model's first audio (voice/timeline.py)."""

    type: Literal["turn"]
    turn: dict[str, Any]


class SessionChanged(_Published):
    type: Literal["session.updated"]
    changes: dict[str, Any]
    totals: dict[str, Any]


class SessionLifecycle(_Published):
    type: Literal["session.started", "session.ended"]
    session: dict[str, Any]


Published = Annotated[
    DeltaMessage | EventMessage | ItemMessage | ToolCallMessage | UsageMessage | TurnMessage | SessionChanged
    | SessionLifecycle,
    Field(discriminator="type"),
]
published_message: TypeAdapter[Any] = TypeAdapter(Published)


# --- server -> browser (/ws/voice/) ----------------------------------------------------------------


class _Outgoing(BaseModel):
    # Strict: a field we add without describing it here fails the tests, so the schema stays the truth.
    model_config = ConfigDict(extra="forbid")


class Ag2Error(_Outgoing):
    """A refusal or failure: a stable code, a sentence the person can act on, and whether to retry."""

    type: Literal["ag2.error"]
    code: Annotated[str, Field(min_length=1, max_length=100)]
    message: Annotated[str, Field(min_length=1)]
    retryable: bool


class Ag2Close(_Outgoing):
    type: Literal["ag2.close"]
    reason: Annotated[str, Field(min_length=1, max_length=100)]


class Ag2Answer(_Outgoing):
    type: Literal["ag2.answer"]
    sdp: Annotated[str, Field(min_length=1)]


class LiveFacts(_Outgoing):
    """What the page does differently for a GPT-Live session (docs/gpt-live.md)."""

    transcript_gap_ms: int
    typing: bool
    recorded_by: Literal["server"]


class Ag2InitServer(_Outgoing):
    """Server mode's first frame (and a resume's): display facts only, never a secret or the call id."""

    type: Literal["ag2.init"]
    protocol: Literal[2]
    mode: Literal["server"]
    session_id: Annotated[str, Field(min_length=1)]
    resumed: bool
    session: dict[str, Any]
    api: Literal["gpt-live"] | None = None
    live: LiveFacts | None = None


_voice_frames: dict[str, TypeAdapter[Any]] = {
    "ag2.init": TypeAdapter(Ag2InitRelay | Ag2InitServer),
    "ag2.answer": TypeAdapter(Ag2Answer),
    "ag2.error": TypeAdapter(Ag2Error),
    "ag2.close": TypeAdapter(Ag2Close),
}


# --- server -> dashboard (/ws/dashboard/) -----------------------------------------------------------


class DashboardSnapshot(_Outgoing):
    """On connecting: every live session (voice.snapshots.live_sessions)."""

    type: Literal["snapshot"]
    sessions: list[dict[str, Any]]


class SessionEarlier(_Outgoing):
    items: int
    tool_calls: int
    events: int


class TurnLatency(_Outgoing):
    response_id: str | None
    item_id: str | None
    latency_ms: int | float
    measured_from: str


class SessionSnapshot(_Outgoing):
    """On subscribing (and on a resync): one session's latest record, saying what it left out."""

    type: Literal["session.snapshot"]
    session_id: str
    session: dict[str, Any]
    items: list[dict[str, Any]]
    tool_calls: list[dict[str, Any]]
    events: list[dict[str, Any]]
    turns: list[TurnLatency]
    earlier: SessionEarlier
    transcript_url: Annotated[str, Field(min_length=1)]


_dashboard_frames: dict[str, TypeAdapter[Any]] = {
    "snapshot": TypeAdapter(DashboardSnapshot),
    "session.snapshot": TypeAdapter(SessionSnapshot),
    "ag2.error": TypeAdapter(Ag2Error),
}


class Resync(_Published):
    """Between servers only: the dashboard consumer answers it with a `session.snapshot`."""

    type: Literal["session.resync"]


_published: TypeAdapter[Any] = TypeAdapter(Annotated[
    DeltaMessage | EventMessage | ItemMessage | ToolCallMessage | UsageMessage | TurnMessage | SessionChanged
    | SessionLifecycle | Resync,
    Field(discriminator="type"),
])


# --- checking outgoing frames where they are sent ----------------------------------------------------


class OutgoingFrameError(AssertionError):
    """An outgoing frame that does not match its schema: a bug in the server, caught by the tests."""


# Problems found since the test suite last looked (tests/conftest.py fails the test that caused one):
# the send points swallow exceptions (a gone socket must not end a session), so raising is not enough.
outgoing_problems: list[str] = []


def check_outgoing(channel: Literal["voice", "dashboard", "published"], frame: Any) -> None:
    """Validate a frame we are about to send, if `VOICE_VALIDATE_OUTGOING` is on; raise if it is wrong.

    `voice`: to the call's page, where only the `ag2.*` frames are ours (the rest are OpenAI client
    events, checked in voice.realtime.events). `dashboard`: sent to a dashboard by its consumer.
    `published`: put on the channel layer for dashboards (voice.broadcast)."""
    from django.conf import settings

    if not getattr(settings, "VOICE_VALIDATE_OUTGOING", False):
        return
    kind = frame.get("type") if isinstance(frame, dict) else None
    try:
        if channel == "published":
            _published.validate_python(frame)
            return
        if channel == "voice" and not (isinstance(kind, str) and kind.startswith("ag2.")):
            return
        adapter = (_voice_frames if channel == "voice" else _dashboard_frames).get(kind) if isinstance(kind, str) \
            else None
        if adapter is None:
            raise OutgoingFrameError(f"no schema for a {channel} frame of type {kind!r}")
        adapter.validate_python(frame)
    except (ValidationError, OutgoingFrameError) as exc:
        problem = f"{channel} frame {kind!r} does not match its schema: {exc}"
        outgoing_problems.append(problem)
        raise OutgoingFrameError(problem) from None
