"""Template filters that word sessions for people; the wording itself lives in voice.wording."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template

from voice import transcripts, wording

register = template.Library()


@register.filter
def moment(value: datetime | None) -> str:
    """`2026-11-30 14:05 UTC`: the site's one format for a moment, with its time zone."""
    return wording.moment(value)


@register.filter
def time_of_day(value: datetime | None) -> str:
    """`14:05:09 UTC`: when a line of a transcript was said."""
    return wording.moment(value, wording.TIME_OF_DAY)


@register.filter
def duration(seconds: float | None) -> str:
    return wording.duration(seconds)


@register.filter
def status_label(status: str) -> str:
    return wording.status_label(status)


@register.filter
def end_reason(session: Any) -> str:
    """The sentence saying why a session ended (empty while it runs)."""
    return wording.end_reason_text(session.end_reason, session.status)


@register.filter
def speaker(role: str) -> str:
    return wording.speaker(role)


@register.filter
def transcript_line(item: Any) -> transcripts.Line:
    """A transcript item as every transcript reads it (voice.transcripts): speaker, words, notes."""
    return transcripts.line(item)


@register.filter
def readable(text: str) -> str:
    return wording.readable_output(text)


@register.filter
def readable_arguments(arguments: Any) -> str:
    return wording.readable_arguments(arguments)


@register.filter
def clock(ms: int | None) -> str:
    """A position on a recording, as a player shows it: 1:05."""
    if ms is None:
        return ""
    seconds = max(0, int(ms) // 1000)
    return f"{seconds // 60}:{seconds % 60:02d}"


@register.filter
def seconds(ms: int | None) -> str:
    """A latency, in seconds with one decimal: 0.8 s."""
    return "" if ms is None else f"{ms / 1000:.1f} s"
