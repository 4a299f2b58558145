"""The emulator behaves like OpenAI for server-controlled calls (issue 11, item 7), with a real aiortc peer
as the browser and a raw websocket as the server's sideband: strict multipart /calls, session.created on
attach then every data-channel event, client events from the sideband drive the script, typed content
parts, output_audio_buffer.cleared naming its response, the drop fault, and hang-up closing the sideband."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import websockets

from tests.emulator.test_emulator_call import fast_script
from tests.server_mode import (
    API_KEY,
    CURRENT_TIME_TOOL,
    SESSION,
    BrowserPeer,
    Emulator,
    eventually,
    running_emulator,
    start_call,
)
from voice.realtime import create_call

AUTH = {"Authorization": f"Bearer {API_KEY}"}


class RawSideband:
    """The server's sideband as a bare websocket: what arrives, and a way to send."""

    def __init__(self, emulator: Emulator, call_id: str) -> None:
        self.url = emulator.base.replace("http://", "ws://") + f"/realtime?call_id={call_id}"
        self.events: list[dict[str, Any]] = []
        self.ws: Any = None
        self.closed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RawSideband:
        self.ws = await websockets.connect(self.url, additional_headers=AUTH)
        self._task = asyncio.ensure_future(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                self.events.append(json.loads(message))
        except websockets.ConnectionClosed:
            pass
        self.closed.set()

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(event))

    def types(self) -> list[str]:
        return [event["type"] for event in self.events]

    async def wait_for(self, type_: str, count: int = 1) -> None:
        await eventually(lambda: self.types().count(type_) >= count, f"{count} x {type_}")


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with running_emulator(fast_script("default")) as emulator:
        yield emulator


# --- /calls with the standard key ------------------------------------------------------------------


async def _post_form(emulator: Emulator, **parts: str) -> aiohttp.ClientResponse:
    form = aiohttp.FormData(default_to_multipart=True)
    for name, value in parts.items():
        form.add_field(name, value)
    session = aiohttp.ClientSession()
    try:
        response = await session.post(f"{emulator.base}/realtime/calls", data=form, headers=AUTH)
        await response.read()
        return response
    finally:
        await session.close()


async def test_multipart_calls_need_both_parts_and_a_valid_session(emulator: Emulator) -> None:
    peer = BrowserPeer()
    offer = await peer.offer()
    cases = [
        ({"sdp": offer}, 400, "missing_required_parameter", "session"),
        ({"session": json.dumps(SESSION)}, 400, "missing_required_parameter", "sdp"),
        ({"sdp": offer, "session": "{not json"}, 400, "invalid_json", "session"),
        ({"sdp": offer, "session": json.dumps({**SESSION, "voice": "alloy"})}, 400, "beta_api_shape_disabled", None),
    ]
    for parts, status, code, param in cases:
        response = await _post_form(emulator, **parts)
        assert response.status == status, parts
        error = (await response.json())["error"]
        assert error["code"] == code
        if param is not None:
            assert error["param"] == param
    created = await _post_form(emulator, sdp=offer, session=json.dumps(SESSION))
    assert created.status == 201 and created.headers["Location"].startswith("/v1/realtime/calls/rtc_")
    await peer.close()


# --- what the sideband hears ------------------------------------------------------------------------------


async def test_a_sideband_attached_before_the_browser_gets_one_session_created_then_everything() -> None:
    async with running_emulator(fast_script("default")) as emulator:
        # The server's order: create the call, attach the sideband, only then answer the browser.
        peer = BrowserPeer()
        answer, call_id = await create_call(emulator.base, API_KEY, await peer.offer(), SESSION)
        async with RawSideband(emulator, call_id) as sideband:
            await sideband.wait_for("session.created")
            await peer.answer(answer)
            await eventually(lambda: bool(peer.events), "the browser's session.created")
            await emulator.control("POST", f"/_emulator/calls/{call_id}/turn")
            await sideband.wait_for("response.done")
            await eventually(lambda: "response.done" in [e["type"] for e in peer.events], "browser done")

            assert sideband.types().count("session.created") == 1  # its own; not the browser's too
            assert peer.events[0]["type"] == "session.created"
            assert sideband.events[0]["event_id"] != peer.events[0]["event_id"]
            # Every other event the data channel got, the sideband got too: same ids, same order.
            assert [e["event_id"] for e in sideband.events[1:]] == [e["event_id"] for e in peer.events[1:]]
        await peer.close()


async def test_a_late_sideband_gets_session_created_with_the_current_session(emulator: Emulator) -> None:
    peer, call_id = await start_call(emulator)
    async with RawSideband(emulator, call_id) as first:
        await first.wait_for("session.created")
        await first.send({"type": "session.update", "session": {"type": "realtime", "instructions": "Updated."}})
        await first.wait_for("session.updated")
    async with RawSideband(emulator, call_id) as late:
        await late.wait_for("session.created")
        assert late.events[0]["session"]["instructions"] == "Updated."
        assert late.events[0]["session"]["id"] == peer.events[0]["session"]["id"]
    await peer.close()


async def test_client_events_from_the_sideband_drive_the_script_like_the_data_channel() -> None:
    async with running_emulator(fast_script("tool_call")) as emulator:
        peer, call_id = await start_call(emulator, {**SESSION, "tools": [CURRENT_TIME_TOOL]})
        async with RawSideband(emulator, call_id) as sideband:
            await sideband.wait_for("session.created")
            await emulator.control("POST", f"/_emulator/calls/{call_id}/turn")
            await sideband.wait_for("response.done")
            call = next(
                e["item"]
                for e in sideband.events
                if e["type"] == "response.output_item.done" and e["item"]["type"] == "function_call"
            )
            await sideband.send(
                {
                    "type": "conversation.item.create",
                    "item": {"type": "function_call_output", "call_id": call["call_id"], "output": "09:30 UTC"},
                }
            )
            await sideband.send({"type": "response.create"})
            await sideband.wait_for("response.done", count=2)
            transcript = [e for e in sideband.events if e["type"] == "response.output_audio_transcript.done"][-1]
            assert "09:30 UTC" in transcript["transcript"]
            # The browser saw the reply the sideband caused.
            await eventually(
                lambda: any("09:30 UTC" in (e.get("transcript") or "") for e in peer.events), "the browser's copy"
            )
            # And a bad event from the sideband gets the same error event as on the data channel.
            await sideband.send({"type": "nonsense.event"})
            await sideband.wait_for("error")
        recorded = await emulator.call(call_id)
        assert {e["source"] for e in recorded["client_events"]} == {"sideband"}
        await peer.close()


# --- the shape of events ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("modality", "part_type", "content_type"), [("audio", "audio", "output_audio"),
                                                                      ("text", "text", "output_text")])
async def test_content_parts_are_typed_audio_or_text_while_item_content_says_output(
    emulator: Emulator, modality: str, part_type: str, content_type: str
) -> None:
    peer, call_id = await start_call(emulator, {**SESSION, "output_modalities": [modality]})
    async with RawSideband(emulator, call_id) as sideband:
        await sideband.wait_for("session.created")
        await emulator.control("POST", f"/_emulator/calls/{call_id}/turn")
        await sideband.wait_for("response.done")
    parts = [e["part"]["type"] for e in sideband.events if e["type"].startswith("response.content_part.")]
    assert parts == [part_type, part_type]
    item_done = next(e for e in sideband.events if e["type"] == "response.output_item.done")
    assert [c["type"] for c in item_done["item"]["content"]] == [content_type]
    done = next(e for e in sideband.events if e["type"] == "response.done")
    assert [c["type"] for c in done["response"]["output"][0]["content"]] == [content_type]
    await peer.close()


async def test_output_audio_buffer_cleared_always_names_its_response(emulator: Emulator) -> None:
    peer, call_id = await start_call(emulator)
    async with RawSideband(emulator, call_id) as sideband:
        await sideband.wait_for("session.created")
        # Before any response there is no audio and no response to name: nothing is announced.
        await sideband.send({"type": "output_audio_buffer.clear"})
        await sideband.send({"type": "input_audio_buffer.clear"})
        await sideband.wait_for("input_audio_buffer.cleared")
        assert "output_audio_buffer.cleared" not in sideband.types()

        await emulator.control("POST", f"/_emulator/calls/{call_id}/turn")
        await sideband.wait_for("response.done")
        response_id = next(e for e in sideband.events if e["type"] == "response.done")["response"]["id"]
        await sideband.send({"type": "output_audio_buffer.clear"})  # while or after it plays
        await sideband.wait_for("output_audio_buffer.cleared")
    cleared = [e for e in sideband.events if e["type"] == "output_audio_buffer.cleared"]
    assert [e["response_id"] for e in cleared] == [response_id]
    await peer.close()


# --- faults and the end of a call -------------------------------------------------------------------------


async def test_the_drop_fault_cuts_the_sideband_but_not_the_call_and_can_refuse_reattaching(
    emulator: Emulator,
) -> None:
    peer, call_id = await start_call(emulator)
    async with RawSideband(emulator, call_id) as sideband:
        await sideband.wait_for("session.created")
        dropped = await emulator.control(
            "POST", f"/_emulator/calls/{call_id}/sideband/drop", json={"refuse": 1, "status": 502}
        )
        assert dropped.json() == {"dropped": 1, "refuse": 1}
        await asyncio.wait_for(sideband.closed.wait(), 5)
        assert sideband.ws.close_code == 1006  # no close frame: a dead network path
    assert (await emulator.call(call_id))["status"] == "active"

    with pytest.raises(websockets.InvalidStatus) as excinfo:
        await websockets.connect(emulator.base.replace("http", "ws") + f"/realtime?call_id={call_id}",
                                 additional_headers=AUTH)
    assert excinfo.value.response.status_code == 502
    async with RawSideband(emulator, call_id) as again:  # the refusal was used up
        await again.wait_for("session.created")
        await emulator.control("POST", f"/_emulator/calls/{call_id}/sideband/drop", json={"mode": "close"})
        await asyncio.wait_for(again.closed.wait(), 5)
        assert again.ws.close_code == 1011

    for body in ({"mode": "explode"}, {"refuse": -1}, {"status": 200}, {"typo": 1}):
        response = await emulator.control("POST", f"/_emulator/calls/{call_id}/sideband/drop", json=body)
        assert response.status_code == 400, body
    assert (await emulator.control("POST", "/_emulator/calls/rtc_nope/sideband/drop")).status_code == 404
    await peer.close()


async def test_hanging_up_closes_the_sideband_normally(emulator: Emulator) -> None:
    peer, call_id = await start_call(emulator)
    async with RawSideband(emulator, call_id) as sideband:
        await sideband.wait_for("session.created")
        assert (await emulator.control("POST", f"/v1/realtime/calls/{call_id}/hangup", headers=AUTH)).status_code == 200
        await asyncio.wait_for(sideband.closed.wait(), 5)
        assert sideband.ws.close_code == 1000
    await peer.close()
