// Browser side of a voice call (ES module, no build step, no dependencies).
//
// The browser holds the WebRTC media with OpenAI (microphone up, model audio down, the
// "oai-events" data channel); the Django server holds the session. The two talk over the
// project websocket /ws/voice/ (docs/protocol.md), in one of two modes the server chooses:
//
// Server mode (protocol 2, ag2.init {mode: "server"}): the server creates the call and hears the
// model on its own connection. The browser sends only signalling and reads the channel for display:
//   server -> browser  ag2.init | ag2.answer {sdp} | ag2.error | ag2.close
//   browser -> server  ag2.offer {sdp} | ag2.ready | ag2.client_error | ag2.hangup | ag2.text {text}
// A dropped websocket is reopened with ?resume=<session id> while the call goes on.
//
// Relay mode (protocol 1, the older flow): the browser creates the call with a client secret.
//   server -> browser  ag2.init | ag2.error | ag2.close | OpenAI client events (put on the channel)
//   browser -> server  ag2.ready | ag2.client_error | ag2.hangup | every OpenAI server event, verbatim
//
// This module knows nothing of the page beyond audio playback. It reports through DOM events
// (EventTarget + CustomEvent) that a page controller listens to; see the EVENTS comment below.

import { CLOSE, PROTOCOL_VERSION, SERVER_PROTOCOL_VERSION } from "./protocol.js";

export { PROTOCOL_VERSION, SERVER_PROTOCOL_VERSION };

export const STATES = Object.freeze(["idle", "connecting", "connected", "reconnecting", "ended", "failed"]);

// Close codes the server uses on purpose: never auto-reconnect after one of these.
export const CLOSE_CODES = Object.freeze({
  [CLOSE.NOT_LOGGED_IN]: { code: "not_logged_in", state: "failed", message: "You are not logged in any more. Please log in again and reconnect." },
  [CLOSE.FORBIDDEN]: { code: "forbidden", state: "failed", message: "The server refused this connection (not allowed from this page or account)." },
  [CLOSE.TIMEOUT]: { code: "session_limit", state: "ended", message: "The call ended: the session time limit or idle timeout was reached, or you have too many calls open." },
  [CLOSE.RATE_LIMITED]: { code: "rate_limited", state: "failed", message: "Too many calls or messages in a short time. Please wait a minute and try again." },
  [CLOSE.FRAME_TOO_LARGE]: { code: "frame_too_large", state: "failed", message: "A message was too large for the server; the call was ended." },
  [CLOSE.NOT_FOUND]: { code: "not_found", state: "failed", message: "The call could not be found on the server; start a new one." },
  [CLOSE.REPLACED]: { code: "replaced", state: "ended", message: "This call continues in another window or connection." },
});

// Friendlier words for ag2.error codes we know; anything else shows the server's own message, which is
// written for people (no addresses or setting names) and names the local emulator when that failed.
const SERVER_ERROR_MESSAGES = {
  rate_limited: "Too many requests right now. Please wait a moment and try again.",
};

// A repeating warning is reported once, then as a count once per window (a poisoned stream of frames
// must not flood the console or the page).
const WARN_WINDOW_MS = 10000;

const DEFAULT_RECONNECT = Object.freeze({ maxAttempts: 6, baseDelayMs: 500, maxDelayMs: 8000 });
const ICE_GATHERING_TIMEOUT_MS = 1500;
const MIC_RELAY_RATE = 24000;

/*
 * EVENTS (all CustomEvent; read event.detail):
 *   "state"        {state, previous, reason}            one of STATES
 *   "init"         {sessionId, model, protocol, session, mode: "server"|"relay", resumed}
 *                                                        ag2.init received (resumed: the same call, new socket)
 *   "ready"        {sessionId, callId}                   data channel open, ag2.ready sent
 *   "transcript"   {itemId, role: "user"|"assistant", text, final, truncated, failed,
 *                   previousItemId, sessionId}           interim or final text of one item
 *   "tool"         {callId, itemId, name, arguments, output, status: "started"|"called"|"completed"}
 *   "error"        {source: "client"|"server"|"openai"|"socket", code, message, detail,
 *                   stage, status, retryable, fatal}     `message` is meant for people
 *   "warning"      {message, detail}
 *   "closed"       {reason, code}                        call over for good (no reconnect)
 *   "reconnecting" {attempt, maxAttempts, delayMs}
 *   "speech"       {who: "user"|"assistant", speaking}   VAD / output audio buffer activity
 *   "mute"         {muted}
 *   "server-event" {event}                               every OpenAI server event from the channel
 */

function lastPathSegment(location) {
  if (!location) return null;
  const path = String(location).split(/[?#]/)[0].replace(/\/+$/, "");
  const seg = path.slice(path.lastIndexOf("/") + 1);
  return seg || null;
}

function defaultWebSocketUrl(path, slug) {
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  const query = slug ? `?config=${encodeURIComponent(slug)}` : "";
  return `${scheme}://${window.location.host}${path}${query}`;
}

// The same socket URL, asking to resume a server-mode session instead of starting one.
function resumeUrl(url, sessionId) {
  const resumed = new URL(url, window.location.href);
  resumed.search = "";
  resumed.searchParams.set("resume", sessionId);
  return resumed.toString();
}

// How long a closed data channel waits for the server's ag2.close before it counts as a failure
// (in server mode the server hangs up the call itself, and says why just before or after).
const SERVER_CLOSE_WAIT_MS = 1500;

function waitForIceGathering(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => { if (pc.iceGatheringState === "complete") done(); };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

function textOfContent(content) {
  if (!Array.isArray(content)) return "";
  return content
    .map((part) => (part && (part.text ?? part.transcript)) || "")
    .join("");
}

function bytesToBase64(bytes) {
  let binary = "";
  const step = 0x8000;
  for (let i = 0; i < bytes.length; i += step) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + step));
  }
  return btoa(binary);
}

export class RealtimeVoiceClient extends EventTarget {
  /**
   * @param {object} [options]
   * @param {string} [options.wsPath]  path of the server websocket (the page has it from its view)
   * @param {(slug: string) => string} [options.wsUrl]  build the full websocket URL yourself (one of the two)
   * @param {HTMLAudioElement} [options.audioElement]  where the model's audio plays (one is created if absent)
   * @param {object} [options.reconnect]  {maxAttempts=6, baseDelayMs=500, maxDelayMs=8000}; false disables
   * @param {RTCConfiguration} [options.rtcConfiguration]
   * @param {MediaTrackConstraints|boolean} [options.audioConstraints]
   * @param {boolean} [options.relayMicAudio=false]  also send input_audio_buffer.delta (PCM16 24 kHz) to the server
   * @param {boolean} [options.unloadHangup=true]  hang up on pagehide/beforeunload
   */
  constructor(options = {}) {
    super();
    if (!options.wsPath && !options.wsUrl) throw new TypeError("RealtimeVoiceClient needs options.wsPath or options.wsUrl");
    this.options = {
      wsPath: null,
      wsUrl: null,
      audioElement: null,
      rtcConfiguration: undefined,
      audioConstraints: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      relayMicAudio: false,
      unloadHangup: true,
      ...options,
    };
    this.reconnectPolicy = options.reconnect === false
      ? { ...DEFAULT_RECONNECT, maxAttempts: 0 }
      : { ...DEFAULT_RECONNECT, ...(options.reconnect || {}) };

    this.state = "idle";
    this.slug = null;
    this.ws = null;
    this.pc = null;
    this.dc = null;
    this.localStream = null;
    this.remoteStream = null;  // the model's audio, once the call is up (for a recorder, say)
    this.audioContext = null;
    this.sessionId = null;
    this.callId = null;
    this.model = null;
    this.mode = null;          // "server" | "relay", from ag2.init
    this.api = "realtime";     // "realtime" | "gpt-live", from ag2.init (server mode)
    this.live = null;          // GPT-Live: {transcript_gap_ms, typing, recorded_by}, from ag2.init
    this.muted = false;
    this.reconnectAttempt = 0;
    this.lastError = null;
    /** itemId -> {itemId, role, text, final, truncated, failed, previousItemId} for the current session */
    this.transcript = new Map();
    this.counters = { fromServer: 0, toChannel: 0, fromChannel: 0, toServer: 0 };

    this._gen = 0;             // bumps on every new websocket; stale callbacks compare and bail
    this._ending = false;      // true once the call is being ended on purpose (no reconnect)
    this._queue = [];          // OpenAI client events waiting for the data channel
    this._initEvents = [];
    this._reconnectTimer = null;
    this._items = new Map();   // itemId -> {type, role, previousItemId, name, callId}
    this._toolsByCallId = new Map();
    this._transcriptionOn = false;
    this._liveLines = {};      // GPT-Live: role -> the open transcript line {itemId, end}
    this._liveCount = 0;
    this._analyser = null;
    this._levelBuffer = null;
    this._relayNode = null;

    this._socketServerError = null; // last ag2.error on the current socket
    this._resumeId = null;          // server mode: the session a reopened socket resumes
    this._onPageHide = () => this.hangup("page_unload");
  }

  // ------------------------------------------------------------------ public API

  /** Start a call with the config `slug` (or the server's default when empty). */
  connect(slug = "") {
    if (["connecting", "connected", "reconnecting"].includes(this.state)) return;
    const unsupported = this._unsupportedReason();
    if (unsupported) {
      this._emitError({ source: "client", code: "unsupported", stage: "microphone", message: unsupported, fatal: true });
      this._setState("failed", "unsupported");
      return;
    }
    this.slug = slug || "";
    this._resumeId = null;
    this.mode = null;
    this._ending = false;
    this.reconnectAttempt = 0;
    this.lastError = null;
    this._clearReconnectTimer();
    this._listenForUnload(true);
    this._setState("connecting");
    this._openSocket();
  }

  /** End the call: tell the server, close the peer connection, stop every track, close the socket. */
  hangup(reason = "hangup") {
    const active = this.ws || this.pc || this._reconnectTimer || ["connecting", "connected", "reconnecting"].includes(this.state);
    if (!active) return;
    this._ending = true;
    this._clearReconnectTimer();
    this._sendToServer({ type: "ag2.hangup" });
    this._teardownCall();
    this._closeSocket(1000, reason);
    this._listenForUnload(false);
    if (this.state !== "failed") this._setState("ended", reason);
    this._emit("closed", { reason, code: 1000 });
  }

  /** Mute or unmute the microphone (track.enabled); survives reconnects. */
  setMuted(muted) {
    this.muted = Boolean(muted);
    if (this.localStream) {
      for (const track of this.localStream.getAudioTracks()) track.enabled = !this.muted;
    }
    this._emit("mute", { muted: this.muted });
    return this.muted;
  }

  toggleMute() {
    return this.setMuted(!this.muted);
  }

  /** Microphone level 0..1 (RMS) from the local track, or 0 when there is none. */
  getInputLevel() {
    if (!this._analyser || this.muted) return 0;
    const buf = this._levelBuffer;
    this._analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (let i = 0; i < buf.length; i++) sum += buf[i] * buf[i];
    return Math.min(1, Math.sqrt(sum / buf.length) * 4);
  }

  /** Send an OpenAI client event on the data channel (queued until it opens). */
  sendClientEvent(event) {
    if (!event || typeof event.type !== "string") throw new TypeError("a client event needs a string type");
    this._toChannel(event);
  }

  /**
   * Send a typed user turn; the model answers it as it answers speech. Returns false when there is no
   * call to send it to (nothing was sent). Relay mode: a user message and response.create on the data
   * channel. Server mode: ag2.text to the server, which sends both over its own connection to the call
   * (this page may not send model events); the line comes back on the data channel like any item.
   */
  sendText(text) {
    const line = String(text ?? "").trim();
    if (!line || this.state !== "connected") return false;
    if (this.api === "gpt-live") return false; // GPT-Live takes no typed turn (the server refuses it too)
    if (this.mode === "server") return this._sendToServer({ type: "ag2.text", text: line });
    this.sendClientEvent({
      type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text: line }] },
    });
    this.sendClientEvent({ type: "response.create" });
    return true;
  }

  /** Snapshot for tests and debugging. */
  snapshot() {
    return {
      state: this.state,
      sessionId: this.sessionId,
      callId: this.callId,
      model: this.model,
      mode: this.mode,
      api: this.api,
      muted: this.muted,
      reconnectAttempt: this.reconnectAttempt,
      pcState: this.pc ? this.pc.connectionState : null,
      iceState: this.pc ? this.pc.iceConnectionState : null,
      dcState: this.dc ? this.dc.readyState : null,
      wsState: this.ws ? this.ws.readyState : null,
      localTracks: this.localStream ? this.localStream.getTracks().map((t) => t.readyState) : [],
      queued: this._queue.length,
      counters: { ...this.counters },
    };
  }

  // ------------------------------------------------------------------ websocket

  _openSocket() {
    const gen = ++this._gen;
    let url = this.options.wsUrl ? this.options.wsUrl(this.slug) : defaultWebSocketUrl(this.options.wsPath, this.slug);
    if (this._resumeId) url = resumeUrl(url, this._resumeId);
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (err) {
      this._emitError({ source: "socket", code: "socket_error", message: "Could not open a connection to the server.", detail: String(err), fatal: true });
      this._setState("failed", "socket_error");
      return;
    }
    this.ws = ws;
    this._socketServerError = null;
    ws.addEventListener("message", (ev) => { if (gen === this._gen) this._onServerFrame(ev.data); });
    ws.addEventListener("close", (ev) => { if (gen === this._gen) this._onSocketClose(ev); });
    // "error" is always followed by "close", which decides what to do.
  }

  _closeSocket(code = 1000, reason = "") {
    const ws = this.ws;
    this.ws = null;
    this._gen++; // ignore whatever the old socket still reports
    if (ws && (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING)) {
      try { ws.close(code, String(reason).slice(0, 100)); } catch (_) { /* already closing */ }
    }
  }

  _sendToServer(obj) {
    return this._sendRawToServer(JSON.stringify(obj));
  }

  _sendRawToServer(text) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(text);
    this.counters.toServer++;
    return true;
  }

  _onServerFrame(data) {
    this.counters.fromServer++;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (_) {
      this._warn("The server sent a frame that is not JSON; ignored.", String(data).slice(0, 200));
      return;
    }
    if (!msg || typeof msg !== "object" || typeof msg.type !== "string") {
      this._warn("The server sent a frame without a type; ignored.", String(data).slice(0, 200));
      return;
    }
    if (msg.type.startsWith("ag2.")) {
      switch (msg.type) {
        case "ag2.init": this._onInit(msg); break;
        case "ag2.answer": this._onAnswer(msg); break;
        case "ag2.error": this._onServerError(msg); break;
        case "ag2.close": this._onServerClose(msg); break;
        default: this._warn(`Unknown server frame ${msg.type}; ignored.`);
      }
      return;
    }
    if (this.mode === "server") {
      // The server talks to the model itself in this mode; it never asks the page to relay anything.
      this._warn(`The server sent ${msg.type} to a server-controlled call; ignored.`);
      return;
    }
    this._toChannel(msg);
  }

  _onServerError(msg) {
    const code = msg.code || "server_error";
    this._socketServerError = msg;
    this._emitError({
      source: "server",
      code,
      message: SERVER_ERROR_MESSAGES[code] || msg.message || "The server reported an error.",
      detail: msg.message || "",
      retryable: Boolean(msg.retryable),
      fatal: false,
    });
  }

  _onServerClose(msg) {
    const reason = msg.reason || "closed";
    this._ending = true;
    this._clearReconnectTimer();
    this._teardownCall();
    this._closeSocket(1000, "ag2.close");
    this._listenForUnload(false);
    // A close before the call ever connected, or one whose reason says so, is a failure.
    const failed = /fail|error|unavailable|rate_limited|too_large|forbidden/i.test(reason)
      || this.state === "connecting" || this.state === "reconnecting";
    this._setState(this.state === "failed" || failed ? "failed" : "ended", reason);
    this._emit("closed", { reason, code: null });
  }

  _onSocketClose(ev) {
    this.ws = null;
    this._gen++;
    if (this._ending) {
      this._teardownCall();
      if (!["ended", "failed"].includes(this.state)) this._setState("ended", "closed");
      return;
    }
    const known = CLOSE_CODES[ev.code];
    if (known) {
      this._ending = true;
      this._teardownCall();
      this._listenForUnload(false);
      // The server usually says why in an ag2.error just before closing; its words are more precise.
      const said = this._socketServerError;
      const message = said ? SERVER_ERROR_MESSAGES[said.code] || said.message || known.message : known.message;
      this._emitError({ source: "socket", code: known.code, message, detail: ev.reason || (said && said.message) || "", status: ev.code, fatal: true });
      this._setState(known.state, known.code);
      this._emit("closed", { reason: known.code, code: ev.code });
      return;
    }
    if (this.mode === "server" && this.sessionId && this.pc) {
      // Server mode: the call does not depend on this socket (the media never went through it), and
      // the server keeps the session for a while. Reconnect and resume it; keep the call going.
      this._resumeId = this.sessionId;
      this._scheduleReconnect(ev);
      return;
    }
    // Unexpected drop: the server session behind this socket is gone, so the call is too.
    // Tear it down now (no zombie call) and start a fresh session on a new socket.
    this._resumeId = null;
    this._teardownCall();
    this._scheduleReconnect(ev);
  }

  _scheduleReconnect(ev) {
    const { maxAttempts, baseDelayMs, maxDelayMs } = this.reconnectPolicy;
    if (this.reconnectAttempt >= maxAttempts) {
      this._ending = true;
      this._teardownCall(); // a server-mode call kept for a resume that never came
      this._listenForUnload(false);
      this._emitError({
        source: "socket",
        code: "reconnect_failed",
        message: "The connection to the server was lost and could not be restored. Check your network and connect again.",
        detail: `close code ${ev.code}`,
        status: ev.code,
        fatal: true,
      });
      this._setState("failed", "reconnect_failed");
      this._emit("closed", { reason: "reconnect_failed", code: ev.code });
      return;
    }
    const delayMs = Math.min(maxDelayMs, baseDelayMs * 2 ** this.reconnectAttempt);
    this.reconnectAttempt++;
    const goesOn = this._resumeId ? " The call goes on." : "";
    this._emitError({
      source: "socket",
      code: "network_lost",
      message: `Connection to the server was lost.${goesOn} Reconnecting (attempt ${this.reconnectAttempt} of ${maxAttempts})…`,
      detail: `close code ${ev.code}`,
      status: ev.code,
      retryable: true,
      fatal: false,
    });
    this._setState("reconnecting", "network_lost");
    this._emit("reconnecting", { attempt: this.reconnectAttempt, maxAttempts, delayMs });
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      if (this._ending) return;
      this._openSocket();
    }, delayMs);
  }

  _clearReconnectTimer() {
    if (this._reconnectTimer) clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
  }

  // ------------------------------------------------------------------ the call

  async _onInit(msg) {
    if (msg.mode === "server") {
      this._onServerInit(msg);
      return;
    }
    this.mode = "relay";
    this.api = "realtime";
    this.live = null;
    this._resumeId = null;
    const gen = this._gen;
    if (this.pc) {
      this._warn("A second ag2.init arrived; starting over with the new session.");
      this._teardownCall();
    }
    if (msg.protocol !== PROTOCOL_VERSION) {
      this._warn(`The server speaks protocol ${msg.protocol}, this page speaks ${PROTOCOL_VERSION}.`);
    }
    const config = msg.config || {};
    this.sessionId = msg.session_id || null;
    this.callId = null;
    this.model = config.model || (config.session && config.session.model) || null;
    this._initEvents = Array.isArray(msg.init) ? msg.init.slice() : [];
    this.transcript = new Map();
    this._items = new Map();
    this._toolsByCallId = new Map();
    this._transcriptionOn = Boolean(config.session?.audio?.input?.transcription);
    this._emit("init", { sessionId: this.sessionId, model: this.model, protocol: msg.protocol, session: config.session || null, mode: "relay", resumed: false });
    if (!config.value || !config.calls_url) {
      this._failCall("sdp", "The server did not send what is needed to start the call.", "ag2.init without config.value or config.calls_url");
      return;
    }
    try {
      await this._startCall(gen, config);
    } catch (err) {
      if (gen !== this._gen) return;
      this._failCall("sdp", "The call could not be set up.", String(err && err.message || err));
    }
  }

  // ------------------------------------------------------------------ server mode (protocol 2)

  _onServerInit(msg) {
    const session = msg.session || {};
    if (msg.resumed) {
      this._resumeId = null;
      if (this.pc && msg.session_id === this.sessionId) {
        // The same call, seen from a new socket: nothing to set up again.
        this.reconnectAttempt = 0;
        this._emit("init", { sessionId: this.sessionId, model: this.model, protocol: msg.protocol, session, mode: "server", api: this.api, live: this.live, resumed: true });
        if (this.dc && this.dc.readyState === "open") this._setState("connected", "resumed");
        return;
      }
      // The server kept a call this page no longer holds (the media is gone): end it there.
      this._warn("The server resumed a call this page no longer holds; ending it.");
      this._sendToServer({ type: "ag2.hangup" });
      return;
    }
    const gen = this._gen;
    if (this.pc) {
      this._warn("A second ag2.init arrived; starting over with the new session.");
      this._teardownCall();
    }
    if (msg.protocol !== SERVER_PROTOCOL_VERSION) {
      this._warn(`The server speaks protocol ${msg.protocol}, this page speaks ${SERVER_PROTOCOL_VERSION} for server-controlled calls.`);
    }
    this.mode = "server";
    this.api = msg.api === "gpt-live" ? "gpt-live" : "realtime";
    this.live = this.api === "gpt-live" ? { transcript_gap_ms: 2000, typing: false, recorded_by: "server", ...(msg.live || {}) } : null;
    this._liveLines = {};
    this._liveCount = 0;
    this.sessionId = msg.session_id || null;
    this.callId = null; // the server keeps the call id to itself
    this.model = session.model || null;
    this._initEvents = [];
    this.transcript = new Map();
    this._items = new Map();
    this._toolsByCallId = new Map();
    this._transcriptionOn = false;
    this._emit("init", { sessionId: this.sessionId, model: this.model, protocol: msg.protocol, session, mode: "server", api: this.api, live: this.live, resumed: false });
    this._startCall(gen, null).catch((err) => {
      if (gen !== this._gen) return;
      this._failCall("sdp", "The call could not be set up.", String(err && err.message || err));
    });
  }

  async _onAnswer(msg) {
    const pc = this.pc;
    if (this.mode !== "server" || !pc || pc.signalingState !== "have-local-offer") {
      this._warn("An unexpected ag2.answer arrived; ignored.");
      return;
    }
    if (typeof msg.sdp !== "string" || !msg.sdp) {
      this._failCall("sdp", "The server sent an empty call answer.", "ag2.answer without sdp");
      return;
    }
    try {
      await pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
    } catch (err) {
      if (pc !== this.pc) return;
      this._failCall("sdp", "The call could not be set up.", String(err && err.message || err));
    }
  }

  // ------------------------------------------------------------------ both modes

  /** Media, channel and offer. `config` (relay mode) holds the client secret for OpenAI's /calls;
   *  without it (server mode) the offer goes to the server, which answers with ag2.answer. */
  async _startCall(gen, config) {
    const pc = new RTCPeerConnection(this.options.rtcConfiguration);
    this.pc = pc;

    pc.addEventListener("track", (ev) => {
      if (pc !== this.pc) return;
      const audio = this._audioElement();
      this.remoteStream = ev.streams[0] || new MediaStream([ev.track]);
      audio.srcObject = this.remoteStream;
      const played = audio.play();
      if (played && played.catch) played.catch((err) => this._warn("The browser blocked audio playback; click the page to allow it.", String(err)));
    });
    pc.addEventListener("iceconnectionstatechange", () => {
      if (pc !== this.pc) return;
      if (pc.iceConnectionState === "failed") {
        this._failCall("ice", "The audio connection could not be established or was lost (network or firewall).", "iceConnectionState failed");
      }
    });
    pc.addEventListener("connectionstatechange", () => {
      if (pc !== this.pc) return;
      if (pc.connectionState === "failed") {
        this._failCall("ice", "The audio connection could not be established or was lost (network or firewall).", "connectionState failed");
      }
    });

    // Microphone.
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: this.options.audioConstraints, video: false });
    } catch (err) {
      if (pc !== this.pc || gen !== this._gen) return;
      const name = err && err.name;
      const message = name === "NotAllowedError" || name === "SecurityError"
        ? "Microphone access was denied"
        : name === "NotFoundError" || name === "OverconstrainedError"
          ? "No microphone was found"
          : name === "NotReadableError"
            ? "The microphone is in use by another application or could not be started"
            : "The microphone could not be used";
      this._failCall("microphone", message, `${name || "Error"}: ${err && err.message}`);
      return;
    }
    if (pc !== this.pc || gen !== this._gen) {
      stream.getTracks().forEach((t) => t.stop());
      return;
    }
    this.localStream = stream;
    for (const track of stream.getAudioTracks()) {
      track.enabled = !this.muted;
      pc.addTrack(track, stream);
    }
    this._startAudioAnalysis(stream);

    // Data channel.
    const dc = pc.createDataChannel("oai-events");
    this.dc = dc;
    dc.addEventListener("open", () => { if (dc === this.dc) this._onChannelOpen(); });
    dc.addEventListener("message", (ev) => { if (dc === this.dc) this._onChannelMessage(ev.data); });
    dc.addEventListener("close", () => {
      if (dc !== this.dc || this._ending) return;
      // The server went away first (a restart closes our socket, then hangs up the call): let the
      // socket's close handler reconnect rather than reporting the call as failed.
      if (this._socketGone()) return;
      if (this.mode === "server") {
        // The server hangs up server-mode calls itself and says why: give its ag2.close a moment.
        setTimeout(() => {
          if (dc !== this.dc || this._ending || this._socketGone()) return;
          this._failCall("datachannel", "The voice service closed the call unexpectedly.", "data channel closed");
        }, SERVER_CLOSE_WAIT_MS);
        return;
      }
      this._failCall("datachannel", "The voice service closed the call unexpectedly.", "data channel closed");
    });
    dc.addEventListener("error", (ev) => {
      if (dc !== this.dc || this._ending || this._socketGone()) return;
      const detail = ev && ev.error ? String(ev.error.message || ev.error) : "data channel error";
      this._failCall("datachannel", "The call's event channel failed.", detail);
    });

    // Offer -> OpenAI /calls -> answer (server mode: through the server).
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    await waitForIceGathering(pc, ICE_GATHERING_TIMEOUT_MS);
    if (pc !== this.pc) return;
    if (!config) {
      if (!this._sendToServer({ type: "ag2.offer", sdp: pc.localDescription.sdp })) {
        this._failCall("sdp", "The connection to the server closed before the call could start.", "socket closed before ag2.offer");
      }
      return;
    }

    let response;
    try {
      response = await fetch(config.calls_url, {
        method: "POST",
        body: pc.localDescription.sdp,
        headers: { Authorization: `Bearer ${config.value}`, "Content-Type": "application/sdp" },
        cache: "no-store",
        credentials: "omit",
      });
    } catch (err) {
      if (pc !== this.pc) return;
      this._failCall("sdp", "The voice service could not be reached. Check your network and try again.", String(err && err.message || err));
      return;
    }
    const body = await response.text().catch(() => "");
    if (pc !== this.pc) return;
    if (!response.ok) {
      let detail = "";
      try { detail = JSON.parse(body)?.error?.message || ""; } catch (_) { /* not JSON */ }
      if (!detail) detail = response.statusText || `HTTP ${response.status}`;
      const message = response.status >= 500
        ? "The voice service is unavailable right now. Please try again in a moment."
        : response.status === 401 || response.status === 403
          ? `The voice service refused the call: ${detail}`
          : response.status === 429
            ? "The voice service is busy (rate limited). Please try again shortly."
            : `The voice service rejected the call: ${detail}`;
      this._failCall("sdp", message, detail, { status: response.status, serverMessage: detail });
      return;
    }
    this.callId = lastPathSegment(response.headers.get("Location"));
    await pc.setRemoteDescription({ type: "answer", sdp: body });
  }

  _onChannelOpen() {
    if (this.mode === "server") {
      this._sendToServer({ type: "ag2.ready" });
      this.reconnectAttempt = 0;
      this._setState("connected");
      this._emit("ready", { sessionId: this.sessionId, callId: null });
      return;
    }
    for (const event of this._initEvents) this._sendOnChannel(event);
    this._initEvents = [];
    const queued = this._queue;
    this._queue = [];
    for (const event of queued) this._sendOnChannel(event);
    this._sendToServer({ type: "ag2.ready", call_id: this.callId });
    this.reconnectAttempt = 0;
    this._setState("connected");
    this._emit("ready", { sessionId: this.sessionId, callId: this.callId });
  }

  _toChannel(event) {
    if (this.dc && this.dc.readyState === "open") this._sendOnChannel(event);
    else this._queue.push(event);
  }

  _sendOnChannel(event) {
    try {
      this.dc.send(JSON.stringify(event));
      this.counters.toChannel++;
    } catch (err) {
      this._warn(`Could not send ${event.type} on the data channel.`, String(err));
    }
  }

  _onChannelMessage(data) {
    this.counters.fromChannel++;
    if (typeof data !== "string") {
      this._warn("The voice service sent a binary message on the event channel; ignored.");
      return;
    }
    let event;
    try {
      event = JSON.parse(data);
    } catch (_) {
      this._warn("The voice service sent an event that is not JSON; not forwarded.", data.slice(0, 200));
      return;
    }
    if (this.mode !== "server") this._sendRawToServer(data); // relay mode: verbatim; server mode: display only
    if (event && typeof event === "object" && typeof event.type === "string") this._handleModelEvent(event);
  }

  /** True once the server socket is closing or closed: its close handler decides what happens next. */
  _socketGone() {
    return !this.ws || this.ws.readyState === WebSocket.CLOSING || this.ws.readyState === WebSocket.CLOSED;
  }

  /** A call-level failure: report it to the server and the page, end the call, don't reconnect. */
  _failCall(stage, message, detail = "", extra = {}) {
    if (this._ending) return;
    this._ending = true;
    this._clearReconnectTimer();
    this._sendToServer({ type: "ag2.client_error", stage, message: extra.serverMessage || message });
    const code = {
      microphone: message === "Microphone access was denied" ? "microphone_denied"
        : message === "No microphone was found" ? "microphone_missing" : "microphone_error",
      sdp: extra.status >= 500 ? "service_unavailable" : "sdp_failed",
      ice: "ice_failed",
      datachannel: "datachannel_failed",
    }[stage] || `${stage}_failed`;
    this._emitError({ source: "client", code, stage, message, detail, status: extra.status ?? null, fatal: true });
    this._teardownCall();
    this._closeSocket(1000, `client_error:${stage}`);
    this._listenForUnload(false);
    this._setState("failed", code);
    this._emit("closed", { reason: code, code: null });
  }

  _teardownCall() {
    // GPT-Live: a call that ends ends its open lines (session.closed may not reach a channel closing now).
    for (const role of Object.keys(this._liveLines)) this._endLiveLine(role);
    const pc = this.pc;
    const dc = this.dc;
    this.pc = null;
    this.dc = null;
    this._queue = [];
    this._initEvents = [];
    if (dc) { try { dc.close(); } catch (_) { /* closed */ } }
    if (pc) {
      for (const sender of pc.getSenders()) { if (sender.track) sender.track.stop(); }
      for (const receiver of pc.getReceivers()) { if (receiver.track) receiver.track.stop(); }
      try { pc.close(); } catch (_) { /* closed */ }
    }
    if (this.localStream) {
      for (const track of this.localStream.getTracks()) track.stop();
      this.localStream = null;
    }
    this.remoteStream = null;
    this._stopAudioAnalysis();
    const audio = this.options.audioElement;
    if (audio) {
      try { audio.pause(); } catch (_) { /* not playing */ }
      audio.srcObject = null;
    }
  }

  // ------------------------------------------------------------------ model events -> UI events

  _handleModelEvent(ev) {
    this._emit("server-event", { event: ev });
    switch (ev.type) {
      case "session.created":
      case "session.updated":
        if (ev.session?.audio?.input && "transcription" in ev.session.audio.input) {
          this._transcriptionOn = Boolean(ev.session.audio.input.transcription);
        }
        break;

      case "conversation.item.added":
      case "conversation.item.created":
      case "conversation.item.done":
        this._onItem(ev.item, ev.previous_item_id, ev.type === "conversation.item.done");
        break;
      case "response.output_item.added":
      case "response.output_item.done":
        this._onItem(ev.item, undefined, ev.type === "response.output_item.done");
        break;

      case "conversation.item.input_audio_transcription.delta":
        this._appendText(ev.item_id, "user", ev.delta);
        break;
      case "conversation.item.input_audio_transcription.completed":
        this._finishText(ev.item_id, "user", ev.transcript);
        break;
      case "conversation.item.input_audio_transcription.failed":
        this._updateItem(ev.item_id, "user", { final: true, failed: true });
        break;

      case "response.output_audio_transcript.delta":
      case "response.audio_transcript.delta":
      case "response.output_text.delta":
      case "response.text.delta":
        this._appendText(ev.item_id, "assistant", ev.delta);
        break;
      case "response.output_audio_transcript.done":
      case "response.audio_transcript.done":
        this._finishText(ev.item_id, "assistant", ev.transcript);
        break;
      case "response.output_text.done":
      case "response.text.done":
        this._finishText(ev.item_id, "assistant", ev.text);
        break;

      // GPT-Live (docs/gpt-live.md): timed fragments with no item and no done event, made into lines by
      // the server's rule, so that the page shows the lines the record keeps.
      case "session.input_transcript.delta":
        this._liveFragment("user", ev);
        break;
      case "session.output_transcript.delta":
        this._liveFragment("assistant", ev);
        break;
      case "session.closed":
        for (const role of Object.keys(this._liveLines)) this._endLiveLine(role);
        break;

      case "conversation.item.truncated":
        this._updateItem(ev.item_id, this.transcript.get(ev.item_id)?.role || "assistant", { truncated: true, final: true });
        break;

      case "response.function_call_arguments.done": {
        const item = this._items.get(ev.item_id) || {};
        const callId = ev.call_id || item.callId || null;
        this._emitTool({ callId, itemId: ev.item_id || null, name: ev.name || item.name || null, arguments: ev.arguments ?? null, output: null, status: "called" });
        break;
      }

      case "input_audio_buffer.speech_started":
        this._emit("speech", { who: "user", speaking: true });
        break;
      case "input_audio_buffer.speech_stopped":
        this._emit("speech", { who: "user", speaking: false });
        break;
      case "output_audio_buffer.started":
        this._emit("speech", { who: "assistant", speaking: true });
        break;
      case "output_audio_buffer.stopped":
      case "output_audio_buffer.cleared":
        this._emit("speech", { who: "assistant", speaking: false });
        break;

      case "response.done": {
        const response = ev.response || {};
        if (response.status === "failed") {
          const err = response.status_details?.error || {};
          this._emitError({ source: "openai", code: err.code || "response_failed", message: `The model could not answer: ${err.message || "the response failed"}.`, detail: JSON.stringify(response.status_details || {}), retryable: true, fatal: false });
        }
        break;
      }

      case "error": {
        const err = ev.error || {};
        this._emitError({ source: "openai", code: err.code || err.type || "openai_error", message: `The voice service reported an error: ${err.message || "unknown error"}`, detail: JSON.stringify(err), retryable: true, fatal: false });
        break;
      }
      default:
        break;
    }
  }

  _onItem(item, previousItemId, done) {
    if (!item || !item.id) return;
    const known = this._items.get(item.id) || {};
    const info = {
      ...known,
      type: item.type || known.type,
      role: item.role || known.role,
      name: item.name || known.name,
      callId: item.call_id || known.callId,
      previousItemId: previousItemId !== undefined ? previousItemId : known.previousItemId,
    };
    this._items.set(item.id, info);

    if (info.type === "message" && (info.role === "user" || info.role === "assistant")) {
      const text = textOfContent(item.content);
      const hasAudio = Array.isArray(item.content) && item.content.some((p) => p && /audio/.test(p.type || ""));
      const current = this.transcript.get(item.id);
      const patch = { previousItemId: info.previousItemId ?? null };
      if (text && !(current && current.final)) patch.text = text;
      if (!hasAudio && text) patch.final = true;                       // typed text: final at once
      if (done && info.role === "assistant" && item.status === "completed" && text) patch.final = true;
      if (done && info.role === "user" && hasAudio && !text && !this._transcriptionOn) patch.final = true; // nothing will come
      this._updateItem(item.id, info.role, patch);
    } else if (info.type === "function_call") {
      const key = info.callId || item.id;
      if (!this._toolsByCallId.has(key)) {
        this._toolsByCallId.set(key, true);
        this._emitTool({ callId: info.callId || null, itemId: item.id, name: info.name || null, arguments: item.arguments || null, output: null, status: "started" });
      }
    } else if (info.type === "function_call_output") {
      const call = [...this._items.values()].find((i) => i.type === "function_call" && i.callId === item.call_id);
      this._emitTool({ callId: item.call_id || null, itemId: item.id, name: call?.name || null, arguments: null, output: item.output ?? null, status: "completed" });
    }
  }

  /** A GPT-Live fragment joins its speaker's open line when it starts within the gap of that line's end;
   *  the other speaker's line ends once a fragment starts later than its end plus the gap. */
  _liveFragment(role, ev) {
    if (typeof ev.delta !== "string") return;
    const gap = Number(this.live?.transcript_gap_ms) || 2000;
    const lines = this._liveLines;
    const start = Number.isFinite(ev.start_ms) ? ev.start_ms : Math.max(0, ...Object.values(lines).map((l) => l.end));
    const end = Number.isFinite(ev.end_ms) ? ev.end_ms : start;
    const other = role === "user" ? "assistant" : "user";
    if (lines[other] && start > lines[other].end + gap) this._endLiveLine(other);
    let line = lines[role];
    if (line && start > line.end + gap) {
      this._endLiveLine(role);
      line = null;
    }
    if (!line) {
      this._liveCount += 1;
      const previous = [...this.transcript.keys()].pop() ?? null;
      line = { itemId: `live_${role === "user" ? "in" : "out"}_${this._liveCount}`, end };
      lines[role] = line;
      this._updateItem(line.itemId, role, { previousItemId: previous });
    }
    line.end = Math.max(line.end, end);
    this._appendText(line.itemId, role, ev.delta); // as the record joins them: the fragments carry their spaces
    this._emit("speech", { who: role, speaking: true });
  }

  _endLiveLine(role) {
    const line = this._liveLines[role];
    if (!line) return;
    delete this._liveLines[role];
    this._finishText(line.itemId, role);
    this._emit("speech", { who: role, speaking: false });
  }

  _appendText(itemId, role, delta) {
    if (!itemId || typeof delta !== "string") return;
    const current = this.transcript.get(itemId);
    if (current && current.final) return; // a late delta never undoes a final text
    this._updateItem(itemId, role, { text: (current?.text || "") + delta });
  }

  _finishText(itemId, role, text) {
    if (!itemId) return;
    const patch = { final: true };
    if (typeof text === "string") patch.text = text;
    this._updateItem(itemId, role, patch);
  }

  _updateItem(itemId, role, patch) {
    if (!itemId) return;
    const known = this._items.get(itemId);
    const current = this.transcript.get(itemId) || {
      itemId,
      role: known?.role || role,
      text: "",
      final: false,
      truncated: false,
      failed: false,
      previousItemId: known?.previousItemId ?? null,
    };
    const next = { ...current, ...patch };
    if (current.truncated) next.truncated = true;
    if (current.final && patch.final === undefined) next.final = true;
    this.transcript.set(itemId, next);
    this._emit("transcript", { ...next, sessionId: this.sessionId });
  }

  _emitTool(detail) {
    this._emit("tool", { ...detail, sessionId: this.sessionId });
  }

  // ------------------------------------------------------------------ audio helpers

  _audioElement() {
    if (!this.options.audioElement) {
      const audio = document.createElement("audio");
      audio.autoplay = true;
      audio.hidden = true;
      document.body.appendChild(audio);
      this.options.audioElement = audio;
    }
    return this.options.audioElement;
  }

  _startAudioAnalysis(stream) {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    try {
      const ctx = new Ctx();
      this.audioContext = ctx;
      if (ctx.state === "suspended") ctx.resume().catch(() => {});
      const source = ctx.createMediaStreamSource(stream);
      const analyser = ctx.createAnalyser();
      analyser.fftSize = 1024;
      source.connect(analyser);
      this._analyser = analyser;
      this._levelBuffer = new Float32Array(analyser.fftSize);
      if (this.options.relayMicAudio) this._startMicRelay(ctx, source);
    } catch (err) {
      this._warn("Microphone level metering is not available.", String(err));
    }
  }

  // Optional: copy the microphone as PCM16 24 kHz to the server (input_audio_buffer.delta).
  // ScriptProcessorNode is deprecated but needs no extra file; this path is off by default.
  _startMicRelay(ctx, source) {
    const node = ctx.createScriptProcessor(4096, 1, 1);
    const sink = ctx.createGain();
    sink.gain.value = 0;
    const ratio = ctx.sampleRate / MIC_RELAY_RATE;
    node.onaudioprocess = (e) => {
      if (this.muted || this.state !== "connected") return;
      const input = e.inputBuffer.getChannelData(0);
      const outLength = Math.floor(input.length / ratio);
      const pcm = new Int16Array(outLength);
      for (let i = 0; i < outLength; i++) {
        const s = Math.max(-1, Math.min(1, input[Math.floor(i * ratio)]));
        pcm[i] = s < 0 ? s * 0x8000 : s * 0x7fff;
      }
      this._sendToServer({ type: "input_audio_buffer.delta", delta: bytesToBase64(new Uint8Array(pcm.buffer)) });
    };
    source.connect(node);
    node.connect(sink);
    sink.connect(ctx.destination);
    this._relayNode = node;
  }

  _stopAudioAnalysis() {
    if (this._relayNode) {
      this._relayNode.onaudioprocess = null;
      try { this._relayNode.disconnect(); } catch (_) { /* gone */ }
      this._relayNode = null;
    }
    this._analyser = null;
    if (this.audioContext) {
      const ctx = this.audioContext;
      this.audioContext = null;
      if (ctx.state !== "closed") ctx.close().catch(() => {});
    }
  }

  // ------------------------------------------------------------------ small things

  _unsupportedReason() {
    if (typeof RTCPeerConnection === "undefined") return "This browser does not support voice calls (WebRTC is missing).";
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      return window.isSecureContext === false
        ? "Microphone access needs a secure page (https). Open this site over https and try again."
        : "This browser does not allow microphone access.";
    }
    if (typeof WebSocket === "undefined") return "This browser does not support WebSockets.";
    return null;
  }

  _listenForUnload(on) {
    if (!this.options.unloadHangup) return;
    const method = on ? "addEventListener" : "removeEventListener";
    window[method]("pagehide", this._onPageHide);
    window[method]("beforeunload", this._onPageHide);
  }

  _setState(state, reason = null) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this._emit("state", { state, previous, reason });
  }

  _emitError(detail) {
    const full = { source: "client", code: "error", message: "", detail: "", stage: null, status: null, retryable: false, fatal: false, ...detail };
    this.lastError = full;
    this._emit("error", full);
  }

  _warn(message, detail = "") {
    const now = Date.now();
    if (!this._warnings) this._warnings = new Map();
    const seen = this._warnings.get(message);
    if (seen && now - seen.at < WARN_WINDOW_MS) {
      seen.count++;
      return;
    }
    const repeated = seen ? seen.count : 0;
    this._warnings.set(message, { at: now, count: 0 });
    const more = repeated ? ` (${repeated} more in the last ${Math.round((now - seen.at) / 1000)} s)` : "";
    console.warn(`[voice] ${message}${more}`, detail);
    this._emit("warning", { message, detail, repeated });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

export default RealtimeVoiceClient;
