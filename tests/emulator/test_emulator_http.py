"""The emulator's HTTP endpoints hold to PROTOCOL.md section 1: what OpenAI accepts, and what it refuses."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiortc import RTCConfiguration, RTCPeerConnection

from realtime_emulator.app import create_app

KEY = {"Authorization": "Bearer sk-test-key"}
BROWSER_ORIGIN = "http://127.0.0.1:8000"


@pytest.fixture
async def emulator() -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(create_app(), host="127.0.0.1")) as client:
        yield client


async def mint(client: TestClient, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None):
    payload = body if body is not None else {"session": {"type": "realtime"}}
    return await client.post("/v1/realtime/client_secrets", json=payload, headers=headers or KEY)


async def assert_error(
    response: aiohttp.ClientResponse, status: int, code: str | tuple[str, ...] | None, param: str | None = None
) -> dict[str, Any]:
    """Assert an OpenAI-shaped error body; ``code`` may list the acceptable codes."""
    assert response.status == status, await response.text()
    body = await response.json()
    assert set(body["error"]) == {"message", "type", "code", "param"}
    assert body["error"]["message"]
    assert body["error"]["code"] in (code if isinstance(code, tuple) else (code,))
    if param is not None:
        assert body["error"]["param"] == param
    return body["error"]


async def offer_sdp() -> str:
    """A real browser-like offer: one sendrecv audio transceiver and the oai-events data channel."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="sendrecv")
    pc.createDataChannel("oai-events")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


# --- client secrets --------------------------------------------------------------------------------------


async def test_minting_a_secret_returns_an_ek_value_expiry_and_the_effective_session(emulator: TestClient):
    session = {
        "type": "realtime",
        "model": "gpt-realtime",
        "instructions": "Be brief.",
        "output_modalities": ["audio"],
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": {"model": "gpt-4o-mini-transcribe"},
                "turn_detection": {"type": "server_vad", "threshold": 0.6, "silence_duration_ms": 400},
                "noise_reduction": {"type": "near_field"},
            },
            "output": {"voice": "marin", "speed": 1.1},
        },
        "tools": [
            {"type": "function", "name": "current_time", "description": "Now.", "parameters": {"type": "object"}}
        ],
        "tool_choice": "auto",
        "max_output_tokens": 4096,
    }
    before = int(time.time())
    response = await mint(emulator, {"expires_after": {"anchor": "created_at", "seconds": 120}, "session": session})
    assert response.status == 200
    body = await response.json()
    assert body["value"].startswith("ek_")
    assert before + 120 <= body["expires_at"] <= int(time.time()) + 120
    effective = body["session"]
    assert effective["id"].startswith("sess_")
    assert effective["type"] == "realtime"
    assert effective["audio"]["output"]["voice"] == "marin"
    # Defaults fill what the request left out, the way OpenAI reports the effective session.
    assert effective["audio"]["input"]["turn_detection"]["prefix_padding_ms"] == 300
    assert effective["audio"]["input"]["turn_detection"]["threshold"] == 0.6
    assert effective["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert effective["tools"][0]["name"] == "current_time"


async def test_a_secret_lives_600_seconds_by_default(emulator: TestClient):
    body = await (await mint(emulator)).json()
    assert abs(body["expires_at"] - (time.time() + 600)) < 5


@pytest.mark.parametrize(
    "field,value",
    [
        ("voice", "alloy"),
        ("modalities", ["audio", "text"]),
        ("turn_detection", {"type": "server_vad"}),
        ("temperature", 0.8),
        ("input_audio_format", "pcm16"),
        ("output_audio_format", "pcm16"),
        ("input_audio_transcription", {"model": "whisper-1"}),
        ("input_audio_noise_reduction", {"type": "near_field"}),
        ("max_response_output_tokens", "inf"),
    ],
)
async def test_beta_session_fields_are_refused_as_beta_api_shape_disabled(emulator: TestClient, field: str, value: Any):
    response = await mint(emulator, {"session": {"type": "realtime", field: value}})
    await assert_error(response, 400, "beta_api_shape_disabled", f"session.{field}")


async def test_an_unknown_session_field_rejects_the_whole_session(emulator: TestClient):
    response = await mint(emulator, {"session": {"type": "realtime", "instructions": "x", "colour": "blue"}})
    await assert_error(response, 400, "unknown_parameter", "session.colour")


async def test_an_unknown_nested_field_is_refused_too(emulator: TestClient):
    response = await mint(
        emulator, {"session": {"type": "realtime", "audio": {"output": {"voice": "ash", "pitch": 2}}}}
    )
    await assert_error(response, 400, "unknown_parameter", "session.audio.output.pitch")


async def test_the_session_type_is_required_and_must_be_realtime(emulator: TestClient):
    await assert_error(await mint(emulator, {"session": {"model": "gpt-realtime"}}), 400, "missing_required_parameter")
    await assert_error(
        await mint(emulator, {"session": {"type": "transcription"}}), 400, "invalid_value", "session.type"
    )


@pytest.mark.parametrize("modalities", [["audio", "text"], ["text", "audio"], [], ["video"], "audio"])
async def test_output_modalities_must_be_exactly_audio_or_text(emulator: TestClient, modalities: Any):
    response = await mint(emulator, {"session": {"type": "realtime", "output_modalities": modalities}})
    await assert_error(response, 400, ("invalid_value", "invalid_type"), "session.output_modalities")


async def test_text_only_output_is_accepted(emulator: TestClient):
    response = await mint(emulator, {"session": {"type": "realtime", "output_modalities": ["text"]}})
    assert (await response.json())["session"]["output_modalities"] == ["text"]


async def test_a_voice_outside_the_list_is_refused(emulator: TestClient):
    response = await mint(emulator, {"session": {"type": "realtime", "audio": {"output": {"voice": "nova"}}}})
    await assert_error(response, 400, "invalid_value", "session.audio.output.voice")


@pytest.mark.parametrize(
    "turn_detection,code",
    [
        ({"type": "push_to_talk"}, "invalid_value"),
        ({"threshold": 0.5}, "missing_required_parameter"),
        ({"type": "server_vad", "threshold": 1.5}, "decimal_above_max_value"),
        ({"type": "server_vad", "eagerness": "high"}, "unknown_parameter"),
        ({"type": "semantic_vad", "eagerness": "eager"}, "invalid_value"),
        ({"type": "semantic_vad", "silence_duration_ms": 200}, "unknown_parameter"),
    ],
)
async def test_bad_turn_detection_shapes_are_refused(emulator: TestClient, turn_detection: Any, code: str):
    session = {"type": "realtime", "audio": {"input": {"turn_detection": turn_detection}}}
    await assert_error(await mint(emulator, {"session": session}), 400, code)


async def test_turn_detection_and_noise_reduction_may_be_null_or_semantic(emulator: TestClient):
    session = {"type": "realtime", "audio": {"input": {"turn_detection": None, "noise_reduction": None}}}
    assert (await mint(emulator, {"session": session})).status == 200
    session["audio"]["input"]["turn_detection"] = {"type": "semantic_vad", "eagerness": "low"}
    body = await (await mint(emulator, {"session": session})).json()
    assert body["session"]["audio"]["input"]["turn_detection"]["eagerness"] == "low"


async def test_unknown_noise_reduction_is_refused(emulator: TestClient):
    session = {"type": "realtime", "audio": {"input": {"noise_reduction": {"type": "studio"}}}}
    await assert_error(await mint(emulator, {"session": session}), 400, "invalid_value")


@pytest.mark.parametrize(
    "tools,code",
    [
        ([{"name": "x"}], "missing_required_parameter"),
        ([{"type": "function"}], "missing_required_parameter"),
        ([{"type": "function", "name": "has space"}], "invalid_value"),
        ([{"type": "function", "name": "x", "strict": True}], "unknown_parameter"),
        ([{"type": "retrieval", "name": "x"}], "invalid_value"),
        ({"type": "function", "name": "x"}, "invalid_type"),
    ],
)
async def test_bad_tool_shapes_are_refused(emulator: TestClient, tools: Any, code: str):
    await assert_error(await mint(emulator, {"session": {"type": "realtime", "tools": tools}}), 400, code)


@pytest.mark.parametrize(
    "value,code",
    [
        (0, "integer_below_min_value"),
        (4097, "integer_above_max_value"),
        ("big", "invalid_value"),
        (True, "invalid_type"),
    ],
)
async def test_max_output_tokens_is_1_to_4096_or_inf(emulator: TestClient, value: Any, code: str):
    response = await mint(emulator, {"session": {"type": "realtime", "max_output_tokens": value}})
    await assert_error(response, 400, code, "session.max_output_tokens")
    for good in (1, 4096, "inf"):
        assert (await mint(emulator, {"session": {"type": "realtime", "max_output_tokens": good}})).status == 200


@pytest.mark.parametrize(
    "expires_after,code",
    [
        ({"anchor": "created_at", "seconds": 9}, "integer_below_min_value"),
        ({"anchor": "created_at", "seconds": 7201}, "integer_above_max_value"),
        ({"anchor": "now", "seconds": 60}, "invalid_value"),
        ({"seconds": 60}, "missing_required_parameter"),
        ({"anchor": "created_at", "seconds": 60, "extra": 1}, "unknown_parameter"),
    ],
)
async def test_expires_after_is_validated(emulator: TestClient, expires_after: Any, code: str):
    response = await mint(emulator, {"expires_after": expires_after, "session": {"type": "realtime"}})
    await assert_error(response, 400, code)


async def test_a_non_realtime_model_is_refused(emulator: TestClient):
    response = await mint(emulator, {"session": {"type": "realtime", "model": "gpt-4o"}})
    await assert_error(response, 400, "model_not_found", "session.model")


async def test_malformed_json_is_a_400_with_an_error_body(emulator: TestClient):
    response = await emulator.post(
        "/v1/realtime/client_secrets", data="{not json", headers={**KEY, "Content-Type": "application/json"}
    )
    await assert_error(response, 400, "invalid_json")


@pytest.mark.parametrize(
    "headers,code",
    [
        ({}, "missing_api_key"),
        ({"Authorization": "Bearer not-a-key"}, "invalid_api_key"),
        ({"Authorization": "Basic c2stdGVzdA=="}, "missing_api_key"),
        ({"Authorization": "Bearer ek_123"}, "invalid_api_key"),
    ],
)
async def test_minting_needs_a_standard_key(emulator: TestClient, headers: dict[str, str], code: str):
    response = await emulator.post(
        "/v1/realtime/client_secrets", json={"session": {"type": "realtime"}}, headers=headers
    )
    await assert_error(response, 401, code)


async def test_a_configured_api_key_is_the_only_one_accepted():
    async with TestClient(TestServer(create_app(api_key="sk-exact"), host="127.0.0.1")) as client:
        await assert_error(await mint(client, headers={"Authorization": "Bearer sk-other"}), 401, "invalid_api_key")
        assert (await mint(client, headers={"Authorization": "Bearer sk-exact"})).status == 200


async def test_the_beta_sessions_endpoint_is_shut_down(emulator: TestClient):
    response = await emulator.post("/v1/realtime/sessions", json={"model": "gpt-realtime"}, headers=KEY)
    await assert_error(response, 400, "beta_api_shape_disabled")


async def test_the_beta_header_is_refused(emulator: TestClient):
    response = await mint(emulator, headers={**KEY, "OpenAI-Beta": "realtime=v1"})
    await assert_error(response, 400, "beta_api_shape_disabled")


async def test_the_beta_sdp_endpoint_is_refused(emulator: TestClient):
    response = await emulator.post("/v1/realtime?model=gpt-realtime", data="v=0", headers=KEY)
    await assert_error(response, 400, "beta_api_shape_disabled")


# --- calls ---------------------------------------------------------------------------------------------------


async def post_sdp(client: TestClient, token: str, sdp: str, **headers: str) -> aiohttp.ClientResponse:
    return await client.post(
        "/v1/realtime/calls",
        data=sdp,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp", **headers},
    )


async def test_an_offer_with_a_client_secret_gets_201_an_answer_and_a_location(emulator: TestClient):
    secret = (await (await mint(emulator)).json())["value"]
    response = await post_sdp(emulator, secret, await offer_sdp())
    assert response.status == 201, await response.text()
    assert response.content_type == "application/sdp"
    answer = await response.text()
    assert answer.startswith("v=0")
    assert "m=audio" in answer and "m=application" in answer
    location = response.headers["Location"]
    assert location.startswith("/v1/realtime/calls/rtc_")
    call_id = location.rsplit("/", 1)[-1]
    calls = (await (await emulator.get("/_emulator/calls")).json())["calls"]
    assert [call["call_id"] for call in calls] == [call_id]
    assert calls[0]["status"] == "active"


async def test_an_unknown_client_secret_is_refused_at_calls(emulator: TestClient):
    await assert_error(await post_sdp(emulator, "ek_doesnotexist", await offer_sdp()), 401, "invalid_api_key")


async def test_an_expired_client_secret_is_refused_at_calls(emulator: TestClient):
    secret = (await (await mint(emulator)).json())["value"]
    expired = await (await emulator.post(f"/_emulator/expire/{secret}")).json()
    assert expired["expires_at"] < time.time()
    error = await assert_error(await post_sdp(emulator, secret, await offer_sdp()), 401, "invalid_api_key")
    assert "expired" in error["message"]


async def test_a_fault_can_mint_secrets_that_are_born_expired(emulator: TestClient):
    await emulator.post("/_emulator/faults", json={"expired_secrets": 1})
    first = await (await mint(emulator)).json()
    second = await (await mint(emulator)).json()
    assert first["expires_at"] < time.time() < second["expires_at"]
    await assert_error(await post_sdp(emulator, first["value"], await offer_sdp()), 401, "invalid_api_key")


async def test_calls_need_a_credential(emulator: TestClient):
    response = await emulator.post(
        "/v1/realtime/calls", data=await offer_sdp(), headers={"Content-Type": "application/sdp"}
    )
    await assert_error(response, 401, "missing_api_key")


async def test_a_malformed_offer_is_a_400(emulator: TestClient):
    secret = (await (await mint(emulator)).json())["value"]
    await assert_error(await post_sdp(emulator, secret, "hello"), 400, "invalid_offer")


async def test_an_unsupported_content_type_is_a_415(emulator: TestClient):
    secret = (await (await mint(emulator)).json())["value"]
    response = await emulator.post(
        "/v1/realtime/calls", json={"sdp": "v=0"}, headers={"Authorization": f"Bearer {secret}"}
    )
    await assert_error(response, 415, "unsupported_content_type")


async def test_the_multipart_path_takes_the_standard_key_and_a_session(emulator: TestClient):
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("sdp", await offer_sdp(), content_type="application/sdp")
    form.add_field(
        "session",
        json.dumps(
            {"type": "realtime", "instructions": "Sideband-configured.", "audio": {"output": {"voice": "cedar"}}}
        ),
        content_type="application/json",
    )
    response = await emulator.post("/v1/realtime/calls", data=form, headers=KEY)
    assert response.status == 201, await response.text()
    call_id = response.headers["Location"].rsplit("/", 1)[-1]
    call = await (await emulator.get(f"/_emulator/calls/{call_id}")).json()
    assert call["session"]["instructions"] == "Sideband-configured."
    assert call["session"]["audio"]["output"]["voice"] == "cedar"


async def test_the_multipart_session_is_validated_like_any_other(emulator: TestClient):
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("sdp", await offer_sdp())
    form.add_field("session", json.dumps({"type": "realtime", "voice": "alloy"}))
    response = await emulator.post("/v1/realtime/calls", data=form, headers=KEY)
    await assert_error(response, 400, "beta_api_shape_disabled", "session.voice")


async def test_a_calls_fault_fails_the_next_call_only(emulator: TestClient):
    faults = await (await emulator.post("/_emulator/faults", json={"calls_status": 500, "count": 1})).json()
    assert faults["calls_status"] == 500
    secret = (await (await mint(emulator)).json())["value"]
    error = await assert_error(await post_sdp(emulator, secret, await offer_sdp()), 500, "emulator_fault")
    assert error["type"] == "server_error"
    assert (await post_sdp(emulator, secret, await offer_sdp())).status == 201


async def test_faults_can_be_listed_and_cleared(emulator: TestClient):
    await emulator.post("/_emulator/faults", json={"client_secrets_status": 503, "count": 2})
    await assert_error(await mint(emulator), 503, "emulator_fault")
    assert (await (await emulator.get("/_emulator/faults")).json())["count"] == 1
    await emulator.delete("/_emulator/faults")
    assert (await mint(emulator)).status == 200
    await assert_error(await emulator.post("/_emulator/faults", json={"calls_status": 200}), 400, "invalid_value")
    await assert_error(await emulator.post("/_emulator/faults", json={"typo": 1}), 400, "unknown_parameter")


# --- CORS, hang-up, sideband errors, controls -------------------------------------------------------------


async def test_a_cors_preflight_allows_the_browser_origin(emulator: TestClient):
    response = await emulator.options(
        "/v1/realtime/calls",
        headers={
            "Origin": BROWSER_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == BROWSER_ORIGIN
    allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert "POST" in response.headers["Access-Control-Allow-Methods"]


async def test_the_browser_can_read_location_and_errors_cross_origin(emulator: TestClient):
    secret = (await (await mint(emulator)).json())["value"]
    response = await post_sdp(emulator, secret, await offer_sdp(), Origin=BROWSER_ORIGIN)
    assert response.status == 201
    assert response.headers["Access-Control-Allow-Origin"] == BROWSER_ORIGIN
    assert "location" in response.headers["Access-Control-Expose-Headers"].lower()
    refused = await post_sdp(emulator, "ek_nope", await offer_sdp(), Origin=BROWSER_ORIGIN)
    assert refused.status == 401
    assert refused.headers["Access-Control-Allow-Origin"] == BROWSER_ORIGIN


async def test_hanging_up_needs_the_standard_key_and_a_known_call(emulator: TestClient):
    await assert_error(await emulator.post("/v1/realtime/calls/rtc_nope/hangup", headers=KEY), 404, "call_not_found")
    await assert_error(await emulator.post("/v1/realtime/calls/rtc_nope/hangup"), 401, "missing_api_key")


async def test_hanging_up_ends_the_call(emulator: TestClient):
    secret = (await (await mint(emulator)).json())["value"]
    call_id = (await post_sdp(emulator, secret, await offer_sdp())).headers["Location"].rsplit("/", 1)[-1]
    response = await emulator.post(f"/v1/realtime/calls/{call_id}/hangup", headers=KEY)
    assert response.status == 200
    call = await (await emulator.get(f"/_emulator/calls/{call_id}")).json()
    assert call["status"] == "ended" and call["end_reason"] == "hangup"
    # Idempotent: the browser may have gone first.
    assert (await emulator.post(f"/v1/realtime/calls/{call_id}/hangup", headers=KEY)).status == 200


async def test_the_sideband_refuses_unknown_calls_and_client_secrets(emulator: TestClient):
    await assert_error(await emulator.get("/v1/realtime?call_id=rtc_nope", headers=KEY), 404, "call_not_found")
    await assert_error(await emulator.get("/v1/realtime", headers=KEY), 400, "missing_required_parameter")
    secret = (await (await mint(emulator)).json())["value"]
    await assert_error(
        await emulator.get("/v1/realtime?call_id=rtc_x", headers={"Authorization": f"Bearer {secret}"}),
        401,
        "invalid_api_key",
    )


async def test_healthz_and_script_controls(emulator: TestClient):
    health = await (await emulator.get("/healthz")).json()
    assert health == {"status": "ok", "script": "default", "active_calls": 0}
    scripts = await (await emulator.get("/_emulator/scripts")).json()
    assert {"default", "tool_call", "multi_turn"} <= set(scripts["available"])
    switched = await (await emulator.post("/_emulator/script", json={"script": "tool_call"})).json()
    assert switched["active"] == "tool_call"
    await assert_error(await emulator.post("/_emulator/script", json={"script": "nope"}), 400, "invalid_value")
    await emulator.post("/_emulator/reset")
    assert (await (await emulator.get("/healthz")).json())["script"] == "default"


async def test_unknown_paths_get_an_openai_shaped_404(emulator: TestClient):
    await assert_error(await emulator.get("/v1/models"), 404, "not_found")


async def test_an_offer_whose_peer_never_connects_does_not_stay_a_live_call():
    app = create_app(connect_timeout=0.3)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        secret = (await (await mint(client)).json())["value"]
        call_id = (await post_sdp(client, secret, await offer_sdp())).headers["Location"].rsplit("/", 1)[-1]
        await asyncio.sleep(0.6)
        call = await (await client.get(f"/_emulator/calls/{call_id}")).json()
        assert call["status"] == "ended" and call["end_reason"] == "connect_timeout"
        assert (await (await client.get("/healthz")).json())["active_calls"] == 0


async def test_an_offer_without_media_sections_is_a_400(emulator: TestClient):
    secret = (await (await mint(emulator)).json())["value"]
    sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF\r\n"
    await assert_error(await post_sdp(emulator, secret, sdp), 400, "invalid_offer", "sdp")
    assert (await (await emulator.get("/_emulator/calls")).json())["calls"] == []
