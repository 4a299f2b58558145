"""What every benchmark needs: real services, child processes, logged-in users, websocket clients,
percentiles, profiles and result files.

Everything runs on loopback. The benchmark database (`voice_bench`) is dropped and recreated by
`prepare_database()`; Redis is used through one dedicated DB number (`/14`), and only that DB is ever
flushed. Child processes are started through `Stack`, which stops each by its own pid on exit, whatever
happened in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
STATIC_ROOT = RESULTS / "static"
LOGS = RESULTS / "logs"
VENV_BIN = Path(sys.executable).parent

PG_SERVER_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres:postgres@127.0.0.1:5432")
BENCH_DB = os.environ.get("BENCH_DB", "voice_bench")
DATABASE_URL = f"{PG_SERVER_URL.rstrip('/')}/{BENCH_DB}"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
PASSWORD = "bench-pass-2026"

T = TypeVar("T")

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


# --- small utilities ----------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], T], *, timeout: float, interval: float = 0.1, what: str) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        with contextlib.suppress(OSError):
            last = check()
            if last:
                return last
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")
        time.sleep(interval)


def http_status(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url), timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def percentile(values: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Sequence[float], digits: int = 3) -> dict[str, float | int]:
    """n, mean, p50, p90, p99 and max of `values` (typically milliseconds)."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "mean": round(statistics.fmean(values), digits),
        "p50": round(percentile(values, 50), digits),
        "p90": round(percentile(values, 90), digits),
        "p99": round(percentile(values, 99), digits),
        "max": round(max(values), digits),
    }


def ratio(a: float, b: float, digits: int = 3) -> float | None:
    return round(a / b, digits) if b else None


def machine() -> dict[str, Any]:
    """Where a figure came from: enough to tell two machines (or two noisy moments) apart."""
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    """benchmarks/results/<name>.json (latest) plus a timestamped copy, so earlier runs are kept."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    document = {"benchmark": name, "finished_at": stamp, "machine": machine(), **data}
    text = json.dumps(document, indent=2, default=str)
    latest = RESULTS / f"{name}.json"
    latest.write_text(text)
    (RESULTS / "history").mkdir(exist_ok=True)
    (RESULTS / "history" / f"{name}-{stamp}.json").write_text(text)
    log(f"wrote {latest.relative_to(REPO)}")
    return latest


# --- real services --------------------------------------------------------------------------------------


def prepare_database() -> None:
    """Drop and recreate the benchmark database, then migrate it. Never touches any other database."""
    import psycopg

    if BENCH_DB in {"test", "postgres", "template0", "template1"} or not re.fullmatch(r"[a-z_][a-z0-9_]*", BENCH_DB):
        raise SystemExit(f"refusing to recreate database {BENCH_DB!r}; set BENCH_DB to a benchmark-only name")
    with psycopg.connect(f"{PG_SERVER_URL.rstrip('/')}/postgres", autocommit=True, connect_timeout=5) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> "
                     "pg_backend_pid()", (BENCH_DB,))
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}"')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=REPO, env=server_env(""), capture_output=True, text=True, timeout=180, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"migrate failed:\n{result.stdout}\n{result.stderr}")


def flush_redis() -> None:
    """Empty the benchmark's own Redis DB (and only it)."""
    import redis

    db = urlparse(REDIS_URL).path.lstrip("/") or "0"
    if db in {"", "0"}:
        raise SystemExit(f"refusing to flush Redis DB {db!r}; point BENCH_REDIS_URL at a dedicated DB number")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.flushdb()
    finally:
        client.close()


def server_env(emulator_api: str, **overrides: str) -> dict[str, str]:
    """The environment every benchmark daphne (and this process's Django) runs with: production-like
    settings (DEBUG off, PostgreSQL, Redis), loopback hosts, and the per-user limits lifted so that one
    machine can play many browsers."""
    env = {k: v for k, v in os.environ.items()
           if k not in {"OPENAI_API_KEY", "OPENAI_BASE_URL", "SQLITE_PATH", "DJANGO_ALLOW_ASYNC_UNSAFE"}
           and not k.lower().endswith("_proxy")}
    env.update({
        "DJANGO_SETTINGS_MODULE": "realtime_site.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "benchmark-only-secret-key-" + "x" * 40,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DJANGO_LOG_LEVEL": "INFO",
        # DEBUG off serves collectstatic's manifest (as production does); the benchmarks keep their own copy.
        "DJANGO_STATIC_ROOT": str(STATIC_ROOT),
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "VOICE_MAX_MESSAGES_PER_SECOND": "1000000",
        "VOICE_MAX_CONCURRENT_SESSIONS_PER_USER": "100000",
        "VOICE_MAX_SESSION_STARTS_PER_MINUTE": "100000",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    })
    if emulator_api:
        env["REALTIME_EMULATOR_URL"] = emulator_api
    env.update(overrides)
    return env


_django_ready = False


def setup_django() -> None:
    """Django in this process, on the benchmark database and Redis, for users, cookies and row counts."""
    global _django_ready
    if _django_ready:
        return
    os.environ.update(server_env("http://127.0.0.1:9/v1"))
    collect_static()
    import django

    django.setup()
    _django_ready = True


def collect_static() -> None:
    """collectstatic into the benchmarks' STATIC_ROOT once per checkout (pages with DEBUG off need it)."""
    if (STATIC_ROOT / "staticfiles.json").exists():
        return
    result = subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=REPO,
                            env=server_env(""), capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"collectstatic failed:\n{result.stdout}\n{result.stderr}")


def use_pubsub_layer() -> None:
    """Trial `pubsub`: swap the Redis layer for channels_redis' pub/sub layer, before any layer is built."""
    from django.conf import settings

    layer = settings.CHANNEL_LAYERS["default"]
    if layer["BACKEND"] == "channels_redis.core.RedisChannelLayer":
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
                                               "CONFIG": {"hosts": layer["CONFIG"]["hosts"]}}}


def create_users(prefix: str, count: int, *, staff: bool = False) -> list[str]:
    """`count` users named <prefix><i>, each logged in once; returns their Cookie header values."""
    setup_django()
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore

    password = make_password(PASSWORD)  # hashed once: the benchmark never logs in by password
    cookies = []
    for i in range(count):
        user, _ = User.objects.get_or_create(username=f"{prefix}{i}",
                                             defaults={"password": password, "is_staff": staff})
        store = SessionStore()
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        cookies.append(f"sessionid={store.session_key}")
    return cookies


def close_db_connections() -> None:
    if _django_ready:
        from django.db import connections

        connections.close_all()


# --- child processes --------------------------------------------------------------------------------------


class Child:
    """One child process, output in benchmarks/results/logs/<name>.log, stopped by its own pid."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.proc: subprocess.Popen[bytes] | None = None
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log_path = LOGS / f"{name}.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Child:
        with self.log_path.open("wb") as out:
            out.write(f"=== {' '.join(self.argv)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(self.argv, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def log_text(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def wait_http(self, url: str, timeout: float) -> None:
        def ready() -> bool:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited during start-up:\n{self.log_text()[-3000:]}")
            return http_status(url, timeout=1.0) == 200

        wait_until(ready, timeout=timeout, what=f"{self.name} at {url}")


class Emulator(Child):
    def __init__(self, name: str = "emulator", *options: str) -> None:
        """`options`: more of the emulator's command-line options (e.g. "--script", "stream")."""
        self.port = free_port()
        self.root = f"http://127.0.0.1:{self.port}"
        self.api = f"{self.root}/v1"
        argv = [sys.executable, "-m", "realtime_emulator", "--host", "127.0.0.1", "--port", str(self.port),
                "--log-level", "WARNING", *options]
        super().__init__(name, argv, {**server_env(""), "PYTHONUNBUFFERED": "1"})

    def start(self) -> Emulator:
        super().start()
        self.wait_http(f"{self.root}/healthz", timeout=30)
        return self


class Daphne(Child):
    """Real daphne on benchmarks.echo_asgi (the site + /ws/echo/), on a loopback port."""

    def __init__(self, name: str, emulator: Emulator | None, *, module: str = "", **env: str) -> None:
        if not module:
            module = "benchmarks.trial_asgi:application" if ACTIVE_TRIAL else "benchmarks.echo_asgi:application"
            if ACTIVE_TRIAL:
                env = {**env, "BENCH_TRIALS": ACTIVE_TRIAL}
        self.port = free_port()
        self.http = f"http://127.0.0.1:{self.port}"
        self.ws = f"ws://127.0.0.1:{self.port}"
        self.origin = f"http://127.0.0.1:{self.port}"
        # With DEBUG off, websockets are accepted only from trusted origins (realtime_site/origins.py):
        # the clients here are pages of this server, on its random port.
        env = {"DJANGO_CSRF_TRUSTED_ORIGINS": self.origin, **EXTRA_SERVER_ENV, **env}
        argv = [str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(self.port), "--application-close-timeout",
                "10", module]
        super().__init__(name, argv, server_env(emulator.api if emulator else "", **env))

    def start(self) -> Daphne:
        collect_static()
        super().start()
        self.wait_http(f"{self.http}/healthz", timeout=60)
        return self

    def rss_bytes(self) -> int:
        import psutil

        return int(psutil.Process(self.pid).memory_info().rss)

    def cpu_seconds(self) -> float:
        import psutil

        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)

    def warnings(self, pattern: str) -> list[str]:
        return [line for line in self.log_text().splitlines() if pattern in line]


class Stack(contextlib.ExitStack):
    """Starts children and stops every one of them (by pid, newest first) on exit, even on failure."""

    def start(self, child: T) -> T:
        self.callback(child.stop)  # type: ignore[attr-defined]
        child.start()  # type: ignore[attr-defined]
        return child


def cpu_sampler(pids: dict[str, int]) -> Callable[[], dict[str, Any]]:
    """Returns a function giving each process's CPU% since the previous call (100 = one core), with the
    user/system split (a high system share means many small syscalls: socket reads and writes)."""
    import psutil

    procs = {name: psutil.Process(pid) for name, pid in pids.items()}

    def times() -> dict[str, tuple[float, float]]:
        out = {}
        for name, proc in procs.items():
            try:
                t = proc.cpu_times()
                out[name] = (t.user, t.system)
            except psutil.Error:
                out[name] = (math.nan, math.nan)
        return out

    state = {"at": time.monotonic(), "times": times()}

    def sample() -> dict[str, Any]:
        now, current = time.monotonic(), times()
        elapsed = max(1e-6, now - state["at"])
        out: dict[str, Any] = {}
        for name, (user, system) in current.items():
            user0, system0 = state["times"][name]
            out[name] = round(100 * ((user - user0) + (system - system0)) / elapsed, 1)
            out[f"{name}_sys"] = round(100 * (system - system0) / elapsed, 1)
        state["at"], state["times"] = now, current
        return out

    return sample


# --- websocket clients ------------------------------------------------------------------------------------


async def ws_connect(server: Daphne, path: str, cookie: str | None, **kwargs: Any) -> Any:
    """A browser-like websocket: same-origin Origin header, the session cookie, no proxy, no compression."""
    from websockets.asyncio.client import connect

    headers = {"Cookie": cookie} if cookie else {}
    options: dict[str, Any] = {"origin": server.origin, "additional_headers": headers, "compression": None,
                               "proxy": None, "ping_interval": None, "open_timeout": 30, "close_timeout": 10,
                               "max_size": 4 * 1024 * 1024, "max_queue": None}
    options.update(kwargs)
    return await connect(f"{server.ws}{path}", **options)


async def open_voice_session(server: Daphne, cookie: str, call_id: str, timeout: float = 60) -> tuple[Any, str]:
    """A browser starting a call: /ws/voice/, wait for `ag2.init`, answer `ag2.ready`. Returns (ws, session id)."""
    ws = await ws_connect(server, "/ws/voice/", cookie)
    init = await until_type(ws, "ag2.init", timeout)
    await ws.send(json.dumps({"type": "ag2.ready", "call_id": call_id}))
    return ws, init["session_id"]


async def recv_json(ws: Any, timeout: float) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        return json.loads(await ws.recv())


async def until_type(ws: Any, kind: str, timeout: float) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            if frame.get("type") == kind:
                return frame
            if frame.get("type") == "ag2.error":
                raise RuntimeError(f"server refused: {frame}")


async def gather_limited(coros: Sequence[Any], limit: int) -> list[Any]:
    """Run coroutines with at most `limit` at a time; results in order; the first failure propagates."""
    semaphore = asyncio.Semaphore(limit)

    async def run(coro: Any) -> Any:
        async with semaphore:
            return await coro

    return await asyncio.gather(*(run(c) for c in coros))


# --- profiles -----------------------------------------------------------------------------------------------


class Profile:
    """py-spy attached to a process until `stop()` (at most `seconds`). By default py-spy pauses the target
    for each sample (needs root or ptrace rights) because non-blocking sampling of a busy asyncio process
    yields many torn, partial stacks; idle threads are left out, so the profile is CPU, not waiting. Set
    BENCH_PYSPY_NONBLOCKING=1 to never pause the target. Writes raw collapsed stacks (flamegraph.pl /
    speedscope input) that `top_frames` summarises."""

    def __init__(self, name: str, pid: int, seconds: float, *, rate: int = 100) -> None:
        self.name, self.pid, self.seconds, self.rate = name, pid, seconds, rate
        self.raw = RESULTS / f"{name}.collapsed.txt"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Profile:
        RESULTS.mkdir(parents=True, exist_ok=True)
        mode = ["--nonblocking"] if os.environ.get("BENCH_PYSPY_NONBLOCKING") else []
        argv = [str(VENV_BIN / "py-spy"), "record", *mode, "--pid", str(self.pid),
                "--duration", str(max(1, int(self.seconds))), "--rate", str(self.rate), "--format", "raw",
                "--output", str(self.raw)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def stop(self) -> None:
        """SIGINT ends a py-spy recording early and makes it write its output."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def top(self, count: int = 25) -> dict[str, Any]:
        """The hottest frames of the raw profile, by self samples and by inclusive samples."""
        return top_frames(self.raw, count)


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"; keep function + short file:line.
    match = re.match(r"(.*) \((.*?):(\d+)\)$", frame.strip())
    if not match:
        return frame.strip()
    func, path, line = match.groups()
    short = path.split("site-packages/")[-1].replace(str(REPO) + "/", "")
    return f"{func} ({short}:{line})"


def _frame_func(frame: str) -> str:
    # Inclusive time is per function (file + name), not per line: one entry per function per stack.
    match = re.match(r"(.*) \((.*?):(\d+)\)$", frame.strip())
    if not match:
        return frame.strip()
    func, path, _ = match.groups()
    return f"{func} ({path.split('site-packages/')[-1].replace(str(REPO) + '/', '')})"


def top_frames(raw: Path, count: int = 25) -> dict[str, Any]:
    if not raw.exists():
        return {"error": f"no profile at {raw}"}
    self_samples: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, samples = line.rpartition(" ")
        if not stack or not samples.isdigit():
            continue
        n = int(samples)
        total += n
        frames = [f for f in stack.split(";") if f and not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        self_samples[_frame_name(frames[-1])] += n
        for func in set(map(_frame_func, frames)):
            inclusive[func] += n

    def share(counter: Counter[str]) -> list[dict[str, Any]]:
        return [{"frame": frame, "samples": n, "percent": round(100.0 * n / total, 1)}
                for frame, n in counter.most_common(count)]

    return {"total_samples": total, "self": share(self_samples), "inclusive": share(inclusive)}


def write_top(name: str, top: dict[str, Any]) -> Path:
    path = RESULTS / f"{name}.top.txt"
    lines = [f"total samples: {top.get('total_samples')}", "", "self (leaf) samples:"]
    lines += [f"  {row['percent']:5.1f}%  {row['frame']}" for row in top.get("self", [])]
    lines += ["", "inclusive samples (per function):"]
    lines += [f"  {row['percent']:5.1f}%  {row['frame']}" for row in top.get("inclusive", [])]
    path.write_text("\n".join(lines) + "\n")
    return path


# --- command line ---------------------------------------------------------------------------------------------


def common_args(description: str) -> Any:
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="the short version `make bench` runs")
    parser.add_argument("--profile", action="store_true", help="attach py-spy to the server during the measurement")
    parser.add_argument("--trial", default="",
                        help="run the servers with proposed fixes patched in (benchmarks/trial_asgi.py), e.g. "
                             "dispatch,writer_pool; results go to <name>-trial-<trials>.json")
    parser.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the benchmark's daphne processes (e.g. "
                             "VOICE_RECORDER_FLUSH_SECONDS=1); the result name records it")
    parser.add_argument("--no-prepare", action="store_true",
                        help="reuse the benchmark database as it is (run_all prepares it once)")
    return parser


ACTIVE_TRIAL = ""
EXTRA_SERVER_ENV: dict[str, str] = {}


def result_name(base: str, args: Any) -> str:
    """Profiled and trial runs never overwrite the figure of record."""
    name = base
    if getattr(args, "trial", ""):
        name += "-trial-" + "+".join(sorted(t.strip() for t in args.trial.split(",") if t.strip()))
    for pair in getattr(args, "server_env", []) or []:
        name += "-" + re.sub(r"[^A-Za-z0-9_.=]+", "_", pair).replace("=", "_")
    if getattr(args, "profile", False):
        name += "-profiled"
    return name


LIVE_INDEX = "bench_session_user_live"


def set_live_index(enabled: bool) -> None:
    """Trial `live_index`: a partial index for the per-user live-session count that start_session runs
    (today it walks all of the user's sessions through the (user, -started_at) index). Benchmark DB only."""
    import psycopg

    with psycopg.connect(DATABASE_URL, autocommit=True, connect_timeout=5) as conn:
        if enabled:
            conn.execute(f"CREATE INDEX IF NOT EXISTS {LIVE_INDEX} ON voice_voicesession (user_id) "
                         "WHERE status IN ('connecting', 'active')")
        else:
            conn.execute(f"DROP INDEX IF EXISTS {LIVE_INDEX}")


def prepare(args: Any) -> None:
    global ACTIVE_TRIAL
    trials = {t.strip() for t in getattr(args, "trial", "").split(",") if t.strip()}
    # live_index acts on the database, not in the server process.
    ACTIVE_TRIAL = ",".join(sorted(trials - {"live_index"}))
    for pair in getattr(args, "server_env", []) or []:
        key, _, value = pair.partition("=")
        EXTRA_SERVER_ENV[key] = value
    if not getattr(args, "no_prepare", False):
        log(f"recreating database {BENCH_DB} and flushing {REDIS_URL}")
        prepare_database()
    flush_redis()
    set_live_index("live_index" in trials)


def use_call_mode(mode: str) -> int:
    """Put every voice configuration in `mode` ("relay" or "server") and return how many there are.

    A benchmark measures one flow, so it says which: the default configuration's mode is the product's
    choice (server since migration 0009) and changes with it, and run_all runs the benchmarks one after
    another on one database, so each sets the mode it measures before its servers start."""
    setup_django()
    from voice.models import VoiceConfig

    if mode not in VoiceConfig.CallMode.values:
        raise ValueError(f"unknown call mode {mode!r}")
    configs = VoiceConfig.objects.all()
    if not configs.filter(is_active=True, is_default=True).exists():
        raise RuntimeError("no active default VoiceConfig (did migrate run?)")
    configs.update(call_mode=mode)
    assert VoiceConfig.objects.for_slug_or_default(None).call_mode == mode
    return configs.count()


def run(args: Any, main_async: Callable[[Any], Any], *, call_mode: str = "") -> dict[str, Any]:
    """What every script's main does: prepare the services, put the configurations in the call mode the
    benchmark measures, run its coroutine with Django set up in this process (users, cookies, row counts),
    and close this process's database connections whatever happens."""
    prepare(args)
    setup_django()
    if call_mode:
        log(f"voice configurations set to {call_mode} mode ({use_call_mode(call_mode)} configs)")
    try:
        return asyncio.run(main_async(args))
    finally:
        close_db_connections()


def chunks(seq: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]
