"""OpenAIRealtimeSidebandClient against the real emulator over loopback: attach, typed events, client events,
the raw-frame tap, reconnection after a real socket drop (and the gap it reports), giving up, hang-up."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.emulator.test_emulator_call import fast_script
from tests.server_mode import API_KEY, CURRENT_TIME_TOOL, SESSION, Emulator, eventually, running_emulator, start_call
from voice.realtime import (
    OpenAIRealtimeSidebandClient,
    RawFrame,
    RealtimeAuthError,
    RealtimeClientProtocol,
    RealtimeConfigError,
    RealtimeRequestRejectedError,
    RealtimeUpstreamUnavailableError,
    SidebandGap,
    get_client,
)
from voice.realtime.events import FunctionCall, RealtimeEvent, ResponseDone, SessionCreated
from voice.realtime.sideband import ReconnectPolicy, sideband_url

LOGGER = logging.getLogger("tests.realtime.sideband")
FAST_RECONNECT = {"initial_delay": 0.02, "max_delay": 0.1, "max_attempts": 20, "give_up_after": 10}


def llm_config(base: str, key: str = API_KEY, **top_level: Any) -> dict[str, Any]:
    return {
        "config_list": [{"model": "gpt-realtime", "api_key": key, "base_url": base}],
        "reconnect": FAST_RECONNECT,
        **top_level,
    }


class Reader:
    """Reads a client's events in the background, as the agent does."""

    def __init__(self, client: OpenAIRealtimeSidebandClient) -> None:
        self.client = client
        self.events: list[RealtimeEvent] = []
        self.ended = asyncio.Event()
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for event in self.client.read_events():
            self.events.append(event)
        self.ended.set()

    def types(self) -> list[str]:
        return [event.type for event in self.events]

    def of(self, cls: type[RealtimeEvent]) -> list[Any]:
        return [event for event in self.events if isinstance(event, cls)]

    async def wait_for(self, type_: str, *, count: int = 1, within: float = 5.0) -> None:
        await eventually(lambda: self.types().count(type_) >= count, f"{count} x {type_}", within)


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with running_emulator(fast_script("default")) as emulator:
        yield emulator


@pytest.fixture
async def tool_emulator() -> AsyncIterator[Emulator]:
    async with running_emulator(fast_script("tool_call")) as emulator:
        yield emulator


# --- choosing and addressing the client --------------------------------------------------------------


def test_get_client_picks_the_sideband_client_for_a_call_id() -> None:
    config = llm_config("https://api.test/v1")
    client = get_client(config, LOGGER, call_id="rtc_abc123")

    assert isinstance(client, OpenAIRealtimeSidebandClient)
    assert client.url == "wss://api.test/v1/realtime?call_id=rtc_abc123"
    assert client.logger is LOGGER
    assert isinstance(client, RealtimeClientProtocol)
    assert issubclass(OpenAIRealtimeSidebandClient, RealtimeClientProtocol)
    taps = get_client(config, LOGGER, call_id="rtc_abc123", on_frame=print, on_gap=print)
    assert isinstance(taps, OpenAIRealtimeSidebandClient)
    assert OpenAIRealtimeSidebandClient.get_factory(config, LOGGER, call_id="rtc_1", websocket=object()) is None


def test_the_sideband_url_follows_the_base_scheme() -> None:
    assert sideband_url("http://127.0.0.1:9/v1", "rtc_1") == "ws://127.0.0.1:9/v1/realtime?call_id=rtc_1"
    assert sideband_url("https://r.openai.azure.com/openai/v1/", "rtc_1") == (
        "wss://r.openai.azure.com/openai/v1/realtime?call_id=rtc_1"
    )


@pytest.mark.parametrize(
    ("call_id", "top_level"),
    [("", {}), ("rtc/../x", {}), ("rtc_1", {"reconnect": {"tries": 3}}), ("rtc_1", {"ping_interval": 0})],
)
def test_unusable_arguments_are_config_errors(call_id: str, top_level: dict[str, Any]) -> None:
    with pytest.raises(RealtimeConfigError):
        OpenAIRealtimeSidebandClient(llm_config=llm_config("https://api.test/v1", **top_level), call_id=call_id)


def test_reconnect_delays_grow_jittered_and_capped() -> None:
    policy = ReconnectPolicy(initial_delay=0.5, max_delay=4.0)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        delays = [policy.delay(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)


# --- a call heard on the sideband ---------------------------------------------------------------------


async def test_the_sideband_hears_session_created_then_every_event_the_data_channel_gets(emulator: Emulator) -> None:
    peer, call_id = await start_call(emulator)
    frames: list[RawFrame] = []
    client = OpenAIRealtimeSidebandClient(
        llm_config=llm_config(emulator.base), call_id=call_id, logger=LOGGER, on_frame=frames.append
    )
    async with client.connect():
        reader = Reader(client)
        await reader.wait_for("session.created")
        assert client.connected and client.openai_session_id and client.openai_session_id.startswith("sess_")
        mark = len(peer.events)
        await emulator.control("POST", f"/_emulator/calls/{call_id}/turn")
        await reader.wait_for("response.done")
        await eventually(lambda: any(e["type"] == "response.done" for e in peer.events[mark:]), "browser done")

        assert isinstance(reader.events[0], SessionCreated)
        done = reader.of(ResponseDone)[0]
        assert done.status == "completed" and done.usage is not None and done.usage.total_tokens > 0
        # Same events, same ids, same order as the browser's data channel (after the sideband attached).
        sideband_ids = [event.event_id for event in reader.events[1:]]
        browser_ids = [event["event_id"] for event in peer.events[mark:]][: len(sideband_ids)]
        assert sideband_ids == browser_ids
    await asyncio.wait_for(reader.ended.wait(), 5)

    # The tap saw every frame that became an event, verbatim, in order.
    incoming = [frame for frame in frames if frame.direction == "from_openai"]
    assert [json.loads(frame.text)["event_id"] for frame in incoming] == [e.event_id for e in reader.events]
    assert {(frame.origin, frame.call_id) for frame in frames} == {("sideband", call_id)}
    assert client.end_reason == "closed"
    await peer.close()


async def test_a_tool_call_is_answered_over_the_sideband_and_drives_the_script(tool_emulator: Emulator) -> None:
    peer, call_id = await start_call(tool_emulator, {**SESSION, "tools": [CURRENT_TIME_TOOL]})
    frames: list[RawFrame] = []
    client = OpenAIRealtimeSidebandClient(
        llm_config=llm_config(tool_emulator.base), call_id=call_id, logger=LOGGER, on_frame=frames.append
    )
    async with client.connect():
        reader = Reader(client)
        await reader.wait_for("session.created")
        await tool_emulator.control("POST", f"/_emulator/calls/{call_id}/turn")
        await eventually(lambda: bool(reader.of(FunctionCall)), "the function call")
        call = reader.of(FunctionCall)[0]
        assert (call.name, call.arguments) == ("current_time", {"timezone": "UTC"})

        await client.send_function_result(call.call_id, "12:00 UTC")
        await reader.wait_for("response.done", count=2)
        replies = [e for e in reader.events if e.type == "response.output_audio_transcript.done"]
        assert replies and "12:00 UTC" in replies[-1].transcript  # type: ignore[attr-defined]

    sent = [json.loads(frame.text) for frame in frames if frame.direction == "to_openai"]
    assert [frame["type"] for frame in sent] == ["conversation.item.create", "response.create"]
    assert sent[0]["item"]["output"] == "12:00 UTC"  # as given, not encoded again
    recorded = await tool_emulator.call(call_id)
    assert [e["source"] for e in recorded["client_events"]] == ["sideband", "sideband"]
    await peer.close()


async def test_client_events_are_checked_before_they_are_sent(emulator: Emulator) -> None:
    peer, call_id = await start_call(emulator)
    frames: list[RawFrame] = []
    client = OpenAIRealtimeSidebandClient(llm_config=llm_config(emulator.base), call_id=call_id, on_frame=frames.append)
    with pytest.raises(RealtimeUpstreamUnavailableError, match="not open yet"):
        await client.send_event({"type": "response.create"})
    async with client.connect():
        with pytest.raises(ValueError):
            await client.send_event({"type": "ag2.error", "code": "x", "message": "y", "retryable": False})
        with pytest.raises(ValueError):
            await client.send_event({"type": "conversation.item.truncate", "item_id": "i", "content_index": -1})
        with pytest.raises(ValueError):
            await client.session_update({"voice": "alloy"})  # beta shape
        await client.session_update({"instructions": "Be brief."})
        reader = Reader(client)
        await reader.wait_for("session.updated")
    assert [json.loads(f.text)["type"] for f in frames if f.direction == "to_openai"] == ["session.update"]
    with pytest.raises(RealtimeUpstreamUnavailableError, match="has ended"):
        await client.send_event({"type": "response.create"})
    await peer.close()


# --- reconnection -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["abort", "close"])
async def test_a_dropped_socket_is_reconnected_and_the_gap_reported(emulator: Emulator, mode: str) -> None:
    peer, call_id = await start_call(emulator)
    gaps: list[SidebandGap] = []
    frames: list[RawFrame] = []
    client = OpenAIRealtimeSidebandClient(
        llm_config=llm_config(emulator.base), call_id=call_id, on_gap=gaps.append, on_frame=frames.append
    )
    async with client.connect():
        reader = Reader(client)
        await reader.wait_for("session.created")
        # Cut the socket for real, and refuse the next two attaches so reconnection needs backoff.
        dropped = await emulator.control(
            "POST", f"/_emulator/calls/{call_id}/sideband/drop", json={"mode": mode, "refuse": 2}
        )
        assert dropped.json() == {"dropped": 1, "refuse": 2}
        await eventually(lambda: not client.connected, "the drop to be noticed")
        # Sent during the gap: held, then delivered once reconnected.
        await client.session_update({"instructions": "Sent during the gap."})
        await reader.wait_for("ag2.sideband_gap")
        await reader.wait_for("session.created", count=2)
        await reader.wait_for("session.updated")
        assert client.connected

        await emulator.control("POST", f"/_emulator/calls/{call_id}/turn")
        await reader.wait_for("response.done")

    gap = reader.of(SidebandGap)[0]
    assert gaps == [gap] and client.gaps == [gap]
    assert gap.ended_at is not None and gap.ended_at >= gap.started_at and gap.attempts == 3
    assert gap.call_id == call_id and gap.raw_message["type"] == "ag2.sideband_gap"
    assert ("1011" in gap.reason) if mode == "close" else ("no close frame" in gap.reason)
    # Order in the stream: the gap, then the new attach's session.created, then the call goes on.
    index = reader.events.index(gap)
    assert reader.events[index + 1].type == "session.created"
    assert (await emulator.call(call_id))["session"]["instructions"] == "Sent during the gap."
    assert client.end_reason == "closed"
    await peer.close()


async def test_reconnection_gives_up_when_the_call_is_gone_and_the_stream_ends(emulator: Emulator) -> None:
    peer, call_id = await start_call(emulator)
    gaps: list[SidebandGap] = []
    client = OpenAIRealtimeSidebandClient(llm_config=llm_config(emulator.base), call_id=call_id, on_gap=gaps.append)
    await client.open()
    reader = Reader(client)
    await reader.wait_for("session.created")
    await emulator.control("POST", f"/_emulator/calls/{call_id}/sideband/drop", json={"refuse": 5, "status": 404})

    await asyncio.wait_for(reader.ended.wait(), 5)
    assert client.end_reason == "gave_up"
    assert isinstance(client.failure, RealtimeRequestRejectedError) and client.failure.status_code == 404
    assert len(gaps) == 1 and gaps[0].ended_at is None and gaps[0].attempts == 1  # a 404 is not retried
    assert reader.events[-1] == gaps[0]
    with pytest.raises(RealtimeUpstreamUnavailableError):
        await client.send_event({"type": "response.create"})
    await client.close()
    await client.close()  # idempotent
    await peer.close()


async def test_reconnection_stops_after_the_policys_attempts(emulator: Emulator) -> None:
    peer, call_id = await start_call(emulator)
    config = llm_config(emulator.base, reconnect={"initial_delay": 0.01, "max_delay": 0.02, "max_attempts": 3})
    client = OpenAIRealtimeSidebandClient(llm_config=config, call_id=call_id)
    async with client.connect():
        reader = Reader(client)
        await reader.wait_for("session.created")
        await emulator.control("POST", f"/_emulator/calls/{call_id}/sideband/drop", json={"refuse": 10})
        await asyncio.wait_for(reader.ended.wait(), 5)

    assert client.end_reason == "gave_up" and client.gaps[0].attempts == 3
    assert isinstance(client.failure, RealtimeUpstreamUnavailableError) and client.failure.status_code == 503
    await peer.close()


async def test_hanging_up_ends_the_stream_without_reconnecting(emulator: Emulator) -> None:
    peer, call_id = await start_call(emulator)
    client = OpenAIRealtimeSidebandClient(llm_config=llm_config(emulator.base), call_id=call_id)
    async with client.connect():
        reader = Reader(client)
        await reader.wait_for("session.created")
        hung_up = await emulator.control("POST", f"/v1/realtime/calls/{call_id}/hangup", headers=_auth())
        assert hung_up.status_code == 200
        await asyncio.wait_for(reader.ended.wait(), 5)
        assert client.end_reason == "call_ended" and client.gaps == [] and not client.connected
    await peer.close()


# --- opening, failures, lifecycle ---------------------------------------------------------------------


async def test_opening_a_sideband_to_an_unknown_call_is_a_rejected_request(emulator: Emulator) -> None:
    client = OpenAIRealtimeSidebandClient(llm_config=llm_config(emulator.base), call_id="rtc_unknown")
    with pytest.raises(RealtimeRequestRejectedError) as excinfo:
        async with client.connect():
            pytest.fail("must not get here")
    assert excinfo.value.status_code == 404 and excinfo.value.upstream_code == "call_not_found"
    assert client.end_reason == "open_failed"
    assert [event async for event in client.read_events()] == []  # the stream has ended, nothing hangs


async def test_a_refused_key_is_an_auth_error_that_never_shows_the_key(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="voice.realtime.sideband.wire")  # websockets' handshake log
    peer, call_id = await start_call(emulator)
    bad_key = "not-a-standard-key-SECRET-0123456789"
    client = OpenAIRealtimeSidebandClient(llm_config=llm_config(emulator.base, key=bad_key), call_id=call_id)
    with pytest.raises(RealtimeAuthError) as excinfo:
        await client.open()
    texts = [str(excinfo.value), repr(excinfo.value), excinfo.value.message, caplog.text, repr(client)]
    assert excinfo.value.code == "openai_auth_failed"
    assert all("SECRET" not in text for text in texts)
    assert "Authorization: [redacted]" in caplog.text  # websockets' handshake log, with the header masked
    await peer.close()


async def test_an_unreachable_api_is_unavailable_and_retryable() -> None:
    client = OpenAIRealtimeSidebandClient(llm_config=llm_config("http://127.0.0.1:9/v1", timeout=2), call_id="rtc_1")
    with pytest.raises(RealtimeUpstreamUnavailableError) as excinfo:
        await client.open()
    assert excinfo.value.retryable


async def test_read_events_without_connect_attaches_by_itself_and_leaves_nothing_running(emulator: Emulator) -> None:
    peer, call_id = await start_call(emulator)
    client = OpenAIRealtimeSidebandClient(llm_config=llm_config(emulator.base), call_id=call_id)
    events = client.read_events()
    first = await events.__anext__()
    assert isinstance(first, SessionCreated) and client.connected
    await events.aclose()

    assert not client.connected and client.end_reason == "closed"
    assert not [task for task in asyncio.all_tasks() if task.get_name().startswith("sideband-")]
    assert (await emulator.call(call_id))["status"] == "active"  # closing the sideband does not end the call
    await peer.close()


async def test_a_reader_failure_is_logged_and_ends_the_stream(
    emulator: Emulator, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    peer, call_id = await start_call(emulator)
    client = OpenAIRealtimeSidebandClient(llm_config=llm_config(emulator.base), call_id=call_id, logger=LOGGER)

    def broken_parse(text: str) -> RealtimeEvent:
        raise RuntimeError("parser bug")

    monkeypatch.setattr(client, "_parse", broken_parse)
    async with client.connect():
        reader = Reader(client)
        await asyncio.wait_for(reader.ended.wait(), 5)
    assert client.end_reason == "reader_failed"
    failure = [r for r in caplog.records if "reader of call" in r.getMessage()]
    assert failure and failure[0].levelno == logging.ERROR and failure[0].exc_info is not None
    await peer.close()


async def test_a_failing_tap_or_gap_callback_costs_nothing(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    peer, call_id = await start_call(emulator)

    def bad_tap(frame: RawFrame) -> None:
        raise ValueError("tap bug")

    async def bad_gap(gap: SidebandGap) -> None:
        raise ValueError("gap bug")

    client = OpenAIRealtimeSidebandClient(
        llm_config=llm_config(emulator.base), call_id=call_id, on_frame=bad_tap, on_gap=bad_gap
    )
    async with client.connect():
        reader = Reader(client)
        await reader.wait_for("session.created")
        await emulator.control("POST", f"/_emulator/calls/{call_id}/sideband/drop")
        await reader.wait_for("session.created", count=2)
        await emulator.control("POST", f"/_emulator/calls/{call_id}/turn")
        await reader.wait_for("response.done")
    assert sum("tap failed" in r.getMessage() for r in caplog.records) == 1  # logged once
    assert any("on_gap callback failed" in r.getMessage() for r in caplog.records)
    await peer.close()


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}
