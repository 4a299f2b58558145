"""What bounding the record costs and saves, in one process, against a baseline of the same run.

Two measurements, each run twice in the same process: once as shipped, once as the baseline.

1. **Flood** (issue 10, item 3): 200 transcript deltas of 250 KB each to one item, recorded and
   written. Figures: the stored row's size, the Recorder's peak traced memory, the time to take the
   frames in (`record()`, on the event loop) and to write them. Baseline: the same Recorder with its
   text bounds lifted (what the code did before the bounds existed).
2. **Intake** (the price of items 1 and 13 on every frame, and of reading typed events): time per
   relayed frame over a realistic GA stream (realtime_emulator/streams.py), from its text to the record's
   state, nothing written. Baselines: the Recorders of earlier commits (`--before-rev`, read with `git
   show`: before these bounds, and before the Recorder read typed events), loaded beside today's and run
   interleaved.

Runs against a throwaway SQLite file by default; `--database-url postgres://...` for PostgreSQL (the
script creates and drops its own database, `voice_bench_bounds`, and nothing else).

    .venv/bin/python benchmarks/bench_record_bounds.py [--database-url postgres://postgres@127.0.0.1:5432]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BENCH_DB = "voice_bench_bounds"


def _setup(database_url: str | None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime_site.settings")
    if database_url:
        import psycopg

        server = database_url.rstrip("/")
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB}")
            conn.execute(f"CREATE DATABASE {BENCH_DB}")
        os.environ["DATABASE_URL"] = f"{server}/{BENCH_DB}"
    else:
        os.environ.pop("DATABASE_URL", None)
        os.environ["SQLITE_PATH"] = str(Path(tempfile.mkdtemp()) / "bench.sqlite3")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def _drop(database_url: str | None) -> None:
    if database_url:
        import psycopg
        from django.db import connections

        connections.close_all()
        with psycopg.connect(f"{database_url.rstrip('/')}/postgres", autocommit=True) as conn:
            # FORCE: the ORM's worker thread (database_sync_to_async) may still hold its connection.
            conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


def _new_session() -> str:
    from django.contrib.auth.models import User

    from voice.models import VoiceConfig, VoiceSession

    user, _ = User.objects.get_or_create(username="bench")
    return str(VoiceSession.objects.create(user=user, config=VoiceConfig.objects.first(), model="gpt-realtime",
                                             mode=VoiceConfig.CallMode.RELAY).pk)


async def flood(bounded: bool) -> dict[str, Any]:
    from channels.db import database_sync_to_async

    from voice.models import TranscriptItem
    from voice.recording import Recorder

    session_id = await database_sync_to_async(_new_session)()
    recorder = Recorder(session_id, model="gpt-realtime")
    if not bounded:
        recorder.max_item_chars = recorder.max_session_chars = 10**12
    chunk = "y" * 250_000
    frames = [{"type": "response.output_audio_transcript.delta", "item_id": "item_big", "response_id": "resp_1",
               "delta": chunk} for _ in range(200)]
    tracemalloc.start()
    started = time.perf_counter()
    for frame in frames:
        _feed(recorder, frame)
    intake = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    started = time.perf_counter()
    await recorder.close()
    write = time.perf_counter() - started
    item = await database_sync_to_async(TranscriptItem.objects.get)(session_id=session_id, item_id="item_big")
    return {"row_chars": len(item.text), "peak_traced_mb": peak / 2**20, "intake_ms": intake * 1000,
            "write_ms": write * 1000, "text_truncated": item.text_truncated}


def _recorder_before(rev: str) -> type:
    """The Recorder as it was at `rev`, loaded beside today's."""
    import importlib.util
    import subprocess

    source = subprocess.run(["git", "show", f"{rev}:voice/recording.py"], cwd=Path(__file__).resolve().parents[1],
                            capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / f"recording_at_{rev}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"recording_at_{rev}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module.Recorder  # type: ignore[no-any-return]


def _feed(recorder: Any, frame: dict[str, Any]) -> None:
    """A relayed frame as it reaches today's Recorder: tapped where it is heard (the consumer has it
    decoded), then the client's typed event applied (as the agent dispatches it)."""
    from voice.realtime.client import RawFrame
    from voice.realtime.events import parse_frame

    text = json.dumps(frame)
    recorder.tap(RawFrame(direction="from_openai", origin="browser", text=text), frame)
    recorder.apply(parse_frame(text))


def intake(frames: list[dict[str, Any]], repeat: int, before_revs: list[str]) -> dict[str, float]:
    """Microseconds per relayed frame on the server's path from the frame's text to the record's state,
    nothing written: median of `repeat` passes of each variant, the variants interleaved so that the
    machine's noise falls on all alike. Every variant includes the client's parse of the frame (the
    typed event the agent gets; it ran before the Recorder read typed events too), none the consumer's
    JSON decoding (the same in all)."""
    from voice.realtime.events import parse_frame
    from voice.recording import Recorder

    texts = [json.dumps(frame) for frame in frames]

    def feed_raw(recorder: Any) -> None:  # a Recorder of an earlier commit: record() read the raw dict itself
        for frame, text in zip(frames, texts, strict=True):
            recorder.record("from_browser", frame)
            parse_frame(text)

    def feed_typed(recorder: Any) -> None:
        from voice.realtime.client import RawFrame

        for frame, text in zip(frames, texts, strict=True):
            recorder.tap(RawFrame(direction="from_openai", origin="browser", text=text), frame)
            recorder.apply(parse_frame(text))

    variants = {f"recorder_at_{rev}": (_recorder_before(rev), feed_raw) for rev in before_revs}
    variants["typed_events_recorder"] = (Recorder, feed_typed)
    passes: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeat):
        for name, (cls, feed) in variants.items():
            recorder = cls("00000000-0000-0000-0000-000000000000", model="gpt-realtime", batch_size=10**9)
            started = time.perf_counter()
            feed(recorder)
            passes[name].append((time.perf_counter() - started) / len(frames) * 1e6)
    return {name: round(statistics.median(values), 1) for name, values in passes.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="a PostgreSQL server URL (no database name); default SQLite")
    parser.add_argument("--frames", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--before-rev", action="append", default=None,
                        help="a commit whose Recorder is an intake baseline (repeatable; default: b818531, before "
                             "the bounds, and e80782f, before the Recorder read typed events)")
    args = parser.parse_args()
    _setup(args.database_url)
    try:
        from realtime_emulator.streams import turns

        results: dict[str, Any] = {"database": "postgresql" if args.database_url else "sqlite"}
        results["flood_unbounded_baseline"] = asyncio.run(flood(bounded=False))
        results["flood_bounded"] = asyncio.run(flood(bounded=True))
        frames = [frame for _, frame in zip(range(args.frames), turns("bench"), strict=False)]
        results["intake_us_per_frame"] = intake(frames, args.repeat, args.before_rev or ["b818531", "e80782f"])
        print(json.dumps(results, indent=2))
    finally:
        _drop(args.database_url)


if __name__ == "__main__":
    main()
