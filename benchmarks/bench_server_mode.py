"""Server mode: sideband ingest, offer-to-answer start, tool turnaround and idle sessions, each beside a
baseline measured in the same run.

Browsers here are websocket clients holding logged-in Django sessions: `/ws/voice/`, `ag2.init`, then
`ag2.offer` (one SDP offer made once with aiortc; nobody connects media, so the emulator runs with a long
`--connect-timeout` and its calls stay up), `ag2.answer`, `ag2.ready`. The server creates each call at
the emulator (POST /v1/realtime/calls) and attaches its sideband; the emulator plays its `stream` script
(replies, a clock and a calculator tool call, repeating). daphne runs `benchmarks.servermode_asgi`, the
site plus timing probes around the real code paths (see that module).

1. ingest: S sessions; the emulator streams T turns on each call's sideband at R events/s per call
   (POST /_emulator/calls/{id}/stream). Figure: the stream's events / (stream started -> every row of
   them committed in PostgreSQL), then zero loss checked against the emulator's own account of each
   call (rows, transcript items and their text, tool calls). Baseline: the same number of calls created
   by this process, each read by a bare websocket client on its sideband (answering tool calls at
   once), same turns, same rate: events / (stream started -> last event received). Target >= 0.8 x.
2. start: one session at a time, `ag2.offer` sent -> `ag2.answer` received. The server's share is that
   minus the time the server itself spent awaiting OpenAI for the same session (its `create_call` and
   its sideband handshake, probes in the server). Beside it, interleaved: the same /calls request and a
   sideband handshake sent by this process straight to the emulator. Target p50 <= 5 ms.
3. tool: S sessions streaming at a conversational rate; for each tool call, in the server, the frame
   that runs the tool (`response.output_item.done` with the function call) heard on the sideband ->
   `function_call_output` and `response.create` written. Baseline: the same measured in bare websocket
   clients that answer with a fixed output at once. Target p99 <= 5 ms.
4. idle: N idle server-mode sessions (call up, sideband open) in one daphne process; RSS growth / N.
   Baseline: a second daphne holding N bare echo websockets, and the bare sideband client's own cost
   (bench_sideband_client.py). Target: 1,000 sessions at <= 150 KB each.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import harness as h
from benchmarks.bench_concurrent_sessions import _close_all, _idle_cpu, _open_echo, _settled_rss
from realtime_emulator.streams import FOLDED  # the frames the Recorder folds into items instead of logging

MODULE = "benchmarks.servermode_asgi:application"
EMULATOR_OPTIONS = ("--script", "stream", "--connect-timeout", "7200")
API_KEY = "sk-emulator-local"
TARGET_INGEST_RATIO = 0.8
TARGET_START_P50_MS = 5.0
TARGET_TOOL_P99_MS = 5.0
TARGET_IDLE_KB = 150.0
SESSIONS_PER_USER = 50
TOOL_OUTPUTS = {"current_time": json.dumps({"timezone": "Europe/Lisbon", "iso": "2026-12-01T09:30:00+00:00",
                                            "date": "2026-12-01"}),
                "calculator": json.dumps({"expression": "3.10 * 7", "result": 21.7})}


# --- the browser, the emulator's controls, a bare sideband client ------------------------------------------


async def make_offer() -> str:
    """A browser's offer (audio + the oai-events data channel), made once and sent for every call."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="sendrecv")
    pc.createDataChannel("oai-events")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return str(sdp)


class Browser:
    """One server-mode browser: init, offer -> answer (timed), ready."""

    def __init__(self, server: h.Daphne, cookie: str) -> None:
        self.server, self.cookie = server, cookie
        self.ws: Any = None
        self.session_id = ""
        self.offer_to_answer = 0.0

    async def start(self, offer: str, timeout: float = 60) -> Browser:
        self.ws = await h.ws_connect(self.server, "/ws/voice/", self.cookie)
        init = await h.until_type(self.ws, "ag2.init", timeout)
        if init.get("mode") != "server":
            raise RuntimeError(f"expected a server-mode session, got {init}")
        self.session_id = init["session_id"]
        t0 = time.perf_counter()
        await self.ws.send(json.dumps({"type": "ag2.offer", "sdp": offer}))
        await h.until_type(self.ws, "ag2.answer", timeout)
        self.offer_to_answer = time.perf_counter() - t0
        await self.ws.send(json.dumps({"type": "ag2.ready"}))
        return self

    async def hang_up(self) -> None:
        await _close_all([self.ws], hangup=True)


class Control:
    """The emulator's controls and OpenAI endpoints, from this process."""

    def __init__(self, emulator: h.Emulator) -> None:
        import httpx

        self.emulator = emulator
        self.http = httpx.AsyncClient(base_url=emulator.root, timeout=60)
        self.fresh = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_keepalive_connections=0))
        self.auth = {"Authorization": f"Bearer {API_KEY}"}

    async def close(self) -> None:
        await self.http.aclose()
        await self.fresh.aclose()

    async def stream(self, call_id: str, turns: int, rate: float | None) -> dict[str, Any]:
        response = await self.http.post(f"/_emulator/calls/{call_id}/stream", json={"turns": turns, "rate": rate})
        assert response.status_code == 202, response.text
        return dict(response.json())

    async def status(self, call_id: str) -> dict[str, Any]:
        return dict((await self.http.get(f"/_emulator/calls/{call_id}/stream")).json())

    async def call(self, call_id: str) -> dict[str, Any]:
        return dict((await self.http.get(f"/_emulator/calls/{call_id}")).json())

    async def create_call(self, offer: str, session: dict[str, Any]) -> tuple[str, float]:
        """POST /v1/realtime/calls as the server sends it (multipart, standard key), on a fresh connection."""
        files = {"sdp": (None, offer.encode(), "application/sdp"),
                 "session": (None, json.dumps(session).encode(), "application/json")}
        t0 = time.perf_counter()
        response = await self.fresh.post(f"{self.emulator.api}/realtime/calls", headers=self.auth, files=files)
        elapsed = time.perf_counter() - t0
        assert response.status_code == 201, response.text
        return response.headers["location"].rsplit("/", 1)[1], elapsed

    async def hang_up(self, call_id: str) -> None:
        await self.fresh.post(f"{self.emulator.api}/realtime/calls/{call_id}/hangup", headers=self.auth)

    async def wait_streams(self, call_ids: list[str], timeout: float) -> list[dict[str, Any]]:
        """Until every stream has played its turns and its sideband has sent every event it emitted."""
        async with asyncio.timeout(timeout):
            while True:
                statuses = await asyncio.gather(*(self.status(c) for c in call_ids))
                errors = [s["error"] for s in statuses if s.get("error")]
                if errors:
                    raise RuntimeError(f"a stream failed: {errors[0]}")
                if all(not s["running"] and s["sideband_events_sent"] >= s["events_emitted"] + 1 for s in statuses):
                    return statuses
                await asyncio.sleep(0.2)


class BareSideband:
    """The baseline: a bare `websockets` client on a call's sideband (no compression, the server's frame
    bound) that counts frames and answers each function call at once, timing its own turnaround."""

    def __init__(self, control: Control, call_id: str) -> None:
        self.control, self.call_id = control, call_id
        self.received = 0
        self.last_at = 0.0
        self.turnarounds: list[float] = []
        self.ws: Any = None
        self.task: asyncio.Task[None] | None = None
        self.created = asyncio.Event()

    async def open(self) -> BareSideband:
        from websockets.asyncio.client import connect

        url = self.control.emulator.api.replace("http://", "ws://") + f"/realtime?call_id={self.call_id}"
        self.ws = await connect(url, additional_headers=self.control.auth, compression=None, max_size=4 * 2**20,
                                max_queue=16, ping_interval=None, proxy=None)
        self.task = asyncio.create_task(self._read())
        await asyncio.wait_for(self.created.wait(), 30)
        return self

    async def _read(self) -> None:
        async for message in self.ws:
            now = time.perf_counter()
            self.received += 1
            self.last_at = now
            if '"session.created"' in message[:80]:
                self.created.set()
            elif '"response.output_item.done"' in message[:120] and '"function_call"' in message:
                item = json.loads(message)["item"]
                if item["type"] == "function_call":
                    await self.ws.send(json.dumps({"type": "conversation.item.create", "item": {
                        "type": "function_call_output", "call_id": item["call_id"],
                        "output": TOOL_OUTPUTS.get(item["name"], "{}")}}))
                    await self.ws.send(json.dumps({"type": "response.create"}))
                    self.turnarounds.append((time.perf_counter() - now) * 1000)

    async def close(self) -> None:
        await self.ws.close()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)
        await self.control.hang_up(self.call_id)


def _session_payload() -> dict[str, Any]:
    """The GA session the server sends with /calls for the default configuration."""
    from voice.models import VoiceConfig

    config = VoiceConfig.objects.for_slug_or_default(None)
    assert config is not None and config.call_mode == "server", "the default config must be server mode (h.run sets it)"
    return dict(config.to_session_payload())


def _call_ids(session_ids: list[str]) -> dict[str, str]:
    from voice.models import VoiceSession

    return dict(VoiceSession.objects.filter(pk__in=session_ids).exclude(call_id="").values_list("pk", "call_id"))


async def call_ids_of(session_ids: list[str], timeout: float = 30) -> dict[str, str]:
    """Session id -> call id, from the record (the browser is never told the call id)."""
    async with asyncio.timeout(timeout):
        while True:
            found = {str(k): v for k, v in (await asyncio.to_thread(_call_ids, session_ids)).items()}
            if len(found) == len(session_ids):
                return found
            await asyncio.sleep(0.1)


async def open_browsers(server: h.Daphne, cookies: list[str], count: int, offer: str, limit: int) -> list[Browser]:
    return list(await h.gather_limited(
        [Browser(server, cookies[i // SESSIONS_PER_USER]).start(offer) for i in range(count)], limit))


def _probe_lines(server: h.Daphne, tag: str) -> list[list[str]]:
    return [line.split(tag + " ", 1)[1].split() for line in server.warnings(tag + " ")]


# --- 1. ingest --------------------------------------------------------------------------------------------


def _sideband_rows(session_ids: list[str]) -> int:
    from voice.models import SessionEvent

    return SessionEvent.objects.filter(session_id__in=session_ids, direction="from_openai").count()


def _record_of(session_id: str) -> dict[str, Any]:
    from voice.models import SessionEvent, ToolCall, TranscriptItem

    items = list(TranscriptItem.objects.filter(session_id=session_id).values_list("item_id", "kind", "text"))
    return {"rows": SessionEvent.objects.filter(session_id=session_id, direction="from_openai").count(),
            "items": {item_id: (kind, text) for item_id, kind, text in items},
            "tool_calls": ToolCall.objects.filter(session_id=session_id).count()}


def _item_text(item: dict[str, Any]) -> str:
    parts = item.get("content") or []
    return "".join(str(p.get("transcript") or p.get("text") or "") for p in parts)


async def verify(control: Control, pairs: dict[str, str], statuses: list[dict[str, Any]]) -> dict[str, Any]:
    """Each session's record against the emulator's account of its call: every frame not folded is a row,
    every item is there with its text, every function call is a tool call."""
    problems: list[str] = []
    for (session_id, call_id), status in zip(pairs.items(), statuses, strict=True):
        call = await control.call(call_id)
        types = call["server_event_types"]
        expected_rows = status["sideband_events_sent"] - sum(1 for t in types if t in FOLDED)
        record = await asyncio.to_thread(_record_of, session_id)
        if record["rows"] != expected_rows:
            problems.append(f"{session_id}: {record['rows']} sideband rows, expected {expected_rows}")
        full = (await control.http.get(f"/_emulator/calls/{call_id}")).json()
        for item in full.get("items", []):
            kind, text = record["items"].get(item["id"], (None, None))
            if kind is None:
                problems.append(f"{session_id}: item {item['id']} missing")
            elif item["type"] == "message" and text != _item_text(item):
                problems.append(f"{session_id}: item {item['id']} text {text!r} != {_item_text(item)!r}")
        calls = sum(1 for item in full.get("items", []) if item["type"] == "function_call")
        if record["tool_calls"] != calls:
            problems.append(f"{session_id}: {record['tool_calls']} tool calls, expected {calls}")
    return {"zero_loss": not problems, "problems": problems[:20]}


async def run_ingest(args: Any, cookies: list[str], offer: str) -> dict[str, Any]:
    sessions, turns, rate = args.sessions, args.turns, args.rate
    with h.Stack() as stack:
        emulator = stack.start(h.Emulator("emulator-ingest", *EMULATOR_OPTIONS))
        server = stack.start(h.Daphne("daphne-server-ingest", emulator, module=MODULE))
        control = Control(emulator)
        try:
            session = await asyncio.to_thread(_session_payload)
            baseline = await _bare_ingest(control, offer, session, sessions, turns, rate, args.timeout)
            h.log(f"  bare sideband clients: {baseline['events_per_second']:,.0f} events/s")
            browsers = await open_browsers(server, cookies, sessions, offer, 10)
            pairs = await call_ids_of([b.session_id for b in browsers])
            await asyncio.sleep(1.0)
            before = await asyncio.gather(*(control.status(c) for c in pairs.values()))
            sample = h.cpu_sampler({"daphne": server.pid, "emulator": emulator.pid})
            profile = (h.Profile("server_mode-ingest-profile", server.pid, args.timeout).start() if args.profile
                       else None)
            t0 = time.perf_counter()
            await asyncio.gather(*(control.stream(c, turns, rate) for c in pairs.values()))
            try:
                statuses = await control.wait_streams(list(pairs.values()), args.timeout)
                expected_rows = 0
                for call_id, status in zip(pairs.values(), statuses, strict=True):
                    types = (await control.call(call_id))["server_event_types"]
                    expected_rows += status["sideband_events_sent"] - sum(1 for t in types if t in FOLDED)
                ids = list(pairs)
                async with asyncio.timeout(args.timeout):
                    while await asyncio.to_thread(_sideband_rows, ids) < expected_rows:  # noqa: ASYNC110
                        await asyncio.sleep(0.05)
                elapsed = time.perf_counter() - t0
            finally:
                if profile is not None:
                    profile.stop()
            cpu = sample()
            events = sum(s["events_emitted"] - b["events_emitted"] for s, b in zip(statuses, before, strict=True))
            checked = await verify(control, pairs, statuses)
            await asyncio.gather(*(b.hang_up() for b in browsers))
        finally:
            await control.close()
    per_second = events / elapsed
    result: dict[str, Any] = {
        "sessions": sessions, "turns_per_session": turns, "rate_per_session": rate,
        "set_rate_total": rate * sessions if rate else None, "events": events, "seconds": round(elapsed, 2),
        "events_per_second": round(per_second, 1), "cpu_percent": cpu, **checked, "baseline": baseline,
        "ratio": h.ratio(per_second, baseline["events_per_second"]),
    }
    if profile is not None:
        top = profile.top()
        result["profile"] = {"top": str(h.write_top("server_mode-ingest-profile", top).relative_to(h.REPO)),
                             "top_self": top.get("self", [])[:12]}
    return result


async def _bare_ingest(control: Control, offer: str, session: dict[str, Any], sessions: int, turns: int,
                       rate: float | None, timeout: float) -> dict[str, Any]:
    calls = [await control.create_call(offer, session) for _ in range(sessions)]
    clients = [await BareSideband(control, call_id).open() for call_id, _ in calls]
    try:
        received_before = [c.received for c in clients]
        t0 = time.perf_counter()
        await asyncio.gather(*(control.stream(c.call_id, turns, rate) for c in clients))
        statuses = await control.wait_streams([c.call_id for c in clients], timeout)
        async with asyncio.timeout(timeout):
            while any(c.received < s["sideband_events_sent"]  # noqa: ASYNC110 (the readers are counting)
                      for c, s in zip(clients, statuses, strict=True)):
                await asyncio.sleep(0.02)
        events = sum(c.received - before for c, before in zip(clients, received_before, strict=True))
        elapsed = max(c.last_at for c in clients) - t0
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    return {"events": events, "seconds": round(elapsed, 2), "events_per_second": round(events / elapsed, 1),
            "tool_turnaround_ms": h.summary([t for c in clients for t in c.turnarounds])}


# --- 2. start ---------------------------------------------------------------------------------------------


async def run_start(args: Any, cookies: list[str], offer: str) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    count, warmup = args.starts, 5
    with h.Stack() as stack:
        emulator = stack.start(h.Emulator("emulator-start", *EMULATOR_OPTIONS))
        server = stack.start(h.Daphne("daphne-server-start", emulator, module=MODULE))
        control = Control(emulator)
        session = await asyncio.to_thread(_session_payload)
        url = emulator.api.replace("http://", "ws://") + "/realtime?call_id="

        async def direct() -> tuple[float, float]:
            """The same two requests to OpenAI, from here: /calls, then the sideband's handshake."""
            call_id, calls = await control.create_call(offer, session)
            t0 = time.perf_counter()
            ws = await connect(url + call_id, additional_headers=control.auth, compression=None, proxy=None)
            dial = time.perf_counter() - t0
            await ws.close()
            await control.hang_up(call_id)
            return calls * 1000, dial * 1000

        echo_ws = await h.ws_connect(server, "/ws/echo/", cookies[0])
        offer_frame = json.dumps({"type": "ag2.offer", "sdp": offer})

        async def echo() -> float:
            """The floor under any offer -> answer: the same frame to a bare consumer on the same daphne, back."""
            t0 = time.perf_counter()
            await echo_ws.send(offer_frame)
            await h.recv_json(echo_ws, 30)
            return (time.perf_counter() - t0) * 1000

        async def one() -> tuple[str, float]:
            browser = await Browser(server, cookies[0]).start(offer)
            await browser.hang_up()
            return browser.session_id, browser.offer_to_answer * 1000

        try:
            for _ in range(warmup):
                await one()
                await direct()
            profile = h.Profile("server_mode-start-profile", server.pid, 600).start() if args.profile else None
            totals: dict[str, float] = {}
            directs: list[tuple[float, float]] = []
            echoes: list[float] = []
            try:
                async with asyncio.timeout(60 + count * 3):
                    for i in range(count):
                        if i % 2:  # alternate the order so neither side always follows the other
                            directs.append(await direct())
                        sid, total = await one()
                        totals[sid] = total
                        if not i % 2:
                            directs.append(await direct())
                        echoes.append(await echo())
            finally:
                if profile is not None:
                    profile.stop()
        finally:
            await control.close()
            await echo_ws.close()
        probes = {sid: [float(v) for v in rest] for sid, *rest in _probe_lines(server, "bench-offer")}
    rows = [(total, *probes[sid]) for sid, total in totals.items() if sid in probes]
    share = [total - calls - dial for total, _, calls, dial in rows]
    inside = [offer_ms - calls - dial for _, offer_ms, calls, dial in rows]
    direct_calls = [c for c, _ in directs]
    direct_dial = [d for _, d in directs]
    total_ms = [r[0] for r in rows]
    result: dict[str, Any] = {
        "starts": count, "probed": len(rows),
        "offer_to_answer_ms": h.summary(total_ms),
        "server_share_ms": h.summary(share),
        "server_share_inside_offer_ms": h.summary(inside),
        "server_create_call_ms": h.summary([r[2] for r in rows]),
        "server_sideband_dial_ms": h.summary([r[3] for r in rows]),
        "baseline_calls_round_trip_ms": h.summary(direct_calls),
        "baseline_sideband_dial_ms": h.summary(direct_dial),
        "bare_websocket_offer_echo_ms": h.summary(echoes),
        "server_share_above_echo_ms": h.summary([x - h.percentile(echoes, 50) for x in share]),
        "share_by_medians_ms": round(h.percentile(total_ms, 50) - h.percentile(direct_calls, 50)
                                     - h.percentile(direct_dial, 50), 2),
    }
    if args.profile and profile is not None:
        top = profile.top()
        result["profile"] = {"top": str(h.write_top("server_mode-start-profile", top).relative_to(h.REPO)),
                             "top_self": top.get("self", [])[:12]}
    return result


# --- 3. tool turnaround -----------------------------------------------------------------------------------


def _stalls(lags: list[list[float]], over_ms: float) -> dict[str, Any]:
    """The loop's long stalls: how many, and how many of them the loop spent working, lost the CPU to
    another process (involuntary switches, little CPU of its own), or waited on another thread."""
    # Each lag: late ms, loop thread CPU ms, other threads' CPU ms, voluntary and involuntary switches.
    long = [lag for lag in lags if lag[0] > over_ms]
    return {"count": len(long),
            "loop_busy": sum(1 for lag in long if lag[1] > lag[0] / 2),
            "other_threads_busy": sum(1 for lag in long if lag[2] > lag[0] / 2),
            "preempted": sum(1 for lag in long if lag[4] > 0 and lag[1] + lag[2] <= lag[0] / 2),
            "late_ms": [round(lag[0], 1) for lag in sorted(long, key=lambda lag: -lag[0])[:10]]}


TOOL_STEPS = ("item_done_to_dispatch", "dispatch_to_task", "task_to_invoke", "invoke_to_function",
              "function", "function_to_invoked", "invoked_to_send", "send_to_sent")


async def run_tool(args: Any, cookies: list[str], offer: str) -> dict[str, Any]:
    sessions, turns, rate = args.tool_sessions, args.tool_turns, args.tool_rate
    with h.Stack() as stack:
        emulator = stack.start(h.Emulator("emulator-tool", *EMULATOR_OPTIONS))
        server = stack.start(h.Daphne("daphne-server-tool", emulator, module=MODULE))
        control = Control(emulator)
        try:
            session = await asyncio.to_thread(_session_payload)
            calls = [await control.create_call(offer, session) for _ in range(sessions)]
            clients = [await BareSideband(control, call_id).open() for call_id, _ in calls]
            try:
                await asyncio.gather(*(control.stream(c.call_id, turns, rate) for c in clients))
                await control.wait_streams([c.call_id for c in clients], args.timeout)
            finally:
                await asyncio.gather(*(c.close() for c in clients))
            bare = [t for c in clients for t in c.turnarounds]
            browsers = await open_browsers(server, cookies, sessions, offer, 10)
            pairs = await call_ids_of([b.session_id for b in browsers])
            await asyncio.sleep(1.0)
            profile = h.Profile("server_mode-tool-profile", server.pid, args.timeout).start() if args.profile else None
            try:
                await asyncio.gather(*(control.stream(c, turns, rate) for c in pairs.values()))
                await control.wait_streams(list(pairs.values()), args.timeout)
                await asyncio.sleep(0.5)
            finally:
                if profile is not None:
                    profile.stop()
            await asyncio.gather(*(b.hang_up() for b in browsers))
        finally:
            await control.close()
        probes = [[float(v) for v in rest] for _, *rest in _probe_lines(server, "bench-tool")]
        steps = [[float(v) for v in rest] for _, *rest in _probe_lines(server, "bench-toolsteps")]
        lags = [[float(v) for v in rest] for _, *rest in _probe_lines(server, "bench-looplag")]
    result: dict[str, Any] = {
        "sessions": sessions, "turns_per_session": turns, "rate_per_session": rate,
        "server_item_done_to_response_create_ms": h.summary([p[0] for p in probes]),
        "server_arguments_done_to_response_create_ms": h.summary([p[1] for p in probes]),
        "server_item_done_to_output_ms": h.summary([p[2] for p in probes]),
        "baseline_bare_client_ms": h.summary(bare),
        # Where the server's share goes, step by step (servermode_asgi.py, bench-toolsteps), and the loop's
        # late wake-ups over 1 ms during the whole run (bench-looplag).
        "server_steps_ms": {name: h.summary([p[i] for p in steps]) for i, name in enumerate(TOOL_STEPS)},
        "loop_late_wakeups_over_1ms": {"count": len(lags), "late_ms": h.summary([lag[0] for lag in lags]),
                                       "loop_thread_cpu_ms": h.summary([lag[1] for lag in lags]),
                                       "other_threads_cpu_ms": h.summary([lag[2] for lag in lags]),
                                       "loop_voluntary_switches": h.summary([lag[3] for lag in lags]),
                                       "loop_involuntary_switches": h.summary([lag[4] for lag in lags]),
                                       "over_10ms": _stalls(lags, 10.0)},
    }
    if profile is not None:
        top = profile.top()
        result["profile"] = {"top": str(h.write_top("server_mode-tool-profile", top).relative_to(h.REPO)),
                             "top_self": top.get("self", [])[:12]}
    return result


# --- 4. idle sessions ---------------------------------------------------------------------------------------


def _active_count(ids: list[str]) -> int:
    from voice.models import VoiceSession

    return VoiceSession.objects.filter(pk__in=ids, status="active").exclude(call_id="").count()


async def run_idle(args: Any, cookies: list[str], offer: str) -> dict[str, Any]:
    count = args.idle
    with h.Stack() as stack:
        emulator = stack.start(h.Emulator("emulator-idle", *EMULATOR_OPTIONS))
        echo_server = stack.start(h.Daphne("daphne-idle-echo", None, module=MODULE))
        echo = await _measure_idle(echo_server, count, lambda i: _open_echo(echo_server), lambda ws: ws)
        h.log(f"  {echo['kb_per_connection']:.1f} KB per bare echo websocket")
        echo_server.stop()
        server = stack.start(h.Daphne("daphne-idle-server", emulator, module=MODULE))

        async def open_one(i: int) -> Browser:
            return await Browser(server, cookies[i % 10_000 // SESSIONS_PER_USER]).start(offer)

        async def all_active(browsers: list[Browser]) -> None:
            ids = [b.session_id for b in browsers]
            while await asyncio.to_thread(_active_count, ids) < len(ids):  # noqa: ASYNC110 (polls the DB)
                await asyncio.sleep(0.5)

        voice = await _measure_idle(server, count, open_one, lambda b: b.ws, settle=all_active, hangup=True)
        h.log(f"  {voice['kb_per_connection']:.1f} KB per idle server-mode session")
    return {"sessions": count, "server_mode": voice, "echo_baseline": echo,
            "kb_per_session": voice["kb_per_connection"], "baseline_kb_per_echo": echo["kb_per_connection"],
            "ratio_to_echo": h.ratio(voice["kb_per_connection"], echo["kb_per_connection"])}


async def _measure_idle(server: h.Daphne, count: int, open_one: Any, socket_of: Any, *, settle: Any = None,
                        hangup: bool = False) -> dict[str, Any]:
    for i in range(3):  # warm-up: lazy imports and first-use caches are paid before the baseline
        opened = await open_one(10_000 + i)
        await _close_all([socket_of(opened)], hangup=hangup)
    await asyncio.sleep(2.0)
    base = await _settled_rss(server)
    t0 = time.perf_counter()
    held_sockets: list[Any] = []
    try:
        async with asyncio.timeout(600):
            opened_all = await h.gather_limited([open_one(i) for i in range(count)], 25)
            held_sockets = [socket_of(o) for o in opened_all]
            if settle is not None:
                await settle(opened_all)
        seconds = time.perf_counter() - t0
        await asyncio.sleep(3.0)
        held = await _settled_rss(server)
        idle_cpu = await _idle_cpu(server, 5.0)
    finally:
        await _close_all(held_sockets, hangup=hangup)
    return {"connections": count, "seconds_to_open_all": round(seconds, 1),
            "rss_before_mib": round(base / 2**20, 1), "rss_with_sessions_mib": round(held / 2**20, 1),
            "kb_per_connection": round((held - base) / count / 1024, 1), "idle_cpu_percent_with_sessions": idle_cpu}


# --- main -------------------------------------------------------------------------------------------------------

PARTS = ("ingest", "start", "tool", "idle")


async def main_async(args: Any) -> dict[str, Any]:
    chosen = [p for p in PARTS if not args.only or p in args.only.split(",")]
    users = max(1, (max(args.idle if "idle" in chosen else 0, args.sessions, args.tool_sessions) + SESSIONS_PER_USER
                    - 1) // SESSIONS_PER_USER)
    cookies = await asyncio.to_thread(h.create_users, "server", users)
    offer = await make_offer()
    result: dict[str, Any] = {"config": {k: getattr(args, k) for k in (
        "quick", "sessions", "turns", "rate", "starts", "tool_sessions", "tool_turns", "tool_rate", "idle")}}
    figure: dict[str, Any] = {}
    if "ingest" in chosen:
        h.log(f"ingest: {args.sessions} sessions x {args.turns} turns at {args.rate} events/s each")
        ingest = result["ingest"] = await run_ingest(args, cookies, offer)
        figure["ingest"] = {"events_per_second": ingest["events_per_second"],
                            "baseline_events_per_second": ingest["baseline"]["events_per_second"],
                            "set_rate": ingest["set_rate_total"], "ratio": ingest["ratio"],
                            "zero_loss": ingest["zero_loss"],
                            "met": ingest["zero_loss"] and (ingest["ratio"] or 0) >= TARGET_INGEST_RATIO}
    if "start" in chosen:
        h.log(f"start: {args.starts} sessions one at a time, each beside a direct /calls + sideband handshake")
        start = result["start"] = await run_start(args, cookies, offer)
        figure["start"] = {"server_share_p50_ms": start["server_share_ms"]["p50"],
                           "server_share_p99_ms": start["server_share_ms"]["p99"],
                           "offer_to_answer_p50_ms": start["offer_to_answer_ms"]["p50"],
                           "baseline_calls_p50_ms": start["baseline_calls_round_trip_ms"]["p50"],
                           "baseline_dial_p50_ms": start["baseline_sideband_dial_ms"]["p50"],
                           "bare_websocket_echo_p50_ms": start["bare_websocket_offer_echo_ms"]["p50"],
                           "met": start["server_share_ms"]["p50"] <= TARGET_START_P50_MS}
    if "tool" in chosen:
        h.log(f"tool: {args.tool_sessions} sessions x {args.tool_turns} turns at {args.tool_rate} events/s each")
        tool = result["tool"] = await run_tool(args, cookies, offer)
        server_ms = tool["server_item_done_to_response_create_ms"]
        figure["tool"] = {"samples": server_ms.get("n", 0), "p50_ms": server_ms.get("p50"),
                          "p99_ms": server_ms.get("p99"),
                          "baseline_p50_ms": tool["baseline_bare_client_ms"].get("p50"),
                          "baseline_p99_ms": tool["baseline_bare_client_ms"].get("p99"),
                          "met": server_ms.get("n", 0) > 0 and server_ms["p99"] <= TARGET_TOOL_P99_MS}
    if "idle" in chosen:
        h.log(f"idle: {args.idle} server-mode sessions held by one daphne, beside as many bare echo websockets")
        idle = result["idle"] = await run_idle(args, cookies, offer)
        figure["idle"] = {"sessions": args.idle, "kb_per_session": idle["kb_per_session"],
                          "baseline_kb_per_echo": idle["baseline_kb_per_echo"], "ratio": idle["ratio_to_echo"],
                          "baseline_rss_before_mib": idle["server_mode"]["rss_before_mib"],
                          "met": args.idle >= 1000 and idle["kb_per_session"] <= TARGET_IDLE_KB}
    result["figure"] = figure
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = h.common_args(__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(PARTS)}")
    parser.add_argument("--sessions", type=int, default=0, help="ingest: sessions (default 10 quick, 20 full)")
    parser.add_argument("--turns", type=int, default=0, help="ingest: turns streamed per session")
    parser.add_argument("--rate", type=float, default=0, help="ingest: events/s per session (the set rate)")
    parser.add_argument("--starts", type=int, default=0, help="start: sessions started one at a time")
    parser.add_argument("--tool-sessions", type=int, default=0)
    parser.add_argument("--tool-turns", type=int, default=0)
    parser.add_argument("--tool-rate", type=float, default=0)
    parser.add_argument("--idle", type=int, default=0, help="idle: sessions held (default 300 quick, 1,000 full)")
    parser.add_argument("--timeout", type=float, default=300.0, help="bound on each streamed phase (s)")
    args = parser.parse_args(argv)
    quick = args.quick
    args.sessions = args.sessions or (10 if quick else 20)
    args.rate = args.rate or 250.0
    args.turns = args.turns or (40 if quick else 120)
    args.starts = args.starts or (40 if quick else 300)
    args.tool_sessions = args.tool_sessions or 10
    args.tool_turns = args.tool_turns or (20 if quick else 100)
    args.tool_rate = args.tool_rate or 100.0
    args.idle = args.idle or (300 if quick else 1000)
    result = h.run(args, main_async, call_mode="server")
    fig = result["figure"]
    if "ingest" in fig:
        f = fig["ingest"]
        h.log(f"SERVER MODE INGEST: {f['events_per_second']:,.0f} events/s recorded (zero loss: {f['zero_loss']}), "
              f"bare sideband clients {f['baseline_events_per_second']:,.0f}/s, ratio {f['ratio']} "
              f"(set rate {f['set_rate']}/s; target >= {TARGET_INGEST_RATIO})")
    if "start" in fig:
        f = fig["start"]
        h.log(f"SERVER MODE START: server share p50 {f['server_share_p50_ms']:.1f} ms, p99 "
              f"{f['server_share_p99_ms']:.1f} ms (offer -> answer p50 {f['offer_to_answer_p50_ms']:.1f} ms; "
              f"direct /calls p50 {f['baseline_calls_p50_ms']:.1f} ms, sideband handshake "
              f"{f['baseline_dial_p50_ms']:.1f} ms; target p50 <= {TARGET_START_P50_MS:g} ms)")
    if "tool" in fig:
        f = fig["tool"]
        h.log(f"SERVER MODE TOOL: p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms over {f['samples']} calls "
              f"(bare client p50 {f['baseline_p50_ms']} ms, p99 {f['baseline_p99_ms']} ms; "
              f"target p99 <= {TARGET_TOOL_P99_MS:g} ms)")
    if "idle" in fig:
        f = fig["idle"]
        h.log(f"SERVER MODE IDLE: {f['sessions']} sessions, {f['kb_per_session']:.1f} KB each (bare echo websocket "
              f"{f['baseline_kb_per_echo']:.1f} KB; target <= {TARGET_IDLE_KB:g} KB at 1,000)")
    h.write_result(h.result_name("server_mode", args), result)
    return result


if __name__ == "__main__":
    main()
