"""Server-side calls (PROTOCOL.md section 3): create a call with the standard key, hang it up.

``create_call`` sends the browser's offer to ``POST {base}/realtime/calls`` as ``multipart/form-data``
with the parts ``sdp`` and ``session`` (the GA session object, which carries the model) and returns the
answer SDP and the call id taken from the ``Location`` header. Failures are the typed errors of
``voice.realtime.errors`` with their stable codes; the key (and every credential header value) is
redacted from every message.

Credentials: by default ``Authorization: Bearer <api_key>``. A provider that authenticates differently
(Azure: ``api-key: <key>``, or a refreshed Entra token) passes ``auth``, a zero-argument callable
returning the headers (sync or async); ``sideband.py`` takes the same hook.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import re
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple

import certifi
import httpx

from voice.realtime.errors import (
    RealtimeAuthError,
    RealtimeConfigError,
    RealtimeDeploymentNotFoundError,
    RealtimeProtocolError,
    RealtimeRateLimitedError,
    RealtimeRequestRejectedError,
    RealtimeTimeoutError,
    RealtimeUpstreamUnavailableError,
    RealtimeWebRTCUnavailableError,
    redact,
)
from voice.realtime.session import validate_session

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 10.0
# An SDP answer is a few kilobytes; anything far larger is not one.
MAX_ANSWER_CHARS = 256 * 1024
_UPSTREAM_MESSAGE_CHARS = 300
# Call ids go back into URLs (sideband, hang-up): accept only what OpenAI's look like.
CALL_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

AuthHeaders = Mapping[str, str]
AuthProvider = Callable[[], AuthHeaders | Awaitable[AuthHeaders]]


class CreatedCall(NamedTuple):
    """What ``create_call`` returns; unpacks as ``answer_sdp, call_id``."""

    answer_sdp: str
    call_id: str


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context per process: building one loads the whole CA bundle (~20 ms per request when each
    made its own; benchmarks/bench_session_start.py)."""
    return ssl.create_default_context(cafile=certifi.where())


def bearer_auth(api_key: str | None) -> AuthProvider:
    """The standard OpenAI credential; no header at all without a key (the local emulator)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return lambda: headers


async def auth_headers(auth: AuthProvider) -> dict[str, str]:
    """Call an ``AuthProvider`` (sync or async) and return a plain dict."""
    headers = auth()
    if inspect.isawaitable(headers):
        headers = await headers
    return dict(headers)


def secrets_of(api_key: str | None, headers: Mapping[str, str]) -> list[str]:
    """Everything to redact: the key and every credential header value (and its bare token)."""
    secrets: list[str] = [api_key] if api_key else []
    for value in headers.values():
        secrets.append(value)
        scheme, _, token = value.partition(" ")
        if token and scheme.lower() == "bearer":
            secrets.append(token)
    return secrets


def call_id_from_location(location: str | None) -> str | None:
    """The call id: the last path segment of ``Location`` (``/v1/realtime/calls/rtc_...``), if well formed."""
    if not location:
        return None
    segment = location.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return segment if CALL_ID_PATTERN.match(segment) else None


async def create_call(
    api_base: str,
    api_key: str | None,
    offer_sdp: str,
    session: Mapping[str, Any],
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    auth: AuthProvider | None = None,
    http: httpx.AsyncClient | None = None,
    params: Mapping[str, str] | None = None,
    service: str = "OpenAI",
) -> CreatedCall:
    """Create a WebRTC call for the browser's offer; return ``(answer_sdp, call_id)``.

    ``session`` must be a full GA session with a ``model`` (validated here; ``RealtimeConfigError``
    otherwise). ``timeout`` bounds the whole request. ``http``: a shared client (its pool is reused);
    otherwise one is made for this request. Raises ``RealtimeAuthError`` (401/403),
    ``RealtimeRateLimitedError`` (429), ``RealtimeUpstreamUnavailableError`` (5xx, network),
    ``RealtimeTimeoutError``, ``RealtimeRequestRejectedError`` (other 4xx) or ``RealtimeProtocolError``
    (a 2xx without an SDP answer or a call id).

    ``params``: the query of the calls URL (Azure's ``webrtcfilter=on``, see ``providers.py``).
    ``service``: what the service is called in error sentences ("OpenAI", "Azure OpenAI").
    """
    if not isinstance(offer_sdp, str) or not offer_sdp.lstrip().startswith("v=0"):
        raise RealtimeRequestRejectedError(
            "The browser's call offer is not an SDP offer. Reload the page and try again."
        )
    checked = validate_session(session)
    if not checked.get("model"):
        raise RealtimeConfigError("The session has no model; a server-created call needs one in the session.")
    url = f"{api_base.rstrip('/')}/realtime/calls"
    headers = await auth_headers(auth or bearer_auth(api_key))
    secrets = secrets_of(api_key, headers)
    query = dict(params or {})
    files = {
        "sdp": (None, offer_sdp.encode(), "application/sdp"),
        "session": (None, json.dumps(checked).encode(), "application/json"),
    }
    try:
        async with asyncio.timeout(timeout):
            if http is not None:
                response = await http.post(url, headers=headers, files=files, params=query, timeout=timeout)
            else:
                async with httpx.AsyncClient(timeout=timeout, verify=tls_context()) as own:
                    response = await own.post(url, headers=headers, files=files, params=query)
    except (TimeoutError, httpx.TimeoutException):
        raise RealtimeTimeoutError(
            f"{service} did not answer the call request within {timeout:g} s. Try again; if it keeps happening, "
            "check the network."
        ) from None
    except httpx.HTTPError as exc:
        raise RealtimeUpstreamUnavailableError(
            f"Could not reach {service} to start the call ({type(exc).__name__}: {redact(str(exc), secrets)}). "
            "Try again in a moment."
        ) from None
    raise_for_status(response, secrets, action="start the call", model=checked.get("model"), service=service)
    answer = response.text
    if not answer.lstrip().startswith("v=") or len(answer) > MAX_ANSWER_CHARS:
        raise RealtimeProtocolError(
            f"{service} answered HTTP {response.status_code} without an SDP answer. Check that the API base points "
            f"at {service} (or the emulator).",
            status_code=response.status_code,
        )
    call_id = call_id_from_location(response.headers.get("location"))
    if call_id is None:
        raise RealtimeProtocolError(
            f"{service} answered HTTP {response.status_code} without a usable call id in its Location header. "
            f"Check that the API base points at {service} (or the emulator).",
            status_code=response.status_code,
        )
    return CreatedCall(answer, call_id)


def raise_for_status(response: httpx.Response, secrets: list[str], *, action: str, model: str | None = None,
                     service: str = "OpenAI") -> None:
    """Turn a non-2xx answer into the typed error (PROTOCOL.md's stable codes); 2xx returns.

    ``service`` names the service in the sentences ("OpenAI" or "Azure OpenAI"); Azure's own refusals
    (an unknown deployment, a resource without realtime calls) get their own error and words.
    """
    status = response.status_code
    if 200 <= status < 300:
        return
    upstream_code, upstream_message = upstream_error(response, secrets)
    # Upstream messages end with a full stop; ours follow on after the detail.
    detail = f": {upstream_message.rstrip().rstrip('.')}" if upstream_message else ""
    azure = service == "Azure OpenAI"
    credential = "Azure OpenAI key (or Entra ID token) and endpoint" if azure else "OpenAI API key"
    if status == 401:
        raise RealtimeAuthError(
            f"{service} refused the server's credentials (HTTP 401){detail}. An administrator must check the "
            f"server's {credential}.",
            status_code=status,
            upstream_code=upstream_code,
        )
    if status == 403:
        model_note = f" model {model!r}" if model else " this model"
        raise RealtimeAuthError(
            f"The server's credentials may not use{model_note} (HTTP 403){detail}. An administrator must check the "
            + ("identity's role on the Azure OpenAI resource." if azure else "key's project permissions."),
            status_code=status,
            upstream_code=upstream_code,
        )
    if status == 404 and upstream_code == "DeploymentNotFound":
        raise RealtimeDeploymentNotFoundError(
            f"The Azure OpenAI resource has no deployment named {model!r} (HTTP 404){detail}. An administrator must "
            "check the deployment name in the voice configuration (it is the deployment's name, not the model's).",
            status_code=status,
            upstream_code=upstream_code,
        )
    if status == 404 and azure and upstream_code in (None, "404", "NotFound"):
        # The resource exists but does not serve realtime calls: a region without WebRTC, or an endpoint
        # that is not an Azure OpenAI resource.
        raise RealtimeWebRTCUnavailableError(
            f"This Azure OpenAI resource does not offer realtime calls (HTTP 404){detail}. An administrator must "
            "use a resource in a region that supports the Realtime API over WebRTC, with a realtime model "
            "deployed.",
            status_code=status,
            upstream_code=upstream_code,
        )
    if status == 429:
        raise RealtimeRateLimitedError(
            f"{service} is rate limiting this server (HTTP 429){detail}. Wait a moment and try again.",
            retry_after=_retry_after(response),
            status_code=status,
            upstream_code=upstream_code,
        )
    if status >= 500:
        raise RealtimeUpstreamUnavailableError(
            f"{service} is unavailable (HTTP {status}). Try again in a moment.",
            status_code=status,
            upstream_code=upstream_code,
        )
    code_note = f", {upstream_code}" if upstream_code else ""
    if upstream_code == "model_not_found":
        raise RealtimeRequestRejectedError(
            f"{service} does not offer the model {model!r} (HTTP {status}{code_note}){detail}. It may have been "
            "retired: an administrator must choose a current model in the voice configuration.",
            status_code=status,
            upstream_code=upstream_code,
        )
    raise RealtimeRequestRejectedError(
        f"{service} refused to {action} (HTTP {status}{code_note}){detail}. Check the voice configuration "
        "(model, voice, session options).",
        status_code=status,
        upstream_code=upstream_code,
    )


def upstream_error(response: httpx.Response, secrets: list[str]) -> tuple[str | None, str | None]:
    """OpenAI's error code and message, redacted and shortened (401 bodies echo a masked key)."""
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return None, None
    if not isinstance(error, dict):
        return None, None
    code = error.get("code") if isinstance(error.get("code"), str) else None
    message = error.get("message") if isinstance(error.get("message"), str) else None
    if message:
        message = redact(message, secrets)[:_UPSTREAM_MESSAGE_CHARS]
    return (redact(code, secrets) if code else None), message


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


async def hangup(
    api_base: str,
    api_key: str | None,
    call_id: str,
    *,
    timeout: float = 5.0,
    auth: AuthProvider | None = None,
) -> bool:
    """POST {base}/realtime/calls/{call_id}/hangup. True if the call is gone (2xx or already unknown)."""
    if not CALL_ID_PATTERN.match(call_id or ""):
        logger.warning("Not hanging up a malformed call id %r", (call_id or "")[:40])
        return False
    url = f"{api_base.rstrip('/')}/realtime/calls/{call_id}/hangup"
    headers = await auth_headers(auth or bearer_auth(api_key))
    try:
        async with httpx.AsyncClient(timeout=timeout, verify=tls_context()) as http:
            response = await http.post(url, headers=headers)
    except httpx.HTTPError as exc:
        logger.warning("Hang-up of call %s failed: %s", call_id, exc.__class__.__name__)
        return False
    if response.is_success or response.status_code == 404:
        return True
    logger.warning("Hang-up of call %s answered %d", call_id, response.status_code)
    return False


__all__ = [
    "CALL_ID_PATTERN",
    "AuthProvider",
    "CreatedCall",
    "auth_headers",
    "bearer_auth",
    "call_id_from_location",
    "create_call",
    "hangup",
    "raise_for_status",
    "tls_context",
]
