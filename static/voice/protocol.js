// Constants of the browser <-> server protocol (docs/protocol.md), shared by the page's modules.
// The server's copy is voice/protocol.py; tests/test_protocol_constants.py keeps the two equal.

export const PROTOCOL_VERSION = 1; // relay mode
export const SERVER_PROTOCOL_VERSION = 2; // server mode

// Close codes the server uses on purpose.
export const CLOSE = Object.freeze({
  NORMAL: 1000,
  SERVICE_RESTART: 1012, // the server process is stopping: resume at once
  TRY_AGAIN_LATER: 1013, // the channel layer is down, or another process still holds the call
  NOT_LOGGED_IN: 4401,
  FORBIDDEN: 4403,
  NOT_FOUND: 4404,
  TIMEOUT: 4408,
  REPLACED: 4409,
  MODEL_RETIRED: 4410,
  FRAME_TOO_LARGE: 4413, // no longer sent (oversized frames get an ag2.error); still understood
  RATE_LIMITED: 4429,
});
