"""create_call: the multipart request, what it returns, every failure as a typed error, the key never shown;
and a real call created against the emulator."""

from __future__ import annotations

import asyncio
import json
import logging
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import httpx
import pytest
import respx

from tests.server_mode import SESSION, BrowserPeer, running_emulator
from voice.realtime import (
    CreatedCall,
    RealtimeAuthError,
    RealtimeConfigError,
    RealtimeError,
    RealtimeProtocolError,
    RealtimeRateLimitedError,
    RealtimeRequestRejectedError,
    RealtimeTimeoutError,
    RealtimeUpstreamUnavailableError,
    create_call,
    hangup,
)

API_KEY = "sk-proj-CALLSKEY-never-show-me-0123456789"
BASE = "https://api.test/v1"
CALLS_URL = f"{BASE}/realtime/calls"
OFFER = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
ANSWER = "v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
CREATED = httpx.Response(201, text=ANSWER, headers={"Location": "/v1/realtime/calls/rtc_abc123"})


def multipart_parts(request: httpx.Request) -> dict[str, tuple[str, bytes]]:
    """name -> (content type, body) of a multipart/form-data request."""
    raw = b"Content-Type: " + request.headers["content-type"].encode() + b"\r\n\r\n" + request.content
    message = BytesParser(policy=HTTP).parsebytes(raw)
    return {
        part.get_param("name", header="content-disposition"): (part.get_content_type(), part.get_payload(decode=True))
        for part in message.iter_parts()
    }


async def test_the_offer_and_session_go_as_multipart_with_the_standard_key() -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        route = router.post(CALLS_URL).mock(return_value=CREATED)
        created = await create_call(BASE, API_KEY, OFFER, SESSION)

    assert created == CreatedCall(ANSWER, "rtc_abc123")
    answer, call_id = created  # unpacks as a pair
    assert (answer, call_id) == (ANSWER, "rtc_abc123")
    request = route.calls.last.request
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert "model" not in request.url.params  # GA: the model is in the session
    parts = multipart_parts(request)
    assert set(parts) == {"sdp", "session"}
    assert parts["sdp"] == ("application/sdp", OFFER.encode())
    assert parts["session"][0] == "application/json"
    assert json.loads(parts["session"][1])["model"] == "gpt-realtime"


async def test_another_provider_authenticates_through_the_auth_hook_and_is_redacted_too() -> None:
    azure_key = "azure-KEY-0123456789abcdef"

    async def azure_auth() -> dict[str, str]:
        return {"api-key": azure_key}

    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        route = router.post(CALLS_URL).mock(
            side_effect=[CREATED, httpx.Response(400, json={"error": {"message": f"bad key {azure_key}"}})]
        )
        await create_call(BASE, None, OFFER, SESSION, auth=azure_auth)
        with pytest.raises(RealtimeRequestRejectedError) as excinfo:
            await create_call(BASE, None, OFFER, SESSION, auth=azure_auth)

    assert route.calls[0].request.headers["api-key"] == azure_key
    assert "authorization" not in route.calls[0].request.headers
    assert azure_key not in str(excinfo.value) and "[redacted]" in str(excinfo.value)


FAILURES: list[tuple[str, Any, type[RealtimeError], str, bool]] = [
    ("401", httpx.Response(401, json={"error": {"code": "invalid_api_key", "message": f"Bad key {API_KEY}"}}),
     RealtimeAuthError, "openai_auth_failed", False),
    ("403", httpx.Response(403, json={"error": {"message": "No access"}}), RealtimeAuthError, "openai_auth_failed",
     False),
    ("429", httpx.Response(429, headers={"retry-after": "3"}), RealtimeRateLimitedError, "openai_rate_limited", True),
    ("500", httpx.Response(500, text=API_KEY), RealtimeUpstreamUnavailableError, "openai_unavailable", True),
    ("read timeout", httpx.ReadTimeout("slow"), RealtimeTimeoutError, "openai_timeout", True),
    ("connect error", httpx.ConnectError(f"refused {API_KEY}"), RealtimeUpstreamUnavailableError,
     "openai_unavailable", True),
    ("400", httpx.Response(400, json={"error": {"code": "invalid_value", "message": "Bad voice"}}),
     RealtimeRequestRejectedError, "openai_request_rejected", False),
    ("no answer", httpx.Response(201, text="<html>", headers={"Location": "/v1/realtime/calls/rtc_1"}),
     RealtimeProtocolError, "openai_protocol_error", False),
    ("no location", httpx.Response(201, text=ANSWER), RealtimeProtocolError, "openai_protocol_error", False),
    ("bad location", httpx.Response(201, text=ANSWER, headers={"Location": "/v1/realtime/calls/rtc_1%2F..%2Fhangup"}),
     RealtimeProtocolError, "openai_protocol_error", False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "error_class", "code", "retryable"),
    [failure[1:] for failure in FAILURES],
    ids=[failure[0] for failure in FAILURES],
)
async def test_each_failure_is_a_typed_error_with_a_stable_code_and_no_key(
    answer: Any, error_class: type[RealtimeError], code: str, retryable: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="voice")
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        route = router.post(CALLS_URL)
        if isinstance(answer, Exception):
            route.side_effect = answer
        else:
            route.return_value = answer
        with pytest.raises(error_class) as excinfo:
            await create_call(BASE, API_KEY, OFFER, SESSION)

    error = excinfo.value
    assert (error.code, error.retryable) == (code, retryable)
    assert error.message.endswith(".")
    for text in (str(error), repr(error), error.message, str(error.upstream_code), caplog.text):
        assert "CALLSKEY" not in text


async def test_the_whole_request_is_bounded_by_the_timeout() -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await asyncio.Event().wait()
        return CREATED

    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        router.post(CALLS_URL).mock(side_effect=hang)
        with pytest.raises(RealtimeTimeoutError, match=r"within 0\.05 s"):
            await create_call(BASE, API_KEY, OFFER, SESSION, timeout=0.05)


@pytest.mark.parametrize(
    ("offer", "session", "error_class"),
    [
        ("hello", SESSION, RealtimeRequestRejectedError),
        (OFFER, {"type": "realtime", "voice": "alloy"}, RealtimeConfigError),
        (OFFER, {"type": "realtime"}, RealtimeConfigError),
    ],
    ids=["not an sdp offer", "beta session", "no model"],
)
async def test_bad_input_is_refused_before_any_request(offer: str, session: dict[str, Any], error_class: type) -> None:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        route = router.post(CALLS_URL).mock(return_value=CREATED)
        with pytest.raises(error_class):
            await create_call(BASE, API_KEY, offer, session)
    assert not route.called


async def test_a_real_call_created_on_the_emulator_connects_and_hangs_up() -> None:
    async with running_emulator() as emulator:
        peer = BrowserPeer()
        answer, call_id = await create_call(emulator.base, API_KEY, await peer.offer(), SESSION, timeout=10)
        await peer.answer(answer)  # the data channel opens: the call is real
        call = await emulator.call(call_id)
        assert call["status"] == "active" and call["session"]["instructions"] == SESSION["instructions"]

        assert await hangup(emulator.base, API_KEY, call_id)
        assert (await emulator.call(call_id))["end_reason"] == "hangup"
        assert not await hangup(emulator.base, API_KEY, "../../etc")  # never put into a URL
        await peer.close()
