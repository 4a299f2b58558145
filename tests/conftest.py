"""Shared fixtures: named users (an owner, a colleague, a stranger, staff, an operator, an admin)
and guards for the real services some tests need.

A test that needs Redis or PostgreSQL skips with a clear reason on a developer's machine that lacks
them, and fails when CI is set: CI must never count a missing service as a pass.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlparse

import pytest
from django.contrib.auth.models import Group, User

IN_CI = bool(os.environ.get("CI"))
REDIS_TEST_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/15")


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, url: str, default_port: int) -> None:
    if _reachable(url, default_port):
        return
    message = f"{name} is not reachable at {url}; start it (see README, 'Running the tests')"
    if IN_CI:
        pytest.fail(f"CI: {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session", autouse=True)
def _spool_outside_the_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Rows a test leaves unwritten are spooled at exit (voice.recording); never into the project's own
    spool directory, which `make run` would replay into the development database."""
    from django.conf import settings

    settings.VOICE_SPOOL_DIR = str(tmp_path_factory.mktemp("spool"))  # kept until the very end, on purpose
    yield
    # Recorders some tests leave open on their (closed) loops would be spooled at exit, after pytest has
    # closed the streams logging writes to: tests of the exit hook call it themselves.
    from voice import recording

    recording._writers.clear()


@pytest.fixture(autouse=True)
def spool_dir(settings: Any, tmp_path: Any) -> Any:
    """Each test spools into (and replays from) its own directory."""
    settings.VOICE_SPOOL_DIR = str(tmp_path / "spool")
    return tmp_path / "spool"


@pytest.fixture(autouse=True)
def outgoing_frames_checked(settings: Any) -> Iterator[None]:
    """Every ag2.* frame and dashboard message a test makes the server send must match its schema.

    The send points swallow errors (a socket gone must not end a session), so the problems they met are
    collected in voice.schemas and fail the test here."""
    from voice import schemas

    settings.VOICE_VALIDATE_OUTGOING = True
    schemas.outgoing_problems.clear()
    yield
    problems = list(schemas.outgoing_problems)
    schemas.outgoing_problems.clear()
    assert not problems, "Outgoing frames that do not match their schemas:\n" + "\n".join(problems)


@pytest.fixture(autouse=True)
def recordings_dir(settings: Any, tmp_path: Any) -> Any:
    """Each test stores call recordings in its own directory, never in the project's."""
    settings.STORAGES = {**settings.STORAGES, "recordings": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path / "rec")}}}
    return tmp_path / "rec"


@pytest.fixture
def redis_url() -> str:
    require_service("Redis", REDIS_TEST_URL, 6379)
    return REDIS_TEST_URL


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    """A private PostgreSQL server (tests/pg_cluster.py) that tests may stop and start, never the shared one.

    Its server binaries missing: the tests skip on a developer's machine and fail when CI is set."""
    from tests.pg_cluster import ThrowawayPostgres, find_binaries

    binaries = find_binaries()
    if binaries is None:
        message = "PostgreSQL server binaries (initdb, pg_ctl) not found; install postgresql or set PG_BIN"
        if IN_CI:
            pytest.fail(f"CI: {message}", pytrace=False)
        pytest.skip(message)
    cluster = ThrowawayPostgres(binaries)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def relay_mode(db: None) -> None:
    """The seed's relay flow (docs/protocol.md section 2): every config starts relay-mode sessions.

    Configs are server-controlled by default; tests of the relay flow ask for this."""
    from voice.models import VoiceConfig

    VoiceConfig.objects.update(call_mode=VoiceConfig.CallMode.RELAY)


def _make_user(username: str, **extra: object) -> User:
    return User.objects.create_user(username=username, password=f"{username}-pass-2026", **extra)


@pytest.fixture
def owner(db: None) -> User:
    return _make_user("alice", email="alice@example.com")


@pytest.fixture
def colleague(db: None) -> User:
    return _make_user("bob")


@pytest.fixture
def stranger(db: None) -> User:
    return _make_user("mallory")


@pytest.fixture
def staff(db: None) -> User:
    return _make_user("stella", is_staff=True)


@pytest.fixture
def operator(db: None) -> User:
    user = _make_user("oscar", is_staff=True)
    user.groups.add(Group.objects.get(name="Voice operators"))
    return user


@pytest.fixture
def superuser(db: None) -> User:
    return User.objects.create_superuser("root", "root@example.com", "root-pass-2026")


@pytest.fixture
async def emulator(settings: object) -> AsyncIterator[str]:
    """The OpenAI emulator on an ephemeral loopback port; the app is pointed at it."""
    from aiohttp import web

    from realtime_emulator.app import create_app

    runner = web.AppRunner(create_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}/v1"
    settings.OPENAI_BASE_URL = base  # type: ignore[attr-defined]
    settings.USING_EMULATOR = True  # type: ignore[attr-defined]
    settings.OPENAI_API_KEY = ""  # type: ignore[attr-defined]
    try:
        yield base
    finally:
        await runner.cleanup()


def session_cookie(user: User) -> bytes:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


@pytest.fixture(scope="session", autouse=True)
def _close_worker_thread_connections(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Async tests run ORM work on asgiref's worker thread; close its connections before the test
    database is dropped, or PostgreSQL refuses to drop a database that is still in use."""
    yield
    import asyncio

    from asgiref.sync import sync_to_async
    from django.db import connections

    with django_db_blocker.unblock():
        asyncio.run(sync_to_async(connections.close_all, thread_sensitive=True)())


# What the data migrations seed (voice/migrations 0002, 0003, 0007, 0012): the default config and its
# history, the token and minute prices, the operators group. Content types and permissions are not
# listed: Django recreates them itself after each flush (post_migrate).
SEEDED_MODELS = ("voice.VoiceConfig", "voice.HistoricalVoiceConfig", "voice.ModelPrice", "voice.MinutePrice",
                 "auth.Group")
RECREATED_BY_DJANGO = ("contenttypes.ContentType", "auth.Permission")


@pytest.fixture(scope="session")
def _seed_rows(django_db_setup: None, django_db_blocker: Any) -> str:
    """The seeded rows as the migrations left them, captured once, before any transactional test's flush
    (pytest-django runs those after the others, and the first one asks for this before its flush)."""
    from django.apps import apps
    from django.core import serializers

    with django_db_blocker.unblock():
        others = [m._meta.label for m in apps.get_models()
                  if m._meta.label not in SEEDED_MODELS + RECREATED_BY_DJANGO and m._default_manager.exists()]
        # A new data migration that seeds another model must be listed above, or its rows would vanish
        # after the first transactional test.
        assert not others, f"rows seeded in models SEEDED_MODELS does not list: {others}"
        rows = [row for label in SEEDED_MODELS for row in apps.get_model(label)._default_manager.order_by("pk")]
        assert rows, "the data migrations seeded nothing"
        return serializers.serialize("json", rows, use_natural_foreign_keys=True)


@pytest.fixture(autouse=True)
def _seeded(request: pytest.FixtureRequest) -> None:
    """Tests with `django_db(transaction=True)` find the seed data, though the test before them flushed
    the database: it is written back (same rows, same keys) before each of them. This replaces
    `serialized_rollback`, which restored the whole database (permissions and content types included)."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None or not marker.kwargs.get("transaction"):
        return
    request.getfixturevalue("transactional_db")
    from django.core import serializers

    for row in serializers.deserialize("json", request.getfixturevalue("_seed_rows")):
        row.save()  # raw: no signals act on it (no history record), as with serialized_rollback
