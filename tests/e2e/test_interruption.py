"""Speaking over the model in real Chromium: the reply is cut, the page says so, the conversation goes on.

The emulator plays its ``interruption`` script (barge-in on) and does what OpenAI's server VAD does on
WebRTC when the user speaks over the model: cancels the response, clears the audio and truncates the
item at what was played. The page's microphone is a tone the test switches on and off (Chromium's
fake device beeps on its own clock, which would interrupt at random), so the user speaks exactly when
a person would: once to ask, once over the answer, and then falls silent while the next answer plays.
"""

from __future__ import annotations

import time

import pytest
from django.contrib.auth.models import User

from realtime_emulator.script import load_script
from tests.e2e.harness import Harness
from tests.e2e.pages import bubble, connect, expect, expect_state, log_in
from tests.e2e.records import wait_for_session
from voice.models import TranscriptItem, VoiceSession

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(90),
]

# The page's microphone: a 440 Hz tone behind a gain the test turns up (speaking) or down (silence).
SWITCHED_MICROPHONE = """
(() => {
  const devices = navigator.mediaDevices;
  if (!devices) return;
  const mic = { speaking: false, set: () => {} };
  window.__mic = mic;
  devices.getUserMedia = async () => {
    const ctx = new AudioContext();
    const tone = ctx.createOscillator();
    tone.frequency.value = 440;
    const gain = ctx.createGain();
    gain.gain.value = 0;
    const out = ctx.createMediaStreamDestination();
    tone.connect(gain).connect(out);
    tone.start();
    mic.set = (on) => { gain.gain.value = on ? 0.3 : 0; mic.speaking = on; };
    return out.stream;
  };
})();
"""


def say(page: object, seconds: float = 0.4) -> None:
    """Speak for a moment, then fall silent (the emulator ends the turn on the silence)."""
    page.evaluate("window.__mic.set(true)")  # type: ignore[attr-defined]
    time.sleep(seconds)
    page.evaluate("window.__mic.set(false)")  # type: ignore[attr-defined]


def test_an_interrupted_reply_shows_as_interrupted_and_the_next_turn_goes_on(e2e: Harness, owner: User) -> None:
    script = load_script("interruption")
    long_reply, next_user, next_reply = script.turns[0].assistant, script.turns[1].user, script.turns[1].assistant
    e2e.emulator.use_script("interruption")
    page = e2e.new_page("chat", init_scripts=(SWITCHED_MICROPHONE,))
    log_in(page, "alice", "alice-pass-2026", next_path="/voice/")
    client = connect(page)
    session_id = client["sessionId"]  # in server mode (the default) the call id never reaches the page

    say(page)
    expect(bubble(page, "user", session_id=session_id).first.locator(".text")).to_have_text(script.turns[0].user)
    # The answer is under way: speak over it.
    speaking = bubble(page, "assistant", final=False, session_id=session_id)
    expect(speaking.first.locator(".text")).not_to_be_empty(timeout=10_000)
    say(page)

    assistant = bubble(page, "assistant", session_id=session_id)
    first = assistant.first
    expect(first).to_contain_text("interrupted", timeout=10_000)
    assert "truncated" in (first.get_attribute("class") or "")
    shown = first.locator(".text").inner_text().strip()
    assert shown and long_reply.startswith(shown), shown

    # The next turn goes on: the user's words, then the model's answer to them, whole this time.
    expect(bubble(page, "user", session_id=session_id).nth(1).locator(".text")).to_have_text(next_user,
                                                                                           timeout=15_000)
    expect(assistant.nth(1).locator(".text")).to_have_text(next_reply, timeout=15_000)
    assert "truncated" not in (assistant.nth(1).get_attribute("class") or "")
    e2e.screenshot(page, "chat-interrupted")

    # What the emulator did is what OpenAI does: cleared the audio and truncated the item, by itself.
    call = e2e.emulator.call(VoiceSession.objects.get(pk=session_id).call_id)
    types = [event["type"] for event in call["server_events"]]
    cut = types.index("conversation.item.truncated")
    assert types.count("conversation.item.truncated") == 1
    assert "output_audio_buffer.cleared" in types[:cut] and types.count("input_audio_buffer.speech_started") == 2
    sent = [entry["event"]["type"] for entry in call["client_events"] if "event" in entry]
    assert "conversation.item.truncate" not in sent

    page.click("#hangup")
    expect_state(page, "ended")
    session = wait_for_session(session_id, status=VoiceSession.Status.ENDED, end_reason="hangup")
    replies = [i for i in session.ordered_transcript() if i.role == "assistant"]
    assert [r.status for r in replies[:2]] == [TranscriptItem.Status.TRUNCATED, TranscriptItem.Status.COMPLETED]
    assert long_reply.startswith(replies[0].text) and replies[1].text == next_reply
    assert [i.text for i in session.ordered_transcript() if i.role == "user"] == [script.turns[0].user, next_user]
