"""A call on a model without a price shows "unpriced" on the dashboard, never "$0"."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from tests.e2e.harness import Harness
from tests.e2e.pages import bubble, connect, expect, log_in
from tests.e2e.records import wait_for_session
from voice.models import VoiceConfig, VoiceSession

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("relay_mode"),  # the seed's flow; server mode: test_server_mode.py
    pytest.mark.timeout(60),
]


def test_the_dashboard_says_unpriced_for_a_model_without_a_price(e2e: Harness, owner: User, staff: User) -> None:
    VoiceConfig.objects.filter(slug="default").update(model="gpt-realtime-mini")  # no ModelPrice row
    dash = e2e.new_page("dashboard")
    log_in(dash, "stella", "stella-pass-2026", next_path="/voice/dashboard/")
    expect(dash.locator("#dash-state")).to_have_attribute("data-state", "live")

    chat = e2e.new_page("chat")
    log_in(chat, "alice", "alice-pass-2026", next_path="/voice/")
    session_id = connect(chat)["sessionId"]
    expect(bubble(chat, "assistant", session_id=session_id)).to_have_count(1)  # a response, with its usage

    row = dash.locator(f'#sessions-body tr[data-session-id="{session_id}"]')
    expect(row.locator("td.col-turns")).not_to_have_text("0")
    expect(row.locator("td.col-cost")).to_have_text("unpriced")
    wait_for_session(session_id, cost_usd=None)
    assert VoiceSession.objects.get(pk=session_id).total_tokens > 0
    e2e.screenshot(dash, "dashboard-unpriced")
