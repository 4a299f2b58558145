"""ASGI entry point: HTTP to Django, websockets through origin and auth checks to voice.routing."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime_site.settings")

# Django must be set up before anything imports models, so this comes before the consumers.
django_asgi_app = get_asgi_application()

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
