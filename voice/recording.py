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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from channels.db import database_sync_to_async
from django.db import connection, transaction
from django.utils import timezone

from voice import pricing
from voice.broadcast import Broadcaster
from voice.models import ResponseUsage, SessionEvent, ToolCall, TranscriptItem, VoiceSession
from voice.realtime.session import frame_without_secrets

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
        self.cost_usd: Decimal | None = Decimal("0")  # None once a response was unpriced
        self.failed_flushes = 0
        self._flush_lock = asyncio.Lock()
        self._writer: _Writer | None = None
        self._closed = False

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Join the process's writer, which from now on flushes this session with all the others."""
        if self._writer is None and not self._closed:
            self._writer = _writer_for_loop()
            self._writer.add(self)

    async def close(self) -> None:
        """Flush everything buffered. Retries, then keeps trying briefly: shutdown must not lose rows."""
        self._closed = True
        if self._writer is not None:
            self._writer.discard(self)
            self._writer = None
        for attempt in range(5):
            await self.flush()  # waits for a combined write of this session that is under way
            if not self._pending:
                return
            await asyncio.sleep(0.2 * (attempt + 1))
        logger.error("Session %s: %d event(s) could not be written at close", self.session_id,
                     len(self._pending.events))

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
        payload = _bounded(frame_without_secrets(frame))  # an echoed MCP credential is never stored
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

    async def flush(self) -> None:
        """Write this session's pending rows now, on its own (close, and a combined write that failed)."""
        async with self._flush_lock:
            if not self._pending:
                return
            batch = self._take()
            for attempt in range(self.max_retries):
                try:
                    result = (await _write_shielded([(self, batch)]))[0]
                    break
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    logger.warning("Session %s: write of %d event(s) failed (attempt %d/%d): %r", self.session_id,
                                   len(batch.events), attempt + 1, self.max_retries, exc)
                    await asyncio.sleep(0.05 * 2**attempt)
            else:
                self.failed_flushes += 1
                logger.error("Session %s: batch kept for the next flush after %d failed attempts",
                             self.session_id, self.max_retries)
                self._put_back(batch)
                return
            self._applied(batch, result)

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
                "cost_usd": pricing.format_cost(usage.cost_usd)},
                "totals": self.totals()})
        if batch.session:
            self.broadcaster.to_both({"type": "session.updated", "changes": _json_safe(batch.session),
                                      "totals": self.totals()})

    def totals(self) -> dict[str, Any]:
        return {"turns": self.turns, "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "total_tokens": self.total_tokens, "cost_usd": pricing.format_cost(self.cost_usd)}


class _Writer:
    """Flushes every started Recorder of one event loop together. Runs only while one is started."""

    def __init__(self) -> None:
        self.recorders: dict[Recorder, None] = {}  # insertion-ordered set
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def add(self, recorder: Recorder) -> None:
        self.recorders[recorder] = None
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run(), name="voice-recorder-writer")

    def discard(self, recorder: Recorder) -> None:
        self.recorders.pop(recorder, None)
        if not self.recorders:
            self.wake.set()  # let the task notice it has nothing left to do

    async def _run(self) -> None:
        try:
            while self.recorders:
                interval = min(r.flush_seconds for r in self.recorders)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(interval):
                        await self.wake.wait()
                self.wake.clear()
                await self.write_round()
        finally:
            self.task = None

    async def write_round(self) -> None:
        # A session busy flushing itself (closing) is left to that flush; locks are free, so no waiting.
        ready = [r for r in self.recorders if r._pending and not r._flush_lock.locked()]
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
                failed = True
                logger.warning("Combined write of %d session(s) failed, writing each alone: %r", len(pairs), exc)
                for recorder, batch in pairs:
                    recorder._put_back(batch)
            else:
                for (recorder, batch), result in zip(pairs, results, strict=True):
                    recorder._applied(batch, result)
        finally:
            for recorder in ready:
                recorder._flush_lock.release()
        if failed:
            for recorder in ready:
                await recorder.flush()  # its own retries; a batch that keeps failing is kept, alone


_writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Writer] = weakref.WeakKeyDictionary()


def _writer_for_loop() -> _Writer:
    loop = asyncio.get_running_loop()
    writer = _writers.get(loop)
    if writer is None:
        writer = _writers[loop] = _Writer()
    return writer


async def _write_shielded(pairs: list[tuple[Recorder, _Batch]]) -> list[dict[str, Any]]:
    """Run `write_batches` in the ORM thread. Shielded: if the caller is cancelled, the write in flight
    still completes and is accounted for, instead of being written and then put back and written twice."""
    write = asyncio.ensure_future(database_sync_to_async(write_batches)(pairs))
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
                for usage_row in usage_rows:  # one unpriced response makes the session's cost unknown
                    cost = pricing.add_cost(cost, usage_row.cost_usd)
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
