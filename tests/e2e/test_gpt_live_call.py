"""A GPT-Live call in real Chromium: the server posts the page's offer to /v1/live/sessions, hears the
session on its sideband, serves the delegation with a registered tool, and keeps the record; a staff
member watches it live on the dashboard. The page itself is unchanged (docs/gpt-live.md).

Everything is real except OpenAI: daphne serves the site, the emulator (its own process) plays the session.
"""

from __future__ import annotations

import io
import json
import time
import wave
from decimal import Decimal

import pytest
from django.contrib.auth.models import User

from tests.e2e.harness import Harness
from tests.e2e.pages import bubble, connect, expect, expect_state, live_peer_connections, log_in, sent_to_server
from tests.e2e.records import wait_for_session
from tests.e2e.servers import wait_until
from voice.models import ResponseUsage, ToolCall, VoiceConfig, VoiceSession

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(90),
]

SIGNALLING = {"ag2.offer", "ag2.ready", "ag2.client_error", "ag2.hangup"}


def _live_default_config() -> None:
    config = VoiceConfig.objects.get(slug="default")
    config.protocol, config.call_mode, config.live_model = "live", "server", "gpt-live-1.1"
    config.recording = VoiceConfig.Recording.ASK
    config.tools, config.live_delegation = ["current_time"], "client"
    config.full_clean()
    config.save()


def test_a_gpt_live_call_with_a_spoken_turn_and_a_delegation_to_a_server_tool(
    e2e: Harness, owner: User, staff: User
) -> None:
    _live_default_config()
    e2e.emulator.use_script("tool_call")
    dash = e2e.new_page("dashboard")
    log_in(dash, "stella", "stella-pass-2026", next_path="/voice/dashboard/")
    expect(dash.locator("#dash-state")).to_have_attribute("data-state", "live")

    chat = e2e.new_page("chat")
    log_in(chat, "alice", "alice-pass-2026", next_path="/voice/")
    chat.check("#recording-agree")
    client = connect(chat)  # the fake microphone's beep is the spoken turn
    session_id = client["sessionId"]
    assert client["mode"] == "server" and client["callId"] is None and client["api"] == "gpt-live", client
    # GPT-Live takes no typed turn: the page says so instead of offering it; the server records the call.
    expect(chat.locator("#say")).to_be_disabled()
    expect(chat.locator("#say-help")).to_contain_text("only listens")
    expect(chat.locator("#recording-state")).to_have_text("Recording this call")
    session = wait_for_session(session_id, status=VoiceSession.Status.ACTIVE)
    assert (session.protocol, session.model) == ("live", "gpt-live-1.1") and session.call_id.startswith("live_")
    live_id = session.call_id

    # The dashboard shows the call as it happens: the user's line, the reply quoting the tool, the delegation.
    row = dash.locator(f'#sessions-body tr[data-session-id="{session_id}"]')
    expect(row).to_have_count(1)
    row.click()
    transcript = dash.locator("#session-transcript")
    expect(transcript.locator("li.bubble[data-role=user] .text").first).to_have_text("What time is it in UTC?")
    expect(transcript.locator("li.bubble[data-role=assistant] .text").last).to_contain_text(
        "Thanks for waiting. The clock says", timeout=15_000)
    tool_row = dash.locator("#session-tools tr.tool-row")
    expect(tool_row).to_have_count(1)
    expect(tool_row).to_contain_text("current_time")
    expect(tool_row).to_have_attribute("data-status", "succeeded")

    # The chat page shows the call's lines too, from GPT-Live's fragments on its data channel.
    expect(bubble(chat, "user", final=False).first.locator(".text")).to_have_text("What time is it in UTC?")
    expect(bubble(chat, "assistant", final=False).last.locator(".text")).to_contain_text(
        "Thanks for waiting. The clock says", timeout=15_000)
    time.sleep(1.0)  # the rest of the reply

    chat.click("#hangup")
    expect_state(chat, "ended")
    expect(bubble(chat, "assistant")).to_have_count(1)  # session.closed ended every line
    assert chat.evaluate("window.voiceRecorder === undefined")  # the page recorded and uploaded nothing
    assert live_peer_connections(chat) == 0
    session = wait_for_session(session_id, status=VoiceSession.Status.ENDED, end_reason="hangup")

    # The delegation was answered on the sideband with the tool's output; the page sent only signalling.
    state = e2e.emulator.call(live_id)
    appended = [c["event"] for c in state["client_events"] if c["event"]["type"] == "session.commentary.append"]
    assert {c["source"] for c in state["client_events"]} == {"sideband"}, state["client_events"]
    assert set(sent_to_server(chat)) <= SIGNALLING, sent_to_server(chat)
    tool = ToolCall.objects.get(session=session)
    assert (tool.name, tool.status, tool.call_id) == ("current_time", "succeeded", appended[0]["delegation_id"])
    assert tool.output == appended[0]["content"] and json.loads(tool.output)["timezone"] == "UTC"
    assert tool.duration_ms is not None

    # Timed transcript lines, in order; cost from the session's seconds (session.closed's final figure).
    items = list(session.ordered_transcript())
    assert [(i.role, i.status) for i in items] == [("user", "completed"), ("assistant", "completed")]
    assert items[0].audio_start_ms is not None and items[1].audio_start_ms >= items[0].audio_end_ms
    usages = list(ResponseUsage.objects.filter(session=session))
    seconds = sum(u.voice_seconds for u in usages)
    closed = state["server_events"][-1]
    assert closed["type"] == "session.closed"
    assert seconds == Decimal(str(closed["usage"]["seconds"])).quantize(Decimal("0.001")) and seconds > 0
    assert session.cost_usd == (seconds * Decimal("0.05") / 60).quantize(Decimal("0.000001"))
    assert session.cost_usd > 0
    wait_until(lambda: e2e.emulator.call(live_id)["status"] == "ended", timeout=10, what="the session to end")

    # The recording, made on the server from the sideband's copies: a stereo WAV as long as the session.
    answer = chat.request.get(f"/voice/sessions/{session_id}/recording.webm")
    assert answer.ok and answer.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(answer.body())) as reader:
        assert (reader.getnchannels(), reader.getframerate()) == (2, 24_000)
        assert abs(reader.getnframes() / 24_000 - float(closed["usage"]["seconds"])) < 0.5
    chat.goto(f"/voice/sessions/{session_id}/")
    expect(chat.locator("#replay-audio")).to_be_visible()
    buttons = chat.locator("button.play-at")
    assert buttons.count() >= 2
    assert int(buttons.nth(1).get_attribute("data-ms")) == items[1].audio_start_ms
    buttons.nth(1).click()
    wait_until(lambda: chat.evaluate("document.getElementById('replay-audio').currentTime") * 1000
               > items[1].audio_start_ms, timeout=10, what="the player past the reply's moment")
