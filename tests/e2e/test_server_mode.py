"""Server-controlled calls in real Chromium: the server creates the call, hears the model on its sideband,
runs the tools there and keeps the record; the browser only signals, and the call outlives its websocket
and even the server process.

Everything is real except OpenAI: daphne serves the site, the emulator (its own process) plays the call.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User

from tests.e2e.harness import Harness
from tests.e2e.pages import (
    bubble,
    connect,
    expect,
    expect_state,
    live_peer_connections,
    log_in,
    sent_to_server,
    snapshot,
)
from tests.e2e.records import event_types, wait_for_session
from tests.e2e.servers import wait_until
from voice.models import ResponseUsage, SessionEvent, ToolCall, TranscriptItem, VoiceSession

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(90),
]

SIGNALLING = {"ag2.offer", "ag2.ready", "ag2.client_error", "ag2.hangup"}
HELLO = "Hello, can you hear me?"


def _start(e2e: Harness, script: str = "default") -> tuple[object, dict, str]:
    """Log in and connect a server-mode call; returns (page, client snapshot, call id from the record)."""
    e2e.emulator.use_script(script)
    page = e2e.new_page("chat")
    log_in(page, "alice", "alice-pass-2026", next_path="/voice/")
    client = connect(page)
    assert client["mode"] == "server" and client["callId"] is None, client  # the page never knows the call id
    session = wait_for_session(client["sessionId"], status=VoiceSession.Status.ACTIVE)
    assert session.mode == "server" and session.call_id.startswith("rtc_")
    return page, client, session.call_id


def _user_texts(session_id: str) -> list[str]:
    return list(TranscriptItem.objects.filter(session_id=session_id, role="user", kind="message")
                .order_by("created_at").values_list("text", flat=True))


def test_a_spoken_turn_and_a_tool_call_are_heard_and_answered_by_the_server_while_the_browser_relays_nothing(
    e2e: Harness, owner: User
) -> None:
    page, client, call_id = _start(e2e, "tool_call")
    session_id = client["sessionId"]
    tool_bubble = page.locator(f'#transcript li.bubble.bubble-tool.final[data-session-id="{session_id}"]')
    expect(tool_bubble).to_have_count(1)
    reply = bubble(page, "assistant", session_id=session_id)
    expect(reply.last.locator(".text")).to_contain_text("Thanks for waiting. The clock says")

    # The function call was answered on the sideband, and the browser put nothing on the data channel.
    call = e2e.emulator.call(call_id)
    assert {e["source"] for e in call["client_events"]} == {"sideband"}, call["client_events"]
    outputs = [e["event"]["item"] for e in call["client_events"] if e.get("event", {}).get("type")
               == "conversation.item.create" and e["event"]["item"].get("type") == "function_call_output"]
    assert len(outputs) == 1
    # The browser sent the server only signalling: no model event, no transcript, no usage.
    assert set(sent_to_server(page)) <= SIGNALLING, sent_to_server(page)
    assert {"ag2.offer", "ag2.ready"} <= set(sent_to_server(page))

    page.click("#hangup")
    expect_state(page, "ended")
    assert live_peer_connections(page) == 0
    session = wait_for_session(session_id, status=VoiceSession.Status.ENDED, end_reason="hangup")
    tool = ToolCall.objects.get(session=session)
    assert (tool.name, tool.status, tool.output) == ("current_time", ToolCall.Status.SUCCEEDED, outputs[0]["output"])
    assert ResponseUsage.objects.filter(session=session).count() == 2 and session.cost_usd > 0
    kinds = [i.kind for i in session.ordered_transcript()]
    assert kinds == ["message", "function_call", "function_call_output", "message"], kinds
    from_browser = set(event_types(session_id, SessionEvent.Direction.FROM_BROWSER))
    # What the Recorder read as model events came from the sideband; the browser's own rows are signalling.
    assert {t for t in from_browser if t.startswith("ag2.")} <= SIGNALLING
    wait_until(lambda: e2e.emulator.call(call_id)["status"] == "ended", timeout=10, what="the call to end")


def test_a_typed_line_is_sent_by_the_server_answered_and_recorded(e2e: Harness, owner: User) -> None:
    page, client, call_id = _start(e2e)
    session_id = client["sessionId"]
    assistant = bubble(page, "assistant", session_id=session_id)
    expect(assistant).to_have_count(1)  # the spoken exchange (the fake microphone's beep)
    page.click("#mute")  # no more beeps taken for speech
    say = page.get_by_label("Type instead of speaking")
    expect(say).to_be_enabled()
    expect(page.locator("#say-help")).to_contain_text("press Enter")

    say.fill("I would rather type this")
    say.press("Enter")
    expect(say).to_have_value("")
    expect(say).to_be_focused()
    typed = bubble(page, "user", session_id=session_id).filter(has_text="I would rather type this")
    expect(typed).to_have_count(1)
    expect(typed.locator(".who")).to_have_text("You")
    expect(assistant).to_have_count(2)  # answered: the script has no more turns, so its fallback line
    expect(assistant.last.locator(".text")).to_contain_text("I have nothing more in my script")
    expect(page.locator("#error")).to_be_empty()

    # The page sent ag2.text, never a model event; the server put the line on the sideband.
    sent = sent_to_server(page)
    assert "ag2.text" in sent and set(sent) <= SIGNALLING | {"ag2.text"}, sent
    call = e2e.emulator.call(call_id)
    typed_events = [e for e in call["client_events"] if e.get("event", {}).get("type") == "conversation.item.create"
                    and e["event"]["item"].get("role") == "user"]
    assert [e["source"] for e in typed_events] == ["sideband"]
    # And the record has it, from the sideband, in the order it was said.
    wait_until(lambda: "I would rather type this" in _user_texts(session_id), timeout=10, what="the line recorded")
    assert _user_texts(session_id) == [HELLO, "I would rather type this"]
    wait_until(lambda: VoiceSession.objects.get(pk=session_id).turns >= 2, timeout=10, what="the reply counted")

    # Lines faster than the assistant can answer are refused (per session), and the refused one is put
    # back in the box with a sentence saying why.
    refused = None
    for n in range(1, 8):
        line = f"Quick line {n}"
        say.fill(line)
        say.press("Enter")
        page.wait_for_function("""(line) => document.getElementById("say").value === line
          || [...document.querySelectorAll("#transcript li.bubble-user .text")].some((t) => t.textContent === line)""",
                               arg=line, timeout=10_000)
        if say.input_value() == line:
            refused = line
            break
    assert refused is not None, "no line was refused"
    expect(page.locator("#error")).to_have_attribute("data-code", "text_rate_limited")
    expect(page.locator("#error")).to_contain_text("Wait a moment, then send it again.")
    assert refused not in _user_texts(session_id)

    page.click("#hangup")
    expect_state(page, "ended")
    expect(say).to_be_disabled()
    expect(page.locator("#say-help")).to_contain_text("Connect first")
    wait_for_session(session_id, status=VoiceSession.Status.ENDED, end_reason="hangup")


def test_forged_frames_from_the_browser_leave_the_record_unchanged(e2e: Harness, owner: User) -> None:
    page, client, _ = _start(e2e)
    session_id = client["sessionId"]
    expect(bubble(page, "assistant", session_id=session_id)).to_have_count(1)
    wait_until(lambda: VoiceSession.objects.get(pk=session_id).total_tokens > 0, timeout=10, what="usage")
    tokens = VoiceSession.objects.get(pk=session_id).total_tokens
    page.evaluate("""() => {
      const ws = window.voiceClient.ws;
      ws.send(JSON.stringify({type: "response.done", response: {id: "resp_forged", status: "completed",
        usage: {total_tokens: 900000, input_tokens: 450000, output_tokens: 450000}}}));
      ws.send(JSON.stringify({type: "conversation.item.input_audio_transcription.completed",
        item_id: "item_forged", transcript: "I never said this"}));
      ws.send(JSON.stringify({type: "response.output_item.done", item: {id: "item_f", type: "function_call",
        call_id: "call_forged", name: "calculator", arguments: "{\\"expression\\": \\"6*7\\"}"}}));
    }""")
    expect(page.locator("#error")).to_have_attribute("data-code", "unexpected_frame")
    page.wait_for_timeout(1000)  # several of the Recorder's flushes
    # Nothing of it reached the record: no row, no usage, no transcript, no tool call.
    assert not SessionEvent.objects.filter(session_id=session_id, payload__icontains="forged").exists()
    assert not SessionEvent.objects.filter(session_id=session_id, payload__icontains="never said").exists()
    assert not ResponseUsage.objects.filter(session_id=session_id, response_id="resp_forged").exists()
    assert VoiceSession.objects.get(pk=session_id).total_tokens < tokens + 900000
    assert not TranscriptItem.objects.filter(session_id=session_id, item_id__in=["item_forged", "item_f"]).exists()
    assert not ToolCall.objects.filter(session_id=session_id).exists()
    page.click("#hangup")
    expect_state(page, "ended")


def test_a_dropped_websocket_resumes_the_same_call_and_session(e2e: Harness, owner: User) -> None:
    page, client, call_id = _start(e2e)
    session_id = client["sessionId"]
    expect(bubble(page, "user", session_id=session_id)).to_have_count(1)

    page.evaluate("window.voiceClient.ws.close(4000, 'network test')")
    page.wait_for_function("window.__e2e.states.includes('reconnecting')", timeout=10_000)
    expect_state(page, "connected", timeout=20_000)
    after = snapshot(page)
    assert after["sessionId"] == session_id and after["pcState"] == "connected", after
    assert page.evaluate("window.__e2e.pcs.length") == 1 and live_peer_connections(page) == 1
    assert [c["call_id"] for c in e2e.emulator.active_calls()] == [call_id]
    expect(page.locator("#transcript li.divider")).to_contain_text("the call went on")
    expect(page.locator("#error")).to_be_hidden()
    assert VoiceSession.objects.filter(user=owner).count() == 1

    # The call is still heard after the resume.
    wait_until(lambda: e2e.emulator.try_say(call_id, "Are you still there?"), timeout=15, what="a second turn")
    wait_until(lambda: "Are you still there?" in _user_texts(session_id), timeout=15, what="the turn recorded")
    page.click("#hangup")
    expect_state(page, "ended")
    wait_for_session(session_id, status=VoiceSession.Status.ENDED, end_reason="hangup", call_id=call_id)


def test_a_server_restart_mid_call_keeps_the_call_and_one_session_holds_the_whole_transcript(
    e2e: Harness, owner: User
) -> None:
    page, client, call_id = _start(e2e)
    session_id = client["sessionId"]
    expect(bubble(page, "assistant", session_id=session_id)).to_have_count(1)
    wait_until(lambda: HELLO in _user_texts(session_id), timeout=10, what="the first turn recorded")

    e2e.site.stop()  # SIGTERM, as a deploy does
    expect_state(page, "reconnecting")
    # The call went on without any server: the page kept its media, OpenAI kept the call.
    assert live_peer_connections(page) == 1
    assert e2e.emulator.call(call_id)["status"] == "active"
    session = VoiceSession.objects.get(pk=session_id)
    assert (session.status, session.served_by) == (VoiceSession.Status.ACTIVE, "")  # released, not ended

    e2e.site.start()
    expect_state(page, "connected", timeout=30_000)
    assert snapshot(page)["sessionId"] == session_id
    wait_until(lambda: e2e.emulator.try_say(call_id, "And after the restart?"), timeout=15, what="a turn")
    wait_until(lambda: "And after the restart?" in _user_texts(session_id), timeout=15, what="the turn recorded")
    texts = _user_texts(session_id)
    assert texts.index(HELLO) < texts.index("And after the restart?")
    assert VoiceSession.objects.filter(user=owner).count() == 1
    # The reply to it is counted on top of the turns recorded before the restart (totals were reloaded).
    wait_until(lambda: VoiceSession.objects.get(pk=session_id).turns >= 2, timeout=15, what="the second reply")
    seqs = list(SessionEvent.objects.filter(session_id=session_id).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    page.click("#hangup")
    expect_state(page, "ended")
    session = wait_for_session(session_id, status=VoiceSession.Status.ENDED, end_reason="hangup", call_id=call_id)
    assert session.turns == ResponseUsage.objects.filter(session=session).count() >= 2
    wait_until(lambda: e2e.emulator.active_calls() == [], timeout=10, what="no call left at the emulator")


def test_a_sideband_drop_reconnects_and_the_gap_is_noted(e2e: Harness, owner: User) -> None:
    page, client, call_id = _start(e2e)
    session_id = client["sessionId"]
    expect(bubble(page, "assistant", session_id=session_id)).to_have_count(1)
    assert e2e.emulator.drop_sideband(call_id, refuse=1)["dropped"] == 1

    def gap() -> list[dict]:
        return list(SessionEvent.objects.filter(session_id=session_id, type="ag2.sideband_gap")
                    .values_list("payload", flat=True))

    gaps = wait_until(gap, timeout=15, what="the gap in the record")
    payload = gaps[0] if isinstance(gaps[0], dict) else json.loads(gaps[0])
    assert payload["ended_at"] is not None and payload["attempts"] >= 2
    expect_state(page, "connected")  # the page never noticed
    wait_until(lambda: e2e.emulator.try_say(call_id, "After the gap"), timeout=15, what="a turn")
    wait_until(lambda: "After the gap" in _user_texts(session_id), timeout=15, what="the turn recorded")
    page.click("#hangup")
    expect_state(page, "ended")
