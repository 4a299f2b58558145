"""ASGI entry point: HTTP to Django, websockets through origin and auth checks to voice.routing."""

import gc
import os
from typing import Any

import django
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime_site.settings")


class ClosingASGIHandler(ASGIHandler):
    """Django's ASGI handler, closing the request's database connections when the request is done.

    Under ASGI every HTTP request runs its sync code (views, the session and auth middleware) in a thread
    of its own (asgiref's ThreadSensitiveContext), so a persistent connection (DATABASE_CONN_MAX_AGE,
    kept for the consumers' and the Recorder's one shared thread) is never reused by a later request:
    it stayed open, unreferenced, until a full garbage collection, rare here (below). A few hundred page
    views exhausted PostgreSQL's max_connections (bench_scale.py: 45 idle connections per daphne after
    its pages). Django's advice is to disable persistent connections under ASGI; closing them at the end
    of the request, in the request's own thread, does that for HTTP and costs nothing (they were never
    reused), while websockets keep theirs.
    """

    async def handle(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().handle(scope, receive, send)
        finally:
            # Still inside the request's ThreadSensitiveContext: this runs in the thread that holds them.
            from django.db import connections

            await sync_to_async(connections.close_all)()


# Django must be set up before anything imports models, so this comes before the consumers
# (what django.core.asgi.get_asgi_application does, with the handler above).
django.setup(set_prefix=False)
django_asgi_app = ClosingASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from realtime_site.origins import OriginAllowListValidator  # noqa: E402
from voice.routing import websocket_urlpatterns  # noqa: E402
from voice.spool import ReplaySpoolAtStartup  # noqa: E402

# The first request a process serves starts its recorder writer, which replays at once any rows an
# earlier process spooled because the database was down when it stopped (voice/spool.py).
application = ReplaySpoolAtStartup(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            # Origin by scheme, host and port (realtime_site/origins.py), not by host alone.
            "websocket": OriginAllowListValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        }
    )
)

# The cyclic garbage collector pauses the event loop, and with 200 live sessions its full collections
# ran every ~3 s for ~120 ms each: that was the whole p99 of the dashboard fan-out (benchmarks/README.md).
# Everything loaded by now (Django, channels, twisted, pydantic schemas...) lives as long as the process:
# freezing it keeps full collections from walking it again. A larger first generation lets the many
# short-lived objects of each relayed event die before a collection looks at them, so fewer survive
# into the older generations and full collections come rarely.
gc.freeze()
gc.set_threshold(50_000, 20, 10)
