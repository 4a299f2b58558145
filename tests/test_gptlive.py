"""GPT-Live (docs/gpt-live.md): the client (create, sideband, events, close) against the real emulator on
loopback, the emulator's wire checked against the reference's shapes, and the mapping rules on their own."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.emulator.test_emulator_call import fast_script
from tests.server_mode import API_KEY, BrowserPeer, Emulator, eventually, running_emulator
from voice.agent import Observer, VoiceAgent, make_tool
from voice.realtime import (
    GPTLiveSidebandClient,
    OpenAIRealtimeSidebandClient,
    RealtimeConfigError,
    RealtimeRequestRejectedError,
    create_live_session,
    get_client,
    live_hangup,
)
from voice.realtime.events import ErrorEvent, FunctionCall, RealtimeEvent
from voice.realtime.gptlive import LiveEventMapper, attach_url, bounded_content
from voice.realtime.gptlive_events import (
    LiveAudioCopy,
    LiveBackendResponseDone,
    LiveDelegationEnded,
    LiveDelegationStarted,
    LiveSessionClosed,
    LiveSessionStarted,
    LiveTranscriptDelta,
    LiveTranscriptLineDone,
    LiveUsage,
)
from voice.realtime.gptlive_schema import (
    MAX_APPEND_CHARS,
    validate_live_client_event,
    validate_live_server_event,
)

CLIENT_SESSION: dict[str, Any] = {"model": "gpt-live-1.1", "instructions": "Be brief.",
                                  "audio": {"output": {"voice": "marin"}}, "delegation": {"type": "client"},
                                  "ag2_live": {"backend_tool": "current_time"}}
TOOL = {"type": "function", "name": "current_time", "description": "The time.",
        "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}}}
RESPONSES_SESSION: dict[str, Any] = {
    "model": "gpt-live-1", "instructions": "Be brief.",
    "delegation": {"type": "responses", "responses": {"model": "gpt-5.5", "tools": [TOOL], "tool_choice": "auto"}},
}


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    async with running_emulator(fast_script("tool_call")) as emulator:
        yield emulator


def llm_config(emulator: Emulator, **gptlive: Any) -> dict[str, Any]:
    return {"config_list": [{"model": "gpt-live-1.1", "api_key": API_KEY, "base_url": emulator.base}],
            "protocol": "gpt-live", "gptlive": {"transcript_gap_ms": 1500, **gptlive}}


async def start_session(emulator: Emulator, session: dict[str, Any]) -> tuple[BrowserPeer, str]:
    peer = BrowserPeer()
    answer, session_id = await create_live_session(emulator.base, await peer.offer(), session, api_key=API_KEY)
    await peer.answer(answer)
    return peer, session_id


class Reader:
    """Reads a client's typed events; answers each FunctionCall with `output` (as the tool observer would)."""

    def __init__(self, client: GPTLiveSidebandClient, output: str) -> None:
        self.client, self.output, self.events = client, output, []  # type: list[RealtimeEvent]
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for event in self.client.read_events():
            self.events.append(event)
            if isinstance(event, FunctionCall):
                await self.client.send_function_result(event.call_id, self.output)

    def of(self, cls: type[RealtimeEvent]) -> list[Any]:
        return [e for e in self.events if type(e) is cls]


async def test_a_live_session_with_a_delegation_to_this_server_from_creation_to_close(emulator: Emulator) -> None:
    peer, session_id = await start_session(emulator, CLIENT_SESSION)
    assert session_id.startswith("live_")
    client = get_client(llm_config(emulator, backend_tool="current_time"), logging.getLogger("test"),
                        call_id=session_id)
    assert isinstance(client, GPTLiveSidebandClient)
    async with client.connect():
        reader = Reader(client, json.dumps({"time": "12:00"}))
        await eventually(lambda: reader.of(LiveSessionStarted), "the replayed session.started")
        assert client.openai_session_id == session_id and client.started
        turn = await emulator.control("POST", f"/_emulator/calls/{session_id}/turn", json={})
        assert turn.status_code == 202
        await eventually(lambda: any(e.role == "assistant" and "12:00" in e.delta
                                     for e in reader.of(LiveTranscriptDelta)), "the reply quoting the tool", 10)
        await client.close_session()
        await asyncio.wait_for(reader.task, 5)  # session.closed, then the sideband closes (1000): the stream ends
    await peer.close()

    calls = reader.of(FunctionCall)
    assert [(c.name, c.arguments) for c in calls] == [("current_time", {})]
    # The delegation was answered once, with commentary carrying its id; the append was acknowledged.
    state = await emulator.call(session_id)
    sent = [c["event"] for c in state["client_events"]]
    assert sent[0] == {"type": "session.commentary.append", "delegation_id": calls[0].call_id,
                       "content": '{"time": "12:00"}'}
    assert sent[-1] == {"type": "session.close"}
    assert "session.commentary.appended" in state["server_event_types"]
    # Transcript lines: the user's, then the assistant's naming it as the line before; times kept.
    deltas = reader.of(LiveTranscriptDelta)
    user = [d for d in deltas if d.role == "user"]
    assistant = [d for d in deltas if d.role == "assistant"]
    assert "".join(d.delta for d in user) == "What time is it in UTC?"
    assert {d.line_id for d in user} == {user[0].line_id}
    assert assistant[0].previous_line_id == user[0].line_id
    assert all(d.start_ms is not None and d.end_ms is not None and d.start_ms < d.end_ms for d in deltas)
    assert assistant[0].start_ms >= user[-1].end_ms  # type: ignore[operator]
    assert {e.line_id for e in reader.of(LiveTranscriptLineDone)} == {user[0].line_id, assistant[0].line_id}
    final = reader.of(LiveUsage)[-1]
    assert final.final and final.seconds > 0
    assert reader.of(LiveSessionClosed)[0].reason == "close_requested"
    copies = reader.of(LiveAudioCopy)
    assert {c.direction for c in copies} >= {"output"}
    assert all(c.start_ms is not None for c in copies if c.direction == "output")
    # The wire as the reference describes it: every server event the emulator sent has its type's fields.
    for event in state["server_events"]:
        validate_live_server_event(event)
    for event in sent:
        validate_live_client_event(event)


async def test_a_responses_delegation_round_trip_runs_the_function_then_continues(emulator: Emulator) -> None:
    peer, session_id = await start_session(emulator, RESPONSES_SESSION)
    client = get_client(llm_config(emulator, delegation="responses", responses_model="gpt-5.5"),
                        logging.getLogger("test"), call_id=session_id)
    async with client.connect():
        reader = Reader(client, json.dumps({"time": "09:30"}))
        await eventually(lambda: reader.of(LiveSessionStarted), "session.started")
        await emulator.control("POST", f"/_emulator/calls/{session_id}/turn", json={})
        await eventually(lambda: reader.of(LiveDelegationEnded), "the delegation's end", 10)
        await client.close_session()
        await asyncio.wait_for(reader.task, 5)
    await peer.close()

    started = reader.of(LiveDelegationStarted)[0]
    assert started.target == "responses" and started.response_id
    call = reader.of(FunctionCall)[0]
    assert (call.name, call.arguments) == ("current_time", {"timezone": "UTC"})
    ended = reader.of(LiveDelegationEnded)[0]
    assert ended.delegation_id == started.delegation_id and ended.status == "succeeded"
    assert "09:30" in ended.output and ended.duration_ms is not None
    backend = reader.of(LiveBackendResponseDone)
    assert len(backend) == 2 and all(b.model == "gpt-5.5" and b.usage and b.usage.input_tokens > 0 for b in backend)
    state = await emulator.call(session_id)
    sent = [c["event"]["type"] for c in state["client_events"]]
    # One result, then one continuation, after the first response ended (the reference, 4.2).
    assert sent == ["response.item.create", "response.create", "session.close"]
    for event in state["server_events"]:
        validate_live_server_event(event)


async def test_the_emulator_refuses_what_gpt_live_refuses(emulator: Emulator) -> None:
    peer = BrowserPeer()
    offer = await peer.offer()
    headers = {"Authorization": f"Bearer {API_KEY}"}
    body = {"session": {"model": "gpt-live-1", "voice": "marin"}, "transport": {"type": "webrtc", "sdp": offer}}
    unknown = await emulator.control("POST", "/v1/live/sessions", json=body, headers=headers)
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "unknown_parameter"
    assert unknown.json()["error"]["param"] == "session.voice"
    body["session"] = {"model": "gpt-live-1"}
    query = await emulator.control("POST", "/v1/live/sessions?model=gpt-live-1", json=body, headers=headers)
    assert (query.status_code, query.json()["error"]["code"]) == (400, "unknown_parameter")
    raw = await emulator.control("POST", "/v1/live/sessions", content=offer,
                                 headers={**headers, "Content-Type": "application/sdp"})
    assert raw.status_code == 415
    nokey = await emulator.control("POST", "/v1/live/sessions", json=body)
    assert nokey.status_code == 401
    gone = await emulator.control("POST", "/v1/live/sessions/live_nope/hangup", headers=headers)
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "session_id_not_found")
    assert await live_hangup(emulator.base, "live_nope", api_key=API_KEY)  # already over counts as hung up
    await peer.close()


async def test_the_client_checks_the_session_and_turns_refusals_into_typed_errors(emulator: Emulator) -> None:
    peer = BrowserPeer()
    offer = await peer.offer()
    with pytest.raises(RealtimeConfigError, match=r"audio\.output\.speed"):
        await create_live_session(emulator.base, offer, {"model": "gpt-live-1", "audio": {"output": {"speed": 1}}},
                                  api_key=API_KEY)
    await emulator.control("POST", "/_emulator/faults", json={"calls_status": 400, "count": 1})
    with pytest.raises(RealtimeRequestRejectedError, match="HTTP 400"):
        await create_live_session(emulator.base, offer, {"model": "gpt-live-1"}, api_key=API_KEY)
    await peer.close()


async def test_sideband_errors_and_the_browsers_channel_follow_the_sessions_rules(emulator: Emulator) -> None:
    session = {**CLIENT_SESSION, "client": {"data_channel": {
        "allowed_client_events": [], "allowed_server_events": [{"type": "session.started"}]}}}
    peer, session_id = await start_session(emulator, session)
    client = get_client(llm_config(emulator), logging.getLogger("test"), call_id=session_id)
    async with client.connect():
        reader = Reader(client, "unused")
        await eventually(lambda: reader.of(LiveSessionStarted), "session.started")
        # Not a known client delegation; response.* under client delegation: both refused, the session goes on.
        await client.send_event({"type": "session.thinking.append", "delegation_id": "item_unknown",
                                 "content": "x", "event_id": "evt_1"})
        await client.send_event({"type": "response.create", "event_id": "evt_2"})
        await eventually(lambda: len(reader.of(ErrorEvent)) == 2, "two errors")
        peer.channel.send(json.dumps({"type": "session.close"}))  # the browser may send nothing
        await eventually(lambda: len(reader.of(ErrorEvent)) == 3, "the browser's event refused")
        with pytest.raises(ValueError):
            await client.send_event({"type": "session.start", "session": {}})  # never on a sideband
        await client.close_session()
        await asyncio.wait_for(reader.task, 5)
    await peer.close()
    codes = [e.code for e in reader.of(ErrorEvent)]
    assert codes == ["invalid_value", "invalid_request", "event_not_allowed"]
    assert [e.raw_message["error"].get("client_event_id") for e in reader.of(ErrorEvent)[:2]] == ["evt_1", "evt_2"]
    # The browser's channel carried only what the session allowed.
    assert {e["type"] for e in peer.events} == {"session.started"}


async def test_a_sideband_attaching_late_gets_session_started_replayed(emulator: Emulator) -> None:
    peer, session_id = await start_session(emulator, CLIENT_SESSION)
    await eventually(lambda: True)
    async with httpx.AsyncClient() as http:  # the session has started before anyone attaches
        for _ in range(100):
            state = (await http.get(emulator.base.replace("/v1", f"/_emulator/calls/{session_id}"))).json()
            if "session.started" in state["server_event_types"]:
                break
            await asyncio.sleep(0.02)
    for _ in range(2):
        client = get_client(llm_config(emulator), logging.getLogger("test"), call_id=session_id)
        async with client.connect():
            first = await asyncio.wait_for(client.get_event(), 5)
            assert isinstance(first, LiveSessionStarted) and first.session_id == session_id
    assert await live_hangup(emulator.base, session_id, api_key=API_KEY)
    await peer.close()


def test_the_registry_picks_the_protocol_by_the_config() -> None:
    base = {"config_list": [{"model": "gpt-live-1", "api_key": "sk-x"}]}
    live = get_client({**base, "protocol": "gpt-live"}, logging.getLogger("t"), call_id="live_1")
    realtime = get_client(base, logging.getLogger("t"), call_id="rtc_1")
    assert type(live) is GPTLiveSidebandClient and type(realtime) is OpenAIRealtimeSidebandClient
    assert attach_url("https://api.openai.com/v1", "live_1") == "wss://api.openai.com/v1/live/sessions/live_1/attach"


# --- the mapping rules, on their own ---------------------------------------------------------------------


def _fragment(kind: str, delta: str, start: int, end: int) -> dict[str, Any]:
    return {"type": f"session.{kind}_transcript.delta", "event_id": "e", "delta": delta, "start_ms": start,
            "end_ms": end}


def test_fragments_become_lines_by_speaker_and_silence() -> None:
    mapper = LiveEventMapper(gap_ms=1000)
    out: list[RealtimeEvent] = []
    for message in (_fragment("input", "Table", 0, 300), _fragment("input", " for two", 300, 800),
                    _fragment("output", "Sure", 900, 1200),
                    _fragment("input", ".", 850, 900),  # the user's punctuation, late: still the user's line
                    _fragment("output", " thing.", 1200, 1500),
                    _fragment("output", "Anything else?", 4000, 4500),  # after a long silence: a new line
                    {"type": "session.closed", "event_id": "c", "reason": "close_requested",
                     "session": {"id": "live_1", "model": "gpt-live-1", "status": "active"},
                     "usage": {"seconds": 4.5}}):
        out += mapper.map(message)
    deltas = [e for e in out if isinstance(e, LiveTranscriptDelta)]
    lines: dict[str, str] = {}
    for d in deltas:
        lines[d.line_id] = lines.get(d.line_id, "") + d.delta
    assert list(lines.values()) == ["Table for two.", "Sure thing.", "Anything else?"]
    ids = list(lines)
    assert [d.previous_line_id for d in deltas if d.previous_line_id] == [ids[0], ids[1]]
    done = [e.line_id for e in out if isinstance(e, LiveTranscriptLineDone)]
    assert sorted(done) == sorted(ids)  # every line ends: by the rule, or with the session
    assert isinstance(out[-2], LiveUsage) and out[-2].final and out[-2].seconds == 4.5


def test_reference_example_payloads_are_read() -> None:
    mapper = LiveEventMapper(backend_tool="lookup_order", request_argument="request")
    mapper.map(_fragment("input", "Where is my order?", 0, 900))
    (call,) = mapper.map({"type": "session.delegation.created", "event_id": "event_delegation", "offset_ms": 1000,
                          "delegation": {"id": "item_9tA2bF3h7K9m2P5q8R1s4", "type": "delegation",
                                         "target": "client"}})
    assert isinstance(call, FunctionCall)
    assert (call.name, call.call_id, call.arguments) == ("lookup_order", "item_9tA2bF3h7K9m2P5q8R1s4",
                                                         {"request": "Where is my order?"})
    # Claimed once: the same id again runs nothing.
    again = mapper.map({"type": "session.delegation.created", "event_id": "x", "offset_ms": 1,
                        "delegation": {"id": "item_9tA2bF3h7K9m2P5q8R1s4", "type": "delegation", "target": "client"}})
    assert not any(isinstance(e, FunctionCall) for e in again)
    (usage,) = mapper.map({"type": "session.usage.updated", "event_id": "evt_usage_001", "usage": {"seconds": 32.5},
                           "context_window": {"usage_ratio": 0.12}})
    assert isinstance(usage, LiveUsage) and (usage.seconds, usage.final) == (32.5, False)
    (error,) = mapper.map({"type": "error", "event_id": "evt_error_001", "error": {
        "type": "invalid_request_error", "code": "unknown_parameter", "message": "Unknown parameter: 'session.voice'.",
        "param": "session.voice", "client_event_id": "evt_invalid_001"}})
    assert isinstance(error, ErrorEvent) and error.code == "unknown_parameter"
    for text in ('{"type":"session.input_audio.append","audio":"AACAAIAAAIAAAP9/AIAAgA=="}',
                 '{"type":"session.output_audio.delta","delta":"AACAAIAAAIAAAP9/AIAAgA==","start_ms":1000,'
                 '"end_ms":1200}'):
        validate_live_server_event(json.loads(text))
        (copy,) = mapper.map_frame(text)
        assert isinstance(copy, LiveAudioCopy)
    unreadable = mapper.map_frame("{not json")
    assert unreadable[0].type == "ag2.invalid_frame"


def test_appends_are_bounded_to_gpt_lives_limit() -> None:
    long = "x" * (MAX_APPEND_CHARS * 2)
    assert len(bounded_content(long)) <= MAX_APPEND_CHARS and bounded_content(long).endswith("(cut short)")
    assert bounded_content("  ") == "(no result)"


# --- delegations to this server: bounded in time, cancelled with the session -------------------------------


class Finished(Observer):
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, float]] = []

    async def on_tool_finished(self, call_id: str, name: str, output: str, status: Any, duration: float) -> None:
        self.calls.append((call_id, status, output, duration))


async def _delegating_agent(emulator: Emulator, tool: Any) -> tuple[VoiceAgent, Finished, str, BrowserPeer]:
    peer, session_id = await start_session(emulator, CLIENT_SESSION)
    client = get_client(llm_config(emulator, backend_tool=tool.name), logging.getLogger("test"), call_id=session_id)
    finished = Finished()
    agent = VoiceAgent(client=client, tools=[tool], observers=[finished])
    return agent, finished, session_id, peer


async def test_a_delegation_is_bounded_by_its_tools_timeout_and_gpt_live_hears_why(emulator: Emulator) -> None:
    async def lookup() -> str:
        await asyncio.sleep(5)
        return "never"

    agent, finished, session_id, peer = await _delegating_agent(
        emulator, make_tool(lookup, name="current_time", timeout=0.2))
    run = asyncio.create_task(agent.run())
    await eventually(lambda: agent.client.started, "session.started")  # type: ignore[attr-defined]
    await emulator.control("POST", f"/_emulator/calls/{session_id}/turn", json={})
    await eventually(lambda: finished.calls, "the delegation's end", 5)
    call_id, status, output, duration = finished.calls[0]
    assert status == "timed_out" and 0.2 <= duration < 2 and json.loads(output)["error"]["type"] == "timeout"
    state = await emulator.call(session_id)
    appended = [c["event"] for c in state["client_events"] if c["event"]["type"] == "session.commentary.append"]
    assert appended == [{"type": "session.commentary.append", "delegation_id": call_id, "content": output}]
    await agent.client.close_session()  # type: ignore[attr-defined]
    await asyncio.wait_for(run, 5)
    await peer.close()


async def test_a_delegation_still_running_when_the_session_closes_is_cancelled_and_recorded(
    emulator: Emulator,
) -> None:
    started = asyncio.Event()

    async def lookup() -> str:
        started.set()
        await asyncio.sleep(30)
        return "never"

    agent, finished, session_id, peer = await _delegating_agent(
        emulator, make_tool(lookup, name="current_time", timeout=60))
    run = asyncio.create_task(agent.run())
    await eventually(lambda: agent.client.started, "session.started")  # type: ignore[attr-defined]
    await emulator.control("POST", f"/_emulator/calls/{session_id}/turn", json={})
    await asyncio.wait_for(started.wait(), 5)
    await agent.client.close_session()  # type: ignore[attr-defined]
    await asyncio.wait_for(run, 5)  # the session closed: the run ends without waiting for the tool
    ((_, status, output, _),) = finished.calls
    assert status == "failed" and json.loads(output)["error"]["type"] == "cancelled"
    state = await emulator.call(session_id)
    assert not [c for c in state["client_events"] if c["event"]["type"] == "session.commentary.append"]
    assert state["end_reason"] == "close_requested"
    await peer.close()
