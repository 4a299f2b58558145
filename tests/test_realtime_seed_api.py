"""The seed's API where its behaviour is reasonable (issue 11, item 6): read_events() reads the websocket by
itself outside connect(), a receive_text()-only websocket works, the reader never dies silently, Role is
exported, and issubclass() holds against RealtimeClientProtocol."""

from __future__ import annotations

import asyncio
import json
import logging
import typing
from typing import Any

import pytest
import respx

import voice.realtime
from voice.realtime import (
    OpenAIRealtimeSidebandClient,
    OpenAIRealtimeWebRTCClient,
    RealtimeClientProtocol,
    Role,
)
from voice.realtime.events import AudioDelta, FunctionCall, validate_client_event

LOGGER = logging.getLogger("tests.realtime.seed_api")
CONFIG = {"config_list": [{"model": "gpt-realtime", "api_key": "sk-test", "base_url": "https://api.test/v1"}]}


class WebSocketDisconnect(Exception):
    """Named like Starlette's: what receive_text() raises when the browser goes away."""


class ReceiveTextOnly:
    """The seed's websocket shape: send_json and receive_text, no iter_text."""

    def __init__(self, *frames: dict[str, Any] | str, end: BaseException | None = None) -> None:
        self.sent: list[dict[str, Any]] = []
        self._frames: asyncio.Queue[str | BaseException] = asyncio.Queue()
        for frame in frames:
            self._frames.put_nowait(frame if isinstance(frame, str) else json.dumps(frame))
        self._frames.put_nowait(end or WebSocketDisconnect(1000))

    async def send_json(self, data: dict[str, Any]) -> None:
        validate_client_event(data)
        self.sent.append(data)

    async def receive_text(self) -> str:
        item = await self._frames.get()
        if isinstance(item, BaseException):
            raise item
        return item


AUDIO = {"type": "response.output_audio.delta", "delta": "AA=="}
CALL = {
    "type": "response.output_item.done",
    "item": {"type": "function_call", "name": "f", "call_id": "c1", "arguments": "{}"},
}


async def test_read_events_outside_connect_reads_the_websocket_itself_without_minting() -> None:
    websocket = ReceiveTextOnly(AUDIO, CALL)
    client = OpenAIRealtimeWebRTCClient(llm_config=CONFIG, websocket=websocket, logger=LOGGER)

    with respx.mock(assert_all_mocked=True) as router:  # no request may be made: nothing is mocked
        received = await asyncio.wait_for(_collect(client), 5)
        assert not router.calls

    assert [type(event) for event in received] == [AudioDelta, FunctionCall]
    assert websocket.sent == []  # no ag2.init either: connect() was not used
    assert [event async for event in client.read_events()] == []  # the stream has ended
    assert not [task for task in asyncio.all_tasks() if "reader" in task.get_name()]


async def test_a_receive_text_only_websocket_works_inside_connect_too() -> None:
    minted = {"value": "ek_1", "expires_at": 1767225600, "session": {"type": "realtime", "model": "gpt-realtime"}}
    websocket = ReceiveTextOnly(AUDIO)
    client = OpenAIRealtimeWebRTCClient(llm_config=CONFIG, websocket=websocket, logger=LOGGER)
    with respx.mock(assert_all_mocked=True) as router:
        router.post("https://api.test/v1/realtime/client_secrets").respond(200, json=minted)
        async with client.connect():
            received = [event async for event in client.read_events()]

    assert [type(event) for event in received] == [AudioDelta]
    assert websocket.sent[0]["type"] == "ag2.init"


async def test_a_disconnect_ends_the_stream_quietly(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tests")
    client = OpenAIRealtimeWebRTCClient(llm_config=CONFIG, websocket=ReceiveTextOnly(AUDIO), logger=LOGGER)

    assert len([event async for event in client.read_events()]) == 1
    records = [r for r in caplog.records if r.name == LOGGER.name]
    assert [r.levelno for r in records] == [logging.INFO] and "closed" in records[0].getMessage()


async def test_a_reader_failure_is_logged_with_its_traceback_and_ends_the_stream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tests")
    websocket = ReceiveTextOnly(AUDIO, end=KeyError("a bug in the socket adapter"))
    client = OpenAIRealtimeWebRTCClient(llm_config=CONFIG, websocket=websocket, logger=LOGGER)

    received = await asyncio.wait_for(_collect(client), 5)  # never hangs

    assert [type(event) for event in received] == [AudioDelta]
    errors = [r for r in caplog.records if r.name == LOGGER.name and r.levelno == logging.ERROR]
    assert len(errors) == 1 and "failed" in errors[0].getMessage()
    assert errors[0].exc_info is not None and isinstance(errors[0].exc_info[1], KeyError)


async def _collect(client: OpenAIRealtimeWebRTCClient) -> list[Any]:
    return [event async for event in client.read_events()]


def test_role_is_exported_from_voice_realtime() -> None:
    assert "Role" in voice.realtime.__all__
    assert set(typing.get_args(Role)) == {"user", "assistant", "system"}


@pytest.mark.parametrize("client_class", [OpenAIRealtimeWebRTCClient, OpenAIRealtimeSidebandClient])
def test_the_clients_are_subclasses_of_the_protocol(client_class: type) -> None:
    assert issubclass(client_class, RealtimeClientProtocol)
    assert not issubclass(int, RealtimeClientProtocol)
    assert isinstance(client_class.logger, property)  # the seed's logger property is still there
