"""Concurrent sessions: idle voice sessions held by one daphne process, and resident memory per session.

One daphne process is warmed up (a few sessions started and hung up, so every lazy import and cache is
already paid for), then its resident set size (RSS, from /proc via psutil) is taken as the baseline.
N browsers (spread over several users) then open /ws/voice/, get `ag2.init`, send `ag2.ready`, and stay
connected doing nothing; every session is checked to be `active` in the database before RSS is taken
again. Figure: (RSS with N sessions - baseline RSS) / N. Also reported: the idle CPU those N sessions
cost the process (each has a Recorder flush timer, a duration cap and an agent task).

Baseline in the same run: a second daphne process on the same module, measured the same way with N
bare echo connections (/ws/echo/), i.e. what a websocket costs before any voice-session state.
Target: 1,000 sessions at <= 100 KB each.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import harness as h

TARGET_KB = 100.0
SESSIONS_PER_USER = 50


async def _settled_rss(server: h.Daphne, samples: int = 5, interval: float = 0.5) -> int:
    values = []
    for _ in range(samples):
        values.append(server.rss_bytes())
        await asyncio.sleep(interval)
    return int(statistics.median(values))


async def _idle_cpu(server: h.Daphne, seconds: float) -> float:
    before = server.cpu_seconds()
    await asyncio.sleep(seconds)
    return round(100.0 * (server.cpu_seconds() - before) / seconds, 1)


async def _open_echo(server: h.Daphne) -> Any:
    ws = await h.ws_connect(server, "/ws/echo/", None)
    await ws.send('{"type":"hello"}')
    await h.recv_json(ws, 30)
    return ws


def _active_count(ids: list[str]) -> int:
    from voice.models import VoiceSession

    return VoiceSession.objects.filter(pk__in=ids, status="active").count()


async def _close_all(sockets: list[Any], hangup: bool) -> None:
    async def close(ws: Any) -> None:
        try:
            if hangup:
                await ws.send(json.dumps({"type": "ag2.hangup"}))
                async with asyncio.timeout(30):
                    await ws.wait_closed()
        except Exception:
            pass
        await ws.close()

    await h.gather_limited([close(ws) for ws in sockets], 100)


async def measure(server: h.Daphne, count: int, kind: str, cookies: list[str], timeout: float) -> dict[str, Any]:
    # Warm-up: pay for lazy imports and first-use caches before the baseline is taken.
    for i in range(3):
        if kind == "voice":
            ws, _ = await h.open_voice_session(server, cookies[0], f"rtc_idle{10_000 + i}")
        else:
            ws = await _open_echo(server)
        await _close_all([ws], hangup=kind == "voice")
    await asyncio.sleep(2.0)
    base = await _settled_rss(server)
    idle_base = await _idle_cpu(server, 3.0)
    t0 = time.perf_counter()
    sockets: list[Any] = []
    try:
        async with asyncio.timeout(timeout):
            if kind == "voice":
                opened_pairs = await h.gather_limited(
                    [h.open_voice_session(server, cookies[i // SESSIONS_PER_USER], f"rtc_idle{i}")
                     for i in range(count)], 25)
                sockets = [ws for ws, _ in opened_pairs]
                ids = [sid for _, sid in opened_pairs]
                while await asyncio.to_thread(_active_count, ids) < count:  # noqa: ASYNC110 (polls the DB)
                    await asyncio.sleep(0.5)
            else:
                sockets = await h.gather_limited([_open_echo(server) for _ in range(count)], 25)
        opened = time.perf_counter() - t0
        await asyncio.sleep(3.0)  # let the Recorder's first flushes and the broadcasts settle
        held = await _settled_rss(server)
        idle_cpu = await _idle_cpu(server, 5.0)
        held_later = await _settled_rss(server, samples=3)
    finally:
        await _close_all(sockets, hangup=kind == "voice")
    per = (held - base) / count
    return {"connections": count, "seconds_to_open_all": round(opened, 1),
            "rss_before_mib": round(base / 2**20, 1), "rss_with_sessions_mib": round(held / 2**20, 1),
            "rss_8s_later_mib": round(held_later / 2**20, 1),
            "kb_per_connection": round(per / 1024, 1),
            "idle_cpu_percent_before": idle_base, "idle_cpu_percent_with_sessions": idle_cpu}


async def trace_memory(count: int, cookies: list[str]) -> dict[str, Any]:
    """The per-session growth by allocation site (tracemalloc in the server, benchmarks/memprobe_asgi.py)."""
    import urllib.request

    def get(server: h.Daphne, action: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"{server.http}/_bench/tracemalloc/{action}", timeout=600) as response:
            return json.loads(response.read())

    with h.Stack() as stack:
        emulator = stack.start(h.Emulator("emulator-tracemalloc"))
        server = stack.start(h.Daphne("daphne-tracemalloc", emulator, module="benchmarks.memprobe_asgi:application"))
        for i in range(3):
            ws, _ = await h.open_voice_session(server, cookies[0], f"rtc_idle{20_000 + i}")
            await _close_all([ws], hangup=True)
        await asyncio.sleep(2.0)
        await asyncio.to_thread(get, server, "mark")
        rss0 = server.rss_bytes()
        pairs = await h.gather_limited(
            [h.open_voice_session(server, cookies[i // SESSIONS_PER_USER], f"rtc_idle{30_000 + i}")
             for i in range(count)], 5)
        try:
            ids = [sid for _, sid in pairs]
            async with asyncio.timeout(300):
                while await asyncio.to_thread(_active_count, ids) < count:  # noqa: ASYNC110 (polls the DB)
                    await asyncio.sleep(0.5)
            await asyncio.sleep(3.0)
            diff = await asyncio.to_thread(get, server, "diff")
            diff["rss_growth_bytes_with_tracemalloc"] = server.rss_bytes() - rss0
        finally:
            await _close_all([ws for ws, _ in pairs], hangup=True)
    diff["sessions"] = count
    diff["traced_bytes_per_session"] = round(diff["total_growth_bytes"] / count)
    path = h.RESULTS / "concurrent_sessions-tracemalloc.json"
    path.write_text(json.dumps(diff, indent=2))
    h.log(f"tracemalloc: {diff['traced_bytes_per_session'] / 1024:.1f} KiB of live Python objects per session; "
          f"wrote {path.relative_to(h.REPO)}")
    return diff


async def main_async(args: Any) -> dict[str, Any]:
    count = args.count or (1000 if not args.quick else 300)
    users = (count + SESSIONS_PER_USER - 1) // SESSIONS_PER_USER
    cookies = await asyncio.to_thread(h.create_users, "idle", users)
    timeout = 300.0
    if args.trace_memory:
        return {"tracemalloc": await trace_memory(count, cookies)}
    with h.Stack() as stack:
        emulator = stack.start(h.Emulator())
        echo_server = stack.start(h.Daphne("daphne-idle-echo", None))
        h.log(f"baseline: {count} bare echo connections on a fresh daphne")
        echo = await measure(echo_server, count, "echo", cookies, timeout)
        h.log(f"  {echo['kb_per_connection']:.1f} KB per echo connection")
        echo_server.stop()
        voice_server = stack.start(h.Daphne("daphne-idle-voice", emulator))
        h.log(f"{count} idle voice sessions ({users} users) on a fresh daphne")
        voice = await measure(voice_server, count, "voice", cookies, timeout)
        h.log(f"  {voice['kb_per_connection']:.1f} KB per voice session")
    result = {
        "config": {"sessions": count, "users": users, "quick": args.quick},
        "echo_baseline": echo, "voice": voice,
        "figure": {"sessions": count, "kb_per_session": voice["kb_per_connection"],
                   "baseline_kb_per_echo_connection": echo["kb_per_connection"],
                   "baseline_rss_before_sessions_mib": voice["rss_before_mib"],
                   "ratio_to_echo": h.ratio(voice["kb_per_connection"], echo["kb_per_connection"]),
                   "idle_cpu_percent_with_sessions": voice["idle_cpu_percent_with_sessions"],
                   "target_kb": TARGET_KB},
    }
    result["figure"]["met"] = count >= 1000 and voice["kb_per_connection"] <= TARGET_KB
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = h.common_args(__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--trace-memory", action="store_true",
                        help="instead of the figure: where each session's memory goes (tracemalloc in the server)")
    args = parser.parse_args(argv)
    result = h.run(args, main_async, call_mode="relay")
    if args.trace_memory:
        return result
    fig = result["figure"]
    h.log(f"CONCURRENT SESSIONS: {fig['sessions']} idle sessions, {fig['kb_per_session']:.1f} KB each "
          f"(bare echo connection {fig['baseline_kb_per_echo_connection']:.1f} KB; process before sessions "
          f"{fig['baseline_rss_before_sessions_mib']:.0f} MiB; target <= {TARGET_KB:g} KB at 1,000)")
    h.write_result(h.result_name("concurrent_sessions", args), result)
    return result


if __name__ == "__main__":
    main()
