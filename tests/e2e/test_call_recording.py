"""A recorded call in real Chromium: consent before the call, both sides recorded in the browser and
uploaded while the call runs (through a dropped websocket), the stored file decoded with a real decoder
(PyAV), and the replay page playing it from a transcript line."""

from __future__ import annotations

import array
import io
import math
import time

import pytest
from django.contrib.auth.models import User

from tests.e2e.harness import Harness
from tests.e2e.pages import bubble, connect, expect, expect_state, log_in, snapshot
from tests.e2e.records import wait_for_session
from tests.e2e.servers import wait_until
from voice import timeline
from voice.models import CallRecording, TranscriptItem, VoiceConfig, VoiceSession

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
]

av = pytest.importorskip("av")  # aiortc (the emulator's extra) brings PyAV


def decode(data: bytes) -> tuple[float, list[float], float]:
    """Duration (s), RMS level of each channel, and the longest run of missing time between packets (s)."""
    squares, count = [0.0, 0.0], 0
    gap, last_end = 0.0, None
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.channels == 2, "the recording is not stereo"
        rate = stream.rate
        resampler = av.AudioResampler(format="flt", layout="stereo", rate=rate)
        for frame in container.decode(stream):
            start = float(frame.pts * frame.time_base) if frame.pts is not None else None
            if start is not None and last_end is not None:
                gap = max(gap, start - last_end)
            if start is not None:
                last_end = start + frame.samples / frame.sample_rate
            for out in resampler.resample(frame):
                values = array.array("f", bytes(out.planes[0])[: out.samples * 8])
                squares[0] += sum(v * v for v in values[0::2])
                squares[1] += sum(v * v for v in values[1::2])
                count += out.samples
    return count / rate, [math.sqrt(s / max(count, 1)) for s in squares], gap


def _recorded(slug: str = "default", policy: str = VoiceConfig.Recording.ASK) -> None:
    VoiceConfig.objects.filter(slug=slug).update(recording=policy, recording_retention_days=14)


@pytest.mark.parametrize("mode", ["server", "relay"])
def test_a_recorded_call_is_stored_whole_in_stereo_and_replays(e2e: Harness, owner: User, mode: str,
                                                               request: pytest.FixtureRequest) -> None:
    if mode == "relay":
        request.getfixturevalue("relay_mode")  # the browser relays OpenAI's events; the recording is the same
    _recorded()
    e2e.emulator.use_script("default")
    page = e2e.new_page("chat")
    log_in(page, "alice", "alice-pass-2026", next_path="/voice/")
    expect(page.locator("#recording-consent")).to_be_visible()
    expect(page.locator("#recording-notice")).to_contain_text("kept for 14 days")
    page.check("#recording-agree")
    client = connect(page)
    session_id = client["sessionId"]
    session = wait_for_session(session_id, status=VoiceSession.Status.ACTIVE)
    assert session.recording_consent is True and session.mode == mode
    expect(page.locator("#recording-state")).to_have_text("Recording this call")
    expect(bubble(page, "assistant", session_id=session_id)).to_have_count(1, timeout=20_000)

    if mode == "server":
        # The server's socket drops mid-call: the call goes on, and so does the recording. (In relay mode
        # the call ends with its socket and a new session starts, with a recording of its own.)
        page.evaluate("window.voiceClient.ws.close(4000, 'network test')")
        page.wait_for_function("window.__e2e.states.includes('reconnecting')", timeout=10_000)
        expect_state(page, "connected", timeout=20_000)
    time.sleep(2)
    page.click("#hangup")
    expect_state(page, "ended")
    expect(page.locator("#recording-state")).to_have_text("Recording saved", timeout=20_000)
    session = wait_for_session(session_id, status=VoiceSession.Status.ENDED)
    recorder = page.evaluate("window.voiceRecorder.snapshot()")
    assert recorder["queued"] == 0 and recorder["uploaded"] == recorder["recorded"], recorder

    recording = CallRecording.objects.get(session_id=session_id)
    assert recording.chunk_count == recorder["recorded"]
    assert list(recording.chunks.values_list("index", flat=True)) == list(range(recording.chunk_count))
    answer = page.request.get(f"/voice/sessions/{session_id}/recording.webm")
    assert answer.ok and answer.headers["content-type"] == "audio/webm"
    duration, levels, gap = decode(answer.body())
    call_seconds = (session.ended_at - session.connected_at).total_seconds()
    assert abs(duration - call_seconds) < 1.0, (duration, call_seconds)
    assert gap < 0.5, f"a hole of {gap:.2f} s in the recording"
    assert levels[0] > 0.005 and levels[1] > 0.005, f"a silent channel: left {levels[0]:.4f}, right {levels[1]:.4f}"

    # Every line of the model has its place on the recording; the Recorder stamped its first audio.
    replay = timeline.build(session)
    spoken = list(TranscriptItem.objects.filter(session_id=session_id, role="assistant", kind="message"))
    assert spoken and all(item.first_audio_at is not None for item in spoken)
    assert all(replay.item_ms[item.item_id][0] is not None for item in spoken)
    assert any(turn.latency_ms is not None for turn in replay.turns.values())

    # The replay page plays it from a line.
    page.goto(f"/voice/sessions/{session_id}/")
    player = page.locator("#replay-audio")
    expect(player).to_be_visible()
    buttons = page.locator("button.play-at")
    assert buttons.count() >= 2
    buttons.nth(1).click()
    wait_until(lambda: page.evaluate("!document.getElementById('replay-audio').paused"), timeout=10,
               what="the recording playing")
    target = int(buttons.nth(1).get_attribute("data-ms")) / 1000
    wait_until(lambda: page.evaluate("document.getElementById('replay-audio').currentTime") > target, timeout=10,
               what="the player past the line's moment")
    expect(page.locator("#replay-levels")).to_have_attribute("data-drawn", "true", timeout=10_000)
    expect(page.locator(".turn-facts").first).to_contain_text("Answered after")


def test_declining_records_nothing_and_a_required_recording_starts_no_call(e2e: Harness, owner: User) -> None:
    _recorded()
    page = e2e.new_page("chat")
    log_in(page, "alice", "alice-pass-2026", next_path="/voice/")
    client = connect(page)  # the box left unticked
    expect(page.locator("#recording-state")).to_have_text("Not recorded")
    assert wait_for_session(client["sessionId"]).recording_consent is False
    page.click("#hangup")
    expect_state(page, "ended")
    assert not CallRecording.objects.exists()

    _recorded(policy=VoiceConfig.Recording.REQUIRED)
    page.reload()
    expect(page.locator("#recording-agree-label")).to_have_text("I agree to this call being recorded")
    page.click("#connect")
    expect(page.locator("#error")).to_contain_text("This assistant records its calls")
    expect_state(page, "idle")
    assert VoiceSession.objects.count() == 1
    assert snapshot(page)["sessionId"] is None  # no socket was opened
