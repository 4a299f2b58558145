"""How the pages behave for keyboard and screen-reader users, and the chat page's call aids, in real
Chromium: focus that never falls to <body>, finished lines announced once, the dashboard's rows opened
from the keyboard, the microphone meter and picker, typed turns, the call timer and recorded cost, and
no request on any page answered 404."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from tests.e2e.harness import Harness
from tests.e2e.pages import bubble, connect, expect, expect_state, log_in
from tests.e2e.records import wait_for_session
from tests.e2e.servers import wait_until
from voice.models import SessionEvent, VoiceConfig, VoiceSession

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(90),
]

HELLO = "Hello, can you hear me?"
HELLO_REPLY = "Yes, I can hear you clearly. This is the offline emulator answering from its script."

# Counts what screen readers would be told: every change under a live region or an element with a
# live role, and every change of the transcript's text (word by word while the model speaks).
WATCH_ANNOUNCEMENTS = """
(() => {
  window.__said = { announced: [], transcriptChanges: 0 };
  const start = () => {
    const announcer = document.getElementById("announcer");
    new MutationObserver((records) => {
      for (const r of records) for (const n of r.addedNodes) window.__said.announced.push(n.textContent);
    }).observe(announcer, { childList: true });
    new MutationObserver(() => { window.__said.transcriptChanges += 1; })
      .observe(document.getElementById("transcript"), { childList: true, subtree: true, characterData: true });
  };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
"""


def focused_id(page: Any) -> str:
    return page.evaluate("document.activeElement === document.body ? 'BODY' : document.activeElement.id")


def test_call_buttons_keep_focus_where_the_next_step_is_and_mute_says_its_state_once(
    e2e: Harness, owner: User
) -> None:
    page = e2e.new_page("chat")
    log_in(page, "alice", "alice-pass-2026", next_path="/voice/")
    mute = page.locator("#mute")
    expect(mute).not_to_have_attribute("aria-pressed", re.compile(".*"))

    page.focus("#connect")
    page.keyboard.press("Enter")
    expect_state(page, "connected")
    assert focused_id(page) == "hangup"  # Connect went disabled under the keyboard: focus moved on

    page.focus("#mute")
    page.keyboard.press("Enter")
    expect(mute).to_have_text("Unmute")
    expect(mute).not_to_have_attribute("aria-pressed", re.compile(".*"))  # the label says it, once
    assert page.evaluate("window.voiceClient.muted") is True
    page.keyboard.press("Space")
    expect(mute).to_have_text("Mute")

    page.focus("#hangup")
    page.keyboard.press("Enter")
    expect_state(page, "ended")
    assert focused_id(page) == "connect"

    # The server ends the call while focus is on Mute: focus goes to Connect, and a sentence says why.
    VoiceConfig.objects.filter(slug="default").update(max_session_seconds=3)
    page.focus("#connect")
    page.keyboard.press("Enter")
    expect_state(page, "connected")
    page.focus("#mute")
    expect_state(page, "ended", timeout=15_000)
    assert focused_id(page) == "connect"
    expect(page.locator("#notice")).to_have_text("The call reached its time limit.")


def test_finished_lines_are_announced_once_each_never_word_by_word(e2e: Harness, owner: User) -> None:
    page = e2e.new_page("chat", init_scripts=(WATCH_ANNOUNCEMENTS,))
    log_in(page, "alice", "alice-pass-2026", next_path="/voice/")
    # The status regions are in the page (displayed, so in the accessibility tree) before they speak.
    for region in ("#error", "#notice", "#tool-activity", "#announcer"):
        assert page.locator(region).evaluate("e => getComputedStyle(e).display !== 'none' && !e.hidden"), region
    assert page.locator("#transcript").evaluate("e => !e.closest('[aria-live], [role=log], [role=status]')")

    session_id = connect(page)["sessionId"]
    expect(bubble(page, "assistant", session_id=session_id).locator(".text")).to_have_text(HELLO_REPLY)
    page.wait_for_timeout(500)  # a late repeat of a final event would be announced now
    said = page.evaluate("window.__said")
    assert said["announced"] == [f"You: {HELLO}", f"Assistant: {HELLO_REPLY}"], said
    # The transcript itself changed many times (the reply arrives word by word): none of it was announced.
    assert said["transcriptChanges"] > 5, said
    page.click("#hangup")
    expect_state(page, "ended")


def test_the_microphone_meter_moves_and_the_chosen_microphone_is_used(e2e: Harness, owner: User) -> None:
    page = e2e.new_page("chat")
    log_in(page, "alice", "alice-pass-2026", next_path="/voice/")
    mic = page.locator("#mic")
    wait_until(lambda: mic.locator("option").count() >= 2, timeout=5, what="microphones listed in the picker")
    chosen = mic.locator("option").last.get_attribute("value")
    assert chosen
    mic.select_option(chosen)
    connect(page)
    expect(mic).to_be_disabled()  # no change of microphone under a running call
    device = page.evaluate("window.voiceClient.localStream.getAudioTracks()[0].getSettings().deviceId")
    assert device == chosen
    # After permission, the picker names the microphones, and keeps the choice.
    expect(mic.locator("option").last).not_to_have_text(re.compile(r"^Microphone \d+$"))
    expect(mic).to_have_value(chosen)

    # The fake microphone beeps: the meter must visibly move (not a sliver of its width).
    widths = []
    for _ in range(30):
        widths.append(page.locator("#mic-level").evaluate("e => parseFloat(e.style.width) || 0"))
        page.wait_for_timeout(100)
    assert max(widths) >= 40, widths
    assert min(widths) < max(widths), widths
    page.click("#hangup")
    expect_state(page, "ended")
    expect(page.locator("#mic-level")).to_have_attribute("style", re.compile(r"width: 0"))


def _relay_mode() -> None:
    """Typed turns go over the browser's own event channel: relay mode (where configs have a call mode)."""
    if any(field.name == "call_mode" for field in VoiceConfig._meta.get_fields()):
        VoiceConfig.objects.update(call_mode="relay")


def test_a_typed_turn_is_answered_and_the_timer_and_recorded_cost_are_shown(e2e: Harness, owner: User) -> None:
    _relay_mode()
    page = e2e.new_page("chat")
    log_in(page, "alice", "alice-pass-2026", next_path="/voice/")
    expect(page.locator("#say")).to_be_disabled()
    session_id = connect(page)["sessionId"]
    assistant = bubble(page, "assistant", session_id=session_id)
    expect(assistant).to_have_count(1)  # the spoken exchange (the fake microphone's beep)
    page.click("#mute")  # no more beeps taken for speech

    # The timer counts the call.
    expect(page.locator("#call-timer")).not_to_have_text("0:00")
    # The cost shown is the recorded one, once the answer's usage is written.
    session = wait_for_session(session_id, status=VoiceSession.Status.ACTIVE)
    wait_until(lambda: VoiceSession.objects.get(pk=session_id).cost_usd, timeout=10, what="the cost recorded")
    session.refresh_from_db()
    expect(page.locator("#call-cost")).to_have_text(f"Cost so far ${session.cost_usd:.4f}", timeout=15_000)

    expect(page.locator("#say")).to_be_enabled()
    page.fill("#say", "Tell me something typed")
    page.keyboard.press("Enter")
    expect(page.locator("#say")).to_have_value("")
    typed = bubble(page, "user", session_id=session_id).filter(has_text="Tell me something typed")
    expect(typed).to_have_count(1)
    expect(assistant).to_have_count(2)  # and the assistant answered it
    expect(page.locator("#say")).to_be_focused()

    # A resumed session (an init with resumed: true) is no new one, and typing stays on.
    page.evaluate("""() => window.voiceClient.dispatchEvent(new CustomEvent("init", { detail: {
      sessionId: window.voiceClient.sessionId, protocol: 1, mode: "relay", resumed: true } }))""")
    expect(page.locator("#say")).to_be_enabled()
    expect(page.locator("#transcript li.divider").filter(has_text="new session")).to_have_count(0)

    page.click("#hangup")
    expect_state(page, "ended")
    stopped = page.locator("#call-timer").text_content()
    page.wait_for_timeout(1500)
    expect(page.locator("#call-timer")).to_have_text(stopped or "")
    expect(page.locator("#say")).to_be_disabled()
    ended = wait_for_session(session_id, status=VoiceSession.Status.ENDED)
    assert ended.turns >= 2


def test_staff_open_and_close_a_session_from_the_keyboard_and_reach_its_admin_record(
    e2e: Harness, owner: User, superuser: User
) -> None:
    earlier = VoiceSession.objects.create(user=owner, config_name="Default assistant", status="failed",
                                          end_reason="upstream_error", started_at=timezone.now() - timedelta(hours=2),
                                          ended_at=timezone.now() - timedelta(hours=2) + timedelta(seconds=40))
    dash = e2e.new_page("dashboard")
    log_in(dash, "root", "root-pass-2026", next_path="/voice/dashboard/")
    expect(dash.locator("#dash-state")).to_have_attribute("data-state", "live")
    # Sessions that ended before the page opened are there, in words, with a link to their record.
    old = dash.locator(f'#recent li[data-session-id="{earlier.pk}"]')
    expect(old).to_contain_text("The voice service failed during the call.")
    expect(old.locator("a")).to_have_attribute("href", f"/admin/voice/voicesession/{earlier.pk}/change/")

    chat = e2e.new_page("chat")
    log_in(chat, "alice", "alice-pass-2026", next_path="/voice/")
    session_id = connect(chat)["sessionId"]
    opener = dash.locator(f'#sessions-body tr[data-session-id="{session_id}"] button')
    expect(opener).to_have_accessible_name("Watch the session of alice")
    opener.focus()
    dash.keyboard.press("Enter")
    view = dash.locator("#session-view")
    expect(view).to_be_visible()
    expect(view).to_have_attribute("data-session-id", session_id)
    assert focused_id(dash) == "session-title"  # focus moved to the view that opened
    expect(dash.locator("#session-title")).to_have_text("Session of alice · Default assistant")
    expect(dash.locator("#dash-announcer")).to_have_text("Opened the session of alice below.")
    expect(opener).to_have_attribute("aria-expanded", "true")
    expect(dash.locator("#session-admin")).to_have_attribute("href", f"/admin/voice/voicesession/{session_id}/change/")

    dash.focus("#session-close")
    dash.keyboard.press("Enter")
    expect(view).to_be_hidden()
    assert dash.evaluate("document.activeElement.closest('tr')?.dataset.sessionId") == session_id
    expect(dash.locator("#dash-announcer")).to_have_text("Closed the session view.")

    # Escape closes it too, and focus still never falls to <body>.
    dash.keyboard.press("Enter")
    expect(view).to_be_visible()
    dash.keyboard.press("Escape")
    expect(view).to_be_hidden()
    assert dash.evaluate("document.activeElement.closest('tr')?.dataset.sessionId") == session_id

    chat.click("#hangup")
    expect_state(chat, "ended")
    ended = dash.locator(f'#recent li[data-session-id="{session_id}"]')
    expect(ended).to_contain_text("The user hung up.")
    ended.locator("button").focus()
    dash.keyboard.press("Enter")
    expect(view).to_have_attribute("data-session-id", session_id)
    assert focused_id(dash) == "session-title"


def test_no_page_asks_for_a_file_that_is_not_there(e2e: Harness, owner: User, superuser: User) -> None:
    missing: list[str] = []
    icons: list[str] = []

    def watch(page: Any) -> None:
        page.on("response", lambda r: r.status == 404 and missing.append(f"{r.status} {r.url}"))
        # Aborted: the test went on to the next page before the icon came; not a missing file.
        page.on("requestfailed", lambda r: "ERR_ABORTED" not in str(r.failure)
                and missing.append(f"failed {r.url} {r.failure}"))
        page.on("request", lambda r: "favicon" in r.url and icons.append(r.url))

    visitor = e2e.new_page("visitor")
    watch(visitor)
    visitor.goto("/accounts/login/")
    log_in(visitor, "alice", "alice-pass-2026", next_path="/voice/")
    visitor.wait_for_load_state("networkidle")
    for path in ("/voice/sessions/", "/voice/dashboard/"):
        visitor.goto(path)
        visitor.wait_for_load_state("networkidle")
    admin = e2e.new_page("admin")
    watch(admin)
    log_in(admin, "root", "root-pass-2026", next_path="/voice/dashboard/")
    admin.wait_for_load_state("networkidle")
    for path in ("/admin/", "/admin/voice/voicesession/"):
        admin.goto(path)
        admin.wait_for_load_state("networkidle")
    # Our pages name their icon; a browser asking for /favicon.ico (as it does on the admin's pages, which
    # name none; headless Chromium does not ask) is sent to it. Nothing was a 404.
    assert missing == [], missing
    assert icons and all(url.endswith("/static/voice/favicon.svg") for url in icons), icons
    icon = admin.request.get("/favicon.ico")
    assert icon.ok and icon.headers["content-type"].startswith("image/svg")


# The event rows of the dashboard's session view: how far each row's text is cut or scrolled, and how
# far the list scrolls sideways inside itself.
EVENT_ROWS = """() => {
  const list = document.getElementById("session-events");
  const rows = [...list.querySelectorAll(".event-row summary")].map((summary) => {
    const type = summary.querySelector(".type").getBoundingClientRect();
    return { cut: summary.scrollWidth - summary.clientWidth, past: type.right - summary.getBoundingClientRect().right };
  });
  return { inner: list.scrollWidth - list.clientWidth, rows };
}"""


def test_the_dashboard_event_list_is_readable_on_a_phone(e2e: Harness, owner: User, staff: User) -> None:
    long_type = "conversation.item.input_audio_transcription.completed"
    session = VoiceSession.objects.create(
        user=owner, config_name="Default assistant", status="ended", end_reason="hangup",
        started_at=timezone.now() - timedelta(minutes=3), ended_at=timezone.now() - timedelta(minutes=2))
    SessionEvent.objects.bulk_create(SessionEvent(
        session=session, seq=n, direction="from_openai", origin="sideband", type=long_type,
        payload={"type": long_type, "transcript": "a long line of words " * 30}) for n in range(1, 4))
    dash = e2e.new_page("dashboard")
    dash.set_viewport_size({"width": 390, "height": 900})
    log_in(dash, "stella", "stella-pass-2026", next_path="/voice/dashboard/")
    dash.locator(f'#recent li[data-session-id="{session.pk}"] button').click()
    rows = dash.locator("#session-events .event-row")
    expect(rows).to_have_count(3)
    measured = dash.evaluate(EVENT_ROWS)
    assert measured["inner"] <= 0, measured  # no sideways scrolling inside the list
    assert all(r["cut"] <= 0 and r["past"] <= 1 for r in measured["rows"]), measured  # every type whole
    expect(rows.first.locator(".type")).to_be_visible()
    rows.first.locator("summary").click()
    payload = rows.first.locator("pre.payload")
    expect(payload).to_contain_text("a long line of words")
    assert dash.evaluate("(el) => el.scrollWidth - el.clientWidth", payload.element_handle()) <= 0
