"""The real processes an end-to-end test talks to: the OpenAI emulator and daphne serving the site.

Both run as child processes on loopback ports, the way they run in production (`make run`): the
emulator is `python -m realtime_emulator`, the site is plain `daphne` on the real ASGI application (plus
static files). Every wait here is bounded; every process is stopped by its own pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
LOGS = ARTIFACTS / "logs"

T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], T], *, timeout: float, interval: float = 0.1, what: str) -> T:
    """Call `check` until it returns something truthy; fail with `what` and the last value after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except AssertionError as exc:  # a check may assert, to explain what it saw
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}")
        time.sleep(interval)


def http_json(method: str, url: str, body: Any = None, *, timeout: float = 5.0) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as err:
        raw, status = err.read(), err.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


class ChildProcess:
    """A child process with its output in test-artifacts/logs/<name>.log, stopped by pid."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name, self.argv, self.env = name, argv, env
        self.proc: subprocess.Popen[bytes] | None = None
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log_path = LOGS / f"{name}.log"
        self.log_path.write_text("")

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def wait_ready(self, url: str, timeout: float) -> None:
        def ready() -> bool:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited during start-up:\n{self.log_tail()}")
            try:
                status, _ = http_json("GET", url, timeout=1.0)
            except OSError:
                return False
            return status == 200

        try:
            wait_until(ready, timeout=timeout, interval=0.1, what=f"{self.name} at {url}")
        except AssertionError as exc:
            raise RuntimeError(f"{exc}\n{self.log_tail()}") from None


class Emulator(ChildProcess):
    """`python -m realtime_emulator` and a small client for its /_emulator test controls."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = f"http://127.0.0.1:{self.port}"
        self.api_base = f"{self.root}/v1"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        argv = [sys.executable, "-m", "realtime_emulator", "--host", "127.0.0.1", "--port", str(self.port),
                "--log-level", "INFO"]
        super().__init__("emulator", argv, env)

    def start(self) -> None:
        super().start()
        self.wait_ready(f"{self.root}/healthz", timeout=20)

    def _call(self, method: str, path: str, body: Any = None, expect: int | tuple[int, ...] = 200) -> Any:
        status, data = http_json(method, f"{self.root}{path}", body)
        expected = (expect,) if isinstance(expect, int) else expect
        assert status in expected, f"emulator {method} {path} answered {status}: {data}"
        return data

    def reset(self) -> None:
        self._call("POST", "/_emulator/reset")

    def use_script(self, name: str) -> None:
        self._call("POST", "/_emulator/script", {"script": name})

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        return self._call("POST", "/_emulator/faults", faults)

    def calls(self) -> list[dict[str, Any]]:
        return self._call("GET", "/_emulator/calls")["calls"]

    def call(self, call_id: str) -> dict[str, Any]:
        return self._call("GET", f"/_emulator/calls/{call_id}")

    def active_calls(self) -> list[dict[str, Any]]:
        return [c for c in self.calls() if c["status"] == "active"]

    def set_azure(self, **body: Any) -> dict[str, Any]:
        """The emulated Azure resource: ``webrtc`` (its region offers realtime calls), extra ``deployments``."""
        return self._call("POST", "/_emulator/azure", body)

    def drop_sideband(self, call_id: str, **body: Any) -> dict[str, Any]:
        """Cut the call's sideband sockets while the call goes on (`refuse`: refuse that many reconnections)."""
        return self._call("POST", f"/_emulator/calls/{call_id}/sideband/drop", body)

    def try_say(self, call_id: str, text: str) -> str | None:
        """A user turn without microphone; None while the call is busy (a turn or reply in progress)."""
        data = self._call("POST", f"/_emulator/calls/{call_id}/turn", {"text": text}, (202, 409))
        return data.get("item_id") if isinstance(data, dict) else None


class Site(ChildProcess):
    """Daphne serving the site on one fixed loopback port, so it can be restarted under a live page."""

    def __init__(self, *, emulator: Emulator, database_env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items()
               if k not in {"OPENAI_API_KEY", "OPENAI_BASE_URL", "DATABASE_URL", "SQLITE_PATH",
                             "DJANGO_ALLOW_ASYNC_UNSAFE"}}
        env.update({
            "DJANGO_SETTINGS_MODULE": "realtime_site.settings",
            "DJANGO_DEBUG": "1",
            "DJANGO_LOG_LEVEL": "INFO",
            "REALTIME_EMULATOR_URL": emulator.api_base,
            "PYTHONUNBUFFERED": "1",
            # Every ag2.* frame and dashboard message checked against its schema (voice/schemas.py).
            "VOICE_VALIDATE_OUTGOING": "1",
            # Never the project's own spool: daphne replays it at start-up, into whatever database it has.
            "VOICE_SPOOL_DIR": str(ARTIFACTS / "spool"),
            "VOICE_RECORDING_DIR": str(ARTIFACTS / "recordings"),
            **database_env,
        })
        argv = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port),
                "--application-close-timeout", "5", "tests.e2e.asgi_static:application"]
        super().__init__("daphne", argv, env)

    def start(self) -> None:
        self.started_at = datetime.now(UTC)
        super().start()
        self.wait_ready(f"{self.url}/healthz", timeout=30)

    def restart(self) -> None:
        """Stop daphne (SIGTERM, as a deploy or crash-restart does) and start it again on the same port."""
        self.stop()
        self.start()
