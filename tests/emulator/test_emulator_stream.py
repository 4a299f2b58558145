"""Streamed turns (``POST /_emulator/calls/{id}/stream``, for the server-mode benchmarks): the same events,
in the same order and the same GA shapes, as the same turns played one by one at the script's pace; tool
calls still wait for the client's answer; a paced sideband never goes faster than its rate; bad requests
get OpenAI-shaped errors."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.emulator.test_emulator_call import fast_script
from tests.emulator.test_emulator_sideband import RawSideband
from tests.server_mode import CURRENT_TIME_TOOL, SESSION, eventually, running_emulator, start_call
from voice.realtime.events import InvalidFrame, parse_frame

CALCULATOR_TOOL = {
    "type": "function",
    "name": "calculator",
    "description": "Evaluate an arithmetic expression.",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
}
TOOL_SESSION = {**SESSION, "tools": [CURRENT_TIME_TOOL, CALCULATOR_TOOL]}
OUTPUTS = {"current_time": {"timezone": "Europe/Lisbon", "iso": "2026-12-01T09:30:00+00:00"},
           "calculator": {"expression": "3.10 * 7", "result": 21.7}}


class AnsweringSideband(RawSideband):
    """A bare sideband client that answers every function call at once, as the server's ToolObserver does."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.answered = 0

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                event = json.loads(message)
                self.events.append(event)
                if event["type"] == "response.function_call_arguments.done":
                    output = json.dumps(OUTPUTS[event["name"]])
                    await self.send({"type": "conversation.item.create",
                                     "item": {"type": "function_call_output", "call_id": event["call_id"],
                                              "output": output}})
                    await self.send({"type": "response.create"})
                    self.answered += 1
        except Exception:
            pass
        self.closed.set()


def _shape(events: list[dict[str, Any]]) -> list[str]:
    """The event sequence without ids or timings: types, with the response status and the item type."""
    shape = []
    for event in events:
        kind = event["type"]
        if kind == "response.done":
            kind += ":" + event["response"]["status"]
        if kind.startswith("conversation.item.") and "item" in event:
            kind += ":" + event["item"]["type"]
        shape.append(kind)
    return shape


async def _stream_status(emulator: Any, call_id: str) -> dict[str, Any]:
    return (await emulator.control("GET", f"/_emulator/calls/{call_id}/stream")).json()


async def test_streamed_turns_are_the_same_events_as_turns_at_the_scripts_pace() -> None:
    turns = 4  # the script's four turns: two replies, a clock call and a calculator call
    async with running_emulator(fast_script("stream")) as emulator:
        paced_peer, paced_id = await start_call(emulator, TOOL_SESSION)
        async with AnsweringSideband(emulator, paced_id) as paced:
            await paced.wait_for("session.created")
            for n in range(turns):
                await emulator.control("POST", f"/_emulator/calls/{paced_id}/turn")
                # Every turn ends with one spoken reply (after the tool round trip, in a tool turn).
                await eventually(lambda n=n: paced.types().count("output_audio_buffer.stopped") == n + 1,
                                 "the reply's audio to end", within=10)
        streamed_peer, streamed_id = await start_call(emulator, TOOL_SESSION)
        async with AnsweringSideband(emulator, streamed_id) as streamed:
            await streamed.wait_for("session.created")
            started = await emulator.control("POST", f"/_emulator/calls/{streamed_id}/stream", json={"turns": turns})
            assert started.status_code == 202 and started.json()["running"] is True
            await eventually(lambda: streamed.answered == 2, "both tool calls answered", within=10)

            async def finished() -> dict[str, Any]:
                return await _stream_status(emulator, streamed_id)

            deadline = time.monotonic() + 10
            status = await finished()
            while status["running"] and time.monotonic() < deadline:
                status = await finished()
            assert status["turns_done"] == turns and status["error"] is None
            await eventually(lambda: len(streamed.events) == status["sideband_events_sent"], "every event")
        assert _shape(streamed.events) == _shape(paced.events)
        assert streamed.types().count("response.function_call_arguments.done") == 2
        # Every event is a GA server event the project's one parser reads without complaint.
        assert not [e for e in streamed.events if isinstance(parse_frame(json.dumps(e)), InvalidFrame)]
        # The tool outputs are quoted in the replies, as at the script's pace.
        transcripts = [e["transcript"] for e in streamed.events if e["type"] == "response.output_audio_transcript.done"]
        assert any("21.7 euros" in text for text in transcripts)
        await paced_peer.close()
        await streamed_peer.close()


async def test_a_paced_sideband_sends_no_faster_than_its_rate() -> None:
    rate = 400.0
    async with running_emulator(fast_script("stream")) as emulator:
        peer, call_id = await start_call(emulator, SESSION)  # no tools: replies only
        async with RawSideband(emulator, call_id) as sideband:
            await sideband.wait_for("session.created")
            before = len(sideband.events)
            started = time.monotonic()
            response = await emulator.control("POST", f"/_emulator/calls/{call_id}/stream",
                                              json={"turns": 3, "rate": rate})
            assert response.status_code == 202
            # While it runs, a second stream (or a turn) is refused like a turn during a response.
            again = await emulator.control("POST", f"/_emulator/calls/{call_id}/stream", json={"turns": 1})
            assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
            await eventually(lambda: sideband.types().count("response.done") == 3, "three replies", within=20)
            await eventually(lambda: sideband.types()[-1] == "output_audio_buffer.stopped", "the last audio end")
            elapsed = time.monotonic() - started
            sent = len(sideband.events) - before
            assert sent > 60
            # The pace is a ceiling: n events at `rate` take at least (n - 1) / rate seconds.
            assert elapsed >= (sent - 1) / rate
            status = await _stream_status(emulator, call_id)
            assert status["rate"] == rate and status["turns_done"] == 3 and status["running"] is False
        await peer.close()


async def test_stream_requests_are_checked() -> None:
    async with running_emulator(fast_script("stream")) as emulator:
        peer, call_id = await start_call(emulator, SESSION)
        bad = [{}, {"turns": 0}, {"turns": True}, {"turns": 2, "rate": 0}, {"turns": 2, "rate": "fast"},
               {"turns": 2, "pace": 10}, [1]]
        for body in bad:
            response = await emulator.control("POST", f"/_emulator/calls/{call_id}/stream", json=body)
            assert response.status_code == 400, body
            assert response.json()["error"]["type"] == "invalid_request_error"
        unknown = await emulator.control("POST", "/_emulator/calls/rtc_nosuchcall/stream", json={"turns": 1})
        assert unknown.status_code == 404
        assert (await _stream_status(emulator, call_id))["running"] is False
        await peer.close()
