"""The Recorder: the only writer of a session's rows.

Two intakes, both cheap and synchronous (they append to an in-memory batch):

- `tap(RawFrame)` logs OpenAI's frames once, where they were heard (DESIGN.md rule 8): the sideband's
  tap in server mode, the consumer's relay in relay mode, in wire order, with their direction (from or
  to OpenAI) and origin (sideband or browser). `record()` logs the project's own frames (ag2.* between
  browser and server) and notes.
- `on_event(RealtimeEvent)`, as an observer of the agent (`observer()`): the typed events of
  voice/realtime/events.py, the one parser of the protocol, become the assembled state (transcript
  items, tool calls, usage, totals). Nothing here reads OpenAI's raw frames for their meaning, so the
  record is the same whichever source fed the agent.

Writing: one writer per process (per event loop) writes the pending rows of *every* live session
together, in one transaction, every `flush_seconds`, sooner when a session has `batch_size` rows
waiting or changes state, and each session flushes itself at close. Why together: 200 sessions at
10 events/s each flushing on their own made 800 transactions (and thread hops) a second, which alone
saturated a core (fan-out benchmark); together it is four. If a combined write fails, every session
is written alone, so one bad batch cannot hold the others back. A failed write is retried; if it keeps
failing the batch is put back and kept for the next flush, never dropped. Only after a write commits
are the finished things published to the channel layer.

A database outage (it does not answer at all) is not a bad batch: the writer backs off (up to 5 s
between tries) and says so once. A session that ends meanwhile stays with the writer after its socket
is gone and is retried until written; after VOICE_RECORDER_CLOSE_DEADLINE_SECONDS, or when the
process stops, its rows go to the spool (voice/spool.py), which every process replays. The writer
also renews the heartbeat of the sessions it serves and ends sessions nobody serves (voice.models).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, models, transaction
from django.utils import timezone

from voice import pricing, spool, timeline
from voice import record_values as values
from voice.agent import Observer, ToolCallStatus, VoiceAgent
from voice.broadcast import Broadcaster
from voice.models import TOOL_CALL_FIELDS, ResponseUsage, SessionEvent, ToolCall, TranscriptItem, VoiceSession
from voice.realtime import boundedjson
from voice.realtime.client import RawFrame
from voice.realtime.events import (
    ConversationItem,
    ConversationItemAdded,
    ConversationItemCreateEvent,
    ConversationItemDone,
    ConversationItemRetrieved,
    ConversationItemTruncated,
    FunctionCall,
    FunctionCallArgumentsDone,
    FunctionCallOutputItem,
    InputTranscriptionCompleted,
    InputTranscriptionDelta,
    InputTranscriptionFailed,
    InvalidFrame,
    OutputTextDelta,
    OutputTextDone,
    OutputTranscriptDelta,
    OutputTranscriptDone,
    RealtimeEvent,
    ResponseDone,
    ResponseOutputItemAdded,
    ResponseOutputItemDone,
    SessionCreated,
    SessionUpdated,
    SidebandGap,
    SpeechStarted,
    SpeechStopped,
    parse_client_event,
)
from voice.realtime.gptlive_events import (
    LiveBackendResponseDone,
    LiveDelegationEnded,
    LiveDelegationStarted,
    LiveSessionStarted,
    LiveTranscriptDelta,
    LiveTranscriptLineDone,
    LiveUsage,
)
from voice.realtime.session import frame_without_secrets

logger = logging.getLogger(__name__)

# Transcript deltas (GA names and beta aliases) are folded into their item instead of becoming one row
# each (DESIGN.md): `tap` does not log them, `on_event` folds them (and logs the few it cannot fold).
FOLDED_DELTAS = frozenset({
    "response.output_audio_transcript.delta",
    "response.audio_transcript.delta",
    "response.output_text.delta",
    "response.text.delta",
    "conversation.item.input_audio_transcription.delta",
    # GPT-Live's timed fragments, folded into transcript lines (voice.realtime.gptlive).
    "session.input_transcript.delta",
    "session.output_transcript.delta",
})
# GPT-Live's sideband copies of the call's audio, ten frames a second each way: not rows in the log (a
# server-side recording takes them from the typed LiveAudioCopy events; docs/gpt-live.md).
AUDIO_COPIES = frozenset({"session.input_audio.append", "session.output_audio.delta"})
# The model's first audio of a line: its first audio delta (not sent over WebRTC) or audio transcript delta.
AUDIO_DELTAS = frozenset({
    "response.output_audio.delta",
    "response.audio.delta",
    "response.output_audio_transcript.delta",
    "response.audio_transcript.delta",
})
# What a turn's latency is measured from (Recorder._time_turn, as voice/timeline.py does on replay).
TURN_SIGNALS = AUDIO_DELTAS | {"input_audio_buffer.speech_stopped", "output_audio_buffer.started",
                               "response.output_item.added", "response.done"}
MAX_PENDING_STAMPS = 64  # first-audio moments of lines not created yet (a delta that came before its item)
FROM_OPENAI = SessionEvent.Direction.FROM_OPENAI
TO_OPENAI = SessionEvent.Direction.TO_OPENAI
INTERNAL = SessionEvent.Direction.INTERNAL
OPENAI_DIRECTIONS = frozenset({FROM_OPENAI, TO_OPENAI})
ORIGINS = frozenset(SessionEvent.Origin.values)
ITEM_FIELDS = ["previous_item_id", "response_id", "role", "kind", "name", "text", "text_truncated", "status",
               "audio_start_ms", "audio_end_ms", "first_audio_at", "completed_at"]
TOOL_FIELDS = ["item_id", "name", "arguments", "output", "status", "duration_ms"]
MAX_PAYLOAD_CHARS = 64 * 1024


def _chars(model: type[models.Model], name: str) -> int:
    """A text column's size."""
    size = getattr(model._meta.get_field(name), "max_length", None)
    if not isinstance(size, int):
        raise TypeError(f"{model.__name__}.{name} is not a column of bounded size")
    return size


# Column sizes, from the models, so a bound cannot drift from the column it protects.
ID_CHARS = min(_chars(TranscriptItem, f) for f in ("item_id", "previous_item_id", "response_id"))
NAME_CHARS = min(_chars(TranscriptItem, "name"), _chars(ToolCall, "name"))
TYPE_CHARS = _chars(SessionEvent, "type")
STATUS_CHARS = _chars(ResponseUsage, "status")
MAX_ERROR_CHARS = 10_000
# Choices as sets, once: a Django enum's `.values` builds a new list on every access (a third of the
# intake's time in a profile when read per frame).
ROLES = frozenset(TranscriptItem.Role.values)
KINDS = frozenset(TranscriptItem.Kind.values)
TOOL_STATUSES = frozenset(ToolCall.Status.values)
# The database is unavailable: keep the batch and retry it. Any other failure is a row the database
# refuses (or a value its driver cannot send), which no retry will ever write: isolate it instead.
OUTAGE_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)
UNWRITABLE_ROW = "ag2.unwritable_row"
_COST = VoiceSession._meta.get_field("cost_usd")
MAX_COST = Decimal("9" * (_COST.max_digits - _COST.decimal_places) + "." + "9" * _COST.decimal_places)  # 999999.999999


@dataclass
class _Batch:
    events: list[dict[str, Any]] = field(default_factory=list)
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    tools: dict[str, dict[str, Any]] = field(default_factory=dict)
    usages: list[dict[str, Any]] = field(default_factory=list)
    session: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.events or self.items or self.tools or self.usages or self.session)


def _bounded(payload: dict[str, Any], text: str | None = None) -> dict[str, Any]:
    """Keep huge frames (e.g. base64 audio) from bloating the log: store a note instead of megabytes."""
    if "delta" in payload and isinstance(payload["delta"], str) and len(payload["delta"]) > MAX_PAYLOAD_CHARS:
        return {**payload, "delta": f"<{len(payload['delta'])} characters not stored>"}
    try:
        size = len(text) if text is not None else len(json.dumps(payload, default=str))
    except (TypeError, ValueError, RecursionError):
        return {"type": payload.get("type"), "unserialisable": True}
    if size > MAX_PAYLOAD_CHARS * 4:
        return {"type": payload.get("type"), "truncated": True, "size": size}
    return payload


class Recorder:
    """Assembles and persists one session's record. Use from the event loop only.

    Fed raw frames by `tap` (OpenAI's) and `record` (the project's), typed events by `on_event`; hand
    `observer()` to the agent. Whoever created the Recorder starts and closes it.
    """

    def __init__(
        self,
        session_id: str,
        *,
        model: str = "",
        broadcaster: Broadcaster | None = None,
        batch_size: int = 200,
        flush_seconds: float = 0.25,
        max_retries: int = 3,
        start_seq: int = 0,
    ) -> None:
        self.session_id = session_id
        self.model = model
        self.broadcaster = broadcaster
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.max_retries = max_retries
        self._seq = start_seq
        self._pending = _Batch()
        self._items: dict[str, dict[str, Any]] = {}
        self._tools: dict[str, dict[str, Any]] = {}
        self._price_loaded = False
        self._price: Any = None
        self.turns = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.total_tokens = 0
        self.cost_usd: Decimal | None = Decimal("0")  # None once a response was unpriced
        self.failed_flushes = 0
        self._flush_lock = asyncio.Lock()
        self._writer: _Writer | None = None
        self._closed = False
        # Bounds of what this session may add (settings; see README): read once, used per frame.
        self.max_item_chars: int = settings.VOICE_MAX_ITEM_TEXT_CHARS
        self.max_session_chars: int = settings.VOICE_MAX_SESSION_TEXT_CHARS
        self.max_response_tokens: int = settings.VOICE_MAX_RESPONSE_TOKENS
        self.max_session_tokens: int = settings.VOICE_MAX_SESSION_TOKENS
        self._api_key: str = settings.OPENAI_API_KEY
        # Azure's credentials do not look like OpenAI's (`sk-`): redacted by value, like the OpenAI key.
        self._other_secrets: list[str] = [s for s in (settings.AZURE_OPENAI_API_KEY, settings.AZURE_OPENAI_AD_TOKEN)
                                          if s]
        self._text_chars = 0  # all items' text together, against max_session_chars
        self._counted_responses: set[str] = set()  # a response's usage counts once
        self._noted: set[tuple[str, ...]] = set()  # conditions already noted in the record
        self._stopping = False
        self._in_flight: dict[int, _Batch] = {}  # taken for a write whose outcome is not known yet
        self._origin = ""  # where OpenAI's frames are heard (the last tap's origin), for rows on_event logs
        # Per-turn latency for the live dashboard, from the frames' arrival times (as the replay measures).
        self._clock = timeline.TurnClock()
        self._first_audio: dict[str, datetime] = {}  # item_id -> its first audio, until the item exists
        self._last_event: RealtimeEvent | None = None
        # A server-mode session outlives its process (another adopts the call): never ended at exit.
        self.survives_process = False
        # GPT-Live: billable seconds already counted (cumulative snapshots become per-row increments), and
        # whether the session ran (session.started), which credits the creation charge.
        self.voice_seconds = Decimal(0)
        self.standby_seconds = Decimal(0)
        self.live_started = False
        self._usage_rows = 0
        self._prices: dict[str, Any] = {}

    # --- resuming ----------------------------------------------------------------------------------

    def restore(self, state: dict[str, Any]) -> None:
        """Go on with a session another process recorded until now (a server-mode call taken over):
        the next event seq, the items and tool calls (so late deltas and outputs fold into them), the
        totals and the responses already counted. `state` comes from `load_state`."""
        self._seq = max(self._seq, state["last_seq"])
        self._items.update(state["items"])
        self._tools.update(state["tools"])
        self._counted_responses.update(state["response_ids"])
        self._text_chars = sum(len(item["text"]) for item in self._items.values())
        self.turns, self.input_tokens = state["turns"], state["input_tokens"]
        self.output_tokens, self.total_tokens = state["output_tokens"], state["total_tokens"]
        self.cost_usd = state["cost_usd"]
        self.voice_seconds = state.get("voice_seconds", Decimal(0))
        self.standby_seconds = state.get("standby_seconds", Decimal(0))
        self.live_started = self.live_started or self.voice_seconds > 0

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Join the process's writer, which from now on flushes this session with all the others."""
        if self._writer is None and not self._closed:
            self._writer = _writer_for_loop()
            self._writer.add(self)

    async def close(self, *, stopping: bool = False) -> bool:
        """Write everything buffered; True when all of it is in the database.

        What the database refuses now (it is down) is not lost: the process's writer keeps this
        recorder and retries with backoff after the socket is gone, for VOICE_RECORDER_CLOSE_DEADLINE_SECONDS,
        then spools the rows to a local file (voice.spool). `stopping` means the process is going away
        and nobody will be left to retry: what cannot be written now is spooled at once (and so is
        anything recorded after, at a later close). Safe to call more than once.
        """
        self._closed = True
        self._stopping = self._stopping or stopping
        writer = self._writer or _writer_for_loop()
        self._writer = None
        writer.discard(self)
        failures = self.failed_flushes
        await self.flush()  # waits for a combined write of this session that is under way
        # Rows a write refused come back as notes to be written next: write those too, while writes work.
        for _ in range(3):
            if not self._pending or self.failed_flushes != failures:
                break
            await self.flush()
        if not self._pending:
            writer.closing.pop(self, None)
            return True
        if self._stopping:
            writer.closing.pop(self, None)
            await self._spool("the process is stopping")
            if self._pending:  # the spool itself failed (disk): the exit hook tries once more
                writer.keep_closing(self)
            return False
        writer.keep_closing(self)
        return False

    async def _spool(self, reason: str) -> None:
        """Move the pending rows to a spool file (in a thread: it is fsync'd), to be replayed later."""
        async with self._flush_lock:
            if not self._pending:
                return
            batch = self._take()
            try:
                path = await asyncio.to_thread(self._spool_batch, batch, reason)
            except Exception:
                logger.exception("Session %s: could not spool %d unwritten event(s); kept in memory",
                                 self.session_id, len(batch.events))
                self._put_back(batch)
                return
        logger.warning("Session %s: %d event(s), %d item(s), %d tool call(s), %d usage row(s) not yet written "
                       "(%s): spooled to %s, replayed when the database answers", self.session_id,
                       len(batch.events), len(batch.items), len(batch.tools), len(batch.usages), reason, path)

    def _spool_batch(self, batch: _Batch, reason: str) -> Any:
        return spool.write(self.session_id, events=batch.events, items=batch.items.values(),
                           tools=batch.tools.values(), usages=batch.usages, session=batch.session, reason=reason)

    def spool_now(self, reason: str) -> None:
        """Spool what is unwritten, synchronously: for the exit hook, when no event loop runs any more.

        Batches whose write was under way go too (first, being older): the process never learnt whether
        they committed, and replaying rows that did is harmless (the replay is idempotent).
        """
        batches = [*self._in_flight.values(), *([self._take()] if self._pending else [])]
        self._in_flight.clear()
        for batch in batches:
            try:
                path = self._spool_batch(batch, reason)
            except Exception:
                logger.exception("Session %s: could not spool %d unwritten event(s) at exit: they are lost",
                                 self.session_id, len(batch.events))
                continue
            logger.warning("Session %s: %d unwritten event(s) spooled at exit (%s) to %s", self.session_id,
                           len(batch.events), reason, path)

    def _wake(self) -> None:
        if self._writer is not None:
            self._writer.wake.set()

    # --- intake ------------------------------------------------------------------------------------

    def tap(self, raw: RawFrame, message: Any = None) -> None:
        """Log one of OpenAI's frames, once, where it was heard: call it in wire order, for every frame.

        `message` is the frame already decoded, when the source has it (spares decoding it twice). A
        frame from OpenAI is only logged here; what it means reaches the record as the typed event the
        agent dispatches (`on_event`), and transcript deltas are not logged at all (they are folded). A
        client event the server sent (to OpenAI) is logged, and what the record needs of it, a tool's
        output, is taken from it here, typed by voice.realtime.events.
        """
        direction = raw.direction
        if direction not in OPENAI_DIRECTIONS:
            raise ValueError(f"tap() logs OpenAI's frames (from_openai, to_openai), not {direction!r}: use record()")
        origin = raw.origin if raw.origin in ORIGINS else ""
        if message is None:
            message = _decoded(raw.text)
        elif not isinstance(message, dict):
            message = {"type": "<not an object>", "value": values.clean_json(message)}
        kind = values.bounded_text(message.get("type"), TYPE_CHARS) or "<missing type>"
        if direction == FROM_OPENAI:
            self._origin = origin
            if kind in TURN_SIGNALS:
                self._time_turn(kind, message, raw.at)
            if kind in FOLDED_DELTAS or kind in AUDIO_COPIES:
                return
        # Every value is made storable where it enters (valid Unicode, no NUL, bounded nesting); the
        # caller's frame, which may still be on its way elsewhere, is never changed.
        stored, text = values.storable(message)
        self._log(direction, kind, stored, datetime.fromtimestamp(raw.at, UTC), text, origin)
        if direction == TO_OPENAI:
            try:
                self._apply_client_event(message)
            except Exception:  # a surprising shape must cost us the derivation, never the log row
                logger.exception("Session %s: could not interpret the client event %s", self.session_id, kind)
        if len(self._pending.events) >= self.batch_size:
            self._wake()

    def record(self, direction: str, frame: Any, *, origin: str | None = None) -> None:
        """Log one of the project's own frames: ag2.* between the browser and the server (`from_browser`,
        `to_browser`; origin `browser`) or a note of the server's (`internal`; origin `server`). Nothing is
        derived from them. OpenAI's frames go through `tap`."""
        if direction in OPENAI_DIRECTIONS:
            raise ValueError("OpenAI's frames are logged with tap(RawFrame), where they are heard")
        if not isinstance(frame, dict):
            frame = {"type": "<not an object>", "value": values.clean_json(frame)}
        kind = values.bounded_text(frame.get("type"), TYPE_CHARS) or "<missing type>"
        if origin is None:
            origin = SessionEvent.Origin.SERVER if direction == INTERNAL else SessionEvent.Origin.BROWSER
        stored, text = values.storable(frame)
        self._log(direction, kind, stored, timezone.now(), text, origin)
        if len(self._pending.events) >= self.batch_size:
            self._wake()

    def observer(self) -> RecorderObserver:
        """The agent's observer feeding this Recorder (typed events, tool calls' ends)."""
        return RecorderObserver(self)

    async def on_event(self, event: RealtimeEvent) -> None:
        self.apply(event)

    def apply(self, event: RealtimeEvent) -> None:
        """Fold one typed event into the record (items, transcripts, truncation, tool calls, usage)."""
        if event is self._last_event:
            return  # the same event again, through a second observer of this Recorder: applied once
        self._last_event = event
        handler = _HANDLERS.get(type(event))
        if handler is None:
            return
        try:
            handler(self, event)
        except Exception:  # a surprising shape must cost us the derivation, never the session
            logger.exception("Session %s: could not interpret %s", self.session_id, event.type)
        if len(self._pending.events) >= self.batch_size:
            self._wake()

    def _log(self, direction: str, kind: str, frame: dict[str, Any], now: datetime, text: str | None = None,
             origin: str = "") -> None:
        """Append one event row, and stream it to the session's watchers (bounded once for both).

        The one place secrets are taken out: what is recorded and what dashboards see are the same
        redacted payload (the client secret of `ag2.init`, anything shaped like a key). `frame` is
        storable already; `text`, its JSON when known, spares walking a frame that holds no secret."""
        self._seq += 1
        frame = frame_without_secrets(frame)  # an echoed MCP credential is never stored
        if text is None or values.may_hold_secret(text, self._api_key):
            redacted = values.redact_secrets(frame, self._api_key)
            frame, text = redacted, (text if redacted is frame else None)
        for secret in self._other_secrets:
            if text is None or secret in text:
                redacted = values.redact_secrets(frame, secret)
                frame, text = redacted, (text if redacted is frame else None)
        payload = _bounded(frame, text)
        self._pending.events.append(
            {"seq": self._seq, "direction": direction, "origin": origin, "type": kind[:TYPE_CHARS],
             "payload": payload, "created_at": now}
        )
        if self.broadcaster is not None:
            self.broadcaster.to_session(
                {"type": "event", "event": {"seq": self._seq, "direction": direction, "origin": origin, "type": kind,
                                            "payload": payload}}
            )

    def _note(self, kind: str, payload: dict[str, Any], *, once: tuple[str, ...] | None = None) -> None:
        """An internal row saying what the Recorder had to do to a value; `once` keys a note that a
        repeating condition would otherwise write again and again."""
        if once is not None:
            if once in self._noted:
                return
            self._noted.add(once)
        self._log(INTERNAL, kind, {"type": kind, **payload}, timezone.now(), origin=SessionEvent.Origin.SERVER)

    def _value_note(self, field_name: str, problem: str, value: Any) -> None:
        logger.info("Session %s: %s %s; stored bounded", self.session_id, field_name, problem)
        self._note("ag2.value_bounded", {"field": field_name, "problem": problem,
                                         "value": values.storable_repr(value, 200)},
                   once=("value", field_name, problem))

    def update_session(self, **fields: Any) -> None:
        """Lifecycle changes (status, call id, timestamps, end reason): written at the next flush."""
        for name, value in fields.items():
            if isinstance(value, str):  # an error message or call id may come from the browser
                limit = getattr(VoiceSession._meta.get_field(name), "max_length", None) or MAX_ERROR_CHARS
                fields[name] = values.bounded_text(value, limit)
        self._pending.session.update(fields)
        self._wake()

    def tool_finished(self, call_id: str, name: str, output: str, status: str, duration_ms: int | None) -> None:
        tool = self._tool(call_id, name=name)
        if tool is None:
            return
        tool.update(output=self._bounded_output(output), status=values.bounded_choice(status, TOOL_STATUSES)
                    or ToolCall.Status.FAILED, duration_ms=self._ms("duration_ms", duration_ms))
        self._mark_tool(tool)

    # --- bounding values ---------------------------------------------------------------------------

    def _id(self, field_name: str, raw: Any) -> str:
        value = values.bounded_id(raw, ID_CHARS)
        if isinstance(raw, str) and len(raw) > ID_CHARS:
            self._value_note(field_name, f"longer than {ID_CHARS} characters", raw)
        return value

    def _name(self, raw: Any) -> str:
        if isinstance(raw, str) and len(raw) > NAME_CHARS:
            self._value_note("name", f"longer than {NAME_CHARS} characters", raw)
        return values.bounded_text(raw, NAME_CHARS)

    def _role(self, raw: Any) -> str:
        role = values.bounded_choice(raw, ROLES)
        if raw and not role:
            self._value_note("role", f"not one of {', '.join(sorted(ROLES))}", raw)
        return role

    def _ms(self, field_name: str, raw: Any) -> int | None:
        if raw is None:
            return None
        value = values.bounded_int(raw)
        if value is None:
            self._value_note(field_name, f"not a whole number between 0 and {values.POSITIVE_INT_MAX}", raw)
        return value

    def _bounded_output(self, raw: Any) -> str:
        text = raw if isinstance(raw, str) else str(raw)
        if len(text) > self.max_item_chars:
            self._value_note("output", f"longer than {self.max_item_chars} characters", text)
        return values.bounded_text(text, self.max_item_chars)

    # --- assembling the record ---------------------------------------------------------------------

    def _item(self, raw_id: Any, *, role: Any = "", response_id: Any = "", kind: str = "") -> dict[str, Any] | None:
        """The item with this id, created on first mention; None when there is no usable id."""
        item_id = self._id("item_id", raw_id)
        if not item_id:
            return None
        item = self._items.get(item_id)
        if item is None:
            item = {"item_id": item_id, "previous_item_id": "", "response_id": "", "role": "", "kind": "message",
                    "name": "", "text": "", "text_truncated": False, "status": TranscriptItem.Status.IN_PROGRESS,
                    "audio_start_ms": None, "audio_end_ms": None,
                    "first_audio_at": self._first_audio.pop(item_id, None), "created_at": timezone.now(),
                    "completed_at": None}
            self._items[item_id] = item
        defaults = {"role": self._role(role) if role else "", "kind": kind,
                    "response_id": self._id("response_id", response_id) if response_id else ""}
        for key, value in defaults.items():
            if value and not item.get(key):
                item[key] = value
        return item

    def _mark_item(self, item: dict[str, Any], *, finished: bool = False) -> None:
        self._pending.items[item["item_id"]] = item
        if finished:
            item["_publish"] = True

    def _complete(self, item: dict[str, Any], status: str = "completed") -> None:
        # A truncation or a failure is final: a late "done" must not paper over it.
        if item["status"] not in (TranscriptItem.Status.TRUNCATED, TranscriptItem.Status.FAILED):
            item["status"] = status
        item["completed_at"] = item["completed_at"] or timezone.now()

    def _text_room(self, item: dict[str, Any]) -> int:
        """How long this item's text may be: its own bound, and what the session has left."""
        others = self._text_chars - len(item["text"])
        return max(0, min(self.max_item_chars, self.max_session_chars - others))

    def _set_text(self, item: dict[str, Any], text: str) -> None:
        room = self._text_room(item)
        if len(text) > room:
            text = text[:room]
            self._cut(item)
        text = values.clean_str(text)  # typed events carry the text as it came
        self._text_chars += len(text) - len(item["text"])
        item["text"] = text

    def _append_text(self, item: dict[str, Any], delta: str) -> str:
        """Fold a delta into the item's text; returns what was kept ("" once the item is cut)."""
        if item["text_truncated"]:
            return ""  # stop folding: the row, the process and the watchers are spared the rest
        room = self._text_room(item) - len(item["text"])
        if len(delta) > room:
            delta = delta[:room]
            self._cut(item)
        delta = values.clean_str(delta)  # only what is kept: a delta is folded, never logged as it came
        item["text"] += delta
        self._text_chars += len(delta)
        return delta

    def _cut(self, item: dict[str, Any]) -> None:
        """Mark the item cut and note it once (per item; per session when the session's bound is reached)."""
        item["text_truncated"] = True
        session_full = self._text_chars - len(item["text"]) + self.max_item_chars > self.max_session_chars
        scope, limit = ("session", self.max_session_chars) if session_full else ("item", self.max_item_chars)
        logger.info("Session %s: text of item %s cut at the %s bound (%d characters)", self.session_id,
                    item["item_id"], scope, limit)
        self._note("ag2.text_truncated", {"item_id": item["item_id"], "scope": scope, "limit": limit},
                   once=("session_text",) if scope == "session" else ("item_text", item["item_id"]))

    def _fold(self, event: InputTranscriptionDelta | OutputTranscriptDelta | OutputTextDelta, role: str,
              response_id: str | None) -> None:
        item = self._item(event.item_id, role=role, response_id=response_id or "")
        if item is None:
            # Nothing to fold it into: keep it as a row instead (tap left it out), so nothing is dropped.
            self._log_unfolded(event.raw_message)
            return
        if item["status"] != TranscriptItem.Status.COMPLETED or role == "assistant":
            delta = self._append_text(item, event.delta)
            if not delta:
                return
            self._mark_item(item)
            if self.broadcaster is not None:
                self.broadcaster.to_session({"type": "delta", "item_id": item["item_id"],
                                             "role": item["role"] or role, "delta": delta})

    def _log_unfolded(self, message: dict[str, Any]) -> None:
        """A transcript delta `tap` did not log and nothing could fold: logged now, as it came."""
        kind = values.bounded_text(message.get("type"), TYPE_CHARS) or "<missing type>"
        stored, text = values.storable(message)
        self._log(FROM_OPENAI, kind, stored, timezone.now(), text, self._origin)

    def _note_problems(self, event: RealtimeEvent) -> None:
        """Values the parser could not believe and left out (events.py): noted once per field and problem."""
        for field_name, problem in (event.value_problems or {}).items():
            self._value_note(field_name, problem.get("problem", ""), problem.get("value", ""))

    def _apply_item(self, data: ConversationItem, *, previous: str | None, done: bool,
                    response_id: str | None = None) -> None:
        kind = data.type if data.type in KINDS else "message"
        item = self._item(data.id, kind=kind, role=data.role or "", response_id=response_id or "")
        if item is None:
            return
        item["kind"] = kind
        if previous is not None:
            item["previous_item_id"] = self._id("previous_item_id", previous)
        if kind == TranscriptItem.Kind.FUNCTION_CALL:
            item["role"] = item["role"] or "assistant"
            item["name"] = self._name(data.name) or item["name"]
            if data.arguments:
                self._set_text(item, data.arguments)
            tool = self._tool(data.call_id, name=item["name"], item_id=item["item_id"])
            if tool is not None:
                if item["text"] and not tool["arguments"]:
                    tool["arguments"] = _parse_arguments(item["text"])
                self._mark_tool(tool)
        elif kind == TranscriptItem.Kind.FUNCTION_CALL_OUTPUT:
            item["role"] = item["role"] or "system"
            if data.output is not None:
                self._set_text(item, data.output)
            call_id = self._id("call_id", data.call_id)
            if call_id:
                item["name"] = self._tools.get(call_id, {}).get("name", item["name"])
        else:
            # User audio items arrive with transcript null; the transcription events fill them in.
            text = data.text
            if text:
                self._set_text(item, text)
        status = data.status
        if done or status == "completed":
            self._complete(item, "failed" if status == "incomplete" and not item["text"] else "completed")
        self._mark_item(item, finished=done)

    # One handler per typed event class (exact class: FunctionCall and InvalidFrame included).

    def _on_session(self, event: SessionCreated | SessionUpdated) -> None:
        session_id = self._id("openai_session_id", event.session_id)
        if session_id:
            self._pending.session["openai_session_id"] = session_id

    def _on_item_added(self, event: ConversationItemAdded) -> None:
        self._apply_item(event.item, previous=event.previous_item_id, done=False)

    def _on_item_done(self, event: ConversationItemDone) -> None:
        # Beta's conversation.item.created parses to this class (PROTOCOL.md): the same final notice.
        self._apply_item(event.item, previous=event.previous_item_id, done=True)

    def _on_item_retrieved(self, event: ConversationItemRetrieved) -> None:
        # The server's copy of an item (GA): what it holds, no place in the chain, nothing finished by it.
        self._apply_item(event.item, previous=None, done=False)

    def _on_output_item_added(self, event: ResponseOutputItemAdded) -> None:
        self._apply_item(event.item, previous=None, done=False, response_id=event.response_id)

    def _on_output_item_done(self, event: ResponseOutputItemDone | FunctionCall) -> None:
        self._apply_item(event.item, previous=None, done=True, response_id=event.response_id)

    def _on_invalid(self, event: InvalidFrame) -> None:
        if event.code == "invalid_function_arguments" and event.item is not None:
            # The call is kept with its arguments as written (the tool observer answers it as rejected).
            self._apply_item(event.item, previous=None, done=True, response_id=event.response_id)
        elif event.frame_type in FOLDED_DELTAS and event.raw_message.get("type") == event.frame_type:
            self._log_unfolded(event.raw_message)  # a delta tap left out, and unreadable: keep it as it came

    def _on_input_delta(self, event: InputTranscriptionDelta) -> None:
        self._fold(event, "user", None)

    def _on_output_delta(self, event: OutputTranscriptDelta | OutputTextDelta) -> None:
        self._fold(event, "assistant", event.response_id)

    def _on_transcription_completed(self, event: InputTranscriptionCompleted) -> None:
        if (item := self._item(event.item_id, role="user")) is not None:
            if event.transcript:
                self._set_text(item, event.transcript)
            self._complete(item)
            self._mark_item(item, finished=True)

    def _on_transcription_failed(self, event: InputTranscriptionFailed) -> None:
        if (item := self._item(event.item_id, role="user")) is not None:
            item["status"] = TranscriptItem.Status.FAILED
            self._mark_item(item, finished=True)

    def _on_transcript_done(self, event: OutputTranscriptDone | OutputTextDone) -> None:
        item = self._item(event.item_id, role="assistant", response_id=event.response_id or "")
        if item is None:
            return
        name = "transcript" if isinstance(event, OutputTranscriptDone) else "text"
        # Only a final text that came (a field left out is not an empty text); a truncation stays as spoken.
        if name in event.model_fields_set and item["status"] != TranscriptItem.Status.TRUNCATED:
            self._set_text(item, getattr(event, name))
        self._mark_item(item)

    def _on_truncated(self, event: ConversationItemTruncated) -> None:
        self._note_problems(event)
        if (item := self._item(event.item_id, role="assistant")) is not None:
            item["status"] = TranscriptItem.Status.TRUNCATED
            if event.audio_end_ms is not None:
                item["audio_end_ms"] = event.audio_end_ms
            self._mark_item(item, finished=True)

    def _on_speech_started(self, event: SpeechStarted) -> None:
        self._note_problems(event)
        if (item := self._item(event.item_id, role="user")) is not None:
            item["audio_start_ms"] = event.audio_start_ms
            self._mark_item(item)

    def _on_speech_stopped(self, event: SpeechStopped) -> None:
        self._note_problems(event)
        if (item := self._item(event.item_id, role="user")) is not None:
            item["audio_end_ms"] = event.audio_end_ms
            self._mark_item(item)

    def _on_arguments_done(self, event: FunctionCallArgumentsDone) -> None:
        tool = self._tool(event.call_id, name=event.name or "", item_id=event.item_id or "")
        if tool is not None:
            tool["arguments"] = _parse_arguments(event.arguments)
            self._mark_tool(tool)

    def _on_response_done(self, event: ResponseDone) -> None:
        if event.response_id is None and event.usage is None:
            return  # no response named, nothing used: nothing to count
        self._apply_usage(event)

    def _on_sideband_gap(self, event: SidebandGap) -> None:
        # The sideband missed the call's events for a while (OpenAI does not replay them): the record says so.
        stored, _ = values.storable(event.raw_message or {"type": event.type})
        self._log(INTERNAL, event.type, {**stored, "type": event.type}, timezone.now(),
                  origin=SessionEvent.Origin.SIDEBAND)

    # --- GPT-Live (docs/gpt-live.md, "Onto the record") ---

    def _on_live_started(self, event: LiveSessionStarted) -> None:
        if event.type == "session.started":
            self.live_started = True
        session_id = self._id("openai_session_id", event.session_id)
        if session_id:
            self._pending.session["openai_session_id"] = session_id

    def _on_live_delta(self, event: LiveTranscriptDelta) -> None:
        """A timed fragment onto its transcript line, with the line's times on the session's timeline."""
        item = self._item(event.line_id, role=event.role)
        if item is None:
            return
        if event.previous_line_id and not item["previous_item_id"]:
            item["previous_item_id"] = self._id("previous_item_id", event.previous_line_id)
        if item["audio_start_ms"] is None and event.start_ms is not None:
            item["audio_start_ms"] = event.start_ms
        if event.end_ms is not None:
            item["audio_end_ms"] = max(item["audio_end_ms"] or 0, event.end_ms)
        delta = self._append_text(item, event.delta) if event.delta else ""
        self._mark_item(item)
        if delta and self.broadcaster is not None:
            self.broadcaster.to_session({"type": "delta", "item_id": item["item_id"], "role": event.role,
                                         "delta": delta})

    def _on_live_line_done(self, event: LiveTranscriptLineDone) -> None:
        if (item := self._items.get(self._id("item_id", event.line_id))) is not None:
            self._complete(item)
            self._mark_item(item, finished=True)

    def _on_live_delegation(self, event: LiveDelegationStarted) -> None:
        """A delegation to the Responses backend, recorded as a tool call until its response ends."""
        tool = self._tool(event.delegation_id, name=f"delegation:{event.target}")
        if tool is not None:
            tool["arguments"] = {k: v for k, v in (("target", event.target), ("response_id", event.response_id),
                                                   ("offset_ms", event.offset_ms)) if v is not None}
            self._mark_tool(tool)

    def _on_live_delegation_ended(self, event: LiveDelegationEnded) -> None:
        tool = self._tool(event.delegation_id, name="delegation:responses")
        if tool is not None:
            tool.update(output=self._bounded_output(event.output), status=values.bounded_choice(
                event.status, TOOL_STATUSES) or ToolCall.Status.FAILED,
                duration_ms=self._ms("duration_ms", event.duration_ms))
            self._mark_tool(tool)

    def _on_backend_done(self, event: LiveBackendResponseDone) -> None:
        if event.response_id is None and event.usage is None:
            return
        self._apply_usage(event, model=event.model or self.model)

    def _on_live_usage(self, event: LiveUsage) -> None:
        """Billable seconds: each cumulative snapshot adds a row with what it adds ("do not sum")."""
        seconds = Decimal(str(event.seconds)).quantize(Decimal("0.001"))
        standby = min(seconds, Decimal(str(event.standby_seconds)).quantize(Decimal("0.001")))
        self.live_started = self.live_started or event.final
        self._add_seconds(seconds, standby, status="final" if event.final else "updated")

    def _add_seconds(self, seconds: Decimal, standby: Decimal, *, status: str) -> None:
        added, added_standby = seconds - self.voice_seconds, standby - self.standby_seconds
        if added < 0 or added_standby < 0:
            self._note("ag2.usage_refused", {"response_id": "live-seconds", "problem":
                       f"usage went back from {self.voice_seconds} to {seconds} seconds"},
                       once=("live_seconds_back",))
            return
        if added == 0 and added_standby == 0 and status != "final":
            return  # a final figure that adds nothing is still kept: the record shows the session's close
        self.voice_seconds, self.standby_seconds = seconds, standby
        self._usage_rows += 1
        self._pending.usages.append(
            {"response_id": f"live-seconds-{self._seq}-{self._usage_rows}", "status": status, "model": self.model,
             "created_at": timezone.now(), **dict.fromkeys(values.USAGE_FIELDS, 0),
             # Active is what is not standby; priced at write time from the cumulative totals, so the rows'
             # rounded costs add up to the session's.
             "voice_seconds": added - added_standby, "standby_seconds": added_standby,
             "_cumulative": (seconds - standby, standby)})

    def settle_live_creation(self, charge_seconds: float) -> None:
        """At the end of a GPT-Live session this server created: the creation charge (15 s by default) is
        credited once the session runs; a session that never started is billed it (docs/gpt-live.md)."""
        if self.live_started or self.voice_seconds > 0 or charge_seconds <= 0:
            return
        self._note("ag2.live_creation_charge", {"seconds": charge_seconds,
                                                "why": "the session was created but never started"})
        self._add_seconds(Decimal(str(charge_seconds)), Decimal(0), status="creation_charge")

    # --- per-turn latency ----------------------------------------------------------------------------

    def _time_turn(self, kind: str, message: dict[str, Any], at_seconds: float) -> None:
        """Fold one timing frame into the turn clock, at the moment it arrived; publish a turn's latency
        when its first audio is known exactly (output_audio_buffer.started), or at its response.done from
        the best sign there was (its first audio delta, else its output item), since OpenAI may never
        send the exact one. A later exact moment is published again: the dashboard keeps the last."""
        try:
            at = datetime.fromtimestamp(at_seconds, UTC)
            if kind == "input_audio_buffer.speech_stopped":
                self._clock.speech_stopped(at)
                return
            if kind == "response.done":
                response = message.get("response")
                if response_id := _plain_id(response.get("id") if isinstance(response, dict) else None):
                    self._publish_turn(response_id)
                return
            response_id = _plain_id(message.get("response_id"))
            if kind == "output_audio_buffer.started":
                rank, item_id = timeline.EXACT, ""
            elif kind == "response.output_item.added":
                item = message.get("item")
                if not isinstance(item, dict) or item.get("type") != "message" or item.get("role") not in (
                        None, "assistant"):
                    return  # a tool call says nothing: its response takes no turn
                rank, item_id = timeline.ITEM_ADDED, _plain_id(item.get("id"))
            else:
                rank, item_id = timeline.AUDIO_DELTA, _plain_id(message.get("item_id"))
                if item_id:
                    self._stamp_first_audio(item_id, at)
            if response_id and self._clock.audio(response_id, at, rank, item_id) and rank == timeline.EXACT:
                self._publish_turn(response_id)
        except Exception:  # a surprising shape must cost us the latency, never the log row
            logger.exception("Session %s: could not time the turn from %s", self.session_id, kind)

    def _stamp_first_audio(self, item_id: str, at: datetime) -> None:
        item = self._items.get(item_id)
        if item is not None:
            if item.get("first_audio_at") is None:
                item["first_audio_at"] = at
                self._mark_item(item)
        elif item_id not in self._first_audio:
            if len(self._first_audio) >= MAX_PENDING_STAMPS:
                self._first_audio.clear()  # deltas whose items never came: forget them
            self._first_audio[item_id] = at

    def _publish_turn(self, response_id: str) -> None:
        seen = self._clock.responses.get(response_id)
        latency = self._clock.latency_ms(response_id)
        if self.broadcaster is None or seen is None or latency is None or seen.published == seen.rank:
            return
        seen.published = seen.rank
        self.broadcaster.to_session({"type": "turn", "turn": {
            "response_id": response_id, "item_id": seen.item_id, "latency_ms": latency,
            "measured_from": timeline.SOURCES[seen.rank]}})

    def _apply_client_event(self, message: dict[str, Any]) -> None:
        """What the record needs of a client event the server sent: the output of a tool call."""
        event = parse_client_event(message)
        if (
            isinstance(event, ConversationItemCreateEvent)
            and isinstance(event.item, FunctionCallOutputItem)
            and (tool := self._tool(event.item.call_id)) is not None
        ):
            tool["output"] = self._bounded_output(event.item.output)
            if tool["status"] == ToolCall.Status.RUNNING:
                tool["status"] = self._status_from_output(tool["output"])
            self._mark_tool(tool)

    @staticmethod
    def _status_from_output(output: str) -> str:
        try:
            parsed = json.loads(output)
        except (TypeError, ValueError, RecursionError):
            return ToolCall.Status.SUCCEEDED
        return ToolCall.Status.FAILED if isinstance(parsed, dict) and "error" in parsed else ToolCall.Status.SUCCEEDED

    def _tool(self, raw_call_id: Any, *, name: Any = "", item_id: Any = "") -> dict[str, Any] | None:
        """The tool call with this id, created on first mention; None when there is no usable id."""
        call_id = self._id("call_id", raw_call_id)
        if not call_id:
            return None
        tool = self._tools.get(call_id)
        if tool is None:
            tool = {"call_id": call_id, "item_id": "", "name": "", "arguments": {}, "output": "",
                    "status": ToolCall.Status.RUNNING, "started_at": timezone.now(), "duration_ms": None}
            self._tools[call_id] = tool
        defaults = {"name": self._name(name) if name else "",
                    "item_id": self._id("item_id", item_id) if item_id else ""}
        for key, value in defaults.items():
            if value and not tool.get(key):
                tool[key] = value
        return tool

    def _mark_tool(self, tool: dict[str, Any]) -> None:
        self._pending.tools[tool["call_id"]] = tool

    def _apply_usage(self, event: ResponseDone, *, model: str | None = None) -> None:
        """A response's usage, counted once and only if it is believable: it is what the session costs.
        Parsed once, by the typed event (`Usage`); only the bounds of this session are checked here."""
        response_id = self._id("response_id", event.response_id) or f"unknown-{self._seq}"
        if response_id in self._counted_responses:
            logger.info("Session %s: usage of %s reported again; counted once", self.session_id, response_id)
            self._note("ag2.usage_refused", {"response_id": response_id, "problem": "usage already counted"},
                       once=("usage_repeated", response_id))
            return
        counts, problem = values.usage_counts(event.usage, self.max_response_tokens)
        tokens = max(counts["total_tokens"], counts["input_tokens"] + counts["output_tokens"])
        if not problem and self.total_tokens + tokens > self.max_session_tokens:
            problem = f"the session's tokens would pass {self.max_session_tokens}"
        if problem:
            logger.warning("Session %s: usage of %s refused: %s", self.session_id, response_id, problem)
            self._note("ag2.usage_refused", {"response_id": response_id, "problem": problem})
            return
        self._counted_responses.add(response_id)
        # The cost is worked out at write time, where the ORM may run (never on the event loop).
        self._pending.usages.append(
            {"response_id": response_id, "status": values.bounded_text(event.status, STATUS_CHARS),
             "model": model or self.model, "created_at": timezone.now(), **counts}
        )
        self.turns += 1
        self.input_tokens += counts["input_tokens"]
        self.output_tokens += counts["output_tokens"]
        self.total_tokens += counts["total_tokens"]

    # --- writing -----------------------------------------------------------------------------------

    def _take(self) -> _Batch:
        batch, self._pending = self._pending, _Batch()
        if batch.usages:
            batch.session.update(turns=self.turns, input_tokens=self.input_tokens, output_tokens=self.output_tokens,
                                 total_tokens=self.total_tokens)
        # Snapshot the mutable dicts: the event loop keeps changing them while the write runs.
        batch.items = {k: {**v} for k, v in batch.items.items()}
        # "Publish when committed" travels with the snapshot: an item finishing again while this batch
        # is being written sets the flag anew on the live item for the next batch, with its newer text.
        for key in batch.items:
            self._items[key].pop("_publish", None)
        batch.tools = {k: {**v} for k, v in batch.tools.items()}
        return batch

    def _put_back(self, batch: _Batch) -> None:
        newer = self._pending
        self._pending = batch
        self._pending.events.extend(newer.events)
        for key, snapshot in batch.items.items():
            if snapshot.get("_publish"):
                self._items[key]["_publish"] = True
            batch.items[key] = self._items[key]
        for key in batch.tools:
            batch.tools[key] = self._tools[key]
        self._pending.items.update(newer.items)
        self._pending.tools.update(newer.tools)
        self._pending.usages.extend(newer.usages)
        self._pending.session.update(newer.session)

    async def flush(self, *, attempts: int | None = None) -> bool:
        """Write this session's pending rows now, on its own (close, and a combined write that failed).

        Tries `attempts` times (default `max_retries`) with a short backoff; a batch that still fails
        is put back, whole, for the next flush. Returns True when nothing is left pending.
        """
        async with self._flush_lock:
            if not self._pending:
                return True
            batch = self._take()
            result: dict[str, Any] | None = None
            tries = attempts or self.max_retries
            for attempt in range(tries):
                try:
                    result = (await _write_shielded([(self, batch)]))[0]
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    logger.warning("Session %s: write of %d event(s) failed (attempt %d/%d): %r",
                                   self.session_id, len(batch.events), attempt + 1, tries, exc)
                    if attempt + 1 < tries:
                        await asyncio.sleep(0.05 * 2**attempt)
            if result is None:
                self.failed_flushes += 1
                logger.error("Session %s: batch kept for the next flush after %d failed attempt(s)",
                             self.session_id, tries)
                self._put_back(batch)
                return False
            self._applied(batch, result)
            return not self._pending

    def _applied(self, batch: _Batch, result: dict[str, Any]) -> None:
        self.cost_usd = result["cost_usd"]  # only now that the transaction committed
        # Rows the database refused (write_batches isolated them): their content and the error become
        # notes in the record, written with the next batch. Once per row and error, however often it
        # changes: a poisoned item is refused again at each of its updates.
        for note in result.get("notes", ()):
            payload = {k: v for k, v in note.items() if k != "type"}
            self._note(note["type"], payload,
                       once=(note["type"], *(str(v) for k, v in sorted(payload.items()) if k not in ("row", "value"))))
        self._publish_committed(batch, result)

    def _load_price(self) -> None:
        """The model's price, read once, in the writer's thread (never on the event loop)."""
        if not self._price_loaded:
            self._price = pricing.price_for(self.model) if self.model else None
            self._price_loaded = True

    def minute_price_of(self, model: str) -> Any:
        """The per-minute price of a model billed by time (GPT-Live), read once, in the writer's thread."""
        key = f"minutes:{model}"
        if key not in self._prices:
            self._prices[key] = pricing.minute_price_for(model)
        return self._prices[key]

    def price_of(self, model: str) -> Any:
        """The price of another model used by this session (GPT-Live's delegated model), read once, in the
        writer's thread."""
        if not model or model == self.model:
            self._load_price()
            return self._price
        if model not in self._prices:
            self._prices[model] = pricing.price_for(model)
        return self._prices[model]

    def _publish_committed(self, batch: _Batch, result: dict[str, Any]) -> None:
        if self.broadcaster is None:
            return
        for item in batch.items.values():
            if item.get("_publish"):
                self.broadcaster.to_both({"type": "item", "item": _item_payload(item)})
        for tool in batch.tools.values():
            self.broadcaster.to_both({"type": "tool_call", "tool_call": _tool_payload(tool)})
        for usage in result["usages"]:
            self.broadcaster.to_both({"type": "usage", "usage": {
                "response_id": usage.response_id, "status": usage.status, "total_tokens": usage.total_tokens,
                "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                "cost_usd": pricing.format_cost(usage.cost_usd)},
                "totals": self.totals()})
        if batch.session:
            self.broadcaster.to_both({"type": "session.updated", "changes": _json_safe(batch.session),
                                      "totals": self.totals()})

    def totals(self) -> dict[str, Any]:
        return {"turns": self.turns, "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "total_tokens": self.total_tokens, "cost_usd": pricing.format_cost(self.cost_usd)}


_HANDLERS: dict[type[RealtimeEvent], Callable[[Recorder, Any], None]] = {
    SessionCreated: Recorder._on_session,
    SessionUpdated: Recorder._on_session,
    ConversationItemAdded: Recorder._on_item_added,
    ConversationItemDone: Recorder._on_item_done,
    ConversationItemRetrieved: Recorder._on_item_retrieved,
    ResponseOutputItemAdded: Recorder._on_output_item_added,
    ResponseOutputItemDone: Recorder._on_output_item_done,
    FunctionCall: Recorder._on_output_item_done,
    InvalidFrame: Recorder._on_invalid,
    InputTranscriptionDelta: Recorder._on_input_delta,
    OutputTranscriptDelta: Recorder._on_output_delta,
    OutputTextDelta: Recorder._on_output_delta,
    InputTranscriptionCompleted: Recorder._on_transcription_completed,
    InputTranscriptionFailed: Recorder._on_transcription_failed,
    OutputTranscriptDone: Recorder._on_transcript_done,
    OutputTextDone: Recorder._on_transcript_done,
    ConversationItemTruncated: Recorder._on_truncated,
    SpeechStarted: Recorder._on_speech_started,
    SpeechStopped: Recorder._on_speech_stopped,
    FunctionCallArgumentsDone: Recorder._on_arguments_done,
    ResponseDone: Recorder._on_response_done,
    SidebandGap: Recorder._on_sideband_gap,
    LiveSessionStarted: Recorder._on_live_started,
    LiveTranscriptDelta: Recorder._on_live_delta,
    LiveTranscriptLineDone: Recorder._on_live_line_done,
    LiveDelegationStarted: Recorder._on_live_delegation,
    LiveDelegationEnded: Recorder._on_live_delegation_ended,
    LiveBackendResponseDone: Recorder._on_backend_done,
    LiveUsage: Recorder._on_live_usage,
}


def _decoded(text: str) -> dict[str, Any]:
    """A raw frame's JSON object; what cannot be read is logged as what it is (it is still the wire)."""
    try:
        message = boundedjson.loads(text)
    except ValueError as exc:
        return {"type": "ag2.unreadable_frame", "problem": getattr(exc, "msg", str(exc)), "excerpt": text[:2000]}
    if not isinstance(message, dict):
        return {"type": "<not an object>", "value": values.clean_json(message)}
    return message


class RecorderObserver(Observer):
    """The agent's view of a Recorder: typed events in (`on_event`), each tool call's end (status, duration
    and the output the model was sent) from the tool observer's hooks. It does not start or close the
    Recorder, which belongs to whoever made it (a consumer, a live session): the record outlives an agent.
    Two of these on one Recorder apply each event once."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def start(self, agent: VoiceAgent) -> None:
        self.agent = agent

    async def on_event(self, event: RealtimeEvent) -> None:
        self.recorder.apply(event)

    async def on_tool_finished(self, call_id: str, name: str, output: str, status: ToolCallStatus,
                               duration: float) -> None:
        self.recorder.tool_finished(call_id, name, output, status, int(duration * 1000))


# While the database fails, the writer retries after these many seconds, doubling up to the last.
RETRY_FIRST_SECONDS = 0.25
RETRY_MAX_SECONDS = 5.0


def _is_outage(exc: BaseException) -> bool:
    """The database (or the connection to it) failed, not the rows: retry later, do not isolate rows.

    Django's wrappers and psycopg's own classes (COPY runs on the raw cursor) both name them so.
    """
    return any(cls.__name__ in ("OperationalError", "InterfaceError") for cls in type(exc).__mro__)


@dataclass
class _Retry:
    """When a closed session's rows are tried again, and when they give up and go to the spool."""

    deadline: float
    next_at: float = 0.0
    delay: float = RETRY_FIRST_SECONDS


class _Writer:
    """The process's writer (one per event loop): writes every session's rows, keeps closed sessions'
    rows until they are written (retrying through a database outage, spooling them at the deadline),
    renews the heartbeat of the sessions it serves, ends sessions nobody serves, replays the spool.

    It runs while it has anything to do, and stops when it has not.
    """

    def __init__(self) -> None:
        self.recorders: dict[Recorder, None] = {}  # live sessions, an insertion-ordered set
        self.closing: dict[Recorder, _Retry] = {}  # closed sessions with rows the database refused
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.outage_since: float | None = None  # monotonic time of the first failed write in a row
        self.retry_delay = RETRY_FIRST_SECONDS
        self.retry_at = 0.0
        self.housekeeping_at = 0.0  # at once: the first round replays what an earlier process spooled
        self.spool_pending = True

    def start(self) -> None:
        if self.task is None and self._busy():
            self.task = asyncio.get_running_loop().create_task(self._run(), name="voice-recorder-writer")

    def add(self, recorder: Recorder) -> None:
        self.recorders[recorder] = None
        self.start()

    def discard(self, recorder: Recorder) -> None:
        self.recorders.pop(recorder, None)
        if not self.recorders:
            self.wake.set()  # let the task notice it has nothing left to do

    def keep_closing(self, recorder: Recorder) -> None:
        """A closed session's rows are still unwritten: retry them until they are, or spool at the deadline."""
        if recorder not in self.closing:
            deadline = time.monotonic() + settings.VOICE_RECORDER_CLOSE_DEADLINE_SECONDS
            self.closing[recorder] = _Retry(deadline=deadline, next_at=time.monotonic() + RETRY_FIRST_SECONDS)
            logger.warning("Session %s closed with %d event(s) not yet written; retrying for up to %.0fs",
                           recorder.session_id, len(recorder._pending.events),
                           settings.VOICE_RECORDER_CLOSE_DEADLINE_SECONDS)
        self.start()
        self.wake.set()

    def _busy(self) -> bool:
        return bool(self.recorders or self.closing or self.spool_pending)

    async def _run(self) -> None:
        try:
            while self._busy():
                await self._wait()
                self.wake.clear()
                await self.write_round()
                await self._settle_closing()
                await self._housekeeping()
        finally:
            self.task = None

    async def _wait(self) -> None:
        now = time.monotonic()
        if self.outage_since is not None and now < self.retry_at:
            # The database is down: a full batch or a closing session must not retry it in a tight loop.
            await asyncio.sleep(self.retry_at - now)
            return
        interval = min((r.flush_seconds for r in self.recorders), default=RETRY_MAX_SECONDS)
        wake_at = [self.housekeeping_at] + [retry.next_at for retry in self.closing.values()]
        interval = max(0.0, min(interval, *(at - now for at in wake_at)))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await self.wake.wait()

    def _due_closing(self) -> list[Recorder]:
        now = time.monotonic()
        return [r for r, retry in self.closing.items() if retry.next_at <= now]

    async def write_round(self) -> None:
        # A session busy flushing itself (closing) is left to that flush; locks are free, so no waiting.
        candidates = [*self.recorders, *self._due_closing()]
        ready = [r for r in candidates if r._pending and not r._flush_lock.locked()]
        if not ready:
            return
        for recorder in ready:
            await recorder._flush_lock.acquire()  # uncontended: returns at once
        failed = False
        try:
            pairs = [(r, r._take()) for r in ready]
            try:
                results = await _write_shielded(pairs)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                for recorder, batch in pairs:
                    recorder._put_back(batch)
                # "Operational" errors are also what SQLite says of a statement it cannot run: only a
                # database that does not answer at all is an outage; otherwise isolate the bad batch.
                if _is_outage(exc) and not await database_sync_to_async(_database_answers)():
                    self._outage(exc)
                    return
                failed = True
                logger.warning("Combined write of %d session(s) failed, writing each alone: %r", len(pairs), exc)
            else:
                self._recovered()
                for (recorder, batch), result in zip(pairs, results, strict=True):
                    recorder._applied(batch, result)
        finally:
            for recorder in ready:
                recorder._flush_lock.release()
        if failed:
            for recorder in ready:
                # One attempt each: a batch that keeps failing is kept, alone, and retried next round
                # (a closed session's after its own backoff).
                if not await recorder.flush(attempts=1) and recorder in self.closing:
                    self._back_off(self.closing[recorder])

    def _outage(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self.outage_since is None:
            self.outage_since = now
            self.retry_delay = RETRY_FIRST_SECONDS
            # Said once per outage, not once per round or session (a 15 s outage is 60 rounds).
            logger.warning("Database unavailable (%r): %d live and %d closed session(s) keep their rows in memory "
                           "and retry", exc, len(self.recorders), len(self.closing))
        else:
            self.retry_delay = min(self.retry_delay * 2, RETRY_MAX_SECONDS)
        self.retry_at = now + self.retry_delay

    def _recovered(self) -> None:
        if self.outage_since is not None:
            logger.warning("Database available again after %.1fs; writing what was kept",
                           time.monotonic() - self.outage_since)
            self.outage_since = None
            self.retry_delay = RETRY_FIRST_SECONDS
            self.housekeeping_at = 0.0  # renew heartbeats (and replay any spool) at once

    @staticmethod
    def _back_off(retry: _Retry) -> None:
        retry.next_at = time.monotonic() + retry.delay
        retry.delay = min(retry.delay * 2, RETRY_MAX_SECONDS)

    async def _settle_closing(self) -> None:
        """Forget closed sessions that are written; spool those whose deadline passed."""
        now = time.monotonic()
        for recorder, retry in list(self.closing.items()):
            if not recorder._pending:
                del self.closing[recorder]
            elif now >= retry.deadline:
                del self.closing[recorder]
                await recorder._spool(f"not written within {settings.VOICE_RECORDER_CLOSE_DEADLINE_SECONDS:.0f}s "
                                      "of the session's end")
                if recorder._pending:  # the spool failed too: keep trying both
                    self.closing[recorder] = _Retry(deadline=now + RETRY_MAX_SECONDS)
                self.spool_pending = True
            elif self.outage_since is not None:
                retry.next_at = self.retry_at

    async def _housekeeping(self) -> None:
        """Every VOICE_HEARTBEAT_SECONDS: renew the heartbeat of the sessions served here, end those that
        nobody serves, and replay the spool while it holds anything."""
        now = time.monotonic()
        if now < self.housekeeping_at:
            return
        self.housekeeping_at = now + settings.VOICE_HEARTBEAT_SECONDS
        served = [r.session_id for r in self.recorders if not r._closed]
        try:
            give_up = await database_sync_to_async(_heartbeat)(served, settings.VOICE_HEARTBEAT_GRACE_SECONDS)
        except Exception as exc:
            if _is_outage(exc):
                self._outage(exc)
            else:
                logger.exception("Heartbeat of %d session(s) failed", len(served))
            return
        self._recovered()
        for hook in heartbeat_hooks:
            try:
                await hook(give_up)
            except Exception:
                logger.exception("Heartbeat hook %r failed", hook)
        self.housekeeping_at = now + settings.VOICE_HEARTBEAT_SECONDS
        if self.spool_pending:
            if not spool.pending():  # listing a directory: no thread hop when there is nothing
                self.spool_pending = False
                return
            try:
                report = await spool.areplay()
            except Exception:
                logger.exception("Spool replay failed")
                return
            self.spool_pending = report.files_left > 0


def load_state(session_id: str) -> dict[str, Any]:
    """What `Recorder.restore` needs of a session recorded so far (ORM thread)."""
    from django.db.models import Max, Sum

    session = VoiceSession.objects.get(pk=session_id)
    seconds = ResponseUsage.objects.filter(session=session).aggregate(
        active=Sum("voice_seconds"), standby=Sum("standby_seconds"))
    items = {row["item_id"]: row for row in TranscriptItem.objects.filter(session=session).values(
        "item_id", *ITEM_FIELDS, "created_at")}
    tools = {row["call_id"]: row for row in ToolCall.objects.filter(session=session).values(
        "call_id", *TOOL_FIELDS, "started_at")}
    return {
        "last_seq": SessionEvent.objects.filter(session=session).aggregate(m=Max("seq"))["m"] or 0,
        "items": items,
        "tools": tools,
        "response_ids": set(ResponseUsage.objects.filter(session=session).values_list("response_id", flat=True)),
        "turns": session.turns, "input_tokens": session.input_tokens, "output_tokens": session.output_tokens,
        "total_tokens": session.total_tokens, "cost_usd": session.cost_usd,
        # GPT-Live: the cumulative seconds counted so far (active + standby), and standby alone.
        "voice_seconds": (seconds["active"] or Decimal(0)) + (seconds["standby"] or Decimal(0)),
        "standby_seconds": seconds["standby"] or Decimal(0),
    }


def _database_answers() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        return False
    return True


def _heartbeat(served: list[str], grace: float) -> list[str]:
    """In the ORM thread: one UPDATE renews every session this process serves; then the sweep. Returns
    the server-mode sessions whose lease this process must give up (voice.lease: a hand-off was asked)."""
    from voice.lease import PROCESS_TOKEN

    VoiceSession.renew_heartbeats(served, holder=PROCESS_TOKEN)
    ended = VoiceSession.end_unserved(grace)
    if ended:
        logger.warning("Ended %d session(s) no process served for %.0fs (server_lost)", ended, grace)
    return VoiceSession.leases_to_give_up(served, PROCESS_TOKEN)


# Run on the event loop after each heartbeat, with the sessions whose lease must be given up: voice.live
# registers the one that releases those and adopts orphaned server-mode calls.
HeartbeatHook = Callable[[list[str]], Awaitable[None]]
heartbeat_hooks: list[HeartbeatHook] = []


_writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Writer] = weakref.WeakKeyDictionary()


def _writer_for_loop() -> _Writer:
    loop = asyncio.get_running_loop()
    writer = _writers.get(loop)
    if writer is None:
        writer = _writers[loop] = _Writer()
    return writer


def start_writer() -> None:
    """Start this loop's writer if it has work: at a process's start, that is replaying the spool."""
    _writer_for_loop().start()


@atexit.register
def _spool_unwritten_at_exit() -> None:
    """Last resort when the process exits: rows of any session still unwritten go to the spool.

    Daphne lets every consumer end its session on SIGTERM (they spool what the database refuses);
    this catches what is left: closed sessions still retrying, a write that never got its turn.
    """
    for writer in list(_writers.values()):
        for recorder in [*writer.recorders, *writer.closing]:
            if not recorder._closed and not recorder.survives_process:
                # Still live as the process exits (the consumer's own shutdown path did not get to end
                # it): nobody serves it any more.
                recorder.update_session(status=VoiceSession.Status.ENDED, ended_at=timezone.now(),
                                        end_reason="server_shutdown")
                recorder._closed = True
            recorder.spool_now("the process exited")


async def _write_shielded(pairs: list[tuple[Recorder, _Batch]]) -> list[dict[str, Any]]:
    """Run `write_batches` in the ORM thread. Shielded: if the caller is cancelled, the write in flight
    still completes and is accounted for, instead of being written and then put back and written twice."""
    write = asyncio.ensure_future(database_sync_to_async(write_batches)(pairs))
    for recorder, batch in pairs:
        # Until the outcome is known: the exit hook spools batches whose write the process never saw end.
        recorder._in_flight[id(batch)] = batch
    try:
        return await asyncio.shield(write)
    except asyncio.CancelledError:
        await asyncio.wait([write])
        if write.exception() is None:
            for (recorder, batch), result in zip(pairs, write.result(), strict=True):
                recorder._applied(batch, result)
        else:
            for recorder, batch in pairs:
                recorder._put_back(batch)
        raise
    finally:
        for recorder, batch in pairs:
            recorder._in_flight.pop(id(batch), None)


def write_batches(pairs: list[tuple[Recorder, _Batch]]) -> list[dict[str, Any]]:
    """Write the batches of one or many sessions in one transaction, one statement per table.

    Runs in the ORM thread. Returns, per batch, the usage rows written, the session's new cost and the
    notes of rows that could not be written. An outage raises (the caller keeps the batches and
    retries); a row the database refuses costs that row only: see `_write_isolating`.
    """
    for recorder, _ in pairs:
        recorder._load_price()
    try:
        with transaction.atomic():
            return _write_together(pairs)
    except OUTAGE_ERRORS:
        raise
    except Exception as exc:
        logger.warning("Write of %d session(s) refused (%s: %s); finding the rows that cannot be written",
                       len(pairs), type(exc).__name__, str(exc)[:300])
    with transaction.atomic():
        return [_write_isolating(recorder, batch) for recorder, batch in pairs]


def _write_together(pairs: list[tuple[Recorder, _Batch]]) -> list[dict[str, Any]]:
    results = []
    events = [(r.session_id, e) for r, b in pairs for e in b.events]
    if events:
        _insert_events(events)
    _upsert(TranscriptItem, "item_id", [(r.session_id, row) for r, b in pairs for row in b.items.values()],
            ITEM_FIELDS, ["created_at"])
    _upsert(ToolCall, "call_id", [(r.session_id, row) for r, b in pairs for row in b.tools.values()],
            TOOL_FIELDS, ["started_at"])
    all_usage = []
    session_updates: dict[tuple[str, ...], list[tuple[str, dict[str, Any]]]] = {}
    for recorder, batch in pairs:
        notes: list[dict[str, Any]] = []
        usage_rows = [_usage_row(recorder, usage, notes) for usage in batch.usages]
        fields = dict(batch.session)
        cost = recorder.cost_usd
        if usage_rows:
            cost = _session_cost(cost, usage_rows, notes)
            fields["cost_usd"] = cost
        if fields:
            session_updates.setdefault(tuple(sorted(fields)), []).append((recorder.session_id, fields))
        all_usage += usage_rows
        results.append({"usages": usage_rows, "cost_usd": cost, "notes": notes})
    if all_usage:
        ResponseUsage.objects.bulk_create(all_usage, ignore_conflicts=True)
    for columns, updates in session_updates.items():
        _update_sessions(list(columns), updates)
    return results


def _usage_row(recorder: Recorder, usage: dict[str, Any], notes: list[dict[str, Any]]) -> ResponseUsage:
    usage = dict(usage)
    cumulative = usage.pop("_cumulative", None)
    model = usage.get("model") or ""
    if cumulative is not None:  # GPT-Live's seconds: this row's share of the cumulative time's cost
        cost = pricing.time_cost_increment(recorder.minute_price_of(model), cumulative,
                                           (usage["voice_seconds"], usage["standby_seconds"]))
    else:
        cost = pricing.cost_of(recorder.price_of(model), {k: usage[k] for k in values.USAGE_FIELDS})
    return ResponseUsage(session_id=recorder.session_id, cost_usd=_bounded_cost(cost, "responseusage", notes),
                         **usage)


def _session_cost(cost: Decimal | None, usage_rows: list[ResponseUsage],
                  notes: list[dict[str, Any]]) -> Decimal | None:
    """Summed from the rows, so a price edit mid-session cannot skew the total; one unpriced response
    makes the session's cost unknown (None), never a guess."""
    for usage_row in usage_rows:
        cost = pricing.add_cost(cost, usage_row.cost_usd)
    return _bounded_cost(cost, "voicesession", notes)


def _bounded_cost(cost: Decimal | None, table: str, notes: list[dict[str, Any]]) -> Decimal | None:
    """A cost that fits its column. Only a price entered wrongly gets here (usage is bounded on intake):
    SQLite would store the overflow and then fail to read the row back, PostgreSQL refuses it."""
    if cost is None or cost <= MAX_COST:
        return cost
    notes.append({"type": "ag2.value_bounded", "field": f"{table}.cost_usd", "value": str(cost),
                  "problem": f"more than {MAX_COST}: check the model's price"})
    return MAX_COST


def _write_isolating(recorder: Recorder, batch: _Batch) -> dict[str, Any]:
    """One session's batch, when a write that held it was refused: all of it at once if it is not the
    culprit, else row by row, each in its own savepoint. A refused row is kept as a note, with the
    database's error: an event row is replaced in place by its note (same seq, so the log stays
    gapless); the notes of other rows go back to the Recorder, which logs them with the next batch.
    Nothing here is retried: a row the database refused once it will refuse again.
    """
    try:
        with transaction.atomic():
            return _write_together([(recorder, batch)])[0]
    except OUTAGE_ERRORS:
        raise
    except Exception:
        pass
    sid = recorder.session_id
    notes: list[dict[str, Any]] = []
    for event in batch.events:
        error = _attempt(partial(_insert_events, [(sid, event)]))
        if error is None:
            continue
        note = {"seq": event["seq"], "direction": INTERNAL, "origin": SessionEvent.Origin.SERVER,
                "type": UNWRITABLE_ROW, "created_at": event["created_at"],
                "payload": _unwritable("event", str(event["seq"]), event, error)}
        if _attempt(partial(_insert_events, [(sid, note)])) is not None:  # e.g. its seq already written
            logger.error("Session %s: event #%s could not be written, nor its note: %s", sid, event["seq"],
                         note["payload"]["row"][:2000])
    for model, key, rows, fields, create_only in (
        (TranscriptItem, "item_id", batch.items.values(), ITEM_FIELDS, ["created_at"]),
        (ToolCall, "call_id", batch.tools.values(), TOOL_FIELDS, ["started_at"]),
    ):
        for row in rows:
            error = _attempt(partial(_upsert, model, key, [(sid, row)], fields, create_only))
            if error is not None:
                notes.append(_unwritable(str(model._meta.model_name), row[key], row, error))
    usage_rows: list[ResponseUsage] = []
    for usage in batch.usages:
        usage_row = _usage_row(recorder, usage, notes)
        error = _attempt(partial(ResponseUsage.objects.bulk_create, [usage_row], ignore_conflicts=True))
        if error is None:
            usage_rows.append(usage_row)
        else:
            notes.append(_unwritable("responseusage", usage["response_id"], usage, error))
    session_fields = dict(batch.session)
    cost = _session_cost(recorder.cost_usd, usage_rows, notes)
    if usage_rows:
        session_fields["cost_usd"] = cost
    together = partial(_update_sessions, sorted(session_fields), [(sid, session_fields)])
    if session_fields and _attempt(together) is not None:
        # Column by column: the session must still end (status, ended_at) whatever else is refused.
        for name, value in session_fields.items():
            error = _attempt(partial(_update_sessions, [name], [(sid, {name: value})]))
            if error is not None:
                notes.append(_unwritable("voicesession", name, {name: value}, error))
                if name == "cost_usd":
                    cost = recorder.cost_usd
    for note in notes:
        if note["type"] == UNWRITABLE_ROW:
            logger.warning("Session %s: %s row %s could not be written: %s", sid, note["table"], note["key"],
                           note["error"])
    return {"usages": usage_rows, "cost_usd": cost, "notes": notes}


def _attempt(write: Callable[[], object]) -> Exception | None:
    """Run one write in a savepoint; the error if the database refused it (an outage still raises)."""
    try:
        with transaction.atomic():
            write()
    except OUTAGE_ERRORS:
        raise
    except Exception as exc:
        return exc
    return None


def _unwritable(table: str, key: Any, row: Any, error: Exception) -> dict[str, Any]:
    """The note that keeps a refused row: storable whatever the row held (bounded, ASCII-escaped)."""
    return {"type": UNWRITABLE_ROW, "table": table, "key": values.storable_repr(key, 300),
            "error": values.storable_repr(f"{type(error).__name__}: {error}", 2000),
            "row": values.storable_repr(row, 16_000)}


def _session_column(name: str) -> tuple[str, models.Field[Any, Any]]:
    """A column of the session table and its field (``pk`` for the primary key)."""
    field = VoiceSession._meta.pk if name == "pk" else VoiceSession._meta.get_field(name)
    if not isinstance(field, models.Field) or not field.column:
        raise ValueError(f"VoiceSession.{name} is not a column")
    return field.column, field


def _update_sessions(names: list[str], updates: list[tuple[str, dict[str, Any]]]) -> None:
    """Sessions changing the same columns (the usual case: token totals after each response) in one
    prepared UPDATE run for every row (executemany: one round trip on psycopg).

    Not `bulk_update`: its CASE WHEN per row and column took ~100 ms of Python, holding the GIL, when
    200 sessions finished a response in the same round, and stalled the event loop with it (fan-out p99).
    Not a `.update()` per session either: a round trip each.
    """
    fields = [_session_column(name) for name in names]
    quote = connection.ops.quote_name
    pk_column, pk = _session_column("pk")
    assignments = ", ".join(f"{quote(column)} = %s" for column, _ in fields)
    sql = f"UPDATE {quote(VoiceSession._meta.db_table)} SET {assignments} WHERE {quote(pk_column)} = %s"
    rows = [
        [*(f.get_db_prep_save(changes[f.name], connection) for _, f in fields), pk.get_db_prep_value(sid, connection)]
        for sid, changes in updates
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


EVENT_COLUMNS = ["session_id", "seq", "direction", "origin", "type", "payload", "created_at"]


def _insert_events(events: list[tuple[str, dict[str, Any]]]) -> None:
    """Append event rows. On PostgreSQL through COPY: an INSERT of a few hundred JSON rows spent most
    of its time composing the statement in Python (fan-out benchmark profile), COPY streams them."""
    if connection.vendor != "postgresql":
        SessionEvent.objects.bulk_create([SessionEvent(session_id=sid, **e) for sid, e in events])
        return
    statement = f"COPY {SessionEvent._meta.db_table} ({', '.join(EVENT_COLUMNS)}) FROM STDIN"
    # The raw psycopg cursor raises psycopg's errors: wrap them as Django's, so that an outage is told
    # from a refused row the same way on either backend.
    with connection.wrap_database_errors, connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:
        for session_id, e in events:
            copy.write_row((session_id, e["seq"], e["direction"], e.get("origin", ""), e["type"],
                            json.dumps(e["payload"], default=str), e["created_at"]))


def _upsert(model: Any, key: str, rows: list[tuple[str, dict[str, Any]]], fields: list[str],
            create_only: list[str]) -> None:
    """One INSERT ... ON CONFLICT (session, key) DO UPDATE for new and changed rows alike.

    An item changes many times while it is spoken (deltas, done, truncation); a bulk_update of changed
    rows is a CASE WHEN per column and needed their primary keys first. `create_only` columns keep the
    value of the first write.
    """
    if not rows:
        return
    columns = [key, *fields, *create_only]
    model.objects.bulk_create(
        [model(session_id=session_id, **{c: r[c] for c in columns}) for session_id, r in rows],
        update_conflicts=True, unique_fields=["session", key], update_fields=fields,
    )


def _parse_arguments(raw: Any) -> dict[str, Any]:
    """Arguments as a dict; what is not a JSON object is kept verbatim rather than lost. Parsed values
    are cleaned again: a JSON string may spell a lone surrogate or a NUL as an escape ("\\ud800")."""
    try:
        parsed = json.loads(raw) if raw else {}
    except (TypeError, ValueError, RecursionError):
        return {"_unparsed": values.bounded_text(str(raw), 4000)}
    if not isinstance(parsed, dict):
        return {"_unparsed": values.bounded_text(str(raw), 4000)}
    return values.clean_json(parsed)


def _json_safe(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else str(v) if isinstance(v, Decimal) else v)
            for k, v in values.items()}


def _plain_id(raw: Any) -> str:
    """An id as it may be stored (a string that fits the column), else "" (timing only: never noted)."""
    return raw if isinstance(raw, str) and 0 < len(raw) <= ID_CHARS else ""


def _item_payload(item: dict[str, Any]) -> dict[str, Any]:
    return _json_safe({k: item[k] for k in ("item_id", "previous_item_id", "role", "kind", "name", "text",
                                            "text_truncated", "status", "created_at")})


def _tool_payload(tool: dict[str, Any]) -> dict[str, Any]:
    return _json_safe({k: tool[k] for k in TOOL_CALL_FIELDS})
