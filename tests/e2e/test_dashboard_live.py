"""A staff member watches a user's call live on the dashboard, in a second browser context."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User

from tests.e2e.harness import Harness
from tests.e2e.pages import bubble, connect, expect, expect_state, log_in
from tests.e2e.records import wait_for_session
from tests.e2e.servers import wait_until
from voice.models import VoiceSession

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("relay_mode"),  # the seed's flow; server mode: test_server_mode.py
    pytest.mark.timeout(60),
]

ASKED = "What time is it in UTC?"
FOLLOW_UP = "Is the dashboard watching this live?"


def test_staff_see_the_session_its_transcript_and_its_tool_call_live_on_the_dashboard(
    e2e: Harness, owner: User, staff: User
) -> None:
    e2e.emulator.use_script("tool_call")
    dash = e2e.new_page("dashboard")
    log_in(dash, "stella", "stella-pass-2026", next_path="/voice/dashboard/")
    expect(dash.locator("#dash-state")).to_have_attribute("data-state", "live")
    expect(dash.locator("#sessions-body tr[data-session-id]")).to_have_count(0)

    chat = e2e.new_page("chat")
    log_in(chat, "alice", "alice-pass-2026", next_path="/voice/")
    client = connect(chat)
    session_id, call_id = client["sessionId"], client["callId"]

    # The new session shows up in the live table without a reload.
    row = dash.locator(f'#sessions-body tr[data-session-id="{session_id}"]')
    expect(row).to_have_count(1)
    expect(row).to_contain_text("alice")
    expect(row).to_contain_text("Default assistant")
    row.click()
    view = dash.locator("#session-view")
    expect(view).to_be_visible()
    expect(view).to_have_attribute("data-session-id", session_id)

    # The conversation, the tool call and the raw events appear as they happen.
    transcript = dash.locator("#session-transcript")
    expect(transcript.locator("li.bubble[data-role=user].final .text").first).to_have_text(ASKED)
    expect(transcript.locator("li.bubble[data-role=assistant].final .text").last).to_contain_text(
        "Thanks for waiting. The clock says"
    )
    tools = dash.locator("#session-tools")
    tool_row = tools.locator("tr.tool-row")
    expect(tool_row).to_have_count(1)
    expect(tool_row).to_contain_text("current_time")
    expect(tool_row).to_have_attribute("data-status", "succeeded")
    expect(dash.locator("#session-events li.event-row").first).to_be_attached()
    assert dash.locator("#session-events li.event-row").count() > 5

    # A turn that starts only now can reach the dashboard only through the live updates.
    expect(bubble(chat, "assistant", session_id=session_id)).to_have_count(1)

    wait_until(lambda: e2e.emulator.try_say(call_id, FOLLOW_UP), timeout=15, interval=0.2,
               what="the emulator to take a new user turn (it refuses while the reply still plays)")
    expect(transcript.locator("li.bubble[data-role=user].final .text").last).to_have_text(FOLLOW_UP)
    expect(transcript.locator("li.bubble[data-role=assistant].final")).to_have_count(2)
    expect(bubble(chat, "user", session_id=session_id).last.locator(".text")).to_have_text(FOLLOW_UP)
    expect(row.locator("td.col-turns")).not_to_have_text("0")
    # The answer says how long the user waited for it (speech stopped -> the model's first audio).
    answered = transcript.locator("li.bubble[data-role=assistant].final").last.locator(".latency")
    expect(answered).to_have_text(re.compile(r"^answered after (about )?\d+\.\d s$"))
    expect(dash.locator("#session-meta")).to_contain_text("answers after")
    e2e.screenshot(dash, "dashboard-live")

    # Hang-up: the session leaves the live table and the open view says it ended.
    chat.click("#hangup")
    expect_state(chat, "ended")
    expect(row).to_have_count(0)
    expect(dash.locator(f'#recent li[data-session-id="{session_id}"]')).to_have_attribute("data-status", "ended")
    expect(dash.locator("#session-status")).to_have_text("Ended")
    wait_for_session(session_id, status=VoiceSession.Status.ENDED, end_reason="hangup")
