// How the page scripts word things, in the same style as the server's pages (voice/wording.py):
// one format for moments with the time zone shown, durations as m:ss, costs in dollars, and end
// reasons as sentences (the table comes from the server with each page, so there is one source).

// The site's time zone (base.html puts it on <body>): times read the same on every page.
const TIME_ZONE = document.body?.dataset.timeZone || undefined;

function parts(date, options) {
  let formatter;
  try {
    formatter = new Intl.DateTimeFormat("en-GB", { timeZone: TIME_ZONE, hourCycle: "h23", ...options });
  } catch {
    formatter = new Intl.DateTimeFormat("en-GB", { hourCycle: "h23", ...options }); // an unknown zone name
  }
  return Object.fromEntries(formatter.formatToParts(date).map((p) => [p.type, p.value]));
}

/** "2026-11-30 14:05 UTC", like the server's pages; "" for a missing or unreadable time. */
export function formatMoment(iso) {
  const date = iso ? new Date(iso) : null;
  if (!date || Number.isNaN(date.getTime())) return "";
  const p = parts(date, { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", timeZoneName: "short" });
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute} ${p.timeZoneName}`;
}

/** "14:05:09 UTC": when something happened during a session. */
export function formatTimeOfDay(iso) {
  const date = iso ? new Date(iso) : null;
  if (!date || Number.isNaN(date.getTime())) return "";
  const p = parts(date, { hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short" });
  return `${p.hour}:${p.minute}:${p.second} ${p.timeZoneName}`;
}

/** 65 000 ms -> "1:05"; past an hour "1:02:03". */
export function formatDuration(ms) {
  const total = Math.max(0, Math.floor((Number(ms) || 0) / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = String(total % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${seconds}` : `${minutes}:${seconds}`;
}

/** "$0.0123"; null means the model has no price ("unpriced"), never $0. */
export function formatCost(value) {
  if (value === null) return "unpriced";
  const n = Number(value ?? 0);
  return Number.isFinite(n) ? `$${n.toFixed(4)}` : "";
}

/** The sentence for an end reason; never the code itself. */
export function endReasonText(reason, table = {}, status = "ended") {
  if (!reason) return "";
  if (table && Object.prototype.hasOwnProperty.call(table, reason)) return table[reason];
  if (String(reason).startsWith("client_error:")) return "The call could not continue in the browser.";
  return status === "failed" ? "The call failed." : "The call ended.";
}

const STATUS_LABELS = { connecting: "Connecting", active: "In progress", ended: "Ended", failed: "Failed",
                        running: "Running", succeeded: "Succeeded", timed_out: "Timed out", rejected: "Rejected" };

/** "In progress" for active, and so on: a status as people read it. */
export function statusLabel(status) {
  const s = String(status || "");
  return STATUS_LABELS[s] || (s ? s.charAt(0).toUpperCase() + s.slice(1).replace(/_/g, " ") : "");
}
