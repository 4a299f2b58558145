"""A remote MCP server's credential comes from the server's environment and goes only to OpenAI: never
into the database, the admin, a log of frames, or anything a browser receives."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.test import Client

from realtime_emulator.validation import validate_client_secret_request
from tests.record_feed import relay, sent
from tests.ws_helpers import disconnect_peers, event_types, started, stored  # noqa: F401  (autouse fixture)
from voice import mcp
from voice.models import SessionEvent, VoiceConfig, VoiceSession
from voice.realtime.webrtc import OpenAIRealtimeWebRTCClient
from voice.recording import Recorder
from voice.sessions import SessionRefused, llm_config_for, start_session

TOKEN = "mcp-secret-token-7f3a"
MCP = {"mcp_server_label": "crm", "mcp_server_url": "https://mcp.example.com/mcp",
       "mcp_allowed_tools": ["lookup_customer"]}


@pytest.fixture
def credential(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("VOICE_MCP_CRM", TOKEN)
    return TOKEN


def _config(**fields: Any) -> VoiceConfig:
    return VoiceConfig.objects.create(name="CRM line", slug="crm", **{**MCP, **fields})


RELAY = VoiceConfig.CallMode.RELAY


@pytest.mark.django_db
def test_the_credential_is_never_in_the_config_the_stored_payload_or_the_admin(
    credential: str, superuser: User
) -> None:
    config = _config(mcp_credential_env="VOICE_MCP_CRM")  # server mode, the default
    session = VoiceSession.objects.create(user=superuser, config=config, model=config.model, mode=config.call_mode,
                                          session_payload=config.to_session_payload())
    assert TOKEN not in json.dumps(config.to_session_payload())
    assert TOKEN not in json.dumps(list(VoiceConfig.objects.filter(pk=config.pk).values()), default=str)
    client = Client()
    client.force_login(superuser)
    for url in (f"/admin/voice/voiceconfig/{config.pk}/change/", f"/admin/voice/voicesession/{session.pk}/change/",
                f"/admin/voice/voiceconfig/{config.pk}/history/"):
        page = client.get(url)
        assert page.status_code == 200 and TOKEN not in page.content.decode()
    # Only the request the server itself sends to OpenAI carries it.
    sent = llm_config_for(session)["session"]
    assert sent["tools"][-1]["authorization"] == TOKEN
    assert "authorization" not in session.session_payload["tools"][-1]
    # A session that ran relay keeps none, even if its config was switched to server mode since.
    session.mode = RELAY
    assert "authorization" not in llm_config_for(session)["session"]["tools"][-1]


@pytest.mark.django_db(transaction=True)
async def test_where_the_browser_holds_the_call_a_credentialed_config_does_not_start(
    owner: User, credential: str
) -> None:
    await database_sync_to_async(_config)(mcp_credential_env="VOICE_MCP_CRM", call_mode=RELAY)
    with pytest.raises(SessionRefused) as refused:
        await start_session(owner, "crm")
    assert refused.value.code == "credential_needs_server_mode"
    assert "browser" in refused.value.message and "VOICE_MCP" not in refused.value.message
    assert not await database_sync_to_async(VoiceSession.objects.exists)()


@pytest.mark.django_db(transaction=True)
async def test_a_public_mcp_server_works_in_relay_mode_and_the_agents_update_keeps_it(
    owner: User, emulator: str
) -> None:
    await database_sync_to_async(_config)(call_mode=RELAY)
    peer, init = await started(owner, "/ws/voice/?config=crm")
    minted_tools = init["config"]["session"]["tools"]
    assert {"type": "mcp", "server_label": "crm", "server_url": MCP["mcp_server_url"],
            "require_approval": "never", "allowed_tools": ["lookup_customer"]} in minted_tools
    update = await peer.until("session.update")
    # The update replaces the whole tool list: the MCP server must be in it, or it would be switched off.
    assert [(t["type"], t.get("server_label")) for t in update["session"]["tools"]] == [("mcp", "crm")]
    session = await stored(init["session_id"])
    assert session.session_payload["tools"][-1]["server_label"] == "crm"
    await peer.send({"type": "ag2.hangup"})


def test_the_browsers_init_frame_never_carries_a_tool_credential() -> None:
    session = {"type": "realtime", "model": "gpt-realtime-2.1",
               "tools": [{"type": "mcp", "server_label": "crm", "server_url": "https://m.example.com",
                          "authorization": TOKEN, "headers": {"X-Key": TOKEN}}]}
    client = OpenAIRealtimeWebRTCClient(
        llm_config={"config_list": [{"model": "gpt-realtime-2.1"}], "session": session}, websocket=object())
    # Whatever OpenAI echoes in the minted session (its types allow the field back), the browser gets none.
    frame = client._init_frame({"value": "ek_1", "expires_at": 1, "session": session})
    assert TOKEN not in json.dumps(frame)
    assert frame["config"]["session"]["tools"][0] == {"type": "mcp", "server_label": "crm",
                                                      "server_url": "https://m.example.com"}


@pytest.mark.django_db(transaction=True)
async def test_an_echoed_credential_is_not_written_to_the_event_log(owner: User) -> None:
    session = await database_sync_to_async(VoiceSession.objects.create)(user=owner, model="gpt-realtime-2.1")
    recorder = Recorder(str(session.pk), model="gpt-realtime-2.1")
    echoed = {"type": "session.created", "session": {"id": "sess_1", "type": "realtime", "tools": [
        {"type": "mcp", "server_label": "crm", "authorization": TOKEN, "headers": {"Authorization": TOKEN}}]}}
    relay(recorder, echoed)
    sent(recorder, {"type": "session.update", "session": echoed["session"]})
    await recorder.close()
    payloads = await database_sync_to_async(
        lambda: list(SessionEvent.objects.filter(session=session).values_list("payload", flat=True)))()
    assert len(payloads) == 2 and TOKEN not in json.dumps(payloads)
    assert payloads[0]["session"]["tools"][0]["server_label"] == "crm"
    assert echoed["session"]["tools"][0]["authorization"] == TOKEN  # the caller's frame is left alone


def test_the_emulator_keeps_the_credential_to_itself_like_openai() -> None:
    _, effective = validate_client_secret_request({"session": {
        "type": "realtime", "model": "gpt-realtime-2.1",
        "tools": [{"type": "mcp", "server_label": "crm", "server_url": "https://m.example.com",
                   "authorization": TOKEN}]}})
    assert TOKEN not in json.dumps(effective)


@pytest.mark.django_db
def test_an_unset_variable_or_a_foreign_one_gives_no_credential_and_is_logged(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(mcp_credential_env="VOICE_MCP_MISSING")
    monkeypatch.delenv("VOICE_MCP_MISSING", raising=False)
    payload = config.to_session_payload()
    with caplog.at_level(logging.ERROR, logger="voice.mcp"):
        assert mcp.with_credentials(payload, config) == payload
    assert "VOICE_MCP_MISSING is not set" in caplog.text
    # A row written around the form's validation still cannot point an MCP server at another secret.
    monkeypatch.setenv("OPENAI_API_KEY", "sk-real-key")
    VoiceConfig.objects.filter(pk=config.pk).update(mcp_credential_env="OPENAI_API_KEY")
    config.refresh_from_db()
    assert mcp.credential(config) is None
    assert "sk-real-key" not in json.dumps(mcp.with_credentials(payload, config))
