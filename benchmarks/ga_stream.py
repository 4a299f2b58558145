"""A realistic OpenAI Realtime (GA) server-event stream, as a browser relays it from the data channel.

Each turn: the user speaks (VAD events, the user item, streamed input transcription), the model answers
(response lifecycle, an assistant audio item whose transcript streams as deltas, `response.done` with
usage); every fourth turn the model first calls a tool (`calculator`, which the default configuration
enables), so the server runs it and answers on the socket.

`Expectation` keeps what the record must hold once the frames sent so far are persisted, for the
zero-loss check of the ingest benchmark.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

# The Recorder folds these into their item's text instead of writing one row each (DESIGN.md).
FOLDED = {
    "response.output_audio_transcript.delta",
    "response.audio_transcript.delta",
    "response.output_text.delta",
    "response.text.delta",
    "conversation.item.input_audio_transcription.delta",
}

WORDS = ("sure ", "the ", "answer ", "is ", "forty-two, ", "and ", "it ", "also ", "depends ", "on ", "what ",
         "you ", "mean ", "by ", "that. ")
USER_WORDS = ("what ", "is ", "six ", "times ", "seven?")


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


def turns(tag: str, *, deltas_per_reply: int = 12, user_deltas: int = 3) -> Iterator[dict[str, Any]]:
    """An endless stream of GA server events for one session; ids are unique per `tag`."""
    previous: str | None = None
    turn = 0
    audio_ms = 0
    while True:
        turn += 1
        user = f"item_{tag}_u{turn}"
        yield {"type": "input_audio_buffer.speech_started", "event_id": "", "audio_start_ms": audio_ms,
               "item_id": user}
        audio_ms += 1800
        yield {"type": "input_audio_buffer.speech_stopped", "event_id": "", "audio_end_ms": audio_ms, "item_id": user}
        yield {"type": "input_audio_buffer.committed", "event_id": "", "previous_item_id": previous, "item_id": user}
        user_item = {"id": user, "type": "message", "object": "realtime.item", "role": "user", "status": "completed",
                     "content": [{"type": "input_audio", "transcript": None}]}
        yield {"type": "conversation.item.added", "event_id": "", "previous_item_id": previous, "item": user_item}
        yield {"type": "conversation.item.done", "event_id": "", "previous_item_id": previous, "item": user_item}
        said = [USER_WORDS[i % len(USER_WORDS)] for i in range(user_deltas)]
        for part in said:
            yield {"type": "conversation.item.input_audio_transcription.delta", "event_id": "", "item_id": user,
                   "content_index": 0, "delta": part}
        yield {"type": "conversation.item.input_audio_transcription.completed", "event_id": "", "item_id": user,
               "content_index": 0, "transcript": "".join(said),
               "usage": {"type": "tokens", "total_tokens": 22, "input_tokens": 14, "output_tokens": 8}}
        previous = user
        if turn % 4 == 0:
            previous = yield from _tool_call(tag, turn, previous)
        response = f"resp_{tag}_{turn}"
        reply = f"item_{tag}_a{turn}"
        yield {"type": "response.created", "event_id": "",
               "response": {"id": response, "object": "realtime.response", "status": "in_progress", "output": []}}
        in_progress = {"id": reply, "type": "message", "object": "realtime.item", "role": "assistant",
                       "status": "in_progress", "content": []}
        yield {"type": "response.output_item.added", "event_id": "", "response_id": response, "output_index": 0,
               "item": in_progress}
        yield {"type": "conversation.item.added", "event_id": "", "previous_item_id": previous, "item": in_progress}
        yield {"type": "response.content_part.added", "event_id": "", "response_id": response, "item_id": reply,
               "output_index": 0, "content_index": 0, "part": {"type": "audio", "transcript": ""}}
        parts = [WORDS[i % len(WORDS)] for i in range(deltas_per_reply)]
        for part in parts:
            yield {"type": "response.output_audio_transcript.delta", "event_id": "", "response_id": response,
                   "item_id": reply, "output_index": 0, "content_index": 0, "delta": part}
        transcript = "".join(parts)
        yield {"type": "response.output_audio_transcript.done", "event_id": "", "response_id": response,
               "item_id": reply, "output_index": 0, "content_index": 0, "transcript": transcript}
        yield {"type": "response.content_part.done", "event_id": "", "response_id": response, "item_id": reply,
               "output_index": 0, "content_index": 0, "part": {"type": "audio", "transcript": transcript}}
        done_item = {**in_progress, "status": "completed",
                     "content": [{"type": "output_audio", "transcript": transcript}]}
        yield {"type": "response.output_item.done", "event_id": "", "response_id": response, "output_index": 0,
               "item": done_item}
        yield {"type": "conversation.item.done", "event_id": "", "previous_item_id": previous, "item": done_item}
        yield {"type": "response.done", "event_id": "", "response": {
            "id": response, "object": "realtime.response", "status": "completed", "output": [done_item],
            "usage": {"total_tokens": 180, "input_tokens": 120, "output_tokens": 60,
                      "input_token_details": {"text_tokens": 40, "audio_tokens": 80, "cached_tokens": 64},
                      "output_token_details": {"text_tokens": 15, "audio_tokens": 45}}}}
        previous = reply


def _tool_call(tag: str, turn: int, previous: str) -> Iterator[dict[str, Any]]:
    response = f"resp_{tag}_{turn}t"
    item = f"item_{tag}_f{turn}"
    call = f"call_{tag}_{turn}"
    arguments = json.dumps({"expression": f"{turn} * 7"})
    yield {"type": "response.created", "event_id": "",
           "response": {"id": response, "object": "realtime.response", "status": "in_progress", "output": []}}
    pending = {"id": item, "type": "function_call", "object": "realtime.item", "status": "in_progress",
               "call_id": call, "name": "calculator", "arguments": ""}
    yield {"type": "response.output_item.added", "event_id": "", "response_id": response, "output_index": 0,
           "item": pending}
    yield {"type": "conversation.item.added", "event_id": "", "previous_item_id": previous, "item": pending}
    half = len(arguments) // 2
    for part in (arguments[:half], arguments[half:]):
        yield {"type": "response.function_call_arguments.delta", "event_id": "", "response_id": response,
               "item_id": item, "output_index": 0, "call_id": call, "delta": part}
    yield {"type": "response.function_call_arguments.done", "event_id": "", "response_id": response,
           "item_id": item, "output_index": 0, "call_id": call, "name": "calculator", "arguments": arguments}
    done = {**pending, "status": "completed", "arguments": arguments}
    yield {"type": "response.output_item.done", "event_id": "", "response_id": response, "output_index": 0,
           "item": done}
    yield {"type": "conversation.item.done", "event_id": "", "previous_item_id": previous, "item": done}
    yield {"type": "response.done", "event_id": "", "response": {
        "id": response, "object": "realtime.response", "status": "completed", "output": [done],
        "usage": {"total_tokens": 90, "input_tokens": 70, "output_tokens": 20,
                  "input_token_details": {"text_tokens": 30, "audio_tokens": 40, "cached_tokens": 0},
                  "output_token_details": {"text_tokens": 20, "audio_tokens": 0}}}}
    return item


def recorded_stream(tag: str, count: int) -> tuple[list[str], Expectation]:
    """`count` frames of the stream, serialised, and what the record must hold afterwards."""
    expectation = Expectation()
    texts = []
    for n, frame in zip(range(count), turns(tag), strict=False):
        frame["event_id"] = f"event_{tag}_{n}"
        expectation.saw(frame)
        texts.append(json.dumps(frame, separators=(",", ":")))
    return texts, expectation
