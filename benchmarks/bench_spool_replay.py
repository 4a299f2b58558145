"""How long spooling and replaying N rows takes, beside the recorder's normal write of the same rows.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/outage_bench .venv/bin/python manage.py migrate
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/outage_bench .venv/bin/python benchmarks/bench_spool_replay.py

Each session is a hung-up conversation of --turns turns (14 event rows, 2 items and 1 usage row per
turn). The baseline writes the same sessions' rows through `write_batches` (what the writer does when
the database is up), in the same run, so the figures compare like with like.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime_site.settings")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.utils import timezone  # noqa: E402

from tests.test_outage_postgres import _turn  # noqa: E402
from voice import spool  # noqa: E402
from voice.models import SessionEvent, VoiceConfig, VoiceSession  # noqa: E402
from voice.realtime.client import RawFrame  # noqa: E402
from voice.realtime.events import parse_frame  # noqa: E402
from voice.recording import Recorder, write_batches  # noqa: E402


def feed(recorder: Recorder, frame: dict) -> None:
    """As a relayed frame reaches the Recorder: logged at the source, then its typed event applied."""
    text = json.dumps(frame)
    recorder.tap(RawFrame(direction="from_openai", origin="browser", text=text), frame)
    recorder.apply(parse_frame(text))


def _recorders(user: User, sessions: int, turns: int) -> list[Recorder]:
    # Relay sessions, as the frames are (origin "browser"): a server-mode row would be a call to adopt.
    rows = VoiceSession.objects.bulk_create([VoiceSession(user=user, model="gpt-realtime", status="active",
                                                          mode=VoiceConfig.CallMode.RELAY)
                                             for _ in range(sessions)])
    recorders = []
    for row in rows:
        recorder = Recorder(str(row.pk), model="gpt-realtime")
        for number in range(1, turns + 1):
            for frame in _turn(number):
                feed(recorder, frame)
        recorder.update_session(status="ended", ended_at=timezone.now(), end_reason="hangup")
        recorders.append(recorder)
    return recorders


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--turns", type=int, default=10)
    args = parser.parse_args()
    user, _ = User.objects.get_or_create(username="spool-bench")
    settings.VOICE_SPOOL_DIR = tempfile.mkdtemp(prefix="voice-spool-bench-")

    baseline = _recorders(user, args.sessions, args.turns)
    started = time.perf_counter()
    for recorder in baseline:  # one transaction per session, as a closing session is written
        write_batches([(recorder, recorder._take())])
    direct = time.perf_counter() - started

    spooled = _recorders(user, args.sessions, args.turns)
    started = time.perf_counter()
    for recorder in spooled:
        recorder.spool_now("benchmark")
    spool_seconds = time.perf_counter() - started
    started = time.perf_counter()
    report = spool.replay()
    replay_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for recorder in spooled[: max(1, args.sessions // 10)]:
        recorder.update_session(end_reason="hangup")
        recorder.spool_now("benchmark, again")
    spool.replay()  # the same sessions again: everything already there
    again = time.perf_counter() - started

    events = SessionEvent.objects.filter(session_id__in=[r.session_id for r in spooled]).count()
    assert events == args.sessions * args.turns * 14, events
    rows = args.sessions * args.turns * (14 + 2 + 1)
    print(json.dumps({
        "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
        "sessions": args.sessions, "rows": rows,
        "baseline_write_batches_s": round(direct, 3),
        "spool_write_s": round(spool_seconds, 3),
        "replay_s": round(replay_seconds, 3),
        "replay_rows_per_s": round(rows / replay_seconds),
        "files_replayed": report.files_replayed,
        "replay_again_10pct_s": round(again, 3),
    }, indent=1))
    VoiceSession.objects.filter(user=user).delete()


if __name__ == "__main__":
    main()
