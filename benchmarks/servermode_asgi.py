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

  bench-toolsteps <call id> <8 step durations, ms>
      the same span split where the tool's path goes (bench_server_mode.TOOL_STEPS): tap -> FunctionCall
      dispatched -> tool task running -> Tool.invoke -> function entered -> left -> invoke returned ->
      output send started -> response.create written.
  bench-looplag <perf_counter> <late ms> <loop thread CPU ms> <other threads CPU ms> <vol> <invol>
      each wake-up of a 2 ms sleep on the server's loop more than 1 ms late, with what used the CPU
      meanwhile and the loop thread's voluntary / involuntary context switches.

Comparison knobs (through `--server-env`): BENCH_TOOLS_THREADED=1 runs the inline built-in tools on the
worker pool, as before they were inline; BENCH_SWITCH_INTERVAL=<s> sets sys.setswitchinterval.

The raw-frame tap (`voice.live._record_raw`) is where the sideband client hands every frame to the
Recorder: right after a frame is read from the socket, and right after a client event is written.
"""

from __future__ import annotations

import contextvars
import dataclasses
import itertools
import json
import logging
import os
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

    _install_tool_steps(heard)
    voice.live.create_call = create_call
    sideband.OpenAIRealtimeSidebandClient._dial = dial  # type: ignore[method-assign]
    voice.live.LiveSession.offer = offer  # type: ignore[method-assign]
    voice.live._record_raw = record_raw


_call = contextvars.ContextVar("bench_tool_call", default="")


def _install_tool_steps(heard: dict[str, tuple[float, float]]) -> None:
    """`bench-toolsteps`: where a tool call's time goes between the frame heard and the output written.

    Timestamps (perf_counter) at each step of the real path, keyed by call id (a context variable carries
    it into the tool's task and into the thread a sync tool runs on): the FunctionCall event reaching the
    ToolObserver, its task starting, the tool invoked, the function entered and left (in whatever thread it
    runs), invoke returning, the function_call_output send starting, and its tap. The loop-lag probe
    (`bench-looplag`) wakes every 2 ms and logs each late wake-up over 1 ms: how long the loop could not
    run anything, whatever held it (its own callbacks, or the GIL held by another thread)."""
    import asyncio

    from voice import agent as agent_module
    from voice import tools as tools_module
    from voice.realtime import sideband

    steps: dict[str, dict[str, float]] = {}

    def mark(call_id: str, step: str) -> None:
        if call_id:
            steps.setdefault(call_id, {})[step] = time.perf_counter()

    original_on_event = agent_module.ToolObserver.on_event
    original_answer = agent_module.ToolObserver._answer
    original_invoke = agent_module.Tool.invoke
    original_send = sideband.OpenAIRealtimeSidebandClient.send_event

    async def on_event(self: Any, event: Any) -> None:
        if isinstance(event, agent_module.FunctionCall):
            mark(event.call_id, "dispatch")
        await original_on_event(self, event)

    async def answer(self: Any, call_id: str, *args: Any) -> None:
        _call.set(call_id)
        mark(call_id, "task")
        await original_answer(self, call_id, *args)

    async def invoke(self: Any, kwargs: dict[str, Any], context: Any) -> Any:
        call_id = _call.get()
        mark(call_id, "invoke")
        try:
            return await original_invoke(self, kwargs, context)
        finally:
            mark(call_id, "invoked")

    def timed(function: Any) -> Any:
        import functools

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            call_id = _call.get()
            mark(call_id, "enter")
            try:
                return function(*args, **kwargs)
            finally:
                mark(call_id, "leave")

        return wrapper

    # BENCH_TOOLS_THREADED=1: the comparison run, pure built-in tools on the worker pool as before they
    # ran inline (make_tool(..., uses_database=False)); nothing else differs.
    threaded = os.environ.get("BENCH_TOOLS_THREADED") == "1"
    for name, tool in list(tools_module.BUILTIN_TOOLS.items()):
        if not tool.is_async:
            changes: dict[str, Any] = {"function": timed(tool.function)}
            if threaded and tool.inline:
                changes["inline"] = False
            tools_module.BUILTIN_TOOLS[name] = dataclasses.replace(tool, **changes)
    if threaded:
        log.warning("bench-tools-threaded: inline tools run on the worker pool in this process")

    async def send_event(self: Any, event: dict[str, Any]) -> None:
        call_id = _call.get()
        if event.get("type") == "conversation.item.create" and call_id:
            mark(call_id, "send")
            # Read now: the response.create's tap (record_raw above) consumes `heard`.
            steps[call_id]["item"] = heard.get(call_id, (0.0, 0.0))[1]
        await original_send(self, event)
        if event.get("type") == "response.create" and call_id:
            mark(call_id, "sent")
            times = steps.pop(call_id, {})
            item_at = times.get("item", 0.0)
            order = ("dispatch", "task", "invoke", "enter", "leave", "invoked", "send", "sent")
            if item_at and all(k in times for k in order):
                points = [item_at] + [times[k] for k in order]
                log.warning("bench-toolsteps %s %s", call_id,
                            " ".join(f"{(b - a) * 1000:.3f}" for a, b in itertools.pairwise(points)))

    agent_module.ToolObserver.on_event = on_event  # type: ignore[method-assign]
    agent_module.ToolObserver._answer = answer  # type: ignore[method-assign]
    agent_module.Tool.invoke = invoke  # type: ignore[method-assign]
    sideband.OpenAIRealtimeSidebandClient.send_event = send_event  # type: ignore[method-assign]
    sideband.OpenAIRealtimeSidebandClient._send_client_event = send_event  # type: ignore[method-assign]

    async def loop_lag() -> None:
        # Beside each late wake-up: the CPU time the loop's own thread used meanwhile, and the CPU time of
        # the process's other threads (the ORM thread, the pool). A stall with neither is time the process
        # was not running at all (the machine's other work).
        # Also the loop thread's context switches meanwhile (Linux RUSAGE_THREAD): involuntary ones mean
        # the kernel ran something else on its CPU; voluntary ones, that it blocked (select, a write...).
        import resource

        def switches() -> tuple[int, int]:
            usage = resource.getrusage(resource.RUSAGE_THREAD)
            return usage.ru_nvcsw, usage.ru_nivcsw

        while True:
            t0, loop0, proc0, (vol0, invol0) = time.perf_counter(), time.thread_time(), time.process_time(), switches()
            await asyncio.sleep(0.002)
            late = (time.perf_counter() - t0) * 1000 - 2.0
            if late > 1.0:
                loop_cpu = (time.thread_time() - loop0) * 1000
                others = (time.process_time() - proc0) * 1000 - loop_cpu
                vol, invol = switches()
                log.warning("bench-looplag %.3f %.3f %.3f %.3f %d %d", time.perf_counter(), late, loop_cpu, others,
                            vol - vol0, invol - invol0)

    _lag_started: list[Any] = []

    original_on_event_start = agent_module.ToolObserver.start

    async def start(self: Any, agent: Any) -> None:
        # The first agent to start in this process starts the lag probe, on the server's own loop.
        if not _lag_started:
            _lag_started.append(asyncio.get_running_loop().create_task(loop_lag(), name="bench-looplag"))
        await original_on_event_start(self, agent)

    agent_module.ToolObserver.start = start  # type: ignore[method-assign]


def _switch_interval() -> None:
    """BENCH_SWITCH_INTERVAL=<seconds>: sys.setswitchinterval in this daphne only (a trial, nothing more)."""
    import sys

    value = os.environ.get("BENCH_SWITCH_INTERVAL")
    if value:
        sys.setswitchinterval(float(value))
        log.warning("bench-switch-interval %s", sys.getswitchinterval())


def _current_task() -> Any:
    import asyncio

    return asyncio.current_task()


_install()
_switch_interval()
