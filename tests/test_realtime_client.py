"""OpenAIRealtimeWebRTCClient: the mint request, ag2.init, every frame it sends, reading, failures."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from voice.realtime import (
    OpenAIRealtimeWebRTCClient,
    RealtimeAuthError,
    RealtimeClientBase,
    RealtimeClientProtocol,
    RealtimeConfigError,
    RealtimeError,
    RealtimeProtocolError,
    RealtimeRateLimitedError,
    RealtimeRequestRejectedError,
    RealtimeTimeoutError,
    RealtimeUpstreamUnavailableError,
    SessionValidationError,
    get_client,
    register_realtime_client,
)
from voice.realtime import client as client_module
from voice.realtime.events import (
    Ag2InitFrame,
    AudioDelta,
    FunctionCall,
    InputAudioBufferDelta,
    InvalidFrame,
    RealtimeEvent,
    ResponseCreated,
    SessionUpdateEvent,
    validate_client_event,
)
from voice.realtime.session import reset_warnings

API_KEY = "sk-proj-TESTKEY-never-show-me-0123456789"
BASE = "https://api.test/v1"
MINT_URL = f"{BASE}/realtime/client_secrets"
LOGGER = logging.getLogger("tests.realtime.client")
EFFECTIVE_SESSION = {
    "type": "realtime",
    "object": "realtime.session",
    "id": "sess_ABC123",
    "model": "gpt-realtime",
    "output_modalities": ["audio"],
    "audio": {"input": {"turn_detection": {"type": "server_vad"}}, "output": {"voice": "marin"}},
}
MINTED = {"value": "ek_ephemeral_123", "expires_at": 1767225600, "session": EFFECTIVE_SESSION}


class FakeWebSocket:
    """The websocket shape the client needs: send_json, and iter_text ending when the socket closes.

    Every frame sent is checked against the client-event schemas (rule 4 of DESIGN.md).
    """

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.frames_taken = 0
        self._incoming: asyncio.Queue[str | None] = asyncio.Queue()

    async def send_json(self, data: dict[str, Any]) -> None:
        validate_client_event(data)
        self.sent.append(json.loads(json.dumps(data)))

    def feed(self, *frames: str | dict[str, Any]) -> None:
        for frame in frames:
            self._incoming.put_nowait(frame if isinstance(frame, str) else json.dumps(frame))

    def close(self) -> None:
        self._incoming.put_nowait(None)

    async def iter_text(self) -> AsyncIterator[str]:
        while True:
            frame = await self._incoming.get()
            if frame is None:
                return
            self.frames_taken += 1
            yield frame


def make_config(**top_level: Any) -> dict[str, Any]:
    return {
        "config_list": [{"model": "gpt-realtime", "voice": "marin", "api_key": API_KEY, "base_url": BASE}],
        **top_level,
    }


def make_client(websocket: FakeWebSocket, **top_level: Any) -> OpenAIRealtimeWebRTCClient:
    return OpenAIRealtimeWebRTCClient(llm_config=make_config(**top_level), websocket=websocket, logger=LOGGER)


async def spin(times: int = 20) -> None:
    """Let other tasks run (deterministic: no wall-clock waiting)."""
    for _ in range(times):
        await asyncio.sleep(0)


async def collect(client: OpenAIRealtimeWebRTCClient) -> list[RealtimeEvent]:
    return [event async for event in client.read_events()]


@pytest.fixture(autouse=True)
def fresh_warnings() -> Iterator[None]:
    reset_warnings()
    yield
    reset_warnings()


@pytest.fixture
def websocket() -> FakeWebSocket:
    return FakeWebSocket()


@pytest.fixture
def openai() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        router.post(MINT_URL).mock(return_value=httpx.Response(200, json=MINTED))
        yield router


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


# --- the mint request and ag2.init ------------------------------------------------------------------


async def test_connect_mints_a_client_secret_with_the_ga_request(
    websocket: FakeWebSocket, openai: respx.MockRouter
) -> None:
    client = make_client(websocket, expires_after_seconds=120)

    async with client.connect():
        pass

    request = openai.calls.last.request
    assert request.method == "POST"
    assert str(request.url) == MINT_URL
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["content-type"] == "application/json"
    assert "openai-beta" not in request.headers
    assert json.loads(request.content) == {
        "expires_after": {"anchor": "created_at", "seconds": 120},
        "session": {
            "type": "realtime",
            "model": "gpt-realtime",
            "output_modalities": ["audio"],
            "audio": {"input": {"turn_detection": {"type": "server_vad"}}, "output": {"voice": "marin"}},
        },
    }


async def test_connect_sends_ag2_init_with_the_secret_and_effective_session(
    websocket: FakeWebSocket, openai: respx.MockRouter
) -> None:
    client = make_client(websocket, session_id="4a6c1c1e-0b7e-4c3e-9f53-1f0b0f3a9d10")

    async with client.connect():
        pass

    assert websocket.sent == [
        {
            "type": "ag2.init",
            "protocol": 1,
            "session_id": "4a6c1c1e-0b7e-4c3e-9f53-1f0b0f3a9d10",
            "config": {
                "value": "ek_ephemeral_123",
                "expires_at": 1767225600,
                "model": "gpt-realtime",
                "calls_url": f"{BASE}/realtime/calls",
                "session": EFFECTIVE_SESSION,
            },
            "init": client.session_init_data(),
        }
    ]
    Ag2InitFrame.model_validate(websocket.sent[0])
    assert client.openai_session_id == "sess_ABC123"
    assert client.expires_at == 1767225600


async def test_without_a_session_id_ag2_init_gets_a_fresh_uuid(
    websocket: FakeWebSocket, openai: respx.MockRouter
) -> None:
    first, second = make_client(websocket), make_client(FakeWebSocket())

    async with first.connect():
        pass

    assert websocket.sent[0]["session_id"] == first.session_id
    assert len(first.session_id) == 36 and first.session_id != second.session_id


async def test_a_prebuilt_session_is_what_gets_minted(websocket: FakeWebSocket, openai: respx.MockRouter) -> None:
    prebuilt = {"type": "realtime", "model": "gpt-realtime-2", "instructions": "Be brief.",
                "audio": {"input": {"turn_detection": None}}}  # fmt: skip
    client = make_client(websocket, session=prebuilt)

    async with client.connect():
        pass

    assert json.loads(openai.calls.last.request.content)["session"] == prebuilt


async def test_a_legacy_sessions_base_url_mints_at_the_ga_path(
    websocket: FakeWebSocket, openai: respx.MockRouter, logs: pytest.LogCaptureFixture
) -> None:
    config = make_config()
    config["config_list"][0]["base_url"] = f"{BASE}/realtime/sessions"
    client = OpenAIRealtimeWebRTCClient(llm_config=config, websocket=websocket, logger=LOGGER)

    async with client.connect():
        pass

    assert str(openai.calls.last.request.url) == MINT_URL
    assert websocket.sent[0]["config"]["calls_url"] == f"{BASE}/realtime/calls"
    assert sum("deprecated" in r.getMessage() for r in logs.records) == 1


async def test_without_an_api_key_no_authorization_header_is_sent(
    websocket: FakeWebSocket, openai: respx.MockRouter
) -> None:
    config = make_config()
    del config["config_list"][0]["api_key"]

    async with OpenAIRealtimeWebRTCClient(llm_config=config, websocket=websocket).connect():
        pass

    assert "authorization" not in openai.calls.last.request.headers


async def test_an_older_client_secret_response_shape_is_accepted(websocket: FakeWebSocket) -> None:
    with respx.mock(assert_all_called=False) as router:
        router.post(MINT_URL).respond(200, json={"client_secret": {"value": "ek_old", "expires_at": 5}})
        client = make_client(websocket)
        async with client.connect():
            pass

    assert websocket.sent[0]["config"]["value"] == "ek_old"
    assert websocket.sent[0]["config"]["session"] == client.session


# --- failures ---------------------------------------------------------------------------------------

FAILURES: list[tuple[str, Any, type[RealtimeError], str, bool]] = [
    ("401", httpx.Response(401, json={"error": {"code": "invalid_api_key", "message": "Bad key"}}),
     RealtimeAuthError, "openai_auth_failed", False),
    ("403", httpx.Response(403, json={"error": {"message": "No access"}}), RealtimeAuthError, "openai_auth_failed",
     False),
    ("429", httpx.Response(429, headers={"retry-after": "7"}, json={"error": {"message": "Slow down"}}),
     RealtimeRateLimitedError, "openai_rate_limited", True),
    ("500", httpx.Response(500, text="oops"), RealtimeUpstreamUnavailableError, "openai_unavailable", True),
    ("503", httpx.Response(503), RealtimeUpstreamUnavailableError, "openai_unavailable", True),
    ("read timeout", httpx.ReadTimeout("timed out"), RealtimeTimeoutError, "openai_timeout", True),
    ("connect error", httpx.ConnectError("connection refused"), RealtimeUpstreamUnavailableError,
     "openai_unavailable", True),
    ("400 beta shape", httpx.Response(400, json={"error": {"code": "beta_api_shape_disabled", "message": "Use GA"}}),
     RealtimeRequestRejectedError, "openai_request_rejected", False),
    ("not json", httpx.Response(200, text="<html>proxy login</html>"), RealtimeProtocolError,
     "openai_protocol_error", False),
    ("no secret", httpx.Response(200, json={"session": {}}), RealtimeProtocolError, "openai_protocol_error", False),
    ("not an object", httpx.Response(200, json=[1, 2]), RealtimeProtocolError, "openai_protocol_error", False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "error_class", "code", "retryable"),
    [failure[1:] for failure in FAILURES],
    ids=[failure[0] for failure in FAILURES],
)
async def test_each_mint_failure_sends_ag2_error_then_raises_its_typed_error(
    websocket: FakeWebSocket, answer: Any, error_class: type[RealtimeError], code: str, retryable: bool
) -> None:
    client = make_client(websocket)
    with respx.mock(assert_all_called=False) as router:
        route = router.post(MINT_URL)
        if isinstance(answer, Exception):
            route.side_effect = answer
        else:
            route.return_value = answer

        with pytest.raises(error_class) as excinfo:
            async with client.connect():
                pytest.fail("the body must not run when connecting failed")

    error = excinfo.value
    assert (error.code, error.retryable) == (code, retryable)
    assert websocket.sent == [{"type": "ag2.error", "code": code, "message": error.message, "retryable": retryable}]
    assert error.message.endswith(".")  # a sentence a person can act on, not a bare status
    # ...with no internal URL, setting name or exception name: those go to `detail` (logs, record).
    for internal in ("://", "api.test", "base_url", "OPENAI_", "HTTP ", "ConnectError", "ReadTimeout", "Bad key"):
        assert internal not in error.message, (internal, error.message)
    assert MINT_URL in error.detail


@pytest.mark.parametrize(("answer", "words"), [
    (httpx.ConnectError("connection refused"), "The local OpenAI emulator is not running. Start it with `make run`"),
    (httpx.ReadTimeout("timed out"), "The local OpenAI emulator did not answer in time"),
    (httpx.Response(503), "The local OpenAI emulator is unavailable"),
], ids=["not running", "timeout", "5xx"])
async def test_when_the_emulator_stands_in_for_openai_failures_name_it(websocket: FakeWebSocket, answer: Any,
                                                                       words: str) -> None:
    client = make_client(websocket, emulator=True)
    with respx.mock(assert_all_called=False) as router:
        route = router.post(MINT_URL)
        if isinstance(answer, Exception):
            route.side_effect = answer
        else:
            route.return_value = answer
        with pytest.raises(RealtimeError) as excinfo:
            async with client.connect():
                pass
    assert excinfo.value.message.startswith(words)
    assert "OpenAI could not be reached" not in excinfo.value.message
    assert websocket.sent[0]["message"] == excinfo.value.message


async def test_rate_limited_error_carries_retry_after(websocket: FakeWebSocket) -> None:
    with respx.mock(assert_all_called=False) as router:
        router.post(MINT_URL).respond(429, headers={"retry-after": "7"})
        with pytest.raises(RealtimeRateLimitedError) as excinfo:
            async with make_client(websocket).connect():
                pass

    assert excinfo.value.retry_after == 7.0


async def test_a_rejected_request_keeps_openais_code_and_message_as_detail(websocket: FakeWebSocket) -> None:
    with respx.mock(assert_all_called=False) as router:
        router.post(MINT_URL).respond(
            400, json={"error": {"code": "beta_api_shape_disabled", "message": "The beta shape is gone."}}
        )
        with pytest.raises(RealtimeRequestRejectedError) as excinfo:
            async with make_client(websocket).connect():
                pass

    # OpenAI's words name fields and codes: they are for the administrator (logs, the session's record).
    assert "beta_api_shape_disabled" in excinfo.value.detail
    assert "The beta shape is gone." in excinfo.value.detail
    assert "rejected this voice configuration" in excinfo.value.message
    assert excinfo.value.upstream_code == "beta_api_shape_disabled"


async def test_the_whole_mint_is_bounded_by_the_configured_timeout(websocket: FakeWebSocket) -> None:
    never = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        await never.wait()
        return httpx.Response(200, json=MINTED)

    with respx.mock(assert_all_called=False) as router:
        router.post(MINT_URL).mock(side_effect=hang)
        with pytest.raises(RealtimeTimeoutError) as excinfo:
            async with make_client(websocket, timeout=0.05).connect():
                pass

    assert "within 0.05 s" in excinfo.value.detail

    assert websocket.sent[0]["code"] == "openai_timeout"


async def test_a_closed_browser_does_not_hide_the_mint_failure() -> None:
    class GoneWebSocket(FakeWebSocket):
        async def send_json(self, data: dict[str, Any]) -> None:
            raise ConnectionError("socket closed")

    with respx.mock(assert_all_called=False) as router:
        router.post(MINT_URL).respond(503)
        with pytest.raises(RealtimeUpstreamUnavailableError):
            async with make_client(GoneWebSocket()).connect():
                pass


async def test_the_api_key_never_appears_in_frames_errors_or_logs(logs: pytest.LogCaptureFixture) -> None:
    echoed = {"error": {"code": "invalid_api_key", "message": f"Incorrect API key provided: {API_KEY}."}}
    masked = {"error": {"code": "invalid_api_key", "message": "Incorrect API key provided: sk-proj-****6789."}}
    answers: list[Any] = [
        httpx.Response(200, json=MINTED),
        httpx.Response(401, json=echoed),
        httpx.Response(401, json=masked),
        httpx.Response(400, json={"error": {"code": API_KEY, "message": API_KEY}}),
        httpx.Response(500, text=API_KEY),
        httpx.ConnectError(f"failed for {API_KEY}"),
        httpx.ReadTimeout("slow"),
    ]
    seen: list[str] = []
    for answer in answers:
        websocket = FakeWebSocket()
        client = make_client(websocket, temperature=0.7)
        seen.append(repr(client))
        with respx.mock(assert_all_called=False) as router:
            route = router.post(MINT_URL)
            if isinstance(answer, Exception):
                route.side_effect = answer
            else:
                route.return_value = answer
            try:
                async with client.connect():
                    await client.session_update({"instructions": "hi"})
            except RealtimeError as exc:
                seen.extend([str(exc), repr(exc), exc.message, str(exc.upstream_code)])
        seen.extend(json.dumps(frame) for frame in websocket.sent)

    seen.extend(record.getMessage() for record in logs.records)
    seen.append(logs.text)
    assert seen
    for text in seen:
        assert API_KEY not in text
        assert "TESTKEY" not in text
        assert "****6789" not in text


# --- what the client sends ---------------------------------------------------------------------------


async def test_send_function_result_sends_the_output_item_then_response_create(websocket: FakeWebSocket) -> None:
    await make_client(websocket).send_function_result("call_42", '{"ok": true}')

    assert websocket.sent == [
        {"type": "conversation.item.create",
         "item": {"type": "function_call_output", "call_id": "call_42", "output": '{"ok": true}'}},
        {"type": "response.create"},
    ]  # fmt: skip


async def test_send_text_without_a_response_in_progress_sends_no_cancel(websocket: FakeWebSocket) -> None:
    await make_client(websocket).send_text(role="user", text="Hello")

    assert websocket.sent == [
        {"type": "conversation.item.create",
         "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello"}]}},
        {"type": "response.create"},
    ]  # fmt: skip


async def test_send_text_cancels_only_while_a_response_is_in_progress(
    websocket: FakeWebSocket, openai: respx.MockRouter
) -> None:
    client = make_client(websocket)
    async with client.connect():
        websocket.sent.clear()
        websocket.feed({"type": "response.created", "response": {"id": "resp_1", "status": "in_progress"}})
        events = client.read_events()
        assert isinstance(await anext(events), ResponseCreated)

        await client.send_text(role="user", text="Stop, something else")
        assert [frame["type"] for frame in websocket.sent] == [
            "response.cancel", "conversation.item.create", "response.create",
        ]  # fmt: skip

        websocket.sent.clear()
        await client.send_text(role="user", text="Asked once")  # the cancel was already requested
        assert [frame["type"] for frame in websocket.sent] == ["conversation.item.create", "response.create"]

        websocket.sent.clear()
        websocket.feed(
            {"type": "response.created", "response": {"id": "resp_2"}},
            {"type": "response.done", "response": {"id": "resp_2", "status": "completed"}},
        )
        await anext(events)
        await anext(events)
        await client.send_text(role="user", text="After the response ended")
        assert [frame["type"] for frame in websocket.sent] == ["conversation.item.create", "response.create"]
        await events.aclose()


async def test_send_text_as_assistant_uses_ga_output_text(websocket: FakeWebSocket) -> None:
    await make_client(websocket).send_text(role="assistant", text="Earlier I said…")

    assert websocket.sent[0]["item"]["content"] == [{"type": "output_text", "text": "Earlier I said…"}]


async def test_truncate_audio_sends_conversation_item_truncate(websocket: FakeWebSocket) -> None:
    await make_client(websocket).truncate_audio(audio_end_ms=1500, content_index=0, item_id="item_9")

    assert websocket.sent == [
        {"type": "conversation.item.truncate", "content_index": 0, "item_id": "item_9", "audio_end_ms": 1500}
    ]


async def test_session_update_sends_the_ga_shape(websocket: FakeWebSocket) -> None:
    tool = {"type": "function", "name": "calculator", "description": "Math", "parameters": {"type": "object"}}

    await make_client(websocket).session_update({"instructions": "Be brief.", "tools": [tool]})

    assert websocket.sent == [
        {"type": "session.update", "session": {"type": "realtime", "instructions": "Be brief.", "tools": [tool]}}
    ]


@pytest.mark.parametrize(
    "options", [{"voice": "alloy"}, {"temperature": 0.8}, {"modalities": ["text"]}, {"instructionz": "typo"}]
)
async def test_session_update_refuses_beta_or_unknown_fields_and_sends_nothing(
    websocket: FakeWebSocket, options: dict[str, Any]
) -> None:
    with pytest.raises(SessionValidationError):
        await make_client(websocket).session_update(options)

    assert websocket.sent == []


def test_session_init_data_returns_ga_session_updates_only(websocket: FakeWebSocket) -> None:
    init = make_client(websocket, temperature=0.9).session_init_data()

    assert init == [
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "output_modalities": ["audio"],
                "audio": {"input": {"turn_detection": {"type": "server_vad"}}, "output": {"voice": "marin"}},
            },
        }
    ]
    for event in init:
        SessionUpdateEvent.model_validate(event)
        assert "temperature" not in json.dumps(event)


def test_session_init_data_follows_a_prebuilt_session(websocket: FakeWebSocket) -> None:
    prebuilt = {"type": "realtime", "output_modalities": ["text"], "audio": {"input": {"turn_detection": None}}}

    init = make_client(websocket, session=prebuilt).session_init_data()

    assert init[0]["session"] == prebuilt


async def test_send_audio_queues_an_input_audio_delta_and_sends_nothing(websocket: FakeWebSocket) -> None:
    client = make_client(websocket)

    await client.send_audio("AAAA")

    event = await client.get_event()
    assert isinstance(event, InputAudioBufferDelta) and event.delta == "AAAA"
    assert websocket.sent == []


# --- reading ----------------------------------------------------------------------------------------


async def test_read_events_yields_typed_events_and_ends_when_the_socket_closes(
    websocket: FakeWebSocket, openai: respx.MockRouter
) -> None:
    client = make_client(websocket)
    websocket.feed(
        {"type": "response.output_audio.delta", "delta": "AA=="},
        {"type": "response.output_item.done",
         "item": {"type": "function_call", "name": "f", "call_id": "c1", "arguments": "{\"x\": 1}"}},
    )  # fmt: skip
    websocket.close()

    async with client.connect():
        received = await collect(client)

    assert [type(event) for event in received] == [AudioDelta, FunctionCall]
    assert received[1].arguments == {"x": 1}  # type: ignore[attr-defined]


async def test_bad_frames_are_surfaced_answered_and_reading_goes_on(
    websocket: FakeWebSocket, openai: respx.MockRouter
) -> None:
    client = make_client(websocket)
    websocket.feed(
        "{not json",
        "[1, 2]",
        {"no_type": True},
        {"type": "response.output_item.done",
         "item": {"type": "function_call", "name": "f", "call_id": "c1", "arguments": "{oops"}},
        {"type": "response.output_audio.delta", "delta": 5},
        {"type": "response.output_audio.delta", "delta": "AA=="},
    )  # fmt: skip
    websocket.close()

    async with client.connect():
        websocket.sent.clear()
        received = await collect(client)

    assert [getattr(event, "code", None) for event in received[:5]] == [
        "invalid_json", "not_an_object", "missing_type", "invalid_function_arguments", "invalid_event",
    ]  # fmt: skip
    assert all(isinstance(event, InvalidFrame) for event in received[:5])
    assert isinstance(received[5], AudioDelta)
    # Only frames the browser got wrong are answered; OpenAI's content is not the browser's fault.
    assert [(frame["type"], frame["code"], frame["retryable"]) for frame in websocket.sent] == [
        ("ag2.error", "invalid_frame", False)
    ] * 3


async def test_a_socket_that_fails_mid_read_ends_the_events_quietly(openai: respx.MockRouter) -> None:
    class BrokenWebSocket(FakeWebSocket):
        async def iter_text(self) -> AsyncIterator[str]:
            yield json.dumps({"type": "session.created", "session": {"id": "sess_1"}})
            raise ConnectionResetError("peer went away")

    client = make_client(BrokenWebSocket())

    async with client.connect():
        received = await collect(client)

    assert [event.type for event in received] == ["session.created"]


async def test_read_events_after_the_stream_ended_returns_at_once(
    websocket: FakeWebSocket, openai: respx.MockRouter
) -> None:
    client = make_client(websocket)
    websocket.close()

    async with client.connect():
        assert await collect(client) == []
        assert await collect(client) == []


async def test_a_full_queue_stops_the_reader_until_events_are_read(
    websocket: FakeWebSocket, openai: respx.MockRouter
) -> None:
    client = make_client(websocket, event_queue_size=2)
    websocket.feed(*({"type": "response.output_audio.delta", "delta": str(n)} for n in range(6)))
    websocket.close()

    async with client.connect():
        await spin()
        # Two events queued, one taken off the socket and waiting for room: backpressure.
        assert websocket.frames_taken == 3
        received = await collect(client)

    assert [event.delta for event in received] == ["0", "1", "2", "3", "4", "5"]  # type: ignore[attr-defined]


async def test_add_event_waits_while_the_queue_is_full(websocket: FakeWebSocket) -> None:
    client = make_client(websocket, event_queue_size=1)
    await client.add_event(RealtimeEvent(type="a"))

    blocked = asyncio.create_task(client.add_event(RealtimeEvent(type="b")))
    await spin()
    assert not blocked.done()

    assert (await client.get_event()).type == "a"  # type: ignore[union-attr]
    await blocked
    assert (await client.get_event()).type == "b"  # type: ignore[union-attr]


async def test_nothing_is_left_running_after_connect_exits(websocket: FakeWebSocket, openai: respx.MockRouter) -> None:
    client = make_client(websocket, event_queue_size=1)
    websocket.feed(*({"type": "x", "n": n} for n in range(5)))  # the reader ends up blocked on a full queue

    async with client.connect():
        await spin()

    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert await collect(client)  # what was read stays readable, then the stream ends


async def test_nothing_is_left_running_when_the_body_raises(websocket: FakeWebSocket, openai: respx.MockRouter) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with make_client(websocket).connect():
            raise RuntimeError("boom")

    assert asyncio.all_tasks() == {asyncio.current_task()}


# --- configuration, factory, registry ----------------------------------------------------------------


@pytest.mark.parametrize(
    "top_level",
    [
        {"expires_after_seconds": 5},
        {"expires_after_seconds": 7201},
        {"expires_after_seconds": "600"},
        {"event_queue_size": 0},
        {"timeout": 0},
        {"timeout": True},
        {"session": {"voice": "alloy"}},
    ],
)
def test_unusable_llm_config_values_are_config_errors(websocket: FakeWebSocket, top_level: dict[str, Any]) -> None:
    with pytest.raises(RealtimeConfigError):
        make_client(websocket, **top_level)


def test_the_constructor_keeps_the_seed_reading_of_llm_config(websocket: FakeWebSocket) -> None:
    client = OpenAIRealtimeWebRTCClient(
        llm_config={"config_list": [{"model": "gpt-realtime"}], "temperature": 0.5}, websocket=websocket
    )

    assert client.model == "gpt-realtime"
    assert client.session["audio"]["output"]["voice"] == "alloy"
    assert client.api_base == "https://api.openai.com/v1"
    assert client.logger is logging.getLogger("voice.realtime.webrtc")
    assert isinstance(client, RealtimeClientProtocol)
    assert isinstance(client, RealtimeClientBase)


@pytest.mark.parametrize("config", [{"model": "m"}, {"model": "m", "api_type": "openai"}])
def test_get_factory_builds_a_client_for_openai_with_only_a_websocket(
    websocket: FakeWebSocket, config: dict[str, Any]
) -> None:
    factory = OpenAIRealtimeWebRTCClient.get_factory({"config_list": [config]}, LOGGER, websocket=websocket)

    assert factory is not None
    client = factory()
    assert isinstance(client, OpenAIRealtimeWebRTCClient) and client.logger is LOGGER


@pytest.mark.parametrize(
    ("llm_config", "kwargs"),
    [
        ({"config_list": [{"model": "m", "api_type": "gemini"}]}, {"websocket": "ws"}),
        ({"config_list": [{"model": "m"}]}, {}),
        ({"config_list": [{"model": "m"}]}, {"websocket": "ws", "other": 1}),
        ({"config_list": [{"model": "m"}]}, {"audio_adapter": "x"}),
        ({}, {"websocket": "ws"}),
    ],
)
def test_get_factory_returns_none_otherwise(llm_config: dict[str, Any], kwargs: dict[str, Any]) -> None:
    assert OpenAIRealtimeWebRTCClient.get_factory(llm_config, LOGGER, **kwargs) is None


def test_get_client_returns_the_webrtc_client_by_default(websocket: FakeWebSocket) -> None:
    client = get_client(make_config(), LOGGER, websocket=websocket)

    assert isinstance(client, OpenAIRealtimeWebRTCClient)


def test_get_client_says_what_was_given_and_what_is_supported() -> None:
    config = {"config_list": [{"model": "gemini-live", "api_type": "google", "api_key": API_KEY}]}

    with pytest.raises(ValueError) as excinfo:
        get_client(config, LOGGER, websocket=object(), extra=1)

    message = str(excinfo.value)
    assert "api_type='google'" in message and "model='gemini-live'" in message
    assert "['extra', 'websocket']" in message
    assert "OpenAIRealtimeWebRTCClient (api_type 'openai', 'azure' or absent" in message
    assert API_KEY not in message


@pytest.fixture
def registry() -> Iterator[None]:
    saved = list(client_module._registry)
    yield
    client_module._registry[:] = saved


def test_a_registered_client_is_tried_in_registration_order(registry: None) -> None:
    @register_realtime_client
    class EchoClient:
        supports = "api_type 'echo'"

        @classmethod
        def get_factory(cls, llm_config: dict[str, Any], logger: logging.Logger, **kwargs: Any) -> Any:
            if llm_config["config_list"][0].get("api_type") == "echo":
                return lambda: "echo client"
            return None

    register_realtime_client(EchoClient)  # twice is once

    assert get_client({"config_list": [{"model": "m", "api_type": "echo"}]}, LOGGER) == "echo client"
    assert client_module.registered_clients().count(EchoClient) == 1
    with pytest.raises(ValueError, match="EchoClient \\(api_type 'echo'\\)"):
        get_client({"config_list": [{"model": "m", "api_type": "nope"}]}, LOGGER)


# --- rule 1 ---------------------------------------------------------------------------------------


def test_the_realtime_library_and_the_agent_import_no_django() -> None:
    code = (
        "import sys\n"
        "import voice.realtime, voice.realtime.events, voice.realtime.session, voice.realtime.webrtc\n"
        "import voice.agent\n"
        "loaded = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))\n"
        "print(loaded)\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, env={"PYTHONPATH": str(root)}
    )

    assert result.returncode == 0, result.stdout + result.stderr
