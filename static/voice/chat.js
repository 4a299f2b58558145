// Page controller for templates/voice/chat.html: wires the buttons, the picker and the
// transcript to RealtimeVoiceClient. All protocol work lives in realtime-client.js.
import { RealtimeVoiceClient } from "./realtime-client.js";

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

const $ = (id) => document.getElementById(id);
const els = {
  config: $("config"),
  description: $("config-description"),
  connect: $("connect"),
  hangup: $("hangup"),
  mute: $("mute"),
  state: $("state"),
  micLevel: $("mic-level"),
  activity: $("activity"),
  sessionInfo: $("session-info"),
  error: $("error"),
  notice: $("notice"),
  tool: $("tool-activity"),
  transcript: $("transcript"),
  audio: $("remote-audio"),
};

const client = new RealtimeVoiceClient({ audioElement: els.audio });
window.voiceClient = client; // for end-to-end tests and debugging

let sessionsThisCall = 0;
let meterFrame = 0;
const speaking = { user: false, assistant: false };

// ---------------------------------------------------------------- picker

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

// ---------------------------------------------------------------- messages

function showError(detail) {
  els.error.textContent = detail.message || "Something went wrong.";
  els.error.dataset.code = detail.code || "";
  els.error.dataset.retryable = String(Boolean(detail.retryable));
  els.error.hidden = false;
}

function clearError(onlyCode = null) {
  if (onlyCode && els.error.dataset.code !== onlyCode) return;
  els.error.textContent = "";
  els.error.dataset.code = "";
  els.error.hidden = true;
}

function showNotice(text) {
  els.notice.textContent = text;
  els.notice.hidden = !text;
}

function showTool(text) {
  els.tool.textContent = text;
  els.tool.hidden = !text;
}

// ---------------------------------------------------------------- state

function renderState(state) {
  els.state.textContent = STATE_LABELS[state] || state;
  els.state.dataset.state = state;
  const active = ACTIVE_STATES.has(state);
  els.connect.disabled = active || !hasConfigs();
  els.hangup.disabled = !active;
  els.mute.disabled = !active;
  if (els.config) els.config.disabled = active || !hasConfigs();
  if (active) startMeter();
  else stopMeter();
  if (!active) {
    speaking.user = speaking.assistant = false;
    renderActivity();
  }
}

function renderSessionInfo() {
  const parts = [];
  if (client.sessionId) parts.push(`session ${client.sessionId}`);
  if (client.callId) parts.push(`call ${client.callId}`);
  if (client.model) parts.push(client.model);
  els.sessionInfo.textContent = parts.join(" · ");
}

function renderActivity() {
  els.activity.textContent = speaking.assistant ? "Assistant is speaking…" : speaking.user ? "Listening…" : "";
}

function startMeter() {
  if (meterFrame) return;
  const tick = () => {
    els.micLevel.style.width = `${Math.round(client.getInputLevel() * 100)}%`;
    meterFrame = requestAnimationFrame(tick);
  };
  meterFrame = requestAnimationFrame(tick);
}

function stopMeter() {
  if (meterFrame) cancelAnimationFrame(meterFrame);
  meterFrame = 0;
  els.micLevel.style.width = "0";
}

// ---------------------------------------------------------------- transcript

function bubbleSelector(sessionId, attr, value) {
  return `.bubble[data-session-id="${CSS.escape(sessionId || "")}"][${attr}="${CSS.escape(value)}"]`;
}

function isScrolledToEnd() {
  const t = els.transcript;
  return t.scrollHeight - t.scrollTop - t.clientHeight < 40;
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
  const li = document.createElement("li");
  li.className = `bubble bubble-${role} interim`;
  li.dataset.role = role;
  li.dataset.itemId = itemId;
  li.dataset.sessionId = sessionId || "";
  if (previousItemId) li.dataset.prev = previousItemId;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = ROLE_LABELS[role] || role;
  const text = document.createElement("span");
  text.className = "text";
  li.append(who, text);
  return li;
}

function setNote(li, text, className = "note") {
  let note = li.querySelector(`.${className}`);
  if (!text) {
    if (note) note.remove();
    return;
  }
  if (!note) {
    note = document.createElement("span");
    note.className = className;
    li.appendChild(note);
  }
  note.textContent = text;
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
  li.classList.toggle("interim", !d.final);
  li.classList.toggle("final", Boolean(d.final));
  li.classList.toggle("truncated", Boolean(d.truncated));
  li.classList.toggle("failed", Boolean(d.failed));
  setNote(li, d.truncated ? "interrupted" : d.failed ? "transcription failed" : d.final && !d.text && d.role === "user" ? "(spoken, no transcript)" : "");
  if (stick) els.transcript.scrollTop = els.transcript.scrollHeight;
}

function renderTool(d) {
  const name = d.name || "a tool";
  if (d.status === "completed") {
    const output = typeof d.output === "string" ? d.output : JSON.stringify(d.output);
    showTool(`Tool ${name} finished${output ? `: ${truncate(output, 160)}` : "."}`);
  } else if (d.status === "called") {
    showTool(`Running tool ${name}(${truncate(d.arguments || "", 120)})…`);
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
    text.textContent = `${label} → ${truncate(typeof d.output === "string" ? d.output : JSON.stringify(d.output), 300)}`;
  } else if (d.status === "called") {
    text.textContent = `${label}(${truncate(d.arguments || "", 300)})`;
  } else if (!text.textContent) {
    text.textContent = `${label}(…)`;
  }
}

function truncate(s, n) {
  s = String(s ?? "");
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
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
  }
  renderSessionInfo();
});

client.addEventListener("init", (e) => {
  if (e.detail.resumed) {
    addDivider("Reconnected: the call went on.");
    renderSessionInfo();
    return;
  }
  sessionsThisCall += 1;
  if (sessionsThisCall > 1) addDivider("Reconnected: a new session has started.");
  renderSessionInfo();
});

client.addEventListener("ready", renderSessionInfo);
client.addEventListener("error", (e) => showError(e.detail));
client.addEventListener("warning", (e) => {
  if (/audio playback/.test(e.detail.message)) showNotice(e.detail.message);
});
client.addEventListener("transcript", (e) => renderTranscript(e.detail));
client.addEventListener("tool", (e) => renderTool(e.detail));
client.addEventListener("speech", (e) => {
  speaking[e.detail.who] = e.detail.speaking;
  renderActivity();
});
client.addEventListener("mute", (e) => {
  els.mute.textContent = e.detail.muted ? "Unmute" : "Mute";
  els.mute.setAttribute("aria-pressed", String(e.detail.muted));
});
client.addEventListener("closed", (e) => {
  showTool("");
  const { reason } = e.detail;
  // Say why the call ended unless the user did it or an error already says so.
  if (reason && !["hangup", "page_unload"].includes(reason) && els.error.hidden) {
    showNotice(`The call ended (${String(reason).replace(/_/g, " ")}).`);
  }
});

// ---------------------------------------------------------------- controls

els.connect.addEventListener("click", () => {
  clearError();
  showNotice("");
  showTool("");
  els.transcript.replaceChildren();
  sessionsThisCall = 0;
  client.setMuted(false);
  client.connect(els.config ? els.config.value : "");
});
els.hangup.addEventListener("click", () => client.hangup());
els.mute.addEventListener("click", () => client.toggleMute());
els.audio.addEventListener("click", () => els.audio.play().catch(() => {}));
document.addEventListener("click", () => {
  // A click is the user gesture that lets blocked audio play.
  if (!els.notice.hidden && els.audio.srcObject) els.audio.play().then(() => showNotice("")).catch(() => {});
});
if (els.config) els.config.addEventListener("change", showDescription);

preselectFromUrl();
showDescription();
renderState(client.state);
