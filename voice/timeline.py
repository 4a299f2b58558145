"""A call's replay timeline: where each transcript line and tool call sits on the recording, and per
turn the latency (the user stopped speaking -> the model's first audio) and the cost.

Everything comes from the record the server kept (in server mode from its own sideband, so nothing the
browser says): the VAD and output-buffer events, the usage of each response, and the recording's start
on the session's clock (CallRecording.offset_ms, milliseconds after the call connected).

Two clocks meet here. OpenAI gives a user turn's audio_start_ms/audio_end_ms on the call's input audio,
which starts as the call connects; output_audio_buffer.started/stopped carry no time, so the moment the
server received them stands in. Both are mapped to the session's clock (ms after connected_at) and then
onto the recording by its offset.

The model's first audio. `output_audio_buffer.started` says it exactly, but it is a WebRTC event and
whether OpenAI's sideband sends it is not confirmed. Without it, the line sits where its first audio
(or audio transcript) delta arrived (TranscriptItem.first_audio_at, stamped by the Recorder: the deltas
themselves are folded, not kept), or else where its `response.output_item.added` arrived, or at last
where the item was first heard of; the turn's latency is measured from the same moment. `TurnClock`
holds these rules, so that the live dashboard (the Recorder) and the replay measure a turn alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet
from django.db.models.fields.json import KT

from voice.models import CallRecording, ResponseUsage, SessionEvent, TranscriptItem, VoiceConfig, VoiceSession
from voice.templatetags.voice_format import clock as _clock
from voice.templatetags.voice_format import seconds as _seconds

TIMING_EVENTS = ("input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped",
                 "output_audio_buffer.started", "output_audio_buffer.stopped", "output_audio_buffer.cleared",
                 "response.output_item.added")
# A session's timing events are a handful per turn; this bounds a pathological record.
MAX_TIMING_EVENTS = 20_000
# A latency longer than this is two unrelated moments (a lost event between them), not a turn.
MAX_LATENCY_MS = 10 * 60 * 1000

# How the model's first audio of a response was known, best first (TurnClock keeps the best).
EXACT, AUDIO_DELTA, ITEM_ADDED = 0, 1, 2
SOURCES = {EXACT: "output_audio_buffer.started", AUDIO_DELTA: "first_audio_delta", ITEM_ADDED: "output_item_added"}


@dataclass
class FirstAudio:
    at: datetime
    rank: int
    stop: datetime | None  # the end of the user's speech this response answers
    item_id: str = ""      # the response's first spoken line
    published: int | None = None  # the rank last published live (voice/recording.py)


class TurnClock:
    """Per response, the model's first audio and the user's end of speech it answers, fed in the order
    things happened. A response answers the latest end of speech not yet answered, taken when the first
    sign of its audio arrives (a response with only a tool call takes none: the answer after the tool
    does). A better kind of sign later replaces a worse one; the first of a kind stands."""

    MAX_RESPONSES = 512  # live, a long call forgets its oldest turns (the replay reads them back)

    def __init__(self) -> None:
        self.last_stop: datetime | None = None
        self.responses: dict[str, FirstAudio] = {}

    def speech_stopped(self, at: datetime) -> None:
        self.last_stop = at

    def audio(self, response_id: str, at: datetime, rank: int, item_id: str = "") -> bool:
        """A sign of the response's first audio; True when it is now the best one known."""
        seen = self.responses.get(response_id)
        if seen is None:
            if len(self.responses) >= self.MAX_RESPONSES:
                del self.responses[next(iter(self.responses))]
            self.responses[response_id] = FirstAudio(at, rank, self.last_stop, item_id)
            self.last_stop = None  # one latency per user turn: the first answer to it
            return True
        seen.item_id = seen.item_id or item_id
        if rank < seen.rank:
            seen.at, seen.rank = at, rank
            return True
        return False

    def latency_ms(self, response_id: str) -> int | None:
        seen = self.responses.get(response_id)
        if seen is None or seen.stop is None:
            return None
        ms = round((seen.at - seen.stop).total_seconds() * 1000)
        return ms if 0 <= ms <= MAX_LATENCY_MS else None

    def source(self, response_id: str) -> str | None:
        seen = self.responses.get(response_id)
        return SOURCES[seen.rank] if seen is not None else None


@dataclass
class Turn:
    response_id: str
    audio_ms: int | None = None       # the model's first audio, on the recording
    latency_ms: int | None = None     # the user stopped speaking -> that first audio
    cost_usd: Decimal | None = None
    tokens: int = 0
    source: str | None = None         # how the first audio was known (SOURCES)
    item_id: str = ""                 # the response's first spoken line

    def to_dict(self) -> dict[str, Any]:
        return {"response_id": self.response_id, "audio_ms": self.audio_ms, "latency_ms": self.latency_ms,
                "cost_usd": None if self.cost_usd is None else f"{self.cost_usd:.6f}", "tokens": self.tokens,
                "measured_from": self.source}


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


def timing_events(events: QuerySet[SessionEvent]) -> QuerySet[SessionEvent]:
    """The timing rows, with only the payload keys the timeline reads (never a whole payload)."""
    return (events.filter(type__in=TIMING_EVENTS).order_by("seq").only("session_id", "seq", "type", "created_at")
            .annotate(t_item_id=KT("payload__item_id"), t_response_id=KT("payload__response_id"),
                      t_start_ms=KT("payload__audio_start_ms"), t_end_ms=KT("payload__audio_end_ms"),
                      t_out_id=KT("payload__item__id"), t_out_type=KT("payload__item__type"),
                      t_out_role=KT("payload__item__role")))


def _ms(raw: Any) -> int | None:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        return None
    return value if value >= 0 else None


def build(session: VoiceSession) -> Timeline:
    if VoiceSession.recording.is_cached(session):  # select_related("recording") read it already
        recording = session.recording if _has_recording_cached(session) else None
    else:
        recording = CallRecording.objects.filter(session=session).first()
    events = timing_events(SessionEvent.objects.filter(session=session))[:MAX_TIMING_EVENTS]
    usages = ResponseUsage.objects.filter(session=session).order_by("created_at", "id").only(
        "response_id", "cost_usd", "total_tokens", "created_at")
    items = TranscriptItem.objects.filter(session=session, role="assistant").only(
        "item_id", "response_id", "kind", "first_audio_at", "created_at")
    return assemble(session, recording, events, usages, items)


def build_prefetched(session: VoiceSession) -> Timeline:
    """The same, from what the admin's export prefetched (`export_prefetches`): no query of its own."""
    recording = getattr(session, "recording", None) if _has_recording_cached(session) else None
    items = [i for i in session.transcript_items.all() if i.role == "assistant"]
    return assemble(session, recording, session.timing_events, session.usages.all(), items)


def _has_recording_cached(session: VoiceSession) -> bool:
    try:
        return session.recording is not None
    except CallRecording.DoesNotExist:
        return False


def export_related() -> tuple[Any, ...]:
    """What the export prefetches for `build_prefetched` (with select_related("recording")): two queries."""
    from django.db.models import Prefetch

    return (Prefetch("events", queryset=timing_events(SessionEvent.objects.all()), to_attr="timing_events"),
            Prefetch("usages", queryset=ResponseUsage.objects.order_by("created_at", "id")))


def assemble(session: VoiceSession, recording: CallRecording | None, events: Iterable[SessionEvent],
             usages: Iterable[ResponseUsage], assistant_items: Iterable[TranscriptItem]) -> Timeline:
    offset = recording.offset_ms if recording else 0
    timeline = Timeline(has_recording=recording is not None and recording.chunk_count > 0, offset_ms=offset,
                        duration_ms=recording.duration_ms if recording else 0)
    items = list(assistant_items)
    # The rows in their order, and the Recorder's stamps of each line's first audio among them, by time.
    signals: list[tuple[datetime, SessionEvent | TranscriptItem]] = [(e.created_at, e) for e in events]
    signals += [(i.first_audio_at, i) for i in items if i.first_audio_at is not None and i.response_id]
    signals.sort(key=lambda signal: signal[0])
    clock = TurnClock()
    ends: dict[str, int | None] = {}  # response_id -> where its audio stopped, on the recording
    for created_at, row in signals:
        if isinstance(row, TranscriptItem):
            clock.audio(row.response_id, created_at, AUDIO_DELTA, row.item_id)
            continue
        kind, item_id, response_id = row.type, row.t_item_id or "", row.t_response_id or ""  # type: ignore[attr-defined]
        here = _on_recording(session, created_at, offset)
        if kind == "input_audio_buffer.speech_started" and item_id:
            start = _ms(row.t_start_ms)  # type: ignore[attr-defined]
            start = start - offset if start is not None else here
            timeline.item_ms[item_id] = (max(0, start) if start is not None else None, None)
        elif kind == "input_audio_buffer.speech_stopped":
            clock.speech_stopped(created_at)
            if item_id:
                end = _ms(row.t_end_ms)  # type: ignore[attr-defined]
                end = end - offset if end is not None else here
                start = timeline.item_ms.get(item_id, (None, None))[0]
                timeline.item_ms[item_id] = (start, max(0, end) if end is not None else None)
        elif kind == "output_audio_buffer.started" and response_id:
            clock.audio(response_id, created_at, EXACT)
        elif kind == "response.output_item.added" and response_id and _spoken(row):
            clock.audio(response_id, created_at, ITEM_ADDED, row.t_out_id or "")  # type: ignore[attr-defined]
        elif kind in ("output_audio_buffer.stopped", "output_audio_buffer.cleared") and response_id:
            ends.setdefault(response_id, here)
    for response_id, first in clock.responses.items():
        timeline.turns[response_id] = Turn(response_id, audio_ms=_on_recording(session, first.at, offset),
                                           latency_ms=clock.latency_ms(response_id),
                                           source=clock.source(response_id), item_id=first.item_id)
    for usage in usages:
        priced = timeline.turns.setdefault(usage.response_id, Turn(usage.response_id))
        priced.cost_usd, priced.tokens = usage.cost_usd, usage.total_tokens
    # The model's lines sit where their response's audio played; without the exact moment, where the
    # line's own audio began, or its response's; at last where the line was first heard of. Every line
    # gets a place.
    for item in items:
        seen = clock.responses.get(item.response_id) if item.response_id else None
        if seen is not None and seen.rank == EXACT:
            moment = seen.at
        else:
            moment = item.first_audio_at or (seen.at if seen is not None else item.created_at)
        timeline.item_ms[item.item_id] = (_on_recording(session, moment, offset), ends.get(item.response_id))
        turn = timeline.turns.get(item.response_id)
        if turn is not None and not turn.item_id and item.kind == TranscriptItem.Kind.MESSAGE:
            turn.item_id = item.item_id  # known from output_audio_buffer.started alone: its first line
    # GPT-Live's lines carry their place on the session's timeline, which is where its server-side
    # recording starts (voice/live_audio.py); they win over the Realtime rules above. Realtime sessions
    # (and so the exports' constant queries per chunk) never pay this query.
    if session.protocol == VoiceConfig.Protocol.LIVE:
        for item_id, start, end in (TranscriptItem.objects.filter(session=session, item_id__startswith="live_")
                                    .values_list("item_id", "audio_start_ms", "audio_end_ms")):
            if start is not None:
                timeline.item_ms[item_id] = (max(0, start - offset),
                                             None if end is None else max(0, end - offset))
    return timeline


def _spoken(row: SessionEvent) -> bool:
    """An output item that may carry the model's voice: a message (a tool call says nothing)."""
    return row.t_out_type == "message" and row.t_out_role in (None, "", "assistant")  # type: ignore[attr-defined]


def turn_rows(timeline: Timeline) -> list[dict[str, Any]]:
    return [turn.to_dict() for turn in timeline.turns.values()]


def turn_summary(timeline: Timeline) -> dict[str, Any]:
    """The turns' latency at a glance: how many were measured, the median and the slowest."""
    latencies = sorted(t.latency_ms for t in timeline.turns.values() if t.latency_ms is not None)
    if not latencies:
        return {"count": 0, "median_ms": None, "max_ms": None}
    return {"count": len(latencies), "median_ms": latencies[len(latencies) // 2], "max_ms": latencies[-1]}


def recording_line(replay: Timeline, url: str) -> str:
    """What a text transcript says of the call's audio, and how quickly the model answered."""
    if not replay.has_recording:
        return "Recording: none"
    length = _clock(replay.duration_ms) if replay.duration_ms else "length unknown"
    line = f"Recording: {url} (WebM, {length}; the user left, the model right)"
    summary = turn_summary(replay)
    if summary["count"]:
        line += (f"\nAnswers: after {_seconds(summary['median_ms'])} (median of {summary['count']}), "
                 f"slowest {_seconds(summary['max_ms'])}")
    return line
