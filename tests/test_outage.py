"""Nothing accepted is lost when the database is down, and nobody is locked out by sessions nobody serves.

These run in-process on the suite's database (SQLite, or PostgreSQL with DATABASE_URL), with the
outage simulated at the recorder's edge (its write, its probe, its heartbeat and the replay raise what
a refused connection raises). The same behaviour against a real PostgreSQL that is stopped and
started, and a real daphne that is sent SIGTERM, is in test_outage_postgres.py.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Callable
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import HttpCommunicator
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import OperationalError
from django.utils import timezone

from tests.record_feed import relay
from tests.test_recording import FOLDED, conversation
from voice import recording, sessions, spool
from voice.models import ResponseUsage, SessionEvent, TranscriptItem, VoiceConfig, VoiceSession
from voice.recording import Recorder

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("relay_mode")]

EVENTS = len(conversation()) - FOLDED  # 16 event rows
ITEMS = 2  # the user's question and the assistant's reply
USAGES = 1


class Outage:
    """The database as the recorder sees it while PostgreSQL is stopped: every write, probe, heartbeat
    and replay fails with the OperationalError of a refused connection, until `down` is cleared."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.down = False
        self.attempts = 0
        write, heartbeat, write_rows = recording.write_batches, recording._heartbeat, spool._write_rows

        def refusing(original: Callable[..., Any]) -> Callable[..., Any]:
            def call(*args: Any, **kwargs: Any) -> Any:
                if self.down:
                    self.attempts += 1
                    raise OperationalError('connection to server at "127.0.0.1" failed: Connection refused')
                return original(*args, **kwargs)
            return call

        monkeypatch.setattr(recording, "write_batches", refusing(write))
        monkeypatch.setattr(recording, "_heartbeat", refusing(heartbeat))
        monkeypatch.setattr(recording, "_database_answers", lambda: not self.down)
        monkeypatch.setattr(spool, "_write_rows", refusing(write_rows))


@pytest.fixture
def outage(monkeypatch: pytest.MonkeyPatch) -> Outage:
    return Outage(monkeypatch)


@pytest.fixture
def fast(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Intervals in tenths of a second, so that minutes of production behaviour take a second here."""
    settings.VOICE_HEARTBEAT_SECONDS = 0.1
    settings.VOICE_HEARTBEAT_GRACE_SECONDS = 0.5
    monkeypatch.setattr(recording, "RETRY_FIRST_SECONDS", 0.05)
    monkeypatch.setattr(recording, "RETRY_MAX_SECONDS", 0.2)
    return settings


@pytest.fixture
def session(owner: User) -> VoiceSession:
    return VoiceSession.objects.create(user=owner, config=VoiceConfig.objects.get(slug="default"),
                                       model="gpt-realtime", status=VoiceSession.Status.ACTIVE)


def _recorder(session: VoiceSession) -> Recorder:
    return Recorder(str(session.pk), model="gpt-realtime", flush_seconds=0.05)


def _record_a_conversation_and_hang_up(recorder: Recorder) -> None:
    for frame in conversation():
        relay(recorder, frame)
    recorder.update_session(status=VoiceSession.Status.ENDED, ended_at=timezone.now(), end_reason="hangup")


@database_sync_to_async
def _counts(session: VoiceSession) -> dict[str, Any]:
    session.refresh_from_db()
    return {"events": SessionEvent.objects.filter(session=session).count(),
            "items": TranscriptItem.objects.filter(session=session).count(),
            "usages": ResponseUsage.objects.filter(session=session).count(),
            "status": session.status, "end_reason": session.end_reason, "total_tokens": session.total_tokens,
            "cost_usd": session.cost_usd}


COMPLETE = {"events": EVENTS, "items": ITEMS, "usages": USAGES, "status": "ended", "end_reason": "hangup",
            "total_tokens": 1300}


def _complete(counts: dict[str, Any]) -> bool:
    return {k: counts[k] for k in COMPLETE} == COMPLETE and counts["cost_usd"] > 0


async def _eventually(check: Callable[[], Any], *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


# --- a session that ends while the database is down ---------------------------------------------------


async def test_a_session_ended_while_the_database_is_down_is_written_in_full_once_it_is_back(
    session: VoiceSession, outage: Outage, fast: Any
) -> None:
    recorder = _recorder(session)
    recorder.start()
    outage.down = True
    _record_a_conversation_and_hang_up(recorder)
    assert await recorder.close() is False  # the socket may go: the writer keeps the rows
    writer = recording._writer_for_loop()
    assert recorder in writer.closing and writer.task is not None
    await asyncio.sleep(1.0)  # the outage goes on; the writer retries with backoff
    tries = outage.attempts
    assert 3 <= tries <= 40, tries  # retried, but not in a tight loop
    assert (await _counts(session))["events"] == 0
    outage.down = False
    await _eventually(lambda: _written(session), timeout=5, what="the rows, once the database is back")
    assert not writer.closing
    assert not spool.pending()


async def _written(session: VoiceSession) -> bool:
    return _complete(await _counts(session))


async def test_rows_still_unwritten_at_the_close_deadline_are_spooled_then_replayed_when_the_database_answers(
    session: VoiceSession, outage: Outage, fast: Any, spool_dir: Path
) -> None:
    fast.VOICE_RECORDER_CLOSE_DEADLINE_SECONDS = 0.3
    recorder = _recorder(session)
    recorder.start()
    outage.down = True
    _record_a_conversation_and_hang_up(recorder)
    await recorder.close()
    writer = recording._writer_for_loop()

    async def spooled() -> list[Path]:
        return spool.pending() if not writer.closing else []

    [path] = await _eventually(spooled, timeout=3, what="the rows to be spooled at the deadline")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["session_id"] == str(session.pk) and lines[0]["format"] == "voice-spool"
    tables = [line["table"] for line in lines[1:]]
    assert (tables.count("event"), tables.count("item"), tables.count("usage")) == (EVENTS, ITEMS, USAGES)
    assert lines[-1] == {"table": "session", "row": {**lines[-1]["row"], "status": "ended", "end_reason": "hangup"}}
    assert writer.task is not None  # it stays to replay the spool once the database answers

    outage.down = False
    await _eventually(lambda: _written(session), timeout=5, what="the writer to replay the spool")
    await _eventually(lambda: _async(not spool.pending()), timeout=2, what="the spool file to be removed")


async def _async(value: Any) -> Any:
    return value


async def test_a_stopping_process_spools_what_the_database_refuses_at_once(
    session: VoiceSession, outage: Outage, fast: Any
) -> None:
    recorder = _recorder(session)
    recorder.start()
    outage.down = True
    _record_a_conversation_and_hang_up(recorder)
    assert await recorder.close(stopping=True) is False
    assert len(spool.pending()) == 1  # no retrying: the process is going away
    assert recorder not in recording._writer_for_loop().closing
    recorder.record("internal", {"type": "ag2.late_note"})  # recorded after: spooled by the next close
    await recorder.close()
    assert len(spool.pending()) == 2
    outage.down = False
    report = await spool.areplay()
    assert (report.files_replayed, report.files_left) == (2, 0)
    counts = await _counts(session)
    assert _complete({**counts, "events": counts["events"] - 1}), counts


async def test_the_exit_hook_spools_every_session_still_holding_rows(
    owner: User, session: VoiceSession, outage: Outage, fast: Any
) -> None:
    closed = _recorder(session)
    closed.start()
    other = await database_sync_to_async(VoiceSession.objects.create)(user=owner, model="gpt-realtime")
    live = _recorder(other)
    live.start()
    outage.down = True
    _record_a_conversation_and_hang_up(closed)
    await closed.close()
    relay(live, {"type": "rate_limits.updated", "rate_limits": []})
    in_flight = live._take()  # as if a write were under way when the process exits: outcome unknown
    live._in_flight[id(in_flight)] = in_flight
    relay(live, {"type": "rate_limits.updated", "rate_limits": []})
    recording._spool_unwritten_at_exit()
    files = spool.pending()
    assert sorted(p.name.split("-", 2)[2] for p in files) == sorted(
        [f"{session.pk}.jsonl", f"{other.pk}.jsonl", f"{other.pk}.jsonl"])
    assert not closed._pending and not live._pending and not live._in_flight
    outage.down = False
    assert (await spool.areplay()).files_replayed == 3
    assert _complete(await _counts(session))
    assert (await _counts(other)) | {"cost_usd": 0} == {
        "events": 2, "items": 0, "usages": 0, "status": "ended", "end_reason": "server_shutdown", "total_tokens": 0,
        "cost_usd": 0}


# --- replaying ---------------------------------------------------------------------------------------------


def _spool_a_hung_up_conversation(session: VoiceSession) -> Path:
    recorder = _recorder(session)
    _record_a_conversation_and_hang_up(recorder)
    recorder.spool_now("test")
    [path] = spool.pending()
    return path


def _sync_counts(session: VoiceSession) -> dict[str, Any]:
    return _counts.func(session)  # type: ignore[attr-defined]


def test_replay_is_idempotent_and_a_file_goes_only_after_its_rows_committed(
    session: VoiceSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _spool_a_hung_up_conversation(session)
    twin = path.with_name(f"{int(path.name.split('-')[0]) + 1:020d}-{path.name.split('-', 1)[1]}")
    shutil.copy(path, twin)  # the same rows spooled twice, as a crash between commit and unlink would leave

    original = spool._write_rows

    def fails_after_writing(*args: Any) -> Any:
        original(*args)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(spool, "_write_rows", fails_after_writing)
    report = spool.replay()
    assert report.database_unreachable and report.files_left == 2
    assert path.exists() and twin.exists()
    assert _sync_counts(session)["events"] == 0  # rolled back with the transaction that failed

    monkeypatch.setattr(spool, "_write_rows", original)
    report = spool.replay()
    assert (report.files_replayed, report.files_left, report.files_set_aside) == (2, 0, 0)
    once = _sync_counts(session)
    assert _complete(once), once
    assert spool.pending() == []
    assert spool.replay().files_replayed == 0
    assert _sync_counts(session) == once


def test_the_replay_command_writes_spooled_rows_and_running_it_twice_is_harmless(
    session: VoiceSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _spool_a_hung_up_conversation(session)
    kept = path.read_text()
    monkeypatch.setattr(spool, "_write_rows", lambda *a: (_ for _ in ()).throw(OperationalError("refused")))
    with pytest.raises(CommandError, match="unreachable"):
        call_command("replay_spool", stdout=StringIO())
    assert path.exists()
    monkeypatch.undo()

    out = StringIO()
    call_command("replay_spool", stdout=out)
    assert "Replayed 1 file(s)" in out.getvalue()
    once = _sync_counts(session)
    assert _complete(once), once
    path.write_text(kept)  # the same file again, e.g. restored from a backup
    call_command("replay_spool", stdout=StringIO())
    assert _sync_counts(session) == once
    assert spool.pending() == []


def test_a_spool_file_that_cannot_be_replayed_is_set_aside_with_its_reason_and_can_be_retried(
    session: VoiceSession, spool_dir: Path
) -> None:
    good = _spool_a_hung_up_conversation(session)
    broken = spool_dir / "00000000000000000001-1-broken.jsonl"
    broken.write_text("{not json\n")
    report = spool.replay()
    assert (report.files_replayed, report.files_set_aside) == (1, 1)
    assert not good.exists()
    assert (spool_dir / "failed" / broken.name).exists()
    assert "not valid JSON" in (spool_dir / "failed" / f"{broken.name}.error.txt").read_text()
    out = StringIO()
    call_command("replay_spool", "--retry-failed", stdout=out)
    assert "1 file(s) taken back" in out.getvalue() and "1 set aside" in out.getvalue()


def test_replay_does_not_bring_an_ended_session_back_to_life(session: VoiceSession) -> None:
    recorder = _recorder(session)
    recorder.update_session(status=VoiceSession.Status.ACTIVE, connected_at=timezone.now())
    relay(recorder, {"type": "rate_limits.updated", "rate_limits": []})
    recorder.spool_now("test")
    VoiceSession.objects.filter(pk=session.pk).update(status="ended", end_reason="hangup")
    assert spool.replay().files_replayed == 1
    session.refresh_from_db()
    assert (session.status, session.end_reason) == ("ended", "hangup")
    assert SessionEvent.objects.filter(session=session).count() == 1


async def test_a_process_replays_the_spool_when_it_starts_serving(session: VoiceSession) -> None:
    from realtime_site.asgi import application

    await database_sync_to_async(_spool_a_hung_up_conversation)(session)
    # Any first request will do; this one touches no database in the request's own thread.
    first = HttpCommunicator(application, "GET", "/no-such-page/", headers=[(b"host", b"127.0.0.1")])
    response = await first.get_response(timeout=10)
    assert response["status"] == 404
    await _eventually(lambda: _written(session), timeout=5, what="the start-up replay")
    assert spool.pending() == []


# --- sessions nobody serves ----------------------------------------------------------------------------


@database_sync_to_async
def _sessions_of(user: User, **fields: Any) -> list[VoiceSession]:
    return [VoiceSession.objects.create(user=user, config=VoiceConfig.objects.get(slug="default"), **fields)
            for _ in range(3)]


async def test_sessions_whose_process_died_do_not_lock_their_user_out(owner: User, settings: Any) -> None:
    settings.VOICE_MAX_CONCURRENT_SESSIONS_PER_USER = 3
    settings.VOICE_HEARTBEAT_GRACE_SECONDS = 30
    last_heard = timezone.now() - timedelta(seconds=31)
    orphans = await _sessions_of(owner, status="active", heartbeat_at=last_heard)
    new = await sessions.start_session(owner, None)  # before: too_many_sessions, until someone ran a command
    assert new.status == VoiceSession.Status.CONNECTING
    for orphan in orphans:
        await database_sync_to_async(orphan.refresh_from_db)()
        assert (orphan.status, orphan.end_reason, orphan.ended_at) == ("ended", "server_lost", last_heard)


async def test_sessions_still_served_keep_counting_against_the_limit(owner: User, settings: Any) -> None:
    settings.VOICE_MAX_CONCURRENT_SESSIONS_PER_USER = 3
    settings.VOICE_HEARTBEAT_GRACE_SECONDS = 30
    await _sessions_of(owner, status="active", heartbeat_at=timezone.now() - timedelta(seconds=29))
    with pytest.raises(sessions.SessionRefused) as refused:
        await sessions.start_session(owner, None)
    assert refused.value.code == "too_many_sessions"


async def test_the_writer_renews_the_sessions_it_serves_and_ends_those_nobody_serves(
    owner: User, fast: Any
) -> None:
    long_ago = timezone.now() - timedelta(seconds=0.4)
    served, orphan, _ = await _sessions_of(owner, status="active", heartbeat_at=long_ago)
    recorder = _recorder(served)
    recorder.start()  # the process serves `served` only
    await asyncio.sleep(1.0)  # two grace periods: the served one would have gone stale without its heartbeat
    await database_sync_to_async(served.refresh_from_db)()
    await database_sync_to_async(orphan.refresh_from_db)()
    assert served.status == "active" and served.heartbeat_at > long_ago
    assert (timezone.now() - served.heartbeat_at).total_seconds() < fast.VOICE_HEARTBEAT_GRACE_SECONDS
    assert (orphan.status, orphan.end_reason, orphan.ended_at) == ("ended", "server_lost", long_ago)
    await recorder.close()


def test_the_end_stale_sessions_command_uses_the_heartbeat_rule(owner: User, settings: Any) -> None:
    settings.VOICE_HEARTBEAT_GRACE_SECONDS = 30
    create = VoiceSession.objects.create
    stale = create(user=owner, status="active", heartbeat_at=timezone.now() - timedelta(seconds=60))
    served = create(user=owner, status="active", started_at=timezone.now() - timedelta(hours=3))
    out = StringIO()
    call_command("end_stale_sessions", stdout=out)
    assert "Ended 1 stale session(s)" in out.getvalue()
    stale.refresh_from_db()
    served.refresh_from_db()
    assert (stale.status, stale.end_reason, served.status) == ("ended", "server_lost", "active")
    call_command("end_stale_sessions", "--grace", "0", stdout=out)  # no process serving at all
    served.refresh_from_db()
    assert served.status == "ended"
