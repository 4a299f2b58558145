"""Websocket origins are checked by scheme, host AND port (realtime_site/origins.py).

`Origin: http://127.0.0.1:9999` used to pass for a site served on another port of 127.0.0.1, since
channels' AllowedHostsOriginValidator compared hosts only.
"""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

from realtime_site.origins import origin_allowed, parse_origin
from tests.ws_helpers import disconnect_peers, open_peer  # noqa: F401  (autouse fixture)
from voice.models import VoiceSession

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("relay_mode")]


def _scope(origin: str | None, host: str = "127.0.0.1:8000", **extra: Any) -> dict[str, Any]:
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    headers += [(k.encode(), v.encode()) for k, v in extra.items()]
    return {"type": "websocket", "headers": headers}


@pytest.mark.parametrize("origin", ["http://127.0.0.1:9999", "https://127.0.0.1:8000", "http://localhost:8000",
                                    "http://127.0.0.1", "null", "", "file://", "http://127.0.0.1:8000.evil.com",
                                    "http://evil.example.com:8000"])
async def test_a_page_on_another_port_scheme_or_host_cannot_open_a_session(owner: User, origin: str) -> None:
    _, connected = await open_peer(owner, origin=origin.encode())
    assert not connected
    assert await database_sync_to_async(VoiceSession.objects.count)() == 0


async def test_a_page_of_the_site_itself_opens_a_session(owner: User) -> None:
    peer, connected = await open_peer(owner, origin=b"http://127.0.0.1:8000")
    assert connected
    await peer.ws.disconnect()


async def test_the_dashboard_checks_origins_the_same_way(staff: User) -> None:
    _, connected = await open_peer(staff, "/ws/dashboard/", origin=b"http://127.0.0.1:9999")
    assert not connected
    peer, connected = await open_peer(staff, "/ws/dashboard/", origin=b"http://127.0.0.1:8000")
    assert connected
    assert (await peer.until("snapshot"))["type"] == "snapshot"


def test_in_development_the_origin_must_be_the_host_the_request_was_addressed_to(settings: Any) -> None:
    settings.WEBSOCKET_ALLOW_SAME_ORIGIN = True
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
    settings.CSRF_TRUSTED_ORIGINS = []
    assert origin_allowed(_scope("http://127.0.0.1:8000"))
    assert origin_allowed(_scope("http://127.0.0.1:54321", host="127.0.0.1:54321"))  # e2e tests: random ports
    assert origin_allowed(_scope("http://[::1]:8000", host="[::1]:8000"))
    assert not origin_allowed(_scope("http://127.0.0.1:9999"))
    assert not origin_allowed(_scope(None))
    # A host that ALLOWED_HOSTS refuses is no origin at all (DNS rebinding: evil.com resolving to 127.0.0.1).
    assert not origin_allowed(_scope("http://evil.com:8000", host="evil.com:8000"))


def test_in_production_only_the_explicit_list_is_allowed(settings: Any) -> None:
    settings.WEBSOCKET_ALLOW_SAME_ORIGIN = False
    settings.SECURE_SSL_REDIRECT = True
    settings.ALLOWED_HOSTS = ["voice.example.com", ".corp.example"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://voice.example.com:8443", "https://*.partner.example",
                                     "http://localhost:8000"]
    host = "voice.example.com"
    allowed = ["https://voice.example.com", "https://voice.example.com:443", "https://VOICE.example.com",
               "https://voice.example.com:8443", "https://app.partner.example", "https://corp.example",
               "https://a.corp.example", "http://localhost:8000"]
    refused = ["http://voice.example.com", "https://voice.example.com:444", "https://voice.example.com.evil.com",
               "https://partner.example", "http://app.partner.example", "https://app.partner.example:8443",
               "http://localhost:8001", "https://localhost:8000", "https://evilcorp.example"]
    for origin in allowed:
        assert origin_allowed(_scope(origin, host=host)), origin
    for origin in refused:
        assert not origin_allowed(_scope(origin, host=host)), origin
    # Same-origin is not enough in production: the site must be listed.
    assert not origin_allowed(_scope("http://127.0.0.1:9999", host="127.0.0.1:9999"))


def test_behind_a_tls_proxy_the_forwarded_scheme_is_the_requests_scheme(settings: Any) -> None:
    settings.WEBSOCKET_ALLOW_SAME_ORIGIN = True
    settings.ALLOWED_HOSTS = ["voice.example.com"]
    settings.CSRF_TRUSTED_ORIGINS = []
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    scope = _scope("https://voice.example.com:8443", host="voice.example.com:8443", **{"x-forwarded-proto": "https"})
    assert origin_allowed(scope)
    scope = _scope("https://voice.example.com:8443", host="voice.example.com:8443")
    assert not origin_allowed(scope)  # plain http connection: its own origin is http://...


def test_origins_are_parsed_with_default_ports_and_nothing_else() -> None:
    assert parse_origin("https://Example.COM") == ("https", "example.com", 443)
    assert parse_origin("http://example.com:8080/") == ("http", "example.com", 8080)
    assert parse_origin("http://[::1]:8000") == ("http", "[::1]", 8000)
    for bad in ("null", "example.com", "ws://example.com", "http://example.com:99999", "http://example.com/path",
                "http://"):
        assert parse_origin(bad) is None, bad
