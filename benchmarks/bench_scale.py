"""Every page at scale: the admin, searches, exports, transcripts, "My sessions" and the dashboard snapshot
at 1,000 sessions and again at 100,000 (quick: 10,000), each figure beside the same page at 1,000.

The data set (benchmarks/scale_data.py) is generated inside PostgreSQL with generate_series, twice: in
`voice_scale_1k` (1,000 sessions) and `voice_scale_100k` (quick: `_10k`; BENCH_SCALE_DB is the prefix), which
this script drops and recreates (`--reuse` keeps one that already holds the wanted size); no other
database is touched. Each database gets its own daphne running the site with DEBUG off, and every page
is fetched from both alternately, request by request (median of 5 after one warm-up, whole body read),
so both sizes are measured under the same conditions on this shared machine; the dashboard's two
snapshots are read over its websocket the same way. A child process per database builds it and, with
Django's test client, counts each page's queries and their SQL time (the part of a page's cost that
depends on the data's size), and runs the exports: the admin action, "select all" over a date range,
its streamed body read chunk by chunk while the process's RSS is sampled.

Targets: every list, search and change page, the transcript page, "My sessions" and both dashboard
snapshots under 300 ms at the large size; transcript search under 500 ms; an export's query count fixed
per chunk of sessions and its memory bounded (not growing with the number exported).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import harness as h

# Its own databases, whatever BENCH_DB says: <SCALE_DB>_1k and <SCALE_DB>; no other database is touched.
SCALE_DB = os.environ.get("BENCH_SCALE_DB", "voice_scale")

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


def _queries(path: str, username: str) -> tuple[int, float]:
    """Queries the page runs, and their total time in ms (median of 3): the part of a page's cost that
    depends on the data's size, and is less disturbed than the whole by other work on the machine."""
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(User.objects.get(username=username))
    sql_ms = []
    for _ in range(3):
        with CaptureQueriesContext(connection) as captured:
            response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        sql_ms.append(sum(float(q["time"]) for q in captured.captured_queries) * 1000)
    return len(captured), round(statistics.median(sql_ms), 1)


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
        ("admin: session list, page 15", f"{base}?p=15", admin, PAGE_TARGET_MS),
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


def measure_pages(servers: dict[str, h.Daphne], sides: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each page on both databases, alternating request by request so both see the same machine."""
    out: dict[str, dict[str, Any]] = {side: {} for side in servers}
    for index, (name, _, _, target) in enumerate(sides["small"]["pages"]):
        times: dict[str, list[float]] = {side: [] for side in servers}
        sizes: dict[str, int] = {}
        for side, server in servers.items():
            _, path, who, _ = sides[side]["pages"][index]
            _get(server.http + path, sides[side]["cookies"][who])  # warm-up
        for _ in range(REPEAT):
            for side, server in servers.items():
                _, path, who, _ = sides[side]["pages"][index]
                ms, sizes[side] = _get(server.http + path, sides[side]["cookies"][who])
                times[side].append(ms)
        for side in servers:
            queries, sql_ms = sides[side]["queries"][name]
            out[side][name] = {"p50_ms": round(statistics.median(times[side]), 1), "bytes": sizes[side],
                               "queries": queries, "sql_ms": sql_ms, "target_ms": target}
        h.log(f"  {name}: " + ", ".join(f"{side} {out[side][name]['p50_ms']:.1f} ms ({out[side][name]['sql_ms']} ms "
                                        f"SQL, {out[side][name]['bytes'] / 1024:.0f} KB)" for side in servers))
    return out


async def _dashboard_once(server: h.Daphne, cookie: str) -> tuple[float, float, int, int, int]:
    from benchmarks.scale_data import LONG_SESSION

    ws = await h.ws_connect(server, "/ws/dashboard/", cookie)
    try:
        t1 = time.perf_counter()
        async with asyncio.timeout(60):
            while (frame := json.loads(raw := await ws.recv())).get("type") != "snapshot":
                pass
        t2 = time.perf_counter()
        live_bytes, sessions = len(raw), len(frame["sessions"])
        await ws.send(json.dumps({"type": "subscribe", "session_id": LONG_SESSION}))
        async with asyncio.timeout(60):
            while json.loads(raw := await ws.recv()).get("type") != "session.snapshot":
                pass
        t3 = time.perf_counter()
    finally:
        await ws.close()
    return (t2 - t1) * 1000, (t3 - t2) * 1000, live_bytes, len(raw), sessions


async def measure_dashboard(servers: dict[str, h.Daphne], sides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The staff snapshot on connect (every live session) and the long session's snapshot on subscribe."""
    runs: dict[str, list[tuple[float, float, int, int, int]]] = {side: [] for side in servers}
    for i in range(REPEAT + 1):
        for side, server in servers.items():
            result = await _dashboard_once(server, sides[side]["cookies"]["scaleadmin"])
            if i:  # the first round warms up
                runs[side].append(result)
    out: dict[str, Any] = {}
    for side, values in runs.items():
        out[side] = {
            "dashboard: live sessions snapshot": {
                "p50_ms": round(statistics.median(v[0] for v in values), 1), "bytes": values[-1][2],
                "sessions": values[-1][4], "queries": None, "sql_ms": None, "target_ms": PAGE_TARGET_MS},
            "dashboard: long session snapshot": {
                "p50_ms": round(statistics.median(v[1] for v in values), 1), "bytes": values[-1][3],
                "queries": None, "sql_ms": None, "target_ms": PAGE_TARGET_MS},
        }
    for name in out["small"]:
        h.log(f"  {name}: " + ", ".join(f"{side} {out[side][name]['p50_ms']:.1f} ms "
                                        f"({out[side][name]['bytes'] / 1024:.0f} KB)" for side in out))
    return out


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


def side_main(args: Any) -> dict[str, Any]:
    """One database (a child process): build it (or reuse it), then what is measured in-process."""
    h.setup_django()  # connects lazily: the database may not exist yet
    from django.db import connection

    from benchmarks import scale_data as data
    from voice.models import VoiceConfig, VoiceSession

    build: dict[str, Any] = {}
    reused = False
    if args.reuse:
        with contextlib.suppress(Exception):
            reused = VoiceSession.objects.count() == args.sessions + 1  # + the long session
    if not reused:
        h.close_db_connections()
        h.log(f"recreating database {h.BENCH_DB} with {args.sessions:,} sessions")
        h.prepare_database()
        t0 = time.perf_counter()
        first_user, _ = data.make_users()
        config_id = VoiceConfig.objects.order_by("pk").first().pk
        data.make_sentences()
        data.make_long_session(first_user=first_user, config_id=config_id)
        build = data.grow(0, args.sessions, first_user=first_user, config_id=config_id)
        build["total"] = round(time.perf_counter() - t0, 1)
        h.log(f"  built in {build['total']} s: {build}")
    cookies = {u: _cookie(u) for u in ("scaleadmin", "scale0")}
    sessions_of_user = VoiceSession.objects.filter(user__username="scale0").count()
    page_list = pages(max(1, -(-sessions_of_user // 50)))
    queries = {name: _queries(path, who) for name, path, who, _ in page_list}
    total = args.sessions
    many = min(total, 2_000 if args.quick else 20_000)
    exports = {"json, 100 sessions": measure_export(101, "json"),
               f"json, select all of {many:,}": measure_export(many, "json"),
               f"text, select all of {many:,}": measure_export(many, "text")}

    def rows(table: str) -> int:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {table}")
            return int(cursor.fetchone()[0])

    counts = {t: rows(t) for t in ("voice_voicesession", "voice_transcriptitem", "voice_sessionevent",
                                   "voice_toolcall", "voice_responseusage", "auth_user")}
    return {"db": h.BENCH_DB, "sessions": total, "reused": reused, "build": build, "rows": counts,
            "cookies": cookies, "pages": page_list, "queries": queries, "exports": exports}


def _run_side(side: str, db: str, sessions: int, reuse: bool, quick: bool) -> dict[str, Any]:
    out = h.RESULTS / f"scale-{side}.side.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, __file__, "--side-db", db, "--sessions", str(sessions), "--side-out", str(out)]
    argv += (["--reuse"] if reuse else []) + (["--quick"] if quick else [])
    subprocess.run(argv, cwd=h.REPO, check=True, timeout=3600)
    return json.loads(out.read_text())


async def main_async(args: Any) -> dict[str, Any]:
    large = args.sessions or (10_000 if args.quick else 100_000)
    sides = {"small": await asyncio.to_thread(_run_side, "small", f"{SCALE_DB}_1k", SMALL, args.reuse, args.quick),
             "large": await asyncio.to_thread(_run_side, "large", f"{SCALE_DB}_{large // 1000}k", large, args.reuse,
                                              args.quick)}
    with h.Stack() as stack:
        servers = {side: stack.start(h.Daphne(f"daphne-scale-{side}", None, module="realtime_site.asgi:application",
                                              DATABASE_URL=f"{h.PG_SERVER_URL.rstrip('/')}/{sides[side]['db']}"))
                   for side in sides}
        h.log(f"measuring {SMALL:,} and {large:,} sessions side by side")
        results = await asyncio.to_thread(measure_pages, servers, sides)
        dashboard = await measure_dashboard(servers, sides)
        for side in sides:
            results[side].update(dashboard[side])
    figure: dict[str, Any] = {}
    for name, big in results["large"].items():
        small = results["small"][name]
        figure[name] = {"small_p50_ms": small["p50_ms"], "large_p50_ms": big["p50_ms"],
                        "ratio": h.ratio(big["p50_ms"], small["p50_ms"]), "small_bytes": small["bytes"],
                        "large_bytes": big["bytes"], "small_queries": small.get("queries"),
                        "large_queries": big.get("queries"), "small_sql_ms": small.get("sql_ms"),
                        "large_sql_ms": big.get("sql_ms"), "target_ms": big["target_ms"],
                        "met": big["p50_ms"] <= big["target_ms"]}
    return {"config": {"small": SMALL, "large": large, "repeat": REPEAT, "quick": args.quick},
            "loadavg": [round(x, 2) for x in os.getloadavg()],
            "build": {side: sides[side]["build"] for side in sides},
            "rows": {side: sides[side]["rows"] for side in sides}, "results": results, "figure": figure,
            "exports": {side: sides[side]["exports"] for side in sides}}


def table(result: dict[str, Any]) -> str:
    small, large = result["config"]["small"], result["config"]["large"]
    lines = [f"| page | {small:,} sessions | {large:,} sessions | ratio | SQL ms ({small:,} / {large:,}) | "
             f"KB ({large:,}) | queries | target | status |", "|---|---|---|---|---|---|---|---|---|"]
    for name, f in result["figure"].items():
        queries = "—" if f["large_queries"] is None else f"{f['small_queries']} / {f['large_queries']}"
        sql = "—" if f.get("large_sql_ms") is None else f"{f['small_sql_ms']} / {f['large_sql_ms']}"
        lines.append(f"| {name} | {f['small_p50_ms']:.1f} ms | {f['large_p50_ms']:.1f} ms | {f['ratio']} | {sql} | "
                     f"{f['large_bytes'] / 1024:,.0f} | {queries} | {f['target_ms']:.0f} ms | "
                     f"{'met' if f['met'] else 'MISSED'} |")
    lines += ["", f"Load average at the end of the run: {result.get('loadavg', '?')}", "",
              "| export | sessions | seconds | queries | MiB out | RSS growth MiB |", "|---|---|---|---|---|---|"]
    for stage in ("small", "large"):
        for name, e in result["exports"][stage].items():
            lines.append(f"| {name} | {e['sessions']:,} | {e['seconds']} | {e['queries']} | "
                         f"{e['bytes'] / 2**20:.1f} | {e['rss_growth_mib']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = h.common_args(__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=0, help="the large size (default 100,000; quick 10,000)")
    parser.add_argument("--reuse", action="store_true",
                        help="keep a database that already holds the wanted number of sessions (built by an "
                             "earlier run) instead of building it again")
    parser.add_argument("--side-db", default="", help=argparse.SUPPRESS)
    parser.add_argument("--side-out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side_db:  # a child: one database
        h.BENCH_DB = args.side_db
        h.DATABASE_URL = f"{h.PG_SERVER_URL.rstrip('/')}/{h.BENCH_DB}"
        try:
            side = side_main(args)
        finally:
            h.close_db_connections()
        Path(args.side_out).write_text(json.dumps(side, default=str))
        return side
    # The benchmarks' Redis DB is used but not flushed: nothing here depends on its contents, and
    # another benchmark may be using it.
    result = asyncio.run(main_async(args))
    print(table(result), flush=True)
    missed = [name for name, f in result["figure"].items() if not f["met"]]
    h.log(f"SCALE: {len(result['figure']) - len(missed)} of {len(result['figure'])} pages within target at "
          f"{result['config']['large']:,} sessions" + (f"; missed: {', '.join(missed)}" if missed else ""))
    h.write_result(h.result_name("scale", args), result)
    return result


if __name__ == "__main__":
    main()
