"""The emulator's HTTP surface: OpenAI's GA Realtime endpoints plus test controls.

OpenAI endpoints (under ``/v1``, the project's ``OPENAI_BASE_URL`` points here):

* ``POST /v1/realtime/client_secrets``  standard key; ``{"expires_after", "session"}`` -> ``{"value": "ek_..."}``
* ``POST /v1/realtime/calls``  ``application/sdp`` with ``ek_...``, or multipart ``sdp`` + ``session``
  with the standard key (both parts required; the session is validated like any other) -> 201, answer
  SDP, ``Location: /v1/realtime/calls/rtc_...``
* ``GET  /v1/realtime?call_id=rtc_...``  sideband WebSocket (standard key): ``session.created`` on attach,
  then every server event the data channel gets; accepts client events like the data channel. Closed
  (code 1000) when the call ends.
* ``POST /v1/realtime/calls/{call_id}/hangup``  standard key -> 200
* beta endpoints (``/v1/realtime/sessions``, ``POST /v1/realtime``, header ``OpenAI-Beta: realtime=v1``)
  -> 400 ``beta_api_shape_disabled``

A "standard key" is any bearer token starting with ``sk-`` unless ``create_app(api_key=...)`` names one.

Azure OpenAI endpoints (the same, under ``/openai/v1``, as a resource ``https://<res>.openai.azure.com``
serves them): ``POST /openai/v1/realtime/client_secrets``, ``POST /openai/v1/realtime/calls`` (with
``?webrtcfilter=on`` the browser's data channel then carries only ``AZURE_FILTERED_EVENTS``),
``GET /openai/v1/realtime?call_id=`` (sideband), ``POST /openai/v1/realtime/calls/{id}/hangup``.
Authentication as Azure's: an ``api-key`` header (any 32+ letters and digits unless
``create_app(azure_api_key=...)`` names one) or ``Authorization: Bearer <Entra ID token>`` (any
JWT-shaped token); the client secret (``ek_...``) on ``/calls`` only. A refusal is Azure's 401 body
(``{"error": {"code": "401", "message": "Access denied ..."}}``). The session's ``model`` is a
*deployment name*: deployments are ``create_app(azure_deployments={name: model})`` plus, by default,
one per realtime model named after it; another name is Azure's 404 ``DeploymentNotFound``. With
``create_app(azure_webrtc=False)`` (or the control below) the resource is in a region without realtime
calls: every Azure realtime path answers Azure's plain 404.

GPT-Live endpoints (``realtime_emulator/live.py``; docs/gpt-live.md):

* ``POST /v1/live/sessions``  standard key; JSON ``{"session": MediaSessionConfig, "transport": {"type":
  "webrtc", "sdp"}}``, strict (an unknown field is 400 ``unknown_parameter``; a query string, or a body that
  is not JSON, is refused) -> 201 ``{"session": {"id": "live_..."}, "transport": {"type": "webrtc", "sdp"}}``
* ``GET  /v1/live/sessions/{id}/attach``  the sideband WebSocket (standard key; ``?graceful_close=``
  accepted): the replayed ``session.started``, every server event, the audio copies; closed (1000) after
  ``session.closed``. An unknown or ended session: 404 ``session_id_not_found``.
* ``POST /v1/live/sessions/{id}/hangup``  -> 200, empty body; unknown: 404 ``session_id_not_found``
* ``POST /_emulator/live`` ``{"usage_interval"?: s, "delegation_wait"?: s, "audio_copies"?: bool}``: how
  new GPT-Live sessions report usage, how long a delegation waits for its answer, whether sidebands get
  audio copies (``GET`` shows them; reset restores the defaults).

Test controls (no auth; the emulator listens on loopback):

* ``GET  /healthz`` -> ``{"status": "ok", "script": ..., "active_calls": n}``
* ``GET  /_emulator/calls`` -> ``{"calls": [summary...]}``; ``GET /_emulator/calls/{id}`` adds
  ``server_events`` and ``items``. A summary holds ``client_events`` (``{"source", "received_at", "event"}``).
* ``POST /_emulator/calls/{id}/turn`` ``{"text"?: str}`` -> 202 ``{"item_id"}``: a user turn without
  microphone energy (409 while a turn or response is in progress)
* ``POST /_emulator/calls/{id}/stream`` ``{"turns": n, "rate"?: events/s}`` -> 202 (status below): the
  next ``n`` user turns of the script back to back with no pauses (benchmarks), each sideband of the
  call sending at most ``rate`` events a second (absent or null: as fast as it can). The events are
  those of the same turns at the script's pace; a tool call still waits for the client's answer. 409
  while a turn, response or stream is in progress. ``GET`` -> ``{"turns", "turns_done", "rate",
  "running", "error", "events_emitted", "sideband_events_sent"}``.
* ``POST /_emulator/faults`` ``{"calls_status"?: 4xx|5xx, "client_secrets_status"?: ..., "count"?: 1,
  "expired_secrets"?: n, "message"?: str}``: the next ``count`` calls / mints fail with that status;
  the next ``n`` minted secrets are born expired. ``GET`` shows, ``DELETE`` clears.
* ``POST /_emulator/expire/{ek}``: expire one secret now.
* ``POST /_emulator/calls/{id}/sideband/drop`` ``{"mode"?: "abort" | "close", "refuse"?: n, "status"?: 5xx}``:
  cut every sideband socket of the call (``abort``: the TCP connection is cut without a close frame, like
  a network failure; ``close``: close frame 1011) while the call goes on; the next ``n`` sideband
  attaches of that call are refused with ``status`` (default 503). -> ``{"dropped": k, "refuse": n}``
* ``GET /_emulator/scripts``; ``POST /_emulator/script`` ``{"script": name}``: script of new calls
  (``"call_id"`` too: switch that live call, restarting its turns).
* ``POST /_emulator/reset``: hang up every call, forget secrets, calls and faults, restore the script.
* ``POST /_emulator/azure`` ``{"webrtc"?: bool, "deployments"?: {name: model}}``: Azure's region support
  and extra deployments (``GET`` shows them; reset restores the defaults).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from .live import LiveCall, LiveError
from .peer import EmulatedCall
from .script import Script, available_scripts, load_script
from .validation import (
    MODEL_PATTERN,
    EmulatorError,
    beta_shape,
    default_session,
    new_id,
    validate_client_secret_request,
    validate_session,
)

logger = logging.getLogger("realtime_emulator")

MAX_REMEMBERED_CALLS = 200
CORS_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, api-key",
    # Without this the browser cannot read Location, which is where the call id is.
    "Access-Control-Expose-Headers": "Location",
    "Access-Control-Max-Age": "600",
}


# What Azure puts on the browser's data channel with ?webrtcfilter=on (as its WebRTC guide lists them).
AZURE_FILTERED_EVENTS = frozenset({
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "output_audio_buffer.started",
    "output_audio_buffer.stopped",
    "conversation.item.input_audio_transcription.completed",
    "conversation.item.added",
    "conversation.item.created",
    "response.output_text.delta",
    "response.output_text.done",
    "response.output_audio_transcript.delta",
    "response.output_audio_transcript.done",
})
AZURE_KEY_PATTERN = re.compile(r"^[A-Za-z0-9]{32,}$")
ENTRA_TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
AZURE_ACCESS_DENIED = (
    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an "
    "active subscription and use a correct regional API endpoint for your resource."
)
AZURE_DEPLOYMENT_NOT_FOUND = (
    "The API deployment for this resource does not exist. If you created the deployment within the last 5 "
    "minutes, please wait a moment and try again."
)


class AzureError(Exception):
    """An Azure-shaped refusal: ``{"error": {"code", "message"}}`` (not OpenAI's four fields)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> web.Response:
        return web.json_response({"error": {"code": self.code, "message": self.message}}, status=self.status)


@dataclass
class ClientSecret:
    value: str
    expires_at: int
    session: dict[str, Any]
    azure: bool = False


@dataclass(eq=False)
class SidebandSocket:
    """An open sideband connection: its socket and the TCP transport under it (to cut it)."""

    ws: web.WebSocketResponse
    transport: asyncio.BaseTransport | None


@dataclass
class SidebandFaults:
    """Per call: how many coming sideband attaches to refuse, and with which status."""

    refuse: int = 0
    status: int = 503


@dataclass
class Faults:
    calls_status: int | None = None
    client_secrets_status: int | None = None
    count: int = 0
    expired_secrets: int = 0
    message: str = "The emulator was told to fail this request."

    def take(self, endpoint: str) -> int | None:
        status = self.calls_status if endpoint == "calls" else self.client_secrets_status
        if status is None or self.count <= 0:
            return None
        self.count -= 1
        if self.count == 0:
            self.calls_status = self.client_secrets_status = None
        return status


@dataclass
class LiveSettings:
    """How new GPT-Live sessions behave where the reference knows no number (docs/gpt-live.md)."""

    usage_interval: float = 60.0  # Azure: "approximately once per minute"
    delegation_wait: float = 30.0
    audio_copies: bool = True


class EmulatorState:
    """Everything one emulator instance knows: secrets, calls, faults and the active script."""

    def __init__(self, *, api_key: str | None, script: Script, max_call_seconds: float, connect_timeout: float,
                 azure_api_key: str | None = None, azure_deployments: dict[str, str] | None = None,
                 azure_webrtc: bool = True) -> None:
        self.api_key = api_key
        self.azure_api_key = azure_api_key
        self.default_azure_deployments = dict(azure_deployments or {})
        self.azure_deployments = dict(self.default_azure_deployments)
        self.default_azure_webrtc = azure_webrtc
        self.azure_webrtc = azure_webrtc
        self.connect_timeout = connect_timeout
        self.default_script = script
        self.script = script
        self.max_call_seconds = max_call_seconds
        self.secrets: dict[str, ClientSecret] = {}
        self.calls: OrderedDict[str, EmulatedCall] = OrderedDict()
        self.faults = Faults()
        # Open sideband sockets per call (to cut them on request) and refusals still to serve.
        self.sideband_sockets: dict[str, set[SidebandSocket]] = {}
        self.sideband_faults: dict[str, SidebandFaults] = {}
        self.live = LiveSettings()

    def is_standard_key(self, token: str | None) -> bool:
        if token is None:
            return False
        if self.api_key is not None:
            return token == self.api_key
        return token.startswith("sk-")

    def is_azure_key(self, key: str) -> bool:
        if self.azure_api_key is not None:
            return key == self.azure_api_key
        return bool(AZURE_KEY_PATTERN.match(key))

    def azure_model(self, deployment: str) -> str | None:
        """The model behind a deployment: a named one, or a realtime model's own name."""
        if deployment in self.azure_deployments:
            return self.azure_deployments[deployment]
        return deployment if MODEL_PATTERN.match(deployment) else None

    def remember(self, call: EmulatedCall) -> None:
        self.calls[call.id] = call
        # Keep ended calls for inspection, but not forever.
        while len(self.calls) > MAX_REMEMBERED_CALLS:
            oldest_id, oldest = next(iter(self.calls.items()))
            if oldest.active:
                break
            del self.calls[oldest_id]


STATE = web.AppKey("emulator_state", EmulatorState)


# --- helpers --------------------------------------------------------------------------------------


def error_response(err: EmulatorError, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(err.body(), status=err.status, headers=headers)


def _auth_error(message: str, code: str | None = "invalid_api_key") -> EmulatorError:
    return EmulatorError(message, code=code, status=401)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _masked(token: str) -> str:
    return token[:6] + "*" * 4 + token[-4:] if len(token) > 12 else "*" * len(token)


def _require_standard_key(request: web.Request) -> None:
    token = _bearer(request)
    if token is None:
        raise _auth_error(
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            code="missing_api_key",
        )
    if not request.app[STATE].is_standard_key(token):
        raise _auth_error(f"Incorrect API key provided: {_masked(token)}.")


async def _json_body(request: web.Request) -> Any:
    try:
        return await request.json(loads=json.loads)
    except ValueError as exc:
        raise EmulatorError(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
            "HTTP library correctly.)",
            code="invalid_json",
        ) from exc


def _fault_response(state: EmulatorState, endpoint: str) -> web.Response | None:
    status = state.faults.take(endpoint)
    if status is None:
        return None
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return error_response(EmulatorError(state.faults.message, code="emulator_fault", type_=kind, status=status))


# --- middleware -------------------------------------------------------------------------------------


@web.middleware
async def cors_and_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """CORS for the browser page (another origin) and OpenAI-shaped errors for every failure."""
    origin = request.headers.get("Origin")
    cors = {**CORS_HEADERS, "Access-Control-Allow-Origin": origin or "*"}
    if origin:
        cors["Vary"] = "Origin"
    if request.method == "OPTIONS":
        return web.Response(status=204, headers=cors)
    try:
        if "realtime" in request.headers.get("OpenAI-Beta", "").lower():
            raise beta_shape("OpenAI-Beta", "drop the OpenAI-Beta header and use the GA endpoints")
        response = await handler(request)
    except AzureError as err:
        response = err.response()
    except EmulatorError as err:
        response = error_response(err)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status)
        response = error_response(EmulatorError(exc.reason, code=code, status=exc.status))
    except Exception:
        # Still an OpenAI-shaped body, so a client's error path sees what it would see from OpenAI.
        logger.exception("emulator error on %s %s", request.method, request.path)
        response = error_response(
            EmulatorError("The emulator failed to handle the request.", code=None, type_="server_error", status=500)
        )
    if not response.prepared:
        response.headers.update(CIMultiDict(cors))
    return response


# --- OpenAI endpoints ----------------------------------------------------------------------------------


async def client_secrets(request: web.Request) -> web.Response:
    token = _bearer(request)
    if token is not None and token.startswith("ek_"):
        raise _auth_error("Client secrets cannot mint client secrets; use a standard API key.")
    _require_standard_key(request)
    return await _mint(request, azure=False)


async def azure_client_secrets(request: web.Request) -> web.Response:
    _require_azure_resource(request)
    _require_azure_credential(request)
    return await _mint(request, azure=True)


async def _mint(request: web.Request, *, azure: bool) -> web.Response:
    state = request.app[STATE]
    fault = _fault_response(state, "client_secrets")
    if fault is not None:
        return fault
    body = await _json_body(request)
    deployment = None
    if azure and isinstance(body, dict) and isinstance(body.get("session"), dict):
        deployment = _azure_deployment(state, body["session"])
        body = {**body, "session": {**body["session"], "model": state.azure_model(deployment)}}
    seconds, session = validate_client_secret_request(body)
    if deployment is not None:
        session["model"] = deployment  # Azure answers with the deployment name it was given
    now = int(time.time())
    expires_at = now + seconds
    if state.faults.expired_secrets > 0:
        # A test asked for a secret that is already dead, to exercise the expired-secret path.
        state.faults.expired_secrets -= 1
        expires_at = now - 1
    session["id"] = new_id("sess")
    secret = ClientSecret(value=new_id("ek", 16), expires_at=expires_at, session=session, azure=azure)
    state.secrets[secret.value] = secret
    return web.json_response({"value": secret.value, "expires_at": expires_at, "session": session})


def _require_azure_resource(request: web.Request) -> None:
    """A resource in a region without realtime calls answers Azure's plain 404 on these paths."""
    if not request.app[STATE].azure_webrtc:
        raise AzureError(404, "404", "Resource not found")


def _require_azure_credential(request: web.Request) -> None:
    """Azure's server credentials: ``api-key``, or an Entra ID token as Bearer. Never a client secret."""
    state = request.app[STATE]
    key = request.headers.get("api-key")
    if key is not None:
        if state.is_azure_key(key.strip()):
            return
        raise AzureError(401, "401", AZURE_ACCESS_DENIED)
    token = _bearer(request)
    if token is not None and ENTRA_TOKEN_PATTERN.match(token):
        return
    raise AzureError(401, "401", AZURE_ACCESS_DENIED)


def _azure_deployment(state: EmulatorState, session: dict[str, Any]) -> str:
    """The deployment a session names in ``model``; Azure's 404 when the resource has none of that name."""
    deployment = session.get("model")
    if not isinstance(deployment, str) or not deployment:
        raise EmulatorError("Missing required parameter: 'session.model'.", code="missing_required_parameter",
                            param="session.model")
    if state.azure_model(deployment) is None:
        raise AzureError(404, "DeploymentNotFound", AZURE_DEPLOYMENT_NOT_FOUND)
    return deployment


async def beta_sessions(request: web.Request) -> web.Response:
    raise beta_shape("/v1/realtime/sessions", "POST /v1/realtime/client_secrets with a GA session")


async def beta_realtime_post(request: web.Request) -> web.Response:
    raise beta_shape("POST /v1/realtime", "POST /v1/realtime/calls")


def _form_text(value: Any) -> str:
    """A multipart field as text: aiohttp gives str, bytes (typed part) or a FileField (named file)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8")
    return value.file.read().decode("utf-8")


async def _read_offer(request: web.Request, *, azure: bool = False) -> tuple[str, dict[str, Any]]:
    """Authenticate a /calls request and return (offer SDP, session of the call)."""
    state = request.app[STATE]
    token = _bearer(request)
    if token is None and not azure:
        raise _auth_error("You didn't provide an API key or client secret.", code="missing_api_key")
    base: dict[str, Any] | None = None
    if token is not None and token.startswith("ek_"):
        secret = state.secrets.get(token)
        if secret is not None and secret.azure != azure:
            secret = None  # minted by the other service: unknown here
        if secret is None:
            raise _auth_error(f"Incorrect API key provided: {_masked(token)}. The client secret is unknown.")
        if secret.expires_at <= time.time():
            raise _auth_error("The client secret has expired. Mint a new one and try again.")
        base = secret.session
    elif azure:
        _require_azure_credential(request)
    elif token is None or not state.is_standard_key(token):
        raise _auth_error(f"Incorrect API key provided: {_masked(token or '')}.")

    content_type = request.content_type
    if content_type == "application/sdp":
        sdp = await request.text()
        session = dict(base) if base is not None else default_session()
    elif content_type == "multipart/form-data":
        form = await request.post()
        sdp_field = form.get("sdp")
        session_field = form.get("session")
        if sdp_field is None:
            raise EmulatorError("Missing required parameter: 'sdp'.", code="missing_required_parameter", param="sdp")
        sdp = _form_text(sdp_field)
        if session_field is None and base is None:
            # The standard key carries no session: the model and everything else come in this part.
            raise EmulatorError(
                "Missing required parameter: 'session'.", code="missing_required_parameter", param="session"
            )
        if session_field is None:
            session = dict(base)  # type: ignore[arg-type]
        else:
            raw = _form_text(session_field)
            try:
                session_json = json.loads(raw)
            except ValueError as exc:
                raise EmulatorError(
                    "The 'session' part is not valid JSON.", code="invalid_json", param="session"
                ) from exc
            if azure and isinstance(session_json, dict):
                deployment = _azure_deployment(state, session_json)
                session = validate_session({**session_json, "model": state.azure_model(deployment)})
                session["model"] = deployment
            else:
                session = validate_session(session_json)
    else:
        raise EmulatorError(
            f"Unsupported Content-Type '{content_type}'. Use application/sdp or multipart/form-data.",
            code="unsupported_content_type",
            status=415,
        )
    if not sdp.lstrip().startswith("v=0"):
        raise EmulatorError("The SDP offer is malformed (it must start with v=0).", code="invalid_offer", param="sdp")
    session.setdefault("id", new_id("sess"))
    return sdp, session


async def create_call(request: web.Request) -> web.Response:
    return await _create_call(request, azure=False)


async def azure_create_call(request: web.Request) -> web.Response:
    _require_azure_resource(request)
    return await _create_call(request, azure=True)


async def _create_call(request: web.Request, *, azure: bool) -> web.Response:
    state = request.app[STATE]
    fault = _fault_response(state, "calls")
    if fault is not None:
        return fault
    sdp, session = await _read_offer(request, azure=azure)
    filtered = azure and request.query.get("webrtcfilter", "").lower() == "on"
    call = EmulatedCall(
        new_id("rtc", 12),
        session,
        state.script,
        max_call_seconds=state.max_call_seconds,
        connect_timeout=state.connect_timeout,
    )
    if filtered:
        call.dc_filter = AZURE_FILTERED_EVENTS
    answer = await call.accept(sdp)
    state.remember(call)
    logger.info("call %s started (script %s%s)", call.id, call.script.name, ", Azure" if azure else "")
    prefix = "/openai/v1" if azure else "/v1"
    return web.Response(
        status=201,
        text=answer,
        content_type="application/sdp",
        headers={"Location": f"{prefix}/realtime/calls/{call.id}"},
    )


def _live_call(request: web.Request, call_id: str) -> EmulatedCall:
    call = request.app[STATE].calls.get(call_id)
    if call is None:
        raise EmulatorError(f"Call '{call_id}' not found.", code="call_not_found", param="call_id", status=404)
    return call


async def hangup(request: web.Request) -> web.Response:
    _require_standard_key(request)
    return await _hangup(request)


async def azure_hangup(request: web.Request) -> web.Response:
    _require_azure_resource(request)
    _require_azure_credential(request)
    return await _hangup(request)


async def _hangup(request: web.Request) -> web.Response:
    call = _live_call(request, request.match_info["call_id"])
    # Idempotent: hanging up a call that already ended (browser closed first) is not an error.
    await call.close("hangup")
    return web.Response(status=200)


async def sideband(request: web.Request) -> web.StreamResponse:
    return await _sideband(request, azure=False)


async def azure_sideband(request: web.Request) -> web.StreamResponse:
    _require_azure_resource(request)
    return await _sideband(request, azure=True)


async def _sideband(request: web.Request, *, azure: bool) -> web.StreamResponse:
    call_id = request.query.get("call_id")
    if not call_id:
        if "model" in request.query:
            raise EmulatorError(
                "The emulator serves only the sideband connection (?call_id=rtc_...), not WebSocket sessions.",
                code="unsupported",
            )
        raise EmulatorError(
            "Missing required parameter: 'call_id'.", code="missing_required_parameter", param="call_id"
        )
    token = _bearer(request)
    if azure:
        _require_azure_credential(request)
    elif token is not None and token.startswith("ek_"):
        raise _auth_error("The sideband connection needs a standard API key, not a client secret.")
    else:
        _require_standard_key(request)
    call = _live_call(request, call_id)
    if not call.active:
        raise EmulatorError(f"Call '{call_id}' has ended.", code="call_not_found", param="call_id", status=404)
    state = request.app[STATE]
    refusal = state.sideband_faults.get(call_id)
    if refusal is not None and refusal.refuse > 0:
        refusal.refuse -= 1
        raise EmulatorError(state.faults.message, code="emulator_fault", type_="server_error", status=refusal.status)

    ws = web.WebSocketResponse(protocols=("realtime",), heartbeat=30)
    await ws.prepare(request)
    queue = call.attach_sideband()
    sockets = state.sideband_sockets.setdefault(call_id, set())
    entry = SidebandSocket(ws, request.transport)
    sockets.add(entry)

    async def forward() -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            event = await queue.get()
            if event is None:
                break
            rate = call.sideband_rate
            if rate:
                # At most `rate` events a second; a reader that falls behind gets no burst to catch up.
                now = loop.time()
                if due > now:
                    await asyncio.sleep(due - now)
                due = max(due, now) + 1.0 / rate
            await ws.send_str(json.dumps(event))
            call.sideband_sent += 1
        await ws.close()

    writer = asyncio.create_task(forward())
    try:
        async for message in ws:
            if message.type == web.WSMsgType.TEXT:
                call.handle_client_message(message.data, source="sideband")
            elif message.type == web.WSMsgType.ERROR:
                break
    finally:
        sockets.discard(entry)
        call.detach_sideband(queue)
        if not writer.done():
            writer.cancel()
    return ws


# --- GPT-Live -------------------------------------------------------------------------------------------


def _live_error(message: str, *, code: str | None, param: str | None = None, status: int = 400) -> EmulatorError:
    return EmulatorError(message, code=code, param=param, status=status)


def _live_session(request: web.Request) -> LiveCall:
    session_id = request.match_info["session_id"]
    call = request.app[STATE].calls.get(session_id)
    if not isinstance(call, LiveCall):
        raise _live_error(f"Session '{session_id}' not found.", code="session_id_not_found", param="session_id",
                          status=404)
    return call


def _param(loc: tuple[Any, ...]) -> str | None:
    """pydantic's error location as OpenAI's ``param`` (``session.delegation.responses.model``): without the
    tags pydantic adds for a discriminated union (``delegation.responses.responses`` -> one)."""
    parts: list[str] = []
    for index, part in enumerate(loc):
        previous = loc[index - 1] if index else None
        if (previous == "delegation" and part in ("responses", "client")) or (
                isinstance(previous, int) and part in ("function", "web_search")):
            continue
        parts.append(f"[{part}]" if isinstance(part, int) else str(part))
    return ".".join(parts).replace(".[", "[") or None


async def create_live_session(request: web.Request) -> web.Response:
    from pydantic import ValidationError

    from voice.realtime.gptlive_schema import CreateRequest

    _require_standard_key(request)
    state = request.app[STATE]
    fault = _fault_response(state, "calls")
    if fault is not None:
        return fault
    if request.query_string:
        name = next(iter(request.query), request.query_string)
        # "do not pass it as a URL query parameter" (the reference, 1.1)
        raise _live_error(f"Unknown parameter: '{name}'. The Live endpoint takes no query parameters.",
                          code="unknown_parameter", param=name)
    if request.content_type != "application/json":
        raise _live_error(f"Unsupported Content-Type '{request.content_type}'. The Live endpoint requires JSON, "
                          "not multipart or raw SDP.", code="unsupported_content_type", status=415)
    body = await _json_body(request)
    try:
        checked = CreateRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = _param(first["loc"])
        if first["type"] == "extra_forbidden":
            raise _live_error(f"Unknown parameter: '{param}'.", code="unknown_parameter", param=param) from None
        if first["type"] == "missing":
            raise _live_error(f"Missing required parameter: '{param}'.", code="missing_required_parameter",
                              param=param) from None
        raise _live_error(f"Invalid value for '{param}': {first['msg']}.", code="invalid_value",
                          param=param) from None
    session = checked.session.model_dump(exclude_none=True)
    sdp = checked.transport.sdp
    if not sdp.lstrip().startswith("v=0"):
        raise _live_error("The SDP offer is malformed (it must start with v=0).", code="invalid_offer",
                          param="transport.sdp")
    call = LiveCall(new_id("live", 12), session, state.script, max_call_seconds=state.max_call_seconds,
                    connect_timeout=state.connect_timeout, usage_interval=state.live.usage_interval,
                    delegation_wait=state.live.delegation_wait, audio_copies=state.live.audio_copies)
    try:
        answer = await call.accept(sdp)
    except LiveError as err:
        raise _live_error(err.message, code=err.code, param=err.param) from None
    state.remember(call)  # type: ignore[arg-type]
    logger.info("live session %s created (script %s)", call.id, call.script.name)
    return web.json_response({"session": {"id": call.id}, "transport": {"type": "webrtc", "sdp": answer}},
                             status=201)


async def live_hangup(request: web.Request) -> web.Response:
    _require_standard_key(request)
    call = _live_session(request)
    if not call.active:
        raise _live_error(f"Session '{call.id}' has ended.", code="session_id_not_found", param="session_id",
                          status=404)
    await call.close("close_requested")
    return web.Response(status=200)


async def live_attach(request: web.Request) -> web.StreamResponse:
    _require_standard_key(request)
    call = _live_session(request)
    if not call.active:
        raise _live_error(f"Session '{call.id}' has ended.", code="session_id_not_found", param="session_id",
                          status=404)
    unknown = set(request.query) - {"graceful_close"}
    if unknown:
        name = sorted(unknown)[0]
        raise _live_error(f"Unknown parameter: '{name}'.", code="unknown_parameter", param=name)
    state = request.app[STATE]
    refusal = state.sideband_faults.get(call.id)
    if refusal is not None and refusal.refuse > 0:
        refusal.refuse -= 1
        raise EmulatorError(state.faults.message, code="emulator_fault", type_="server_error", status=refusal.status)
    ws = web.WebSocketResponse(heartbeat=30)
    await ws.prepare(request)
    queue = call.attach_sideband()
    sockets = state.sideband_sockets.setdefault(call.id, set())
    entry = SidebandSocket(ws, request.transport)
    sockets.add(entry)

    async def forward() -> None:
        while True:
            event = await queue.get()
            if event is None:
                break
            await ws.send_str(json.dumps(event))
        await ws.close()  # code 1000: the session ended

    writer = asyncio.create_task(forward())
    try:
        async for message in ws:
            if message.type == web.WSMsgType.TEXT:
                call.handle_client_message(message.data, source="sideband")
            elif message.type == web.WSMsgType.ERROR:
                break
    finally:
        sockets.discard(entry)
        call.detach_sideband(queue)
        if not writer.done():
            writer.cancel()
    return ws


async def show_live(request: web.Request) -> web.Response:
    return web.json_response(asdict(request.app[STATE].live))


async def set_live(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _json_body(request)
    fields = {"usage_interval", "delegation_wait", "audio_copies"}
    if not isinstance(body, dict) or set(body) - fields:
        raise EmulatorError('Expected {"usage_interval"?: s, "delegation_wait"?: s, "audio_copies"?: bool}.',
                            code="invalid_value")
    for name in ("usage_interval", "delegation_wait"):
        if name in body:
            value = body[name]
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0.05 <= value <= 3600:
                raise EmulatorError(f"'{name}' must be 0.05-3600 seconds.", code="invalid_value", param=name)
            setattr(state.live, name, float(value))
    if "audio_copies" in body:
        if not isinstance(body["audio_copies"], bool):
            raise EmulatorError("'audio_copies' must be true or false.", code="invalid_value", param="audio_copies")
        state.live.audio_copies = body["audio_copies"]
    return web.json_response(asdict(state.live))


# --- test controls ---------------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    active = sum(1 for call in state.calls.values() if call.active)
    return web.json_response({"status": "ok", "script": state.script.name, "active_calls": active})


async def list_calls(request: web.Request) -> web.Response:
    calls = request.app[STATE].calls.values()
    return web.json_response({"calls": [call.summary() for call in calls]})


async def show_call(request: web.Request) -> web.Response:
    call = _live_call(request, request.match_info["call_id"])
    return web.json_response(call.summary(full=True))


async def trigger_turn(request: web.Request) -> web.Response:
    call = _live_call(request, request.match_info["call_id"])
    body = await _json_body(request) if request.can_read_body else {}
    text = body.get("text") if isinstance(body, dict) else None
    if text is not None and not isinstance(text, str):
        raise EmulatorError("'text' must be a string.", code="invalid_type", param="text")
    try:
        item_id = call.trigger_turn(text)
    except RuntimeError as exc:
        raise EmulatorError(str(exc), code="conflict", status=409) from exc
    return web.json_response({"item_id": item_id}, status=202)


MAX_STREAM_TURNS = 100_000
MAX_STREAM_RATE = 1_000_000.0


async def start_stream(request: web.Request) -> web.Response:
    call = _live_call(request, request.match_info["call_id"])
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise EmulatorError("Expected a JSON object.", code="invalid_type")
    unknown = set(body) - {"turns", "rate"}
    if unknown:
        raise EmulatorError(f"Unknown fields: {sorted(unknown)}.", code="unknown_parameter")
    turns = body.get("turns")
    if isinstance(turns, bool) or not isinstance(turns, int) or not 1 <= turns <= MAX_STREAM_TURNS:
        raise EmulatorError(f"'turns' must be an integer from 1 to {MAX_STREAM_TURNS}.", code="invalid_value",
                            param="turns")
    rate = body.get("rate")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float)
                             or not 0 < rate <= MAX_STREAM_RATE):
        raise EmulatorError(f"'rate' must be a number of events per second above 0 and at most "
                            f"{MAX_STREAM_RATE:g}, or null.", code="invalid_value", param="rate")
    try:
        status = call.start_stream(turns, float(rate) if rate is not None else None)
    except RuntimeError as exc:
        raise EmulatorError(str(exc), code="conflict", status=409) from exc
    return web.json_response(status, status=202)


async def show_stream(request: web.Request) -> web.Response:
    call = _live_call(request, request.match_info["call_id"])
    return web.json_response(call.stream_status())


async def drop_sideband(request: web.Request) -> web.Response:
    """Cut the call's sideband sockets while the call goes on (see the module docstring)."""
    state = request.app[STATE]
    call_id = request.match_info["call_id"]
    _live_call(request, call_id)
    body = await _json_body(request) if request.can_read_body else {}
    if not isinstance(body, dict):
        raise EmulatorError("Expected a JSON object.", code="invalid_type")
    unknown = set(body) - {"mode", "refuse", "status"}
    if unknown:
        raise EmulatorError(f"Unknown fields: {sorted(unknown)}.", code="unknown_parameter")
    mode = body.get("mode", "abort")
    if mode not in ("abort", "close"):
        raise EmulatorError("'mode' must be 'abort' or 'close'.", code="invalid_value", param="mode")
    refuse = body.get("refuse", 0)
    if isinstance(refuse, bool) or not isinstance(refuse, int) or refuse < 0:
        raise EmulatorError("'refuse' must be a non-negative integer.", code="invalid_value", param="refuse")
    status = body.get("status", 503)
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        raise EmulatorError("'status' must be an HTTP error status (400-599).", code="invalid_value", param="status")
    state.sideband_faults[call_id] = SidebandFaults(refuse=refuse, status=status)
    sockets = list(state.sideband_sockets.get(call_id, ()))
    for socket in sockets:
        if mode == "close":
            await socket.ws.close(code=1011, message=b"emulator: sideband dropped")
        elif socket.transport is not None:
            # No close frame: to the client this is a dead network path (close code 1006).
            socket.transport.abort()  # type: ignore[attr-defined]
    return web.json_response({"dropped": len(sockets), "refuse": refuse})


_FAULT_FIELDS = {"calls_status", "client_secrets_status", "count", "expired_secrets", "message"}


async def set_faults(request: web.Request) -> web.Response:
    faults = request.app[STATE].faults
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise EmulatorError("Expected a JSON object.", code="invalid_type")
    unknown = set(body) - _FAULT_FIELDS
    if unknown:
        raise EmulatorError(f"Unknown fault fields: {sorted(unknown)}.", code="unknown_parameter")
    for key in ("calls_status", "client_secrets_status"):
        if key in body:
            status = body[key]
            if status is not None and (not isinstance(status, int) or not 400 <= status <= 599):
                raise EmulatorError(f"'{key}' must be an HTTP error status (400-599).", code="invalid_value", param=key)
            setattr(faults, key, status)
    if "calls_status" in body or "client_secrets_status" in body:
        count = body.get("count", 1)
        if not isinstance(count, int) or count < 0:
            raise EmulatorError("'count' must be a non-negative integer.", code="invalid_value", param="count")
        faults.count = count
    if "expired_secrets" in body:
        expired = body["expired_secrets"]
        if not isinstance(expired, int) or expired < 0:
            raise EmulatorError(
                "'expired_secrets' must be a non-negative integer.", code="invalid_value", param="expired_secrets"
            )
        faults.expired_secrets = expired
    if "message" in body:
        faults.message = str(body["message"])
    return web.json_response(asdict(faults))


async def show_faults(request: web.Request) -> web.Response:
    return web.json_response(asdict(request.app[STATE].faults))


async def clear_faults(request: web.Request) -> web.Response:
    request.app[STATE].faults = Faults()
    return web.json_response(asdict(request.app[STATE].faults))


async def expire_secret(request: web.Request) -> web.Response:
    secret = request.app[STATE].secrets.get(request.match_info["value"])
    if secret is None:
        raise EmulatorError("Unknown client secret.", code="not_found", status=404)
    secret.expires_at = int(time.time()) - 1
    return web.json_response({"value": secret.value, "expires_at": secret.expires_at})


async def list_scripts(request: web.Request) -> web.Response:
    return web.json_response({"active": request.app[STATE].script.name, "available": available_scripts()})


async def set_script(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _json_body(request)
    name = body.get("script") if isinstance(body, dict) else None
    if not isinstance(name, str):
        raise EmulatorError('Expected {"script": "<name>"}.', code="missing_required_parameter", param="script")
    if name not in available_scripts():
        raise EmulatorError(
            f"Unknown script {name!r}; available: {available_scripts()}.", code="invalid_value", param="script"
        )
    script = load_script(name)
    call_id = body.get("call_id")
    if call_id is not None:
        _live_call(request, str(call_id)).switch_script(script)
    else:
        state.script = script
    return web.json_response({"active": state.script.name, "call_id": call_id, "script": script.name})


async def reset(request: web.Request) -> web.Response:
    state = request.app[STATE]
    await _close_calls(state, "emulator_reset")
    state.calls.clear()
    state.secrets.clear()
    state.faults = Faults()
    state.sideband_faults.clear()
    state.script = state.default_script
    state.azure_webrtc = state.default_azure_webrtc
    state.azure_deployments = dict(state.default_azure_deployments)
    state.live = LiveSettings()
    return web.json_response({"status": "reset"})


def _azure_view(state: EmulatorState) -> dict[str, Any]:
    return {"webrtc": state.azure_webrtc, "deployments": state.azure_deployments}


async def show_azure(request: web.Request) -> web.Response:
    return web.json_response(_azure_view(request.app[STATE]))


async def set_azure(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _json_body(request)
    if not isinstance(body, dict) or set(body) - {"webrtc", "deployments"}:
        raise EmulatorError('Expected {"webrtc"?: bool, "deployments"?: {name: model}}.', code="invalid_value")
    if "webrtc" in body:
        if not isinstance(body["webrtc"], bool):
            raise EmulatorError("'webrtc' must be true or false.", code="invalid_value", param="webrtc")
        state.azure_webrtc = body["webrtc"]
    deployments = body.get("deployments", {})
    if not isinstance(deployments, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and MODEL_PATTERN.match(v) for k, v in deployments.items()
    ):
        raise EmulatorError("'deployments' maps deployment names to realtime model names.", code="invalid_value",
                            param="deployments")
    state.azure_deployments.update(deployments)
    return web.json_response(_azure_view(state))


async def _close_calls(state: EmulatorState, reason: str) -> None:
    await asyncio.gather(*(call.close(reason) for call in list(state.calls.values()) if call.active))


# --- factory ------------------------------------------------------------------------------------------------


def create_app(
    *,
    api_key: str | None = None,
    script: str | Path | Script = "default",
    max_call_seconds: float = 3600.0,
    connect_timeout: float = 20.0,
    azure_api_key: str | None = None,
    azure_deployments: dict[str, str] | None = None,
    azure_webrtc: bool = True,
) -> web.Application:
    """Build the emulator application.

    ``api_key``: the only standard key accepted (default: any ``sk-...``). ``script``: a bundled script
    name, a path to a script file, or a :class:`Script`. ``max_call_seconds``: OpenAI's 60-minute cap,
    shorter in tests that exercise ``session_expired``. ``connect_timeout``: a call whose peer has not
    connected by then ends with ``connect_timeout`` (an abandoned offer is not left as a live call).
    ``azure_api_key``, ``azure_deployments``, ``azure_webrtc``: the emulated Azure resource (module
    docstring).
    """
    loaded = script if isinstance(script, Script) else load_script(script)
    app = web.Application(middlewares=[cors_and_errors])
    app[STATE] = EmulatorState(
        api_key=api_key, script=loaded, max_call_seconds=max_call_seconds, connect_timeout=connect_timeout,
        azure_api_key=azure_api_key, azure_deployments=azure_deployments, azure_webrtc=azure_webrtc,
    )

    async def on_shutdown(app: web.Application) -> None:
        await _close_calls(app[STATE], "emulator_shutdown")

    app.on_shutdown.append(on_shutdown)
    app.router.add_post("/v1/realtime/client_secrets", client_secrets)
    app.router.add_post("/v1/realtime/sessions", beta_sessions)
    app.router.add_post("/v1/realtime/calls", create_call)
    app.router.add_post("/v1/realtime/calls/{call_id}/hangup", hangup)
    app.router.add_get("/v1/realtime", sideband)
    app.router.add_post("/v1/realtime", beta_realtime_post)
    app.router.add_post("/openai/v1/realtime/client_secrets", azure_client_secrets)
    app.router.add_post("/openai/v1/realtime/calls", azure_create_call)
    app.router.add_post("/openai/v1/realtime/calls/{call_id}/hangup", azure_hangup)
    app.router.add_get("/openai/v1/realtime", azure_sideband)
    app.router.add_post("/v1/live/sessions", create_live_session)
    app.router.add_post("/v1/live/sessions/{session_id}/hangup", live_hangup)
    app.router.add_get("/v1/live/sessions/{session_id}/attach", live_attach)
    app.router.add_get("/_emulator/live", show_live)
    app.router.add_post("/_emulator/live", set_live)
    app.router.add_get("/_emulator/azure", show_azure)
    app.router.add_post("/_emulator/azure", set_azure)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/_emulator/calls", list_calls)
    app.router.add_get("/_emulator/calls/{call_id}", show_call)
    app.router.add_post("/_emulator/calls/{call_id}/turn", trigger_turn)
    app.router.add_post("/_emulator/calls/{call_id}/sideband/drop", drop_sideband)
    app.router.add_post("/_emulator/calls/{call_id}/stream", start_stream)
    app.router.add_get("/_emulator/calls/{call_id}/stream", show_stream)
    app.router.add_get("/_emulator/faults", show_faults)
    app.router.add_post("/_emulator/faults", set_faults)
    app.router.add_delete("/_emulator/faults", clear_faults)
    app.router.add_post("/_emulator/expire/{value}", expire_secret)
    app.router.add_get("/_emulator/scripts", list_scripts)
    app.router.add_post("/_emulator/script", set_script)
    app.router.add_post("/_emulator/reset", reset)
    return app


def run(
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    api_key: str | None = None,
    script: str = "default",
    max_call_seconds: float = 3600.0,
    azure_api_key: str | None = None,
    azure_deployments: dict[str, str] | None = None,
    connect_timeout: float = 20.0,
) -> None:
    """Serve the emulator until interrupted (``python -m realtime_emulator`` / ``manage.py realtime_emulator``)."""
    app = create_app(api_key=api_key, script=script, max_call_seconds=max_call_seconds, azure_api_key=azure_api_key,
                     azure_deployments=azure_deployments, connect_timeout=connect_timeout)
    print(f"Realtime emulator on http://{host}:{port}/v1 and /openai/v1 (Azure) (script {app[STATE].script.name!r}); "
          "Ctrl+C to stop")
    web.run_app(app, host=host, port=port, print=None)
