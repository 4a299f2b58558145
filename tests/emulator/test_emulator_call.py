"""Whole calls against the emulator with a real aiortc peer standing in for the browser.

Each test mints a secret, offers one audio track (a tone that plays only when the test "speaks") and
the ``oai-events`` data channel, and then checks the GA event stream the emulator produces. Timings
come from a fast copy of the bundled scripts so the module stays within a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from realtime_emulator.app import create_app
from realtime_emulator.peer import ToneTrack, frame_rms
from realtime_emulator.script import Script, Timing, load_script

KEY = {"Authorization": "Bearer sk-test-key"}
FAST = Timing(
    commit_ms=10, transcription_ms=20, response_ms=20, delta_ms=10, audio_ms_per_word=40, synthetic_speech_ms=50
)
TRANSCRIBED_SESSION: dict[str, Any] = {
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
LOUD = 0.05  # RMS of a frame that carries the tone (ToneTrack plays at 0.3 amplitude, ~0.21 RMS)


def fast_script(name: str, **vad: Any) -> Script:
    script = load_script(name)
    vad_settings = script.vad.model_copy(update={"max_utterance_ms": 500, "cooldown_ms": 100, **vad})
    return script.model_copy(update={"timing": FAST, "vad": vad_settings})


class ClientPeer:
    """The browser's side of a call: microphone track, ``oai-events`` channel, received audio energy."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.mic = ToneTrack(frequency=440.0, amplitude=0.3, playing=False)
        self.events: list[dict[str, Any]] = []
        self.audio: list[tuple[float, float]] = []  # (monotonic time, rms) of received frames
        self.call_id = ""
        self._arrived = asyncio.Event()
        self._channel_open = asyncio.Event()
        self.channel_closed = asyncio.Event()
        self._readers: list[asyncio.Task[None]] = []
        self.channel = self.pc.createDataChannel("oai-events")
        self.channel.on("open", self._channel_open.set)
        self.channel.on("close", self.channel_closed.set)
        self.channel.on("message", self._on_message)
        self.pc.addTrack(self.mic)
        self.pc.on("track", self._on_track)

    def _on_message(self, message: str) -> None:
        self.events.append(json.loads(message))
        self._arrived.set()

    def _on_track(self, track: MediaStreamTrack) -> None:
        async def read() -> None:
            while True:
                try:
                    frame = await track.recv()
                except MediaStreamError:
                    return
                self.audio.append((time.monotonic(), frame_rms(frame)))

        self._readers.append(asyncio.ensure_future(read()))

    async def connect(self, http: TestClient, token: str) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        response = await http.post(
            "/v1/realtime/calls",
            data=self.pc.localDescription.sdp,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
        )
        assert response.status == 201, await response.text()
        self.call_id = response.headers["Location"].rsplit("/", 1)[-1]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=await response.text(), type="answer"))
        await asyncio.wait_for(self._channel_open.wait(), 5)
        return self.call_id

    def send(self, event: dict[str, Any]) -> None:
        self.channel.send(json.dumps(event))

    async def wait_for(
        self,
        type_: str,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        *,
        after: int = 0,
        within: float = 5,
    ) -> dict[str, Any]:
        """The first event of ``type_`` at index >= ``after`` matching ``predicate``; waits for it."""
        deadline = time.monotonic() + within
        while True:
            for event in self.events[after:]:
                if event["type"] == type_ and (predicate is None or predicate(event)):
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [event["type"] for event in self.events[after:]]
                raise AssertionError(f"no {type_} within {within}s; saw {seen}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    def index(self, event: dict[str, Any]) -> int:
        return next(i for i, e in enumerate(self.events) if e is event)

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["type"] == type_]

    async def close(self) -> None:
        for reader in self._readers:
            reader.cancel()
        await self.pc.close()


@pytest.fixture
async def start() -> AsyncIterator[Callable[..., Any]]:
    """``await start(script, session)`` -> (http client, connected peer); everything closes afterwards."""
    clients: list[TestClient] = []
    peers: list[ClientPeer] = []

    async def _start(script: Script, session: dict[str, Any] | None = None) -> tuple[TestClient, ClientPeer]:
        http = TestClient(TestServer(create_app(script=script), host="127.0.0.1"))
        await http.start_server()
        clients.append(http)
        minted = await http.post(
            "/v1/realtime/client_secrets",
            json={"session": session or TRANSCRIBED_SESSION},
            headers=KEY,
        )
        assert minted.status == 200, await minted.text()
        peer = ClientPeer()
        peers.append(peer)
        await peer.connect(http, (await minted.json())["value"])
        return http, peer

    yield _start
    for peer in peers:
        await peer.close()
    for http in clients:
        await http.close()


async def test_a_spoken_turn_yields_transcript_reply_audio_and_usage(start: Callable[..., Any]):
    script = fast_script("default")
    http, peer = await start(script)
    created = await peer.wait_for("session.created")
    assert created["session"]["audio"]["output"]["voice"] == "marin"
    assert created["session"]["id"].startswith("sess_")

    peer.send(
        {"type": "session.update", "event_id": "evt_update", "session": {"type": "realtime", "instructions": "Hi"}}
    )
    updated = await peer.wait_for("session.updated")
    assert updated["session"]["instructions"] == "Hi"

    peer.mic.playing = True  # the user speaks (a continuous tone, like Chromium's fake microphone)
    started = await peer.wait_for("input_audio_buffer.speech_started")
    stopped = await peer.wait_for("input_audio_buffer.speech_stopped")
    peer.mic.playing = False
    assert stopped["item_id"] == started["item_id"]
    assert stopped["audio_end_ms"] > started["audio_start_ms"]
    done = await peer.wait_for("response.done", within=8)
    audio_stopped = await peer.wait_for("output_audio_buffer.stopped", within=8)

    turn = script.turns[0]
    user_item_id = started["item_id"]
    committed = await peer.wait_for("input_audio_buffer.committed")
    assert committed["item_id"] == user_item_id
    transcription = await peer.wait_for("conversation.item.input_audio_transcription.completed")
    assert transcription["item_id"] == user_item_id
    assert transcription["transcript"] == turn.user
    deltas = [e["delta"] for e in peer.of_type("conversation.item.input_audio_transcription.delta")]
    assert "".join(deltas) == turn.user

    # GA order of one audio turn.
    order = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.input_audio_transcription.completed",
        "response.created",
        "response.output_item.added",
        "response.content_part.added",
        "output_audio_buffer.started",
        "response.output_audio_transcript.delta",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.done",
    ]
    positions = [next(i for i, e in enumerate(peer.events) if e["type"] == t) for t in order]
    assert positions == sorted(positions), [peer.events[p]["type"] for p in sorted(positions)]

    transcript = "".join(e["delta"] for e in peer.of_type("response.output_audio_transcript.delta"))
    assert transcript == turn.assistant
    assert peer.of_type("response.output_audio_transcript.done")[0]["transcript"] == turn.assistant

    response = done["response"]
    assert response["status"] == "completed"
    assert response["id"].startswith("resp_")
    assistant = response["output"][0]
    assert assistant["role"] == "assistant" and assistant["id"].startswith("item_")
    assert assistant["content"][0] == {"type": "output_audio", "transcript": turn.assistant}
    added = next(e for e in peer.of_type("conversation.item.added") if e["item"]["id"] == assistant["id"])
    assert added["previous_item_id"] == user_item_id  # the assistant item chains after the user's

    usage = response["usage"]
    details = usage["input_token_details"]
    assert usage["input_tokens"] == details["text_tokens"] + details["audio_tokens"] + details["image_tokens"]
    assert details["audio_tokens"] > 0
    assert 0 <= details["cached_tokens"] <= usage["input_tokens"]
    cached = details["cached_tokens_details"]
    assert details["cached_tokens"] == cached["text_tokens"] + cached["audio_tokens"] + cached["image_tokens"]
    assert usage["output_tokens"] == sum(usage["output_token_details"].values())
    assert usage["output_token_details"]["audio_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]

    audio_started = peer.of_type("output_audio_buffer.started")[0]
    assert audio_started["response_id"] == audio_stopped["response_id"] == response["id"]

    # The tone arrived on the incoming track while the model "spoke".
    assert any(rms > LOUD for _, rms in peer.audio), max((rms for _, rms in peer.audio), default=0)

    ids = [event["event_id"] for event in peer.events]
    assert len(ids) == len(set(ids))
    assert all(event_id.startswith("event_") for event_id in ids)

    # The emulator recorded what the client sent.
    calls = (await (await http.get("/_emulator/calls")).json())["calls"]
    assert calls[0]["client_events"][0]["event"]["event_id"] == "evt_update"
    assert calls[0]["client_events"][0]["source"] == "datachannel"


async def test_audio_energy_arrives_only_while_the_model_speaks(start: Callable[..., Any]):
    _, peer = await start(fast_script("default"))
    await peer.wait_for("session.created")
    await asyncio.sleep(0.3)
    assert peer.audio, "no audio frames before the turn"
    assert max(rms for _, rms in peer.audio) < LOUD  # silence while idle
    peer.mic.playing = True
    await peer.wait_for("input_audio_buffer.speech_stopped")
    peer.mic.playing = False
    await peer.wait_for("output_audio_buffer.started", within=5)
    began = time.monotonic()
    await peer.wait_for("output_audio_buffer.stopped", within=8)
    loud = [t for t, rms in peer.audio if rms > LOUD]
    assert loud and loud[0] >= began - 0.1


async def test_an_invalid_session_update_is_an_error_and_the_session_goes_on(start: Callable[..., Any]):
    _, peer = await start(fast_script("default"))
    await peer.wait_for("session.created")
    peer.send({"type": "session.update", "event_id": "evt_beta", "session": {"type": "realtime", "voice": "ash"}})
    error = await peer.wait_for("error")
    assert error["error"]["code"] == "beta_api_shape_disabled"
    assert error["error"]["event_id"] == "evt_beta"
    assert error["error"]["param"] == "session.voice"

    mark = len(peer.events)
    peer.send(
        {
            "type": "session.update",
            "event_id": "evt_unknown",
            "session": {"type": "realtime", "instructions": "x", "x": 1},
        }
    )
    error = await peer.wait_for("error", after=mark)
    assert error["error"]["code"] == "unknown_parameter"
    assert error["error"]["event_id"] == "evt_unknown"

    mark = len(peer.events)
    peer.send({"type": "session.update", "session": {"type": "realtime", "model": "gpt-realtime-mini"}})
    assert (await peer.wait_for("error", after=mark))["error"]["param"] == "session.model"

    mark = len(peer.events)
    peer.send({"type": "session.update", "session": {"type": "realtime", "audio": {"output": {"voice": "cedar"}}}})
    updated = await peer.wait_for("session.updated", after=mark)
    # The rejected updates changed nothing; the good one applied on top of the original session.
    assert updated["session"]["audio"]["output"]["voice"] == "cedar"
    assert updated["session"]["instructions"] == TRANSCRIBED_SESSION["instructions"]
    assert not peer.of_type("session.updated")[:-1]


async def test_unknown_and_malformed_client_events_get_error_events(start: Callable[..., Any]):
    _, peer = await start(fast_script("default"))
    await peer.wait_for("session.created")
    peer.send({"type": "session.frobnicate", "event_id": "evt_1"})
    error = await peer.wait_for("error")
    assert error["error"] | {"message": ""} == {
        "type": "invalid_request_error",
        "code": "unknown_event",
        "message": "",
        "param": "type",
        "event_id": "evt_1",
    }
    mark = len(peer.events)
    peer.channel.send("{nope")
    assert (await peer.wait_for("error", after=mark))["error"]["code"] == "invalid_json"
    mark = len(peer.events)
    peer.send({"type": "response.cancel", "event_id": "evt_2"})
    assert (await peer.wait_for("error", after=mark))["error"]["code"] == "response_cancel_not_active"
    mark = len(peer.events)
    peer.send({"type": "input_audio_buffer.clear", "event_id": "evt_3", "extra": True})
    assert (await peer.wait_for("error", after=mark))["error"]["code"] == "unknown_parameter"


async def test_the_tool_script_calls_the_tool_waits_for_its_output_and_quotes_it(start: Callable[..., Any]):
    session = {**TRANSCRIBED_SESSION, "tools": [CURRENT_TIME_TOOL], "tool_choice": "auto"}
    http, peer = await start(fast_script("tool_call"), session)
    await peer.wait_for("session.created")
    turn = await http.post(f"/_emulator/calls/{peer.call_id}/turn", json={})
    assert turn.status == 202

    first = await peer.wait_for("response.done", within=5)
    call_item = first["response"]["output"][0]
    assert call_item["type"] == "function_call"
    assert call_item["name"] == "current_time"
    assert json.loads(call_item["arguments"]) == {"timezone": "UTC"}
    arguments_done = await peer.wait_for("response.function_call_arguments.done")
    assert arguments_done["call_id"] == call_item["call_id"]
    assert arguments_done["name"] == "current_time"
    streamed = "".join(e["delta"] for e in peer.of_type("response.function_call_arguments.delta"))
    assert streamed == arguments_done["arguments"]
    assert not peer.of_type("output_audio_buffer.started")  # a function call says nothing

    # Nothing more happens until the output arrives.
    await asyncio.sleep(0.2)
    assert len(peer.of_type("response.created")) == 1

    mark = len(peer.events)
    peer.send(
        {
            "type": "conversation.item.create",
            "event_id": "evt_output",
            "item": {"type": "function_call_output", "call_id": call_item["call_id"], "output": "12:34 UTC"},
        }
    )
    added = await peer.wait_for("conversation.item.added", after=mark)
    assert added["item"]["type"] == "function_call_output"
    assert added["previous_item_id"] == call_item["id"]
    peer.send({"type": "response.create", "event_id": "evt_reply"})
    second = await peer.wait_for("response.done", after=mark, within=5)
    transcript = second["response"]["output"][0]["content"][0]["transcript"]
    assert "12:34 UTC" in transcript
    assert second["response"]["usage"]["input_token_details"]["cached_tokens"] >= 0

    call = await (await http.get(f"/_emulator/calls/{peer.call_id}")).json()
    outputs = [
        entry["event"] for entry in call["client_events"] if entry["event"].get("type") == "conversation.item.create"
    ]
    assert outputs[0]["item"]["output"] == "12:34 UTC"


async def test_without_the_tool_in_the_session_the_tool_script_just_answers(start: Callable[..., Any]):
    script = fast_script("tool_call")
    http, peer = await start(script)
    await peer.wait_for("session.created")
    await http.post(f"/_emulator/calls/{peer.call_id}/turn")
    done = await peer.wait_for("response.done", within=5)
    assert done["response"]["output"][0]["type"] == "message"
    assert done["response"]["output"][0]["content"][0]["transcript"] == script.turns[0].assistant


async def test_a_function_call_output_for_an_unknown_call_is_refused(start: Callable[..., Any]):
    _, peer = await start(fast_script("default"))
    await peer.wait_for("session.created")
    peer.send(
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": "call_nope", "output": "x"},
        }
    )
    assert (await peer.wait_for("error"))["error"]["param"] == "item.call_id"


async def test_a_text_session_answers_typed_messages_with_output_text(start: Callable[..., Any]):
    session = {"type": "realtime", "output_modalities": ["text"]}
    script = fast_script("multi_turn")
    _, peer = await start(script, session)
    await peer.wait_for("session.created")
    peer.send(
        {
            "type": "conversation.item.create",
            "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi there."}]},
        }
    )
    user = await peer.wait_for("conversation.item.done")
    peer.send({"type": "response.create"})
    done = await peer.wait_for("response.done")
    text = "".join(e["delta"] for e in peer.of_type("response.output_text.delta"))
    assert text == script.turns[0].assistant
    assert (await peer.wait_for("response.output_text.done"))["text"] == text
    assert done["response"]["output"][0]["content"] == [{"type": "output_text", "text": text}]
    assert done["response"]["output_modalities"] == ["text"]
    assert done["response"]["usage"]["output_token_details"]["audio_tokens"] == 0
    assert not peer.of_type("output_audio_buffer.started")
    assert not peer.of_type("response.output_audio_transcript.delta")
    assistant_added = next(e for e in peer.of_type("conversation.item.added") if e["item"]["role"] == "assistant")
    assert assistant_added["previous_item_id"] == user["item"]["id"]


async def test_response_create_while_a_response_runs_is_refused_and_cancel_stops_it(start: Callable[..., Any]):
    slow = fast_script("default").model_copy(update={"timing": FAST.model_copy(update={"delta_ms": 200})})
    _, peer = await start(slow, {"type": "realtime", "output_modalities": ["text"]})
    await peer.wait_for("session.created")
    peer.send({"type": "response.create", "response": {"metadata": {"topic": "greeting"}}})
    created = await peer.wait_for("response.created")
    assert created["response"]["metadata"] == {"topic": "greeting"}
    peer.send({"type": "response.create", "event_id": "evt_second"})
    error = await peer.wait_for("error")
    assert error["error"]["code"] == "conversation_already_has_active_response"
    peer.send({"type": "response.cancel"})
    done = await peer.wait_for("response.done")
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    assert done["response"]["output"][0]["status"] == "incomplete"


async def test_beta_shapes_in_response_create_are_refused(start: Callable[..., Any]):
    _, peer = await start(fast_script("default"))
    await peer.wait_for("session.created")
    peer.send({"type": "response.create", "response": {"modalities": ["text"]}})
    error = await peer.wait_for("error")
    assert error["error"]["code"] == "beta_api_shape_disabled"
    assert not peer.of_type("response.created")


async def test_truncate_and_clear_follow_the_audio_that_was_produced(start: Callable[..., Any]):
    http, peer = await start(fast_script("default"))
    await peer.wait_for("session.created")
    await http.post(f"/_emulator/calls/{peer.call_id}/turn")
    done = await peer.wait_for("response.done", within=5)
    item_id = done["response"]["output"][0]["id"]
    peer.send({"type": "response.cancel"})  # the response is over: nothing to cancel
    assert (await peer.wait_for("error"))["error"]["code"] == "response_cancel_not_active"
    peer.send({"type": "output_audio_buffer.clear"})
    cleared = await peer.wait_for("output_audio_buffer.cleared")
    assert cleared["response_id"] == done["response"]["id"]

    mark = len(peer.events)
    peer.send({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 60_000})
    error = await peer.wait_for("error", after=mark)
    assert error["error"]["param"] == "audio_end_ms"
    peer.send({"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0, "audio_end_ms": 100})
    truncated = await peer.wait_for("conversation.item.truncated", after=mark)
    assert truncated == truncated | {"item_id": item_id, "content_index": 0, "audio_end_ms": 100}

    mark = len(peer.events)
    user_item = peer.of_type("input_audio_buffer.committed")[0]["item_id"]
    peer.send({"type": "conversation.item.truncate", "item_id": user_item, "content_index": 0, "audio_end_ms": 0})
    assert (await peer.wait_for("error", after=mark))["error"]["param"] == "item_id"


async def test_transcription_can_arrive_after_the_response(start: Callable[..., Any]):
    http, peer = await start(fast_script("multi_turn"))
    await peer.wait_for("session.created")
    await http.post(f"/_emulator/calls/{peer.call_id}/turn")
    await peer.wait_for("output_audio_buffer.stopped", within=5)
    mark = len(peer.events)
    assert (await http.post(f"/_emulator/calls/{peer.call_id}/turn")).status == 202
    done = await peer.wait_for("response.done", after=mark, within=5)
    completed = await peer.wait_for("conversation.item.input_audio_transcription.completed", after=mark)
    assert peer.index(completed) > peer.index(done)  # the second turn's transcript comes late
    assert completed["transcript"] == "Tell me something about the weather."
    # The cache now covers part of the second response's prompt.
    assert done["response"]["usage"]["input_token_details"]["cached_tokens"] > 0


async def test_a_turn_endpoint_refuses_while_busy(start: Callable[..., Any]):
    http, peer = await start(fast_script("default"))
    await peer.wait_for("session.created")
    assert (await http.post(f"/_emulator/calls/{peer.call_id}/turn", json={"text": "Custom words"})).status == 202
    assert (await http.post(f"/_emulator/calls/{peer.call_id}/turn")).status == 409
    completed = await peer.wait_for("conversation.item.input_audio_transcription.completed")
    assert completed["transcript"] == "Custom words"


async def test_the_sideband_sees_every_event_accepts_client_events_and_hangup_ends_the_call(
    start: Callable[..., Any],
):
    http, peer = await start(fast_script("default"))
    await peer.wait_for("session.created")
    sideband_events: list[dict[str, Any]] = []
    async with http.session.ws_connect(http.make_url(f"/v1/realtime?call_id={peer.call_id}"), headers=KEY) as ws:
        ws_closed = asyncio.Event()

        async def read() -> None:
            async for message in ws:
                sideband_events.append(json.loads(message.data))
            ws_closed.set()

        reader = asyncio.ensure_future(read())
        await ws.send_str(
            json.dumps(
                {
                    "type": "session.update",
                    "event_id": "evt_side",
                    "session": {"type": "realtime", "instructions": "Side"},
                }
            )
        )
        updated = await peer.wait_for("session.updated")  # the browser sees the server's update too
        assert updated["session"]["instructions"] == "Side"

        await http.post(f"/_emulator/calls/{peer.call_id}/turn")
        await peer.wait_for("response.done", within=5)
        await asyncio.sleep(0.05)
        mark = len(peer.events)
        await ws.send_str(json.dumps({"type": "nonsense.event"}))
        await peer.wait_for("error", after=mark)
        await asyncio.sleep(0.05)

        # Its own session.created on attach (the current session), then everything the data channel
        # got after it attached: same ids, same order.
        assert sideband_events[0]["type"] == "session.created"
        assert sideband_events[0]["event_id"] != peer.events[0]["event_id"]
        assert sideband_events[0]["session"]["id"] == peer.events[0]["session"]["id"]
        browser_ids = [e["event_id"] for e in peer.events]
        sideband_ids = [e["event_id"] for e in sideband_events[1:]]
        assert sideband_ids == browser_ids[1:]
        assert "response.output_audio_transcript.delta" in {e["type"] for e in sideband_events}

        hangup = await http.post(f"/v1/realtime/calls/{peer.call_id}/hangup", headers=KEY)
        assert hangup.status == 200
        await asyncio.wait_for(ws_closed.wait(), 5)
        reader.cancel()

    await asyncio.wait_for(peer.channel_closed.wait(), 5)  # the emulator closed the browser's channel
    call = await (await http.get(f"/_emulator/calls/{peer.call_id}")).json()
    assert call["status"] == "ended" and call["end_reason"] == "hangup"
    assert [e["source"] for e in call["client_events"]][:1] == ["sideband"]
    assert (await http.get(f"/v1/realtime?call_id={peer.call_id}", headers=KEY)).status == 404


async def test_closing_the_browser_peer_ends_the_call(start: Callable[..., Any]):
    http, peer = await start(fast_script("default"))
    await peer.wait_for("session.created")
    await peer.pc.close()
    deadline = time.monotonic() + 5
    status = "active"
    while status == "active" and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        status = (await (await http.get(f"/_emulator/calls/{peer.call_id}")).json())["status"]
    assert status == "ended"


async def test_a_call_ends_with_session_expired_at_its_cap():
    http = TestClient(TestServer(create_app(script=fast_script("default"), max_call_seconds=0.3), host="127.0.0.1"))
    await http.start_server()
    peer = ClientPeer()
    try:
        minted = await (await http.post("/v1/realtime/client_secrets", json={}, headers=KEY)).json()
        await peer.connect(http, minted["value"])
        error = await peer.wait_for("error", within=3)
        assert error["error"]["code"] == "session_expired"
        call = await (await http.get(f"/_emulator/calls/{peer.call_id}")).json()
        assert call["end_reason"] == "session_expired"
    finally:
        await peer.close()
        await http.close()
