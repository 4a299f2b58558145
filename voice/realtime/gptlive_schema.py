"""GPT-Live's wire shapes (docs/gpt-live.md, after the reference ``shared/reference/gpt-live.md``).

Three kinds, all pydantic:

* the WebRTC create request (``POST /v1/live/sessions``): ``CreateRequest`` with its ``MediaSessionConfig``,
  strict as GPT-Live is ("unknown fields are rejected"), without ``audio.format`` (WebRTC negotiates it);
* client events a sideband may send (``validate_live_client_event``), strict;
* server events (``validate_live_server_event``): the fields each type must carry, unknown fields allowed
  (the reference says to tolerate them). The emulator's tests check every event it sends against these.

No Django here (DESIGN.md rule 1).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

LIVE_MODEL_PATTERN = r"^gpt-live-[A-Za-z0-9.-]+$"
# The reference's limit for one append's content is 500 tokens; about four characters a token.
MAX_APPEND_CHARS = 2000
CLOSE_REASONS = ("close_requested", "expired", "content", "remote_hangup", "connection_lost")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- the session configuration --------------------------------------------------------------------


class CustomVoice(_Strict):
    id: str = Field(pattern=r"^voice_[A-Za-z0-9_-]+$")


class AudioOutput(_Strict):
    voice: str | CustomVoice = "marin"


class MediaAudio(_Strict):
    output: AudioOutput | None = None


class FunctionTool(_Strict):
    type: Literal["function"]
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class WebSearchTool(_Strict):
    type: Literal["web_search"]


class Reasoning(_Strict):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: Literal["concise", "detailed", "auto"] | None = None


class ResponsesSettings(_Strict):
    model: str | None = Field(default=None, min_length=1, max_length=64)
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=16)
    parallel_tool_calls: bool | None = None
    reasoning: Reasoning | None = None
    service_tier: Literal["auto", "default", "flex", "priority"] | None = None
    # The guides' (and python's) list: function and web_search only (the reference's conflict 3).
    tools: list[Annotated[FunctionTool | WebSearchTool, Field(discriminator="type")]] | None = None
    tool_choice: Literal["auto", "none", "required"] | dict[str, Any] | None = None


class ResponsesDelegation(_Strict):
    type: Literal["responses"]
    responses: ResponsesSettings


class ClientDelegation(_Strict):
    type: Literal["client"]
    acknowledgement_delay_ms: int | None = Field(default=None, ge=0)


Delegation = Annotated[ResponsesDelegation | ClientDelegation, Field(discriminator="type")]


class DataChannelPermissions(_Strict):
    allowed_client_events: Literal["all"] | list[str] | None = None
    allowed_server_events: Literal["all"] | list[dict[str, str]] | None = None


class ClientSettings(_Strict):
    data_channel: DataChannelPermissions | None = None


class InitialItem(_Strict):
    type: Literal["message"] | None = None
    role: Literal["developer", "user", "assistant"]
    content: list[dict[str, Any]] = Field(min_length=1, max_length=1)
    id: str | None = None
    status: Literal["incomplete", "completed"] | None = None


class MediaSessionConfig(_Strict):
    model: str = Field(pattern=LIVE_MODEL_PATTERN)
    instructions: str | None = None
    input: list[InitialItem] | None = Field(default=None, max_length=128)
    audio: MediaAudio | None = None
    delegation: Delegation | None = None
    client: ClientSettings | None = None
    store: bool | None = None


class WebRTCTransport(_Strict):
    type: Literal["webrtc"]
    sdp: str = Field(min_length=1)


class CreateRequest(_Strict):
    session: MediaSessionConfig
    transport: WebRTCTransport


class CreateResponse(_Open):
    """HTTP 201: ``{"session": {"id"}, "transport": {"type": "webrtc", "sdp"}}``."""

    session: dict[str, Any]
    transport: dict[str, Any]


def validate_media_session(session: dict[str, Any]) -> dict[str, Any]:
    """The session as sent, checked (``pydantic.ValidationError``, a ``ValueError``, when not)."""
    return MediaSessionConfig.model_validate(session).model_dump(exclude_none=True)


# --- client events (the sideband's) ---------------------------------------------------------------


class _ClientEvent(_Strict):
    event_id: str | None = Field(default=None, max_length=64)


class SessionUpdate(_ClientEvent):
    type: Literal["session.update"]
    session: dict[str, Any]


class Mute(_ClientEvent):
    type: Literal["session.input_audio.mute", "session.input_audio.unmute"]


class Append(_ClientEvent):
    type: Literal["session.instructions.append", "session.thinking.append", "session.commentary.append"]
    content: str = Field(min_length=1, max_length=MAX_APPEND_CHARS)
    # Required, may be null: "Set null for general session context" (the reference, section 3.2).
    delegation_id: str | None


class ResponseItemCreate(_ClientEvent):
    type: Literal["response.item.create"]
    item: dict[str, Any]


class ResponseCreate(_ClientEvent):
    type: Literal["response.create"]


class SessionClose(_ClientEvent):
    type: Literal["session.close"]


LiveClientEvent = Annotated[
    SessionUpdate | Mute | Append | ResponseItemCreate | ResponseCreate | SessionClose, Field(discriminator="type")
]
_client_adapter: TypeAdapter[Any] = TypeAdapter(LiveClientEvent)


def validate_live_client_event(event: dict[str, Any]) -> Any:
    """Raise ``ValueError`` unless ``event`` is a client event a sideband may send."""
    return _client_adapter.validate_python(event)


# --- server events ----------------------------------------------------------------------------------


class SessionResource(_Open):
    id: str
    model: str
    status: Literal["active"]
    expires_at: int | float | None = None


class _ServerEvent(_Open):
    event_id: str
    client_event_id: str | None = None


class SessionStarted(_ServerEvent):
    type: Literal["session.started", "session.updated"]
    session: SessionResource


class Muted(_ServerEvent):
    type: Literal["session.input_audio.muted", "session.input_audio.unmuted"]


class Appended(_ServerEvent):
    type: Literal["session.instructions.appended", "session.thinking.appended", "session.commentary.appended"]
    start_ms: int = Field(ge=0)
    end_ms: int = Field(ge=0)


class InputAudioCopy(_Strict):
    """Reflected input on the sideband: ``audio`` only, no ``event_id``."""

    type: Literal["session.input_audio.append"]
    audio: str


class OutputAudioDelta(_Strict):
    """Output audio; ``start_ms``/``end_ms`` on the sideband, none on the primary WebSocket; no event_id."""

    type: Literal["session.output_audio.delta"]
    delta: str
    start_ms: int | None = Field(default=None, ge=0)
    end_ms: int | None = Field(default=None, ge=0)


class TranscriptDelta(_ServerEvent):
    type: Literal["session.input_transcript.delta", "session.output_transcript.delta"]
    delta: str
    start_ms: int = Field(ge=0)
    end_ms: int = Field(ge=0)


class DelegationInfo(_Open):
    id: str
    type: Literal["delegation"]
    target: Literal["client", "responses"]
    response_id: str | None = None


class DelegationCreated(_ServerEvent):
    type: Literal["session.delegation.created"]
    offset_ms: int = Field(ge=0)
    delegation: DelegationInfo


class NestedEvent(_Open):
    type: str


class ResponseEvent(_ServerEvent):
    type: Literal["response.event"]
    event: NestedEvent
    delegation_id: str | None = None


class UsageSeconds(_Open):
    seconds: float = Field(ge=0)


class UsageUpdated(_ServerEvent):
    type: Literal["session.usage.updated"]
    usage: UsageSeconds
    context_window: dict[str, Any] | None = None


class SessionClosed(_ServerEvent):
    type: Literal["session.closed"]
    reason: Literal["close_requested", "expired", "content", "remote_hangup", "connection_lost"]
    session: SessionResource
    usage: UsageSeconds


class ErrorDetail(_Open):
    type: str
    code: str | None
    message: str
    param: str | None = None
    client_event_id: str | None = None


class Error(_ServerEvent):
    type: Literal["error"]
    error: ErrorDetail


class Info(_ServerEvent):
    type: Literal["info"]
    code: str
    message: str


LiveServerEvent = Annotated[
    SessionStarted | Muted | Appended | InputAudioCopy | OutputAudioDelta | TranscriptDelta | DelegationCreated
    | ResponseEvent | UsageUpdated | SessionClosed | Error | Info,
    Field(discriminator="type"),
]
_server_adapter: TypeAdapter[Any] = TypeAdapter(LiveServerEvent)
SERVER_EVENT_TYPES = frozenset({
    "session.started", "session.updated", "session.input_audio.muted", "session.input_audio.unmuted",
    "session.instructions.appended", "session.thinking.appended", "session.commentary.appended",
    "session.input_audio.append", "session.output_audio.delta", "session.input_transcript.delta",
    "session.output_transcript.delta", "session.delegation.created", "response.event", "session.usage.updated",
    "session.closed", "error", "info",
})


def validate_live_server_event(event: dict[str, Any]) -> Any:
    """Raise ``ValueError`` unless ``event`` has the fields its type must carry (the reference, 3.3)."""
    return _server_adapter.validate_python(event)


__all__ = [
    "CLOSE_REASONS",
    "MAX_APPEND_CHARS",
    "SERVER_EVENT_TYPES",
    "CreateRequest",
    "CreateResponse",
    "MediaSessionConfig",
    "validate_live_client_event",
    "validate_live_server_event",
    "validate_media_session",
]
