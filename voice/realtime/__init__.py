"""The realtime client library: asyncio + httpx + websockets + pydantic, no Django (DESIGN.md rule 1)."""

from voice.realtime.calls import CreatedCall, create_call, hangup
from voice.realtime.client import (
    FrameTap,
    RawFrame,
    RealtimeClientBase,
    RealtimeClientProtocol,
    Role,
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
from voice.realtime.events import SidebandGap
from voice.realtime.session import SessionValidationError, validate_session

# Imported last, in this order: importing them registers the clients with the registry.
from voice.realtime.webrtc import OpenAIRealtimeWebRTCClient  # isort: skip
from voice.realtime.sideband import OpenAIRealtimeSidebandClient, ReconnectPolicy  # isort: skip
from voice.realtime.gptlive import GPTLiveSidebandClient, create_live_session, live_hangup  # isort: skip

__all__ = [
    "CreatedCall",
    "FrameTap",
    "GPTLiveSidebandClient",
    "InvalidFrameError",
    "OpenAIRealtimeSidebandClient",
    "OpenAIRealtimeWebRTCClient",
    "RawFrame",
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
    "ReconnectPolicy",
    "Role",
    "SessionValidationError",
    "SidebandGap",
    "WebSocketProtocol",
    "create_call",
    "create_live_session",
    "get_client",
    "hangup",
    "live_hangup",
    "register_realtime_client",
    "validate_session",
]
