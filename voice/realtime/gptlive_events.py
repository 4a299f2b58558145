"""Typed events of a GPT-Live session, as the record needs them (docs/gpt-live.md, "Onto the record").

GPT-Live has no items, no turns and no ``response.done`` for the voice: transcripts come as timed
fragments, work is delegated, and the voice is billed by the second. ``gptlive.LiveEventMapper`` turns its
frames into these events (and into the Realtime events that already mean the same thing: ``FunctionCall``
for a function the delegated model calls, or for a delegation to this server; ``ErrorEvent``), so the
agent, its tool observer and the Recorder serve both protocols. No Django here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from voice.realtime.events import RealtimeEvent, ResponseDone, Usage


class LiveSessionStarted(RealtimeEvent):
    """``session.started`` (replayed to every sideband that attaches)."""

    type: str = "session.started"
    session_id: str | None = None
    model: str | None = None


class LiveTranscriptDelta(RealtimeEvent):
    """One timed fragment, placed on a transcript line (``line_id``; a new line names the line before it)."""

    type: str = "ag2.live.transcript_delta"
    role: Literal["user", "assistant"]
    line_id: str
    previous_line_id: str | None = None
    delta: str = ""
    start_ms: int | None = None
    end_ms: int | None = None


class LiveTranscriptLineDone(RealtimeEvent):
    """A transcript line is over: the other side spoke after it, its speaker was silent long enough, or the
    session closed."""

    type: str = "ag2.live.transcript_line_done"
    role: Literal["user", "assistant"]
    line_id: str


class LiveDelegationStarted(RealtimeEvent):
    """``session.delegation.created`` for the Responses backend (a delegation to this server is a
    ``FunctionCall`` instead: the tool that serves it is what the record shows)."""

    type: str = "session.delegation.created"
    delegation_id: str
    target: str
    response_id: str | None = None
    offset_ms: int | None = None


class LiveDelegationEnded(RealtimeEvent):
    """The Responses backend finished a delegation: its terminal status and the text it gave the voice."""

    type: str = "ag2.live.delegation_ended"
    delegation_id: str
    status: Literal["succeeded", "failed"]
    output: str = ""
    duration_ms: int | None = None


class LiveBackendResponseDone(ResponseDone):
    """A delegated model's response finished (nested ``response.completed``/``failed``/``incomplete``):
    its tokens, priced at that model's rates, not the voice's."""

    type: str = "ag2.live.backend_response_done"
    model: str = ""


class LiveUsage(RealtimeEvent):
    """The session's billable time so far (cumulative; ``final`` from ``session.closed``)."""

    type: str = "session.usage.updated"
    seconds: float
    # Not in any schema seen (the reference's unknown 1); read when present, else every second is active.
    standby_seconds: float = 0.0
    final: bool = False


class LiveSessionClosed(RealtimeEvent):
    type: str = "session.closed"
    reason: str = ""


class LiveAudioCopy(RealtimeEvent):
    """The sideband's copy of the call's audio: base64 PCM16 mono 24 kHz. The seam for a server-side
    recording (the recording issue); nothing here keeps it."""

    type: str = "ag2.live.audio_copy"
    direction: Literal["input", "output"]
    audio: str = Field(default="", repr=False)
    start_ms: int | None = None
    end_ms: int | None = None


LIVE_EVENT_CLASSES: tuple[type[RealtimeEvent], ...] = (
    LiveSessionStarted, LiveTranscriptDelta, LiveTranscriptLineDone, LiveDelegationStarted, LiveDelegationEnded,
    LiveBackendResponseDone, LiveUsage, LiveSessionClosed, LiveAudioCopy,
)


def responses_usage(usage: Any) -> Usage | None:
    """A Responses API usage (``input_tokens_details``, text only) in the Realtime shape the record reads
    (checked as ``response.done``'s usage is: an unbelievable count is 0 and named in ``problems``)."""
    if not isinstance(usage, dict):
        return None
    details = usage.get("input_tokens_details")
    inp: dict[str, Any] = details if isinstance(details, dict) else {}
    return Usage.model_validate({
        "total_tokens": usage.get("total_tokens"),
        "input_tokens": usage.get("input_tokens"),
        "output_tokens": usage.get("output_tokens"),
        "input_token_details": {"text_tokens": usage.get("input_tokens"), "cached_tokens": inp.get("cached_tokens"),
                                "cached_tokens_details": {"text_tokens": inp.get("cached_tokens")}},
        "output_token_details": {"text_tokens": usage.get("output_tokens")},
    })


__all__ = [
    "LIVE_EVENT_CLASSES",
    "LiveAudioCopy",
    "LiveBackendResponseDone",
    "LiveDelegationEnded",
    "LiveDelegationStarted",
    "LiveSessionClosed",
    "LiveSessionStarted",
    "LiveTranscriptDelta",
    "LiveTranscriptLineDone",
    "LiveUsage",
    "responses_usage",
]
