"""Call recordings: consent before the call, chunked uploads and what they refuse, the recording played
back whole or in ranges (decoded with a real decoder), deletion with the session, and retention."""

from __future__ import annotations

import array
import io
import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from voice import call_audio, sessions
from voice.models import CallRecording, RecordingChunk, VoiceConfig, VoiceSession

pytestmark = pytest.mark.django_db

av = pytest.importorskip("av")  # aiortc (the emulator's extra) brings PyAV


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def stereo_webm(seconds: float = 2.0) -> bytes:
    """A real stereo Opus/WebM stream: a 440 Hz tone on the left, 660 Hz on the right."""
    out = io.BytesIO()
    frame_samples = 960
    with av.open(out, "w", format="webm") as container:
        stream = container.add_stream("libopus", rate=48000, layout="stereo")
        for n in range(int(seconds * 48000 / frame_samples)):
            pcm = array.array("h")
            for i in range(n * frame_samples, (n + 1) * frame_samples):
                pcm.append(int(9000 * math.sin(2 * math.pi * 440 * i / 48000)))  # left
                pcm.append(int(9000 * math.sin(2 * math.pi * 660 * i / 48000)))  # right
            frame = av.AudioFrame(format="s16", layout="stereo", samples=frame_samples)
            frame.planes[0].update(pcm.tobytes())
            frame.sample_rate = 48000
            frame.pts = n * frame_samples
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def decode(data: bytes) -> tuple[float, list[float]]:
    """Duration (s) and the RMS level (0..1) of each channel, read back with PyAV (libopus)."""
    return decode_levels(av, data)


def decode_levels(av_module: Any, data: bytes) -> tuple[float, list[float]]:
    squares, count, rate = [0.0, 0.0], 0, 48000
    with av_module.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.channels == 2
        rate = stream.rate
        resampler = av_module.AudioResampler(format="flt", layout="stereo", rate=rate)
        for decoded in container.decode(stream):
            for frame in resampler.resample(decoded):
                values = array.array("f", bytes(frame.planes[0])[: frame.samples * 8])
                squares[0] += sum(v * v for v in values[0::2])
                squares[1] += sum(v * v for v in values[1::2])
                count += frame.samples
    return count / rate, [math.sqrt(sq / max(count, 1)) for sq in squares]


@pytest.fixture
def recorded_config() -> VoiceConfig:
    config = VoiceConfig.objects.get(slug="default")
    config.recording = VoiceConfig.Recording.ASK
    config.recording_retention_days = 7
    config.save()
    return config


@pytest.fixture
def call(owner: User, recorded_config: VoiceConfig) -> VoiceSession:
    now = timezone.now()
    return VoiceSession.objects.create(user=owner, config=recorded_config, status="active", started_at=now,
                                       connected_at=now, recording_consent=True)


def upload(client: Client, session: VoiceSession, index: int, body: bytes, *,
           content_type: str = "audio/webm;codecs=opus", **headers: str) -> Any:
    return client.post(f"/voice/sessions/{session.pk}/recording/{index}", data=body, content_type=content_type,
                       headers=headers)


def parts(data: bytes, size: int = 4000) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


# --- consent ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("policy", "answer", "consent"), [
    ("off", "yes", False), ("ask", "yes", True), ("ask", "no", False), ("ask", None, False),
    ("required", "yes", True),
])
def test_the_session_keeps_what_the_user_answered(owner: User, policy: str, answer: str | None,
                                                  consent: bool) -> None:
    VoiceConfig.objects.filter(slug="default").update(recording=policy)
    session = sessions.start_session.func(owner, "default", recording=answer)  # type: ignore[attr-defined]
    assert session.recording_consent is consent


@pytest.mark.parametrize("answer", ["no", None, "maybe"])
def test_a_config_that_requires_consent_starts_no_call_without_it(owner: User, answer: str | None) -> None:
    VoiceConfig.objects.filter(slug="default").update(recording="required")
    with pytest.raises(sessions.SessionRefused) as refused:
        sessions.start_session.func(owner, "default", recording=answer)  # type: ignore[attr-defined]
    assert refused.value.code == "recording_consent_required"
    assert "agree to the recording" in refused.value.message
    assert not VoiceSession.objects.exists()


def test_nothing_is_stored_for_a_call_without_consent(owner: User, call: VoiceSession) -> None:
    VoiceSession.objects.filter(pk=call.pk).update(recording_consent=False)
    answer = upload(_client(owner), call, 0, stereo_webm(0.5))
    assert answer.status_code == 403
    assert answer.json()["message"] == "This call is not being recorded, so no audio was stored."
    assert not CallRecording.objects.exists()


# --- uploads -------------------------------------------------------------------------------------------------


def test_chunks_uploaded_in_order_play_back_as_the_whole_recording(owner: User, call: VoiceSession,
                                                                   recordings_dir: Path) -> None:
    data = stereo_webm(2.0)
    client = _client(owner)
    chunks = parts(data)
    for index, chunk in enumerate(chunks):
        headers = {"X-Recording-Offset-Ms": "120"} if index == 0 else {}
        answer = upload(client, call, index, chunk, **headers, **{"X-Recording-Duration-Ms": str(500 * index)})
        assert answer.status_code == 201, answer.content
        assert answer.json()["next"] == index + 1
    recording = CallRecording.objects.get(session=call)
    assert (recording.chunk_count, recording.size_bytes, recording.offset_ms) == (len(chunks), len(data), 120)
    assert recording.delete_after - recording.started_at == timedelta(days=7)
    assert len(list(recordings_dir.rglob("*.webm"))) == len(chunks)

    whole = client.get(f"/voice/sessions/{call.pk}/recording.webm")
    body = b"".join(whole.streaming_content)
    assert whole.status_code == 200 and whole["Content-Type"] == "audio/webm" and body == data
    duration, levels = decode(body)
    assert abs(duration - 2.0) < 0.1
    assert all(level > 0.1 for level in levels), levels

    part = client.get(f"/voice/sessions/{call.pk}/recording.webm", headers={"Range": "bytes=100-4099"})
    assert part.status_code == 206 and part["Content-Range"] == f"bytes 100-4099/{len(data)}"
    assert b"".join(part.streaming_content) == data[100:4100]
    tail = client.get(f"/voice/sessions/{call.pk}/recording.webm", headers={"Range": "bytes=-10"})
    assert b"".join(tail.streaming_content) == data[-10:]
    beyond = client.get(f"/voice/sessions/{call.pk}/recording.webm", headers={"Range": f"bytes={len(data)}-"})
    assert beyond.status_code == 416
    download = client.get(f"/voice/sessions/{call.pk}/recording.webm?download=1")
    assert download["Content-Disposition"].startswith('attachment; filename="call-')


def test_a_chunk_sent_again_is_stored_once(owner: User, call: VoiceSession) -> None:
    chunks = parts(stereo_webm(1.0))
    client = _client(owner)
    assert upload(client, call, 0, chunks[0]).status_code == 201
    again = upload(client, call, 0, chunks[0])
    assert again.status_code == 200 and again.json() == {"index": 0, "stored": False, "next": 1,
                                                         "size_bytes": len(chunks[0])}
    assert RecordingChunk.objects.count() == 1
    status = client.get(f"/voice/sessions/{call.pk}/recording").json()
    assert status == {"consent": True, "open": True, "next": 1, "size_bytes": len(chunks[0])}


def _refused(answer: Any, status: int, code: str) -> str:
    assert answer.status_code == status, answer.content
    body = answer.json()
    assert body["error"] == code
    assert body["message"].endswith(".") and "Traceback" not in body["message"]
    return body["message"]


def test_bad_uploads_are_refused_and_the_recording_stays_intact(owner: User, stranger: User, call: VoiceSession,
                                                                settings: Any) -> None:
    data = stereo_webm(1.0)
    chunks = parts(data, 2000)
    client = _client(owner)
    for index in (0, 1):
        assert upload(client, call, index, chunks[index]).status_code == 201

    _refused(upload(client, call, 2, chunks[2], content_type="text/plain"), 415, "not_audio")
    _refused(upload(client, call, 2, chunks[2], content_type="application/json"), 415, "not_audio")
    message = _refused(upload(client, call, 5, chunks[2]), 409, "out_of_order")
    assert message == "Part 6 of the recording came before part 3; send the parts in order."
    _refused(upload(client, call, 1, b"different bytes"), 409, "chunk_conflict")
    _refused(upload(client, call, 2, b""), 400, "empty_chunk")
    settings.VOICE_RECORDING_MAX_CHUNK_BYTES = 1000
    _refused(upload(client, call, 2, chunks[2]), 413, "chunk_too_large")
    settings.VOICE_RECORDING_MAX_CHUNK_BYTES = 1024 * 1024
    _refused(upload(client, call, 2, chunks[2], **{"X-Recording-Duration-Ms": "soon"}), 400, "invalid_header")
    _refused(upload(_client(stranger), call, 2, chunks[2]), 404, "no_such_session")
    assert Client().post(f"/voice/sessions/{call.pk}/recording/2", data=chunks[2],
                         content_type="audio/webm").status_code in (401, 403)

    recording = CallRecording.objects.get(session=call)
    assert (recording.chunk_count, recording.size_bytes) == (2, len(chunks[0]) + len(chunks[1]))
    body = b"".join(client.get(f"/voice/sessions/{call.pk}/recording.webm").streaming_content)
    assert body == chunks[0] + chunks[1]
    # And it goes on from where it was.
    for index in range(2, len(chunks)):
        assert upload(client, call, index, chunks[index]).status_code == 201
    assert b"".join(client.get(f"/voice/sessions/{call.pk}/recording.webm").streaming_content) == data


def test_a_recording_must_start_as_webm(owner: User, call: VoiceSession) -> None:
    _refused(upload(_client(owner), call, 0, b"RIFF....WAVEfmt "), 415, "not_audio")
    _refused(upload(_client(owner), call, 1, stereo_webm(0.2)), 409, "out_of_order")
    assert not CallRecording.objects.exists()


def test_uploads_close_a_while_after_the_call_ends(owner: User, call: VoiceSession, settings: Any) -> None:
    chunks = parts(stereo_webm(1.0))
    client = _client(owner)
    VoiceSession.objects.filter(pk=call.pk).update(status="ended", ended_at=timezone.now())
    assert upload(client, call, 0, chunks[0]).status_code == 201  # the last parts, just after hanging up
    VoiceSession.objects.filter(pk=call.pk).update(
        ended_at=timezone.now() - timedelta(seconds=settings.VOICE_RECORDING_UPLOAD_GRACE_SECONDS + 1))
    _refused(upload(client, call, 1, chunks[1]), 410, "session_ended")
    assert CallRecording.objects.get(session=call).chunk_count == 1


def test_uploads_are_rate_limited(owner: User, call: VoiceSession, settings: Any) -> None:
    settings.VOICE_RECORDING_MAX_CHUNKS_PER_MINUTE = 10
    chunks = parts(stereo_webm(2.0), 500)
    client = _client(owner)
    for index in range(10):
        assert upload(client, call, index, chunks[index]).status_code == 201
    answer = upload(client, call, 10, chunks[10])
    _refused(answer, 429, "rate_limited")
    assert answer["Retry-After"] == "5"
    assert answer.json()["next"] == 10


def test_the_recording_has_a_size_limit(owner: User, call: VoiceSession, settings: Any) -> None:
    settings.VOICE_RECORDING_MAX_BYTES = 5000
    chunks = parts(stereo_webm(1.0), 3000)
    client = _client(owner)
    assert upload(client, call, 0, chunks[0]).status_code == 201
    _refused(upload(client, call, 1, chunks[1]), 413, "recording_too_large")


def test_who_may_hear_a_recording(owner: User, stranger: User, staff: User, call: VoiceSession) -> None:
    upload(_client(owner), call, 0, stereo_webm(0.3))
    url = f"/voice/sessions/{call.pk}/recording.webm"
    assert _client(stranger).get(url).status_code == 404
    assert _client(staff).get(url).status_code == 404  # staff without the review permission
    staff.user_permissions.add(Permission.objects.get(codename="view_voicesession"))
    assert _client(User.objects.get(pk=staff.pk)).get(url).status_code == 200


# --- deletion and retention ---------------------------------------------------------------------------------


def test_deleting_a_session_deletes_its_audio(owner: User, call: VoiceSession, recordings_dir: Path,
                                              django_capture_on_commit_callbacks: Any) -> None:
    upload(_client(owner), call, 0, stereo_webm(0.3))
    assert list(recordings_dir.rglob("*.webm"))
    with django_capture_on_commit_callbacks(execute=True):
        call.delete()
    assert not list(recordings_dir.rglob("*.webm"))
    assert not RecordingChunk.objects.exists()


def test_purge_deletes_recordings_past_their_retention(owner: User, recorded_config: VoiceConfig,
                                                       recordings_dir: Path,
                                                       django_capture_on_commit_callbacks: Any) -> None:
    now = timezone.now()
    old, recent = (VoiceSession.objects.create(user=owner, config=recorded_config, status="active",
                                               connected_at=now, recording_consent=True) for _ in range(2))
    client = _client(owner)
    for session in (old, recent):
        upload(client, session, 0, stereo_webm(0.3))
    CallRecording.objects.filter(session=old).update(delete_after=now - timedelta(minutes=1))

    out = io.StringIO()
    call_command("purge_recordings", "--dry-run", stdout=out)
    assert out.getvalue().strip() == "1 recording(s) past their retention period would be deleted."
    assert CallRecording.objects.count() == 2
    with django_capture_on_commit_callbacks(execute=True):
        call_command("purge_recordings", stdout=out)
    assert "1 recording(s) past their retention period deleted." in out.getvalue()
    assert list(CallRecording.objects.values_list("session_id", flat=True)) == [recent.pk]
    assert [p.parent.name for p in recordings_dir.rglob("*.webm")] == [str(recent.pk)]
    assert VoiceSession.objects.filter(pk=old.pk).exists()  # the session and its transcript stay


def test_ranges_are_read_across_chunk_boundaries(recordings_dir: Path) -> None:
    store = call_audio.storage()
    rows = [(store.save(f"x/{i}.webm", ContentFile(bytes([65 + i]) * 5)), 5) for i in range(3)]
    assert b"".join(call_audio.read_range(rows, 3, 11)) == b"AABBBBBCC"
    assert call_audio.parse_range("bytes=0-", 15) == (0, 14)
    assert call_audio.parse_range("items=1-2", 15) is None


# --- the replay timeline ------------------------------------------------------------------------------------


def test_the_session_page_places_lines_on_the_recording_with_latency_and_cost(owner: User,
                                                                              call: VoiceSession) -> None:
    from decimal import Decimal

    from voice.models import ResponseUsage, SessionEvent, ToolCall, TranscriptItem

    t0 = call.connected_at
    upload(_client(owner), call, 0, stereo_webm(1.0), **{"X-Recording-Offset-Ms": "500"})
    events = [
        ("input_audio_buffer.speech_started", {"item_id": "u1", "audio_start_ms": 2500}, 2.8),
        ("input_audio_buffer.speech_stopped", {"item_id": "u1", "audio_end_ms": 4000}, 4.3),
        ("output_audio_buffer.started", {"response_id": "r1"}, 5.1),
        ("output_audio_buffer.stopped", {"response_id": "r1"}, 8.0),
    ]
    for seq, (kind, payload, at) in enumerate(events, 1):
        SessionEvent.objects.create(session=call, seq=seq, direction="from_openai", type=kind, payload=payload,
                                    created_at=t0 + timedelta(seconds=at))
    TranscriptItem.objects.create(session=call, item_id="u1", role="user", text="What time is it?",
                                  status="completed", created_at=t0 + timedelta(seconds=3))
    TranscriptItem.objects.create(session=call, item_id="a1", previous_item_id="u1", role="assistant",
                                  response_id="r1", text="It is noon.", status="completed",
                                  created_at=t0 + timedelta(seconds=5))
    ResponseUsage.objects.create(session=call, response_id="r1", total_tokens=99, cost_usd=Decimal("0.001234"))
    ToolCall.objects.create(session=call, call_id="c1", name="current_time", started_at=t0 + timedelta(seconds=4.8),
                            status="succeeded", duration_ms=3)

    html = _client(owner).get(f"/voice/sessions/{call.pk}/").content.decode()
    assert f'src="/voice/sessions/{call.pk}/recording.webm"' in html
    assert 'data-ms="2000">Play from 0:02' in html  # 2.5 s of call audio, the recording started at 0.5 s
    assert 'data-ms="4600">Play from 0:04' in html  # the model's audio at 5.1 s
    assert 'data-ms="4300">Play from 0:04' in html  # the tool call at 4.8 s
    assert "Answered after 0.8 s" in html and "cost $0.0012" in html
    assert "Download the recording" in html

    exported = _client(owner).get(f"/voice/sessions/{call.pk}/conversation.json").json()
    assert [row["recording_ms"] for row in exported["transcript"]] == [2000, 4600]
    assert exported["recording"]["url"].endswith(f"/voice/sessions/{call.pk}/recording.webm")
    text = _client(owner).get(f"/voice/sessions/{call.pk}/conversation.txt").content.decode()
    assert (f"Recording: http://testserver/voice/sessions/{call.pk}/recording.webm (WebM, length unknown; the user "
            "left, the model right)\nAnswers: after 0.8 s (median of 1), slowest 0.8 s\n") in text
    assert exported["turn_timing"] == [{"audio_ms": 4600, "latency_ms": 800, "cost_usd": "0.001234", "tokens": 99,
                                        "measured_from": "output_audio_buffer.started"}]


def test_a_session_without_recording_shows_no_player(owner: User, call: VoiceSession) -> None:
    html = _client(owner).get(f"/voice/sessions/{call.pk}/").content.decode()
    assert "<audio" not in html and "Play from" not in html
    assert _client(owner).get(f"/voice/sessions/{call.pk}/recording.webm").status_code == 404


def test_the_admin_plays_the_recording_with_each_turns_latency(owner: User, superuser: User,
                                                               call: VoiceSession) -> None:
    from decimal import Decimal

    from voice.models import ResponseUsage, SessionEvent

    upload(_client(owner), call, 0, stereo_webm(0.5))
    for seq, (kind, payload, at) in enumerate([("input_audio_buffer.speech_stopped", {"item_id": "u1"}, 2.0),
                                               ("output_audio_buffer.started", {"response_id": "r1"}, 2.6)], 1):
        SessionEvent.objects.create(session=call, seq=seq, direction="from_openai", type=kind, payload=payload,
                                    created_at=call.connected_at + timedelta(seconds=at))
    ResponseUsage.objects.create(session=call, response_id="r1", total_tokens=9, cost_usd=Decimal("0.0021"))
    html = _client(superuser).get(f"/admin/voice/voicesession/{call.pk}/change/").content.decode()
    assert f'src="/voice/sessions/{call.pk}/recording.webm"' in html
    assert "At 0:02: answered after 0.6 s, cost $0.0021" in html


def test_without_output_audio_buffer_events_every_model_line_still_gets_a_place(owner: User,
                                                                                call: VoiceSession) -> None:
    """OpenAI's sideband may not send output_audio_buffer.started: a line then sits where its first audio
    delta arrived (the Recorder's stamp), else where its output item was added, else where it was first
    heard of; the latency is measured from the same moment. Where the exact event came, it wins."""
    from voice import timeline
    from voice.models import SessionEvent, TranscriptItem

    t0 = call.connected_at
    upload(_client(owner), call, 0, stereo_webm(0.5), **{"X-Recording-Offset-Ms": "1000"})

    def at(seconds: float) -> Any:
        return t0 + timedelta(seconds=seconds)

    def message(response_id: str, item_id: str) -> dict[str, Any]:
        return {"response_id": response_id, "item": {"id": item_id, "type": "message", "role": "assistant"}}

    events = [
        ("input_audio_buffer.speech_stopped", {"item_id": "u1", "audio_end_ms": 2000}, 2.0),
        ("response.output_item.added", message("r1", "a1"), 2.3),  # its first delta came at 2.6 (below)
        ("input_audio_buffer.speech_stopped", {"item_id": "u2", "audio_end_ms": 5000}, 5.0),
        ("response.output_item.added", {"response_id": "r2", "item": {"id": "f2", "type": "function_call"}},
         5.2),  # a tool call says nothing: the answer after the tool is the turn
        ("response.output_item.added", message("r3", "a3"), 6.1),  # no delta stamp: the item's own moment
        ("input_audio_buffer.speech_stopped", {"item_id": "u4"}, 9.0),
        ("response.output_item.added", message("r4", "a4"), 9.2),
        ("output_audio_buffer.started", {"response_id": "r4"}, 9.7),  # exact: wins over the delta at 9.4
        ("output_audio_buffer.stopped", {"response_id": "r4"}, 11.0),
    ]
    for seq, (kind, payload, when) in enumerate(events, 1):
        SessionEvent.objects.create(session=call, seq=seq, direction="from_openai", type=kind,
                                    payload={"type": kind, **payload}, created_at=at(when))
    lines = [("a1", "r1", 2.6, 2.25), ("a3", "r3", None, 6.05), ("a4", "r4", 9.4, 9.15), ("a5", "", None, 12.0)]
    for item_id, response_id, first_audio, created in lines:
        TranscriptItem.objects.create(session=call, item_id=item_id, role="assistant", response_id=response_id,
                                      text=item_id, status="completed", created_at=at(created),
                                      first_audio_at=at(first_audio) if first_audio is not None else None)

    replay = timeline.build(call)
    assert {item_id: replay.item_ms[item_id] for item_id, *_ in lines} == {
        "a1": (1600, None),   # its first audio delta, 2.6 s into the call, 1 s into the recording's start
        "a3": (5100, None),   # its output item
        "a4": (8700, 10000),  # output_audio_buffer.started and .stopped
        "a5": (11000, None),  # a line with no response at all: where the Recorder first heard of it
    }
    measured = {t.response_id: (t.latency_ms, t.source) for t in replay.turns.values()}
    assert measured == {"r1": (600, "first_audio_delta"), "r3": (1100, "output_item_added"),
                        "r4": (700, "output_audio_buffer.started")}
    assert timeline.turn_summary(replay) == {"count": 3, "median_ms": 700, "max_ms": 1100}


def test_the_turn_clock_keeps_the_best_sign_and_one_latency_per_user_turn() -> None:
    from voice.timeline import AUDIO_DELTA, EXACT, ITEM_ADDED, TurnClock

    t0 = timezone.now()
    clock = TurnClock()
    clock.speech_stopped(t0)
    assert clock.audio("r1", t0 + timedelta(milliseconds=300), ITEM_ADDED, "a1")
    assert clock.audio("r1", t0 + timedelta(milliseconds=450), AUDIO_DELTA)
    assert not clock.audio("r1", t0 + timedelta(milliseconds=500), AUDIO_DELTA)  # the first of a kind stands
    assert (clock.latency_ms("r1"), clock.source("r1")) == (450, "first_audio_delta")
    assert clock.audio("r1", t0 + timedelta(milliseconds=480), EXACT)
    assert (clock.latency_ms("r1"), clock.source("r1"), clock.responses["r1"].item_id) == (
        480, "output_audio_buffer.started", "a1")
    clock.audio("r2", t0 + timedelta(seconds=2), EXACT)  # a second answer to the same words: no latency
    assert clock.latency_ms("r2") is None
    clock.speech_stopped(t0 + timedelta(seconds=5))
    clock.audio("r3", t0 + timedelta(seconds=4), EXACT)  # before the stop it would answer: not a latency
    assert clock.latency_ms("r3") is None
