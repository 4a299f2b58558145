"""What the dashboard is sent when it connects and when it opens a session: bounded, and saying so.

A session's snapshot holds its latest transcript items, tool calls and events, and says how many
earlier ones it left out and where to read them all; the page shows that, so nothing is cut silently.
The list of live sessions has no cap: it is bounded by the users and their concurrent-session limit.
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from voice import timeline
from voice.models import SessionSummary, VoiceSession

SNAPSHOT_ITEMS = 100
SNAPSHOT_TOOL_CALLS = 50
SNAPSHOT_EVENTS = 200
SNAPSHOT_TURNS = 100


def live_sessions() -> list[SessionSummary]:
    """Every live session, newest first (the status index; the payload column is not read)."""
    sessions = VoiceSession.objects.live().select_related("user").defer("session_payload").order_by("-started_at")
    return [s.to_dict() for s in sessions]


def session_snapshot(session_id: str, user: Any) -> dict[str, Any] | None:
    """The `session.snapshot` frame for `user`, or None if the session is not theirs to watch."""
    queryset = VoiceSession.objects.select_related("user").defer("session_payload")
    if not user.is_staff:
        queryset = queryset.for_user(user)
    session = queryset.filter(pk=session_id).first()
    if session is None:
        return None
    items, items_earlier = session.transcript_tail(SNAPSHOT_ITEMS)
    tools = list(session.tool_calls.order_by("-started_at", "-id")[:SNAPSHOT_TOOL_CALLS])[::-1]
    tools_earlier = session.tool_calls.count() - len(tools) if len(tools) == SNAPSHOT_TOOL_CALLS else 0
    events = list(session.events.order_by("-seq")[:SNAPSHOT_EVENTS]
                  .values("seq", "direction", "origin", "type", "payload"))
    events_earlier = session.events.count() - len(events) if len(events) == SNAPSHOT_EVENTS else 0
    turns = [turn for turn in timeline.build(session).turns.values() if turn.latency_ms is not None]
    return {
        "type": "session.snapshot",
        "session_id": session_id,
        # The call id is OpenAI's handle on the call: staff see it; the user's own pages never do.
        "session": session.to_dict() if user.is_staff else without_call_id(session.to_dict()),
        "items": [item.to_dict() for item in items],
        "tool_calls": [t.to_dict() for t in tools],
        "events": events[::-1],
        # Each turn's latency so far; the live ones follow as `turn` messages (voice/recording.py).
        "turns": [{"response_id": t.response_id, "item_id": t.item_id, "latency_ms": t.latency_ms,
                   "measured_from": t.source} for t in turns[-SNAPSHOT_TURNS:]],
        # What was left out, and where the whole record can be read.
        "earlier": {"items": items_earlier, "tool_calls": tools_earlier, "events": events_earlier},
        "transcript_url": reverse("admin:voice_voicesession_change", args=[session.pk]) if user.is_staff
        else session.get_absolute_url(),
    }


def without_call_id(fields: Any) -> Any:
    """A session summary (or a set of changes) as a non-staff user may see it: without the call id."""
    if isinstance(fields, dict) and "call_id" in fields:
        return {k: v for k, v in fields.items() if k != "call_id"}
    return fields
