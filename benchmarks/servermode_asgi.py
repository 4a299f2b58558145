"""benchmarks.echo_asgi with timing probes around server mode's real code paths (bench_server_mode.py).

Nothing is changed in what the server does: each probe wraps a product function, inside the benchmark's
own daphne process only, and notes when it ran. Each measurement is one WARNING log line that
bench_server_mode.py reads back from the daphne log:

  bench-offer <session id> <total ms> <create_call ms> <dial ms>
      LiveSession.offer from entry to return (the `ag2.answer` has been sent), the time it spent awaiting
      `create_call` (POST /realtime/calls, OpenAI's work and the HTTP client's) and the time the
      sideband client spent dialling (`_dial`: the websocket handshake to OpenAI).
  bench-tool <call id> <from output_item.done ms> <from arguments.done ms> <to output ms>
      a tool call: from the raw-frame tap of the `response.output_item.done` carrying the function call
      (the frame the tool runs from) and of the earlier `response.function_call_arguments.done`, to the
      tap of the `response.create` that follows the `function_call_output` (both written to the
      sideband); the last figure is up to the `function_call_output` alone.

The raw-frame tap (`voice.live._record_raw`) is where the sideband client hands every frame to the
Recorder: right after a frame is read from the socket, and right after a client event is written.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from benchmarks.echo_asgi import application  # noqa: F401  (sets Django up; daphne serves this name)

log = logging.getLogger("voice.bench")  # the site logs "voice.*" to daphne's stderr


def _install() -> None:
    import voice.live
    from voice.realtime import sideband

    offers: dict[int, dict[str, float]] = {}
    original_create_call = voice.live.create_call
    original_dial = sideband.OpenAIRealtimeSidebandClient._dial
    original_offer = voice.live.LiveSession.offer
    original_record_raw = voice.live._record_raw

    async def create_call(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await original_create_call(*args, **kwargs)
        finally:
            probe = offers.get(id(_current_task()))
            if probe is not None:
                probe["calls"] = (time.perf_counter() - t0) * 1000

    async def dial(self: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await original_dial(self)
        finally:
            self._bench_dial_ms = (time.perf_counter() - t0) * 1000

    async def offer(self: Any, sdp: str) -> None:
        task = _current_task()
        probe = offers[id(task)] = {"calls": 0.0}
        t0 = time.perf_counter()
        try:
            await original_offer(self, sdp)
        finally:
            total = (time.perf_counter() - t0) * 1000
            offers.pop(id(task), None)
            dial_ms = getattr(self.client, "_bench_dial_ms", 0.0)
            log.warning("bench-offer %s %.3f %.3f %.3f", self.session_id, total, probe["calls"], dial_ms)

    # Per recorder (one per session): when each function call's frames were heard, and the answer's state.
    heard: dict[str, tuple[float, float]] = {}
    answered: dict[int, tuple[str, float]] = {}

    def record_raw(recorder: Any, raw: Any) -> None:
        now = time.perf_counter()
        text = raw.text
        if raw.direction == "from_openai":
            if '"response.function_call_arguments.done"' in text[:120]:
                event = json.loads(text)
                heard[event["call_id"]] = (now, now)
            elif '"response.output_item.done"' in text[:120] and '"function_call"' in text:
                item = json.loads(text)["item"]
                if item.get("type") == "function_call":
                    arguments_at = heard.get(item["call_id"], (now, now))[0]
                    heard[item["call_id"]] = (arguments_at, now)
        elif '"function_call_output"' in text:
            call_id = json.loads(text)["item"]["call_id"]
            answered[id(recorder)] = (call_id, now)
        elif '"response.create"' in text[:60] and id(recorder) in answered:
            call_id, output_at = answered.pop(id(recorder))
            times = heard.pop(call_id, None)
            if times is not None:
                arguments_at, item_at = times
                log.warning("bench-tool %s %.3f %.3f %.3f", call_id, (now - item_at) * 1000,
                            (now - arguments_at) * 1000, (output_at - item_at) * 1000)
        original_record_raw(recorder, raw)

    voice.live.create_call = create_call
    sideband.OpenAIRealtimeSidebandClient._dial = dial  # type: ignore[method-assign]
    voice.live.LiveSession.offer = offer  # type: ignore[method-assign]
    voice.live._record_raw = record_raw


def _current_task() -> Any:
    import asyncio

    return asyncio.current_task()


_install()
