"""Which websocket client should the server's sideband use? Memory per idle session, measured.

Opens ``--sessions`` sideband connections (default 200) to live calls on the project's emulator, waits
until every one has received its ``session.created``, lets them idle, and measures the client process:
RSS delta per session (``/proc/self/statm``) and, in a second run, Python heap per session
(``tracemalloc``). Each variant runs in its own fresh child process, so no variant pays for another's
imports; the emulator (with the calls) runs in this process and is not measured.

Variants, each reading every event like a real consumer:

* ``websockets_lean``: bare ``websockets.connect`` without permessage-deflate, one reader task each
  (the baseline: the least a sideband can cost);
* ``websockets_deflate``: the same with websockets' default compression (what "just use websockets"
  gives);
* ``sideband_client``: ``OpenAIRealtimeSidebandClient`` (websockets + typed events + queue + tap);
* ``openai_sdk``: the official SDK, ``AsyncOpenAI().realtime.connect(call_id=...)``.

Behaviour (reconnect control, frame limits, keepalive) is read from the libraries' code and written
beside the figures. No PostgreSQL or Redis needed.

    .venv/bin/python benchmarks/bench_sideband_client.py [--sessions 200] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

API_KEY = "sk-bench-sideband-0123456789"
VARIANTS = ("websockets_lean", "websockets_deflate", "sideband_client", "openai_sdk")
PAGE = os.sysconf("SC_PAGE_SIZE")

BEHAVIOUR = {
    "sideband_client": {
        "reconnect": "built in: jittered exponential backoff (ReconnectPolicy: attempts, delays, give-up time); "
        "1000 = call ended, 401/403/404 not retried; every gap queued as a typed SidebandGap event and "
        "given to on_gap; client events during a gap held in a bounded buffer and sent in order after",
        "frame_limit": "4 MiB per frame (max_frame_bytes), 16 frames buffered by websockets, bounded event queue",
        "keepalive": "websockets ping every 20 s, 20 s pong timeout (configurable); a missed pong is a drop",
        "events": "parsed once, by voice.realtime.events (the project's one parser)",
        "compression": "off",
    },
    "openai_sdk": {
        "reconnect": "only if on_reconnecting is given (max_retries 5, 0.5..8 s); no gap event; unsent client "
        "events queued up to 1 MiB; the caller cannot tell which server events were missed",
        "frame_limit": "none by default (max_size=None): one huge frame is read whole into memory",
        "keepalive": "websockets defaults (20 s / 20 s)",
        "events": "parsed into the SDK's own pydantic models; the project would parse a second time into its "
        "typed events (or re-serialise)",
        "compression": "off when max_size is None (its default)",
    },
}


# --- worker: one variant in a fresh process -------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


async def worker(variant: str, mode: str, base: str, call_ids: list[str]) -> dict[str, Any]:
    rss_start = rss_bytes()
    if variant.startswith("websockets"):
        import websockets
    elif variant == "sideband_client":
        from voice.realtime import OpenAIRealtimeSidebandClient
    else:
        import websockets  # the SDK's transport, imported here so its cost counts as import cost
        from openai import AsyncOpenAI
    gc.collect()
    rss_imported = rss_bytes()
    ws_base = base.replace("http://", "ws://")
    created = asyncio.Event()
    attached = 0
    holders: list[Any] = []
    readers: list[asyncio.Task[None]] = []
    semaphore = asyncio.Semaphore(50)

    expected = 1
    sdk = AsyncOpenAI(api_key=API_KEY, base_url=base, max_retries=0) if variant == "openai_sdk" else None

    def one_attached() -> None:
        nonlocal attached
        attached += 1
        if attached == expected:
            created.set()

    async def open_one(call_id: str) -> None:
        async with semaphore:
            if variant.startswith("websockets"):
                compression = None if variant == "websockets_lean" else "deflate"
                ws = await websockets.connect(
                    f"{ws_base}/realtime?call_id={call_id}",
                    additional_headers={"Authorization": f"Bearer {API_KEY}"},
                    compression=compression,
                )
                holders.append(ws)

                async def read_ws() -> None:
                    first = True
                    async for message in ws:
                        json.loads(message)
                        if first:
                            first = False
                            one_attached()

                readers.append(asyncio.ensure_future(read_ws()))
            elif variant == "sideband_client":
                config = {"config_list": [{"model": "gpt-realtime", "api_key": API_KEY, "base_url": base}]}
                client = OpenAIRealtimeSidebandClient(llm_config=config, call_id=call_id)
                await client.open()
                holders.append(client)

                async def read_client() -> None:
                    first = True
                    async for _event in client.read_events():
                        if first:
                            first = False
                            one_attached()

                readers.append(asyncio.ensure_future(read_client()))
            else:
                # One SDK client for all sessions, as a server would share it.
                connection = await sdk.realtime.connect(call_id=call_id).enter()  # type: ignore[union-attr]
                holders.append(connection)

                async def read_sdk() -> None:
                    first = True
                    async for _event in connection:
                        if first:
                            first = False
                            one_attached()

                readers.append(asyncio.ensure_future(read_sdk()))

    # One warm-up session first, outside the measurement: what the first connection loads lazily (TLS,
    # codecs, the SDK's resource classes) is a per-process cost, not a per-session one.
    await open_one(call_ids[0])
    await asyncio.wait_for(created.wait(), 60)
    measured = call_ids[1:]
    expected, created = 1 + len(measured), asyncio.Event()
    await asyncio.sleep(0.2)
    gc.collect()
    rss_before = rss_bytes()
    if mode == "tracemalloc":
        import tracemalloc

        tracemalloc.start()
    started = time.perf_counter()
    await asyncio.gather(*(open_one(call_id) for call_id in measured))
    await asyncio.wait_for(created.wait(), 60)
    open_seconds = time.perf_counter() - started
    await asyncio.sleep(1.0)  # idle, as a session between turns
    gc.collect()
    result: dict[str, Any] = {
        "variant": variant,
        "mode": mode,
        "sessions": len(measured),
        "import_rss_mib": round((rss_imported - rss_start) / 2**20, 2),
    }
    if mode == "tracemalloc":
        import tracemalloc

        current, _peak = tracemalloc.get_traced_memory()
        result["heap_per_session_kib"] = round(current / len(measured) / 1024, 1)
    else:
        result["rss_per_session_kib"] = round((rss_bytes() - rss_before) / len(measured) / 1024, 1)
        result["open_all_seconds"] = round(open_seconds, 3)
    for reader in readers:
        reader.cancel()
    for holder in holders:
        await holder.close()
    return result


# --- main: the emulator, the calls, one child per variant and mode ----------------------------------------


async def start_emulator() -> tuple[Any, str, str]:
    """The emulator in this process; returns (runner, api base, one reusable offer SDP)."""
    from aiohttp import web
    from aiortc import RTCConfiguration, RTCPeerConnection

    from realtime_emulator.app import create_app

    runner = web.AppRunner(create_app(connect_timeout=3600), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="sendrecv")
    pc.createDataChannel("oai-events")
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    await pc.close()
    return runner, f"http://127.0.0.1:{port}/v1", offer


async def create_calls(base: str, offer: str, count: int) -> list[str]:
    """Fresh calls for one child: an emulated call whose browser never connects ends once ICE gives up
    (about a minute), so calls are not shared between children."""
    import httpx

    from voice.realtime import create_call

    async with httpx.AsyncClient() as http:
        await http.post(base.replace("/v1", "/_emulator/reset"))
    semaphore = asyncio.Semaphore(10)
    session = {"type": "realtime", "model": "gpt-realtime"}

    async def one() -> str:
        async with semaphore:
            return (await create_call(base, API_KEY, offer, session, timeout=30)).call_id

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def run_children(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.harness import log, machine, write_result

    sessions = 50 if args.quick else args.sessions
    runner, base, offer = await start_emulator()
    results: list[dict[str, Any]] = []
    try:
        for mode in ("rss", "tracemalloc"):
            for variant in VARIANTS:
                call_ids = await create_calls(base, offer, sessions + 1)  # one more for the warm-up session
                with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
                    json.dump(call_ids, handle)
                    calls_file = handle.name
                process = await asyncio.create_subprocess_exec(
                    sys.executable, __file__, "--worker", variant, "--mode", mode, "--base", base,
                    "--calls-file", calls_file,
                    stdout=subprocess.PIPE, cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)},
                )  # fmt: skip
                stdout, _ = await asyncio.wait_for(process.communicate(), 180)
                if process.returncode != 0:
                    raise RuntimeError(f"{variant}/{mode} worker failed ({process.returncode})")
                result = json.loads(stdout.decode().strip().splitlines()[-1])
                log(json.dumps(result))
                results.append(result)
                os.unlink(calls_file)
    finally:
        await runner.cleanup()

    table: dict[str, dict[str, Any]] = {}
    for result in results:
        row = table.setdefault(result["variant"], {"variant": result["variant"]})
        row.update({k: v for k, v in result.items() if k not in ("variant", "mode")})
    for row in table.values():
        row["open_ms_per_session"] = round(row["open_all_seconds"] * 1000 / sessions, 2)
    baseline = table["websockets_lean"]
    for row in table.values():
        row["rss_vs_lean"] = round(row["rss_per_session_kib"] / baseline["rss_per_session_kib"], 2)
        row["heap_vs_lean"] = round(row["heap_per_session_kib"] / baseline["heap_per_session_kib"], 2)
    data = {"machine": machine(), "sessions": sessions, "variants": list(table.values()), "behaviour": BEHAVIOUR}
    path = write_result("sideband_client" + ("-quick" if args.quick else ""), data)
    print()
    print(f"{'variant':<20} {'RSS KiB/session':>16} {'heap KiB/session':>17} {'import MiB':>11} {'open all s':>11}")
    for row in table.values():
        print(
            f"{row['variant']:<20} {row['rss_per_session_kib']:>16} {row['heap_per_session_kib']:>17} "
            f"{row['import_rss_mib']:>11} {row['open_all_seconds']:>11}"
        )
    log(f"written {path}")
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="50 sessions")
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=("rss", "tracemalloc"), default="rss", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--calls-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        call_ids = json.loads(Path(args.calls_file).read_text())
        print(json.dumps(asyncio.run(worker(args.worker, args.mode, args.base, call_ids))), flush=True)
        return
    asyncio.run(run_children(args))


if __name__ == "__main__":
    main()
