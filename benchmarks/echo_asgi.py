"""The site's ASGI application plus one benchmark-only route: a bare JSON echo at /ws/echo/.

Benchmarks run daphne on this module, so the echo baseline and the real voice consumer are served by
the same process, through the same origin check and auth middleware, in the same run. Nothing in the
product imports this file.
"""

from __future__ import annotations

# isort: off
# Django must be set up (by the site's asgi module) before channels' auth and consumers are imported.
from typing import Any

from realtime_site.asgi import application as site_application

from channels.auth import AuthMiddlewareStack
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.routing import URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path

# isort: on

ECHO_PATH = "/ws/echo/"


class EchoConsumer(AsyncJsonWebsocketConsumer):
    """Decode each JSON frame and send it straight back: the cheapest consumer channels can run."""

    # Like VoiceSessionConsumer: no channel layer of its own (no per-connection layer receive loop).
    channel_layer_alias = "benchmark-echo-has-no-layer"

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.send_json(content)


_echo = AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter([path("ws/echo/", EchoConsumer.as_asgi())])))


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket" and scope.get("path") == ECHO_PATH:
        await _echo(scope, receive, send)
        return
    await site_application(scope, receive, send)
