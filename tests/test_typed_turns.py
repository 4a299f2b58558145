"""Typed turns (`ag2.text`) in server mode, through the real consumer against the real emulator: the
LiveSession sends the user message and the request for an answer over the sideband, the record comes
back from the sideband; bad text, text before the call, too much text and relay mode are refused with
an `ag2.error` a person can act on, and the call goes on."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from django.contrib.auth.models import User

from realtime_emulator.script import Script, load_script
from tests.emulator.test_emulator_call import FAST, fast_script
from tests.server_mode import BrowserPeer, Emulator, eventually, running_emulator
from tests.test_live_session import _events, _set_up_call, _user_and_reply
from tests.ws_helpers import disconnect_peers, started, stored  # noqa: F401
from voice import live
from voice.models import VoiceConfig
from voice.realtime.errors import RealtimeUpstreamUnavailableError
from voice.schemas import MAX_TEXT_CHARS

pytestmark = pytest.mark.django_db(transaction=True)


async def _serving(settings: Any, script: Script) -> AsyncIterator[Emulator]:
    async with running_emulator(script) as emulator:
        settings.OPENAI_BASE_URL = emulator.base
        settings.USING_EMULATOR = True
        settings.OPENAI_API_KEY = ""
        settings.VOICE_RESUME_GRACE_SECONDS = 30
        yield emulator
        for session in live.live_sessions():  # nothing outlives its test
            await session.finish("test_over", notify=False, close_code=None)


@pytest.fixture
async def server(settings: Any) -> AsyncIterator[Emulator]:
    """The emulator with quick replies, and the site pointed at it (server mode is the default)."""
    async for emulator in _serving(settings, fast_script("default")):
        yield emulator


def _typed_items(call: dict[str, Any]) -> list[dict[str, Any]]:
    """The user messages the emulated OpenAI received as client events, with where they came from."""
    return [e for e in call["client_events"] if e.get("event", {}).get("type") == "conversation.item.create"
            and e["event"]["item"].get("role") == "user"]


async def _hang_up(peer: Any, media: BrowserPeer) -> None:
    await peer.send({"type": "ag2.hangup"})
    await peer.closed()
    await media.close()


async def test_a_typed_turn_goes_over_the_sideband_and_is_recorded_from_it(owner: User, server: Emulator) -> None:
    peer, init, media, call_id = await _set_up_call(owner)
    session_id = init["session_id"]
    await peer.send({"type": "ag2.text", "text": "  Hello, can you hear me?\n"})
    items = await _user_and_reply(session_id, 1)
    user = next(i for i in items if i.role == "user")
    assert (user.kind, user.text, user.status) == ("message", "Hello, can you hear me?", "completed")
    assert items[-1].role == "assistant" and items[-1].text.startswith("Yes, I can hear you")

    call = await server.call(call_id)
    typed = _typed_items(call)
    assert [t["source"] for t in typed] == ["sideband"]  # the server sent it, not the browser
    assert typed[0]["event"]["item"]["content"] == [{"type": "input_text", "text": "Hello, can you hear me?"}]
    sent = [e["event"]["type"] for e in call["client_events"] if e["source"] == "sideband"]
    assert sent[sent.index("conversation.item.create") + 1] == "response.create"
    # OpenAI echoes a client-created item to every connection of the call: the page shows it from there.
    await eventually(lambda: any(e["type"] == "conversation.item.done"
                                 and e["item"].get("role") == "user" for e in media.events), "the item on the channel")
    assert not any(f["type"] == "ag2.error" for f in peer.frames)

    await live.get(session_id).recorder.flush()
    events = await _events(session_id)
    typed_frames = [e for e in events if e["direction"] == "from_browser" and e["type"] == "ag2.text"]
    assert [e["payload"]["text"] for e in typed_frames] == ["Hello, can you hear me?"]
    sideband = {e["type"] for e in events if e["direction"] == "from_openai"}
    assert {"conversation.item.added", "conversation.item.done", "response.done"} <= sideband
    await _hang_up(peer, media)
    session = await stored(session_id)
    assert session.turns == 1 and session.total_tokens > 0


@pytest.mark.parametrize(("raw", "code", "words"), [
    (json.dumps({"type": "ag2.text", "text": ""}), "invalid_text", "it is empty"),
    (json.dumps({"type": "ag2.text", "text": " \n\t "}), "invalid_text", "it is empty"),
    (json.dumps({"type": "ag2.text", "text": "x" * (MAX_TEXT_CHARS + 1)}), "invalid_text",
     f"at most {MAX_TEXT_CHARS}"),
    (json.dumps({"type": "ag2.text", "text": "a\x00b"}), "invalid_text", "control characters"),
    (json.dumps({"type": "ag2.text"}), "invalid_text", "it has no text"),
    (json.dumps({"type": "ag2.text", "text": ["hi"]}), "invalid_text", "not a string"),
    ('{"type": "ag2.text", "text": "half a pair \\ud83d here"}', "invalid_frame", "not valid Unicode"),
])
async def test_bad_text_is_refused_and_the_call_goes_on(
    owner: User, server: Emulator, raw: str, code: str, words: str
) -> None:
    peer, init, media, call_id = await _set_up_call(owner)
    await peer.ws.send_to(text_data=raw)
    error = await peer.until("ag2.error")
    assert error["code"] == code and words in error["message"], error
    assert "Traceback" not in error["message"] and "ag2" not in error["message"]
    await asyncio.sleep(0.2)
    assert _typed_items(await server.call(call_id)) == []
    # The call goes on: a good line after the bad one is answered.
    await peer.send({"type": "ag2.text", "text": "Hello, can you hear me?"})
    await _user_and_reply(init["session_id"], 1)
    await _hang_up(peer, media)


async def test_text_before_the_call_is_up_is_refused(owner: User, server: Emulator) -> None:
    peer, init = await started(owner)
    await peer.send({"type": "ag2.text", "text": "Anyone there?"})
    error = await peer.until("ag2.error")
    assert error["code"] == "call_not_ready" and error["retryable"] is True
    assert "not connected yet" in error["message"]
    assert (await server.control("GET", "/_emulator/calls")).json()["calls"] == []
    # The session is still there to be set up.
    media = BrowserPeer()
    await peer.send({"type": "ag2.offer", "sdp": await media.offer()})
    await media.answer((await peer.until("ag2.answer"))["sdp"])
    await _hang_up(peer, media)
    assert (await stored(init["session_id"])).end_reason == "hangup"


async def test_relay_mode_keeps_typing_on_the_data_channel(owner: User, server: Emulator, relay_mode: None) -> None:
    peer, init = await started(owner)
    assert init["protocol"] == 1
    await peer.send({"type": "ag2.text", "text": "Hello?"})
    error = await peer.until("ag2.error")
    assert error["code"] == "unexpected_frame" and "call's own channel" in error["message"]
    assert (await stored(init["session_id"])).mode == VoiceConfig.CallMode.RELAY
    await peer.send({"type": "ag2.hangup"})
    await peer.closed()


async def test_typed_turns_over_the_rate_are_refused(owner: User, server: Emulator) -> None:
    peer, _init, media, call_id = await _set_up_call(owner)
    for n in range(live.TEXT_TURN_BURST + 1):
        await peer.send({"type": "ag2.text", "text": f"line {n}"})
    error = await peer.until("ag2.error")
    assert error["code"] == "text_rate_limited" and "Wait a moment" in error["message"]
    await eventually(lambda: True)
    await asyncio.sleep(0.5)
    assert len(_typed_items(await server.call(call_id))) == live.TEXT_TURN_BURST
    await _hang_up(peer, media)


@pytest.fixture
async def slow_server(settings: Any) -> AsyncIterator[Emulator]:
    """Replies generated slowly (a word every 150 ms), so that a line can be typed while one is under way."""
    script = load_script("multi_turn")
    async for emulator in _serving(settings, script.model_copy(
            update={"timing": FAST.model_copy(update={"delta_ms": 150})})):
        yield emulator


async def test_typing_over_an_answer_interrupts_it(owner: User, slow_server: Emulator) -> None:
    peer, init, media, call_id = await _set_up_call(owner)
    session_id = init["session_id"]
    await peer.send({"type": "ag2.text", "text": "Hi there."})
    holder = live.get(session_id)

    def answering() -> bool:
        return holder.client is not None and holder.client.response_in_progress

    await eventually(answering, "the first answer to start")
    await peer.send({"type": "ag2.text", "text": "Tell me something about the weather."})
    await eventually(lambda: not answering() and len([e for e in media.events if e["type"] == "response.done"]) == 2,
                     "both answers to end", within=15)
    call = await slow_server.call(call_id)
    sent = [e["event"]["type"] for e in call["client_events"] if e["source"] == "sideband"]
    tail = sent[sent.index("response.cancel"):]
    assert tail[:4] == ["response.cancel", "output_audio_buffer.clear", "conversation.item.create", "response.create"]
    done = [e["response"]["status"] for e in media.events if e["type"] == "response.done"]
    assert done == ["cancelled", "completed"]
    assert not [e for e in media.events if e["type"] == "error"]  # the second response was not refused
    items = await _user_and_reply(session_id, 1)
    assert [i.text for i in items if i.role == "user"] == ["Hi there.", "Tell me something about the weather."]
    assert items[-1].text.startswith("I have no weather data")
    await _hang_up(peer, media)


async def test_a_line_the_sideband_cannot_take_is_reported_not_lost_silently(
    owner: User, server: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    peer, init, media, call_id = await _set_up_call(owner)
    holder = live.get(init["session_id"])

    async def down(event: dict[str, Any]) -> None:
        # What the sideband client raises once its connection has ended, or its gap buffer is full.
        raise RealtimeUpstreamUnavailableError("The connection to the call has ended; the event was not sent.")

    monkeypatch.setattr(holder.client, "send_event", down)
    await peer.send({"type": "ag2.text", "text": "Hello?"})
    error = await peer.until("ag2.error")
    assert error["code"] == "text_not_sent" and error["retryable"] is True and "Try again" in error["message"]
    monkeypatch.undo()
    assert _typed_items(await server.call(call_id)) == []
    await peer.send({"type": "ag2.text", "text": "Hello, can you hear me?"})  # and the next line goes
    await _user_and_reply(init["session_id"], 1)
    await _hang_up(peer, media)
