"""A whole voice call in real Chromium: log in, connect, speak (fake microphone), hear back, hang up.

Everything is real except OpenAI: daphne serves the site, the emulator (its own process) answers the
WebRTC call with a scripted conversation, and the assertions read the database the server wrote.
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.contrib.auth.models import User

from tests.e2e.harness import Harness
from tests.e2e.pages import (
    bubble,
    channel_events,
    connect,
    expect,
    expect_state,
    live_peer_connections,
    log_in,
    snapshot,
)
from tests.e2e.records import event_types, wait_for_session
from tests.e2e.servers import wait_until
from voice.models import ResponseUsage, SessionEvent, ToolCall, TranscriptItem, VoiceSession

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("relay_mode"),  # the seed's flow; server mode: test_server_mode.py
    pytest.mark.timeout(60),
]

HELLO = "Hello, can you hear me?"
HELLO_REPLY = "Yes, I can hear you clearly. This is the offline emulator answering from its script."


def test_a_spoken_turn_is_transcribed_answered_on_the_page_and_recorded_after_hang_up(
    e2e: Harness, owner: User
) -> None:
    page = e2e.new_page("chat")
    log_in(page, "alice", "alice-pass-2026", next_path="/voice/")
    expect(page.locator("#emulator-badge")).to_be_visible()
    expect_state(page, "idle")
    expect(page.locator("#config")).to_have_value("default")

    client = connect(page)
    session_id, call_id = client["sessionId"], client["callId"]
    assert session_id and call_id and call_id.startswith("rtc_"), client
    assert client["dcState"] == "open" and client["pcState"] == "connected", client
    # The data channel carried the session from the emulator, and the server's session.update was applied.
    wait_until(lambda: "session.updated" in channel_events(page), timeout=10, what="session.updated on the channel")
    assert channel_events(page)[0] == "session.created"
    session = wait_for_session(session_id, status=VoiceSession.Status.ACTIVE, call_id=call_id)
    assert session.user == owner
    assert session.config_name == "Default assistant"

    # The fake microphone's beep is speech to the emulator: a user turn, then the scripted reply.
    user_bubble = bubble(page, "user", session_id=session_id)
    expect(user_bubble).to_have_count(1)
    expect(user_bubble.locator(".text")).to_have_text(HELLO)
    assistant_bubble = bubble(page, "assistant", session_id=session_id)
    expect(assistant_bubble).to_have_count(1)
    expect(assistant_bubble.locator(".text")).to_have_text(HELLO_REPLY)
    e2e.screenshot(page, "chat-mid-call")
    # The user's words come before the reply, whatever order the transcription arrived in.
    roles = page.locator("#transcript li.bubble").evaluate_all("els => els.map((e) => e.dataset.role)")
    assert roles == ["user", "assistant"], roles
    # Relayed from the data channel: logged as OpenAI's frame, heard on the browser's socket.
    wait_until(lambda: "response.done" in event_types(session_id, SessionEvent.Direction.FROM_OPENAI, "browser"),
               timeout=10, what="response.done relayed to the server")

    page.click("#hangup")
    expect_state(page, "ended")
    expect(page.locator("#error")).to_be_hidden()
    assert live_peer_connections(page) == 0
    after = snapshot(page)
    assert after["pcState"] is None and after["localTracks"] == [] and after["wsState"] is None, after

    session = wait_for_session(session_id, status=VoiceSession.Status.ENDED, end_reason="hangup")
    assert session.ended_at is not None and session.connected_at is not None
    items = {(i.role, i.kind): i for i in TranscriptItem.objects.filter(session=session)}
    user_item = items[("user", TranscriptItem.Kind.MESSAGE)]
    assistant_item = items[("assistant", TranscriptItem.Kind.MESSAGE)]
    assert user_item.text == HELLO
    assert assistant_item.text == HELLO_REPLY
    assert assistant_item.status == TranscriptItem.Status.COMPLETED
    assert [i.role for i in session.ordered_transcript()] == ["user", "assistant"]
    usages = list(ResponseUsage.objects.filter(session=session))
    assert len(usages) == 1 and usages[0].status == "completed", usages
    assert usages[0].output_audio_tokens > 0 and usages[0].input_tokens > 0
    assert usages[0].cost_usd > 0
    assert session.cost_usd == usages[0].cost_usd > Decimal(0)
    assert session.total_tokens == usages[0].total_tokens > 0
    # The call is over at the emulator too: the page closed its peer connection.
    wait_until(lambda: e2e.emulator.call(call_id)["status"] == "ended", timeout=10, what="the call to end")
    assert e2e.emulator.active_calls() == []


def test_a_tool_call_runs_on_the_server_and_its_output_reaches_the_model(e2e: Harness, owner: User) -> None:
    e2e.emulator.use_script("tool_call")
    page = e2e.new_page("chat")
    log_in(page, "alice", "alice-pass-2026", next_path="/voice/")
    client = connect(page)
    session_id, call_id = client["sessionId"], client["callId"]

    # The page shows the tool running and finishing, then the model's answer that quotes its output.
    tool_bubble = page.locator(f'#transcript li.bubble.bubble-tool.final[data-session-id="{session_id}"]')
    expect(tool_bubble).to_have_count(1)
    expect(tool_bubble).to_contain_text("current_time")
    reply = bubble(page, "assistant", session_id=session_id)
    expect(reply).to_have_count(1)
    expect(reply.locator(".text")).to_contain_text("Thanks for waiting. The clock says")

    # The server answered the function call; the emulator received the output on the data channel.
    call = e2e.emulator.call(call_id)
    function_calls = [i for i in call["items"] if i["type"] == "function_call"]
    assert [f["name"] for f in function_calls] == ["current_time"]
    tool_call_id = function_calls[0]["call_id"]
    outputs = [
        e["event"]["item"]
        for e in call["client_events"]
        if e.get("event", {}).get("type") == "conversation.item.create"
        and e["event"]["item"].get("type") == "function_call_output"
    ]
    assert len(outputs) == 1, call["client_events"]
    assert outputs[0]["call_id"] == tool_call_id
    output = outputs[0]["output"]
    assert json.loads(output)["timezone"] == "UTC", output
    # ...and asked the model to go on after it.
    sent = [e["event"] for e in call["client_events"] if "event" in e]
    after_output = sent[sent.index(next(e for e in sent if e.get("item") == outputs[0])) + 1 :]
    assert "response.create" in [e["type"] for e in after_output], sent
    expect(reply.locator(".text")).to_contain_text(output[:20])

    page.click("#hangup")
    expect_state(page, "ended")
    session = wait_for_session(session_id, status=VoiceSession.Status.ENDED, end_reason="hangup")
    tool = ToolCall.objects.get(session=session)
    assert (tool.call_id, tool.name, tool.status) == (tool_call_id, "current_time", ToolCall.Status.SUCCEEDED)
    assert tool.output == output
    arguments = tool.arguments if isinstance(tool.arguments, dict) else json.loads(tool.arguments)
    assert arguments == {"timezone": "UTC"}
    kinds = [i.kind for i in session.ordered_transcript()]
    assert kinds == ["message", "function_call", "function_call_output", "message"], kinds
    assert ResponseUsage.objects.filter(session=session).count() == 2
    assert session.cost_usd > 0
