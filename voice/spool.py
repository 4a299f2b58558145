"""Rows a process could not write: spooled to local files, replayed once the database answers again.

The Recorder's writer keeps a closed session's rows in memory and retries them while the database is
down. Two things end that: the process stopping (SIGTERM, deploy) and the close deadline
(VOICE_RECORDER_CLOSE_DEADLINE_SECONDS). Then the rows come here, so nothing accepted is lost:

* `write()` puts one session's unwritten rows in one JSON-lines file in VOICE_SPOOL_DIR, named
  `<time_ns>-<pid>-<session id>.jsonl` (name order is spooling order). Line 1 is a header
  (`{"format": "voice-spool", "version": 1, "session_id", "spooled_at", "reason"}`), then one line per
  row: `{"table": "event" | "item" | "tool" | "usage" | "session", "row": {...}}`. The file is written
  under a temporary name, fsync'd, renamed and its directory fsync'd: it is whole or absent.
* `replay()` writes each file in its own transaction and removes it only after that commits. It runs
  at start-up and then periodically in every serving process (the writer's housekeeping), and from
  `python manage.py replay_spool`. Replaying is idempotent: event rows are unique per (session, seq),
  items and tool calls are upserts, usage is unique per response id, the session's cost is summed
  again from its usage rows. Several processes may share one directory: a file is replayed under an
  exclusive lock, by one of them.
* A file that can never be written (unreadable, its session deleted, a row the database refuses) is
  moved to `failed/` beside a note of the error, never deleted; `replay_spool --retry-failed` puts
  it back once fixed.

Models are imported inside the replay functions: the Recorder imports this module to spool, and the
replay runs in the ORM thread or a management command, never on the event loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import Sum

logger = logging.getLogger(__name__)

FORMAT = "voice-spool"
VERSION = 1
SUFFIX = ".jsonl"
FAILED = "failed"
TABLES = ("event", "item", "tool", "usage", "session")


def directory() -> Path:
    return Path(settings.VOICE_SPOOL_DIR)


# --- writing ---------------------------------------------------------------------------------------


def _encode(value: Any) -> Any:
    """Dates as ISO 8601, anything else (decimals) as its text: the model fields parse both back."""
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(
    session_id: str,
    *,
    events: Iterable[dict[str, Any]] = (),
    items: Iterable[dict[str, Any]] = (),
    tools: Iterable[dict[str, Any]] = (),
    usages: Iterable[dict[str, Any]] = (),
    session: dict[str, Any] | None = None,
    reason: str,
    into: Path | None = None,
) -> Path:
    """Spool one session's unwritten rows to a new file, atomically and durably. Returns its path."""
    folder = into or directory()
    folder.mkdir(parents=True, exist_ok=True)
    header = {"format": FORMAT, "version": VERSION, "session_id": session_id,
              "spooled_at": datetime.now(UTC).isoformat(), "reason": reason, "pid": os.getpid()}
    lines = [header]
    for table, rows in (("event", events), ("item", items), ("tool", tools), ("usage", usages)):
        # Keys starting with "_" are the Recorder's own bookkeeping (e.g. "publish when committed").
        lines += [{"table": table, "row": {k: v for k, v in row.items() if not k.startswith("_")}} for row in rows]
    if session:
        lines.append({"table": "session", "row": dict(session)})
    name = f"{time.time_ns():020d}-{os.getpid()}-{session_id}{SUFFIX}"
    final = folder / name
    temporary = folder / f".{name}.tmp"
    with temporary.open("w", encoding="utf-8") as out:
        for line in lines:
            # ensure_ascii: any string, even a lone surrogate, is stored as a valid escape.
            out.write(json.dumps(line, default=_encode) + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, final)
    _fsync_dir(folder)
    return final


def pending(into: Path | None = None) -> list[Path]:
    """Spool files waiting for replay, oldest first."""
    folder = into or directory()
    try:
        names = [entry.name for entry in os.scandir(folder) if entry.is_file()]
    except FileNotFoundError:
        return []
    return [folder / name for name in sorted(names) if name.endswith(SUFFIX) and not name.startswith(".")]


# --- replaying -------------------------------------------------------------------------------------


class SpoolFileError(Exception):
    """A spool file that cannot be replayed as it is (unreadable, unknown format, session gone)."""


@dataclass
class ReplayReport:
    files_replayed: int = 0
    rows_written: int = 0
    files_left: int = 0  # kept for a later replay: the database is unreachable, or another process has them
    files_set_aside: int = 0  # moved to failed/ with a note
    database_unreachable: bool = False


def replay(into: Path | None = None) -> ReplayReport:
    """Write every spooled file to the database, oldest first; remove each one only once committed.

    For a management command. Stops at the first sign that the database is unreachable, leaving the
    rest for the next replay.
    """
    report = ReplayReport()
    files = pending(into)
    for index, path in enumerate(files):
        if not replay_one(path, report):
            report.files_left += len(files) - index - 1
            break
    _summarise(report)
    return report


async def areplay(into: Path | None = None) -> ReplayReport:
    """`replay` from the event loop: each file in its own trip to the ORM thread, so that a long replay
    never holds up the process's other database work (live sessions, pages) for more than one file."""
    from channels.db import database_sync_to_async

    report = ReplayReport()
    files = pending(into)
    for index, path in enumerate(files):
        if not await database_sync_to_async(replay_one)(path, report):
            report.files_left += len(files) - index - 1
            break
    _summarise(report)
    return report


def _summarise(report: ReplayReport) -> None:
    if report.files_replayed:
        logger.info("Spool replay: %d file(s), %d row(s) written", report.files_replayed, report.rows_written)


def replay_one(path: Path, report: ReplayReport) -> bool:
    """Replay one file into `report`. False: the database is unreachable, stop here (the file is kept)."""
    try:
        written = _replay_file(path)
    except (OperationalError, InterfaceError) as exc:
        report.database_unreachable = True
        report.files_left += 1
        logger.info("Spool replay paused, the database is unreachable (%s); %s kept", exc.__class__.__name__,
                    path.name)
        return False
    except Exception as exc:
        _set_aside(path, exc)
        report.files_set_aside += 1
        return True
    if written is None:
        report.files_left += 1
    else:
        report.files_replayed += 1
        report.rows_written += written
    return True


def _replay_file(path: Path) -> int | None:
    """Replay one file under an exclusive lock. None: another process has it, or has just replayed it."""
    try:
        handle = path.open("r", encoding="utf-8")
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        if os.fstat(handle.fileno()).st_nlink == 0:
            return None  # replayed and removed by another process between our listing and our lock
        header, rows = _parse(handle.read(), path)
        with transaction.atomic():
            written = _write_rows(header["session_id"], rows)
        # Committed: only now may the file go. Removed while still locked, so nobody replays it again.
        path.unlink()
        _fsync_dir(path.parent)
    return written


def _parse(text: str, path: Path) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    try:
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    except ValueError as exc:
        raise SpoolFileError(f"{path.name} is not valid JSON lines: {exc}") from None
    if not lines or not isinstance(lines[0], dict) or lines[0].get("format") != FORMAT:
        raise SpoolFileError(f"{path.name} is not a {FORMAT} file")
    header = lines[0]
    if header.get("version") != VERSION or not isinstance(header.get("session_id"), str):
        raise SpoolFileError(f"{path.name}: unsupported version {header.get('version')!r}")
    rows: dict[str, list[dict[str, Any]]] = {table: [] for table in TABLES}
    for line in lines[1:]:
        if not isinstance(line, dict) or line.get("table") not in rows or not isinstance(line.get("row"), dict):
            raise SpoolFileError(f"{path.name}: unreadable line {str(line)[:200]}")
        rows[line["table"]].append(line["row"])
    return header, rows


def _typed(model: Any, row: dict[str, Any]) -> dict[str, Any]:
    """A spooled row's values back to Python through the model's own fields (dates, decimals...)."""
    return {name: model._meta.get_field(name).to_python(value) for name, value in row.items()}


def _write_rows(session_id: str, rows: dict[str, list[dict[str, Any]]]) -> int:
    from voice import pricing
    from voice.models import ResponseUsage, SessionEvent, ToolCall, TranscriptItem, VoiceSession

    session = VoiceSession.objects.select_for_update().filter(pk=session_id).first()
    if session is None:
        raise SpoolFileError(f"session {session_id} no longer exists")
    written = 0

    events = [_typed(SessionEvent, row) for row in rows["event"]]
    if events:
        # Unique per (session, seq): what an earlier, interrupted replay wrote is skipped, not doubled.
        seqs_done = set(SessionEvent.objects.filter(session=session, seq__in=[e["seq"] for e in events])
                        .values_list("seq", flat=True))
        new = [e for e in events if e["seq"] not in seqs_done]
        from voice.recording import _insert_events  # the writer's own insert (COPY on PostgreSQL)

        _insert_events([(session_id, e) for e in new])
        written += len(new)

    # Any: the two models share the columns used here, which their union's type cannot say.
    upserted: tuple[tuple[Any, str, str, str], ...] = ((TranscriptItem, "item_id", "created_at", "item"),
                                                        (ToolCall, "call_id", "started_at", "tool"))
    for model, key, create_only, table in upserted:
        upserts = [_typed(model, row) for row in rows[table]]
        if upserts:
            fields = sorted({name for row in upserts for name in row} - {key, create_only})
            model.objects.bulk_create([model(session=session, **row) for row in upserts], update_conflicts=True,
                                      unique_fields=["session", key], update_fields=fields)
            written += len(upserts)

    usages = [_typed(ResponseUsage, row) for row in rows["usage"]]
    if usages:
        # Unique per response id: a response already written (by an earlier replay) counts once.
        done = set(session.usages.filter(response_id__in=[u["response_id"] for u in usages])
                   .values_list("response_id", flat=True))
        prices: dict[str, Any] = {}
        new_usage = []
        for usage in usages:
            if usage["response_id"] in done:
                continue
            model_name = usage.get("model") or session.model
            if model_name not in prices:
                prices[model_name] = pricing.price_for(model_name) if model_name else None
            counts = {k: usage.get(k, 0) for k in pricing.usage_counts(None)}
            new_usage.append(ResponseUsage(session=session, cost_usd=pricing.cost_of(prices[model_name], counts),
                                           **usage))
            done.add(usage["response_id"])
        ResponseUsage.objects.bulk_create(new_usage)
        written += len(new_usage)

    changes: dict[str, Any] = {}
    for row in rows["session"]:
        changes.update(_typed(VoiceSession, row))
    if changes.get("status") in (VoiceSession.Status.CONNECTING, VoiceSession.Status.ACTIVE) and not session.is_live:
        # Rows spooled while the session was still live must not bring an ended session back to life.
        for name in ("status", "connected_at"):
            changes.pop(name, None)
    if usages or changes:
        # Summed from the rows, as the Recorder does: the same total however often this file is replayed.
        changes["cost_usd"] = session.usages.aggregate(total=Sum("cost_usd"))["total"] or Decimal("0")
        for name, value in changes.items():
            setattr(session, name, value)
        session.save(update_fields=list(changes))
        written += 1
    return written


def _set_aside(path: Path, exc: BaseException) -> None:
    """Keep a file that cannot be replayed where it cannot block the others, with the reason beside it."""
    failed = path.parent / FAILED
    with contextlib.suppress(FileNotFoundError):
        failed.mkdir(exist_ok=True)
        os.replace(path, failed / path.name)
        (failed / f"{path.name}.error.txt").write_text(f"{exc.__class__.__name__}: {exc}\n", encoding="utf-8")
        _fsync_dir(failed)
        logger.error("Spool file %s cannot be replayed (%s: %s); kept in %s", path.name, exc.__class__.__name__,
                     str(exc)[:500], failed)


def retry_failed(into: Path | None = None) -> int:
    """Put files set aside back in line for the next replay (after whatever refused them is fixed)."""
    folder = into or directory()
    moved = 0
    for path in pending(folder / FAILED):
        os.replace(path, folder / path.name)
        with contextlib.suppress(FileNotFoundError):
            (folder / FAILED / f"{path.name}.error.txt").unlink()
        moved += 1
    return moved


class ReplaySpoolAtStartup:
    """ASGI wrapper: the first event a process handles starts its writer, which replays the spool at once.

    Daphne has no lifespan events; the first request (the proxy's or the orchestrator's health check)
    is the earliest moment the application runs on the server's event loop. The replay itself runs in
    the ORM thread; nothing here blocks a request.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        from voice.recording import start_writer

        start_writer()
        return await self.app(scope, receive, send)


