"""The models this project offers, with what OpenAI has announced about them: one table, as data.

Everything that depends on a model's name reads it from here: the config form's choices, the admin's
retirement warnings, the start-up system check, the refusal to start a session on a shut-down model,
and which session options a model accepts. When OpenAI announces a new model or a shutdown, this table
is the one place to change (then ``makemigrations voice`` for the new choices).

Sources: OpenAI's SDK types and docstrings, and PROTOCOL.md (late 2026). Unconfirmed capabilities are
marked as such below; the safe choice where unsure is to *not* offer an option for a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal

Kind = Literal["realtime", "transcription"]

# Transcription options, and which models accept them (OpenAI's SDK docstrings of AudioTranscription).
KEYWORDS = "keywords"  # hints: words or phrases to expect
LANGUAGES = "languages"  # several possible languages (the older models take one `language`)
DELAY = "delay"  # latency/accuracy trade-off of the streaming whisper model


@dataclass(frozen=True)
class ModelInfo:
    name: str
    kind: Kind
    summary: str
    shutdown: date | None = None  # OpenAI's announced shutdown date, if any
    replacement: str = ""  # what OpenAI recommends instead (also what the data migration moves to)
    reasoning: bool = False  # accepts `reasoning.effort` and `parallel_tool_calls`
    options: frozenset[str] = frozenset()  # transcription options beyond `model` and one `language`

    def retired_on(self, today: date) -> bool:
        """True from the shutdown date on: OpenAI refuses the model from that day."""
        return self.shutdown is not None and today >= self.shutdown

    def retirement_notice(self, today: date) -> str:
        """A sentence for operators, or "" for a model with no announced shutdown."""
        if self.shutdown is None:
            return ""
        instead = f" Switch to {self.replacement}." if self.replacement else ""
        if self.retired_on(today):
            return f"{self.name} was shut down by OpenAI on {self.shutdown:%Y-%m-%d}.{instead}"
        return f"{self.name} shuts down on {self.shutdown:%Y-%m-%d} (announced by OpenAI).{instead}"


REALTIME_SHUTDOWN = date(2027, 1, 20)
TRANSCRIPTION_SHUTDOWN = date(2027, 2, 26)

MODELS: tuple[ModelInfo, ...] = (
    # Realtime (speech-to-speech) models, newest first: the order of the config form's choices.
    ModelInfo("gpt-realtime-2.1", "realtime", "Current flagship: best quality and tool use; reasoning.",
              reasoning=True),
    ModelInfo("gpt-realtime-2.1-mini", "realtime", "Current small model: far cheaper per token; reasoning.",
              reasoning=True),
    ModelInfo("gpt-realtime-2", "realtime", "Previous flagship; reasoning.", reasoning=True),
    # Not a reasoning model as far as OpenAI's docs say (they name the 2.x family); unconfirmed.
    ModelInfo("gpt-realtime-1.5", "realtime", "Older, non-reasoning; same audio prices as gpt-realtime-2."),
    ModelInfo("gpt-realtime", "realtime", "First GA model.", shutdown=REALTIME_SHUTDOWN,
              replacement="gpt-realtime-2.1"),
    ModelInfo("gpt-realtime-mini", "realtime", "First GA small model.", shutdown=REALTIME_SHUTDOWN,
              replacement="gpt-realtime-2.1-mini"),
    # Input transcription models (the user's side of the transcript).
    ModelInfo("gpt-transcribe", "transcription",
              "Accurate transcription of each committed turn; keyword and language hints.",
              options=frozenset({KEYWORDS, LANGUAGES})),
    ModelInfo("gpt-live-transcribe", "transcription",
              "Low-latency streaming transcription; keyword and language hints.",
              options=frozenset({KEYWORDS, LANGUAGES})),
    ModelInfo("gpt-realtime-whisper", "transcription",
              "Streaming transcription with a tunable delay (latency against accuracy).",
              options=frozenset({DELAY})),
    ModelInfo("gpt-4o-transcribe", "transcription", "Previous generation.", shutdown=TRANSCRIPTION_SHUTDOWN,
              replacement="gpt-transcribe"),
    ModelInfo("gpt-4o-mini-transcribe", "transcription", "Previous generation, small.",
              shutdown=TRANSCRIPTION_SHUTDOWN, replacement="gpt-transcribe"),
    ModelInfo("gpt-4o-transcribe-diarize", "transcription", "Previous generation, with speaker labels.",
              shutdown=TRANSCRIPTION_SHUTDOWN, replacement="gpt-transcribe"),
    ModelInfo("whisper-1", "transcription", "Original Whisper.", shutdown=TRANSCRIPTION_SHUTDOWN,
              replacement="gpt-realtime-whisper"),
)

BY_NAME: dict[str, ModelInfo] = {m.name: m for m in MODELS}

DEFAULT_REALTIME_MODEL = "gpt-realtime-2.1"
# gpt-transcribe: the record wants the most accurate text of each committed turn, which is what this
# model is for; it also takes keyword and language hints. The streaming models (gpt-live-transcribe,
# gpt-realtime-whisper) earn their lower latency only for live captions, which this product does not show.
DEFAULT_TRANSCRIPTION_MODEL = "gpt-transcribe"


def names(kind: Kind) -> tuple[str, ...]:
    return tuple(m.name for m in MODELS if m.kind == kind)


def choices(kind: Kind) -> list[tuple[str, str]]:
    """Every model of a kind, for the model field (retired ones too, so that old rows stay readable)."""
    return [(m.name, m.name) for m in MODELS if m.kind == kind]


def selectable(kind: Kind, today: date) -> list[tuple[str, str]]:
    """What an operator may pick today: choices with the shutdown date beside the retiring ones."""
    return [
        (m.name, f"{m.name} (shuts down {m.shutdown:%Y-%m-%d})" if m.shutdown else m.name)
        for m in MODELS
        if m.kind == kind and not m.retired_on(today)
    ]


def info(name: str) -> ModelInfo | None:
    """The row of a model; dated snapshots (``gpt-realtime-2025-08-28``) are not in the table."""
    return BY_NAME.get(name)


def retirement_notice(name: str, today: date) -> str:
    model = info(name)
    return model.retirement_notice(today) if model else ""


def is_retired(name: str, today: date) -> bool:
    model = info(name)
    return model is not None and model.retired_on(today)


def realtime_choices() -> list[tuple[str, str]]:
    """The realtime model field's choices (a callable, so migrations do not copy the table)."""
    return choices("realtime")


def transcription_choices() -> list[tuple[str, str]]:
    return choices("transcription")


def today() -> date:
    """Today in UTC, the calendar OpenAI's shutdown dates are given in. Tests patch or inject it."""
    return datetime.now(UTC).date()
