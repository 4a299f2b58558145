"""Barge-in: speaking over the emulated model interrupts it as OpenAI's server VAD does on WebRTC.

Real aiortc peers, as in test_emulator_call.py: the "user" is a tone on the microphone track, switched
on while the assistant's audio plays. Also: the bundled demo script runs end to end (turns, two tool
calls, an interruption).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from realtime_emulator.app import create_app
from realtime_emulator.script import Script, load_script
from tests.emulator.test_emulator_call import (
    CURRENT_TIME_TOOL,
    FAST,
    KEY,
    LOUD,
    TRANSCRIBED_SESSION,
    ClientPeer,
    fast_script,
)
from voice.tools.builtin import calculator, current_time

CALCULATOR_TOOL = {
    "type": "function",
    "name": "calculator",
    "description": "Evaluate an arithmetic expression.",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
}
TOOL_SESSION = {**TRANSCRIBED_SESSION, "tools": [CURRENT_TIME_TOOL, CALCULATOR_TOOL], "tool_choice": "auto"}


@pytest.fixture
async def start() -> AsyncIterator[Callable[..., Any]]:
    """``await start(script, session)`` -> (http client, connected peer), as in test_emulator_call.py."""
    opened: list[tuple[TestClient, ClientPeer]] = []

    async def _start(script: Script, session: dict[str, Any]) -> tuple[TestClient, ClientPeer]:
        http = TestClient(TestServer(create_app(script=script), host="127.0.0.1"))
        await http.start_server()
        peer = ClientPeer()
        opened.append((http, peer))
        minted = await http.post("/v1/realtime/client_secrets", json={"session": session}, headers=KEY)
        assert minted.status == 200, await minted.text()
        await peer.connect(http, (await minted.json())["value"])
        return http, peer

    yield _start
    for http, peer in opened:
        await peer.close()
        await http.close()


def barge_in_script(*, delta_ms: int = 10, audio_ms_per_word: int = FAST.audio_ms_per_word,
                    barge_in: bool = True) -> Script:
    """The demo's conversation at test speed; generation pace ``delta_ms`` per word."""
    # Utterances end by silence (see speak), never by max_utterance_ms, however slow the machine.
    script = fast_script("demo", min_speech_ms=20, max_utterance_ms=5000, barge_in=barge_in)
    timing = FAST.model_copy(update={"delta_ms": delta_ms, "audio_ms_per_word": audio_ms_per_word})
    return script.model_copy(update={"timing": timing})


async def speak(peer: ClientPeer, *, after: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """A short utterance ended by silence, as a person speaks; return speech_started and speech_stopped.

    (Ended by max_utterance_ms instead, the tone still in flight would barge in on the reply at once.)
    """
    peer.mic.playing = True
    try:
        started = await peer.wait_for("input_audio_buffer.speech_started", after=after)
        await asyncio.sleep(0.15)
    finally:
        peer.mic.playing = False
    stopped = await peer.wait_for(
        "input_audio_buffer.speech_stopped", lambda e: e["item_id"] == started["item_id"], after=after
    )
    return started, stopped


def types_from(peer: ClientPeer, mark: int, wanted: set[str]) -> list[str]:
    return [e["type"] for e in peer.events[mark:] if e["type"] in wanted]


INTERRUPTION = {
    "input_audio_buffer.speech_started",
    "response.done",
    "output_audio_buffer.cleared",
    "conversation.item.truncated",
    "output_audio_buffer.stopped",
}


async def test_speaking_over_a_reply_still_being_generated_cancels_it_clears_the_audio_and_truncates_it(
    start: Callable[..., Any],
):
    # 100 ms a word: the 25-word first reply is still being generated when the user cuts in (2.5 s of
    # generation, 7.5 s of audio: room enough on a loaded machine).
    http, peer = await start(barge_in_script(delta_ms=100, audio_ms_per_word=300), TOOL_SESSION)
    await peer.wait_for("session.created")
    await speak(peer)
    audio_started = await peer.wait_for("output_audio_buffer.started", within=5)
    response_id = audio_started["response_id"]
    await peer.wait_for("response.output_audio_transcript.delta")
    await asyncio.sleep(0.3)

    mark = len(peer.events)
    started, _ = await speak(peer, after=mark)
    truncated = await peer.wait_for("conversation.item.truncated", after=mark)

    assert types_from(peer, mark, INTERRUPTION)[:4] == [
        "input_audio_buffer.speech_started",
        "response.done",
        "output_audio_buffer.cleared",
        "conversation.item.truncated",
    ]
    assert "output_audio_buffer.stopped" not in types_from(peer, mark, INTERRUPTION)[:4]
    done = await peer.wait_for("response.done", after=mark)
    assert done["response"]["id"] == response_id
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    item = done["response"]["output"][0]
    assert item["status"] == "incomplete"
    cleared = await peer.wait_for("output_audio_buffer.cleared", after=mark)
    assert cleared["response_id"] == response_id
    assert truncated["item_id"] == item["id"] and truncated["content_index"] == 0

    # Truncated at what was played: more than the 0.3 s waited, less than the whole reply (25 words of 300 ms).
    words = len(load_script("demo").turns[0].assistant.split(" "))
    assert 300 <= truncated["audio_end_ms"] < words * 300
    # The item's transcript now holds only what was heard.
    peer.send({"type": "conversation.item.retrieve", "item_id": item["id"]})
    retrieved = await peer.wait_for("conversation.item.retrieved", after=mark)
    heard = retrieved["item"]["content"][0]["transcript"]
    generated = item["content"][0]["transcript"]
    assert heard and generated.startswith(heard) and len(heard) < len(generated)
    assert started["item_id"] != item["id"]

    # The emulator truncated the item itself: nobody sent conversation.item.truncate.
    call = await (await http.get(f"/_emulator/calls/{peer.call_id}")).json()
    assert not [c for c in call["client_events"] if c["event"].get("type") == "conversation.item.truncate"]


async def test_speaking_over_audio_that_was_already_generated_clears_and_truncates_without_a_cancel(
    start: Callable[..., Any],
):
    # Generation is much faster than playback (as with OpenAI): response.done came before the user spoke.
    # 200 ms of audio a word: 5 s of it, so the user speaks over it however loaded the machine.
    _, peer = await start(barge_in_script(delta_ms=2, audio_ms_per_word=200), TOOL_SESSION)
    await peer.wait_for("session.created")
    await speak(peer)
    done = await peer.wait_for("response.done", within=5)
    assert done["response"]["status"] == "completed"
    await asyncio.sleep(0.2)  # some of the audio has played

    mark = len(peer.events)
    started, stopped = await speak(peer, after=mark)
    truncated = await peer.wait_for("conversation.item.truncated", after=mark)
    order = types_from(peer, mark, INTERRUPTION | {"input_audio_buffer.speech_stopped"})
    assert order[:3] == [
        "input_audio_buffer.speech_started",
        "output_audio_buffer.cleared",
        "conversation.item.truncated",
    ]
    cleared = await peer.wait_for("output_audio_buffer.cleared", after=mark)
    cleared_at = time.monotonic()  # it arrived no later than this
    assert cleared["response_id"] == done["response"]["id"]
    assert truncated["item_id"] == done["response"]["output"][0]["id"]
    produced = len(done["response"]["output"][0]["content"][0]["transcript"].split(" ")) * 200
    assert 200 <= truncated["audio_end_ms"] < produced
    # No response.done of the interrupted reply after the cut: it was already done.
    assert not [e for e in peer.events[mark:] if e["type"] == "response.done" and e["response"]["id"] ==
                done["response"]["id"]]

    # The user's turn goes on: committed, transcribed, answered (the demo's second turn calls a tool).
    committed = await peer.wait_for("input_audio_buffer.committed", after=mark)
    assert committed["item_id"] == started["item_id"] == stopped["item_id"]
    next_done = await peer.wait_for("response.done", after=mark, within=5)
    assert next_done["response"]["status"] == "completed"
    assert next_done["response"]["output"][0]["type"] == "function_call"
    # The model's voice stopped at the cut: quiet after the clear (a moment allowed for frames in flight),
    # though most of the reply was still to play.
    await asyncio.sleep(0.6)
    after_cut = [rms for at, rms in peer.audio if at > cleared_at + 0.25]
    assert after_cut and max(after_cut) < LOUD


async def test_without_barge_in_speech_over_the_reply_is_ignored_and_the_event_order_is_unchanged(
    start: Callable[..., Any],
):
    _, peer = await start(barge_in_script(delta_ms=2, barge_in=False), TOOL_SESSION)
    await peer.wait_for("session.created")
    await speak(peer)
    await peer.wait_for("output_audio_buffer.started", within=5)
    mark = len(peer.events)
    peer.mic.playing = True
    stopped = await peer.wait_for("output_audio_buffer.stopped", after=mark, within=5)
    peer.mic.playing = False
    before_stop = peer.events[mark : peer.index(stopped)]
    assert not [e for e in before_stop if e["type"].startswith("input_audio_buffer.")]
    assert not peer.of_type("output_audio_buffer.cleared")
    assert not peer.of_type("conversation.item.truncated")


async def test_no_barge_in_when_the_session_turns_interrupt_response_off(start: Callable[..., Any]):
    session = json.loads(json.dumps(TOOL_SESSION))
    session["audio"]["input"]["turn_detection"]["interrupt_response"] = False
    _, peer = await start(barge_in_script(delta_ms=2), session)
    await peer.wait_for("session.created")
    await speak(peer)
    await peer.wait_for("output_audio_buffer.started", within=5)
    mark = len(peer.events)
    peer.mic.playing = True
    await peer.wait_for("output_audio_buffer.stopped", after=mark, within=5)
    peer.mic.playing = False
    assert not peer.of_type("output_audio_buffer.cleared")
    assert not peer.of_type("conversation.item.truncated")


async def test_the_demo_script_runs_end_to_end_with_two_tools_and_an_interruption(start: Callable[..., Any]):
    """The conversation `make run` offers: every turn driven by the microphone, tools answered as the
    server does (function_call_output, then response.create), the long answer cut by speech."""
    script = barge_in_script(delta_ms=2)
    _, peer = await start(script, TOOL_SESSION)
    await peer.wait_for("session.created")
    tools = {"current_time": current_time, "calculator": calculator}
    replies: list[dict[str, Any]] = []

    async def turn(*, interrupt: bool = False) -> dict[str, Any]:
        """The user speaks; answer any tool call; return the final response.done of the turn."""
        mark = len(peer.events)
        await speak(peer, after=mark)
        done = await peer.wait_for("response.done", after=mark, within=5)
        output = done["response"]["output"][0]
        if output["type"] == "function_call":
            result = tools[output["name"]](**json.loads(output["arguments"]))
            peer.send({"type": "conversation.item.create", "item": {
                "type": "function_call_output", "call_id": output["call_id"], "output": json.dumps(result)}})
            peer.send({"type": "response.create"})
            done = await peer.wait_for("response.done", after=peer.index(done) + 1, within=5)
        replies.append(done)
        if interrupt:
            await asyncio.sleep(0.3)
        else:
            await peer.wait_for("output_audio_buffer.stopped", lambda e: e["response_id"] == done["response"]["id"],
                                after=mark, within=10)
            await asyncio.sleep(script.vad.cooldown_ms / 1000 + 0.05)
        return done

    await turn()
    time_reply = await turn()
    sum_reply = await turn()
    long_reply = await turn(interrupt=True)
    mark = len(peer.events)
    await turn()
    await turn()

    transcripts = [r["response"]["output"][0]["content"][0]["transcript"] for r in replies]
    assert transcripts[0] == script.turns[0].assistant
    assert "in UTC, on a " in transcripts[1] and "{output" not in transcripts[1]
    assert "is 1081." in transcripts[2]
    assert transcripts[3] == script.turns[3].assistant  # generated whole, then cut while playing
    assert transcripts[4] == script.turns[4].assistant and transcripts[5] == script.turns[5].assistant
    assert time_reply["response"]["status"] == sum_reply["response"]["status"] == "completed"

    truncated = await peer.wait_for("conversation.item.truncated", after=mark)
    assert truncated["item_id"] == long_reply["response"]["output"][0]["id"]
    assert [e["type"] for e in peer.events[mark:] if e["type"] == "conversation.item.truncated"] == [
        "conversation.item.truncated"
    ]
    assert len(peer.of_type("conversation.item.truncated")) == 1  # only the long answer was cut
    calls = [e["item"]["name"] for e in peer.of_type("response.output_item.done") if e["item"]["type"] ==
             "function_call"]
    assert calls == ["current_time", "calculator"]
