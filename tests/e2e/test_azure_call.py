"""An Azure OpenAI call in real Chromium: the config sends its calls to Azure (here the emulator's
``/openai/v1`` paths, with Azure's ``api-key`` authentication and deployments), the server creates the
call with ``?webrtcfilter=on``, hears it on Azure's sideband and hangs it up there; the page shows the
conversation from the few events Azure lets through to the browser.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from tests.e2e.harness import Harness
from tests.e2e.pages import bubble, connect, expect, expect_state, live_peer_connections, log_in, sent_to_server
from tests.e2e.records import wait_for_session
from tests.e2e.servers import wait_until
from voice.models import ResponseUsage, TranscriptItem, VoiceConfig, VoiceSession

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(90),
]


def test_an_azure_server_mode_call_runs_end_to_end_on_azure_paths(e2e: Harness, owner: User) -> None:
    e2e.emulator.set_azure(deployments={"voice-prod": "gpt-realtime"})
    config = VoiceConfig.objects.get(is_default=True)
    config.provider, config.azure_deployment = VoiceConfig.Provider.AZURE, "voice-prod"
    config.call_mode = VoiceConfig.CallMode.SERVER
    config.full_clean()
    config.save()

    page = e2e.new_page("chat")
    log_in(page, "alice", "alice-pass-2026", next_path="/voice/")
    client = connect(page)
    assert client["mode"] == "server" and client["callId"] is None
    session = wait_for_session(client["sessionId"], status=VoiceSession.Status.ACTIVE)
    assert (session.provider, session.session_payload["model"]) == ("azure", "voice-prod")
    assert session.api_base.endswith("/openai/v1")

    # The page shows the model's reply from the filtered channel; the server heard all of it.
    reply = bubble(page, "assistant", session_id=session.pk)
    expect(reply.last.locator(".text")).to_contain_text("Yes, I can hear you")
    call = e2e.emulator.call(session.call_id)
    assert call["webrtc_filter"] is True and call["session"]["model"] == "voice-prod"
    assert {e["source"] for e in call["client_events"]} == {"sideband"}
    assert set(sent_to_server(page)) <= {"ag2.offer", "ag2.ready", "ag2.hangup"}

    page.click("#hangup")
    expect_state(page, "ended")
    assert live_peer_connections(page) == 0
    session = wait_for_session(client["sessionId"], status=VoiceSession.Status.ENDED, end_reason="hangup")
    wait_until(lambda: e2e.emulator.call(session.call_id)["status"] == "ended", timeout=10, what="the hang-up")
    assert ResponseUsage.objects.filter(session=session).exists() and session.model == config.model
    assert TranscriptItem.objects.filter(session=session, role="assistant", status="completed").exists()
