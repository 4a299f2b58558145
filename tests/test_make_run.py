"""`make run` as a newcomer uses it: it serves, it stops on Ctrl-C and on SIGTERM with everything it
started, and it restarts the local emulator when that dies."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status < 500
    except OSError as exc:
        # 4xx still means something answers (the emulator's base path says 404)
        return getattr(exc, "code", None) is not None


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _pids_with(marker: str) -> list[int]:
    """Processes whose command line holds `marker` (a port number unique to this test)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and "manage.py" in cmdline:
            found.append(int(entry.name))
    return found


class Site:
    def __init__(self, tmp_path: Path) -> None:
        self.port, self.emulator_port = _free_port(), _free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY")}
        env.update(PORT=str(self.port), EMULATOR_PORT=str(self.emulator_port),
                   SQLITE_PATH=str(tmp_path / "run.sqlite3"), DJANGO_DEBUG="1", EMULATOR_MAX_RESTARTS="2")
        self.log = (tmp_path / "run.log").open("wb")
        # Its own process group, like a command started in a terminal (Ctrl-C signals that group).
        # `-o .venv/.installed`: the test runs what is installed; it must never reinstall the venv under
        # the suite (`make test` has just checked it is current).
        self.proc = subprocess.Popen(["make", "--no-print-directory", "-o", ".venv/.installed", "run"], cwd=REPO,
                                     env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.log_path = tmp_path / "run.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/accounts/login/"

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}/"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def started_processes(self) -> list[int]:
        return _pids_with(f":{self.port}") + _pids_with(f"--port {self.emulator_port}")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    running = Site(tmp_path)
    try:
        _wait(lambda: _answers(running.url), 90, "the site to answer")
        _wait(lambda: _answers(running.emulator_url), 30, "the emulator to answer")
        yield running
    finally:
        if running.proc.poll() is None:
            running.proc.kill()
        for pid in running.started_processes():  # only what this test started (its own ports)
            os.kill(pid, signal.SIGKILL)
        running.log.close()


def test_sigterm_to_make_run_stops_everything_it_started(site: Site) -> None:
    assert site.started_processes(), "the server and emulator should be running"
    site.proc.send_signal(signal.SIGTERM)  # `kill <pid of make>`: make passes SIGTERM on to its recipe
    site.proc.wait(timeout=20)
    _wait(lambda: not site.started_processes(), 15, "every started process to stop")
    assert not _answers(site.url)
    assert not _answers(site.emulator_url)


def test_ctrl_c_stops_everything_it_started(site: Site) -> None:
    assert site.started_processes()
    os.killpg(site.proc.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
    site.proc.wait(timeout=20)
    _wait(lambda: not site.started_processes(), 15, "every started process to stop")
    assert not _answers(site.url)
    assert not _answers(site.emulator_url)


def test_the_emulator_is_restarted_when_it_dies(site: Site) -> None:
    emulators = _pids_with(f"--port {site.emulator_port}")
    assert emulators
    for pid in emulators:
        os.kill(pid, signal.SIGKILL)
    _wait(lambda: "restarting it" in site.output(), 10, "the restart message")
    _wait(lambda: _answers(site.emulator_url), 30, "the emulator to answer again")
    assert _answers(site.url)


def test_an_emulator_that_keeps_dying_stops_the_site_with_a_clear_message(site: Site) -> None:
    for _ in range(4):
        _wait(lambda: bool(_pids_with(f"--port {site.emulator_port}")) or site.proc.poll() is not None, 30,
              "an emulator process")
        if site.proc.poll() is not None:
            break
        for pid in _pids_with(f"--port {site.emulator_port}"):
            os.kill(pid, signal.SIGKILL)
        time.sleep(1.5)
    site.proc.wait(timeout=30)
    assert "keeps stopping" in site.output()
    _wait(lambda: not site.started_processes(), 15, "every started process to stop")


def test_a_port_in_use_is_explained(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**os.environ, "PORT": str(port), "SQLITE_PATH": str(tmp_path / "x.sqlite3")}
        env.pop("OPENAI_API_KEY", None)
        result = subprocess.run(["bash", "scripts/run.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                                timeout=30, check=False)
    assert result.returncode != 0
    assert f"Port {port} is already in use" in result.stdout
