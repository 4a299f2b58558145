"""Which web pages may open our websockets: the Origin header checked by scheme, host AND port.

channels' AllowedHostsOriginValidator compares only the origin's host with ALLOWED_HOSTS, so a page
served by anything else on 127.0.0.1 (say, port 9999) could open a user's voice session or dashboard
with the user's cookies. A websocket's Origin must now be one of:

- an origin listed in DJANGO_CSRF_TRUSTED_ORIGINS, exactly (scheme, host and port; ``https://*.example.com``
  allows the subdomains of example.com, on that scheme and port, as Django's CSRF check does);
- in production: the site itself as ALLOWED_HOSTS names it, on the scheme it is served on (https with
  DJANGO_SECURE_SSL_REDIRECT, else http or https) and that scheme's default port; a leading-dot entry
  (``.example.com``) covers its subdomains, ``*`` covers nothing (list the origins explicitly);
- with WEBSOCKET_ALLOW_SAME_ORIGIN (on with DEBUG), instead: the origin the request was addressed to,
  that is its Host header (which must pass ALLOWED_HOSTS) on the connection's scheme, port included.
  This is how `make run` on 127.0.0.1:8000 (or $PORT) and the end-to-end tests on random ports work,
  while a page on any other port of the same host (80 included) is refused.

No Origin header, ``null``, or anything unparsable is refused: browsers always send one.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from voice.realtime.throttle import ThrottledLog

logger = logging.getLogger("voice.origins")
_log = ThrottledLog(logger)

_DEFAULT_PORTS = {"http": 80, "https": 443}
Origin = tuple[str, str, int]  # scheme, host (lower case, IPv6 in brackets), port


def parse_origin(value: str) -> Origin | None:
    """('https', 'example.com', 443) for 'https://example.com'; None if it is not an http(s) origin."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/") or parts.query:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def _matches(origin: Origin, pattern: Origin) -> bool:
    scheme, host, port = pattern
    if (origin[0], origin[2]) != (scheme, port):
        return False
    if host.startswith("*."):
        return origin[1].endswith(host[1:])
    return origin[1] == host


def allowed_origins(*, with_allowed_hosts: bool = True) -> list[Origin]:
    """The explicit allow-list: trusted origins, and the site's hosts on the schemes it is served on."""
    patterns: list[Origin] = []
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        # "https://*.example.com": urlsplit cannot read a "*" host, so keep the wildcard aside.
        wildcard = "://*." in trusted
        parsed = parse_origin(trusted.replace("://*.", "://wildcard.", 1) if wildcard else trusted)
        if parsed is not None:
            scheme, host, port = parsed
            patterns.append((scheme, "*." + host.removeprefix("wildcard.") if wildcard else host, port))
    if not with_allowed_hosts:
        return patterns
    schemes = ("https",) if getattr(settings, "SECURE_SSL_REDIRECT", False) else ("https", "http")
    for entry in settings.ALLOWED_HOSTS:
        entry = entry.strip().lower()
        if not entry or entry == "*":
            continue
        for scheme in schemes:
            if entry.startswith("."):
                patterns.append((scheme, entry[1:], _DEFAULT_PORTS[scheme]))
                patterns.append((scheme, "*" + entry, _DEFAULT_PORTS[scheme]))
            else:
                patterns.append((scheme, entry, _DEFAULT_PORTS[scheme]))
    return patterns


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def own_origin(scope: dict[str, Any]) -> Origin | None:
    """The origin a websocket request was addressed to: its scheme and Host header, if the host is allowed."""
    host = _header(scope, b"host")
    if not host:
        return None
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    scheme = "https" if scope.get("scheme") == "wss" else "http"
    proxy = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy:  # behind a TLS proxy, as Django's request.scheme trusts it
        header, secure_value = proxy
        forwarded = _header(scope, header.removeprefix("HTTP_").lower().replace("_", "-").encode())
        if forwarded is not None:
            scheme = "https" if forwarded.split(",")[0].strip() == secure_value else "http"
    return parse_origin(f"{scheme}://{host}")


def origin_allowed(scope: dict[str, Any]) -> bool:
    raw = _header(scope, b"origin")
    origin = parse_origin(raw) if raw else None
    if origin is None:
        return False
    same_origin = bool(getattr(settings, "WEBSOCKET_ALLOW_SAME_ORIGIN", False))
    if any(_matches(origin, pattern) for pattern in allowed_origins(with_allowed_hosts=not same_origin)):
        return True
    return same_origin and origin == own_origin(scope)


class OriginAllowListValidator:
    """ASGI middleware: refuse a websocket handshake whose Origin is not allowed (see the module doc)."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            _log.warning("refused", "Websocket refused: origin %r is not allowed for host %r",
                         (_header(scope, b"origin") or "")[:200], (_header(scope, b"host") or "")[:200])
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
