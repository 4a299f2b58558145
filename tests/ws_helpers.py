"""Websocket helpers shared by the consumer tests: the browser's end of a socket, and cleanup.

Every communicator opened through `open_peer` is disconnected after its test by the `disconnect_peers`
fixture, which each module using these helpers imports (autouse), so no consumer outlives its test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User

from realtime_site.asgi import application
from tests.conftest import session_cookie
from voice.models import SessionEvent, VoiceSession

ORIGIN = b"http://127.0.0.1:8000"
_open: list[WebsocketCommunicator] = []


@pytest.fixture(autouse=True)
async def disconnect_peers() -> Any:
    """Whatever a test asserted, its sockets are closed, so no consumer outlives the test's database."""
    yield
    while _open:
        communicator = _open.pop()
        with contextlib.suppress(Exception):  # already closed by the server
            await communicator.disconnect(timeout=5)


class Peer:
    """The browser's end of /ws/voice/, reading frames and close codes alike."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.ws = communicator
        self.frames: list[dict[str, Any]] = []
        self.close_code: int | None = None

    async def next(self, timeout: float = 5) -> dict[str, Any] | None:
        message = await self.ws.receive_output(timeout)
        if message["type"] == "websocket.close":
            self.close_code = message.get("code", 1000)
            return None
        frame = json.loads(message["text"])
        self.frames.append(frame)
        return frame

    async def until(self, kind: str, timeout: float = 5) -> dict[str, Any]:
        while True:
            frame = await self.next(timeout)
            if frame is None:
                raise AssertionError(f"closed with {self.close_code} before {kind}; got {self.types()}")
            if frame["type"] == kind:
                return frame

    async def closed(self, timeout: float = 5) -> int:
        while self.close_code is None:
            await self.next(timeout)
        return self.close_code

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_to(text_data=json.dumps(frame))

    def types(self) -> list[str]:
        return [f["type"] for f in self.frames]


def function_call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """A finished function_call output item, as the browser relays it from the data channel."""
    return {"type": "response.output_item.done", "event_id": f"ev_{call_id}", "response_id": "resp_1",
            "output_index": 0, "item": {"id": f"item_{call_id}", "type": "function_call", "status": "completed",
                                        "call_id": call_id, "name": name, "arguments": json.dumps(arguments)}}


async def open_peer(user: User | None, path: str = "/ws/voice/", origin: bytes = ORIGIN) -> tuple[Peer, bool]:
    headers = [(b"origin", origin), (b"host", b"127.0.0.1:8000")]
    if user is not None:
        headers.append((b"cookie", await sync_to_async(session_cookie)(user)))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    _open.append(communicator)
    connected, _ = await communicator.connect(timeout=5)
    return Peer(communicator), connected


async def started(user: User, path: str = "/ws/voice/") -> tuple[Peer, dict[str, Any]]:
    peer, connected = await open_peer(user, path)
    assert connected
    init = await peer.until("ag2.init")
    return peer, init


@database_sync_to_async
def stored(session_id: str) -> VoiceSession:
    return VoiceSession.objects.get(pk=session_id)


@database_sync_to_async
def event_types(session_id: str) -> list[str]:
    return list(SessionEvent.objects.filter(session_id=session_id).order_by("seq").values_list("type", flat=True))


async def wait_for(check: Any, timeout: float = 5) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.05)


