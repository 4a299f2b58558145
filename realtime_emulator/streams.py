"""Realistic OpenAI Realtime (GA) server-event streams, built from small parts, for the tests and benchmarks.

The emulator plays turns with their timing (peer.py); tests and benchmarks that feed a Recorder, a
consumer or a dashboard need the same wire frames without a call. They build them here, so the shape of a
GA frame is written once: each frame builder returns one server event as OpenAI sends it (``event_id``
empty until :func:`numbered` stamps the stream), and each turn builder returns the frames of one phase of
a conversation in wire order. A test composes the phases in the order it needs (say, a transcription that
arrives after the reply) and numbers the result.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

Frame = dict[str, Any]

# The Recorder folds these into their item's text instead of writing one row each (docs/architecture.md).
FOLDED = frozenset({
    "response.output_audio_transcript.delta",
    "response.audio_transcript.delta",
    "response.output_text.delta",
    "response.text.delta",
    "conversation.item.input_audio_transcription.delta",
})

REPLY_USAGE: dict[str, Any] = {
    "total_tokens": 180, "input_tokens": 120, "output_tokens": 60,
    "input_token_details": {"text_tokens": 40, "audio_tokens": 80, "cached_tokens": 64},
    "output_token_details": {"text_tokens": 15, "audio_tokens": 45}}
TOOL_USAGE: dict[str, Any] = {
    "total_tokens": 90, "input_tokens": 70, "output_tokens": 20,
    "input_token_details": {"text_tokens": 30, "audio_tokens": 40, "cached_tokens": 0},
    "output_token_details": {"text_tokens": 20, "audio_tokens": 0}}
TRANSCRIPTION_USAGE: dict[str, Any] = {"type": "tokens", "total_tokens": 22, "input_tokens": 14, "output_tokens": 8}


# --- items ---------------------------------------------------------------------------------------------

def message(item_id: str, role: str, *, status: str = "completed", content: list[dict[str, Any]] | None = None
            ) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "object": "realtime.item", "role": role, "status": status,
            "content": [] if content is None else content}


def user_audio(item_id: str, transcript: str | None = None) -> dict[str, Any]:
    """The user's committed audio item (its transcript is None until transcription fills it)."""
    return message(item_id, "user", content=[{"type": "input_audio", "transcript": transcript}])


def function_call(item_id: str, call_id: str, name: str, arguments: str = "", *, status: str = "completed"
                  ) -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "object": "realtime.item", "status": status,
            "call_id": call_id, "name": name, "arguments": arguments}


# --- frames --------------------------------------------------------------------------------------------

def session_created(session_id: str) -> Frame:
    return {"type": "session.created", "event_id": "", "session": {"id": session_id, "type": "realtime"}}


def speech_started(item_id: str, audio_start_ms: int) -> Frame:
    return {"type": "input_audio_buffer.speech_started", "event_id": "", "audio_start_ms": audio_start_ms,
            "item_id": item_id}


def speech_stopped(item_id: str, audio_end_ms: int) -> Frame:
    return {"type": "input_audio_buffer.speech_stopped", "event_id": "", "audio_end_ms": audio_end_ms,
            "item_id": item_id}


def committed(item_id: str, previous: str | None) -> Frame:
    return {"type": "input_audio_buffer.committed", "event_id": "", "previous_item_id": previous, "item_id": item_id}


def item_added(item: dict[str, Any], previous: str | None) -> Frame:
    return {"type": "conversation.item.added", "event_id": "", "previous_item_id": previous, "item": item}


def item_done(item: dict[str, Any], previous: str | None) -> Frame:
    return {"type": "conversation.item.done", "event_id": "", "previous_item_id": previous, "item": item}


def transcription_delta(item_id: str, delta: str) -> Frame:
    return {"type": "conversation.item.input_audio_transcription.delta", "event_id": "", "item_id": item_id,
            "content_index": 0, "delta": delta}


def transcription_completed(item_id: str, transcript: str, usage: dict[str, Any] | None = None) -> Frame:
    frame = {"type": "conversation.item.input_audio_transcription.completed", "event_id": "", "item_id": item_id,
             "content_index": 0, "transcript": transcript}
    if usage is not None:
        frame["usage"] = usage
    return frame


def response_created(response_id: str) -> Frame:
    return {"type": "response.created", "event_id": "",
            "response": {"id": response_id, "object": "realtime.response", "status": "in_progress", "output": []}}


def output_item_added(response_id: str, item: dict[str, Any], output_index: int = 0) -> Frame:
    return {"type": "response.output_item.added", "event_id": "", "response_id": response_id,
            "output_index": output_index, "item": item}


def output_item_done(response_id: str, item: dict[str, Any], output_index: int = 0) -> Frame:
    return {"type": "response.output_item.done", "event_id": "", "response_id": response_id,
            "output_index": output_index, "item": item}


def content_part(kind: str, response_id: str, item_id: str, transcript: str) -> Frame:
    """`response.content_part.added` (kind "added") or `.done` of an audio part."""
    return {"type": f"response.content_part.{kind}", "event_id": "", "response_id": response_id,
            "item_id": item_id, "output_index": 0, "content_index": 0,
            "part": {"type": "audio", "transcript": transcript}}


def transcript_delta(response_id: str, item_id: str, delta: str) -> Frame:
    return {"type": "response.output_audio_transcript.delta", "event_id": "", "response_id": response_id,
            "item_id": item_id, "output_index": 0, "content_index": 0, "delta": delta}


def transcript_done(response_id: str, item_id: str, transcript: str) -> Frame:
    return {"type": "response.output_audio_transcript.done", "event_id": "", "response_id": response_id,
            "item_id": item_id, "output_index": 0, "content_index": 0, "transcript": transcript}


def arguments_delta(response_id: str, item_id: str, call_id: str, delta: str) -> Frame:
    return {"type": "response.function_call_arguments.delta", "event_id": "", "response_id": response_id,
            "item_id": item_id, "output_index": 0, "call_id": call_id, "delta": delta}


def arguments_done(response_id: str, item_id: str, call_id: str, name: str, arguments: str) -> Frame:
    return {"type": "response.function_call_arguments.done", "event_id": "", "response_id": response_id,
            "item_id": item_id, "output_index": 0, "call_id": call_id, "name": name, "arguments": arguments}


def audio_started(response_id: str) -> Frame:
    """`output_audio_buffer.started`: the browser began playing the reply (WebRTC only)."""
    return {"type": "output_audio_buffer.started", "event_id": "", "response_id": response_id}


def response_done(response_id: str, output: list[dict[str, Any]], usage: dict[str, Any] | None,
                  status: str = "completed") -> Frame:
    response: dict[str, Any] = {"id": response_id, "object": "realtime.response", "status": status,
                                "output": output}
    if usage is not None:
        response["usage"] = usage
    return {"type": "response.done", "event_id": "", "response": response}


# --- phases of a conversation --------------------------------------------------------------------------

def user_speech(item_id: str, *, previous: str | None, start_ms: int, end_ms: int) -> list[Frame]:
    """The user speaks (server VAD): speech start and stop, the audio committed, its item added and done."""
    item = user_audio(item_id)
    return [speech_started(item_id, start_ms), speech_stopped(item_id, end_ms), committed(item_id, previous),
            item_added(item, previous), item_done(item, previous)]


def transcription(item_id: str, parts: Sequence[str], usage: dict[str, Any] | None = TRANSCRIPTION_USAGE
                  ) -> list[Frame]:
    """The user's audio transcribed: streamed deltas, then the whole transcript (it may come after the reply)."""
    return [*(transcription_delta(item_id, part) for part in parts),
            transcription_completed(item_id, "".join(parts), usage)]


def assistant_reply(response_id: str, item_id: str, parts: Sequence[str], *, previous: str | None,
                    usage: dict[str, Any] | None = REPLY_USAGE) -> list[Frame]:
    """A whole spoken reply: the response's lifecycle around one audio item whose transcript streams as
    `parts`, ending with `response.done` and its usage."""
    pending = message(item_id, "assistant", status="in_progress")
    transcript = "".join(parts)
    done = {**pending, "status": "completed", "content": [{"type": "output_audio", "transcript": transcript}]}
    return [
        response_created(response_id),
        output_item_added(response_id, pending),
        item_added(pending, previous),
        content_part("added", response_id, item_id, ""),
        *(transcript_delta(response_id, item_id, part) for part in parts),
        transcript_done(response_id, item_id, transcript),
        content_part("done", response_id, item_id, transcript),
        output_item_done(response_id, done),
        item_done(done, previous),
        response_done(response_id, [done], usage),
    ]


def tool_call(response_id: str, item_id: str, call_id: str, name: str, arguments: str, *, previous: str | None,
              deltas: Sequence[str] | None = None, usage: dict[str, Any] | None = TOOL_USAGE) -> list[Frame]:
    """A response in which the model calls a tool: its arguments stream as `deltas` (by default the two
    halves of `arguments`) and the response ends; the client then runs the tool and answers."""
    if deltas is None:
        half = len(arguments) // 2
        deltas = (arguments[:half], arguments[half:])
    pending = function_call(item_id, call_id, name, status="in_progress")
    done = {**pending, "status": "completed", "arguments": arguments}
    return [
        response_created(response_id),
        output_item_added(response_id, pending),
        item_added(pending, previous),
        *(arguments_delta(response_id, item_id, call_id, part) for part in deltas),
        arguments_done(response_id, item_id, call_id, name, arguments),
        output_item_done(response_id, done),
        item_done(done, previous),
        response_done(response_id, [done], usage),
    ]


def numbered(frames: Iterable[Frame], prefix: str) -> list[Frame]:
    """The frames with event ids `<prefix>1`, `<prefix>2`, ... in order (OpenAI gives each event one)."""
    stamped = list(frames)
    for n, frame in enumerate(stamped, 1):
        frame["event_id"] = f"{prefix}{n}"
    return stamped


# --- an endless session --------------------------------------------------------------------------------

WORDS = ("sure ", "the ", "answer ", "is ", "forty-two, ", "and ", "it ", "also ", "depends ", "on ", "what ",
         "you ", "mean ", "by ", "that. ")
USER_WORDS = ("what ", "is ", "six ", "times ", "seven?")


def turns(tag: str, *, deltas_per_reply: int = 12, user_deltas: int = 3) -> Iterator[Frame]:
    """An endless stream of GA server events for one session, as a browser relays it; ids are unique per
    `tag`. Each turn the user speaks and is transcribed, and the model answers; every fourth turn the model
    first calls `calculator` (which the default configuration enables)."""
    previous: str | None = None
    turn = 0
    audio_ms = 0
    while True:
        turn += 1
        user = f"item_{tag}_u{turn}"
        yield from user_speech(user, previous=previous, start_ms=audio_ms, end_ms=audio_ms + 1800)
        audio_ms += 1800
        yield from transcription(user, [USER_WORDS[i % len(USER_WORDS)] for i in range(user_deltas)])
        previous = user
        if turn % 4 == 0:
            call = f"item_{tag}_f{turn}"
            yield from tool_call(f"resp_{tag}_{turn}t", call, f"call_{tag}_{turn}", "calculator",
                                 json.dumps({"expression": f"{turn} * 7"}), previous=previous)
            previous = call
        reply = f"item_{tag}_a{turn}"
        yield from assistant_reply(f"resp_{tag}_{turn}", reply,
                                   [WORDS[i % len(WORDS)] for i in range(deltas_per_reply)], previous=previous)
        previous = reply
