"""Conversation scripts: what the emulated user says and how the emulated model answers.

Scripts are JSON data files in ``scripts/`` (or any path), so a test picks a conversation without
touching code. Everything about timing lives here too, which is what makes a call deterministic: the
same script yields the same events in the same order with the same text; only ids differ.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCRIPTS_DIR = Path(__file__).resolve().parent / "scripts"
OUTPUT_PLACEHOLDER = "{output}"
# "{output}" is the whole output string; "{output.time}" one field of an output that is a JSON object
# (the whole output when it is not one, or lacks the field), so a reply can read like speech.
OUTPUT_FIELD = re.compile(r"\{output(?:\.([A-Za-z0-9_]{1,64}))?\}")

TranscriptionTiming = Literal["before_response", "after_response_created", "after_response_done"]


class _Strict(BaseModel):
    # A typo in a script should fail loudly at load time rather than silently change a test.
    model_config = ConfigDict(extra="forbid", frozen=True)


class VadSettings(_Strict):
    """How microphone energy becomes a user turn (see README of the emulator in ``app.py``)."""

    # RMS of a 20 ms frame as a fraction of full scale; 0.01 is about -40 dBFS, well above the
    # noise floor of an Opus round trip of silence and well below Chromium's fake-device beep.
    threshold: float = Field(default=0.01, gt=0, lt=1)
    # Energy must last this long before speech_started (filters single-frame clicks).
    min_speech_ms: int = Field(default=20, ge=0)
    # Quiet time that ends an utterance; None means the session's silence_duration_ms (500 for
    # semantic_vad), as OpenAI would.
    silence_ms: int | None = Field(default=None, ge=20)
    # A fake microphone never stops beeping, so an utterance is cut here and counts as speech_stopped.
    max_utterance_ms: int = Field(default=1200, ge=100)
    # After the assistant's audio ends the microphone is ignored this long, so a continuous tone does
    # not start the next turn at once and the event order stays the same from run to run.
    cooldown_ms: int = Field(default=800, ge=0)
    # Speaking over the assistant's audio interrupts it, as OpenAI's server VAD does on WebRTC (when the
    # session's turn_detection.interrupt_response is on, its default): speech_started, the running
    # response cancelled (reason turn_detected), output_audio_buffer.cleared, and the assistant item
    # truncated at the audio played so far. Off by default so that a continuous test tone cannot cut
    # the scripted replies and the event order of existing scripts stays exactly as it was.
    barge_in: bool = False


class Timing(_Strict):
    """Delays of a turn, in milliseconds."""

    commit_ms: int = Field(default=60, ge=0)  # speech_stopped -> committed
    transcription_ms: int = Field(default=120, ge=0)  # committed -> input transcription
    response_ms: int = Field(default=150, ge=0)  # committed (or transcription) -> response.created
    delta_ms: int = Field(default=40, ge=0)  # between transcript/text/argument deltas (generation pace)
    # Assistant audio length per word. Slower than generation on purpose: as with OpenAI, response.done
    # usually arrives before output_audio_buffer.stopped.
    audio_ms_per_word: int = Field(default=110, ge=10)
    # Length of a synthetic utterance started by POST /_emulator/calls/{id}/turn (no microphone).
    synthetic_speech_ms: int = Field(default=500, ge=0)


class ToolCallSpec(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")
    arguments: dict[str, Any] = Field(default_factory=dict)
    # The reply after the function_call_output arrives; "{output}" is replaced by the output string,
    # "{output.<field>}" by one field of a JSON-object output (see OUTPUT_FIELD).
    reply: str

    @field_validator("reply")
    @classmethod
    def _reply_quotes_output(cls, value: str) -> str:
        if not OUTPUT_FIELD.search(value):
            raise ValueError(
                f"tool_call.reply must contain {OUTPUT_PLACEHOLDER} (or {{output.<field>}}) so the output is "
                "acknowledged"
            )
        return value

    def reply_with(self, output: str) -> str:
        """The reply quoting ``output``: the whole string, or the named fields of a JSON object."""
        try:
            data = json.loads(output)
        except ValueError:
            data = None

        def field(match: re.Match[str]) -> str:
            key = match.group(1)
            if key is None or not isinstance(data, dict) or key not in data:
                return output
            value = data[key]
            return value if isinstance(value, str) else json.dumps(value)

        return OUTPUT_FIELD.sub(field, self.reply)


class Turn(_Strict):
    user: str = Field(min_length=1)  # what the input transcription says the user said
    assistant: str = Field(min_length=1)  # the reply (also used when the session lacks the tool)
    tool_call: ToolCallSpec | None = None
    transcription: TranscriptionTiming = "before_response"
    timing: Timing | None = None  # overrides the script's timing for this turn


class Script(_Strict):
    name: str
    description: str = ""
    vad: VadSettings = VadSettings()
    timing: Timing = Timing()
    turns: list[Turn] = Field(min_length=1)
    # Said for a response.create with no pending user turn (e.g. a greeting) or after the turns ran out.
    fallback_reply: str = "This is the offline Realtime emulator. I have nothing more in my script."
    # Start over after the last turn instead of ignoring further speech.
    repeat: bool = False

    def timing_for(self, turn: Turn | None) -> Timing:
        return turn.timing if turn is not None and turn.timing is not None else self.timing


def available_scripts() -> list[str]:
    return sorted(path.stem for path in SCRIPTS_DIR.glob("*.json"))


def load_script(name_or_path: str | Path) -> Script:
    """Load a bundled script by name (``"tool_call"``) or a script file by path."""
    path = Path(name_or_path)
    if path.suffix != ".json" or not path.exists():
        if not isinstance(name_or_path, str) or not name_or_path.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"no such script file: {name_or_path}")
        path = SCRIPTS_DIR / f"{name_or_path}.json"
        if not path.exists():
            raise ValueError(f"unknown script {name_or_path!r}; available: {', '.join(available_scripts())}")
    data = json.loads(path.read_text(encoding="utf-8"))
    return Script.model_validate(data)
