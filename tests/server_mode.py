"""Server-mode calls against the real emulator on loopback: a browser-like aiortc peer offers, the server
side creates the call with ``create_call`` (multipart, standard key) and attaches a sideband."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from realtime_emulator.app import create_app
from realtime_emulator.script import Script
from voice.realtime.calls import create_call

API_KEY = "sk-test-server-mode-key-0123456789"
SESSION: dict[str, Any] = {
    "type": "realtime",
    "model": "gpt-realtime",
    "instructions": "You are a test.",
    "output_modalities": ["audio"],
    "audio": {
        "input": {
            "transcription": {"model": "gpt-4o-mini-transcribe"},
            "turn_detection": {"type": "server_vad", "silence_duration_ms": 300},
        },
        "output": {"voice": "marin"},
    },
}
CURRENT_TIME_TOOL = {
    "type": "function",
    "name": "current_time",
    "description": "The current time in a timezone.",
    "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}},
}


class Emulator:
    """The emulator app on an ephemeral loopback port, with a small control client."""

    def __init__(self, script: Script | str = "default", **options: Any) -> None:
        self.app = create_app(script=script, **options)
        self.runner = web.AppRunner(self.app)
        self.base = ""
        self.http: httpx.AsyncClient | None = None

    async def start(self) -> str:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{port}/v1"
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}")
        return self.base

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.aclose()
        await self.runner.cleanup()

    async def control(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        assert self.http is not None
        return await self.http.request(method, path, **kwargs)

    async def call(self, call_id: str) -> dict[str, Any]:
        return (await self.control("GET", f"/_emulator/calls/{call_id}")).json()


class BrowserPeer:
    """The browser's media side: one audio transceiver and the ``oai-events`` channel, read for display."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pc.addTransceiver("audio", direction="sendrecv")
        self.channel = self.pc.createDataChannel("oai-events")
        self.events: list[dict[str, Any]] = []
        self.opened = asyncio.Event()
        self.channel.on("open", self.opened.set)
        self.channel.on("message", lambda message: self.events.append(json.loads(message)))

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        await asyncio.wait_for(self.opened.wait(), 10)

    async def close(self) -> None:
        await self.pc.close()


async def start_call(emulator: Emulator, session: dict[str, Any] | None = None) -> tuple[BrowserPeer, str]:
    """A live server-mode call: the server creates it, the browser peer connects. Returns (peer, call_id)."""
    peer = BrowserPeer()
    answer, call_id = await create_call(emulator.base, API_KEY, await peer.offer(), session or SESSION, timeout=10)
    await peer.answer(answer)
    return peer, call_id


async def eventually(condition: Callable[[], bool], what: str = "the condition", within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running_emulator(script: Script | str = "default", **options: Any) -> AsyncIterator[Emulator]:
    emulator = Emulator(script, **options)
    await emulator.start()
    try:
        yield emulator
    finally:
        await emulator.stop()
