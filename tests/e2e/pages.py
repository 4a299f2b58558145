"""What a person does on the pages, as Playwright steps, and what the tests read back from them."""

from __future__ import annotations

from typing import Any

try:
    from playwright.sync_api import Page, expect
except ImportError:  # the `browser` fixture skips (or fails, in CI) and says why
    Page = Any  # type: ignore[misc,assignment]
    expect = None  # type: ignore[assignment]

# Injected before any page script: counts every RTCPeerConnection the page creates and records the
# type of every event that arrives on its data channel, so a test can see the call from the inside
# without the page's own code having to cooperate.
INSTRUMENT_WEBRTC = """
(() => {
  const Native = window.RTCPeerConnection;
  if (!Native || window.__e2e) return;
  const e2e = { pcs: [], channelEvents: [], states: [], log: [], sentToServer: [] };
  window.__e2e = e2e;
  // A timeline of what the call went through, saved with the screenshots when a test fails.
  const note = (...what) => e2e.log.push([Math.round(performance.now()), ...what]);
  class TrackedPeerConnection extends Native {
    constructor(...args) {
      super(...args);
      e2e.pcs.push(this);
    }
    createDataChannel(...args) {
      const channel = super.createDataChannel(...args);
      channel.addEventListener("message", (ev) => {
        try { e2e.channelEvents.push(JSON.parse(ev.data).type); } catch (_) { e2e.channelEvents.push("?"); }
      });
      channel.addEventListener("error", (ev) => note("dc-error", String(ev.error && ev.error.message)));
      channel.addEventListener("close", () => note("dc-close"));
      return channel;
    }
  }
  window.RTCPeerConnection = TrackedPeerConnection;
  const NativeWebSocket = window.WebSocket;
  class TrackedWebSocket extends NativeWebSocket {
    constructor(...args) {
      super(...args);
      note("ws-open", String(args[0]));
      this.addEventListener("close", (ev) => note("ws-close", ev.code, ev.reason));
    }
    send(data) {
      // The type of every frame the page sends the server (server mode: only ag2.* signalling).
      try { e2e.sentToServer.push(JSON.parse(data).type); } catch (_) { e2e.sentToServer.push("?"); }
      return super.send(data);
    }
  }
  window.WebSocket = TrackedWebSocket;
  // Record every state the voice client goes through (chat.js sets window.voiceClient on load).
  let voiceClient;
  Object.defineProperty(window, "voiceClient", {
    configurable: true,
    get: () => voiceClient,
    set: (client) => {
      voiceClient = client;
      client.addEventListener("state", (e) => {
        e2e.states.push(e.detail.state);
        note("state", e.detail.state);
      });
    },
  });
})();
"""

DENY_MICROPHONE = """
(() => {
  const deny = () => Promise.reject(new DOMException("Permission denied", "NotAllowedError"));
  if (navigator.mediaDevices) navigator.mediaDevices.getUserMedia = deny;
})();
"""

STATE_LABELS = {
    "idle": "Not connected",
    "connecting": "Connecting…",
    "connected": "Connected",
    "reconnecting": "Reconnecting…",
    "ended": "Call ended",
    "failed": "Failed",
}


def log_in(page: Page, username: str, password: str, *, next_path: str) -> None:
    """Log in through the login form, the way a person does."""
    page.goto(f"/accounts/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("form button[type=submit]")
    page.wait_for_url(f"**{next_path}")


def expect_state(page: Page, state: str, timeout: float = 15_000) -> None:
    expect(page.locator("#state")).to_have_attribute("data-state", state, timeout=timeout)
    expect(page.locator("#state")).to_have_text(STATE_LABELS[state])


def connect(page: Page) -> dict[str, Any]:
    """Press Connect and wait until the data channel is open (state Connected); return the client snapshot."""
    page.click("#connect")
    expect_state(page, "connected")
    return snapshot(page)


def snapshot(page: Page) -> dict[str, Any]:
    return page.evaluate("window.voiceClient.snapshot()")


def channel_events(page: Page) -> list[str]:
    return page.evaluate("window.__e2e.channelEvents")


def sent_to_server(page: Page) -> list[str]:
    """The types of the frames the page sent over its websocket(s)."""
    return page.evaluate("window.__e2e.sentToServer")


def live_peer_connections(page: Page) -> int:
    """Peer connections the page created and has not closed."""
    return page.evaluate("window.__e2e.pcs.filter((pc) => pc.signalingState !== 'closed').length")


def bubble(page: Page, role: str, *, final: bool = True, session_id: str | None = None) -> Any:
    selector = f"#transcript li.bubble[data-role={role}]"
    if session_id:
        selector += f'[data-session-id="{session_id}"]'
    if final:
        selector += ".final"
    return page.locator(selector)
