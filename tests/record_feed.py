"""Feeding a Recorder as its sources do: OpenAI's frames are tapped where they are heard (raw, in wire
order), and what they mean arrives as the typed event the agent dispatches after parsing them."""

from __future__ import annotations

import json
from typing import Any

from voice.realtime.client import FrameOrigin, RawFrame
from voice.realtime.events import parse_frame
from voice.recording import Recorder


def relay(recorder: Recorder, frame: Any, origin: FrameOrigin = "browser") -> None:
    """One server event from OpenAI: logged at its source, then interpreted from its typed event."""
    text = json.dumps(frame)
    recorder.tap(RawFrame(direction="from_openai", origin=origin, text=text))
    recorder.apply(parse_frame(text))


def sent(recorder: Recorder, frame: dict[str, Any], origin: FrameOrigin = "browser") -> None:
    """One client event the server sent to OpenAI (through the browser in relay mode)."""
    recorder.tap(RawFrame(direction="to_openai", origin=origin, text=json.dumps(frame)))
