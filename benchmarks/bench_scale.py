"""Every page at scale: the admin, searches, exports, transcripts, "My sessions" and the dashboard snapshot
at 1,000 sessions and again at 100,000 (quick: 10,000), each figure beside the same page at 1,000.

The data set (benchmarks/scale_data.py) is generated inside PostgreSQL with generate_series in its own
database, `voice_scale` (BENCH_SCALE_DB), which this script drops and recreates; no other database is
touched. Pages are fetched over HTTP from a real daphne running the site with DEBUG off (median of 5
after one warm-up, whole body read); the dashboard's two snapshots are read over its websocket. Queries
per page are counted in this process with Django's test client on the same database. Exports run the
admin action ("select all" over a date range) in this process, reading the streamed body chunk by chunk
while sampling the process's RSS.

Targets: every list, search and change page, the transcript page, "My sessions" and both dashboard
snapshots under 300 ms at the large size; transcript search under 500 ms; an export's query count fixed
per chunk of sessions and its memory bounded (not growing with the number exported).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import harness as h

# Its own database, whatever BENCH_DB says: the other benchmarks' database is never touched.
h.BENCH_DB = os.environ.get("BENCH_SCALE_DB", "voice_scale")
h.DATABASE_URL = f"{h.PG_SERVER_URL.rstrip('/')}/{h.BENCH_DB}"

PAGE_TARGET_MS = 300.0
SEARCH_TARGET_MS = 500.0
SMALL = 1_000
REPEAT = 5


def _cookie(username: str) -> str:
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore

    user = User.objects.get(username=username)
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    return f"sessionid={store.session_key}"


def _get(url: str, cookie: str) -> tuple[float, int]:
    request = urllib.request.Request(url, headers={"Cookie": cookie})
    t0 = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        body = response.read()
        status = response.status
    elapsed = (time.perf_counter() - t0) * 1000
    if status != 200:
        raise RuntimeError(f"{url}: HTTP {status}")
    return elapsed, len(body)


def _queries(path: str, username: str) -> int:
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(User.objects.get(username=username))
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    return len(captured)


def pages(long_owner_session_page: int) -> list[tuple[str, str, str, float]]:
    """(name, path, who, target ms) for every page measured."""
    from benchmarks.scale_data import LONG_SESSION
    from voice.models import VoiceSession

    some_session = str(VoiceSession.objects.filter(user__username="scale7").values_list("pk", flat=True).first())
    admin, user = "scaleadmin", "scale0"
    base = "/admin/voice/voicesession/"
    return [
        ("admin: session list", base, admin, PAGE_TARGET_MS),
        ("admin: session list, model filter", f"{base}?model=gpt-realtime-mini", admin, PAGE_TARGET_MS),
        ("admin: session list, live only", f"{base}?status__exact=active", admin, PAGE_TARGET_MS),
        ("admin: session list, page 50", f"{base}?p=50", admin, PAGE_TARGET_MS),
        ("admin: search by user name", f"{base}?q=scale42", admin, PAGE_TARGET_MS),
        ("admin: search by session id", f"{base}?q={some_session}", admin, PAGE_TARGET_MS),
        ("admin: transcript search, rare word", f"{base}?q=quokka", admin, SEARCH_TARGET_MS),
        ("admin: transcript search, common word", f"{base}?q=umbrella", admin, SEARCH_TARGET_MS),
        ("admin: transcript search, two words", f"{base}?q=paris+umbrella", admin, SEARCH_TARGET_MS),
        ("admin: session change page (20 items)", f"{base}{some_session}/change/", admin, PAGE_TARGET_MS),
        ("admin: long session change page", f"{base}{LONG_SESSION}/change/", admin, PAGE_TARGET_MS),
        ("admin: long session, transcript page 20", f"{base}{LONG_SESSION}/change/?transcript_page=20", admin,
         PAGE_TARGET_MS),
        ("admin: event list", "/admin/voice/sessionevent/", admin, PAGE_TARGET_MS),
        ("admin: event list, search by session id", f"/admin/voice/sessionevent/?q={some_session}", admin,
         PAGE_TARGET_MS),
        ("admin: event list, long session, page 100", f"/admin/voice/sessionevent/?q={LONG_SESSION}&p=100", admin,
         PAGE_TARGET_MS),
        ("admin: event list, search by type", "/admin/voice/sessionevent/?q=response.done", admin, PAGE_TARGET_MS),
        ("My sessions", "/voice/sessions/", user, PAGE_TARGET_MS),
        ("My sessions, oldest page", f"/voice/sessions/?page={long_owner_session_page}", user, PAGE_TARGET_MS),
        ("My sessions, search", "/voice/sessions/?q=umbrella", user, SEARCH_TARGET_MS),
        ("transcript page, long session", f"/voice/sessions/{LONG_SESSION}/", user, PAGE_TARGET_MS),
        ("transcript page, long session, last page", f"/voice/sessions/{LONG_SESSION}/?page=20", user,
         PAGE_TARGET_MS),
    ]


def measure_pages(server: h.Daphne, cookies: dict[str, str], last_page: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, path, who, target in pages(last_page):
        _get(server.http + path, cookies[who])  # warm-up
        times, size = [], 0
        for _ in range(REPEAT):
            ms, size = _get(server.http + path, cookies[who])
            times.append(ms)
        out[name] = {"p50_ms": round(statistics.median(times), 1), "bytes": size,
                     "queries": _queries(path, who), "target_ms": target, "path": path}
        h.log(f"  {name}: {out[name]['p50_ms']:.1f} ms, {size / 1024:.0f} KB, {out[name]['queries']} queries")
    return out


async def measure_dashboard(server: h.Daphne, cookie: str) -> dict[str, dict[str, Any]]:
    from benchmarks.scale_data import LONG_SESSION

    connect_ms, live_ms, sub_ms = [], [], []
    live_bytes = sub_bytes = sessions = 0
    for i in range(REPEAT + 1):
        t0 = time.perf_counter()
        ws = await h.ws_connect(server, "/ws/dashboard/", cookie)
        try:
            t1 = time.perf_counter()
            async with asyncio.timeout(60):
                while True:
                    raw = await ws.recv()
                    frame = json.loads(raw)
                    if frame.get("type") == "snapshot":
                        break
            t2 = time.perf_counter()
            live_bytes, sessions = len(raw), len(frame["sessions"])
            await ws.send(json.dumps({"type": "subscribe", "session_id": LONG_SESSION}))
            async with asyncio.timeout(60):
                while True:
                    raw = await ws.recv()
                    frame = json.loads(raw)
                    if frame.get("type") == "session.snapshot":
                        break
            t3 = time.perf_counter()
            sub_bytes = len(raw)
        finally:
            await ws.close()
        if i:  # the first round warms up
            connect_ms.append((t1 - t0) * 1000)
            live_ms.append((t2 - t1) * 1000)
            sub_ms.append((t3 - t2) * 1000)
    result = {
        "dashboard: live sessions snapshot": {"p50_ms": round(statistics.median(live_ms), 1), "bytes": live_bytes,
                                              "sessions": sessions, "target_ms": PAGE_TARGET_MS},
        "dashboard: long session snapshot": {"p50_ms": round(statistics.median(sub_ms), 1), "bytes": sub_bytes,
                                             "target_ms": PAGE_TARGET_MS},
    }
    for name, value in result.items():
        h.log(f"  {name}: {value['p50_ms']:.1f} ms, {value['bytes'] / 1024:.0f} KB")
    return result


def measure_export(count: int, fmt: str) -> dict[str, Any]:
    """Select all sessions of a date range holding `count` sessions and run the export action, reading the
    streamed body as a browser would; queries counted, RSS sampled every chunk."""
    import psutil
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from voice.models import VoiceSession

    ordered = VoiceSession.objects.order_by("-started_at").values_list("started_at", flat=True)
    newest, oldest = ordered[0], ordered[count - 1]
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(User.objects.get(username="scaleadmin"))
    query = f"?started_at__gte={oldest.isoformat()}&started_at__lt={newest.isoformat()}".replace("+", "%2B")
    any_pk = str(VoiceSession.objects.values_list("pk", flat=True).first())
    process = psutil.Process()
    rss0 = peak = process.memory_info().rss
    t0 = time.perf_counter()
    size = chunks = 0
    with CaptureQueriesContext(connection) as captured:
        response = client.post(f"/admin/voice/voicesession/{query}",
                               {"action": f"export_{fmt}", "select_across": "1", "index": "0",
                                "_selected_action": any_pk})
        assert response.status_code == 200, response.status_code
        body = response.streaming_content if response.streaming else [response.content]
        for part in body:
            size += len(part)
            chunks += 1
            if chunks % 50 == 0:
                peak = max(peak, process.memory_info().rss)
    elapsed = time.perf_counter() - t0
    peak = max(peak, process.memory_info().rss)
    result = {"sessions": count - 1, "seconds": round(elapsed, 2), "queries": len(captured),
              "bytes": size, "rss_growth_mib": round((peak - rss0) / 2**20, 1), "streamed": response.streaming}
    h.log(f"  export {fmt} of {count - 1} sessions: {elapsed:.1f} s, {len(captured)} queries, "
          f"{size / 2**20:.1f} MiB out, RSS +{result['rss_growth_mib']} MiB")
    return result


async def main_async(args: Any) -> dict[str, Any]:
    from django.db import connection

    from benchmarks import scale_data as data
    from voice.models import VoiceConfig, VoiceSession

    large = args.sessions or (10_000 if args.quick else 100_000)
    build: dict[str, Any] = {}
    t0 = time.perf_counter()
    first_user, _ = await asyncio.to_thread(data.make_users)
    config_id = (await asyncio.to_thread(lambda: VoiceConfig.objects.order_by("pk").first())).pk
    await asyncio.to_thread(data.make_sentences)
    await asyncio.to_thread(data.make_long_session, first_user=first_user, config_id=config_id)
    build["small"] = await asyncio.to_thread(data.grow, 0, SMALL, first_user=first_user, config_id=config_id)
    build["small_seconds"] = round(time.perf_counter() - t0, 1)
    results: dict[str, dict[str, Any]] = {}
    with h.Stack() as stack:
        server = stack.start(h.Daphne("daphne-scale", None, module="realtime_site.asgi:application"))
        cookies = await asyncio.to_thread(lambda: {u: _cookie(u) for u in ("scaleadmin", "scale0")})

        async def stage(total: int) -> dict[str, Any]:
            sessions_of_user = await asyncio.to_thread(
                lambda: VoiceSession.objects.filter(user__username="scale0").count())
            last_page = max(1, -(-sessions_of_user // 50))
            h.log(f"measuring at {total:,} sessions ({sessions_of_user} of them scale0's)")
            figures = await asyncio.to_thread(measure_pages, server, cookies, last_page)
            figures.update(await measure_dashboard(server, cookies["scaleadmin"]))
            exports = {"json, 100 sessions": await asyncio.to_thread(measure_export, 101, "json")}
            exports[f"json, select all of {min(total, 20_000):,}"] = await asyncio.to_thread(
                measure_export, min(total, 20_000), "json")
            exports[f"text, select all of {min(total, 20_000):,}"] = await asyncio.to_thread(
                measure_export, min(total, 20_000), "text")
            return {"pages": figures, "exports": exports}

        results["small"] = await stage(SMALL)
        t1 = time.perf_counter()
        h.log(f"growing to {large:,} sessions")
        build["large"] = await asyncio.to_thread(data.grow, SMALL, large, first_user=first_user, config_id=config_id)
        build["large_seconds"] = round(time.perf_counter() - t1, 1)
        h.log(f"  built in {build['large_seconds']} s: {build['large']}")
        results["large"] = await stage(large)

    def rows(table: str) -> int:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {table}")
            return int(cursor.fetchone()[0])

    counts = await asyncio.to_thread(lambda: {t: rows(t) for t in (
        "voice_voicesession", "voice_transcriptitem", "voice_sessionevent", "voice_toolcall", "voice_responseusage",
        "auth_user")})
    figure: dict[str, Any] = {}
    for name, big in results["large"]["pages"].items():
        small = results["small"]["pages"][name]
        figure[name] = {"small_p50_ms": small["p50_ms"], "large_p50_ms": big["p50_ms"],
                        "ratio": h.ratio(big["p50_ms"], small["p50_ms"]), "small_bytes": small["bytes"],
                        "large_bytes": big["bytes"], "small_queries": small.get("queries"),
                        "large_queries": big.get("queries"), "target_ms": big["target_ms"],
                        "met": big["p50_ms"] <= big["target_ms"]}
    return {"config": {"small": SMALL, "large": large, "repeat": REPEAT, "quick": args.quick},
            "build": build, "rows": counts, "results": results, "figure": figure,
            "exports": {"small": results["small"]["exports"], "large": results["large"]["exports"]}}


def table(result: dict[str, Any]) -> str:
    small, large = result["config"]["small"], result["config"]["large"]
    lines = [f"| page | {small:,} sessions | {large:,} sessions | ratio | KB ({large:,}) | queries | target | status |",
             "|---|---|---|---|---|---|---|---|"]
    for name, f in result["figure"].items():
        queries = "—" if f["large_queries"] is None else f"{f['small_queries']} / {f['large_queries']}"
        lines.append(f"| {name} | {f['small_p50_ms']:.1f} ms | {f['large_p50_ms']:.1f} ms | {f['ratio']} | "
                     f"{f['large_bytes'] / 1024:,.0f} | {queries} | {f['target_ms']:.0f} ms | "
                     f"{'met' if f['met'] else 'MISSED'} |")
    lines += ["", "| export | sessions | seconds | queries | MiB out | RSS growth MiB |", "|---|---|---|---|---|---|"]
    for stage in ("small", "large"):
        for name, e in result["exports"][stage].items():
            lines.append(f"| {name} | {e['sessions']:,} | {e['seconds']} | {e['queries']} | "
                         f"{e['bytes'] / 2**20:.1f} | {e['rss_growth_mib']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = h.common_args(__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=0, help="the large size (default 100,000; quick 10,000)")
    args = parser.parse_args(argv)
    # Always its own, freshly built database. The benchmarks' Redis DB is used but not flushed: nothing
    # here depends on its contents, and another benchmark may be using it.
    h.log(f"recreating database {h.BENCH_DB}")
    h.prepare_database()
    h.setup_django()
    try:
        result = asyncio.run(main_async(args))
    finally:
        h.close_db_connections()
    print(table(result), flush=True)
    missed = [name for name, f in result["figure"].items() if not f["met"]]
    h.log(f"SCALE: {len(result['figure']) - len(missed)} of {len(result['figure'])} pages within target at "
          f"{result['config']['large']:,} sessions" + (f"; missed: {', '.join(missed)}" if missed else ""))
    h.write_result(h.result_name("scale", args), result)
    return result


if __name__ == "__main__":
    main()
