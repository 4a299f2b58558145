"""Every page of the product, in its main states, meets WCAG 2.1 A/AA (axe-core) and reflows.

axe-core runs inside real Chromium on the project's own pages (the Django admin is left as Django
makes it) at 1280 px and at 320 px, the reflow width of WCAG 1.4.10; no page may scroll sideways at
1280, 390 (a phone) or 320 px. Screenshots of each page at 1280 and 390 px go to test-artifacts/pages/.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from tests.e2e.a11y import DESKTOP, PHONE, REFLOW, check_page, install_axe
from tests.e2e.harness import Harness
from tests.e2e.pages import DENY_MICROPHONE, bubble, connect, expect, expect_state, log_in
from tests.e2e.servers import ARTIFACTS
from voice.models import ToolCall, TranscriptItem, VoiceConfig, VoiceSession

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
]

WIDTHS = (DESKTOP, PHONE, REFLOW)


@pytest.fixture(scope="module")
def axe_ready(e2e_ready: None) -> None:
    import os

    reason = install_axe()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI: the accessibility tests need axe-core: {reason}", pytrace=False)
        pytest.skip(f"the accessibility tests need axe-core: {reason}")


class Audit:
    """Checks pages as a test goes through them; `assert_clean()` at the end fails with all it found."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.shots = ARTIFACTS / "pages"
        self.shots.mkdir(parents=True, exist_ok=True)

    def __call__(self, page: Any, name: str) -> None:
        self.problems.extend(check_page(page, name, widths=WIDTHS, axe_widths=(DESKTOP, REFLOW)))
        for width in (DESKTOP, PHONE):  # for people to look at
            page.set_viewport_size({"width": width, "height": 900})
            page.screenshot(path=str(self.shots / f"{name}-{width}.png"), full_page=True)
        page.set_viewport_size({"width": DESKTOP, "height": 900})

    def assert_clean(self) -> None:
        assert not self.problems, "\n\n".join(self.problems)


@pytest.fixture
def audit(e2e: Harness, axe_ready: None) -> Audit:
    return Audit()


@pytest.fixture
def reviewed_session(owner: User) -> VoiceSession:
    """A finished conversation of alice's, with a tool call, as the transcript page shows it."""
    config = VoiceConfig.objects.get(slug="default")
    start = timezone.now() - timedelta(minutes=5)
    session = VoiceSession.objects.create(
        user=owner, config=config, config_name=config.name, model=config.model, status="failed",
        end_reason="upstream_error", call_id="rtc_secret_call", started_at=start, connected_at=start,
        ended_at=start + timedelta(seconds=83), turns=2, total_tokens=1234)
    lines = [
        ("i1", "", "user", "message", "", "What time is it in Lisbon?"),
        ("i2", "i1", "", "function_call", "current_time", '{"timezone": "Europe/Lisbon"}'),
        ("i3", "i2", "", "function_call_output", "", '{"time": "12:00", "timezone": "Europe/Lisbon"}'),
        ("i4", "i3", "assistant", "message", "", "It is noon in Lisbon."),
    ]
    for n, (item_id, prev, role, kind, name, text) in enumerate(lines):
        TranscriptItem.objects.create(session=session, item_id=item_id, previous_item_id=prev, role=role, kind=kind,
                                      name=name, text=text, status="completed",
                                      created_at=start + timedelta(seconds=5 * n))
    ToolCall.objects.create(session=session, call_id="call_1", name="current_time",
                            arguments={"timezone": "Europe/Lisbon"},
                            output='{"time": "12:00", "timezone": "Europe/Lisbon"}', status="succeeded",
                            duration_ms=4, started_at=start + timedelta(seconds=5))
    return session


def test_the_login_logged_out_and_403_pages(e2e: Harness, audit: Audit, owner: User) -> None:
    page = e2e.new_page("visitor")
    page.goto("/accounts/login/")
    audit(page, "login")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "wrong")
    page.click("form button[type=submit]")
    expect(page.locator(".error")).to_be_visible()
    audit(page, "login-error")
    log_in(page, "alice", "alice-pass-2026", next_path="/voice/sessions/")
    page.goto("/voice/dashboard/")
    audit(page, "403")
    page.click("header form button[type=submit]")
    audit(page, "logged-out")
    audit.assert_clean()


def test_the_chat_page_in_every_state(e2e: Harness, audit: Audit, owner: User) -> None:
    e2e.emulator.use_script("tool_call")
    page = e2e.new_page("chat")
    log_in(page, "alice", "alice-pass-2026", next_path="/voice/")
    audit(page, "chat-idle")
    client = connect(page)
    expect(bubble(page, "assistant", session_id=client["sessionId"]).last).to_contain_text("The clock says")
    audit(page, "chat-connected")
    page.click("#hangup")
    expect_state(page, "ended")
    audit(page, "chat-ended")
    # A server that goes away under the call: the page reconnects.
    connect(page)
    e2e.site.stop()
    try:
        expect_state(page, "reconnecting")
        audit(page, "chat-reconnecting")
    finally:
        e2e.site.start()
    expect_state(page, "connected", timeout=30_000)
    page.click("#hangup")
    expect_state(page, "ended")

    denied = e2e.new_page("denied", init_scripts=(DENY_MICROPHONE,))
    log_in(denied, "alice", "alice-pass-2026", next_path="/voice/")
    denied.click("#connect")
    expect_state(denied, "failed")
    audit(denied, "chat-failed")
    audit.assert_clean()


def test_a_recorded_call_and_its_replay(e2e: Harness, audit: Audit, owner: User) -> None:
    VoiceConfig.objects.filter(slug="default").update(recording=VoiceConfig.Recording.ASK)
    page = e2e.new_page("recorded")
    log_in(page, "alice", "alice-pass-2026", next_path="/voice/")
    audit(page, "chat-recording-notice")
    page.check("#recording-agree")
    client = connect(page)
    expect(page.locator("#recording-state")).to_have_text("Recording this call")
    expect(bubble(page, "assistant", session_id=client["sessionId"])).to_have_count(1, timeout=20_000)
    audit(page, "chat-recording")
    page.click("#hangup")
    expect(page.locator("#recording-state")).to_have_text("Recording saved", timeout=20_000)
    page.goto(f"/voice/sessions/{client['sessionId']}/")
    expect(page.locator("#replay-levels")).to_have_attribute("data-drawn", "true", timeout=10_000)
    audit(page, "replay")
    audit.assert_clean()


def test_my_sessions_and_the_transcript_page(e2e: Harness, audit: Audit, reviewed_session: VoiceSession) -> None:
    page = e2e.new_page("sessions")
    log_in(page, "alice", "alice-pass-2026", next_path="/voice/sessions/")
    audit(page, "my-sessions")
    page.goto(reviewed_session.get_absolute_url())
    audit(page, "transcript")
    audit.assert_clean()


def test_the_dashboard_with_and_without_a_session_open(e2e: Harness, audit: Audit, owner: User, staff: User,
                                                       reviewed_session: VoiceSession) -> None:
    e2e.emulator.use_script("tool_call")
    dash = e2e.new_page("dashboard")
    log_in(dash, "stella", "stella-pass-2026", next_path="/voice/dashboard/")
    expect(dash.locator("#dash-state")).to_have_attribute("data-state", "live")
    audit(dash, "dashboard-empty")
    chat = e2e.new_page("chat")
    log_in(chat, "alice", "alice-pass-2026", next_path="/voice/")
    client = connect(chat)
    row = dash.locator(f'#sessions-body tr[data-session-id="{client["sessionId"]}"]')
    expect(row).to_have_count(1)
    audit(dash, "dashboard-live")
    row.click()
    expect(dash.locator("#session-view")).to_be_visible()
    expect(dash.locator("#session-tools tr.tool-row")).to_have_count(1)
    audit(dash, "dashboard-session")
    chat.click("#hangup")
    expect_state(chat, "ended")
    audit(dash, "dashboard-session-ended")
    audit.assert_clean()


def test_the_checks_catch_poor_contrast_a_nameless_button_and_sideways_scrolling(e2e: Harness,
                                                                                 axe_ready: None) -> None:
    """The audit above can fail: a page with known faults is reported, each fault by name."""
    page = e2e.new_page("faulty")
    page.goto("/accounts/login/")
    page.evaluate("""() => {
      const main = document.querySelector("main");
      main.insertAdjacentHTML("beforeend",
        '<p style="color:#c8c8c8;background:#fff">faint words</p><button type="button"></button>' +
        '<div style="width:2000px;height:4px"></div>');
    }""")
    found = "\n".join(check_page(page, "faulty"))
    assert "color-contrast" in found and "button-name" in found, found
    assert "faulty at 320 px scrolls sideways" in found and "faulty at 1280 px scrolls sideways" in found, found
