"""Run every benchmark (quick versions with --quick, as `make bench` does) and print one summary table.

The benchmark database is recreated and migrated once, the benchmark Redis DB flushed once; then each
benchmark runs as its own process (so one failing does not stop the others), bounded in time. The
table is also written to benchmarks/results/summary.md.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import harness as h

BENCHMARKS = [
    ("ingest", "bench_ingest.py", 240, 1800),
    ("session_start", "bench_session_start.py", 120, 1200),
    ("concurrent_sessions", "bench_concurrent_sessions.py", 240, 1200),
    ("fanout", "bench_fanout.py", 240, 3600),
    ("scale", "bench_scale.py", 900, 3600),
    ("server_mode", "bench_server_mode.py", 420, 2400),
]


def _reachable(url: str, port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or port), timeout=2):
            return True
    except OSError:
        return False


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        value = f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{value}{unit}"


def summary_rows(quick: bool) -> list[list[str]]:
    rows = []

    def load(name: str) -> dict[str, Any] | None:
        path = h.RESULTS / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    if (ingest := load("ingest")) is not None:
        f = ingest["figure"]
        rows.append(["Ingest (recorded events/s, zero loss)", _fmt(f["recorded_events_per_second"]),
                     f"echo {_fmt(f['baseline_echo_events_per_second'])}/s", _fmt(f["ratio"]), "≥ 0.5 × echo",
                     "met" if f["met"] else f"MISSED (zero loss: {f['zero_loss']})"])
    if (fan := load("fanout")) is not None:
        for key, f in fan["figure"].items():
            if not isinstance(f, dict):
                continue
            rows.append([f"Fan-out {key.replace('_', ' ')} (frame → dashboard p50 / p99 ms)",
                         f"{_fmt(f['p50_ms'])} / {_fmt(f['p99_ms'])}",
                         f"group_send p99 {_fmt(f['baseline_group_send_p99_ms'])} idle, "
                         f"{_fmt(f['baseline_group_send_under_load_p99_ms'])} loaded",
                         _fmt(f["ratio_p99_to_baseline_p99"]), "p99 ≤ 50 ms",
                         "met" if f["met"] else "MISSED"])
    if (start := load("session_start")) is not None:
        f = start["figure"]
        rows.append(["Session start, server share p50 / p99 (ms)",
                     f"{_fmt(f['server_share_p50_ms'])} / {_fmt(f['server_share_p99_ms'])}",
                     f"mint p50 {_fmt(f['baseline_mint_p50_ms'])} (total p50 {_fmt(f['total_p50_ms'])})",
                     _fmt(h.ratio(f["server_share_p50_ms"], f["baseline_mint_p50_ms"])), "p50 ≤ 10 ms",
                     "met" if f["met"] else "MISSED"])
    if (idle := load("concurrent_sessions")) is not None:
        f = idle["figure"]
        rows.append([f"Concurrent idle sessions ({f['sessions']}), RSS per session",
                     _fmt(f["kb_per_session"], " KB"),
                     f"echo conn {_fmt(f['baseline_kb_per_echo_connection'])} KB; process "
                     f"{_fmt(f['baseline_rss_before_sessions_mib'])} MiB before",
                     _fmt(f["ratio_to_echo"]), "1,000 at ≤ 100 KB",
                     "met" if f["met"] else ("MISSED" if f["sessions"] >= 1000 else "n/a (quick: < 1,000)")])
    if (scale := load("scale")) is not None:
        figures = scale["figure"]
        large, small = scale["config"]["large"], scale["config"]["small"]
        worst = max(figures.items(), key=lambda kv: kv[1]["large_p50_ms"])
        ratios = [f["ratio"] for f in figures.values() if f["ratio"] is not None]
        met = sum(f["met"] for f in figures.values())
        rows.append([f"Pages at {large:,} sessions within target (p50; worst: {worst[0]})",
                     f"{met} of {len(figures)}; worst {_fmt(worst[1]['large_p50_ms'])} ms",
                     f"same pages at {small:,} sessions (worst {_fmt(worst[1]['small_p50_ms'])} ms)",
                     f"median {_fmt(sorted(ratios)[len(ratios) // 2])}", "300 ms (search 500 ms)",
                     "met" if met == len(figures) else "MISSED"])
    if (server := load("server_mode")) is not None:
        rows += server_mode_rows(server["figure"])
    return rows


def server_mode_rows(fig: dict[str, Any]) -> list[list[str]]:
    """bench_server_mode.py's four figures (any it ran)."""
    rows = []
    if (f := fig.get("ingest")) is not None:
        rows.append(["Server mode: sideband ingest (recorded events/s, zero loss)", _fmt(f["events_per_second"]),
                     f"bare sideband clients {_fmt(f['baseline_events_per_second'])}/s (set {_fmt(f['set_rate'])}/s)",
                     _fmt(f["ratio"]), "≥ 0.8 × bare", "met" if f["met"] else f"MISSED (zero loss: {f['zero_loss']})"])
    if (f := fig.get("start")) is not None:
        rows.append(["Server mode: offer → answer, server share p50 / p99 (ms)",
                     f"{_fmt(f['server_share_p50_ms'])} / {_fmt(f['server_share_p99_ms'])}",
                     f"/calls p50 {_fmt(f['baseline_calls_p50_ms'])}, sideband handshake "
                     f"{_fmt(f['baseline_dial_p50_ms'])} (total p50 {_fmt(f['offer_to_answer_p50_ms'])})",
                     _fmt(h.ratio(f["server_share_p50_ms"], f["baseline_calls_p50_ms"])), "p50 ≤ 5 ms",
                     "met" if f["met"] else "MISSED"])
    if (f := fig.get("tool")) is not None:
        rows.append([f"Server mode: tool call turnaround, server share p50 / p99 (ms, {f['samples']} calls)",
                     f"{_fmt(f['p50_ms'])} / {_fmt(f['p99_ms'])}",
                     f"bare client p50 {_fmt(f['baseline_p50_ms'])}, p99 {_fmt(f['baseline_p99_ms'])}",
                     _fmt(h.ratio(f["p99_ms"] or 0, f["baseline_p99_ms"] or 0)), "p99 ≤ 5 ms",
                     "met" if f["met"] else "MISSED"])
    if (f := fig.get("idle")) is not None:
        rows.append([f"Server mode: idle sessions ({f['sessions']}), RSS per session",
                     _fmt(f["kb_per_session"], " KB"),
                     f"echo conn {_fmt(f['baseline_kb_per_echo'])} KB; process "
                     f"{_fmt(f['baseline_rss_before_mib'])} MiB before", _fmt(f["ratio"]), "1,000 at ≤ 150 KB",
                     "met" if f["met"] else ("MISSED" if f["sessions"] >= 1000 else "n/a (quick: < 1,000)")])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated subset: ingest,session_start,...")
    args = parser.parse_args()
    if not _reachable(h.PG_SERVER_URL, 5432) or not _reachable(h.REDIS_URL, 6379):
        print(f"benchmarks need PostgreSQL at {h.PG_SERVER_URL} and Redis at {h.REDIS_URL} "
              "(BENCH_PG_URL / BENCH_REDIS_URL); start them (docker compose up redis postgres)", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    h.log(f"recreating database {h.BENCH_DB}, flushing {h.REDIS_URL}")
    h.prepare_database()
    h.flush_redis()
    failures = []
    chosen = {name.strip() for name in args.only.split(",") if name.strip()}
    for name, script, quick_limit, full_limit in BENCHMARKS:
        if chosen and name not in chosen:
            continue
        argv = [sys.executable, str(h.REPO / "benchmarks" / script), "--no-prepare"] + (["--quick"] if args.quick
                                                                                         else [])
        h.log(f"=== {name}")
        try:
            done = subprocess.run(argv, cwd=h.REPO, timeout=quick_limit if args.quick else full_limit, check=False)
            if done.returncode != 0:
                failures.append(f"{name} (exit {done.returncode})")
        except subprocess.TimeoutExpired:
            failures.append(f"{name} (timed out)")  # subprocess.run killed it; its finally stopped its children
    rows = summary_rows(args.quick)
    header = ["figure", "measured", "baseline (same run)", "ratio", "target", "status"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    table = "\n".join(lines)
    machine = h.machine()
    note = (f"\n\n{'quick' if args.quick else 'full'} run, {machine['cpus']} CPUs ({machine['cpu_model']}), "
            f"{machine['memory_gib']} GiB, load average {machine['loadavg_at_start']}, "
            f"{time.monotonic() - t0:.0f} s in all\n")
    (h.RESULTS / "summary.md").write_text(table + note)
    print("\n" + table + note)
    if failures:
        print("FAILED: " + ", ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
