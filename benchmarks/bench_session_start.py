"""Session start (relay mode): websocket connect to `ag2.init`, and the server's own share of it.

One logged-in browser at a time opens /ws/voice/ and times the opening handshake up to the `ag2.init`
frame; in between, the server authenticates the cookie, checks the user's limits, creates the
VoiceSession row, builds the agent and mints a client secret at the emulator (POST
/v1/realtime/client_secrets). Each session is hung up (and its close awaited) before the next starts.

Baseline, interleaved one-for-one in the same run: the same mint request, same body, sent by this
process straight to the emulator over a fresh TCP connection (a reused httpx client with keep-alive
off: connection set-up + emulator work + loopback, nothing else). The server's share of each start is
`total - median(mint)`. For reference, the mint is also timed the way the server does it today (a new
httpx.AsyncClient per request, on one cached TLS context), which adds the client's construction cost;
the difference is reported. Also timed, as the floor under any session start: a websocket to the
bare echo consumer on the same daphne (same origin check and auth middleware) and one echo.
Target: p50 of the server's share <= 10 ms.

This is the relay flow (the browser creates the call with the minted secret); the benchmark puts every
configuration in relay mode before it starts. Server mode's start (offer -> answer) is in
bench_server_mode.py.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import harness as h

TARGET_P50_MS = 10.0


def _mint_body() -> dict[str, Any]:
    """Exactly what the server sends for the default configuration."""
    from voice.models import VoiceConfig

    config = VoiceConfig.objects.for_slug_or_default(None)
    assert config is not None and config.call_mode == "relay", "the default config must be relay mode (h.run sets it)"
    return {"expires_after": {"anchor": "created_at", "seconds": config.secret_lifetime_seconds},
            "session": config.to_session_payload()}


async def _session(server: h.Daphne, cookie: str) -> float:
    t0 = time.perf_counter()
    ws = await h.ws_connect(server, "/ws/voice/", cookie)
    try:
        await h.until_type(ws, "ag2.init", 30)
        total = time.perf_counter() - t0
        await ws.send(json.dumps({"type": "ag2.hangup"}))
        async with asyncio.timeout(30):
            await ws.wait_closed()
    finally:
        await ws.close()
    return total


async def _echo_connect(server: h.Daphne, cookie: str) -> float:
    """The floor: a websocket to a bare consumer on the same daphne (same middleware) and one echo."""
    t0 = time.perf_counter()
    ws = await h.ws_connect(server, "/ws/echo/", cookie)
    try:
        await ws.send('{"type":"ping"}')
        await h.recv_json(ws, 30)
        return time.perf_counter() - t0
    finally:
        await ws.close()


async def main_async(args: Any) -> dict[str, Any]:
    import certifi
    import httpx

    count = args.count or (60 if args.quick else 400)
    warmup = 5
    cookies = await asyncio.to_thread(h.create_users, "start", 1)
    body = await asyncio.to_thread(_mint_body)
    with h.Stack() as stack:
        emulator = stack.start(h.Emulator())
        server = stack.start(h.Daphne("daphne-start", emulator))
        url = f"{emulator.api}/realtime/client_secrets"
        headers = {"Authorization": "Bearer sk-emulator-local", "Content-Type": "application/json"}
        fresh_conn = httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_keepalive_connections=0))

        async def mint_round_trip() -> float:
            t0 = time.perf_counter()
            response = await fresh_conn.post(url, headers=headers, json=body)
            elapsed = time.perf_counter() - t0
            assert response.status_code == 200, response.text
            return elapsed

        tls = ssl.create_default_context(cafile=certifi.where())

        async def mint_like_server() -> float:
            t0 = time.perf_counter()
            async with httpx.AsyncClient(timeout=10, verify=tls) as http:
                response = await http.post(url, headers=headers, json=body)
            elapsed = time.perf_counter() - t0
            assert response.status_code == 200, response.text
            return elapsed

        h.log(f"session start: {count} sessions, one at a time, each beside a direct mint")
        for _ in range(warmup):
            await _session(server, cookies[0])
            await mint_round_trip()
            await mint_like_server()
            await _echo_connect(server, cookies[0])
        profile = h.Profile("session-start-profile", server.pid, 600).start() if args.profile else None
        totals, mints, server_style, echoes = [], [], [], []
        try:
            async with asyncio.timeout(60 + count * 2):
                for i in range(count):
                    # Alternate the order so neither side systematically follows the other.
                    if i % 2:
                        mints.append(await mint_round_trip())
                        totals.append(await _session(server, cookies[0]))
                    else:
                        totals.append(await _session(server, cookies[0]))
                        mints.append(await mint_round_trip())
                    server_style.append(await mint_like_server())
                    echoes.append(await _echo_connect(server, cookies[0]))
        finally:
            if profile is not None:
                profile.stop()
            await fresh_conn.aclose()
        phases: dict[str, list[float]] = {}
        for line in server.warnings("bench-phase "):
            name, value = line.split("bench-phase ", 1)[1].split()
            phases.setdefault(name, []).append(float(value))
    ms = [t * 1000 for t in totals]
    mint_ms = [t * 1000 for t in mints]
    server_style_ms = [t * 1000 for t in server_style]
    echo_ms = [t * 1000 for t in echoes]
    mint_p50 = h.percentile(mint_ms, 50)
    share = [t - mint_p50 for t in ms]
    share_paired = [t - m for t, m in zip(ms, mint_ms, strict=True)]
    result: dict[str, Any] = {
        "config": {"sessions": count, "warmup": warmup, "quick": args.quick},
        "connect_to_init_ms": h.summary(ms),
        "mint_round_trip_ms": h.summary(mint_ms),
        "mint_new_client_per_request_ms": h.summary(server_style_ms),
        "bare_websocket_connect_and_echo_ms": h.summary(echo_ms),
        "server_share_ms": h.summary(share),
        "server_share_above_bare_websocket_ms": h.summary([t - h.percentile(echo_ms, 50) for t in share]),
        "server_share_paired_ms": h.summary(share_paired),
        "figure": {"server_share_p50_ms": round(h.percentile(share, 50), 2),
                   "server_share_p99_ms": round(h.percentile(share, 99), 2),
                   "total_p50_ms": round(h.percentile(ms, 50), 2), "total_p99_ms": round(h.percentile(ms, 99), 2),
                   "baseline_mint_p50_ms": round(mint_p50, 2),
                   "baseline_mint_p99_ms": round(h.percentile(mint_ms, 99), 2),
                   "new_httpx_client_cost_p50_ms": round(h.percentile(server_style_ms, 50) - mint_p50, 2),
                   "bare_websocket_connect_p50_ms": round(h.percentile(echo_ms, 50), 2),
                   "target_p50_ms": TARGET_P50_MS},
    }
    result["figure"]["met"] = result["figure"]["server_share_p50_ms"] <= TARGET_P50_MS
    if phases:
        result["server_phases_ms"] = {name: h.summary(values[warmup:]) for name, values in phases.items()}
    if profile is not None:
        top = profile.top()
        result["profile"] = {"raw": str(profile.raw.relative_to(h.REPO)),
                             "top": str(h.write_top("session-start-profile", top).relative_to(h.REPO)),
                             "top_self": top.get("self", [])[:12]}
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = h.common_args(__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=0)
    args = parser.parse_args(argv)
    result = h.run(args, main_async, call_mode="relay")
    fig = result["figure"]
    h.log(f"SESSION START: server share p50 {fig['server_share_p50_ms']:.1f} ms, "
          f"p99 {fig['server_share_p99_ms']:.1f} ms "
          f"(total p50 {fig['total_p50_ms']:.1f} ms, mint p50 {fig['baseline_mint_p50_ms']:.1f} ms; "
          f"target p50 <= {TARGET_P50_MS:g} ms)")
    h.write_result(h.result_name("session_start", args), result)
    return result


if __name__ == "__main__":
    main()
