"""Typed failures of the realtime client.

Every failure carries a stable ``code`` (what the browser and the logs match on), a message a person can
act on, the technical ``detail`` (for the logs and the record only), and whether trying again later may
help (``retryable``). ``to_frame()`` gives the ``ag2.error`` frame of PROTOCOL.md section 2: it carries
the message, never the detail.

Messages are built by this library, never copied blindly from upstream: OpenAI echoes a masked API key in
some 401 bodies, so any upstream text goes through ``redact()`` first. The API key must never reach a
frame, an exception message or a log line (DESIGN.md rule 6).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

# OpenAI keys ("sk-...", "sk-proj-...", masked "sk-abc***xyz") and ephemeral secrets ("ek_...").
_KEY_PATTERN = re.compile(r"\b(?:sk|ek)[-_][A-Za-z0-9_\-*.]{3,}")
REDACTED = "[redacted]"


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Remove the given secrets and anything shaped like an OpenAI key from ``text``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return _KEY_PATTERN.sub(REDACTED, text)


class RealtimeError(Exception):
    """Base class: something went wrong talking to the Realtime API."""

    code: str = "realtime_error"
    retryable: bool = False

    def __init__(self, message: str, *, detail: str = "", status_code: int | None = None,
                 upstream_code: str | None = None) -> None:
        super().__init__(message)
        # `message` is for the person at the browser: a sentence they can act on, with no URL, setting
        # name or exception name. `detail` is for the logs and the session's record: the URL, the
        # transport error, OpenAI's own words (redacted).
        self.message = message
        self.detail = detail
        self.status_code = status_code
        # OpenAI's own error code (e.g. "invalid_api_key", "beta_api_shape_disabled"), for the logs.
        self.upstream_code = upstream_code

    def to_frame(self) -> dict[str, Any]:
        """The ``ag2.error`` frame telling the browser about this failure."""
        return {"type": "ag2.error", "code": self.code, "message": self.message, "retryable": self.retryable}


class RealtimeConfigError(RealtimeError, ValueError):
    """The llm_config (or a session payload) is unusable; fix the configuration, retrying will not help."""

    code = "realtime_config_invalid"


class RealtimeAuthError(RealtimeError):
    """OpenAI refused the server's API key (401) or its permissions (403)."""

    code = "openai_auth_failed"


class RealtimeRateLimitedError(RealtimeError):
    """OpenAI answered 429: too many requests or quota exhausted."""

    code = "openai_rate_limited"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class RealtimeUpstreamUnavailableError(RealtimeError):
    """OpenAI could not be reached or answered 5xx."""

    code = "openai_unavailable"
    retryable = True


class RealtimeTimeoutError(RealtimeUpstreamUnavailableError):
    """OpenAI did not answer within the configured timeout (a kind of unavailability)."""

    code = "openai_timeout"


class RealtimeRequestRejectedError(RealtimeError):
    """OpenAI rejected the request itself (400/404/422...): the session payload or model is wrong."""

    code = "openai_request_rejected"


class RealtimeDeploymentNotFoundError(RealtimeRequestRejectedError):
    """Azure OpenAI has no deployment of that name on the resource (HTTP 404 ``DeploymentNotFound``)."""

    code = "deployment_not_found"


class RealtimeWebRTCUnavailableError(RealtimeRequestRejectedError):
    """The resource answers, but not on the realtime WebRTC paths: typically an Azure region (or an API
    surface) without realtime calls."""

    code = "webrtc_unavailable"


class RealtimeProtocolError(RealtimeError):
    """OpenAI answered, but with a body this client cannot read."""

    code = "openai_protocol_error"


class InvalidFrameError(RealtimeError):
    """A frame from the browser could not be read. Sent as ``ag2.error`` by the client, not raised."""

    code = "invalid_frame"


__all__ = [
    "REDACTED",
    "InvalidFrameError",
    "RealtimeAuthError",
    "RealtimeConfigError",
    "RealtimeDeploymentNotFoundError",
    "RealtimeError",
    "RealtimeProtocolError",
    "RealtimeRateLimitedError",
    "RealtimeRequestRejectedError",
    "RealtimeTimeoutError",
    "RealtimeUpstreamUnavailableError",
    "RealtimeWebRTCUnavailableError",
    "redact",
]
