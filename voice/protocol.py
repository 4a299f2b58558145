"""Constants of the browser <-> server protocol (docs/protocol.md) that both sides must agree on.

The page's copy is ``static/voice/protocol.js``; ``tests/test_protocol_constants.py`` keeps the two equal.
The frames themselves are described in ``voice/schemas.py``.
"""

from __future__ import annotations

# Websocket routes (voice/routing.py); the pages get them from their views, never hard-coded.
VOICE_SOCKET_PATH = "ws/voice/"
DASHBOARD_SOCKET_PATH = "ws/dashboard/"

# Close codes the server uses on purpose. After a 44xx code the page does not reconnect on its own
# (see CLOSE_CODES in static/voice/realtime-client.js for what it tells the user).
CLOSE_NORMAL = 1000
CLOSE_SERVICE_RESTART = 1012  # the process is stopping: the page resumes on whichever process answers
CLOSE_TRY_AGAIN_LATER = 1013  # the channel layer is down, or another process still holds the call
CLOSE_NOT_LOGGED_IN = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_TIMEOUT = 4408  # the session's time cap
CLOSE_REPLACED = 4409  # a newer browser socket (or another process) took this call over
CLOSE_MODEL_RETIRED = 4410
# Not sent any more (an oversized frame is answered with ag2.error and ignored); the page still ends a
# call closed with it.
CLOSE_FRAME_TOO_LARGE = 4413
CLOSE_RATE_LIMITED = 4429

# Every close code above by name (NOT_LOGGED_IN...), as CLOSE in static/voice/protocol.js.
CLOSE_CODES: dict[str, int] = {
    name.removeprefix("CLOSE_"): value for name, value in dict(globals()).items()
    if name.startswith("CLOSE_") and isinstance(value, int)
}
