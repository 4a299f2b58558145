"""End-to-end harness: real daphne, the real emulator, real Chromium with a fake microphone.

How the pieces share one database:

* pytest-django creates the test database as usual. On SQLite it would live in memory, which another
  process cannot open, so when e2e tests are selected the hook below gives it a file instead
  (``DATABASES["default"]["TEST"]["NAME"]``, set before any test creates the database). On PostgreSQL
  the test database (``test_<name>``) is already shared.
* daphne runs in a child process pointed at that same database (``SQLITE_PATH`` or ``DATABASE_URL``),
  so what the server writes is what the tests read. Tests use ``transaction=True`` (nothing is hidden
  in an open transaction); the seeded default config and prices are written back after the flush
  between tests (``_seeded`` in tests/conftest.py).
* the emulator runs in its own child process (``python -m realtime_emulator``); daphne finds it through
  ``REALTIME_EMULATOR_URL``, the tests drive it through its ``/_emulator`` controls.

Chromium, Playwright or the emulator's dependencies missing: the tests skip with the reason on a
developer's machine and fail when ``CI`` is set.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse, urlunparse

import pytest

from tests.e2e.harness import CALL_FAILED, DEFAULT_TIMEOUT_MS, Harness
from tests.e2e.servers import ARTIFACTS, Emulator, Site, wait_until

IN_CI = bool(os.environ.get("CI"))
CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]
ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"


# --- the shared database ------------------------------------------------------------------------------


def pytest_collection_finish(session: pytest.Session) -> None:
    """Give an in-memory SQLite test database a file when e2e tests will run (daphne must open it)."""
    if not any(item.get_closest_marker("e2e") for item in session.items):
        return
    from django.db import connections

    settings_dict = connections["default"].settings_dict
    if settings_dict["ENGINE"] != "django.db.backends.sqlite3":
        return
    test = settings_dict.setdefault("TEST", {})
    name = test.get("NAME")
    if name and name != ":memory:" and "mode=memory" not in str(name):
        return
    folder = tempfile.mkdtemp(prefix="voice-e2e-db-")
    atexit.register(shutil.rmtree, folder, True)
    test["NAME"] = os.path.join(folder, "test.sqlite3")


def _database_env() -> dict[str, str]:
    """Environment that points a child process at the test database pytest-django created."""
    from django.db import connection

    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        name = str(settings_dict["NAME"])
        if name == ":memory:" or "mode=memory" in name:
            raise RuntimeError("the SQLite test database is in memory; the e2e conftest should have given it a file")
        return {"SQLITE_PATH": name}
    if connection.vendor == "postgresql":
        configured = urlparse(os.environ["DATABASE_URL"])
        return {"DATABASE_URL": urlunparse(configured._replace(path="/" + settings_dict["NAME"]))}
    raise RuntimeError(f"e2e tests support SQLite and PostgreSQL, not {connection.vendor}")


# --- requirements ---------------------------------------------------------------------------------------


def _missing_requirement() -> str | None:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"Chromium is not installed at {CHROMIUM} (apt-get install chromium, or set E2E_CHROMIUM)"
    for module, extra in (("playwright", "e2e"), ("aiortc", "emulator"), ("aiohttp", "emulator")):
        if importlib.util.find_spec(module) is None:
            return f"the Python package {module} is not installed (pip install -e '.[{extra}]')"
    return None


@pytest.fixture(scope="package")
def e2e_ready() -> None:
    reason = _missing_requirement()
    if reason is None:
        # Screenshots and logs of the last run's failures would only mislead.
        shutil.rmtree(ARTIFACTS / "failures", ignore_errors=True)
        return
    message = f"end-to-end tests need a real browser: {reason}"
    if IN_CI:
        pytest.fail(f"CI: {message}", pytrace=False)
    pytest.skip(message)


# --- processes and the browser ----------------------------------------------------------------------------


@pytest.fixture(scope="package")
def emulator_server(e2e_ready: None) -> Iterator[Emulator]:
    emulator = Emulator()
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="package")
def site(emulator_server: Emulator, django_db_setup: None) -> Iterator[Site]:
    server = Site(emulator=emulator_server, database_env=_database_env())
    server.start()
    try:
        yield server
    finally:
        # Before pytest-django drops the test database: PostgreSQL refuses to drop one in use.
        server.stop()


@pytest.fixture(scope="package")
def browser(e2e_ready: None) -> Iterator[Any]:
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=DEFAULT_TIMEOUT_MS)

    # Playwright's sync API keeps its event loop "running" on the test's thread (in a greenlet), so
    # Django would take every ORM call in a test for one made from async code. The tests are plain
    # synchronous code; say so for as long as Playwright runs (Django documents this switch for
    # exactly this case). daphne's environment never gets it.
    previous = os.environ.get(ASYNC_UNSAFE)
    os.environ[ASYNC_UNSAFE] = "true"
    # Starting Playwright leaves this thread running in another contextvars context, and Django keeps
    # its connection objects in a context-local: the tests would get fresh connection objects (a second
    # set of connections for PostgreSQL to refuse the final DROP DATABASE over). Keep the same objects.
    from django.db import connections

    originals = [(alias, connections[alias]) for alias in connections]
    playwright = sync_playwright().start()
    for alias, connection in originals:
        connections[alias] = connection
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()
        if previous is None:
            os.environ.pop(ASYNC_UNSAFE, None)
        else:
            os.environ[ASYNC_UNSAFE] = previous


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
    return report


@pytest.fixture
def e2e(site: Site, emulator_server: Emulator, browser: Any, request: pytest.FixtureRequest) -> Iterator[Harness]:
    if not site.alive():  # an earlier test stopped it and failed before starting it again
        site.start()
    emulator_server.reset()
    harness = Harness(site, emulator_server, browser, request.node)
    try:
        yield harness
    finally:
        harness.close()
        _let_the_server_finish(site)
        emulator_server.reset()


def _let_the_server_finish(site: Site) -> None:
    """Closing the pages ends their sessions; wait for the server to record that before the flush.

    Sessions started before the site's last (re)start are left alone: no process serves them any more.
    """
    from voice.models import VoiceSession

    # A session of the current process cannot have started before the process did.
    live = VoiceSession.objects.live().filter(started_at__gte=site.started_at)
    with contextlib.suppress(AssertionError):
        wait_until(lambda: not live.exists(), timeout=10, what="the server to end every session")
