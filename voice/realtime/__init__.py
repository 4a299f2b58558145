"""The realtime client library: asyncio + httpx + pydantic, no Django (DESIGN.md rule 1)."""

from voice.realtime.client import (
    RealtimeClientBase,
    RealtimeClientProtocol,
    WebSocketProtocol,
    get_client,
    register_realtime_client,
)
from voice.realtime.errors import (
    InvalidFrameError,
    RealtimeAuthError,
    RealtimeConfigError,
    RealtimeError,
    RealtimeProtocolError,
    RealtimeRateLimitedError,
    RealtimeRequestRejectedError,
    RealtimeTimeoutError,
    RealtimeUpstreamUnavailableError,
)
from voice.realtime.session import SessionValidationError, validate_session

# Imported last: importing it registers the default client with the registry.
from voice.realtime.webrtc import OpenAIRealtimeWebRTCClient

__all__ = [
    "InvalidFrameError",
    "OpenAIRealtimeWebRTCClient",
    "RealtimeAuthError",
    "RealtimeClientBase",
    "RealtimeClientProtocol",
    "RealtimeConfigError",
    "RealtimeError",
    "RealtimeProtocolError",
    "RealtimeRateLimitedError",
    "RealtimeRequestRejectedError",
    "RealtimeTimeoutError",
    "RealtimeUpstreamUnavailableError",
    "SessionValidationError",
    "WebSocketProtocol",
    "get_client",
    "register_realtime_client",
    "validate_session",
]
