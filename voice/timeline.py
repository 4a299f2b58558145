"""A call's replay timeline: where each transcript line and tool call sits on the recording, and per
turn the latency (the user stopped speaking -> the model's first audio) and the cost.

Everything comes from the record the server kept (in server mode from its own sideband, so nothing the
browser says): the VAD and output-buffer events, the usage of each response, and the recording's start
on the session's clock (CallRecording.offset_ms, milliseconds after the call connected).

Two clocks meet here. OpenAI gives a user turn's audio_start_ms/audio_end_ms on the call's input audio,
which starts as the call connects; output_audio_buffer.started/stopped carry no time, so the moment the
server received them stands in. Both are mapped to the session's clock (ms after connected_at) and then
onto the recording by its offset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from voice.models import CallRecording, ResponseUsage, SessionEvent, TranscriptItem, VoiceSession

TIMING_EVENTS = ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                 "output_audio_buffer.started", "output_audio_buffer.stopped", "output_audio_buffer.cleared")
# A session's timing events are a handful per turn; this bounds a pathological record.
MAX_TIMING_EVENTS = 20_000


@dataclass
class Turn:
    response_id: str
    audio_ms: int | None = None       # the model's first audio, on the recording
    latency_ms: int | None = None     # the user stopped speaking -> that first audio
    cost_usd: Decimal | None = None
    tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"response_id": self.response_id, "audio_ms": self.audio_ms, "latency_ms": self.latency_ms,
                "cost_usd": None if self.cost_usd is None else f"{self.cost_usd:.6f}", "tokens": self.tokens}


@dataclass
class Timeline:
    has_recording: bool
    offset_ms: int
    duration_ms: int
    item_ms: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)  # item_id -> (start, end)
    turns: dict[str, Turn] = field(default_factory=dict)  # response_id -> Turn, in order

    def place(self, item: TranscriptItem) -> None:
        """Put the line's position (ms on the recording) and its turn on the item, for templates."""
        start, end = self.item_ms.get(item.item_id, (None, None))
        item.at_ms, item.until_ms = start, end  # type: ignore[attr-defined]
        item.turn = self.turns.get(item.response_id) if item.role == "assistant" else None  # type: ignore[attr-defined]

    def tool_ms(self, session: VoiceSession, started_at: datetime) -> int | None:
        return _on_recording(session, started_at, self.offset_ms)


def _on_recording(session: VoiceSession, moment: datetime | None, offset_ms: int) -> int | None:
    if moment is None or session.connected_at is None:
        return None
    return max(0, round((moment - session.connected_at).total_seconds() * 1000) - offset_ms)


def build(session: VoiceSession) -> Timeline:
    recording = CallRecording.objects.filter(session=session).first()
    offset = recording.offset_ms if recording else 0
    timeline = Timeline(has_recording=recording is not None and recording.chunk_count > 0, offset_ms=offset,
                        duration_ms=recording.duration_ms if recording else 0)
    events = list(SessionEvent.objects.filter(session=session, type__in=TIMING_EVENTS)
                  .order_by("seq").values_list("type", "payload", "created_at")[:MAX_TIMING_EVENTS])
    last_stop: datetime | None = None
    for kind, payload, created_at in events:
        payload = payload if isinstance(payload, dict) else {}
        item_id = str(payload.get("item_id") or "")
        response_id = str(payload.get("response_id") or "")
        here = _on_recording(session, created_at, offset)
        if kind == "input_audio_buffer.speech_started" and item_id:
            start = payload.get("audio_start_ms")
            start = start - offset if isinstance(start, int) and start >= 0 else here
            timeline.item_ms[item_id] = (max(0, start) if start is not None else None, None)
        elif kind == "input_audio_buffer.speech_stopped":
            last_stop = created_at
            if item_id:
                end = payload.get("audio_end_ms")
                end = end - offset if isinstance(end, int) and end >= 0 else here
                start = timeline.item_ms.get(item_id, (None, None))[0]
                timeline.item_ms[item_id] = (start, max(0, end) if end is not None else None)
        elif kind == "output_audio_buffer.started" and response_id and response_id not in timeline.turns:
            latency = None
            if last_stop is not None and created_at >= last_stop:
                latency = round((created_at - last_stop).total_seconds() * 1000)
            timeline.turns[response_id] = Turn(response_id, audio_ms=here, latency_ms=latency)
            last_stop = None  # one latency per user turn: the first answer to it
        elif kind in ("output_audio_buffer.stopped", "output_audio_buffer.cleared") and response_id:
            turn = timeline.turns.get(response_id)
            if turn is not None:  # the end of the model's lines, read below
                timeline.item_ms.setdefault(f"response:{response_id}", (turn.audio_ms, here))
    for usage in ResponseUsage.objects.filter(session=session).order_by("created_at", "id"):
        turn = timeline.turns.setdefault(usage.response_id, Turn(usage.response_id))
        turn.cost_usd, turn.tokens = usage.cost_usd, usage.total_tokens
    # GPT-Live's lines carry their place on the session's timeline, which is where its server-side
    # recording starts (voice/live_audio.py).
    for item_id, start, end in (TranscriptItem.objects.filter(session=session, item_id__startswith="live_")
                                .values_list("item_id", "audio_start_ms", "audio_end_ms")):
        if start is not None:
            timeline.item_ms[item_id] = (max(0, start - offset), None if end is None else max(0, end - offset))
    # The model's lines sit where their response's audio played.
    for item_id, response_id in (TranscriptItem.objects.filter(session=session, role="assistant")
                                 .exclude(response_id="").values_list("item_id", "response_id")):
        span = timeline.item_ms.get(f"response:{response_id}")
        turn = timeline.turns.get(response_id)
        if turn is not None and turn.audio_ms is not None:
            timeline.item_ms[item_id] = (turn.audio_ms, span[1] if span else None)
    return timeline


def turn_rows(timeline: Timeline) -> list[dict[str, Any]]:
    return [turn.to_dict() for turn in timeline.turns.values()]


def turn_summary(timeline: Timeline) -> dict[str, Any]:
    """The turns' latency at a glance: how many were measured, the median and the slowest."""
    latencies = sorted(t.latency_ms for t in timeline.turns.values() if t.latency_ms is not None)
    if not latencies:
        return {"count": 0, "median_ms": None, "max_ms": None}
    return {"count": len(latencies), "median_ms": latencies[len(latencies) // 2], "max_ms": latencies[-1]}
