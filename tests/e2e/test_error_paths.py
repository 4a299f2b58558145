"""What a person sees when a call cannot start or loses the server, and what the server records."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from tests.e2e.harness import Harness
from tests.e2e.pages import (
    DENY_MICROPHONE,
    bubble,
    connect,
    expect,
    expect_state,
    live_peer_connections,
    log_in,
    snapshot,
)
from tests.e2e.records import wait_for_session
from tests.e2e.servers import wait_until
from voice.models import VoiceSession

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("relay_mode"),  # the seed's flow; server mode: test_server_mode.py
    pytest.mark.timeout(60),
]

FAILED = VoiceSession.Status.FAILED


def _start_failing_call(e2e: Harness, *, init_scripts: tuple[str, ...] = ()) -> tuple[object, str]:
    page = e2e.new_page("chat", init_scripts=init_scripts)
    log_in(page, "alice", "alice-pass-2026", next_path="/voice/")
    page.click("#connect")
    expect_state(page, "failed")
    session_id = page.evaluate("window.voiceClient.sessionId")
    assert session_id, "the server started a session before the call failed"
    # Nothing is left running in the page.
    assert live_peer_connections(page) == 0
    after = snapshot(page)
    assert after["localTracks"] == [] and after["wsState"] is None, after
    expect(page.locator("#hangup")).to_be_disabled()
    expect(page.locator("#connect")).to_be_enabled()
    return page, session_id


def test_a_denied_microphone_is_explained_and_the_session_fails(e2e: Harness, owner: User) -> None:
    page, session_id = _start_failing_call(e2e, init_scripts=(DENY_MICROPHONE,))
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_have_attribute("role", "alert")
    expect(error).to_have_attribute("data-code", "microphone_denied")
    expect(error).to_contain_text("Microphone access was denied")
    session = wait_for_session(session_id, status=FAILED, end_reason="client_error:microphone")
    assert "denied" in session.error
    assert session.ended_at is not None
    assert e2e.emulator.calls() == []  # no offer was ever sent


def test_the_voice_service_failing_at_calls_is_shown_as_unavailable(e2e: Harness, owner: User) -> None:
    e2e.emulator.set_faults(calls_status=500, count=1)
    page, session_id = _start_failing_call(e2e)
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_have_attribute("data-code", "service_unavailable")
    expect(error).to_contain_text("The voice service is unavailable right now")
    session = wait_for_session(session_id, status=FAILED, end_reason="client_error:sdp")
    assert session.error
    assert e2e.emulator.calls() == []


def test_an_expired_client_secret_is_refused_and_explained(e2e: Harness, owner: User) -> None:
    e2e.emulator.set_faults(expired_secrets=1)
    page, session_id = _start_failing_call(e2e)
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_have_attribute("data-code", "sdp_failed")
    expect(error).to_contain_text("refused the call")
    expect(error).to_contain_text("expired")
    session = wait_for_session(session_id, status=FAILED, end_reason="client_error:sdp")
    assert "expired" in session.error
    assert e2e.emulator.calls() == []

    # The next attempt gets a fresh secret and connects.
    connect(page)
    expect(page.locator("#error")).to_be_hidden()


def test_a_server_restart_mid_call_reconnects_with_a_new_session_and_leaves_no_zombie_call(
    e2e: Harness, owner: User
) -> None:
    page = e2e.new_page("chat")
    log_in(page, "alice", "alice-pass-2026", next_path="/voice/")
    first = connect(page)
    expect(bubble(page, "user", session_id=first["sessionId"])).to_have_count(1)

    e2e.site.stop()  # the server goes away under a live call, as in a deploy or a crash
    expect_state(page, "reconnecting")
    expect(page.locator("#error")).to_contain_text("Connection to the server was lost. Reconnecting")
    expect(page.locator("#error")).to_have_attribute("data-code", "network_lost")
    # The call of the lost session is torn down at once, not left running without a server.
    assert live_peer_connections(page) == 0
    wait_until(lambda: e2e.emulator.call(first["callId"])["status"] == "ended", timeout=10,
               what="the old call to end at the emulator")

    e2e.site.start()
    expect_state(page, "connected", timeout=30_000)
    second = snapshot(page)
    assert second["sessionId"] and second["sessionId"] != first["sessionId"], (first, second)
    assert second["callId"] and second["callId"] != first["callId"], (first, second)
    expect(page.locator("#error")).to_be_hidden()
    expect(page.locator("#transcript li.divider")).to_contain_text("Reconnected")
    assert live_peer_connections(page) == 1
    assert [c["call_id"] for c in e2e.emulator.active_calls()] == [second["callId"]]
    wait_for_session(second["sessionId"], status=VoiceSession.Status.ACTIVE, call_id=second["callId"])

    page.click("#hangup")
    expect_state(page, "ended")
    wait_for_session(second["sessionId"], status=VoiceSession.Status.ENDED, end_reason="hangup")
    wait_until(lambda: e2e.emulator.active_calls() == [], timeout=10, what="no call left at the emulator")


def test_a_dropped_websocket_ends_the_old_session_on_the_server_and_hangs_up_its_call(
    e2e: Harness, owner: User
) -> None:
    page = e2e.new_page("chat")
    log_in(page, "alice", "alice-pass-2026", next_path="/voice/")
    first = connect(page)

    # The socket drops under the page (close code 4000 is not one the server uses on purpose).
    page.evaluate("window.voiceClient.ws.close(4000, 'network test')")
    page.wait_for_function(
        "(old) => window.voiceClient.state === 'connected' && window.voiceClient.sessionId !== old",
        arg=first["sessionId"],
        timeout=20_000,
    )
    assert "reconnecting" in page.evaluate("window.__e2e.states")
    second = snapshot(page)
    assert second["sessionId"] != first["sessionId"] and second["callId"] != first["callId"]

    old = wait_for_session(first["sessionId"], status=VoiceSession.Status.ENDED, end_reason="disconnect")
    assert old.ended_at is not None
    wait_until(lambda: e2e.emulator.call(first["callId"])["status"] == "ended", timeout=10,
               what="the old call to end at the emulator")
    assert [c["call_id"] for c in e2e.emulator.active_calls()] == [second["callId"]]
    assert live_peer_connections(page) == 1
    page.click("#hangup")
    expect_state(page, "ended")


def test_a_server_shutdown_ends_the_sessions_it_was_serving(e2e: Harness, owner: User) -> None:
    page = e2e.new_page("chat")
    log_in(page, "alice", "alice-pass-2026", next_path="/voice/")
    first = connect(page)
    # A call in steady state: the server has recorded it as active before the restart begins.
    wait_for_session(first["sessionId"], timeout=15, status=VoiceSession.Status.ACTIVE)
    page.wait_for_timeout(1000)
    e2e.site.stop()
    expect_state(page, "reconnecting")
    e2e.site.start()
    expect_state(page, "connected", timeout=30_000)
    wait_for_session(first["sessionId"], timeout=15, status=VoiceSession.Status.ENDED, end_reason="server_shutdown")


def test_a_repeating_client_warning_reaches_the_console_once_then_as_a_count(e2e: Harness, owner: User) -> None:
    """A stream of unreadable frames used to write one console warning per frame."""
    page = e2e.new_page("chat")
    log_in(page, "alice", "alice-pass-2026", next_path="/voice/")
    page.evaluate("""() => {
      const client = window.voiceClient;
      for (let i = 0; i < 1000; i++) client._onServerFrame("not json " + i);
      const clock = Date.now;
      Date.now = () => clock() + 11000;  // the window ends: the next one reports the count
      try { client._onServerFrame("still not json"); } finally { Date.now = clock; }
    }""")
    page.wait_for_timeout(300)
    lines = [line for line in e2e.console if "The server sent a frame that is not JSON" in line]
    assert len(lines) == 2, lines
    assert "(999 more in the last 11 s)" in lines[1]
