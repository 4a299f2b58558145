"""Offline stand-in for the OpenAI Realtime API (GA wire format), built on aiohttp and aiortc.

Start it with ``python -m realtime_emulator --port 8765`` or ``python manage.py realtime_emulator``;
build it in tests with :func:`realtime_emulator.app.create_app`. Nothing here imports Django, so the
emulator also runs on its own. The endpoints are listed in ``app.py``; turn taking in ``peer.py``;
the script format in ``script.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["create_app", "run"]


def create_app(**kwargs: Any) -> web.Application:
    # Imported lazily so that importing the package (e.g. for script loading) does not pull in aiortc.
    from .app import create_app as _create_app

    return _create_app(**kwargs)


def run(host: str = "127.0.0.1", port: int = 8765, **kwargs: Any) -> None:
    from .app import run as _run

    _run(host, port, **kwargs)
