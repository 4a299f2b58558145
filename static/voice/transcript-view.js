// A transcript's lines as both live views draw them: chat.js (the caller's own call) and dashboard.js
// (a watched session). A line is `<li class="bubble bubble-ROLE">` holding the speaker (`.who`) and the
// text (`.text`); its state is in classes (interim, final, truncated, failed) and a note says why a line
// is cut short or empty. Recorded transcripts are rendered on the server (voice/transcripts.py).

/** A new line, interim until told otherwise; `role` may come later (setLineRole). */
export function makeLine({ role = "", who = "", itemId = "" } = {}) {
  const li = document.createElement("li");
  li.className = role ? `bubble bubble-${role} interim` : "bubble interim";
  if (role) li.dataset.role = role;
  if (itemId) li.dataset.itemId = itemId;
  const whoNode = document.createElement("span");
  whoNode.className = "who";
  whoNode.textContent = who;
  const text = document.createElement("span");
  text.className = "text";
  li.append(whoNode, text);
  return li;
}

/** Who says the line: its role class and its speaker label. */
export function setLineRole(li, role, who) {
  li.classList.remove(`bubble-${li.dataset.role}`);
  li.classList.add(`bubble-${role}`);
  li.dataset.role = role;
  li.querySelector(".who").textContent = who;
}

/** The line's state as classes: interim until final; interrupted (truncated) or failed. */
export function setLineState(li, { final, truncated, failed }) {
  li.classList.toggle("interim", !final);
  li.classList.toggle("final", Boolean(final));
  li.classList.toggle("truncated", Boolean(truncated));
  li.classList.toggle("failed", Boolean(failed));
}

/** Why a line is cut short or empty, in words; "" when there is nothing to say. */
export function lineNote({ final, truncated, failed, text, role }) {
  if (truncated) return "interrupted";
  if (failed) return "transcription failed";
  return final && !text && role === "user" ? "(spoken, no transcript)" : "";
}

/** Show `text` in the line's `.note` (or another class), or remove the note when it is empty. */
export function setNote(li, text, className = "note") {
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

/** Whether the list is scrolled (nearly) to its end: then new lines keep it there. */
export function atEnd(list) {
  return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
}

/** At most `n` characters, the last an ellipsis when cut. */
export function truncate(value, n) {
  const s = String(value ?? "");
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}
