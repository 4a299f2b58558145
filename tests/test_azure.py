"""Azure OpenAI as a second provider: URL and credential building, Azure's refusals in words people can act
on, the emulator's Azure surface, and whole calls in both modes through the emulator on Azure's paths."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User

from tests.emulator.test_emulator_call import fast_script
from tests.server_mode import SESSION, BrowserPeer, Emulator, eventually, running_emulator
from tests.ws_helpers import disconnect_peers, open_peer, started, stored, wait_for  # noqa: F401
from voice import checks, live, providers
from voice.models import VoiceConfig
from voice.realtime import OpenAIRealtimeWebRTCClient, get_client
from voice.realtime.calls import create_call, hangup, raise_for_status
from voice.realtime.errors import (
    RealtimeAuthError,
    RealtimeConfigError,
    RealtimeDeploymentNotFoundError,
    RealtimeRequestRejectedError,
    RealtimeWebRTCUnavailableError,
)
from voice.realtime.providers import auth_for, azure_api_base, azure_auth, calls_params

AZURE_KEY = "0123456789abcdef0123456789abcdef"
ENTRA_TOKEN = "eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJjb2duaXRpdmVzZXJ2aWNlcyJ9.c2lnbmF0dXJl"
DEPLOYMENTS = {"voice-prod": "gpt-realtime"}


def _azure_base(emulator: Emulator) -> str:
    return emulator.base.removesuffix("/v1") + "/openai/v1"


def _azure_llm_config(base: str, model: str = "voice-prod", **entry: Any) -> dict[str, Any]:
    return {"config_list": [{"model": model, "api_type": "azure", "base_url": base, "api_key": AZURE_KEY, **entry}],
            "session": {**SESSION, "model": model}, "timeout": 10}


# --- URLs and credentials ----------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", [
    "https://res.openai.azure.com", "https://res.openai.azure.com/", "https://res.openai.azure.com/openai",
    "https://res.openai.azure.com/openai/v1/", " https://res.openai.azure.com/openai/v1 ",
])
def test_the_azure_api_base_comes_from_the_endpoint_as_the_portal_shows_it(endpoint: str) -> None:
    assert azure_api_base(endpoint) == "https://res.openai.azure.com/openai/v1"


@pytest.mark.parametrize("endpoint", [
    "", "res.openai.azure.com", "ftp://res.openai.azure.com", "https://res.openai.azure.com/openai/deployments/x",
    "https://res.openai.azure.com/openai/v1?api-version=2025-04-01-preview", "https://res.openai.azure.com/#x",
])
def test_an_endpoint_that_is_not_a_resource_address_is_refused_with_a_sentence(endpoint: str) -> None:
    with pytest.raises(RealtimeConfigError, match="Azure OpenAI endpoint"):
        azure_api_base(endpoint)


def test_azure_authenticates_with_api_key_else_an_entra_token_which_may_be_refreshed() -> None:
    assert azure_auth(AZURE_KEY)() == {"api-key": AZURE_KEY}
    assert azure_auth(AZURE_KEY, ENTRA_TOKEN)() == {"api-key": AZURE_KEY}  # one credential per request
    assert azure_auth(None, ENTRA_TOKEN)() == {"Authorization": f"Bearer {ENTRA_TOKEN}"}
    tokens = iter(["first.a.b", "second.a.b"])
    refreshed = azure_auth(ad_token=lambda: next(tokens))
    assert [refreshed()["Authorization"] for _ in range(2)] == ["Bearer first.a.b", "Bearer second.a.b"]
    with pytest.raises(RealtimeConfigError, match="API key or an Entra ID token"):
        azure_auth(None, None)
    assert auth_for({"api_type": "azure", "api_key": "", "azure_ad_token": ENTRA_TOKEN})() == {
        "Authorization": f"Bearer {ENTRA_TOKEN}"}
    assert auth_for({"api_type": "openai", "api_key": "sk-x"})() == {"Authorization": "Bearer sk-x"}
    assert auth_for({"api_key": ""})() == {}  # the emulator: no header at all


def test_only_azure_server_calls_ask_for_the_data_channel_filter() -> None:
    assert calls_params("azure", server_mode=True) == {"webrtcfilter": "on"}
    assert calls_params("azure", server_mode=False) == {}
    assert calls_params("openai", server_mode=True) == {}


def _answer(status: int, body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(status, json=body)


def test_azure_refusals_say_what_an_administrator_must_change() -> None:
    denied = _answer(401, {"error": {"code": "401", "message": f"Access denied for key {AZURE_KEY}."}})
    with pytest.raises(RealtimeAuthError) as auth:
        raise_for_status(denied, [AZURE_KEY], action="start the call", service="Azure OpenAI")
    assert "Azure OpenAI refused" in auth.value.message and "Entra ID token" in auth.value.message
    assert AZURE_KEY not in auth.value.message  # Azure's own words are kept, the key is not
    missing = _answer(404, {"error": {"code": "DeploymentNotFound", "message": "The API deployment ..."}})
    with pytest.raises(RealtimeDeploymentNotFoundError) as deployment:
        raise_for_status(missing, [], action="start the call", model="voice-prd", service="Azure OpenAI")
    assert deployment.value.code == "deployment_not_found" and "'voice-prd'" in deployment.value.message
    with pytest.raises(RealtimeWebRTCUnavailableError) as region:
        raise_for_status(_answer(404, {"error": {"code": "404", "message": "Resource not found"}}), [],
                         action="start the call", service="Azure OpenAI")
    assert region.value.code == "webrtc_unavailable" and "region" in region.value.message
    retired = _answer(400, {"error": {"code": "model_not_found", "message": "The model does not exist."}})
    with pytest.raises(RealtimeRequestRejectedError, match="may have been retired"):
        raise_for_status(retired, [], action="start the call", model="gpt-4o-realtime-preview")


# --- the emulator's Azure surface ------------------------------------------------------------------------


async def test_the_emulator_checks_azure_credentials_deployments_and_region_as_azure_does() -> None:
    async with running_emulator("default", azure_deployments=DEPLOYMENTS) as emulator:
        mint = {"session": {"type": "realtime", "model": "voice-prod"}}
        url = "/openai/v1/realtime/client_secrets"
        wrong = await emulator.control("POST", url, json=mint, headers={"api-key": "not-a-key"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "401"
        assert set(wrong.json()["error"]) == {"code", "message"}  # Azure's shape, not OpenAI's four fields
        openai_key = await emulator.control("POST", url, json=mint, headers={"Authorization": "Bearer sk-abc"})
        assert openai_key.status_code == 401
        by_key = await emulator.control("POST", url, json=mint, headers={"api-key": AZURE_KEY})
        assert by_key.status_code == 200 and by_key.json()["session"]["model"] == "voice-prod"
        by_token = await emulator.control("POST", url, json=mint, headers={"Authorization": f"Bearer {ENTRA_TOKEN}"})
        assert by_token.status_code == 200
        unknown = await emulator.control("POST", url, json={"session": {"type": "realtime", "model": "voice-prd"}},
                                         headers={"api-key": AZURE_KEY})
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "DeploymentNotFound"
        # A secret minted by OpenAI's paths is unknown to Azure's (and the other way round).
        openai_secret = await emulator.control("POST", "/v1/realtime/client_secrets", json={
            "session": {"type": "realtime", "model": "gpt-realtime"}}, headers={"Authorization": "Bearer sk-x"})
        offer = await BrowserPeer().offer()
        cross = await emulator.control("POST", "/openai/v1/realtime/calls", content=offer, headers={
            "Authorization": f"Bearer {openai_secret.json()['value']}", "Content-Type": "application/sdp"})
        assert cross.status_code == 401
        assert (await emulator.control("POST", "/_emulator/azure", json={"webrtc": False})).status_code == 200
        region = await emulator.control("POST", url, json=mint, headers={"api-key": AZURE_KEY})
        assert region.status_code == 404
        assert region.json() == {"error": {"code": "404", "message": "Resource not found"}}
        await emulator.control("POST", "/_emulator/reset")
        assert (await emulator.control("GET", "/_emulator/azure")).json()["webrtc"] is True


# --- whole calls on Azure's paths, without Django ------------------------------------------------------------


async def test_a_server_created_azure_call_filters_the_browser_channel_and_is_heard_and_hung_up_on_azure_paths(
) -> None:
    async with running_emulator(fast_script("default"), azure_deployments=DEPLOYMENTS) as emulator:
        base = _azure_base(emulator)
        peer = BrowserPeer()
        answer, call_id = await create_call(base, None, await peer.offer(), {**SESSION, "model": "voice-prod"},
                                            auth=azure_auth(AZURE_KEY), params={"webrtcfilter": "on"},
                                            service="Azure OpenAI", timeout=10)
        await peer.answer(answer)
        call = await emulator.call(call_id)
        assert call["webrtc_filter"] is True and call["session"]["model"] == "voice-prod"

        config = _azure_llm_config(base)
        client = get_client(config, logging.getLogger("test"), call_id=call_id)
        seen: list[str] = []
        async with client.connect():
            await client.session_update({"instructions": "Be brief."})
            turn = await emulator.control("POST", f"/_emulator/calls/{call_id}/turn", json={"text": "Hello"})
            assert turn.status_code == 202
            async for event in client.read_events():
                seen.append(event.raw_message.get("type", ""))
                if seen[-1] == "response.done":
                    break
        # The sideband heard everything; the browser's channel only what Azure lets through with the filter.
        assert {"session.created", "response.created", "response.done"} <= set(seen)
        browser_types = {e["type"] for e in peer.events}
        assert browser_types and browser_types <= {
            "input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped", "output_audio_buffer.started",
            "output_audio_buffer.stopped", "conversation.item.input_audio_transcription.completed",
            "conversation.item.added", "conversation.item.created", "response.output_text.delta",
            "response.output_text.done", "response.output_audio_transcript.delta",
            "response.output_audio_transcript.done"}, browser_types
        assert "response.output_audio_transcript.delta" in browser_types and "response.done" not in browser_types
        assert await hangup(base, None, call_id, auth=azure_auth(AZURE_KEY)) is True
        await eventually(lambda: True)
        assert (await emulator.call(call_id))["status"] == "ended"
        await peer.close()


async def test_azure_call_failures_are_typed_and_never_show_the_key() -> None:
    async with running_emulator("default", azure_deployments=DEPLOYMENTS) as emulator:
        base = _azure_base(emulator)
        offer = await BrowserPeer().offer()
        with pytest.raises(RealtimeAuthError) as refused:
            await create_call(base, None, offer, {**SESSION, "model": "voice-prod"}, auth=azure_auth("wrongkey"),
                              service="Azure OpenAI")
        assert "wrongkey" not in str(refused.value) and "Azure OpenAI" in refused.value.message
        with pytest.raises(RealtimeDeploymentNotFoundError, match="'voice-prd'"):
            await create_call(base, None, offer, {**SESSION, "model": "voice-prd"}, auth=azure_auth(AZURE_KEY),
                              service="Azure OpenAI")
        await emulator.control("POST", "/_emulator/azure", json={"webrtc": False})
        with pytest.raises(RealtimeWebRTCUnavailableError):
            await create_call(base, None, offer, {**SESSION, "model": "voice-prod"}, auth=azure_auth(AZURE_KEY),
                              service="Azure OpenAI")


class _Socket:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_json(self, data: Any) -> None:
        self.sent.append(data)

    async def receive_text(self) -> str:
        await asyncio.sleep(3600)
        return ""


async def test_relay_mode_mints_on_azure_and_the_browser_posts_its_offer_to_azure_calls() -> None:
    async with running_emulator("default", azure_deployments=DEPLOYMENTS) as emulator:
        base = _azure_base(emulator)
        socket = _Socket()
        client = OpenAIRealtimeWebRTCClient(llm_config=_azure_llm_config(base), websocket=socket)
        async with client.connect():
            init = socket.sent[0]
        config = init["config"]
        assert config["calls_url"] == f"{base}/realtime/calls" and config["model"] == "voice-prod"
        assert AZURE_KEY not in json.dumps(socket.sent)
        # What the page does with it: its offer, the client secret as Bearer, to Azure's calls URL.
        peer = BrowserPeer()
        response = await emulator.control("POST", config["calls_url"].split(emulator.base.removesuffix("/v1"))[1],
                                          content=await peer.offer(), headers={
                                              "Authorization": f"Bearer {config['value']}",
                                              "Content-Type": "application/sdp"})
        assert response.status_code == 201 and response.headers["location"].startswith("/openai/v1/realtime/calls/")
        call = await emulator.call(response.headers["location"].rsplit("/", 1)[1])
        assert call["webrtc_filter"] is False  # the browser holds the call: it needs every event
        await peer.answer(response.text)
        await peer.close()


# --- through Django: sessions, both modes ------------------------------------------------------------------

pytestmark_db = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def azure_emulator(settings: Any) -> Any:
    async with running_emulator(fast_script("default"), azure_deployments=DEPLOYMENTS) as emulator:
        settings.OPENAI_BASE_URL = emulator.base
        settings.USING_EMULATOR = True
        settings.OPENAI_API_KEY = ""
        settings.AZURE_OPENAI_ENDPOINT = ""
        settings.AZURE_OPENAI_API_KEY = ""
        settings.AZURE_OPENAI_AD_TOKEN = ""
        settings.AZURE_OPENAI_DEPLOYMENT = ""
        settings.VOICE_PROVIDER = "openai"
        yield emulator
        for session in live.live_sessions():
            await session.finish("test_over", notify=False, close_code=None)


@database_sync_to_async
def _use_azure(call_mode: str = VoiceConfig.CallMode.SERVER, **fields: Any) -> VoiceConfig:
    config = VoiceConfig.objects.get(is_default=True)
    config.provider, config.azure_deployment, config.call_mode = "azure", "voice-prod", call_mode
    for name, value in fields.items():
        setattr(config, name, value)
    config.full_clean()
    config.save()
    return config


@pytestmark_db
async def test_a_server_mode_session_on_azure_goes_through_azure_paths_end_to_end(
    owner: User, azure_emulator: Emulator
) -> None:
    config = await _use_azure()
    peer, init = await started(owner)
    assert init["mode"] == "server" and init["session"]["model"] == "voice-prod"
    media = BrowserPeer()
    await peer.send({"type": "ag2.offer", "sdp": await media.offer()})
    answer = await peer.until("ag2.answer")
    await media.answer(answer["sdp"])
    await peer.send({"type": "ag2.ready"})
    session = await wait_for(lambda: _active(init["session_id"]))
    assert session.provider == "azure" and session.api_base == _azure_base(azure_emulator)
    assert session.model == config.model and session.session_payload["model"] == "voice-prod"
    call = await azure_emulator.call(session.call_id)
    assert call["webrtc_filter"] is True and call["session"]["model"] == "voice-prod"
    assert any(e["source"] == "sideband" for e in call["client_events"])  # the sideband, on Azure's path

    await peer.send({"type": "ag2.hangup"})
    assert (await peer.until("ag2.close"))["reason"] == "hangup"
    assert await peer.closed() == 1000  # after the hang-up at Azure
    assert (await azure_emulator.call(session.call_id))["status"] == "ended"
    assert providers.EMULATOR_AZURE_KEY not in json.dumps(peer.frames)
    await media.close()


async def _active(session_id: str) -> Any:
    return await _with_status(session_id, "active")


async def _with_status(session_id: str, status: str) -> Any:
    session = await stored(session_id)
    return session if session.status == status else None


@pytestmark_db
async def test_a_relay_session_on_azure_tells_the_browser_azures_calls_url(
    owner: User, azure_emulator: Emulator
) -> None:
    await _use_azure(VoiceConfig.CallMode.RELAY)
    _, init = await started(owner)
    assert init["config"]["calls_url"] == f"{_azure_base(azure_emulator)}/realtime/calls"
    assert init["config"]["model"] == "voice-prod" and init["config"]["value"].startswith("ek_")
    assert providers.EMULATOR_AZURE_KEY not in json.dumps(init)
    session = await stored(init["session_id"])
    assert (session.provider, session.mode) == ("azure", "relay")


@pytestmark_db
async def test_a_wrong_azure_key_is_a_sentence_for_the_user_and_the_key_is_never_shown(
    owner: User, azure_emulator: Emulator, settings: Any
) -> None:
    settings.AZURE_OPENAI_ENDPOINT = azure_emulator.base.removesuffix("/v1")
    settings.AZURE_OPENAI_API_KEY = "wrong-key"
    await _use_azure()
    peer, init = await started(owner)
    media = BrowserPeer()
    await peer.send({"type": "ag2.offer", "sdp": await media.offer()})
    error = await peer.until("ag2.error")
    assert error["code"] == "openai_auth_failed" and "Azure OpenAI" in error["message"]
    assert "wrong-key" not in json.dumps(peer.frames)
    await peer.closed()
    session = await wait_for(lambda: _with_status(init["session_id"], "failed"))
    assert session and "HTTP 401" in session.error and "wrong-key" not in session.error
    await media.close()


@pytestmark_db
async def test_an_unknown_deployment_ends_the_call_with_what_to_fix(owner: User, azure_emulator: Emulator) -> None:
    await _use_azure(azure_deployment="voice-prd")
    peer, _ = await started(owner)
    media = BrowserPeer()
    await peer.send({"type": "ag2.offer", "sdp": await media.offer()})
    error = await peer.until("ag2.error")
    assert error["code"] == "deployment_not_found" and "deployment" in error["message"]
    await media.close()


@pytestmark_db
async def test_azure_without_endpoint_or_credential_is_refused_at_start_and_warned_about(
    owner: User, azure_emulator: Emulator, settings: Any
) -> None:
    settings.USING_EMULATOR = False
    settings.OPENAI_API_KEY = "sk-real-looking"
    await _use_azure()
    peer, connected = await open_peer(owner)
    assert connected
    error = await peer.until("ag2.error")
    assert error["code"] == "provider_not_configured" and "not set up" in error["message"]
    assert "AZURE_" not in error["message"]  # no setting names for the user
    assert await peer.closed() == 4403
    warnings = await database_sync_to_async(checks.providers_configured)()
    assert [w.id for w in warnings] == ["voice.W003"] and "AZURE_OPENAI_ENDPOINT" in warnings[0].msg


@pytestmark_db
async def test_the_config_refuses_a_bad_endpoint_and_azure_fields_on_openai(azure_emulator: Emulator) -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as bad:
        await _use_azure(azure_endpoint="https://res.openai.azure.com/openai/deployments/x")
    assert "azure_endpoint" in bad.value.message_dict
    with pytest.raises(ValidationError) as mixed:
        await _use_azure(provider="openai")
    assert "provider" in mixed.value.message_dict


@pytestmark_db
async def test_the_recorder_takes_azure_credentials_out_of_what_it_stores(owner: User, settings: Any) -> None:
    from tests.test_recording import relay
    from voice.models import SessionEvent, VoiceSession
    from voice.recording import Recorder

    settings.AZURE_OPENAI_API_KEY, settings.AZURE_OPENAI_AD_TOKEN = AZURE_KEY, ENTRA_TOKEN
    config = await database_sync_to_async(VoiceConfig.objects.get)(slug="default")
    session = await database_sync_to_async(VoiceSession.objects.create)(user=owner, config=config, model="gpt-realtime")
    recorder = Recorder(str(session.pk), model="gpt-realtime")
    relay(recorder, {"type": "error", "error": {"message": f"key {AZURE_KEY} and token {ENTRA_TOKEN} refused"}})
    await recorder.close()
    stored_payloads = json.dumps(await database_sync_to_async(
        lambda: list(SessionEvent.objects.filter(session=session).values_list("payload", flat=True)))())
    assert "refused" in stored_payloads and AZURE_KEY not in stored_payloads and ENTRA_TOKEN not in stored_payloads


@pytest.mark.django_db
def test_the_config_admin_says_whether_this_server_can_reach_the_chosen_service(
    superuser: User, settings: Any, client: Any
) -> None:
    settings.USING_EMULATOR, settings.OPENAI_API_KEY = False, "sk-real-looking"
    settings.AZURE_OPENAI_ENDPOINT = settings.AZURE_OPENAI_API_KEY = settings.AZURE_OPENAI_AD_TOKEN = ""
    config = VoiceConfig.objects.get(is_default=True)
    client.force_login(superuser)
    url = f"/admin/voice/voiceconfig/{config.pk}/change/"
    assert "OpenAI: configured" in client.get(url).content.decode()
    VoiceConfig.objects.filter(pk=config.pk).update(provider="azure", azure_deployment="voice-prod")
    page = client.get(url).content.decode()
    assert "Azure OpenAI: Azure OpenAI has no endpoint" in page
    assert 'name="azure_deployment"' in page and 'value="voice-prod"' in page
