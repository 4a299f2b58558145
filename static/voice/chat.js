// Page controller for templates/voice/chat.html: wires the buttons, the pickers, the typed turn and
// the transcript to RealtimeVoiceClient. All protocol work lives in realtime-client.js.
//
// Accessibility: the transcript is not a live region (it changes word by word while the model speaks);
// each finished line is added once to #announcer instead. #error, #notice and #tool-activity are in the
// page from the start, empty, so that screen readers announce what they later say. When a button that
// has focus becomes disabled (Connect, Hang up, Mute), focus moves to the button that comes next.
import { RealtimeVoiceClient } from "./realtime-client.js";
import { endReasonText, formatCost, formatDuration } from "./format.js";
import { setupRecording } from "./chat-recording.js";
import { atEnd, lineNote, makeLine, setLineState, setNote, truncate } from "./transcript-view.js";

const STATE_LABELS = {
  idle: "Not connected",
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  ended: "Call ended",
  failed: "Failed",
};
const ACTIVE_STATES = new Set(["connecting", "connected", "reconnecting"]);
const ROLE_LABELS = { user: "You", assistant: "Assistant", tool: "Tool" };
const ANNOUNCED_LINES_KEPT = 6;
const MIC_STORAGE_KEY = "voice.microphone";
const COST_AFTER_RESPONSE_MS = 1000; // the record is written in batches every quarter second or so
const COST_POLL_MS = 10_000;

const $ = (id) => document.getElementById(id);
const els = {
  config: $("config"),
  description: $("config-description"),
  mic: $("mic"),
  micHelp: $("mic-help"),
  connect: $("connect"),
  hangup: $("hangup"),
  mute: $("mute"),
  state: $("state"),
  timer: $("call-timer"),
  cost: $("call-cost"),
  micLevel: $("mic-level"),
  activity: $("activity"),
  sessionInfo: $("session-info"),
  error: $("error"),
  notice: $("notice"),
  tool: $("tool-activity"),
  transcript: $("transcript"),
  announcer: $("announcer"),
  sayForm: $("say-form"),
  say: $("say"),
  saySend: $("say-send"),
  sayHelp: $("say-help"),
  audio: $("remote-audio"),
};
const pageData = JSON.parse($("chat-data")?.textContent || "{}");

// The microphone constraints the client was built with; a chosen device is added to them per call.
const client = new RealtimeVoiceClient({ audioElement: els.audio, wsPath: pageData.socket_path });
const baseAudioConstraints = client.options.audioConstraints;
window.voiceClient = client; // for end-to-end tests and debugging
const recording = setupRecording(client, els.config, pageData);

let sessionsThisCall = 0;
let meterFrame = 0;
let meterShown = 0;
let callStartedAt = null; // first "connected" of this call (a reconnect keeps counting)
let callEndedAt = null;
let timerInterval = 0;
let costTimer = 0;
let costPoll = 0;
// The last line typed, put back in the box if the server refuses it (too fast, too long, no call yet).
let lastTyped = "";
const TYPED_REFUSALS = new Set(["invalid_text", "text_rate_limited", "call_not_ready", "text_not_sent", "text_not_supported"]);
const speaking = { user: false, assistant: false };
const announced = new Set();

// ---------------------------------------------------------------- pickers

function hasConfigs() {
  return Boolean(els.config && els.config.options.length && els.config.value);
}

function showDescription() {
  const option = els.config && els.config.selectedOptions[0];
  if (!option || !option.value) {
    els.description.textContent = "";
    return;
  }
  const { description, model, voice } = option.dataset;
  const meta = [model && `model ${model}`, voice && `voice ${voice}`].filter(Boolean).join(" · ");
  els.description.textContent = [description, meta].filter(Boolean).join(" — ");
}

function preselectFromUrl() {
  const wanted = new URLSearchParams(window.location.search).get("config");
  if (!wanted || !els.config) return;
  const match = [...els.config.options].find((o) => o.value === wanted);
  if (match) els.config.value = wanted;
}

async function listMicrophones() {
  if (!navigator.mediaDevices?.enumerateDevices) {
    els.micHelp.textContent = "This browser cannot list microphones: its default one is used.";
    return;
  }
  let devices;
  try {
    devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "audioinput");
  } catch {
    return;
  }
  const wanted = els.mic.value || localStorage.getItem(MIC_STORAGE_KEY) || "";
  const options = [new Option("Default microphone", "")];
  let named = false;
  devices.forEach((device, index) => {
    // Before the browser may use a microphone, devices have no names (and sometimes no ids).
    if (!device.deviceId || device.deviceId === "default") return;
    named ||= Boolean(device.label);
    options.push(new Option(device.label || `Microphone ${index + 1}`, device.deviceId));
  });
  els.mic.replaceChildren(...options);
  els.mic.value = options.some((o) => o.value === wanted) ? wanted : "";
  els.micHelp.textContent = named ? "" : "Names of microphones appear once the browser may use one.";
}

function chosenAudioConstraints() {
  const deviceId = els.mic.value;
  if (!deviceId) return baseAudioConstraints;
  const base = typeof baseAudioConstraints === "object" && baseAudioConstraints ? baseAudioConstraints : {};
  return { ...base, deviceId: { exact: deviceId } };
}

// ---------------------------------------------------------------- messages

function showError(detail) {
  els.error.dataset.code = detail.code || "";
  els.error.dataset.retryable = String(Boolean(detail.retryable));
  els.error.textContent = detail.message || "Something went wrong.";
}

function clearError(onlyCode = null) {
  if (onlyCode && els.error.dataset.code !== onlyCode) return;
  els.error.textContent = "";
  els.error.dataset.code = "";
  els.error.dataset.retryable = "false";
}

function showNotice(text) {
  els.notice.textContent = text;
}

function showTool(text) {
  els.tool.textContent = text;
}

function announce(text) {
  const line = document.createElement("p");
  line.textContent = text;
  els.announcer.append(line);
  while (els.announcer.children.length > ANNOUNCED_LINES_KEPT) els.announcer.firstElementChild.remove();
}

// ---------------------------------------------------------------- state

function renderState(state) {
  const focused = document.activeElement;
  els.state.textContent = STATE_LABELS[state] || state;
  els.state.dataset.state = state;
  const active = ACTIVE_STATES.has(state);
  els.connect.disabled = active || !hasConfigs();
  els.hangup.disabled = !active;
  els.mute.disabled = !active;
  if (els.config) els.config.disabled = active || !hasConfigs();
  els.mic.disabled = active;
  if (active) startMeter();
  else stopMeter();
  if (!active) {
    speaking.user = speaking.assistant = false;
    renderActivity();
  }
  renderTyping(state);
  renderTimer(state);
  keepFocus(focused, active);
}

// A control that had focus and is now disabled drops it to <body>: put it where the next step is.
function keepFocus(focused, active) {
  if (!focused || focused === document.body || !focused.disabled) return;
  const next = active ? els.hangup : els.connect.disabled ? els.config : els.connect;
  if (next && !next.disabled) next.focus();
}

function renderTyping(state) {
  if (client.api === "gpt-live" && ACTIVE_STATES.has(state)) {
    // GPT-Live takes no typed turn: it only listens (docs/gpt-live.md).
    els.say.disabled = true;
    els.saySend.disabled = true;
    els.sayHelp.textContent = "This assistant only listens: typing is not available during this call. Say it instead.";
    return;
  }
  const ready = state === "connected";
  els.say.disabled = !ready;
  els.saySend.disabled = !ready;
  if (ready) {
    els.sayHelp.textContent = "What you type is sent as your turn when you press Enter, and the assistant answers it.";
  } else if (ACTIVE_STATES.has(state)) {
    els.sayHelp.textContent = "Typing works once the call is connected.";
  } else {
    els.sayHelp.textContent = "Connect first; then what you type is sent as your turn.";
  }
}

function renderSessionInfo() {
  const parts = [];
  if (client.model) parts.push(`model ${client.model}`);
  // Ids are for staff reading logs; other people have no use for them.
  if (pageData.show_ids && client.sessionId) parts.push(`session ${client.sessionId}`);
  if (pageData.show_ids && client.callId) parts.push(`call ${client.callId}`);
  els.sessionInfo.textContent = parts.join(" · ");
}

function renderActivity() {
  els.activity.textContent = speaking.assistant ? "Assistant is speaking…" : speaking.user ? "Listening…" : "";
}

// ---------------------------------------------------------------- call timer and cost

function renderTimer(state) {
  if (state === "connected" && callStartedAt === null) callStartedAt = Date.now();
  if (ACTIVE_STATES.has(state)) {
    callEndedAt = null;
    if (!timerInterval) timerInterval = setInterval(tickTimer, 1000);
  } else {
    if (callStartedAt !== null && callEndedAt === null) callEndedAt = Date.now();
    clearInterval(timerInterval);
    timerInterval = 0;
  }
  tickTimer();
}

function tickTimer() {
  const elapsed = callStartedAt === null ? 0 : (callEndedAt ?? Date.now()) - callStartedAt;
  els.timer.textContent = formatDuration(elapsed);
  els.timer.dateTime = `PT${Math.floor(elapsed / 1000)}S`;
}

function totalsUrl() {
  const id = client.sessionId;
  if (!id || !pageData.totals_url) return null;
  return pageData.totals_url.replace(pageData.any_session, encodeURIComponent(id));
}

async function refreshCost() {
  const url = totalsUrl();
  if (!url || callStartedAt === null) return; // a call that never connected cost nothing worth showing
  try {
    const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!response.ok) return;
    const totals = await response.json();
    els.cost.hidden = false;
    els.cost.dataset.cost = totals.cost_usd ?? "";
    els.cost.textContent = totals.cost_usd === null
      ? "Cost: not priced for this model"
      : `Cost so far ${formatCost(totals.cost_usd)}`;
  } catch {
    // Offline for a moment: the next answer or the poll tries again.
  }
}

function refreshCostSoon(delay = COST_AFTER_RESPONSE_MS) {
  clearTimeout(costTimer);
  costTimer = setTimeout(refreshCost, delay);
}

// ---------------------------------------------------------------- microphone meter

function startMeter() {
  if (meterFrame) return;
  const tick = () => {
    // getInputLevel() is the RMS times 4, capped at 1. Speech sits around -40..-15 dBFS, which on a
    // linear scale barely moves the bar: show decibels from -60 (empty) to -12 (full) instead, rising
    // at once and falling slowly, as level meters do.
    const rms = client.getInputLevel() / 4;
    const db = rms > 0 ? 20 * Math.log10(rms) : -100;
    const level = Math.min(1, Math.max(0, (db + 60) / 48));
    meterShown = Math.max(level, meterShown * 0.9);
    els.micLevel.style.width = `${Math.round(meterShown * 100)}%`;
    meterFrame = requestAnimationFrame(tick);
  };
  meterFrame = requestAnimationFrame(tick);
}

function stopMeter() {
  if (meterFrame) cancelAnimationFrame(meterFrame);
  meterFrame = 0;
  meterShown = 0;
  els.micLevel.style.width = "0";
}

// ---------------------------------------------------------------- transcript

function bubbleSelector(sessionId, attr, value) {
  return `.bubble[data-session-id="${CSS.escape(sessionId || "")}"][${attr}="${CSS.escape(value)}"]`;
}

function isScrolledToEnd() {
  return atEnd(els.transcript);
}

function placeBubble(li, sessionId, itemId, previousItemId) {
  const t = els.transcript;
  const stick = isScrolledToEnd();
  const previous = previousItemId && t.querySelector(bubbleSelector(sessionId, "data-item-id", previousItemId));
  // Input transcription can arrive after the reply to it: then the reply's bubble names this
  // item as its predecessor, and this bubble goes right before it.
  const next = !previous && t.querySelector(bubbleSelector(sessionId, "data-prev", itemId));
  if (previous) previous.after(li);
  else if (next) next.before(li);
  else t.appendChild(li);
  if (stick) t.scrollTop = t.scrollHeight;
}

function makeBubble(role, sessionId, itemId, previousItemId) {
  const li = makeLine({ role, who: ROLE_LABELS[role] || role, itemId });
  li.dataset.sessionId = sessionId || "";
  if (previousItemId) li.dataset.prev = previousItemId;
  return li;
}

function renderTranscript(d) {
  if (d.role !== "user" && d.role !== "assistant") return;
  let li = els.transcript.querySelector(bubbleSelector(d.sessionId, "data-item-id", d.itemId));
  if (!li) {
    li = makeBubble(d.role, d.sessionId, d.itemId, d.previousItemId);
    placeBubble(li, d.sessionId, d.itemId, d.previousItemId);
  } else if (d.previousItemId && !li.dataset.prev) {
    li.dataset.prev = d.previousItemId;
  }
  const stick = isScrolledToEnd();
  li.querySelector(".text").textContent = d.text || "";
  setLineState(li, d);
  const note = lineNote(d);
  setNote(li, note);
  if (stick) els.transcript.scrollTop = els.transcript.scrollHeight;
  // Each line is announced once, when it is finished (never word by word over the model's voice).
  const key = `${d.sessionId}/${d.itemId}`;
  if (d.final && !announced.has(key) && (d.text || note)) {
    announced.add(key);
    announce(`${ROLE_LABELS[d.role]}: ${d.text || note}${d.text && note ? ` (${note})` : ""}`);
  }
}

// Tool output is usually JSON: show it as "key: value" pairs, as people read it.
function readable(value) {
  let data = value;
  if (typeof value === "string") {
    try {
      data = JSON.parse(value);
    } catch {
      return value;
    }
  }
  const scalar = (v) => (v === null || v === undefined ? "none" : typeof v === "object" ? JSON.stringify(v) : typeof v === "boolean" ? (v ? "yes" : "no") : String(v));
  if (Array.isArray(data)) return data.map(scalar).join(", ") || "(nothing)";
  if (data && typeof data === "object") {
    return Object.entries(data).map(([k, v]) => `${k.replace(/_/g, " ")}: ${scalar(v)}`).join(" · ") || "(nothing)";
  }
  return scalar(data);
}

function renderTool(d) {
  const name = d.name || "a tool";
  if (d.status === "completed") {
    const output = readable(d.output ?? "");
    showTool(`Tool ${name} finished${output ? `: ${truncate(output, 160)}` : "."}`);
  } else if (d.status === "called") {
    showTool(`Running tool ${name}…`);
  } else {
    showTool(`Calling tool ${name}…`);
  }
  const key = d.callId || d.itemId;
  if (!key) return;
  let li = els.transcript.querySelector(bubbleSelector(d.sessionId, "data-call-id", key));
  if (!li) {
    li = makeBubble("tool", d.sessionId, d.itemId || key, null);
    li.dataset.callId = key;
    placeBubble(li, d.sessionId, li.dataset.itemId, null);
  }
  if (d.name) li.dataset.name = d.name;
  const label = li.dataset.name || "tool";
  const text = li.querySelector(".text");
  if (d.status === "completed") {
    li.classList.remove("interim");
    li.classList.add("final");
    text.textContent = `${label} → ${truncate(readable(d.output ?? ""), 300)}`;
  } else if (d.status === "called") {
    const args = readable(d.arguments || "");
    text.textContent = `${label}(${truncate(args, 300)})`;
  } else if (!text.textContent) {
    text.textContent = `${label}(…)`;
  }
}

function addDivider(text) {
  const li = document.createElement("li");
  li.className = "divider";
  li.textContent = text;
  els.transcript.appendChild(li);
}

// ---------------------------------------------------------------- client events

client.addEventListener("state", (e) => {
  const { state } = e.detail;
  renderState(state);
  if (state === "connected") {
    clearError("network_lost");
    showNotice("");
    listMicrophones(); // the browser may use a microphone now: devices have names
    clearInterval(costPoll);
    costPoll = setInterval(refreshCost, COST_POLL_MS);
    refreshCostSoon();
  } else if (!ACTIVE_STATES.has(state)) {
    clearInterval(costPoll);
    costPoll = 0;
    refreshCostSoon(); // the last answer's cost, as recorded when the session closed
  }
  renderSessionInfo();
});

client.addEventListener("init", (e) => {
  renderTyping(client.state);
  // A resumed session is the same conversation going on: say so once, announce nothing twice.
  if (e.detail.resumed) {
    addDivider("Reconnected: the call went on.");
  } else {
    sessionsThisCall += 1;
    if (sessionsThisCall > 1) addDivider("Reconnected: a new session has started.");
  }
  renderSessionInfo();
});

client.addEventListener("ready", renderSessionInfo);
client.addEventListener("error", (e) => {
  showError(e.detail);
  if (e.detail.source === "server" && TYPED_REFUSALS.has(e.detail.code) && lastTyped) {
    // Not sent: put it back for the person to fix or send again, unless they have typed on since.
    if (!els.say.value) els.say.value = lastTyped;
    lastTyped = "";
  }
});
client.addEventListener("warning", (e) => {
  if (/audio playback/.test(e.detail.message)) showNotice(e.detail.message);
});
client.addEventListener("transcript", (e) => {
  if (e.detail.role === "user" && e.detail.final && e.detail.text === lastTyped) lastTyped = ""; // it arrived
  renderTranscript(e.detail);
});
client.addEventListener("tool", (e) => renderTool(e.detail));
client.addEventListener("server-event", (e) => {
  if (e.detail.event?.type === "response.done") refreshCostSoon();
});
client.addEventListener("speech", (e) => {
  speaking[e.detail.who] = e.detail.speaking;
  renderActivity();
});
client.addEventListener("mute", (e) => {
  // One way of saying it: the label. (A label that changes *and* aria-pressed reads "Unmute, pressed".)
  const muted = Boolean(e.detail.muted);
  els.mute.textContent = muted ? "Unmute" : "Mute";
  els.mute.dataset.muted = String(muted);
});
client.addEventListener("closed", (e) => {
  showTool("");
  const { reason } = e.detail;
  // Say why the call ended unless the user did it or an error already says so.
  if (reason && !["hangup", "page_unload"].includes(reason) && !els.error.textContent) {
    showNotice(endReasonText(reason, pageData.end_reasons));
  }
});

// ---------------------------------------------------------------- controls

els.connect.addEventListener("click", () => {
  clearError();
  const refusal = recording.beforeConnect();
  if (refusal) {
    showError({ code: "recording_consent_required", message: refusal });
    return;
  }
  showNotice("");
  showTool("");
  els.transcript.replaceChildren();
  els.announcer.replaceChildren();
  announced.clear();
  els.cost.hidden = true;
  els.cost.textContent = "";
  sessionsThisCall = 0;
  callStartedAt = callEndedAt = null;
  lastTyped = "";
  client.options.audioConstraints = chosenAudioConstraints();
  client.setMuted(false);
  client.connect(els.config ? els.config.value : "");
});
els.hangup.addEventListener("click", () => client.hangup());
els.mute.addEventListener("click", () => client.toggleMute());
els.mic.addEventListener("change", () => localStorage.setItem(MIC_STORAGE_KEY, els.mic.value));
els.sayForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = els.say.value.trim();
  if (!text || els.say.disabled) return;
  // Either mode: the client sends it where this call takes it (the data channel, or the server).
  if (!client.sendText(text)) {
    showError({ code: "call_not_ready", message: "Your message was not sent: the call is not connected. Connect, then send it again." });
    return;
  }
  if (TYPED_REFUSALS.has(els.error.dataset.code)) clearError();
  lastTyped = text;
  els.say.value = "";
  els.say.focus();
});
els.audio.addEventListener("click", () => els.audio.play().catch(() => {}));
document.addEventListener("click", () => {
  // A click is the user gesture that lets blocked audio play.
  if (els.notice.textContent && els.audio.srcObject) els.audio.play().then(() => showNotice("")).catch(() => {});
});
if (els.config) els.config.addEventListener("change", showDescription);
navigator.mediaDevices?.addEventListener?.("devicechange", listMicrophones);

preselectFromUrl();
showDescription();
listMicrophones();
renderState(client.state);
