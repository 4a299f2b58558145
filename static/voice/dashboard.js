// Staff dashboard (templates/voice/dashboard.html): a live table of voice sessions and a view of one
// session (transcript, tool calls, raw events), fed by the websocket /ws/dashboard/.
//
//   server -> page  snapshot | session.started | session.updated | session.ended | item | tool_call |
//                   usage | turn | session.snapshot | delta | event | ag2.error
//   page -> server  {type: "subscribe", session_id} | {type: "unsubscribe"}
//
// Watching a session means being in two groups at once (staff + that session's), so item, tool_call,
// usage and session.updated may arrive twice: everything is applied idempotently, keyed by session id,
// item_id, call_id, response_id and seq. Transcripts and payloads come from users and the model:
// the DOM is built with textContent only, never parsed from HTML strings.
//
// Keyboard and screen readers: each session row and each recently ended session opens with a real
// button; opening moves focus to the session view's heading and says so, closing returns focus to the
// button that opened it. The transcript is not a live region (deltas would be read word by word).
import { endReasonText, formatCost, formatDuration, formatMoment, formatTimeOfDay, statusLabel } from "./format.js";
import { CLOSE } from "./protocol.js";
import { atEnd, lineNote, makeLine, setLineRole, setLineState, setNote, truncate } from "./transcript-view.js";

const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 10_000;
const MAX_EVENT_ROWS = 500;
const MAX_RECENT = 20;
const LIVE_STATUSES = new Set(["connecting", "active"]);
const FINAL_ITEM_STATUSES = new Set(["completed", "truncated", "failed", "incomplete"]);
const STATE_LABELS = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", offline: "Offline" };
const ROLE_LABELS = { user: "User", assistant: "Assistant", system: "System", tool: "Tool" };
// The socket's path, the login page, the admin's session page (for ANY_SESSION): from the view.
const pageData = JSON.parse(document.getElementById("dashboard-data")?.textContent || "{}");
const ANY_SESSION = pageData.any_session;

const $ = (id) => document.getElementById(id);
const els = {
  state: $("dash-state"),
  count: $("session-count"),
  error: $("dash-error"),
  errorMessage: $("dash-error-message"),
  errorDismiss: $("dash-error-dismiss"),
  announcer: $("dash-announcer"),
  heading: $("dash-title"),
  admin: $("session-admin"),
  table: $("sessions"),
  body: $("sessions-body"),
  empty: $("no-sessions"),
  recent: $("recent"),
  noRecent: $("no-recent"),
  view: $("session-view"),
  title: $("session-title"),
  status: $("session-status"),
  meta: $("session-meta"),
  earlier: $("session-earlier"),
  close: $("session-close"),
  transcript: $("session-transcript"),
  tools: $("session-tools-body"),
  noTools: $("no-tools"),
  events: $("session-events"),
  eventsFilter: $("events-filter"),
  eventsCount: $("events-count"),
};

/** Everything the page knows, exposed as window.dashboard for end-to-end tests and debugging. */
const dashboard = {
  socket: null,
  state: "connecting",
  sessions: new Map(), // active sessions: id -> summary (VoiceSession.to_dict())
  recent: new Map(), // recently ended: id -> summary, newest first
  watching: null, // id of the session open in the session view
  opener: null, // the button that opened it (focus goes back there on close)
  view: null, // {sessionId, summary, loaded, items: Map, tools: Map, seqs: Set, usages: Set, turns: Map}
  attempts: 0,
  nextDelayMs: null,
  closeCode: null,
  connect,
  open: openSession,
  close: closeSession,
};
window.dashboard = dashboard;

const rows = new Map(); // session id -> {tr, cells}
let reconnectTimer = 0;

// ---------------------------------------------------------------- small helpers

function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined)); // strings become text nodes
  return node;
}

function time(iso) {
  const t = iso ? Date.parse(iso) : NaN;
  return Number.isNaN(t) ? null : t;
}

function durationOf(summary) {
  const start = time(summary.started_at);
  if (start === null) return "";
  const end = time(summary.ended_at) ?? (LIVE_STATUSES.has(summary.status) ? Date.now() : null);
  return end === null ? "" : formatDuration(end - start);
}

function adminUrl(id) {
  return pageData.admin_url && id ? pageData.admin_url.replace(ANY_SESSION, encodeURIComponent(id)) : "";
}

function reasonText(summary) {
  return endReasonText(summary.end_reason, pageData.end_reasons, summary.status);
}

function announce(text) {
  // Cleared first, so that the same sentence twice is still announced twice.
  els.announcer.textContent = "";
  setTimeout(() => { els.announcer.textContent = text; }, 50);
}

function formatCount(value) {
  const n = Number(value);
  return Number.isFinite(n) ? n.toLocaleString() : "";
}

function asText(value) {
  if (value === undefined || value === null) return "";
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

function statusBadge(node, status) {
  node.className = `status status-${String(status || "unknown").replace(/[^a-z0-9_-]/gi, "")}`;
  node.textContent = statusLabel(status);
  node.dataset.status = status || "";
}

function send(frame) {
  const socket = dashboard.socket;
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify(frame));
    return true;
  }
  return false; // sent again on reconnect (the open view re-subscribes)
}

// ---------------------------------------------------------------- connection state and errors

function setState(state) {
  dashboard.state = state;
  els.state.dataset.state = state;
  els.state.textContent = STATE_LABELS[state] || state;
}

function showError(code, message, link = null) {
  els.error.dataset.code = code || "";
  const parts = [message || "Something went wrong."];
  if (link) parts.push(" ", h("a", { href: link.href, id: "dash-login" }, link.text));
  els.errorMessage.replaceChildren(...parts);
  els.error.classList.add("shown");
  els.errorDismiss.hidden = false;
}

function clearError(onlyCode = null) {
  if (onlyCode && els.error.dataset.code !== onlyCode) return;
  els.error.dataset.code = "";
  els.errorMessage.replaceChildren();
  els.error.classList.remove("shown");
  els.errorDismiss.hidden = true;
}

// ---------------------------------------------------------------- socket

function socketUrl() {
  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${window.location.host}${pageData.socket_path}`;
}

function connect() {
  clearTimeout(reconnectTimer);
  reconnectTimer = 0;
  const previous = dashboard.socket;
  if (previous && previous.readyState <= WebSocket.OPEN) {
    dashboard.socket = null;
    previous.close(1000);
  }
  let socket;
  try {
    socket = new WebSocket(socketUrl());
  } catch (error) {
    console.error("dashboard: cannot open the websocket", error);
    scheduleReconnect();
    return;
  }
  dashboard.socket = socket;
  dashboard.closeCode = null;
  socket.addEventListener("open", () => {
    if (socket !== dashboard.socket) return;
    // The snapshot of the table arrives by itself; the open session view must ask again.
    if (dashboard.watching) {
      if (dashboard.view) dashboard.view.loaded = false;
      send({ type: "subscribe", session_id: dashboard.watching });
    }
  });
  socket.addEventListener("message", (event) => {
    if (socket !== dashboard.socket) return;
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      console.warn("dashboard: a frame that is not JSON was ignored");
      return;
    }
    if (!message || typeof message !== "object") return;
    try {
      handle(message);
    } catch (error) {
      console.error("dashboard: could not apply", message.type, error);
    }
  });
  socket.addEventListener("close", (event) => {
    if (socket !== dashboard.socket) return;
    dashboard.socket = null;
    onClosed(event.code);
  });
}

function onClosed(code) {
  dashboard.closeCode = code;
  if (code === CLOSE.NOT_LOGGED_IN) {
    setState("offline");
    showError("not_logged_in", "Please log in again.", {
      href: `${pageData.login_url}?next=${encodeURIComponent(window.location.pathname)}`,
      text: "Log in",
    });
    return;
  }
  if (code === CLOSE.FORBIDDEN) {
    setState("offline");
    showError("forbidden", "Staff only: this dashboard is for staff members.");
    return;
  }
  scheduleReconnect();
}

function scheduleReconnect() {
  // 0.5 s doubling to 10 s, for ever, with jitter so that many dashboards do not return in step.
  const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** Math.min(dashboard.attempts, 10));
  const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
  dashboard.attempts += 1;
  dashboard.nextDelayMs = delay;
  setState(navigator.onLine === false ? "offline" : "reconnecting");
  clearTimeout(reconnectTimer);
  reconnectTimer = setTimeout(connect, delay);
}

window.addEventListener("online", () => {
  if (reconnectTimer) connect();
});
window.addEventListener("offline", () => {
  if (reconnectTimer) setState("offline");
});

// ---------------------------------------------------------------- dispatch

function handle(message) {
  const id = typeof message.session_id === "string" ? message.session_id : null;
  switch (message.type) {
    case "snapshot":
      applySnapshot(Array.isArray(message.sessions) ? message.sessions : []);
      break;
    case "session.started":
    case "session.ended":
      if (message.session && typeof message.session === "object") applySummary(message.session);
      break;
    case "session.updated":
      if (id) applyChanges(id, { ...(message.changes || {}), ...(message.totals || {}) });
      break;
    case "usage":
      if (id) {
        if (message.totals) applyChanges(id, message.totals);
        if (id === dashboard.watching && dashboard.view && message.usage) {
          dashboard.view.usages.add(message.usage.response_id);
        }
      }
      break;
    case "turn":
      if (id && id === dashboard.watching && message.turn) applyTurn(message.turn);
      break;
    case "item":
      if (id && id === dashboard.watching && message.item) renderItem(message.item);
      break;
    case "tool_call":
      if (id && id === dashboard.watching && message.tool_call) renderTool(message.tool_call);
      break;
    case "delta":
      if (id && id === dashboard.watching) renderDelta(message);
      break;
    case "event":
      if (id && id === dashboard.watching && message.event) {
        renderEvent(message.event);
        updateEventsCount();
      }
      break;
    case "session.snapshot":
      if (id && id === dashboard.watching) applySessionSnapshot(message);
      break;
    case "ag2.error":
      onServerError(message);
      break;
    default:
      console.debug("dashboard: ignored message", message.type);
  }
}

function onServerError(message) {
  showError(message.code || "error", message.message || "The server reported an error.");
  if (message.code === "not_found" && dashboard.watching) {
    // Only a subscribe is answered with not_found, and the server has already dropped what we watched.
    closeSession({ notify: false });
  }
}

// ---------------------------------------------------------------- the sessions table

function applySnapshot(list) {
  dashboard.attempts = 0;
  dashboard.nextDelayMs = null;
  setState("live");
  clearError("not_logged_in");
  const fresh = new Map(list.filter((s) => s && typeof s.id === "string").map((s) => [s.id, s]));
  const now = new Date().toISOString();
  for (const [id, summary] of dashboard.sessions) {
    // Ended while we were away: we do not know how, only that it is over.
    if (!fresh.has(id)) addRecent({ ...summary, ended_at: summary.ended_at || now, end_reason: summary.end_reason || "ended while offline" });
  }
  dashboard.sessions.clear();
  rows.clear();
  els.body.replaceChildren();
  for (const summary of fresh.values()) {
    if (LIVE_STATUSES.has(summary.status)) {
      dashboard.sessions.set(summary.id, summary);
      removeRecent(summary.id);
      renderRow(summary);
    } else {
      addRecent(summary);
    }
  }
  afterTableChange();
}

const COUNTERS = ["turns", "input_tokens", "output_tokens", "total_tokens", "cost_usd"];

function applySummary(summary) {
  if (typeof summary.id !== "string") return;
  const known = dashboard.sessions.get(summary.id) || dashboard.recent.get(summary.id);
  const merged = { ...(known || {}), ...summary };
  // Running totals only grow; a summary built from a stale copy must not wind them back.
  for (const key of COUNTERS) {
    if (known && Number(known[key]) > Number(summary[key] ?? 0)) merged[key] = known[key];
  }
  // Unpriced is final: once a session's cost is unknown, no stale copy turns it back into a number.
  if (summary.cost_usd === null || (known && known.cost_usd === null)) merged.cost_usd = null;
  placeSummary(merged);
}

function applyChanges(id, changes) {
  const known = dashboard.sessions.get(id) || dashboard.recent.get(id) || (dashboard.view?.sessionId === id ? dashboard.view.summary : null);
  // A session we have not heard start (e.g. a dropped broadcast): show what we know rather than nothing.
  const merged = { id, user: "", config: "", status: "active", started_at: null, ...(known || {}), ...changes };
  placeSummary(merged);
}

function placeSummary(summary) {
  const id = summary.id;
  if (dashboard.view && dashboard.view.sessionId === id) {
    dashboard.view.summary = { ...dashboard.view.summary, ...summary };
    renderViewHeader();
  }
  if (LIVE_STATUSES.has(summary.status) && !dashboard.recent.has(id)) {
    dashboard.sessions.set(id, summary);
    renderRow(summary);
  } else {
    // Ended (or a late update about an ended session): it leaves the live table for good.
    if (dashboard.sessions.delete(id)) removeRow(id);
    addRecent(summary);
  }
  afterTableChange();
}

function renderRow(summary) {
  let row = rows.get(summary.id);
  if (!row) {
    const cells = {};
    const tr = h("tr", { class: "session-row", dataset: { sessionId: summary.id } });
    const labels = { user: "User", config: "Configuration", status: "Status", duration: "Duration", turns: "Turns",
                     tokens: "Tokens", cost: "Cost" };
    for (const [col, label] of Object.entries(labels)) {
      cells[col] = h("td", { class: `col-${col}`, dataset: { col, label } });
      tr.append(cells[col]);
    }
    // The row opens with a real button (name: the user; description: what it opens), not a focusable <tr>.
    cells.open = h("button", { type: "button", class: "row-open linkish", "aria-controls": "session-view" });
    cells.user.append(cells.open);
    cells.statusBadge = h("span", { class: "status" });
    cells.status.append(cells.statusBadge);
    row = { tr, cells };
    rows.set(summary.id, row);
    insertRowInOrder(tr, summary);
    if (summary.id === dashboard.watching) tr.classList.add("selected");
  }
  const { tr, cells } = row;
  tr.dataset.startedAt = summary.started_at || "";
  tr.dataset.status = summary.status || "";
  cells.open.textContent = summary.user || "(unknown user)";
  cells.open.setAttribute("aria-label", `Watch the session of ${summary.user || "an unknown user"}`);
  cells.config.textContent = summary.config || "";
  cells.config.title = summary.model ? `model ${summary.model}` : "";
  statusBadge(cells.statusBadge, summary.status);
  cells.duration.textContent = durationOf(summary);
  cells.turns.textContent = formatCount(summary.turns ?? 0);
  cells.tokens.textContent = formatCount(summary.total_tokens ?? 0);
  cells.tokens.title = `input ${formatCount(summary.input_tokens ?? 0)} · output ${formatCount(summary.output_tokens ?? 0)}`;
  cells.cost.textContent = formatCost(summary.cost_usd);
  cells.cost.classList.toggle("unpriced", summary.cost_usd === null);
  cells.cost.title = summary.cost_usd === null ? "This model has no price: its cost is not recorded."
    : summary.cost_usd ? `$${summary.cost_usd}` : "";
}

function insertRowInOrder(tr, summary) {
  // Newest first, by started_at; unknown start times go last.
  const started = time(summary.started_at);
  if (started !== null) {
    for (const other of els.body.children) {
      const otherStarted = time(other.dataset.startedAt);
      if (otherStarted === null || otherStarted < started) {
        other.before(tr);
        return;
      }
    }
  }
  els.body.append(tr);
}

function removeRow(id) {
  const row = rows.get(id);
  if (row) row.tr.remove();
  rows.delete(id);
}

function afterTableChange() {
  const count = dashboard.sessions.size;
  els.empty.hidden = count > 0;
  els.table.classList.toggle("is-empty", count === 0);
  els.count.textContent = String(count);
  els.noRecent.hidden = dashboard.recent.size > 0;
}

function addRecent(summary) {
  dashboard.recent.delete(summary.id);
  dashboard.recent = new Map([[summary.id, summary], ...dashboard.recent]);
  while (dashboard.recent.size > MAX_RECENT) dashboard.recent.delete([...dashboard.recent.keys()].pop());
  renderRecent();
}

function removeRecent(id) {
  if (dashboard.recent.delete(id)) renderRecent();
}

function renderRecent() {
  const items = [...dashboard.recent.values()].map((s) => {
    const who = [s.user, s.config].filter(Boolean).join(" · ") || "Session";
    const badge = h("span", { class: "status" });
    statusBadge(badge, s.status);
    const ended = s.ended_at || s.started_at;
    const li = h(
      "li",
      { class: "recent-item", dataset: { sessionId: s.id, status: s.status || "" } },
      h("button", { type: "button", class: "recent-open linkish", "aria-controls": "session-view" }, who),
      badge,
      h("span", {
        class: "meta",
        text: [ended && `ended ${formatMoment(ended)}`, durationOf(s) && `lasted ${durationOf(s)}`, reasonText(s),
               `${formatCount(s.total_tokens ?? 0)} tokens`, formatCost(s.cost_usd)]
          .filter(Boolean)
          .join(" · "),
      }),
    );
    const admin = adminUrl(s.id);
    if (admin) li.append(h("a", { href: admin, class: "recent-admin", "aria-label": `Admin record of ${who}` }, "Admin record"));
    if (s.id === dashboard.watching) li.classList.add("selected");
    return li;
  });
  els.recent.replaceChildren(...items);
  els.noRecent.hidden = dashboard.recent.size > 0;
}

function tick() {
  for (const [id, row] of rows) {
    const summary = dashboard.sessions.get(id);
    if (summary) row.cells.duration.textContent = durationOf(summary);
  }
  if (dashboard.view) renderViewHeader();
}

// ---------------------------------------------------------------- the session view

function openSession(id, { opener = null, focus = false } = {}) {
  if (!id) return;
  if (opener) dashboard.opener = opener;
  if (dashboard.watching === id && dashboard.view) {
    if (focus) els.title.focus();
    return;
  }
  dashboard.watching = id;
  const summary = dashboard.sessions.get(id) || dashboard.recent.get(id) || { id };
  dashboard.view = { sessionId: id, summary, loaded: false, items: new Map(), tools: new Map(), seqs: new Set(), usages: new Set(), turns: new Map() };
  clearError("not_found");
  resetViewPanes();
  els.view.dataset.sessionId = id;
  els.view.hidden = false;
  els.view.setAttribute("aria-busy", "true");
  renderViewHeader();
  markSelected();
  send({ type: "subscribe", session_id: id }); // switching sessions: the server drops the old one
  if (window.location.hash !== `#session=${id}`) history.replaceState(null, "", `#session=${id}`);
  if (focus) {
    // Keyboard users land on the view that opened (its heading names the session), and hear so.
    els.title.focus();
    announce(`Opened the session of ${summary.user || "a user"} below.`);
  }
}

function closeSession({ notify = true } = {}) {
  if (!dashboard.watching) return;
  if (notify) send({ type: "unsubscribe" });
  const id = dashboard.watching;
  // The view is about to disappear: if focus is in it, it goes back to what opened it, never to <body>.
  const hadFocus = els.view.contains(document.activeElement);
  dashboard.watching = null;
  dashboard.view = null;
  els.view.hidden = true;
  els.view.dataset.sessionId = "";
  resetViewPanes();
  markSelected();
  if (window.location.hash) history.replaceState(null, "", window.location.pathname + window.location.search);
  if (hadFocus) {
    const opener = dashboard.opener && dashboard.opener.isConnected ? dashboard.opener
      : document.querySelector(`[data-session-id="${CSS.escape(id)}"] button`);
    (opener || els.heading).focus();
    announce("Closed the session view.");
  }
  dashboard.opener = null;
}

function markSelected() {
  for (const node of document.querySelectorAll(".session-row, .recent-item")) {
    const selected = node.dataset.sessionId === dashboard.watching;
    node.classList.toggle("selected", selected);
    const button = node.querySelector("button");
    if (!button) continue;
    if (selected) button.setAttribute("aria-current", "true");
    else button.removeAttribute("aria-current");
    button.setAttribute("aria-expanded", String(selected));
  }
}

function resetViewPanes() {
  els.transcript.replaceChildren();
  els.tools.replaceChildren();
  els.events.replaceChildren();
  els.earlier.replaceChildren();
  els.earlier.hidden = true;
  els.noTools.hidden = false;
  updateEventsCount();
}

function applySessionSnapshot(message) {
  const view = dashboard.view;
  if (!view) return;
  // After a reconnect this replaces whatever the view held: the server's record is the truth.
  view.items.clear();
  view.tools.clear();
  view.seqs.clear();
  view.usages.clear();
  view.turns.clear();
  resetViewPanes();
  if (message.session) {
    view.summary = { ...view.summary, ...message.session };
    if (dashboard.sessions.has(view.sessionId) || LIVE_STATUSES.has(message.session.status)) applySummary(message.session);
  }
  for (const turn of Array.isArray(message.turns) ? message.turns : []) applyTurn(turn, { header: false });
  for (const item of message.items || []) renderItem(item);
  for (const tool of message.tool_calls || []) renderTool(tool);
  for (const event of message.events || []) renderEvent(event);
  renderEarlier(message.earlier, message.transcript_url);
  updateEventsCount();
  view.loaded = true;
  els.view.removeAttribute("aria-busy");
  renderViewHeader();
  els.transcript.scrollTop = els.transcript.scrollHeight;
  els.events.scrollTop = els.events.scrollHeight;
}

function renderEarlier(earlier, url) {
  // A long session's snapshot holds only its latest rows; say what was left out and where it is.
  const counts = earlier && typeof earlier === "object" ? earlier : {};
  const parts = [
    ["items", "transcript item", "transcript items"],
    ["tool_calls", "tool call", "tool calls"],
    ["events", "event", "events"],
  ]
    .filter(([key]) => Number(counts[key]) > 0)
    .map(([key, one, many]) => `${formatCount(counts[key])} earlier ${Number(counts[key]) === 1 ? one : many}`);
  if (!parts.length) return;
  const children = [`Showing the latest rows only: ${parts.join(", ")} not shown here. `];
  if (typeof url === "string" && url.startsWith("/")) {
    children.push(h("a", { href: url, target: "_blank", rel: "noopener", id: "session-full-record" }, "Open the full record"));
  }
  els.earlier.replaceChildren(...children);
  els.earlier.hidden = false;
}

function renderViewHeader() {
  const view = dashboard.view;
  if (!view) return;
  const s = view.summary || {};
  const title = `Session of ${[s.user, s.config].filter(Boolean).join(" · ") || "a user"}`;
  if (els.title.textContent !== title) els.title.textContent = title;
  statusBadge(els.status, s.status);
  const admin = adminUrl(view.sessionId);
  els.admin.hidden = !admin;
  if (admin) els.admin.href = admin;
  const parts = [
    `id ${view.sessionId}`,
    s.model && `model ${s.model}`,
    s.call_id && `call ${s.call_id}`,
    s.started_at && `started ${formatTimeOfDay(s.started_at)}`,
    durationOf(s) && `duration ${durationOf(s)}`,
    `${formatCount(s.turns ?? 0)} ${Number(s.turns) === 1 ? "turn" : "turns"}`,
    `${formatCount(s.total_tokens ?? 0)} tokens (in ${formatCount(s.input_tokens ?? 0)} / out ${formatCount(s.output_tokens ?? 0)})`,
    formatCost(s.cost_usd),
    latencySummary(view.turns),
    s.end_reason && `ended: ${reasonText(s)}`,
  ];
  els.meta.textContent = parts.filter(Boolean).join(" · ");
}

// --- transcript

function bubbleKind(role, kind) {
  if (kind === "function_call" || kind === "function_call_output") return "tool";
  return ["user", "assistant", "system"].includes(role) ? role : "assistant";
}

function makeBubble(itemId) {
  const li = makeLine({ itemId });
  els.transcript.append(li); // arrival order until the item chain says otherwise
  return li;
}

function setBubbleRole(li, role, kind) {
  const shown = bubbleKind(role, kind);
  if (li.dataset.role === shown) return;
  // The user's lines carry the user's name: on this page "You" would be the staff member watching.
  const user = shown === "user" && dashboard.view?.summary?.user;
  setLineRole(li, shown, kind === "function_call" ? "Tool call" : kind === "function_call_output" ? "Tool output" : user || ROLE_LABELS[shown] || shown);
}

function transcriptAtEnd() {
  return atEnd(els.transcript);
}

function placeBubble(li) {
  // Order by the item chain when known: after the item it follows, or before the item that follows it.
  // Input transcription often finishes after the reply to it, so bubbles can move once.
  const view = dashboard.view;
  const previous = li.dataset.prev && view.items.get(li.dataset.prev);
  if (previous && previous !== li) {
    if (li.previousElementSibling !== previous) previous.after(li);
    return;
  }
  for (const other of view.items.values()) {
    if (other !== li && other.dataset.prev === li.dataset.itemId) {
      if (li.nextElementSibling !== other) other.before(li);
      return;
    }
  }
}

function renderItem(item) {
  const view = dashboard.view;
  if (!view || typeof item.item_id !== "string") return;
  const stick = transcriptAtEnd();
  let li = view.items.get(item.item_id);
  if (!li) {
    li = makeBubble(item.item_id);
    view.items.set(item.item_id, li);
  }
  setBubbleRole(li, item.role, item.kind);
  li.dataset.kind = item.kind || "message";
  li.dataset.status = item.status || "";
  if (item.previous_item_id) li.dataset.prev = item.previous_item_id;
  const final = FINAL_ITEM_STATUSES.has(item.status);
  const textNode = li.querySelector(".text");
  let text = item.text || "";
  if (item.kind === "function_call") text = `${item.name || "tool"}(${text})`;
  else if (item.kind === "function_call_output") text = `→ ${truncate(text, 1000)}`;
  // An item still in progress may know less than the deltas already shown: keep the longer text.
  if (final || text.length >= textNode.textContent.length) textNode.textContent = text;
  const truncated = item.status === "truncated";
  const failed = item.status === "failed";
  setLineState(li, { final, truncated, failed });
  setNote(li, lineNote({ final, truncated, failed, text: item.text, role: li.dataset.role }));
  showLatency(li);
  placeBubble(li);
  if (stick) els.transcript.scrollTop = els.transcript.scrollHeight;
}

function renderDelta(message) {
  const view = dashboard.view;
  if (!view || typeof message.item_id !== "string" || typeof message.delta !== "string") return;
  let li = view.items.get(message.item_id);
  if (!li) {
    li = makeBubble(message.item_id);
    view.items.set(message.item_id, li);
    setBubbleRole(li, message.role, "message");
    li.dataset.status = "in_progress";
    showLatency(li);
  }
  if (li.classList.contains("final")) return; // the final text is already shown
  const stick = transcriptAtEnd();
  li.querySelector(".text").textContent += message.delta;
  if (stick) els.transcript.scrollTop = els.transcript.scrollHeight;
}

// --- per-turn latency: the user stopped speaking -> the model's first audio (voice/timeline.py)

function formatLatency(turn) {
  // Without output_audio_buffer.started the moment is the line's first audio delta or its output item:
  // close, not exact, and the page says so.
  const seconds = `${(turn.latency_ms / 1000).toFixed(1)} s`;
  return turn.measured_from === "output_audio_buffer.started" ? seconds : `about ${seconds}`;
}

function applyTurn(turn, { header = true } = {}) {
  const view = dashboard.view;
  if (!view || !turn || typeof turn.response_id !== "string") return;
  const ms = Number(turn.latency_ms);
  if (turn.latency_ms === null || !Number.isFinite(ms) || ms < 0) return;
  // Sent again when a better measure arrives: the last one stands.
  const clean = { item_id: typeof turn.item_id === "string" ? turn.item_id : "", latency_ms: ms, measured_from: turn.measured_from };
  view.turns.set(turn.response_id, clean);
  const li = clean.item_id && view.items.get(clean.item_id);
  if (li) showLatency(li);
  if (header) renderViewHeader();
}

function showLatency(li) {
  const view = dashboard.view;
  const itemId = li.dataset.itemId;
  let turn = null;
  for (const t of view ? view.turns.values() : []) if (t.item_id === itemId) turn = t;
  let span = li.querySelector(".latency");
  if (!turn) {
    if (span) span.remove();
    return;
  }
  if (!span) {
    span = h("span", { class: "latency" });
    li.querySelector(".who").after(span);
  }
  span.textContent = `answered after ${formatLatency(turn)}`;
}

function latencySummary(turns) {
  if (!turns || !turns.size) return "";
  const all = [...turns.values()].map((t) => t.latency_ms).sort((a, b) => a - b);
  const median = all[Math.floor(all.length / 2)];
  return `answers after ${(median / 1000).toFixed(1)} s (median of ${all.length}), slowest ${(all[all.length - 1] / 1000).toFixed(1)} s`;
}

// --- tool calls

function renderTool(tool) {
  const view = dashboard.view;
  if (!view || typeof tool.call_id !== "string") return;
  let row = view.tools.get(tool.call_id);
  if (!row) {
    const tr = h("tr", { class: "tool-row", dataset: { callId: tool.call_id } });
    const cells = {};
    const labels = { name: "Name", arguments: "Arguments", output: "Output", status: "Status", ms: "ms" };
    for (const [col, label] of Object.entries(labels)) {
      cells[col] = h("td", { class: `col-${col}`, dataset: { col, label } });
      tr.append(cells[col]);
    }
    cells.args = h("code");
    cells.arguments.append(cells.args);
    cells.out = h("code");
    cells.output.append(cells.out);
    cells.badge = h("span", { class: "status" });
    cells.status.append(cells.badge);
    row = { tr, cells };
    view.tools.set(tool.call_id, row);
    els.tools.append(tr);
    els.noTools.hidden = true;
  }
  const { tr, cells } = row;
  const args = asText(tool.arguments);
  const output = asText(tool.output);
  tr.dataset.status = tool.status || "";
  cells.name.textContent = tool.name || "";
  cells.args.textContent = truncate(args, 300);
  cells.arguments.title = args.length > 300 ? args.slice(0, 4000) : "";
  cells.out.textContent = truncate(output, 300);
  cells.output.title = output.length > 300 ? output.slice(0, 4000) : "";
  statusBadge(cells.badge, tool.status);
  cells.ms.textContent = tool.duration_ms === null || tool.duration_ms === undefined ? "" : formatCount(tool.duration_ms);
}

// --- raw events

function eventsAtEnd() {
  const e = els.events;
  return e.scrollHeight - e.scrollTop - e.clientHeight < 40;
}

function renderEvent(event) {
  const view = dashboard.view;
  const seq = Number(event.seq);
  if (!view || !Number.isFinite(seq) || view.seqs.has(seq)) return;
  view.seqs.add(seq);
  const type = String(event.type ?? "");
  const direction = String(event.direction ?? "");
  const origin = String(event.origin ?? "");
  const details = h("details");
  details.append(
    h("summary", {},
      h("span", { class: "seq", text: String(seq) }), " ",
      h("span", { class: `direction direction-${direction.replace(/[^a-z_]/gi, "")}`, text: direction }), " ",
      // Where the frame was heard: sideband, browser (relay), server (notes). Blank on older rows.
      origin ? h("span", { class: "origin", text: `(${origin})` }) : null, origin ? " " : null,
      h("span", { class: "type", text: type })),
  );
  // The payload is rendered on first expand: a busy session has hundreds of rows.
  details.addEventListener("toggle", () => {
    if (details.open && !details.querySelector("pre")) {
      let json;
      try {
        json = JSON.stringify(event.payload, null, 2);
      } catch {
        json = String(event.payload);
      }
      // Focusable: a long payload scrolls, and keyboard users must be able to scroll it.
      details.append(h("pre", { class: "payload", tabindex: "0", text: json ?? "" }));
    }
  });
  const li = h("li", { class: "event-row", dataset: { seq: String(seq), type, direction, origin } }, details);
  li.hidden = !matchesFilter(type);
  const stick = eventsAtEnd();
  // Live events come in order; place an older one (a late snapshot row) where it belongs.
  const last = els.events.lastElementChild;
  if (last && Number(last.dataset.seq) > seq) {
    const after = [...els.events.children].find((row) => Number(row.dataset.seq) > seq);
    after.before(li);
  } else {
    els.events.append(li);
  }
  while (els.events.children.length > MAX_EVENT_ROWS) els.events.firstElementChild.remove();
  if (stick) els.events.scrollTop = els.events.scrollHeight;
}

function matchesFilter(type) {
  const wanted = els.eventsFilter.value.trim().toLowerCase();
  return !wanted || type.toLowerCase().includes(wanted);
}

function applyEventsFilter() {
  for (const row of els.events.children) row.hidden = !matchesFilter(row.dataset.type || "");
  updateEventsCount();
}

function updateEventsCount() {
  const total = els.events.children.length;
  const shown = els.eventsFilter.value.trim() ? [...els.events.children].filter((r) => !r.hidden).length : total;
  els.eventsCount.textContent = total ? (shown === total ? `${total}` : `${shown} of ${total}`) : "";
}

// ---------------------------------------------------------------- wiring

function sessionIdFrom(target) {
  const node = target.closest("[data-session-id]");
  return node ? node.dataset.sessionId : null;
}

for (const container of [els.body, els.recent]) {
  // A click anywhere on a row opens it (a larger target for the mouse); keyboards use its button,
  // whose Enter or Space arrives here as a click too.
  container.addEventListener("click", (event) => {
    if (event.target.closest("a")) return; // the admin link goes where it says
    const id = sessionIdFrom(event.target);
    if (!id) return;
    const button = event.target.closest("[data-session-id]").querySelector("button");
    openSession(id, { opener: button, focus: true });
  });
}
els.close.addEventListener("click", () => closeSession());
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && dashboard.watching && !event.target.closest("input, textarea")) closeSession();
});
els.eventsFilter.addEventListener("input", applyEventsFilter);
els.errorDismiss.addEventListener("click", () => clearError());

setInterval(tick, 1000);
// Sessions that ended before this page opened, from the server (oldest first: each goes on top).
for (const summary of Array.isArray(pageData.recent) ? pageData.recent : []) {
  if (summary && typeof summary.id === "string") addRecent(summary);
}
afterTableChange();
setState("connecting");
connect();

// A link to #session=<uuid> opens that session's view.
const wanted = /^#session=([0-9a-f-]{36})$/i.exec(window.location.hash);
if (wanted) openSession(wanted[1].toLowerCase());
