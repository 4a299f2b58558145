"""A GPT-Live config through the real consumer and LiveSession against the real emulator: the record (timed
transcript lines, the delegation as a tool call, cost by the second), the config's rules, the prices."""

from __future__ import annotations

import asyncio
import io
import json
import math
import wave
from array import array
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from realtime_emulator.peer import ToneTrack
from tests.emulator.test_emulator_call import fast_script
from tests.server_mode import BrowserPeer, Emulator, running_emulator
from tests.ws_helpers import Peer, disconnect_peers, started, stored, wait_for  # noqa: F401
from voice import call_audio, live
from voice.models import (
    CallRecording,
    MinutePrice,
    ModelPrice,
    ResponseUsage,
    ToolCall,
    TranscriptItem,
    VoiceConfig,
    VoiceSession,
)
from voice.realtime.gptlive_events import LiveSessionStarted, LiveUsage
from voice.recording import Recorder

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def emulator(settings: Any) -> AsyncIterator[Emulator]:
    async with running_emulator(fast_script("tool_call")) as emulator:
        settings.OPENAI_BASE_URL = emulator.base
        settings.USING_EMULATOR = True
        settings.OPENAI_API_KEY = ""
        settings.VOICE_HEARTBEAT_SECONDS = 0.2
        settings.VOICE_HEARTBEAT_GRACE_SECONDS = 1.0
        await emulator.control("POST", "/_emulator/live", json={"usage_interval": 0.3})
        yield emulator
        for session in live.live_sessions():
            await session.finish("test_over", notify=False, close_code=None)


@database_sync_to_async
def live_config(**fields: Any) -> VoiceConfig:
    config = VoiceConfig.objects.get(slug="default")
    values = {"protocol": "live", "call_mode": "server", "live_model": "gpt-live-1.1", "live_voice": "cedar",
              "tools": ["current_time"], "live_delegation": "client", "live_transcript_gap_ms": 1500, **fields}
    for name, value in values.items():
        setattr(config, name, value)
    config.full_clean()
    config.save()
    return config


async def _set_up(owner: User) -> tuple[Peer, dict[str, Any], BrowserPeer, str]:
    peer, init = await started(owner)
    media = BrowserPeer()
    await peer.send({"type": "ag2.offer", "sdp": await media.offer()})
    answer = await peer.until("ag2.answer")
    await media.answer(answer["sdp"])
    await peer.send({"type": "ag2.ready"})
    session = await wait_for(lambda: _active(init["session_id"]))
    assert session, "the session never became active"
    return peer, init, media, session.call_id


async def _active(session_id: str) -> VoiceSession | None:
    session = await stored(session_id)
    return session if session.status == "active" else None


@database_sync_to_async
def _record(session_id: str) -> tuple[list[TranscriptItem], list[ToolCall], list[ResponseUsage]]:
    session = VoiceSession.objects.get(pk=session_id)
    return (list(session.ordered_transcript()), list(ToolCall.objects.filter(session_id=session_id)),
            list(ResponseUsage.objects.filter(session_id=session_id).order_by("created_at")))


async def test_a_live_call_records_timed_lines_the_delegation_and_its_cost(owner: User, emulator: Emulator) -> None:
    await live_config()
    peer, init, media, session_id_live = await _set_up(owner)
    assert session_id_live.startswith("live_")
    assert init["session"] == {"model": "gpt-live-1.1", "voice": "cedar", "output_modalities": None}
    session = await stored(init["session_id"])
    assert (session.protocol, session.model) == ("live", "gpt-live-1.1")
    created = (await emulator.call(session_id_live))["session"]
    assert created["delegation"] == {"type": "client"} and "ag2_live" not in created

    turn = await emulator.control("POST", f"/_emulator/calls/{session_id_live}/turn", json={})
    assert turn.status_code == 202

    async def delegated() -> ToolCall | None:
        tools = (await _record(init["session_id"]))[1]
        return tools[0] if tools and tools[0].status == "succeeded" else None

    tool = await wait_for(delegated, timeout=10)
    assert tool is not None, "the delegation was not recorded"
    assert tool.call_id.startswith("item_") and tool.name == "current_time" and tool.duration_ms is not None
    assert json.loads(tool.output)["timezone"] == "UTC"

    async def replied() -> bool:
        items = (await _record(init["session_id"]))[0]
        return any(i.role == "assistant" and "clock says" in i.text for i in items)

    assert await wait_for(replied, timeout=10)
    await asyncio.sleep(0.8)  # a few usage updates (every 0.3 s here)
    await peer.send({"type": "ag2.hangup"})
    assert (await peer.until("ag2.close"))["reason"] == "hangup"
    await peer.closed()
    await media.close()

    items, _tools, usages = await _record(init["session_id"])
    user, reply = items[0], items[-1]
    assert (user.role, user.text, user.status) == ("user", "What time is it in UTC?", "completed")
    assert reply.role == "assistant" and reply.previous_item_id == user.item_id and reply.status == "completed"
    assert user.audio_start_ms is not None and user.audio_end_ms > user.audio_start_ms  # type: ignore[operator]
    assert reply.audio_start_ms >= user.audio_end_ms  # type: ignore[operator]
    # The commentary sent to GPT-Live is exactly the tool's output (the record's "what was appended").
    sent = [c["event"] for c in (await emulator.call(session_id_live))["client_events"]]
    assert sent[0]["type"] == "session.commentary.append" and sent[0]["content"] == tool.output
    assert sent[0]["delegation_id"] == tool.call_id
    # Cost by the second: the usage updates and session.closed's final figure, each adding what it adds.
    assert usages and all(u.model == "gpt-live-1.1" and u.total_tokens == 0 for u in usages)
    assert usages[-1].status == "final"
    seconds = sum(u.voice_seconds for u in usages)
    assert seconds > Decimal("0.8") and len(usages) >= 2  # periodic updates, then the final figure
    session = await stored(init["session_id"])
    final = (await emulator.call(session_id_live))["server_events"][-1]
    assert final["type"] == "session.closed"
    assert seconds == Decimal(str(final["usage"]["seconds"])).quantize(Decimal("0.001"))
    assert session.cost_usd == (seconds * Decimal("0.05") / 60).quantize(Decimal("0.000001"))
    assert session.cost_usd == sum(u.cost_usd for u in usages)  # type: ignore[misc]
    assert (session.status, session.end_reason) == ("ended", "hangup")


async def test_a_responses_delegation_is_recorded_with_the_backends_tokens(owner: User, emulator: Emulator) -> None:
    await live_config(live_delegation="responses", live_responses_model="gpt-5.5", live_model="gpt-live-1")
    await database_sync_to_async(ModelPrice.objects.create)(
        model="gpt-5.5", text_input=Decimal("1.25"), text_cached_input=Decimal("0.125"), text_output=Decimal("10"),
        audio_input=0, audio_cached_input=0, audio_output=0)
    peer, init, media, session_id_live = await _set_up(owner)
    created = (await emulator.call(session_id_live))["session"]
    assert created["delegation"]["responses"]["tools"][0]["name"] == "current_time"
    await emulator.control("POST", f"/_emulator/calls/{session_id_live}/turn", json={})

    async def finished() -> list[ToolCall] | None:
        tools = (await _record(init["session_id"]))[1]
        done = [t for t in tools if t.status == "succeeded"]
        return tools if len(done) == 2 else None

    tools = await wait_for(finished, timeout=10)
    assert tools, "the delegation and its function call were not both recorded"
    by_name = {t.name: t for t in tools}
    delegation, function = by_name["delegation:responses"], by_name["current_time"]
    assert "clock says" in delegation.output and delegation.duration_ms is not None
    assert delegation.arguments["target"] == "responses"
    assert json.loads(function.output)["timezone"] == "UTC"
    await peer.send({"type": "ag2.hangup"})
    await peer.closed()
    await media.close()
    usages = (await _record(init["session_id"]))[2]
    backend = [u for u in usages if u.model == "gpt-5.5"]
    voice = [u for u in usages if u.model == "gpt-live-1"]
    assert len(backend) == 2 and all(u.input_tokens > 0 and u.cost_usd > 0 for u in backend)  # type: ignore[operator]
    assert voice and sum(u.voice_seconds for u in voice) > 0
    session = await stored(init["session_id"])
    assert session.cost_usd == sum(u.cost_usd for u in usages)  # type: ignore[misc]
    assert session.input_tokens == sum(u.input_tokens for u in backend)


async def test_a_session_created_but_never_started_is_billed_the_creation_charge(owner: User, settings: Any) -> None:
    settings.VOICE_LIVE_CREATION_CHARGE_SECONDS = 15
    session = await database_sync_to_async(VoiceSession.objects.create)(user=owner, model="gpt-live-1.1",
                                                                         protocol="live", mode="server")
    never = Recorder(str(session.pk), model="gpt-live-1.1")
    never.settle_live_creation(15)
    ran = Recorder(str(session.pk), model="gpt-live-1.1")
    ran.apply(LiveSessionStarted(session_id="live_1"))
    ran.settle_live_creation(15)
    assert [u["voice_seconds"] for u in never._pending.usages] == [Decimal(15)]
    assert ran._pending.usages == []  # credited: it ran
    await never.close()
    usage = (await _record(str(session.pk)))[2]
    assert [(u.status, u.voice_seconds, u.cost_usd) for u in usage] == [
        ("creation_charge", Decimal("15.000"), Decimal("0.012500"))]


async def test_usage_snapshots_are_cumulative_and_standby_is_priced_apart(owner: User) -> None:
    session = await database_sync_to_async(VoiceSession.objects.create)(user=owner, model="gpt-live-1.1",
                                                                         protocol="live", mode="server")
    recorder = Recorder(str(session.pk), model="gpt-live-1.1")
    for seconds, standby, final in ((30, 0, False), (30, 0, False), (90, 40, False), (80, 0, False),
                                    (100, 40, True)):
        recorder.apply(LiveUsage(seconds=seconds, standby_seconds=standby, final=final))
    await recorder.close()
    usages = (await _record(str(session.pk)))[2]
    # 30 s, a repeat (nothing), 60 s more of which 40 standby, a step back (refused, noted), 10 s more.
    assert [(u.voice_seconds, u.standby_seconds) for u in usages] == [
        (Decimal(30), Decimal(0)), (Decimal(20), Decimal(40)), (Decimal(10), Decimal(0))]
    session = await stored(str(session.pk))
    expected = (Decimal(60) * Decimal("0.05") + Decimal(40) * Decimal("0.02")) / 60
    assert session.cost_usd == expected.quantize(Decimal("0.000001"))


def test_a_live_config_is_checked_for_what_gpt_live_needs(db: None) -> None:
    config = VoiceConfig.objects.get(slug="default")
    config.protocol, config.call_mode, config.tools = "live", "relay", ["current_time", "calculator"]
    with pytest.raises(ValidationError) as caught:
        config.full_clean()
    errors = caught.value.message_dict
    assert "call_mode" in errors and "live_backend_tool" in errors
    config.call_mode, config.live_backend_tool = "server", "current_time"
    config.full_clean()
    payload = config.to_session_payload()
    assert payload["delegation"] == {"type": "client"} and payload["audio"] == {"output": {"voice": "marin"}}
    assert payload["ag2_live"] == {"backend_tool": "current_time", "transcript_gap_ms": 2000}
    assert payload["client"]["data_channel"]["allowed_client_events"] == []
    config.live_delegation = "responses"
    config.live_backend_tool = ""
    with pytest.raises(ValidationError, match="Responses model"):
        config.full_clean()
    config.live_responses_model = "gpt-5.5"
    config.full_clean()
    responses = config.to_session_payload()["delegation"]["responses"]
    assert responses["model"] == "gpt-5.5" and [t["name"] for t in responses["tools"]] == ["current_time",
                                                                                             "calculator"]
    prices = {p.model: (p.active_per_minute, p.standby_per_minute) for p in MinutePrice.objects.all()}
    assert prices == {"gpt-live-1": (Decimal("0.05"), None), "gpt-live-1.1": (Decimal("0.05"), Decimal("0.02"))}


class SpeakingPeer(BrowserPeer):
    """A browser whose microphone plays a tone (the emulated model hears a turn) until it is muted."""

    def __init__(self) -> None:
        super().__init__()
        self.mic = ToneTrack(frequency=440.0, amplitude=0.3, playing=True)
        self.pc.getTransceivers()[0].sender.replaceTrack(self.mic)


def _wav(session_id: str) -> tuple[CallRecording, bytes]:
    recording = CallRecording.objects.get(session_id=session_id)
    rows = call_audio.chunk_rows(recording)
    return recording, b"".join(call_audio.read_range(rows, 0, sum(size for _, size in rows) - 1))


async def test_a_recorded_live_call_is_a_stereo_wav_made_on_the_server(owner: User, emulator: Emulator) -> None:
    await live_config(recording=VoiceConfig.Recording.ASK)
    peer, init = await started(owner, "/ws/voice/?recording=yes")
    assert init["api"] == "gpt-live" and init["live"] == {"transcript_gap_ms": 1500, "typing": False,
                                                           "recorded_by": "server"}
    media = SpeakingPeer()
    await peer.send({"type": "ag2.offer", "sdp": await media.offer()})
    await media.answer((await peer.until("ag2.answer"))["sdp"])
    await peer.send({"type": "ag2.ready"})
    await asyncio.sleep(0.8)  # the user speaks (the tone), then is quiet: the emulated model answers
    media.mic.playing = False

    async def replied() -> bool:
        items = (await _record(init["session_id"]))[0]
        return any(i.role == "assistant" and "clock says" in i.text for i in items)

    assert await wait_for(replied, timeout=15)
    await asyncio.sleep(1.0)  # the rest of the reply's words, then a moment of quiet
    await peer.send({"type": "ag2.hangup"})
    await peer.closed()
    await media.close()

    session = await stored(init["session_id"])
    assert session.recording_consent
    recording, data = await database_sync_to_async(_wav)(init["session_id"])
    assert recording.content_type == "audio/wav" and recording.size_bytes == len(data)
    with wave.open(io.BytesIO(data)) as reader:
        assert (reader.getnchannels(), reader.getsampwidth(), reader.getframerate()) == (2, 2, 24_000)
        frames = array("h", reader.readframes(reader.getnframes()))
        seconds = reader.getnframes() / 24_000
    final = (await emulator.call(session.call_id))["server_events"][-1]
    assert final["type"] == "session.closed"
    assert abs(seconds - final["usage"]["seconds"]) < 0.5, (seconds, final["usage"])
    left, right = frames[0::2], frames[1::2]

    def loud(samples: array, start_ms: int, end_ms: int) -> float:
        part = samples[start_ms * 24:end_ms * 24]
        return math.sqrt(sum(s * s for s in part) / max(1, len(part)))

    # Both sides carry sound, each where the transcript places its line.
    items = (await _record(init["session_id"]))[0]
    user = next(i for i in items if i.role == "user")
    reply = next(i for i in items if i.role == "assistant" and "clock says" in i.text)
    assert user.audio_start_ms is not None and reply.audio_start_ms is not None
    middle = (user.audio_start_ms + user.audio_end_ms) // 2  # type: ignore[operator]
    assert loud(left, middle - 100, middle + 100) > 1000
    middle = (reply.audio_start_ms + reply.audio_end_ms) // 2  # type: ignore[operator]
    assert loud(right, middle - 100, middle + 100) > 1000
    assert loud(right, user.audio_start_ms, user.audio_end_ms) < 100  # the model was quiet meanwhile
    # The page uploaded nothing: every chunk is the server's.
    names = await database_sync_to_async(lambda: [n for n, _ in call_audio.chunk_rows(recording)])()
    assert names and all(name.endswith(".wav") for name in names)


async def test_without_consent_a_live_call_keeps_no_audio(owner: User, emulator: Emulator) -> None:
    await live_config(recording=VoiceConfig.Recording.ASK)
    peer, init = await started(owner, "/ws/voice/?recording=no")
    media = SpeakingPeer()
    await peer.send({"type": "ag2.offer", "sdp": await media.offer()})
    await media.answer((await peer.until("ag2.answer"))["sdp"])
    await peer.send({"type": "ag2.ready"})
    await asyncio.sleep(0.5)
    await peer.send({"type": "ag2.hangup"})
    await peer.closed()
    await media.close()
    assert not await database_sync_to_async(CallRecording.objects.filter(session_id=init["session_id"]).exists)()


async def test_a_typed_line_is_refused_with_a_sentence(owner: User, emulator: Emulator) -> None:
    await live_config()
    peer, _init, media, session_id_live = await _set_up(owner)
    await peer.send({"type": "ag2.text", "text": "What time is it?"})
    error = await peer.until("ag2.error")
    assert error["code"] == "text_not_supported" and "Say it instead" in error["message"]
    assert not error["retryable"]
    sent = [c["event"]["type"] for c in (await emulator.call(session_id_live))["client_events"]]
    assert not any(kind.endswith(".append") or kind.startswith("response.") for kind in sent), sent
    await peer.send({"type": "ag2.hangup"})
    await peer.closed()
    await media.close()
