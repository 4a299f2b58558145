"""The one server-side reading of a transcript item: who says it, what is said, what is noted about it.

Every place that shows a recorded transcript reads its items through `line()`: the session page
(templates/voice/_transcript.html, through the `transcript_line` filter), the user's downloads
(voice/views.py), the admin's change page (`admin_html`) and the admin's plain-text export
(`VoiceSession.transcript_text`, through `plain_text`). They differ only in layout and in whose words
they use: the admin and its export keep the record's (role names, the text as recorded), the user's pages
use a reader's (speaker labels, tool output as words). The live views in the browser draw their lines with
static/voice/transcript-view.js.

No import of the models at run time: they import this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.utils.html import format_html_join
from django.utils.safestring import SafeString

from voice import wording

if TYPE_CHECKING:
    from voice.models import TranscriptItem

# TranscriptItem.Kind and .Status values (models.py), named here without importing the models.
MESSAGE = "message"
FUNCTION_CALL = "function_call"
TRUNCATED = "truncated"


@dataclass(frozen=True)
class Line:
    item: TranscriptItem
    kind: str
    role: str  # the recorded role, "tool" when there is none: the admin's CSS class
    label: str  # in the record's words: "user", "assistant", "tool call", "tool output"
    speaker: str  # in a reader's words: "You", "Assistant", "Tool call", "Tool output"
    text: str  # as recorded; a tool call as name(arguments)
    readable: str  # for people: a tool's arguments and output as words rather than JSON
    interrupted: bool  # a reply cut short by the user speaking
    text_cut: bool  # the text was longer than the record keeps

    @property
    def is_message(self) -> bool:
        return self.kind == MESSAGE

    @property
    def is_call(self) -> bool:
        return self.kind == FUNCTION_CALL


def line(item: TranscriptItem) -> Line:
    if item.kind == MESSAGE:
        label, speaker, text, readable = item.role, wording.speaker(item.role), item.text, item.text
    elif item.kind == FUNCTION_CALL:
        label, speaker = "tool call", "Tool call"
        text, readable = f"{item.name}({item.text})", f"{item.name}({wording.readable_output(item.text)})"
    else:
        label, speaker, text, readable = "tool output", "Tool output", item.text, wording.readable_output(item.text)
    return Line(item=item, kind=item.kind, role=item.role or "tool", label=label,
                speaker=speaker, text=text, readable=readable, interrupted=item.status == TRUNCATED,
                text_cut=item.text_truncated)


def plain_text(items: Iterable[TranscriptItem]) -> str:
    """The admin's text export: one line an item, in the record's words."""
    rows = []
    for ln in map(line, items):
        if ln.is_message:
            marker = " [interrupted]" if ln.interrupted else ""
            marker += " [text cut: too long to record]" if ln.text_cut else ""
            rows.append(f"{ln.label}: {ln.text}{marker}")
        elif ln.is_call:
            rows.append(f"{ln.label} {ln.text}")
        else:
            rows.append(f"{ln.label}: {ln.text}")
    return "\n".join(rows)


def admin_html(items: Iterable[TranscriptItem]) -> SafeString:
    """The admin's change page: one paragraph an item, in the record's words, escaped."""
    rows = []
    for ln in map(line, items):
        note = " (interrupted)" if ln.interrupted else ""
        note += " (text cut: too long to record)" if ln.text_cut else ""
        rows.append((ln.role, ln.label, (ln.text or "…") if ln.is_message else ln.text, note))
    return format_html_join("", '<p class="turn turn-{}"><strong>{}:</strong> {}<em>{}</em></p>', rows)
