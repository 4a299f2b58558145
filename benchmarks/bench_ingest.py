"""Ingest: how many relayed OpenAI events per second one daphne process records, losing none.

N simulated browsers, each holding a logged-in session, open /ws/voice/, wait for `ag2.init`, send
`ag2.ready`, then replay M frames of a realistic GA event stream (realtime_emulator/streams.py) as fast as
the socket takes them, and hang up. The figure is

    recorded events/s = all frames sent / (first frame sent -> every row of what the browser sent committed)

with the Recorder's real batched writes to PostgreSQL and the Broadcaster's real publishes to Redis.
After the run every session's rows are counted against what was sent (zero loss: SessionEvent rows,
seq without gaps, transcript items, assistant text = its folded deltas, usage rows, tool calls).

Baseline, same process, same run: the same N clients send the same frames to a bare
AsyncJsonWebsocketConsumer echo (/ws/echo/, benchmarks/echo_asgi.py) and wait for every echo; measured
before and after the real run, the better of the two is the baseline. Target: >= 50% of it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import harness as h
from benchmarks.ga_stream import Expectation, recorded_stream

TARGET_RATIO = 0.5
FROM_BROWSER_DIRECTIONS = ("from_openai", "from_browser")


async def _echo_client(server: h.Daphne, frames: list[str], go: asyncio.Event, timeout: float) -> tuple[float, float]:
    ws = await h.ws_connect(server, "/ws/echo/", None)
    try:
        received = 0
        last = 0.0

        async def read() -> None:
            nonlocal received, last
            while received < len(frames):
                await ws.recv()
                received += 1
            last = time.perf_counter()

        reader = asyncio.create_task(read())
        await go.wait()
        first = time.perf_counter()
        async with asyncio.timeout(timeout):
            for text in frames:
                await ws.send(text)
            await reader
        return first, last
    finally:
        await ws.close()


async def run_echo(server: h.Daphne, streams: list[list[str]], timeout: float) -> dict[str, Any]:
    go = asyncio.Event()
    tasks = [asyncio.create_task(_echo_client(server, frames, go, timeout)) for frames in streams]
    await asyncio.sleep(0.5)  # every client connected and waiting
    cpu0, me0 = server.cpu_seconds(), _own_cpu()
    go.set()
    spans = await asyncio.gather(*tasks)
    cpu1, me1 = server.cpu_seconds(), _own_cpu()
    frames = sum(len(s) for s in streams)
    elapsed = max(s[1] for s in spans) - min(s[0] for s in spans)
    return {"frames": frames, "seconds": round(elapsed, 3), "events_per_second": round(frames / elapsed, 1),
            "server_cpu_seconds": round(cpu1 - cpu0, 2), "client_cpu_seconds": round(me1 - me0, 2),
            "server_cpu_ms_per_1k": round(1000 * (cpu1 - cpu0) / frames * 1000, 2)}


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


class VoiceClient:
    def __init__(self, index: int, server: h.Daphne, cookie: str, frames: list[str]) -> None:
        self.index, self.server, self.cookie, self.frames = index, server, cookie, frames
        self.session_id = ""
        self.first = self.sent = self.closed_at = 0.0
        self.close_code: int | None = None
        self.received: dict[str, int] = {}

    async def open(self) -> None:
        self.ws, self.session_id = await h.open_voice_session(self.server, self.cookie, f"rtc_bench{self.index}")
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            while True:
                kind = json.loads(await self.ws.recv()).get("type", "?")
                self.received[kind] = self.received.get(kind, 0) + 1
        except ConnectionClosed:
            pass
        self.closed_at = time.perf_counter()
        self.close_code = self.ws.close_code

    async def replay(self, go: asyncio.Event) -> None:
        await go.wait()
        self.first = time.perf_counter()
        for text in self.frames:
            await self.ws.send(text)
        await self.ws.send(json.dumps({"type": "ag2.hangup"}))
        self.sent = time.perf_counter()

    async def wait_closed(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            await self.reader


def _count_from_browser(session_ids: list[str]) -> int:
    """Rows of the frames the browsers sent: the OpenAI events they relayed (from_openai, heard on the
    browser's socket) and their own ag2.* frames (from_browser)."""
    from voice.models import SessionEvent

    return SessionEvent.objects.filter(session_id__in=session_ids, direction__in=FROM_BROWSER_DIRECTIONS).count()


async def run_voice(server: h.Daphne, cookies: list[str], streams: list[list[str]], expected_rows: int,
                    timeout: float, profile: bool) -> tuple[dict[str, Any], list[VoiceClient], Any]:
    clients = [VoiceClient(i, server, cookies[i % len(cookies)], frames) for i, frames in enumerate(streams)]
    await h.gather_limited([c.open() for c in clients], 10)
    await asyncio.sleep(1.0)  # ag2.ready written, session.update sent: the sessions are idle and active
    ids = [c.session_id for c in clients]
    base_rows = await asyncio.to_thread(_count_from_browser, ids)
    go = asyncio.Event()
    senders = [asyncio.create_task(c.replay(go)) for c in clients]
    spy = h.Profile("ingest-profile", server.pid, timeout).start() if profile else None
    cpu0, me0 = server.cpu_seconds(), _own_cpu()
    go.set()
    persisted = None
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*senders)
            sent_at = max(c.sent for c in clients)
            while True:  # every row of what the browsers sent (ag2.hangup's included) committed?
                rows = await asyncio.to_thread(_count_from_browser, ids)
                if rows - base_rows >= expected_rows:
                    persisted = time.perf_counter()
                    break
                await asyncio.sleep(0.1)
            await asyncio.gather(*(c.wait_closed(timeout) for c in clients))
    finally:
        if spy is not None:
            spy.stop()
    cpu1, me1 = server.cpu_seconds(), _own_cpu()
    first = min(c.first for c in clients)
    frames = sum(len(s) + 1 for s in streams)  # + ag2.hangup
    closed = max(c.closed_at for c in clients)
    result = {
        "frames": frames,
        "sending_seconds": round(sent_at - first, 3),
        "seconds_to_persisted": round(persisted - first, 3),
        "seconds_to_all_closed": round(closed - first, 3),
        "events_per_second": round(frames / (persisted - first), 1),
        "events_per_second_to_close": round(frames / (closed - first), 1),
        "server_cpu_seconds": round(cpu1 - cpu0, 2),
        "client_cpu_seconds": round(me1 - me0, 2),
        "server_cpu_ms_per_1k": round(1000 * (cpu1 - cpu0) / frames * 1000, 2),
        "close_codes": sorted({c.close_code for c in clients}, key=str),
        "frames_back_to_browser": _merge([c.received for c in clients]),
    }
    return result, clients, spy


def _merge(counts: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
    return dict(sorted(total.items()))


def verify(clients: list[VoiceClient], expectations: list[Expectation]) -> dict[str, Any]:
    """Count every session's rows against what its browser sent."""
    from django.db.models import Count, Max, Min

    from voice.models import ResponseUsage, SessionEvent, ToolCall, TranscriptItem, VoiceSession

    totals = {"sessions": len(clients), "frames_sent": 0, "event_rows_expected": 0, "event_rows_found": 0,
              "folded_deltas_sent": 0, "assistant_items_checked": 0, "assistant_text_mismatches": 0,
              "items_expected": 0, "items_found": 0, "usage_expected": 0, "usage_found": 0,
              "tool_calls_expected": 0, "tool_calls_found": 0, "seq_gaps": 0, "sessions_not_ended": 0}
    for client, exp in zip(clients, expectations, strict=True):
        sid = client.session_id
        totals["frames_sent"] += exp.frames + 2
        totals["folded_deltas_sent"] += exp.folded_deltas
        totals["event_rows_expected"] += exp.rows_from_browser + 2  # + ag2.ready, ag2.hangup
        events = SessionEvent.objects.filter(session_id=sid)
        totals["event_rows_found"] += events.filter(direction__in=FROM_BROWSER_DIRECTIONS).count()
        shape = events.aggregate(n=Count("id"), lo=Min("seq"), hi=Max("seq"))
        if shape["n"] and (shape["lo"] != 1 or shape["hi"] != shape["n"]):
            totals["seq_gaps"] += 1
        items = dict(TranscriptItem.objects.filter(session_id=sid).values_list("item_id", "text"))
        totals["items_expected"] += len(exp.items)
        totals["items_found"] += len(exp.items & set(items))
        for item_id, text in exp.assistant_text.items():
            totals["assistant_items_checked"] += 1
            if items.get(item_id) != text:
                totals["assistant_text_mismatches"] += 1
        totals["usage_expected"] += exp.responses_done
        totals["usage_found"] += ResponseUsage.objects.filter(session_id=sid).count()
        totals["tool_calls_expected"] += len(exp.tool_calls)
        totals["tool_calls_found"] += ToolCall.objects.filter(session_id=sid, call_id__in=exp.tool_calls).count()
        session = VoiceSession.objects.get(pk=sid)
        if session.status != "ended" or session.end_reason != "hangup":
            totals["sessions_not_ended"] += 1
    totals["events_lost"] = (totals["event_rows_expected"] - totals["event_rows_found"]
                             + totals["items_expected"] - totals["items_found"]
                             + totals["usage_expected"] - totals["usage_found"]
                             + totals["tool_calls_expected"] - totals["tool_calls_found"]
                             + totals["assistant_text_mismatches"])
    totals["zero_loss"] = totals["events_lost"] == 0 and totals["seq_gaps"] == 0
    return totals


async def main_async(args: Any) -> dict[str, Any]:
    clients, per_client = (10, 1500) if args.quick else (40, 5000)
    clients = args.clients or clients
    per_client = args.frames or per_client
    timeout = 120.0 if args.quick else 600.0
    cookies = await asyncio.to_thread(h.create_users, "ingest", min(clients, 20))
    built = [recorded_stream(f"s{i}", per_client) for i in range(clients)]
    streams = [b[0] for b in built]
    expectations = [b[1] for b in built]
    expected_rows = sum(e.rows_from_browser + 1 for e in expectations)  # + ag2.hangup (ready is already in)
    with h.Stack() as stack:
        emulator = stack.start(h.Emulator())
        server = stack.start(h.Daphne("daphne-ingest", emulator))
        h.log(f"ingest: {clients} browsers x {per_client} frames; warming up")
        await run_echo(server, [s[:200] for s in streams[:4]], timeout)  # warm-up: imports, JIT-less caches
        h.log("echo baseline (before)")
        echo_before = await run_echo(server, streams, timeout)
        h.log(f"  {echo_before['events_per_second']:.0f} events/s")
        h.log("voice sessions, persistence on")
        voice, voice_clients, spy = await run_voice(server, cookies, streams, expected_rows, timeout, args.profile)
        h.log(f"  {voice['events_per_second']:.0f} events/s to persisted")
        h.log("echo baseline (after)")
        echo_after = await run_echo(server, streams, timeout)
        h.log(f"  {echo_after['events_per_second']:.0f} events/s")
        check = await asyncio.to_thread(verify, voice_clients, expectations)
        outbox = server.warnings("Broadcast outbox full")
        write_failures = server.warnings("write of")
    baseline = max(echo_before["events_per_second"], echo_after["events_per_second"])
    result: dict[str, Any] = {
        "config": {"browsers": clients, "frames_per_browser": per_client, "quick": args.quick,
                   "batch_size": "default (200)", "flush_seconds": "default (0.25)"},
        "echo_before": echo_before, "echo_after": echo_after, "voice": voice, "loss_check": check,
        "figure": {"recorded_events_per_second": voice["events_per_second"],
                   "baseline_echo_events_per_second": baseline,
                   "ratio": h.ratio(voice["events_per_second"], baseline), "target_ratio": TARGET_RATIO,
                   "zero_loss": check["zero_loss"]},
        "server_log": {"broadcast_outbox_full_warnings": outbox[:5], "recorder_write_failures": write_failures[:5]},
    }
    result["figure"]["met"] = bool(result["figure"]["ratio"] and result["figure"]["ratio"] >= TARGET_RATIO
                                   and check["zero_loss"])
    if spy is not None:
        top = spy.top()
        result["profile"] = {"raw": str(spy.raw.relative_to(h.REPO)),
                             "top": str(h.write_top("ingest-profile", top).relative_to(h.REPO)),
                             "top_self": top.get("self", [])[:12]}
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = h.common_args(__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=0)
    parser.add_argument("--frames", type=int, default=0, help="frames per browser")
    args = parser.parse_args(argv)
    result = h.run(args, main_async, call_mode="relay")
    fig = result["figure"]
    h.log(f"INGEST: {fig['recorded_events_per_second']:.0f} recorded events/s vs echo "
          f"{fig['baseline_echo_events_per_second']:.0f}/s = {fig['ratio']:.2f} (target >= {TARGET_RATIO}); "
          f"zero loss: {fig['zero_loss']} ({result['loss_check']['events_lost']} lost)")
    # A profiled run is slower (py-spy takes CPU on the same cores): never let it overwrite the figure.
    h.write_result(h.result_name("ingest", args), result)
    return result


if __name__ == "__main__":
    main()
