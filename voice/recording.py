"""The Recorder: the only writer of a session's rows.

It is fed raw frames, in both directions, by whatever carries the session (today the browser's
websocket; tomorrow a sideband connection), so it does not depend on which client produced them.
`record()` is cheap and synchronous: it appends to an in-memory batch and updates the assembled
state (transcript items, tool calls, usage, totals).

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
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from voice import pricing, spool
from voice.broadcast import Broadcaster
from voice.models import ResponseUsage, SessionEvent, ToolCall, TranscriptItem, VoiceSession

logger = logging.getLogger(__name__)

# Transcript deltas are folded into their item instead of becoming one row each (DESIGN.md).
FOLDED_DELTAS = {
    "response.output_audio_transcript.delta": "assistant",
    "response.audio_transcript.delta": "assistant",
    "response.output_text.delta": "assistant",
    "response.text.delta": "assistant",
    "conversation.item.input_audio_transcription.delta": "user",
}
ITEM_EVENTS = {"conversation.item.added", "conversation.item.created", "conversation.item.done",
               "conversation.item.retrieved"}
OUTPUT_ITEM_EVENTS = {"response.output_item.added", "response.output_item.done"}
TRANSCRIPT_DONE = {
    "response.output_audio_transcript.done": "transcript",
    "response.audio_transcript.done": "transcript",
    "response.output_text.done": "text",
    "response.text.done": "text",
}
ITEM_FIELDS = ["previous_item_id", "response_id", "role", "kind", "name", "text", "status", "audio_start_ms",
               "audio_end_ms", "completed_at"]
TOOL_FIELDS = ["item_id", "name", "arguments", "output", "status", "duration_ms"]
MAX_PAYLOAD_CHARS = 64 * 1024


@dataclass
class _Batch:
    events: list[dict[str, Any]] = field(default_factory=list)
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    tools: dict[str, dict[str, Any]] = field(default_factory=dict)
    usages: list[dict[str, Any]] = field(default_factory=list)
    session: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.events or self.items or self.tools or self.usages or self.session)


def _text_of(content: Any) -> str | None:
    """The words in an item's content parts, whichever kind of part carries them."""
    if not isinstance(content, list):
        return None
    parts = []
    for part in content:
        if isinstance(part, dict):
            value = part.get("transcript") or part.get("text")
            if isinstance(value, str):
                parts.append(value)
    return "".join(parts) if parts else None


def _bounded(payload: dict[str, Any]) -> dict[str, Any]:
    """Keep huge frames (e.g. base64 audio) from bloating the log: store a note instead of megabytes."""
    if "delta" in payload and isinstance(payload["delta"], str) and len(payload["delta"]) > MAX_PAYLOAD_CHARS:
        return {**payload, "delta": f"<{len(payload['delta'])} characters not stored>"}
    try:
        size = len(json.dumps(payload, default=str))
    except (TypeError, ValueError):
        return {"type": payload.get("type"), "unserialisable": True}
    if size > MAX_PAYLOAD_CHARS * 4:
        return {"type": payload.get("type"), "truncated": True, "size": size}
    return payload


class Recorder:
    """Assembles and persists one session's record. Use from the event loop only."""

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
        self.cost_usd = Decimal("0")
        self.failed_flushes = 0
        self._flush_lock = asyncio.Lock()
        self._writer: _Writer | None = None
        self._closed = False
        self._stopping = False
        self._in_flight: dict[int, _Batch] = {}  # taken for a write whose outcome is not known yet

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
        await self.flush()  # waits for a combined write of this session that is under way
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

    def record(self, direction: str, frame: dict[str, Any]) -> None:
        """Log one frame and fold what it says into the session's record."""
        kind = frame.get("type")
        kind = kind if isinstance(kind, str) else "<missing type>"
        now = timezone.now()
        role = FOLDED_DELTAS.get(kind)
        if role is not None and direction == SessionEvent.Direction.FROM_BROWSER:
            self._fold_delta(kind, role, frame)
        else:
            self._log(direction, kind, frame, now)
            try:
                if direction == SessionEvent.Direction.FROM_BROWSER:
                    self._apply_server_event(kind, frame, now)
                elif direction == SessionEvent.Direction.TO_BROWSER:
                    self._apply_client_event(kind, frame, now)
            except Exception:  # a surprising shape must cost us the derivation, never the log row
                logger.exception("Session %s: could not interpret %s", self.session_id, kind)
        if len(self._pending.events) >= self.batch_size:
            self._wake()

    def _log(self, direction: str, kind: str, frame: dict[str, Any], now: datetime) -> None:
        """Append one event row, and stream it to the session's watchers (bounded once for both)."""
        self._seq += 1
        payload = _bounded(frame)
        self._pending.events.append(
            {"seq": self._seq, "direction": direction, "type": kind[:100], "payload": payload, "created_at": now}
        )
        if self.broadcaster is not None:
            self.broadcaster.to_session(
                {"type": "event", "event": {"seq": self._seq, "direction": direction, "type": kind, "payload": payload}}
            )

    def update_session(self, **fields: Any) -> None:
        """Lifecycle changes (status, call id, timestamps, end reason): written at the next flush."""
        self._pending.session.update(fields)
        self._wake()

    def tool_finished(self, call_id: str, name: str, output: str, status: str, duration_ms: int | None) -> None:
        tool = self._tool(call_id, name=name)
        tool.update(output=output, status=status, duration_ms=duration_ms)
        self._mark_tool(call_id)

    # --- assembling the record ---------------------------------------------------------------------

    def _item(self, item_id: str, **defaults: Any) -> dict[str, Any]:
        item = self._items.get(item_id)
        if item is None:
            item = {"item_id": item_id, "previous_item_id": "", "response_id": "", "role": "", "kind": "message",
                    "name": "", "text": "", "status": TranscriptItem.Status.IN_PROGRESS, "audio_start_ms": None,
                    "audio_end_ms": None, "created_at": timezone.now(), "completed_at": None}
            self._items[item_id] = item
        for key, value in defaults.items():
            if value and not item.get(key):
                item[key] = value
        return item

    def _mark_item(self, item_id: str, *, finished: bool = False) -> None:
        self._pending.items[item_id] = self._items[item_id]
        if finished:
            self._items[item_id]["_publish"] = True

    def _complete(self, item: dict[str, Any], now: datetime, status: str = "completed") -> None:
        # A truncation or a failure is final: a late "done" must not paper over it.
        if item["status"] not in (TranscriptItem.Status.TRUNCATED, TranscriptItem.Status.FAILED):
            item["status"] = status
        item["completed_at"] = item["completed_at"] or now

    def _fold_delta(self, kind: str, role: str, frame: dict[str, Any]) -> None:
        item_id = frame.get("item_id")
        delta = frame.get("delta")
        if not isinstance(item_id, str) or not isinstance(delta, str):
            # Not something we can fold: keep it as a row instead, so nothing is dropped.
            self._log(SessionEvent.Direction.FROM_BROWSER, kind, frame, timezone.now())
            return
        item = self._item(item_id, role=role, response_id=frame.get("response_id") or "")
        if item["status"] != TranscriptItem.Status.COMPLETED or role == "assistant":
            item["text"] += delta
        self._mark_item(item_id)
        if self.broadcaster is not None:
            self.broadcaster.to_session({"type": "delta", "item_id": item_id, "role": item["role"] or role,
                                         "delta": delta})

    def _apply_item(self, data: dict[str, Any], now: datetime, *, previous: Any, done: bool,
                    response_id: str = "") -> None:
        item_id = data.get("id")
        if not isinstance(item_id, str):
            return
        kind = data.get("type") if data.get("type") in TranscriptItem.Kind.values else "message"
        item = self._item(item_id, kind=kind, role=data.get("role") or "", response_id=response_id)
        item["kind"] = kind
        if isinstance(previous, str):
            item["previous_item_id"] = previous
        if kind == TranscriptItem.Kind.FUNCTION_CALL:
            item["role"] = item["role"] or "assistant"
            item["name"] = data.get("name") or item["name"]
            if isinstance(data.get("arguments"), str) and data["arguments"]:
                item["text"] = data["arguments"]
            if isinstance(data.get("call_id"), str):
                tool = self._tool(data["call_id"], name=item["name"], item_id=item_id)
                if item["text"] and not tool["arguments"]:
                    tool["arguments"] = _parse_arguments(item["text"])
                self._mark_tool(data["call_id"])
        elif kind == TranscriptItem.Kind.FUNCTION_CALL_OUTPUT:
            item["role"] = item["role"] or "system"
            if isinstance(data.get("output"), str):
                item["text"] = data["output"]
            if isinstance(data.get("call_id"), str):
                item["name"] = self._tools.get(data["call_id"], {}).get("name", item["name"])
        else:
            text = _text_of(data.get("content"))
            # User audio items arrive with transcript null; the transcription events fill them in.
            if text:
                item["text"] = text
        status = data.get("status")
        if done or status == "completed":
            self._complete(item, now, "failed" if status == "incomplete" and not item["text"] else "completed")
        self._mark_item(item_id, finished=done)

    def _apply_server_event(self, kind: str, frame: dict[str, Any], now: datetime) -> None:
        if kind in ITEM_EVENTS and isinstance(frame.get("item"), dict):
            self._apply_item(frame["item"], now, previous=frame.get("previous_item_id"),
                             done=kind != "conversation.item.added")
        elif kind in OUTPUT_ITEM_EVENTS and isinstance(frame.get("item"), dict):
            self._apply_item(frame["item"], now, previous=None, done=kind.endswith(".done"),
                             response_id=frame.get("response_id") or "")
        elif kind == "conversation.item.input_audio_transcription.completed":
            item = self._item(frame["item_id"], role="user")
            item["text"] = frame.get("transcript") or item["text"]
            self._complete(item, now)
            self._mark_item(frame["item_id"], finished=True)
        elif kind == "conversation.item.input_audio_transcription.failed":
            item = self._item(frame["item_id"], role="user")
            item["status"] = TranscriptItem.Status.FAILED
            self._mark_item(frame["item_id"], finished=True)
        elif kind in TRANSCRIPT_DONE and isinstance(frame.get("item_id"), str):
            item = self._item(frame["item_id"], role="assistant", response_id=frame.get("response_id") or "")
            final = frame.get(TRANSCRIPT_DONE[kind])
            if isinstance(final, str) and item["status"] != TranscriptItem.Status.TRUNCATED:
                item["text"] = final
            self._mark_item(frame["item_id"])
        elif kind == "conversation.item.truncated":
            item = self._item(frame["item_id"], role="assistant")
            item["status"] = TranscriptItem.Status.TRUNCATED
            if isinstance(frame.get("audio_end_ms"), int):
                item["audio_end_ms"] = frame["audio_end_ms"]
            self._mark_item(frame["item_id"], finished=True)
        elif kind == "input_audio_buffer.speech_started" and isinstance(frame.get("item_id"), str):
            item = self._item(frame["item_id"], role="user")
            item["audio_start_ms"] = frame.get("audio_start_ms")
            self._mark_item(frame["item_id"])
        elif kind == "input_audio_buffer.speech_stopped" and isinstance(frame.get("item_id"), str):
            item = self._item(frame["item_id"], role="user")
            item["audio_end_ms"] = frame.get("audio_end_ms")
            self._mark_item(frame["item_id"])
        elif kind == "response.function_call_arguments.done" and isinstance(frame.get("call_id"), str):
            tool = self._tool(frame["call_id"], name=frame.get("name") or "", item_id=frame.get("item_id") or "")
            tool["arguments"] = _parse_arguments(frame.get("arguments") or "")
            self._mark_tool(frame["call_id"])
        elif kind == "response.done" and isinstance(frame.get("response"), dict):
            self._apply_usage(frame["response"], now)
        elif kind in ("session.created", "session.updated") and isinstance(frame.get("session"), dict):
            session_id = frame["session"].get("id")
            if isinstance(session_id, str):
                self._pending.session["openai_session_id"] = session_id[:128]

    def _apply_client_event(self, kind: str, frame: dict[str, Any], now: datetime) -> None:
        item = frame.get("item")
        if (
            kind == "conversation.item.create"
            and isinstance(item, dict)
            and item.get("type") == "function_call_output"
            and isinstance(item.get("call_id"), str)
        ):
            tool = self._tool(item["call_id"])
            tool["output"] = str(item.get("output", ""))
            if tool["status"] == ToolCall.Status.RUNNING:
                tool["status"] = self._status_from_output(tool["output"])
            self._mark_tool(item["call_id"])

    @staticmethod
    def _status_from_output(output: str) -> str:
        try:
            parsed = json.loads(output)
        except (TypeError, ValueError):
            return ToolCall.Status.SUCCEEDED
        return ToolCall.Status.FAILED if isinstance(parsed, dict) and "error" in parsed else ToolCall.Status.SUCCEEDED

    def _tool(self, call_id: str, **defaults: Any) -> dict[str, Any]:
        tool = self._tools.get(call_id)
        if tool is None:
            tool = {"call_id": call_id, "item_id": "", "name": "", "arguments": {}, "output": "",
                    "status": ToolCall.Status.RUNNING, "started_at": timezone.now(), "duration_ms": None}
            self._tools[call_id] = tool
        for key, value in defaults.items():
            if value and not tool.get(key):
                tool[key] = value
        return tool

    def _mark_tool(self, call_id: str) -> None:
        self._pending.tools[call_id] = self._tools[call_id]

    def _apply_usage(self, response: dict[str, Any], now: datetime) -> None:
        response_id = response.get("id") if isinstance(response.get("id"), str) else f"unknown-{self._seq}"
        counts = pricing.usage_counts(response.get("usage"))
        # The cost is worked out at write time, where the ORM may run (never on the event loop).
        self._pending.usages.append(
            {"response_id": response_id[:128], "status": str(response.get("status") or "")[:16],
             "model": self.model, "created_at": now, **counts}
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
        self._publish_committed(batch, result)

    def _load_price(self) -> None:
        """The model's price, read once, in the writer's thread (never on the event loop)."""
        if not self._price_loaded:
            self._price = pricing.price_for(self.model) if self.model else None
            self._price_loaded = True

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
                "cost_usd": f"{usage.cost_usd:.6f}"},
                "totals": self.totals()})
        if batch.session:
            self.broadcaster.to_both({"type": "session.updated", "changes": _json_safe(batch.session),
                                      "totals": self.totals()})

    def totals(self) -> dict[str, Any]:
        return {"turns": self.turns, "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "total_tokens": self.total_tokens, "cost_usd": f"{self.cost_usd:.6f}"}


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
            await database_sync_to_async(_heartbeat)(served, settings.VOICE_HEARTBEAT_GRACE_SECONDS)
        except Exception as exc:
            if _is_outage(exc):
                self._outage(exc)
            else:
                logger.exception("Heartbeat of %d session(s) failed", len(served))
            return
        self._recovered()
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


def _database_answers() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:
        return False
    return True


def _heartbeat(served: list[str], grace: float) -> None:
    """In the ORM thread: one UPDATE renews every session this process serves; then the sweep."""
    VoiceSession.renew_heartbeats(served)
    ended = VoiceSession.end_unserved(grace)
    if ended:
        logger.warning("Ended %d session(s) no process served for %.0fs (server_lost)", ended, grace)


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
            if not recorder._closed:
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

    Runs in the ORM thread. Returns, per batch, the usage rows written and the session's new cost.
    """
    for recorder, _ in pairs:
        recorder._load_price()
    results = []
    with transaction.atomic():
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
            usage_rows = []
            for usage in batch.usages:
                counts = {k: usage[k] for k in pricing.usage_counts(None)}
                usage_rows.append(ResponseUsage(session_id=recorder.session_id,
                                                cost_usd=pricing.cost_of(recorder._price, counts), **usage))
            fields = dict(batch.session)
            cost = recorder.cost_usd
            if usage_rows:
                # Summed from the rows, so a price edit mid-session cannot skew the total.
                cost += sum((u.cost_usd for u in usage_rows), Decimal("0"))
                fields["cost_usd"] = cost
            if fields:
                session_updates.setdefault(tuple(sorted(fields)), []).append((recorder.session_id, fields))
            all_usage += usage_rows
            results.append({"usages": usage_rows, "cost_usd": cost})
        if all_usage:
            ResponseUsage.objects.bulk_create(all_usage, ignore_conflicts=True)
        for columns, updates in session_updates.items():
            _update_sessions(list(columns), updates)
    return results


def _update_sessions(names: list[str], updates: list[tuple[str, dict[str, Any]]]) -> None:
    """Sessions changing the same columns (the usual case: token totals after each response) in one
    prepared UPDATE run for every row (executemany: one round trip on psycopg).

    Not `bulk_update`: its CASE WHEN per row and column took ~100 ms of Python, holding the GIL, when
    200 sessions finished a response in the same round, and stalled the event loop with it (fan-out p99).
    Not a `.update()` per session either: a round trip each.
    """
    fields = [VoiceSession._meta.get_field(name) for name in names]
    quote = connection.ops.quote_name
    pk = VoiceSession._meta.pk
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in fields)
    sql = f"UPDATE {quote(VoiceSession._meta.db_table)} SET {assignments} WHERE {quote(pk.column)} = %s"
    rows = [
        [*(f.get_db_prep_save(values[f.name], connection) for f in fields), pk.get_db_prep_value(sid, connection)]
        for sid, values in updates
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


EVENT_COLUMNS = ["session_id", "seq", "direction", "type", "payload", "created_at"]


def _insert_events(events: list[tuple[str, dict[str, Any]]]) -> None:
    """Append event rows. On PostgreSQL through COPY: an INSERT of a few hundred JSON rows spent most
    of its time composing the statement in Python (fan-out benchmark profile), COPY streams them."""
    if connection.vendor != "postgresql":
        SessionEvent.objects.bulk_create([SessionEvent(session_id=sid, **e) for sid, e in events])
        return
    statement = f"COPY {SessionEvent._meta.db_table} ({', '.join(EVENT_COLUMNS)}) FROM STDIN"
    with connection.cursor() as cursor, cursor.cursor.copy(statement) as copy:
        for session_id, e in events:
            copy.write_row((session_id, e["seq"], e["direction"], e["type"], json.dumps(e["payload"], default=str),
                            e["created_at"]))


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
    """Arguments as a dict; what is not a JSON object is kept verbatim rather than lost."""
    try:
        parsed = json.loads(raw) if raw else {}
    except (TypeError, ValueError):
        return {"_unparsed": str(raw)[:4000]}
    return parsed if isinstance(parsed, dict) else {"_unparsed": str(raw)[:4000]}


def _json_safe(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else str(v) if isinstance(v, Decimal) else v)
            for k, v in values.items()}


def _item_payload(item: dict[str, Any]) -> dict[str, Any]:
    return _json_safe({k: item[k] for k in ("item_id", "previous_item_id", "role", "kind", "name", "text", "status",
                                            "created_at")})


def _tool_payload(tool: dict[str, Any]) -> dict[str, Any]:
    return _json_safe({k: tool[k] for k in ("call_id", "name", "arguments", "output", "status", "duration_ms")})
