"""A GPT-Live call's recording, assembled on the server from the sideband's audio copies
(voice/live_audio.py): placement on the session's timeline, gaps as silence, the bounds, and the stored
WAV read back with the stdlib `wave` module and through the recording's HTTP view."""

from __future__ import annotations

import base64
import io
import math
import wave
from array import array
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.test import Client

from voice import call_audio, live_audio, timeline
from voice.live_audio import RATE, LiveAudioRecorder
from voice.models import CallRecording, TranscriptItem, VoiceConfig, VoiceSession
from voice.realtime.gptlive_events import LiveAudioCopy

pytestmark = pytest.mark.django_db(transaction=True)


def tone(ms: int, amplitude: int = 8000, frequency: float = 440.0) -> str:
    samples = array("h", (int(amplitude * math.sin(2 * math.pi * frequency * i / RATE))
                          for i in range(RATE * ms // 1000)))
    return base64.b64encode(samples.tobytes()).decode()


def copy_in(ms: int = 100, amplitude: int = 8000) -> LiveAudioCopy:
    return LiveAudioCopy(direction="input", audio=tone(ms, amplitude))


def copy_out(start_ms: int, ms: int = 100, amplitude: int = 8000) -> LiveAudioCopy:
    return LiveAudioCopy(direction="output", audio=tone(ms, amplitude, 660.0), start_ms=start_ms,
                         end_ms=start_ms + ms)


@database_sync_to_async
def live_session(owner: User, *, consent: bool = True) -> VoiceSession:
    config = VoiceConfig.objects.get(slug="default")
    config.recording = VoiceConfig.Recording.ASK
    config.save()
    return VoiceSession.objects.create(user=owner, config=config, model="gpt-live-1.1", protocol="live",
                                       mode="server", recording_consent=consent)


@database_sync_to_async
def stored_wav(session: VoiceSession) -> tuple[CallRecording, bytes]:
    recording = CallRecording.objects.get(session=session)
    rows = call_audio.chunk_rows(recording)
    data = b"".join(call_audio.read_range(rows, 0, sum(size for _, size in rows) - 1))
    return recording, data


def channels(data: bytes) -> tuple[wave._wave_params, array, array]:  # type: ignore[name-defined]
    with wave.open(io.BytesIO(data)) as reader:
        params = reader.getparams()
        frames = array("h", reader.readframes(reader.getnframes()))
    return params, frames[0::2], frames[1::2]


def level(samples: array, start_ms: int, end_ms: int) -> float:
    part = samples[start_ms * RATE // 1000:end_ms * RATE // 1000]
    return math.sqrt(sum(s * s for s in part) / max(1, len(part)))


async def test_copies_are_placed_on_the_timeline_with_silence_between(owner: User) -> None:
    session = await live_session(owner)
    recorder = LiveAudioRecorder(session, chunk_ms=500, max_lag_ms=3000)
    await recorder.start(None)
    for _ in range(10):  # the user: the first second, end to end
        await recorder.on_event(copy_in())
    for _ in range(10):  # then silence from the microphone
        await recorder.on_event(copy_in(amplitude=0))
    for n in range(5):  # the model: 1.2 s .. 1.7 s
        await recorder.on_event(copy_out(1200 + 100 * n))
    await recorder.on_event(copy_out(2500))  # a jump: the gap stays silent
    await recorder.close()

    recording, data = await stored_wav(session)
    params, left, right = channels(data)
    assert (params.nchannels, params.sampwidth, params.framerate) == (2, 2, RATE)
    assert params.nframes == 2600 * RATE // 1000  # up to the last copy's end
    assert recording.content_type == "audio/wav" and recording.offset_ms == 0
    assert recording.duration_ms == 2600 and recording.size_bytes == len(data)
    assert recording.chunk_count >= 3  # the header and the samples, a chunk at a time
    assert level(left, 0, 1000) > 5000 and level(left, 1000, 2600) == 0
    assert level(right, 0, 1200) == 0 and level(right, 1200, 1700) > 5000
    assert level(right, 1700, 2500) == 0 and level(right, 2500, 2600) > 5000


async def test_the_input_catches_up_after_copies_it_did_not_hear(owner: User) -> None:
    session = await live_session(owner)
    recorder = LiveAudioRecorder(session, chunk_ms=500)
    await recorder.start(None)
    for n in range(30):  # the model's copies for 3 s; the sideband heard no input meanwhile
        await recorder.on_event(copy_out(100 * n, amplitude=0))
    await recorder.on_event(copy_in())  # placed where the timeline is, not at 0
    await recorder.close()
    _, left, _ = channels((await stored_wav(session))[1])
    assert level(left, 0, 2900) == 0 and level(left, 2900, 3000) > 5000


async def test_memory_is_bounded_and_late_or_bad_copies_are_dropped(owner: User) -> None:
    session = await live_session(owner)
    recorder = LiveAudioRecorder(session, chunk_ms=500, max_lag_ms=1000)
    await recorder.start(None)
    for n in range(50):  # 5 s of the model with no input: the buffer is cut anyway
        await recorder.on_event(copy_out(100 * n))
        assert len(recorder.buffer) // 2 <= (500 + 1000 + 100) * RATE // 1000
    await recorder.on_event(copy_in())  # its place (0 ms) was written long ago... but it catches up
    await recorder.on_event(copy_out(0))  # the model's first 100 ms again: too late
    await recorder.on_event(LiveAudioCopy(direction="output", audio="not base64!", start_ms=10))
    await recorder.on_event(copy_out(10_000_000))  # implausibly far ahead
    assert recorder.dropped == 3
    await recorder.close()
    params, _, _ = channels((await stored_wav(session))[1])
    assert params.nframes == 5000 * RATE // 1000


async def test_the_size_limit_stops_the_recording(owner: User) -> None:
    session = await live_session(owner)
    limit = 44 + 2 * RATE * 4  # the header and two seconds
    recorder = LiveAudioRecorder(session, chunk_ms=500, max_bytes=limit)
    await recorder.start(None)
    for n in range(50):
        await recorder.on_event(copy_in())
        await recorder.on_event(copy_out(100 * n))
    await recorder.close()
    recording, data = await stored_wav(session)
    assert recorder.full and recording.size_bytes <= limit and len(data) == recording.size_bytes
    params, _, _ = channels(data)
    assert params.nframes == 2 * RATE  # the header says what was kept


async def test_no_consent_records_nothing(owner: User) -> None:
    session = await live_session(owner, consent=False)
    assert not live_audio.records(session)
    agreed = await live_session(owner)
    assert live_audio.records(agreed)


async def test_the_replay_plays_the_wav_and_places_the_lines(owner: User) -> None:
    session = await live_session(owner)
    recorder = LiveAudioRecorder(session, chunk_ms=500)
    await recorder.start(None)
    for n in range(20):
        await recorder.on_event(copy_in())
        await recorder.on_event(copy_out(100 * n))
    await recorder.close()

    @database_sync_to_async
    def check() -> None:
        TranscriptItem.objects.create(session=session, item_id="live_in_1", role="user", kind="message",
                                      text="Hello", audio_start_ms=300, audio_end_ms=900)
        replay = timeline.build(session)
        assert replay.has_recording and replay.item_ms["live_in_1"] == (300, 900)
        client = Client()
        client.force_login(owner)
        response = client.get(f"/voice/sessions/{session.pk}/recording.webm")
        assert response.status_code == 200 and response["Content-Type"] == "audio/wav"
        body = b"".join(response.streaming_content)  # type: ignore[attr-defined]
        params, _, _ = channels(body)
        assert params.nframes == 2 * RATE
        ranged = client.get(f"/voice/sessions/{session.pk}/recording.webm", HTTP_RANGE="bytes=0-43")
        assert ranged.status_code == 206 and b"".join(ranged.streaming_content) == body[:44]  # type: ignore[attr-defined]
        download = client.get(f"/voice/sessions/{session.pk}/recording.webm?download=1")
        assert download["Content-Disposition"].endswith('.wav"')

    await check()


def test_the_header_is_a_valid_wav(tmp_path: Any) -> None:
    data = live_audio.wav_header(RATE * 4) + bytes(RATE * 4)
    with wave.open(io.BytesIO(data)) as reader:
        assert (reader.getnchannels(), reader.getframerate(), reader.getnframes()) == (2, RATE, RATE)
