"""The shared GA stream builders (realtime_emulator/streams.py) make frames shaped as OpenAI's, which the
one parser reads as the typed events the Recorder needs."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from realtime_emulator import streams
from voice.realtime.events import InvalidFrame, parse_event

FIXTURE = Path(__file__).parents[1] / "fixtures" / "ga_events.json"
OPTIONAL = {"logprobs"}  # sent only when asked for (include: logprobs)


def _kind(frame: dict[str, Any]) -> tuple[str, Any]:
    """A frame's type and, for frames about an item, the item's type (a function call's `output_item.done`
    parses to FunctionCall, a message's to ResponseOutputItemDone)."""
    item = frame.get("item")
    return frame["type"], item.get("type") if isinstance(item, dict) else None


def _every_kind() -> list[dict[str, Any]]:
    frames = list(itertools.islice(streams.turns("k"), 200))
    return [streams.session_created("sess_k"), streams.audio_started("resp_k_1"), *frames]


def test_each_frame_has_the_fields_of_the_recorded_ga_event_of_its_type_and_parses_to_its_class() -> None:
    cases = {_kind(case["event"]): case for case in json.loads(FIXTURE.read_text())["cases"]}
    compared = set()
    for frame in _every_kind():
        event = parse_event(frame)
        assert not isinstance(event, InvalidFrame), (frame, event)
        case = cases.get(_kind(frame))
        if case is None:
            continue
        assert set(frame) == set(case["event"]) - OPTIONAL, frame["type"]
        assert type(event).__name__ == case["class"], frame["type"]
        compared.add(_kind(frame))
    assert len(compared) >= 15, sorted(compared)  # the fixture holds nearly every kind the builders make


def test_an_endless_session_has_unique_ids_whole_transcripts_and_a_tool_call_every_fourth_turn() -> None:
    frames = list(itertools.islice(streams.turns("t", deltas_per_reply=4), 400))
    created = [f["response"]["id"] for f in frames if f["type"] == "response.created"]
    assert len(created) == len(set(created)) and created[:5] == ["resp_t_1", "resp_t_2", "resp_t_3", "resp_t_4t",
                                                                  "resp_t_4"]
    deltas: dict[str, str] = {}
    for frame in frames:
        if frame["type"] == "response.output_audio_transcript.delta":
            deltas[frame["item_id"]] = deltas.get(frame["item_id"], "") + frame["delta"]
        if frame["type"] == "response.output_audio_transcript.done":
            assert frame["transcript"] == deltas[frame["item_id"]] == "sure the answer is "
        if frame["type"] == "response.function_call_arguments.done":
            assert json.loads(frame["arguments"])["expression"].endswith("* 7")
    previous = [f["previous_item_id"] for f in frames if f["type"] == "conversation.item.added"]
    assert previous[:4] == [None, "item_t_u1", "item_t_a1", "item_t_u2"]  # each item follows the one before


def test_numbered_stamps_event_ids_in_order_and_builders_never_share_an_item() -> None:
    frames = streams.numbered(streams.assistant_reply("resp_n", "item_n", ("a", "b"), previous=None), "n")
    assert [f["event_id"] for f in frames] == [f"n{i}" for i in range(1, len(frames) + 1)]
    added, done = (f["item"] for f in frames if f["type"] in ("conversation.item.added", "conversation.item.done"))
    assert (added["status"], added["content"], done["status"]) == ("in_progress", [], "completed")
    assert done["content"] == [{"type": "output_audio", "transcript": "ab"}]
