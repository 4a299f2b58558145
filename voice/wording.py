"""What people read about a session: sentences for statuses and end reasons, one speaker label, one time
format, durations, and tool output as text rather than JSON.

The pages (templates, through ``voice.templatetags.voice_format``), the transcript downloads and the
page scripts (the reason table is handed to them as JSON) all word things here, so that a code such
as ``upstream_error`` never reaches a person and the same thing reads the same everywhere.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.dateformat import format as date_format

# Why a call ended, as the person who was in it reads it. Keys are the `end_reason` values the server
# records (voice.consumers and the session sweeps) and the reasons the browser client reports.
END_REASONS: dict[str, str] = {
    "hangup": "You hung up.",
    "page_unload": "The page was closed during the call.",
    "disconnect": "The connection to the server was lost.",
    "closed": "The call ended.",
    "server_shutdown": "The server restarted during the call.",
    "server_lost": "The server stopped serving the call.",
    "ended while offline": "The call ended while this page was offline.",
    "max_duration": "The call reached its time limit.",
    "session_limit": "The call reached its time limit, or was idle for too long.",
    "session_expired": "The call reached the voice service's time limit.",
    "idle_timeout": "The call ended after a long silence.",
    "call_ended": "The voice service ended the call.",
    "abandoned": "The page left the call and did not come back in time.",
    "sideband_lost": "The server lost its connection to the voice service.",
    "upstream_error": "The voice service failed during the call.",
    "service_unavailable": "The voice service was not available.",
    "reconnect_failed": "The connection to the server was lost and could not be restored.",
    "network_lost": "The connection to the server was lost.",
    "rate_limited": "Too many calls or messages in a short time.",
    "not_logged_in": "You were logged out.",
    "forbidden": "The server refused the call.",
    "frame_too_large": "A message was too large for the server.",
    "unsupported": "This browser cannot make voice calls.",
    "client_error:microphone": "The microphone could not be used.",
    "client_error:sdp": "The call could not be set up with the voice service.",
    "client_error:ice": "The audio connection failed (network or firewall).",
    "client_error:datachannel": "The connection for the conversation's events failed.",
}
# The same, as staff watching someone else's call read it.
STAFF_END_REASONS: dict[str, str] = {
    **END_REASONS,
    "hangup": "The user hung up.",
    "page_unload": "The user closed the page during the call.",
    "abandoned": "The user's page left the call and did not come back in time.",
    "not_logged_in": "The user was logged out.",
}
ENDED_FALLBACK = "The call ended."
FAILED_FALLBACK = "The call failed."

STATUS_LABELS = {"connecting": "Connecting", "active": "In progress", "ended": "Ended", "failed": "Failed"}
SPEAKERS = {"user": "You", "assistant": "Assistant", "system": "System"}

# One format for moments everywhere, the time zone always shown ("2026-11-30 14:05 UTC"); a line of a
# transcript shows its time of day in the same style ("14:05:09 UTC").
MOMENT = "Y-m-d H:i T"
TIME_OF_DAY = "H:i:s T"


def end_reason_text(reason: str, status: str = "ended") -> str:
    """The sentence for an end reason; never the code itself, even for a reason this table lacks."""
    if not reason:
        return ""
    if reason in END_REASONS:
        return END_REASONS[reason]
    if reason.startswith("client_error:"):
        return "The call could not continue in the browser."
    return FAILED_FALLBACK if status == "failed" else ENDED_FALLBACK


def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status.replace("_", " ").capitalize())


def speaker(role: str) -> str:
    return SPEAKERS.get(role, role.capitalize() or "Unknown")


def moment(value: datetime | None, fmt: str = MOMENT) -> str:
    """A datetime in the site's time zone, in the one format pages use."""
    if value is None:
        return ""
    return date_format(timezone.localtime(value), fmt)


def duration(seconds: float | None) -> str:
    """1:05 for 65 s, 1:02:03 past an hour; empty when unknown."""
    if seconds is None:
        return ""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _scalar(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def readable_output(text: str) -> str:
    """A tool's output as a person reads it: `time: 12:00 · timezone: UTC` rather than `{"time": ...}`.

    Anything that is not a JSON object or list is shown as it came.
    """
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return text
    if isinstance(value, dict):
        pairs = (f"{str(key).replace('_', ' ')}: {_scalar(item)}" for key, item in value.items())
        return " · ".join(pairs) or "(nothing)"
    if isinstance(value, list):
        return ", ".join(_scalar(item) for item in value) or "(nothing)"
    return _scalar(value)


def readable_arguments(arguments: Any) -> str:
    """A tool call's arguments as `timezone: UTC` (they are recorded as JSON, an object or a string)."""
    if isinstance(arguments, str):
        return readable_output(arguments)
    if isinstance(arguments, dict):
        return readable_output(json.dumps(arguments)) if arguments else ""
    return _scalar(arguments)
