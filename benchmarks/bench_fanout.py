"""Fan-out: latency from a browser frame leaving the client to its arrival on a staff dashboard that is
connected to another daphne process.

Two daphne processes share one Redis (and one PostgreSQL): process A serves the voice sessions, process
B the dashboards. S browsers on A each relay a realistic GA event stream at 10 events/s (random phase);
K staff dashboards on B each subscribe to one session (spread evenly over the S), as a person watching a
live call does. What is measured, and why:

* **frame -> dashboard (the figure).** A dashboard gets every frame of the session it watches: transcript
  deltas as `delta` messages, everything else as `event` messages; both are published at once, before
  the batched write. Each frame carries its send time (monotonic ns, system-wide clock) in `event_id`,
  and deltas also in their text, because a `delta` message carries only the text. Latency = arrival on
  the dashboard websocket - send time. Only frames sent inside the measurement window count.
* **committed item -> dashboard (reported beside it).** The staff group carries finished transcript
  items, tool calls and usage of *every* session, published after the Recorder's transaction commits
  (so they include its flush interval, 250 ms by default). Item texts carry the send time of the frame
  that finished them. This is the load every dashboard carries, whichever session it watches.

Baseline, same run, same Redis, same client process: a bare channels_redis `group_send` to a group of
one channel and `receive` on it (the one hop a frame takes between A and B), timed idle before each
load level and again under the load. Target: frame -> dashboard p99 <= 50 ms at 200 sessions, with 1
and with 5 dashboards. The load sweep (sessions at 10 events/s each) feeds plot_fanout.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import harness as h
from realtime_emulator.streams import FOLDED, turns

TARGET_P99_MS = 50.0
RATE = 10.0  # events per second per session
SESSIONS_PER_USER = 50
STAMP = re.compile(r"~T(\d+)~")
EVENT_ID = re.compile(r"^ev_(\d+)$")


def _restamp(text: str, mark: str) -> str:
    return STAMP.sub("", text) + mark


def stamp_frame(frame: dict[str, Any], ns: int) -> str:
    """Write the send time into the frame (event_id, delta text, transcripts) and serialise it."""
    mark = f"~T{ns}~"
    frame["event_id"] = f"ev_{ns}"
    if frame["type"] in FOLDED:
        frame["delta"] = _restamp(frame["delta"], mark)
    if isinstance(frame.get("transcript"), str):
        frame["transcript"] = _restamp(frame["transcript"], mark)
    item = frame.get("item")
    if isinstance(item, dict):
        for part in item.get("content") or []:
            if isinstance(part, dict) and isinstance(part.get("transcript"), str):
                part["transcript"] = _restamp(part["transcript"], mark)
    return json.dumps(frame, separators=(",", ":"))


class Window:
    def __init__(self) -> None:
        self.start_ns = self.end_ns = 0

    def inside(self, ns: int) -> bool:
        return self.start_ns <= ns < self.end_ns


class Session:
    """A browser on process A relaying its stream at RATE events/s."""

    def __init__(self, index: int, server: h.Daphne, cookie: str) -> None:
        self.index, self.server, self.cookie = index, server, cookie
        self.session_id = ""
        self.sent_in_window = 0
        self.late_ms: list[float] = []

    async def open(self) -> None:
        self.ws, self.session_id = await h.open_voice_session(self.server, self.cookie, f"rtc_fan{self.index}")
        self.drain = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for _ in self.ws:  # tool answers, ag2.close: read and dropped, as a browser would relay them
                pass
        except ConnectionClosed:
            pass

    async def run(self, stop_at: float, window: Window) -> None:
        stream = turns(f"f{self.index}")
        period = 1.0 / RATE
        due = time.monotonic() + random.random() * period
        while due < stop_at:
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            ns = time.monotonic_ns()
            late = (ns / 1e9 - due) * 1000
            await self.ws.send(stamp_frame(next(stream), ns))
            if window.inside(ns):
                self.sent_in_window += 1
                self.late_ms.append(late)
            due += period

    async def hang_up(self, timeout: float) -> bool:
        try:
            await self.ws.send(json.dumps({"type": "ag2.hangup"}))
            async with asyncio.timeout(timeout):
                await self.drain
            return True
        except Exception:
            return False
        finally:
            await self.ws.close()


class Dashboard:
    """A staff dashboard on process B watching one session."""

    def __init__(self, index: int, server: h.Daphne, cookie: str) -> None:
        self.index, self.server, self.cookie = index, server, cookie
        self.frame_ms: list[float] = []
        self.frame_at: list[tuple[float, float]] = []  # (sent, seconds into the window; latency ms)
        self.item_ms: list[float] = []
        self.received = 0
        self.received_in_window = 0
        self.watched_in_window = 0
        self.kinds: dict[str, int] = {}
        self.expected = 0

    async def open(self, session_id: str, window: Window) -> None:
        self.window = window
        self.ws = await h.ws_connect(self.server, "/ws/dashboard/", self.cookie)
        await h.until_type(self.ws, "snapshot", 60)
        await self.ws.send(json.dumps({"type": "subscribe", "session_id": session_id}))
        await h.until_type(self.ws, "session.snapshot", 60)
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        window = self.window
        try:
            async for text in self.ws:
                now = time.monotonic_ns()
                self.received += 1
                message = json.loads(text)
                kind = message.get("type", "?")
                self.kinds[kind] = self.kinds.get(kind, 0) + 1
                if window.start_ns <= now:
                    self.received_in_window += 1
                sent = None
                if kind == "delta":
                    found = STAMP.findall(message.get("delta", ""))
                    sent = int(found[-1]) if found else None
                elif kind == "event":
                    match = EVENT_ID.match(str(message.get("event", {}).get("payload", {}).get("event_id", "")))
                    sent = int(match.group(1)) if match else None
                elif kind == "item":
                    found = STAMP.findall(message.get("item", {}).get("text") or "")
                    if found and window.inside(int(found[-1])):
                        self.item_ms.append((now - int(found[-1])) / 1e6)
                    continue
                if sent is not None and window.inside(sent):
                    self.watched_in_window += 1
                    self.frame_ms.append((now - sent) / 1e6)
                    self.frame_at.append(((sent - window.start_ns) / 1e9, (now - sent) / 1e6))
        except ConnectionClosed:
            pass

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)


async def probe_group_send(layer: Any, seconds: float, rate: float, stop: asyncio.Event | None = None) -> list[float]:
    """Bare channel-layer round trips: group_send to a one-channel group, receive it; milliseconds."""
    channel = await layer.new_channel()
    group = f"bench.probe.{random.randrange(1 << 30)}"
    await layer.group_add(group, channel)
    samples: list[float] = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and not (stop and stop.is_set()):
            t0 = time.monotonic_ns()
            await layer.group_send(group, {"type": "probe", "t": t0})
            async with asyncio.timeout(10):
                message = await layer.receive(channel)
            samples.append((time.monotonic_ns() - message["t"]) / 1e6)
            await asyncio.sleep(1.0 / rate)
    finally:
        await layer.group_discard(group, channel)
    return samples


def _saturated(level: dict[str, Any]) -> bool:
    return bool(level.get("percentiles_censored") or level["frame_to_dashboard_ms"].get("p50", 0) > 1000)


def _redis_pid() -> int | None:
    import psutil

    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "redis-server" and "6379" in " ".join(proc.info["cmdline"] or []):
            return proc.pid
    return None


async def run_level(a: h.Daphne, b: h.Daphne, layer: Any, cookies: list[str], staff: list[str], sessions: int,
                    dashboards: int, warmup: float, measure: float, drain_seconds: float,
                    profile: str | None) -> dict[str, Any]:
    h.log(f"  level: {sessions} sessions x {RATE:g} ev/s, {dashboards} dashboard(s)")
    idle_probe = await probe_group_send(layer, 4.0, 50.0)
    browsers = [Session(i, a, cookies[i // SESSIONS_PER_USER]) for i in range(sessions)]
    await h.gather_limited([s.open() for s in browsers], 20)
    window = Window()
    watched = [browsers[(j * sessions) // dashboards] for j in range(dashboards)]
    boards = [Dashboard(j, b, staff[j]) for j in range(dashboards)]
    await asyncio.gather(*(d.open(s.session_id, window) for d, s in zip(boards, watched, strict=True)))
    pids = {"daphne_a": a.pid, "daphne_b": b.pid}
    redis_pid = _redis_pid()
    if redis_pid:
        pids["redis"] = redis_pid
    pids["bench_client"] = os.getpid()
    cpu = h.cpu_sampler(pids)
    start = time.monotonic()
    window.start_ns = int((start + warmup) * 1e9)
    window.end_ns = int((start + warmup + measure) * 1e9)
    stop_at = start + warmup + measure
    senders = [asyncio.create_task(s.run(stop_at, window)) for s in browsers]
    await asyncio.sleep(warmup)
    cpu()
    spy = h.Profile(profile, a.pid, measure).start() if profile else None
    loaded_probe_task = asyncio.create_task(probe_group_send(layer, measure, 20.0))
    try:
        await asyncio.sleep(measure)
        cpu_window = cpu()
        await asyncio.gather(*senders)
        loaded_probe = await loaded_probe_task
    finally:
        if spy is not None:
            spy.stop()
    # Frames of the window still in flight (a saturated server may be seconds behind): wait for them,
    # bounded, so that a slow delivery is measured as slow rather than dropped from the sample.
    for board, session in zip(boards, watched, strict=True):
        board.expected = session.sent_in_window
    deadline = time.monotonic() + drain_seconds
    while time.monotonic() < deadline and any(d.watched_in_window < d.expected for d in boards):  # noqa: ASYNC110
        await asyncio.sleep(0.25)  # polling a count kept by the readers; bounded by `deadline`
    await asyncio.gather(*(d.close() for d in boards))
    closed = await h.gather_limited([s.hang_up(30) for s in browsers], 50)
    await _wait_idle(a, drain_seconds)
    frame_ms = [x for d in boards for x in d.frame_ms]
    item_ms = [x for d in boards for x in d.item_ms]
    expected = sum(d.expected for d in boards)
    late = [x for s in browsers for x in s.late_ms]
    missing = expected - len(frame_ms)
    slowest = sorted((x for d in boards for x in d.frame_at), key=lambda x: -x[1])[:15]
    return {
        "sessions": sessions, "dashboards": dashboards, "events_per_second_offered": sessions * RATE,
        "measure_seconds": measure,
        "frame_to_dashboard_ms": h.summary(frame_ms),
        "frames_expected_on_dashboards": expected, "frames_received_on_dashboards": len(frame_ms),
        # Frames not delivered within drain_seconds: the percentiles above are then lower bounds.
        "frames_undelivered": missing, "percentiles_censored": missing > 0.01 * max(1, expected),
        "committed_item_to_dashboard_ms": h.summary(item_ms),
        "baseline_group_send_idle_ms": h.summary(idle_probe),
        "baseline_group_send_under_load_ms": h.summary(loaded_probe),
        "dashboard_messages_per_second": round(sum(d.received_in_window for d in boards) / dashboards / measure, 1),
        "dashboard_message_kinds": boards[0].kinds,
        "sender_lateness_ms": h.summary(late),
        "cpu_percent": cpu_window,
        "sessions_hung_up_cleanly": sum(closed),
        # When the slowest frames were sent (seconds into the window): clustered = a pause somewhere.
        "window_start_monotonic_s": round(window.start_ns / 1e9, 3),
        "slowest_frames_sent_at_s_and_ms": [[round(t, 3), round(ms, 1)] for t, ms in sorted(slowest)],
    }


async def _wait_idle(server: h.Daphne, limit: float) -> None:
    """After a level, let the server work off any backlog before the next level starts (bounded)."""
    deadline = time.monotonic() + limit
    quiet = 0
    while time.monotonic() < deadline and quiet < 2:
        before = server.cpu_seconds()
        await asyncio.sleep(1.0)
        quiet = quiet + 1 if server.cpu_seconds() - before < 0.15 else 0
    if quiet < 2:
        h.log(f"    {server.name} still busy after {limit:.0f}s of drain")


async def main_async(args: Any) -> dict[str, Any]:
    if args.quick:
        # Small enough to finish inside `make bench`; the 200-session figure comes from the full run.
        levels = [(20, 1), (20, 5), (50, 5)]
        warmup, measure, drain = 2.0, 6.0, 20.0
    else:
        levels = [(25, 5), (50, 5), (100, 5), (200, 1), (200, 5), (400, 5)]
        warmup, measure, drain = 5.0, 30.0, 240.0
    if args.levels:
        levels = [tuple(int(x) for x in part.split("x")) for part in args.levels.split(",")]  # type: ignore[misc]
    most = max(s for s, _ in levels)
    cookies = await asyncio.to_thread(h.create_users, "fan", (most + SESSIONS_PER_USER - 1) // SESSIONS_PER_USER)
    staff = await asyncio.to_thread(h.create_users, "staff", max(d for _, d in levels), staff=True)
    from channels.layers import get_channel_layer

    if "pubsub" in h.ACTIVE_TRIAL:
        h.use_pubsub_layer()
    layer = get_channel_layer()
    results = []
    with h.Stack() as stack:
        emulator = stack.start(h.Emulator())
        a = stack.start(h.Daphne("daphne-fanout-a", emulator))
        b = stack.start(h.Daphne("daphne-fanout-b", emulator))
        h.log(f"fan-out: A={a.http} (sessions), B={b.http} (dashboards), Redis {h.REDIS_URL}")
        for sessions, dashboards in levels:
            if sessions > 200 and results and _saturated(results[-1]) and not args.levels:
                h.log(f"  level {sessions}x{dashboards} skipped: the server was already saturated at "
                      f"{results[-1]['sessions']} sessions")
                results.append({"sessions": sessions, "dashboards": dashboards, "skipped": "saturated below",
                                "frame_to_dashboard_ms": {"n": 0}})
                continue
            profile = None
            if args.profile and sessions == max(s for s, _ in levels) and dashboards == max(d for _, d in levels):
                profile = "fanout-profile"
            async with asyncio.timeout(warmup + measure + 3 * drain + 300):
                level = await run_level(a, b, layer, cookies, staff, sessions, dashboards, warmup, measure, drain,
                                        profile)
            fr = level["frame_to_dashboard_ms"]
            h.log(f"    frame->dashboard p50 {fr.get('p50')} ms p99 {fr.get('p99')} ms "
                  f"({level['frames_received_on_dashboards']}/{level['frames_expected_on_dashboards']}); "
                  f"group_send p99 idle {level['baseline_group_send_idle_ms'].get('p99')} / loaded "
                  f"{level['baseline_group_send_under_load_ms'].get('p99')} ms; cpu {level['cpu_percent']}")
            results.append(level)
        outbox = a.warnings("Broadcast outbox full")
    figure: dict[str, Any] = {}
    for level in results:
        if level.get("skipped"):
            continue
        key = f"{level['sessions']}_sessions_{level['dashboards']}_dashboards"
        fr = level["frame_to_dashboard_ms"]
        figure[key] = {"p50_ms": fr.get("p50"), "p99_ms": fr.get("p99"),
                       "baseline_group_send_p50_ms": level["baseline_group_send_idle_ms"].get("p50"),
                       "baseline_group_send_p99_ms": level["baseline_group_send_idle_ms"].get("p99"),
                       "baseline_group_send_under_load_p99_ms": level["baseline_group_send_under_load_ms"].get("p99"),
                       "ratio_p99_to_baseline_p99": h.ratio(fr.get("p99") or 0,
                                                            level["baseline_group_send_idle_ms"].get("p99") or 0),
                       "committed_item_p99_ms": level["committed_item_to_dashboard_ms"].get("p99"),
                       "frames_undelivered": level["frames_undelivered"],
                       "cpu_percent_a": level["cpu_percent"].get("daphne_a"),
                       "met": bool(fr.get("p99") is not None and fr["p99"] <= TARGET_P99_MS
                                   and not level["percentiles_censored"])}
    at_200 = [v["met"] for k, v in figure.items() if k.startswith("200_sessions_")]
    figure["target_met_at_200_sessions"] = all(at_200) if at_200 else None
    figure["target_p99_ms"] = TARGET_P99_MS
    extra: dict[str, Any] = {}
    if args.profile:
        top = h.top_frames(h.RESULTS / "fanout-profile.collapsed.txt")
        extra["profile"] = {"raw": "benchmarks/results/fanout-profile.collapsed.txt",
                            "top": str(h.write_top("fanout-profile", top).relative_to(h.REPO)),
                            "top_self": top.get("self", [])[:12]}
    return {**extra, "config": {"rate_per_session": RATE, "warmup_seconds": warmup, "measure_seconds": measure,
                       "quick": args.quick, "levels": levels},
            "levels": results, "figure": figure,
            "server_log": {"broadcast_outbox_full_warnings_on_a": outbox[:5]}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = h.common_args(__doc__.splitlines()[0])
    parser.add_argument("--levels", default="", help="e.g. 50x5,200x1 (sessions x dashboards)")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    result = h.run(args, main_async, call_mode="relay")
    for key, value in result["figure"].items():
        if isinstance(value, dict):
            h.log(f"FAN-OUT {key}: A cpu {value['cpu_percent_a']}%, undelivered {value['frames_undelivered']}, "
                  f"p50 {value['p50_ms']} ms, p99 {value['p99_ms']} ms (bare group_send p99 "
                  f"{value['baseline_group_send_p99_ms']} ms idle, {value['baseline_group_send_under_load_p99_ms']}"
                  f" ms under load; target p99 <= {TARGET_P99_MS:g} ms)")
    name = h.result_name("fanout", args)
    h.write_result(name, result)
    if not args.no_plot:
        try:
            import matplotlib  # noqa: F401  (the bench extra; the figures do not need it)
        except ImportError:
            h.log("plot skipped: matplotlib is not installed (pip install -e '.[bench]'); the figures are written")
        else:
            from benchmarks import plot_fanout

            png = "fanout.png" if name == "fanout" else f"{name}.png"
            plot_fanout.plot(h.RESULTS / f"{name}.json", h.RESULTS / png)
    return result


if __name__ == "__main__":
    main()
