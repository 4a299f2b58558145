"""Fault suite: a real PostgreSQL stopped and started under a real daphne, and daphne stopped by SIGTERM.

Everything here runs against a private PostgreSQL cluster (tests/pg_cluster.py, the `pg_cluster`
fixture), never the shared one: one database per test, cloned from a migrated template that holds two
logged-in users. Daphne is started as in the end-to-end tests (tests/e2e/servers.py) and pointed at
that database and at a spool directory of the test's own. The browser's end is a plain websocket
client speaking relay mode: it relays OpenAI server events, which the server records.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.servers import LOGS, REPO, Emulator, Site
from tests.pg_cluster import ThrowawayPostgres
from tests.test_recording import conversation

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(180)]

TEMPLATE = "voice_outage_template"
OUTAGE_SECONDS = 15.0  # issue 10, item 5: "a user who hung up while PostgreSQL was down for 15 s"
EVENTS_PER_TURN = len(conversation()) - 4  # transcript deltas are folded into their item
PREPARE = """
import json, django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from voice.models import VoiceConfig
# These browsers relay the model's events (the seed's flow); server mode is tested in test_live_session.py.
VoiceConfig.objects.update(call_mode=VoiceConfig.CallMode.RELAY)
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
keys = {}
for name in ("alice", "bob"):
    user = User.objects.create_user(name, password=name + "-pass-2026")
    store = SessionStore()
    store.update({SESSION_KEY: str(user.pk), BACKEND_SESSION_KEY: "django.contrib.auth.backends.ModelBackend",
                  HASH_SESSION_KEY: user.get_session_auth_hash()})
    store.create()
    keys[name] = store.session_key
print(json.dumps(keys))
"""


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SQLITE_PATH", "REDIS_URL"}}
    env.update({"DJANGO_SETTINGS_MODULE": "realtime_site.settings", "DJANGO_DEBUG": "1", **extra})
    return env


@pytest.fixture(scope="module")
def logins(pg_cluster: ThrowawayPostgres) -> dict[str, str]:
    """A migrated template database with two users, alice and bob; their session cookies."""
    pg_cluster.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
    pg_cluster.execute(f"CREATE DATABASE {TEMPLATE}")
    result = subprocess.run([sys.executable, "-c", PREPARE], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env=_child_env(DATABASE_URL=pg_cluster.url(TEMPLATE), DATABASE_CONN_MAX_AGE="0"))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def emulator_process() -> Iterator[Emulator]:
    emulator = Emulator()
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def database(pg_cluster: ThrowawayPostgres, logins: dict[str, str]) -> Iterator[str]:
    name = f"voice_outage_{uuid.uuid4().hex[:10]}"
    pg_cluster.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    try:
        yield name
    finally:
        if not pg_cluster.running:
            pg_cluster.start()
        pg_cluster.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class Server:
    """Daphne on the test's database and spool directory; started and stopped as the test says."""

    def __init__(self, emulator: Emulator, cluster: ThrowawayPostgres, database: str, spool: Path,
                 **settings: str) -> None:
        self.site = Site(emulator=emulator, database_env={
            "DATABASE_URL": cluster.url(database), "VOICE_SPOOL_DIR": str(spool), **settings})
        self.site.log_path = LOGS / "daphne-outage.log"
        self.site.log_path.write_text("")

    def __enter__(self) -> Server:
        self.site.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.site.stop()


@pytest.fixture
def serve(emulator_process: Emulator, pg_cluster: ThrowawayPostgres, database: str,
          tmp_path: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def start(**settings: str) -> Server:
        server = Server(emulator_process, pg_cluster, database, tmp_path / "spool", **settings)
        servers.append(server)
        return server.__enter__()

    yield start
    for server in servers:
        server.__exit__()


class Browser:
    """The browser's end of /ws/voice/ in relay mode: it relays the model's events for the server to record."""

    def __init__(self, site: Site, cookie: str) -> None:
        self.site, self.cookie = site, cookie
        self.session_id = ""
        self.sent_event_ids: list[str] = []

    async def open(self) -> dict[str, Any]:
        import aiohttp

        self.http = aiohttp.ClientSession()
        self.ws = await self.http.ws_connect(f"ws://127.0.0.1:{self.site.port}/ws/voice/",
                                             headers={"Cookie": f"sessionid={self.cookie}", "Origin": self.site.url})
        return await self.until("ag2.init", "ag2.error")

    async def start(self) -> Browser:
        init = await self.open()
        assert init["type"] == "ag2.init", init
        self.session_id = init["session_id"]
        await self.send({"type": "ag2.ready", "call_id": f"rtc_{uuid.uuid4().hex[:12]}"})
        return self

    async def until(self, *kinds: str, timeout: float = 15) -> dict[str, Any]:
        while True:
            message = await self.ws.receive(timeout)
            if message.type != 1:  # aiohttp.WSMsgType.TEXT
                raise AssertionError(f"socket closed ({message.type}, {self.ws.close_code}) before {kinds}")
            frame = json.loads(message.data)
            if frame["type"] in kinds:
                return frame

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(frame))

    async def turn(self, number: int) -> None:
        """One question and answer: EVENTS_PER_TURN event rows, two items, one usage row."""
        for frame in _turn(number):
            if not frame["type"].endswith(".delta"):
                self.sent_event_ids.append(frame["event_id"])
            await self.send(frame)

    async def hang_up(self) -> None:
        await self.send({"type": "ag2.hangup"})
        await self.ws.receive(15)  # ag2.close
        await self.ws.receive(15)  # the close itself
        await self.close()

    async def close(self) -> None:
        await self.http.close()


def _turn(number: int) -> list[dict[str, Any]]:
    text = json.dumps(conversation())
    for old in ("item_user1", "item_asst1", "resp_1", "sess_1"):
        text = text.replace(old, f"{old[:-1]}{number}")
    return json.loads(re.sub(r'"event_id": "e(\d+)"', rf'"event_id": "t{number}e\1"', text))


def _record(cluster: ThrowawayPostgres, database: str, session_id: str) -> dict[str, Any]:
    """What the database holds of one session."""
    [(status, end_reason, total_tokens)] = cluster.query(
        "SELECT status, end_reason, total_tokens FROM voice_voicesession WHERE id = %s", session_id,
        database=database)
    events = cluster.query("SELECT seq, type, payload->>'event_id' FROM voice_sessionevent WHERE session_id = %s "
                           "ORDER BY seq", session_id, database=database)
    [(items,)] = cluster.query("SELECT count(*) FROM voice_transcriptitem WHERE session_id = %s", session_id,
                               database=database)
    [(usages,)] = cluster.query("SELECT count(*) FROM voice_responseusage WHERE session_id = %s", session_id,
                                database=database)
    return {"status": status, "end_reason": end_reason, "total_tokens": total_tokens, "events": events,
            "event_ids": {e[2] for e in events if e[2]}, "types": [e[1] for e in events], "items": items,
            "usages": usages}


def _missing(record: dict[str, Any], browser: Browser, turns: int, end_reason: str) -> dict[str, Any]:
    """Everything the server accepted that the database does not hold (empty: nothing lost)."""
    missing: dict[str, Any] = {}
    lost_events = set(browser.sent_event_ids) - record["event_ids"]
    if lost_events:
        missing["events"] = len(lost_events)
    if record["items"] != 2 * turns:
        missing["items"] = 2 * turns - record["items"]
    if record["usages"] != turns:
        missing["usages"] = turns - record["usages"]
    if [e[0] for e in record["events"]] != list(range(1, len(record["events"]) + 1)):
        missing["seq_gaps"] = True
    if (record["status"], record["end_reason"]) != ("ended", end_reason):
        missing["status"] = (record["status"], record["end_reason"])
    return missing


async def _until_complete(cluster: ThrowawayPostgres, database: str, browser: Browser, turns: int,
                          end_reason: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        record = _record(cluster, database, browser.session_id)
        missing = _missing(record, browser, turns, end_reason)
        if not missing:
            return record
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout:.0f}s the database still lacks {missing} of session "
                                 f"{browser.session_id}")
        await asyncio.sleep(0.25)


async def _until_written(cluster: ThrowawayPostgres, database: str, browser: Browser) -> None:
    """The rows of what was relayed so far are committed (the writer flushes every 0.25 s)."""
    deadline = time.monotonic() + 10
    while set(browser.sent_event_ids) - _record(cluster, database, browser.session_id)["event_ids"]:
        assert time.monotonic() < deadline, "rows relayed while the database was up were not written"
        await asyncio.sleep(0.1)


@pytest.fixture
async def browsers() -> AsyncIterator[list[Browser]]:
    opened: list[Browser] = []
    yield opened
    for browser in opened:
        if hasattr(browser, "http"):
            await browser.close()


# --- the tests -----------------------------------------------------------------------------------------


async def test_a_user_who_hangs_up_while_postgresql_is_down_for_15_seconds_loses_nothing(
    pg_cluster: ThrowawayPostgres, database: str, logins: dict[str, str], serve: Any, browsers: list[Browser]
) -> None:
    server = serve()
    browser = Browser(server.site, logins["alice"])
    browsers.append(browser)
    await browser.start()
    await browser.turn(1)
    await browser.turn(2)
    await _until_written(pg_cluster, database, browser)

    pg_cluster.stop()
    down_at = time.monotonic()
    await browser.turn(3)  # accepted while the database is down ...
    await browser.hang_up()  # ... and the user is gone before it is back
    await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
    pg_cluster.start()
    back_at = time.monotonic()

    record = await _until_complete(pg_cluster, database, browser, turns=3, end_reason="hangup", timeout=20)
    assert "ag2.hangup" in record["types"] and "ag2.close" in record["types"]
    assert record["total_tokens"] == 3 * 1300
    print(f"\n15 s outage: {len(record['events'])} event, {record['items']} item, {record['usages']} usage rows; "
          f"all written {time.monotonic() - back_at:.1f}s after PostgreSQL was back; 0 lost")
    assert server.site.alive()


async def test_sigterm_with_live_sessions_and_postgresql_down_spools_and_the_next_start_replays(
    pg_cluster: ThrowawayPostgres, database: str, logins: dict[str, str], serve: Any, browsers: list[Browser],
    tmp_path: Path
) -> None:
    server = serve()
    first, second = Browser(server.site, logins["alice"]), Browser(server.site, logins["alice"])
    browsers += [first, second]
    for browser in (first, second):
        await browser.start()
        await browser.turn(1)
    for browser in (first, second):
        await _until_written(pg_cluster, database, browser)

    pg_cluster.stop()
    for browser in (first, second):
        await browser.turn(2)
    await asyncio.sleep(0.3)  # let daphne read the frames before it is told to stop
    stopping = time.monotonic()
    server.site.stop()  # SIGTERM, as a deploy or an orchestrator sends it
    stop_seconds = time.monotonic() - stopping
    spooled = sorted((tmp_path / "spool").glob("*.jsonl"))
    assert {p.name.split("-", 2)[2].removesuffix(".jsonl") for p in spooled} == {first.session_id,
                                                                                 second.session_id}

    pg_cluster.start()
    for browser in (first, second):  # the database alone lacks them: they are only in the spool
        assert _missing(_record(pg_cluster, database, browser.session_id), browser, 2, "server_shutdown")

    server.site.start()  # the next start-up (its health check is the first request) replays the spool
    for browser in (first, second):
        await _until_complete(pg_cluster, database, browser, turns=2, end_reason="server_shutdown", timeout=15)
    assert not list((tmp_path / "spool").glob("*.jsonl"))
    print(f"\nSIGTERM with 2 live sessions and PostgreSQL down: stopped in {stop_seconds:.1f}s, "
          f"{len(spooled)} spool file(s), all replayed at the next start")


async def test_the_replay_command_writes_a_spool_left_by_a_stopped_process_and_twice_is_harmless(
    pg_cluster: ThrowawayPostgres, database: str, logins: dict[str, str], serve: Any, browsers: list[Browser],
    tmp_path: Path
) -> None:
    server = serve()
    browser = Browser(server.site, logins["bob"])
    browsers.append(browser)
    await browser.start()
    pg_cluster.stop()
    await browser.turn(1)
    await asyncio.sleep(0.3)
    server.site.stop()
    assert list((tmp_path / "spool").glob("*.jsonl"))
    pg_cluster.start()

    def replay() -> str:
        result = subprocess.run([sys.executable, "manage.py", "replay_spool"], cwd=REPO, capture_output=True,
                                text=True, timeout=60,
                                env=_child_env(DATABASE_URL=pg_cluster.url(database),
                                               VOICE_SPOOL_DIR=str(tmp_path / "spool")))
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert re.search(r"Replayed [1-9]\d* file\(s\)", replay())
    once = await _until_complete(pg_cluster, database, browser, turns=1, end_reason="server_shutdown", timeout=1)
    assert "Replayed 0 file(s)" in replay()
    again = _record(pg_cluster, database, browser.session_id)
    assert (len(again["events"]), again["items"], again["usages"]) == (len(once["events"]), 1 * 2, 1)


async def test_a_session_whose_server_died_stops_counting_against_the_limit_and_is_ended_after_the_grace(
    pg_cluster: ThrowawayPostgres, database: str, logins: dict[str, str], serve: Any, browsers: list[Browser]
) -> None:
    limits = {"VOICE_HEARTBEAT_SECONDS": "0.5", "VOICE_HEARTBEAT_GRACE_SECONDS": "2",
              "VOICE_MAX_CONCURRENT_SESSIONS_PER_USER": "1"}
    first_server = serve(**limits)
    lost = Browser(first_server.site, logins["alice"])
    browsers.append(lost)
    await lost.start()
    await asyncio.sleep(1.2)
    [(started, renewed)] = pg_cluster.query("SELECT started_at, heartbeat_at FROM voice_voicesession WHERE id = %s",
                                            lost.session_id, database=database)
    assert (renewed - started).total_seconds() >= 0.5  # the serving process renews it

    first_server.site.stop(signal.SIGKILL)  # the process dies: nobody ends its session
    await lost.close()
    second_server = serve(**limits)
    other = Browser(second_server.site, logins["bob"])  # another user's session keeps this process's writer busy
    browsers.append(other)
    await other.start()
    deadline = time.monotonic() + 10
    while True:  # no command run, nobody retrying: the serving process's own sweep ends it
        [(status, end_reason)] = pg_cluster.query("SELECT status, end_reason FROM voice_voicesession WHERE id = %s",
                                                  lost.session_id, database=database)
        if status == "ended":
            break
        assert time.monotonic() < deadline, f"the unserved session is still {status}"
        await asyncio.sleep(0.2)
    assert end_reason == "server_lost"
    again = Browser(second_server.site, logins["alice"])
    browsers.append(again)
    assert (await again.open())["type"] == "ag2.init"  # before: too_many_sessions until someone ran a command


async def test_pages_served_by_daphne_leave_no_database_connection_behind(
    pg_cluster: ThrowawayPostgres, database: str, logins: dict[str, str], serve: Any
) -> None:
    """Under ASGI each request runs in a thread of its own: a connection kept for reuse is never reused.

    With persistent connections (the old default, 60 s) every page left one open, and a busy minute ran
    PostgreSQL out of clients (500s for everyone)."""
    server = serve()

    def connections() -> int:
        rows = pg_cluster.query("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", database,
                                database="postgres")
        return int(rows[0][0])  # type: ignore[call-overload]

    async def page() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", int(server.site.url.rsplit(":", 1)[1]))
        writer.write(f"GET /voice/sessions/ HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: sessionid={logins['alice']}"
                     "\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        status = (await reader.readline()).decode()
        await reader.read()
        writer.close()
        assert " 200 " in status, status

    await page()
    settled = connections()
    for _ in range(40):
        await page()
    assert connections() <= settled + 2, "each page kept a database connection open"

