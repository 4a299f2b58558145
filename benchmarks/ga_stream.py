"""The realistic GA event stream of `realtime_emulator/streams.py` (`turns`), serialised for the ingest benchmark.

Each turn: the user speaks (VAD events, the user item, streamed input transcription), the model answers
(response lifecycle, an assistant audio item whose transcript streams as deltas, `response.done` with
usage); every fourth turn the model first calls a tool (`calculator`, which the default configuration
enables), so the server runs it and answers on the socket.

`Expectation` keeps what the record must hold once the frames sent so far are persisted, for the
zero-loss check of the ingest benchmark.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from realtime_emulator.streams import FOLDED, turns


@dataclass
class Expectation:
    """What the database must contain for one session after the frames yielded so far."""

    rows_from_browser: int = 0          # SessionEvent rows of relayed frames (from_openai; not counting ag2.*)
    folded_deltas: int = 0
    items: set[str] = field(default_factory=set)
    assistant_text: dict[str, str] = field(default_factory=dict)  # item id -> concatenated deltas
    responses_done: int = 0
    tool_calls: set[str] = field(default_factory=set)
    frames: int = 0

    def saw(self, frame: dict[str, Any]) -> None:
        self.frames += 1
        kind = frame["type"]
        if kind in FOLDED:
            self.folded_deltas += 1
        else:
            self.rows_from_browser += 1
        if kind == "response.output_audio_transcript.delta":
            self.assistant_text[frame["item_id"]] = self.assistant_text.get(frame["item_id"], "") + frame["delta"]
        item = frame.get("item")
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            self.items.add(item["id"])
            if item.get("type") == "function_call" and isinstance(item.get("call_id"), str):
                self.tool_calls.add(item["call_id"])
        if isinstance(frame.get("item_id"), str):
            self.items.add(frame["item_id"])
        if kind == "response.done":
            self.responses_done += 1
        if kind == "response.function_call_arguments.done":
            self.tool_calls.add(frame["call_id"])


def recorded_stream(tag: str, count: int) -> tuple[list[str], Expectation]:
    """`count` frames of the stream, serialised, and what the record must hold afterwards."""
    expectation = Expectation()
    texts = []
    for n, frame in zip(range(count), turns(tag), strict=False):
        frame["event_id"] = f"event_{tag}_{n}"
        expectation.saw(frame)
        texts.append(json.dumps(frame, separators=(",", ":")))
    return texts, expectation
