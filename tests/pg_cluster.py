"""A throwaway PostgreSQL cluster that a test may stop and start: never the shared one.

`initdb` into a temporary directory (as user postgres when the tests run as root: PostgreSQL refuses
to run as root), trust authentication, a free loopback port, its socket in the same directory. Stopping
and starting go through `pg_ctl -D <that directory>`, which signals the one postmaster whose pid is
in that directory's postmaster.pid: nothing else is ever stopped. Durability settings are off: these
tests are about a server that goes away, not about its disk.

Server binaries are found in PG_BIN, on PATH, or where Debian puts them (/usr/lib/postgresql/*/bin).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

RUN_AS = "postgres"


def find_binaries() -> Path | None:
    """The directory holding initdb and pg_ctl, or None."""
    candidates = [os.environ.get("PG_BIN", "")]
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: [int(x) for x in
                                                                                 Path(p).parent.name.split(".")
                                                                                 if x.isdigit()], reverse=True)
    for candidate in candidates:
        if candidate and all(os.access(Path(candidate) / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThrowawayPostgres:
    """One private PostgreSQL server: `start()`, `stop()` (as an outage would), `url(db)`, `destroy()`."""

    def __init__(self, binaries: Path) -> None:
        self.binaries = binaries
        self.root = Path(tempfile.mkdtemp(prefix="voice-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            user = pwd.getpwnam(RUN_AS)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync",
                  "--no-instructions")

    def _run(self, tool: str, *args: str, timeout: float = 60) -> str:
        argv = [str(self.binaries / tool), *args]
        if self._as_postgres:
            argv = ["runuser", "-u", RUN_AS, "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr or result.stdout}\n"
                               f"{self.log_tail()}")
        return result.stdout

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=50")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "-t", "30", "start")

    def stop(self) -> None:
        """Stop the server as an outage would: every connection is cut (fast shutdown)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")

    @property
    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(database).replace("postgres://", "postgresql://"), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def query(self, sql: str, *params: object, database: str) -> list[tuple[object, ...]]:
        import psycopg

        with psycopg.connect(self.url(database).replace("postgres://", "postgresql://")) as conn:
            return list(conn.execute(sql, params).fetchall())  # type: ignore[arg-type]

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            if self.running:
                self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
