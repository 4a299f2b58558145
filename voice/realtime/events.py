"""Typed events of the OpenAI Realtime API (GA), and the frames this client sends.

Server events: ``parse_event(dict)`` returns the typed event for a GA type or its beta alias, or a plain
``RealtimeEvent`` for any other type. Every event keeps the message it came from in ``raw_message``;
``type`` always holds the GA name (so observers match one name), ``raw_message["type"]`` what arrived.

Parsing is deliberately lenient (missing fields become ``None``): the browser relays whatever OpenAI sends,
and a field OpenAI adds or drops must not cost us the event. Only input that cannot be read at all
becomes an ``InvalidFrame``, which is an ``ErrorEvent``, so consumers see one kind of "something is wrong".

Function calls: one call must run a tool once. OpenAI announces a finished call twice, in
``response.function_call_arguments.done`` and in ``response.output_item.done`` (item type
``function_call``). ``FunctionCall`` is built from ``response.output_item.done`` only, because that event
always carries the function ``name`` and the item ``status`` (the arguments event has no ``name`` in some
API versions, and a cancelled response leaves an ``incomplete`` item whose partial arguments must not run
a tool). ``response.function_call_arguments.done`` parses to ``FunctionCallArgumentsDone``, which nothing
executes.

Values are bounded here where a bound needs nothing but the value (the record adds the bounds of its
columns and settings): a count, a duration or an offset that is not a whole, non-negative number never
costs its event; it is left out (``None``, or 0 for a token count) and said in ``value_problems``, so that
whoever keeps the record can note it. Usage is parsed here once, for everyone (``Usage.problems``).

Client events: the ``*Event`` models at the bottom describe every frame the client sends, plus the
project's ``ag2.init`` / ``ag2.error``; ``validate_client_event`` checks a frame against them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    AliasChoices,
    AliasPath,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from voice.realtime import boundedjson

# How much of an unreadable frame is kept for the logs and the error event.
FRAME_EXCERPT_CHARS = 200


def _from(name: str, key: str, *path: str | int) -> Any:
    """A field filled from its own name or, in a server message, from a nested path (``key``, ``*path``)."""
    return Field(default=None, validation_alias=AliasChoices(name, AliasPath(key, *path)))


# Token counts: OpenAI may send null for a count it did not measure; treat that as zero. What is not a count
# at all has already been set aside by ``Usage`` (see ``_usage_checked``), so a plain int is enough here.
Count = Annotated[int, BeforeValidator(lambda value: 0 if value is None else value)]
# A token count or a millisecond offset beyond these is not believable; kept bounded so that nothing
# downstream (sums, a 64-bit column, printing) meets a 4,000-digit integer.
MAX_COUNT = 2**53
MAX_MS = 2**31 - 1  # an audio offset of 24 days


def whole_number(value: Any, maximum: int) -> int | None:
    """A whole number between 0 and ``maximum`` (an integral float counts), else ``None``.

    Booleans and strings are not numbers here, whatever pydantic's lax mode would make of them."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return None
        value = int(value)
    if not isinstance(value, int) or not 0 <= value <= maximum:
        return None
    return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "…"


def _bounded_fields(data: Any, names: tuple[str, ...], maximum: int, what: str) -> Any:
    """Take out of ``data`` the named values that are not whole numbers in range, saying so in
    ``value_problems`` (field -> {"problem", "value"}) instead of failing the whole event."""
    if not isinstance(data, dict):
        return data
    problems: dict[str, dict[str, str]] = {}
    for name in names:
        value = data.get(name)
        if value is None or whole_number(value, maximum) is not None:
            continue
        problems[name] = {"problem": f"not a whole number of {what} between 0 and {maximum}", "value": _shown(value)}
    if not problems:
        return data
    return {**{k: v for k, v in data.items() if k not in problems}, "value_problems": problems}


def _drop_nulls(data: Any) -> Any:
    # OpenAI sends explicit nulls for absent values; let the field's default apply instead of failing.
    if isinstance(data, dict):
        return {key: value for key, value in data.items() if value is not None}
    return data


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_absent(cls, data: Any) -> Any:
        return _drop_nulls(data)


# --- building blocks ------------------------------------------------------------------------------


class ContentPart(_Lenient):
    type: str | None = None
    text: str | None = None
    transcript: str | None = None
    audio: str | None = None


class ConversationItem(_Lenient):
    """A conversation item (message, function_call or function_call_output)."""

    id: str | None = None
    type: str | None = None
    role: str | None = None
    status: str | None = None
    content: list[ContentPart] = Field(default_factory=list)
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | None = None

    @property
    def text(self) -> str:
        """The item's text: typed text, or the transcript of audio parts."""
        return "".join(part.text or part.transcript or "" for part in self.content)


class CachedTokensDetails(_Lenient):
    text_tokens: Count = 0
    audio_tokens: Count = 0
    image_tokens: Count = 0


class InputTokenDetails(_Lenient):
    text_tokens: Count = 0
    audio_tokens: Count = 0
    image_tokens: Count = 0
    # A subset of the input tokens, billed at the cached price.
    cached_tokens: Count = 0
    cached_tokens_details: CachedTokensDetails = Field(default_factory=CachedTokensDetails)


class OutputTokenDetails(_Lenient):
    text_tokens: Count = 0
    audio_tokens: Count = 0


USAGE_COUNTS: tuple[tuple[str, str, str], ...] = (
    # (column name in the record, where in the usage object, the count's name there)
    ("total_tokens", "", "total_tokens"),
    ("input_tokens", "", "input_tokens"),
    ("output_tokens", "", "output_tokens"),
    ("input_text_tokens", "input_token_details", "text_tokens"),
    ("input_audio_tokens", "input_token_details", "audio_tokens"),
    ("input_image_tokens", "input_token_details", "image_tokens"),
    ("cached_tokens", "input_token_details", "cached_tokens"),
    ("cached_text_tokens", "input_token_details.cached_tokens_details", "text_tokens"),
    ("cached_audio_tokens", "input_token_details.cached_tokens_details", "audio_tokens"),
    ("output_text_tokens", "output_token_details", "text_tokens"),
    ("output_audio_tokens", "output_token_details", "audio_tokens"),
)


def _usage_checked(data: Any) -> Any:
    """A usage object with every count a whole number in range (null or absent is 0); what is not is
    set to 0 and named in ``problems``, so that a forged or broken count never fails ``response.done``
    (the response still ends) and is never billed either (the record refuses usage with problems)."""
    if not isinstance(data, dict):
        return {"problems": [f"usage is {_shown(data)}: not an object"]}
    problems: list[str] = []
    cleaned = dict(data)
    containers: dict[str, dict[str, Any]] = {"": cleaned}
    for path in ("input_token_details", "input_token_details.cached_tokens_details", "output_token_details"):
        parent_path, _, name = path.rpartition(".")
        parent = containers.get(parent_path)
        value = parent.get(name) if parent is not None else None
        if value is not None and not isinstance(value, dict):
            problems.append(f"{name} is not an object")
            value = None
        if parent is not None:
            containers[path] = parent[name] = dict(value) if isinstance(value, dict) else {}
    for _, path, name in USAGE_COUNTS:
        source = containers[path]
        value = source.get(name)
        if value is None:
            continue
        if whole_number(value, MAX_COUNT) is None:
            label = f"{path.rpartition('.')[2]}.{name}" if path else name
            problems.append(f"{label} is {_shown(value)}: not a count between 0 and {MAX_COUNT}")
            source[name] = 0
    if problems:
        cleaned["problems"] = problems
    return cleaned


class Usage(_Lenient):
    """A response's token usage (``response.done``). Counts the server could not believe are 0 and named in
    ``problems``; ``counts()`` flattens it into the record's columns."""

    total_tokens: Count = 0
    input_tokens: Count = 0
    output_tokens: Count = 0
    input_token_details: InputTokenDetails = Field(default_factory=InputTokenDetails)
    output_token_details: OutputTokenDetails = Field(default_factory=OutputTokenDetails)
    problems: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _counts_are_counts(cls, data: Any) -> Any:
        return _usage_checked(_drop_nulls(data))

    def counts(self) -> dict[str, int]:
        """Every count by its column name in the record (``USAGE_COUNTS``)."""
        inp, out = self.input_token_details, self.output_token_details
        cached = inp.cached_tokens_details
        return {
            "total_tokens": self.total_tokens,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "input_text_tokens": inp.text_tokens,
            "input_audio_tokens": inp.audio_tokens,
            "input_image_tokens": inp.image_tokens,
            "cached_tokens": inp.cached_tokens,
            "cached_text_tokens": cached.text_tokens,
            "cached_audio_tokens": cached.audio_tokens,
            "output_text_tokens": out.text_tokens,
            "output_audio_tokens": out.audio_tokens,
        }


class RateLimit(_Lenient):
    name: str | None = None
    limit: int | None = None
    remaining: int | None = None
    reset_seconds: float | None = None


# --- server events --------------------------------------------------------------------------------


class RealtimeEvent(BaseModel):
    """Base of every event; a plain ``RealtimeEvent`` is an event of a type without its own class."""

    model_config = ConfigDict(extra="ignore")

    type: str = ""
    event_id: str | None = None
    raw_message: dict[str, Any] = Field(default_factory=dict, repr=False)
    # Values left out because they could not be believed: field -> {"problem", "value"} (module docstring).
    value_problems: dict[str, dict[str, str]] | None = Field(default=None, repr=False)

    # Beta names that parse to this class (the GA name is the default of ``type``).
    BETA_ALIASES: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_absent(cls, data: Any) -> Any:
        return _drop_nulls(data)


EVENT_CLASSES: dict[str, type[RealtimeEvent]] = {}
BETA_ALIASES: dict[str, str] = {}

E = TypeVar("E", bound=RealtimeEvent)


def _register(*aliases: str) -> Callable[[type[E]], type[E]]:
    def decorate(cls: type[E]) -> type[E]:
        ga_type = cls.model_fields["type"].default
        cls.BETA_ALIASES = aliases
        EVENT_CLASSES[ga_type] = cls
        for alias in aliases:
            EVENT_CLASSES[alias] = cls
            BETA_ALIASES[alias] = ga_type
        return cls

    return decorate


@_register()
class SessionCreated(RealtimeEvent):
    type: str = "session.created"
    session: dict[str, Any] = Field(default_factory=dict)
    session_id: str | None = _from("session_id", "session", "id")


@_register()
class SessionUpdated(RealtimeEvent):
    type: str = "session.updated"
    session: dict[str, Any] = Field(default_factory=dict)
    session_id: str | None = _from("session_id", "session", "id")


@_register("conversation.item.created")
class ConversationItemDone(RealtimeEvent):
    """An item is complete. Beta's only item event, ``conversation.item.created``, maps here (PROTOCOL.md):
    a beta stream announces each item once, so that notice must count as the final one."""

    type: str = "conversation.item.done"
    previous_item_id: str | None = None
    item: ConversationItem = Field(default_factory=ConversationItem)
    item_id: str | None = _from("item_id", "item", "id")


@_register()
class ConversationItemAdded(RealtimeEvent):
    type: str = "conversation.item.added"
    previous_item_id: str | None = None
    item: ConversationItem = Field(default_factory=ConversationItem)
    item_id: str | None = _from("item_id", "item", "id")


@_register()
class ConversationItemRetrieved(RealtimeEvent):
    """The server's copy of an item, asked for with ``conversation.item.retrieve``. GA gives it no
    ``previous_item_id`` and does not say it finished anything: it tells what an item holds, no more."""

    type: str = "conversation.item.retrieved"
    item: ConversationItem = Field(default_factory=ConversationItem)
    item_id: str | None = _from("item_id", "item", "id")


@_register()
class ConversationItemTruncated(RealtimeEvent):
    type: str = "conversation.item.truncated"
    item_id: str | None = None
    content_index: int | None = None
    audio_end_ms: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, data: Any) -> Any:
        return _bounded_fields(data, ("audio_end_ms",), MAX_MS, "milliseconds")


@_register()
class ConversationItemDeleted(RealtimeEvent):
    type: str = "conversation.item.deleted"
    item_id: str | None = None


@_register()
class InputAudioBufferDelta(RealtimeEvent):
    """Microphone audio (base64 PCM16) relayed by the browser or queued by ``send_audio``, for observers."""

    type: str = "input_audio_buffer.delta"
    delta: str = ""
    item_id: str | None = None


@_register()
class SpeechStarted(RealtimeEvent):
    type: str = "input_audio_buffer.speech_started"
    audio_start_ms: int | None = None
    item_id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, data: Any) -> Any:
        return _bounded_fields(data, ("audio_start_ms",), MAX_MS, "milliseconds")


@_register()
class SpeechStopped(RealtimeEvent):
    type: str = "input_audio_buffer.speech_stopped"
    audio_end_ms: int | None = None
    item_id: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _bounded(cls, data: Any) -> Any:
        return _bounded_fields(data, ("audio_end_ms",), MAX_MS, "milliseconds")


@_register()
class InputAudioBufferCommitted(RealtimeEvent):
    type: str = "input_audio_buffer.committed"
    item_id: str | None = None
    previous_item_id: str | None = None


@_register()
class InputTranscriptionDelta(RealtimeEvent):
    type: str = "conversation.item.input_audio_transcription.delta"
    item_id: str | None = None
    content_index: int | None = None
    delta: str = ""


@_register()
class InputTranscriptionCompleted(RealtimeEvent):
    """The user's words. Arrives asynchronously: before or after the response it belongs to."""

    type: str = "conversation.item.input_audio_transcription.completed"
    item_id: str | None = None
    content_index: int | None = None
    transcript: str = ""
    usage: dict[str, Any] | None = None


@_register()
class InputTranscriptionFailed(RealtimeEvent):
    type: str = "conversation.item.input_audio_transcription.failed"
    item_id: str | None = None
    content_index: int | None = None
    error: dict[str, Any] | None = None


class _ResponsePart(RealtimeEvent):
    response_id: str | None = None
    item_id: str | None = None
    output_index: int | None = None
    content_index: int | None = None


@_register("response.audio.delta")
class AudioDelta(_ResponsePart):
    type: str = "response.output_audio.delta"
    delta: str = ""


@_register("response.audio.done")
class AudioDone(_ResponsePart):
    type: str = "response.output_audio.done"


@_register("response.audio_transcript.delta")
class OutputTranscriptDelta(_ResponsePart):
    type: str = "response.output_audio_transcript.delta"
    delta: str = ""


@_register("response.audio_transcript.done")
class OutputTranscriptDone(_ResponsePart):
    type: str = "response.output_audio_transcript.done"
    transcript: str = ""


@_register("response.text.delta")
class OutputTextDelta(_ResponsePart):
    type: str = "response.output_text.delta"
    delta: str = ""


@_register("response.text.done")
class OutputTextDone(_ResponsePart):
    type: str = "response.output_text.done"
    text: str = ""


@_register()
class ResponseCreated(RealtimeEvent):
    type: str = "response.created"
    response_id: str | None = _from("response_id", "response", "id")
    status: str | None = _from("status", "response", "status")


@_register()
class ResponseDone(RealtimeEvent):
    """A response ended (status completed, cancelled, failed or incomplete), with its token usage."""

    type: str = "response.done"
    response_id: str | None = _from("response_id", "response", "id")
    status: str | None = _from("status", "response", "status")
    status_details: dict[str, Any] | None = _from("status_details", "response", "status_details")
    output: list[ConversationItem] | None = _from("output", "response", "output")
    usage: Usage | None = _from("usage", "response", "usage")


@_register()
class ResponseOutputItemAdded(RealtimeEvent):
    type: str = "response.output_item.added"
    response_id: str | None = None
    output_index: int | None = None
    item: ConversationItem = Field(default_factory=ConversationItem)


@_register()
class ResponseOutputItemDone(RealtimeEvent):
    """An output item finished. A completed ``function_call`` item parses to ``FunctionCall`` instead."""

    type: str = "response.output_item.done"
    response_id: str | None = None
    output_index: int | None = None
    item: ConversationItem = Field(default_factory=ConversationItem)


class FunctionCall(RealtimeEvent):
    """The model asks for a tool to run. Built from ``response.output_item.done`` only (module docstring)."""

    type: str = "response.output_item.done"
    name: str
    call_id: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    item_id: str | None = None
    response_id: str | None = None
    output_index: int | None = None
    # The finished function_call item itself, for the record (its arguments as the model wrote them).
    item: ConversationItem = Field(default_factory=ConversationItem)


@_register()
class FunctionCallArgumentsDone(RealtimeEvent):
    """Informational: the same call also arrives as ``FunctionCall``, which is the one that runs."""

    type: str = "response.function_call_arguments.done"
    response_id: str | None = None
    item_id: str | None = None
    output_index: int | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str = ""


@_register()
class OutputAudioBufferStarted(RealtimeEvent):
    type: str = "output_audio_buffer.started"
    response_id: str | None = None


@_register()
class OutputAudioBufferStopped(RealtimeEvent):
    type: str = "output_audio_buffer.stopped"
    response_id: str | None = None


@_register()
class OutputAudioBufferCleared(RealtimeEvent):
    type: str = "output_audio_buffer.cleared"
    response_id: str | None = None


@_register()
class RateLimitsUpdated(RealtimeEvent):
    type: str = "rate_limits.updated"
    rate_limits: list[RateLimit] = Field(default_factory=list)


@_register()
class ErrorEvent(RealtimeEvent):
    """OpenAI's ``error`` event: ``{"type": "error", "error": {"type", "code", "message", "param", "event_id"}}``."""

    type: str = "error"
    code: str | None = _from("code", "error", "code")
    message: str | None = _from("message", "error", "message")
    error_type: str | None = _from("error_type", "error", "type")
    param: str | None = _from("param", "error", "param")
    # The id of the client event that caused the error, when OpenAI names one.
    error_event_id: str | None = _from("error_event_id", "error", "event_id")


InvalidFrameCode = Literal[
    "invalid_json", "not_an_object", "missing_type", "invalid_event", "invalid_function_arguments"
]


class InvalidFrame(ErrorEvent):
    """A frame this client could not read. Not sent by OpenAI: made by ``parse_frame``/``parse_event``.

    ``call_id`` and ``name`` are set for ``invalid_function_arguments`` so that the call can still be
    answered (the model waits for every call it made).
    """

    type: str = "ag2.invalid_frame"
    code: InvalidFrameCode
    frame_type: str | None = None
    excerpt: str = ""
    call_id: str | None = None
    name: str | None = None
    # invalid_function_arguments: the function_call item as it came (the record keeps it, arguments
    # unparsed), and the response it belongs to.
    item: ConversationItem | None = None
    response_id: str | None = None


class SidebandGap(RealtimeEvent):
    """The sideband was not connected from ``started_at`` to ``ended_at`` (wall-clock seconds).

    Not sent by OpenAI: queued by the sideband client when it has reconnected (``ended_at`` set), or when
    it gave up (``ended_at`` is ``None``; the stream ends right after). Server events of the call during
    the gap were not received (OpenAI does not replay them), which is what the record should say.
    """

    type: str = "ag2.sideband_gap"
    call_id: str | None = None
    started_at: float
    ended_at: float | None = None
    attempts: int = 0
    # Why the socket dropped: "close 1011", "close 1006 (no close frame)", "ping timeout", ...
    reason: str = ""

    @property
    def duration(self) -> float | None:
        return None if self.ended_at is None else max(0.0, self.ended_at - self.started_at)


def _excerpt(text: str) -> str:
    return text if len(text) <= FRAME_EXCERPT_CHARS else text[:FRAME_EXCERPT_CHARS] + "…"


def _function_call(message: dict[str, Any]) -> RealtimeEvent:
    item = message.get("item") or {}
    raw_arguments = item.get("arguments") or ""
    typed_item = ConversationItem.model_validate(item)  # raises ValidationError: parse_event reports it
    try:
        # A function without parameters may come with an empty string rather than "{}".
        arguments = json.loads(raw_arguments) if raw_arguments.strip() else {}
    except (ValueError, AttributeError, RecursionError):
        arguments = None
    response_id = message.get("response_id")
    if not isinstance(arguments, dict):
        return InvalidFrame(
            code="invalid_function_arguments",
            message=f"Arguments of the call to {item.get('name')!r} are not a JSON object",
            frame_type=message.get("type"),
            excerpt=_excerpt(str(raw_arguments)),
            call_id=item.get("call_id"),
            name=item.get("name"),
            event_id=message.get("event_id"),
            raw_message=message,
            item=typed_item,
            response_id=response_id if isinstance(response_id, str) else None,
        )
    return FunctionCall(
        name=item["name"],
        call_id=item["call_id"],
        arguments=arguments,
        item_id=item.get("id"),
        response_id=response_id,
        output_index=message.get("output_index"),
        event_id=message.get("event_id"),
        raw_message=message,
        item=typed_item,
    )


def _is_finished_function_call(message: dict[str, Any]) -> bool:
    item = message.get("item")
    return (
        isinstance(item, dict)
        and item.get("type") == "function_call"
        and item.get("status") in (None, "completed")
        and isinstance(item.get("name"), str)
        and isinstance(item.get("call_id"), str)
    )


def _unreadable(code: InvalidFrameCode, message: str, excerpt: str) -> InvalidFrame:
    # No decoded message to keep, so raw_message describes the problem (observers log raw_message).
    raw = {"type": "ag2.invalid_frame", "code": code, "message": message, "excerpt": excerpt}
    return InvalidFrame(code=code, message=message, excerpt=excerpt, raw_message=raw)


def parse_event(message: dict[str, Any]) -> RealtimeEvent:
    """Type a decoded server message. Never raises: unreadable input becomes an ``InvalidFrame``."""
    event_type = message.get("type")
    if not isinstance(event_type, str) or not event_type:
        invalid = _unreadable("missing_type", "Frame has no string 'type'", _excerpt(json.dumps(message, default=str)))
        invalid.raw_message = message
        return invalid
    try:
        if event_type == "response.output_item.done" and _is_finished_function_call(message):
            return _function_call(message)
        cls = EVENT_CLASSES.get(event_type, RealtimeEvent)
        canonical = BETA_ALIASES.get(event_type, event_type)
        return cls.model_validate({**message, "type": canonical, "raw_message": message})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'frame'}: {error['msg']}" for error in exc.errors()
        )
        return InvalidFrame(
            code="invalid_event",
            message=f"Unreadable {event_type} event: {problems}",
            frame_type=event_type,
            excerpt=_excerpt(json.dumps(message, default=str)),
            raw_message=message,
        )


def parse_frame(frame: str | bytes) -> RealtimeEvent:
    """Decode and type one text frame. Never raises: see ``parse_event``."""
    text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame
    try:
        # Bounded: 100,000 nested lists made the standard decoder raise RecursionError, not ValueError.
        message = boundedjson.loads(text)
    except boundedjson.JSONTooDeepError as exc:
        return _unreadable("invalid_json", f"Frame is not acceptable JSON: {exc.msg}", _excerpt(text))
    except ValueError:
        return _unreadable("invalid_json", "Frame is not valid JSON", _excerpt(text))
    if not isinstance(message, dict):
        return _unreadable("not_an_object", f"Frame is a JSON {type(message).__name__}, not an object", _excerpt(text))
    return parse_event(message)


# --- frames this client sends (OpenAI client events and the project's ag2.* frames) --------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputText(_Strict):
    type: Literal["input_text"]
    text: str


class OutputText(_Strict):
    # GA: assistant message content is "output_text" (beta said "text").
    type: Literal["output_text"]
    text: str


class MessageItem(_Strict):
    type: Literal["message"]
    role: Literal["user", "assistant", "system"]
    content: list[Annotated[InputText | OutputText, Field(discriminator="type")]]


class FunctionCallOutputItem(_Strict):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str


class _ClientEvent(_Strict):
    event_id: str | None = None


class SessionUpdateEvent(_ClientEvent):
    type: Literal["session.update"]
    session: dict[str, Any]

    @field_validator("session")
    @classmethod
    def _ga_session(cls, value: dict[str, Any]) -> dict[str, Any]:
        from voice.realtime.session import validate_session

        return validate_session(value, partial=True)


class ConversationItemCreateEvent(_ClientEvent):
    type: Literal["conversation.item.create"]
    previous_item_id: str | None = None
    item: Annotated[MessageItem | FunctionCallOutputItem, Field(discriminator="type")]


class ResponseCreateEvent(_ClientEvent):
    type: Literal["response.create"]
    response: dict[str, Any] | None = None


class ResponseCancelEvent(_ClientEvent):
    type: Literal["response.cancel"]
    response_id: str | None = None


class ConversationItemTruncateEvent(_ClientEvent):
    type: Literal["conversation.item.truncate"]
    item_id: str = Field(min_length=1)
    content_index: int = Field(ge=0)
    audio_end_ms: int = Field(ge=0)


class OutputAudioBufferClearEvent(_ClientEvent):
    type: Literal["output_audio_buffer.clear"]


class Ag2InitConfig(_Strict):
    value: str = Field(min_length=1)
    expires_at: int
    model: str = Field(min_length=1)
    calls_url: str = Field(min_length=1)
    session: dict[str, Any]


class Ag2InitFrame(_Strict):
    type: Literal["ag2.init"]
    protocol: Literal[1]
    session_id: str = Field(min_length=1)
    config: Ag2InitConfig
    init: list[SessionUpdateEvent]


class Ag2ErrorFrame(_Strict):
    type: Literal["ag2.error"]
    code: str = Field(min_length=1)
    message: str = Field(min_length=1)
    retryable: bool


ClientFrame = (
    SessionUpdateEvent
    | ConversationItemCreateEvent
    | ResponseCreateEvent
    | ResponseCancelEvent
    | ConversationItemTruncateEvent
    | OutputAudioBufferClearEvent
    | Ag2InitFrame
    | Ag2ErrorFrame
)
_CLIENT_FRAMES: TypeAdapter[ClientFrame] = TypeAdapter(Annotated[ClientFrame, Field(discriminator="type")])


def validate_client_event(frame: dict[str, Any]) -> ClientFrame:
    """Check a frame the server sends to the browser; raises ``pydantic.ValidationError`` if malformed."""
    return _CLIENT_FRAMES.validate_python(frame)


def parse_client_event(frame: Any) -> ClientFrame | None:
    """A client event the server sent (read back from the wire for the record), typed; ``None`` for a
    frame that is not one (logged as it is, and nothing more is made of it)."""
    if not isinstance(frame, dict):
        return None
    try:
        return _CLIENT_FRAMES.validate_python(frame)
    except ValidationError:
        return None


__all__ = [
    "BETA_ALIASES",
    "EVENT_CLASSES",
    "Ag2ErrorFrame",
    "Ag2InitFrame",
    "AudioDelta",
    "AudioDone",
    "ClientFrame",
    "ConversationItem",
    "ConversationItemAdded",
    "ConversationItemCreateEvent",
    "ConversationItemDeleted",
    "ConversationItemDone",
    "ConversationItemRetrieved",
    "ConversationItemTruncateEvent",
    "ConversationItemTruncated",
    "ErrorEvent",
    "FunctionCall",
    "FunctionCallArgumentsDone",
    "InputAudioBufferCommitted",
    "InputAudioBufferDelta",
    "InputTokenDetails",
    "InputTranscriptionCompleted",
    "InputTranscriptionDelta",
    "InputTranscriptionFailed",
    "InvalidFrame",
    "OutputAudioBufferClearEvent",
    "OutputAudioBufferCleared",
    "OutputAudioBufferStarted",
    "OutputAudioBufferStopped",
    "OutputTextDelta",
    "OutputTextDone",
    "OutputTokenDetails",
    "OutputTranscriptDelta",
    "OutputTranscriptDone",
    "RateLimit",
    "RateLimitsUpdated",
    "RealtimeEvent",
    "ResponseCancelEvent",
    "ResponseCreateEvent",
    "ResponseCreated",
    "ResponseDone",
    "ResponseOutputItemAdded",
    "ResponseOutputItemDone",
    "SessionCreated",
    "SessionUpdateEvent",
    "SessionUpdated",
    "SidebandGap",
    "SpeechStarted",
    "SpeechStopped",
    "Usage",
    "parse_client_event",
    "parse_event",
    "parse_frame",
    "whole_number",
]
