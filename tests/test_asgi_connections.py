"""HTTP requests served through realtime_site.asgi close the database connections they opened.

Under ASGI each request's sync code runs in a thread of its own, so a persistent connection left open
there is never reused, only leaked (until a full garbage collection): enough page views exhausted
PostgreSQL's max_connections (benchmarks/README.md). realtime_site.asgi.ClosingASGIHandler closes them.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from channels.testing import HttpCommunicator
from django.conf import settings
from django.db.backends.signals import connection_created

pytestmark = pytest.mark.django_db(transaction=True)


async def test_an_http_request_closes_the_connections_it_opened(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db import connections

    from realtime_site.asgi import application

    opened: list[tuple[int, Any]] = []
    closed: list[tuple[int, Any]] = []
    backend = type(connections["default"])  # the backend's own class: SQLite's close() does not reach the base's
    original_close = backend.close

    def note(sender: Any, connection: Any, **kwargs: Any) -> None:
        opened.append((threading.get_ident(), connection))

    def close(self: Any) -> None:
        # In-memory SQLite (the default test database) ignores close(); PostgreSQL really closes.
        closed.append((threading.get_ident(), self))
        original_close(self)

    monkeypatch.setattr(backend, "close", close)
    # Persistent connections, as the site runs on PostgreSQL (DATABASE_CONN_MAX_AGE): without the fix,
    # Django's end-of-request check would then leave the request's connection open.
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 60)
    # The request's own thread is the one that reads its session (other threads, like the Recorder's
    # writer that the first request of a process starts, keep their connections on purpose).
    from django.contrib.sessions.backends.db import SessionStore

    request_threads: set[int] = set()
    original_load = SessionStore.load

    def load(self: Any) -> Any:
        request_threads.add(threading.get_ident())
        return original_load(self)

    monkeypatch.setattr(SessionStore, "load", load)
    connection_created.connect(note)
    try:
        # A session cookie that names no session: the login check reads the session table, then redirects.
        cookie = f"{settings.SESSION_COOKIE_NAME}=nosuchsessionkey".encode()
        communicator = HttpCommunicator(application, "GET", "/voice/sessions/",
                                        headers=[(b"host", b"127.0.0.1"), (b"cookie", cookie)])
        response = await communicator.get_response(timeout=10)
        await communicator.wait(timeout=10)  # the handler goes on after the response's last byte
    finally:
        connection_created.disconnect(note)

    assert response["status"] == 302
    assert len(request_threads) == 1 and threading.get_ident() not in request_threads
    in_request = [(thread, wrapper) for thread, wrapper in opened if thread in request_threads]
    assert in_request, "the request should have opened a connection to read the session table"
    for thread, wrapper in in_request:
        assert any(t == thread and w is wrapper for t, w in closed), f"{wrapper.alias} left open by the request"
        if not (wrapper.vendor == "sqlite" and wrapper.is_in_memory_db()):
            assert wrapper.connection is None
