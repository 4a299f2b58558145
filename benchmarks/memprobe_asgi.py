"""benchmarks.echo_asgi with tracemalloc on, for finding where per-session memory goes.

Only for the memory profile of bench_concurrent_sessions.py (`--trace-memory`); tracemalloc slows the
process down and roughly doubles what it allocates, so figures never come from this module. Two
loopback-only HTTP endpoints, answered before Django sees the request:

    GET /_bench/tracemalloc/mark   take the baseline snapshot
    GET /_bench/tracemalloc/diff   JSON: live allocations grown since the mark, by line and by traceback
"""

from __future__ import annotations

import json
import os
import tracemalloc
from typing import Any

tracemalloc.start(int(os.environ.get("BENCH_TRACEMALLOC_FRAMES", "8")))

from benchmarks.echo_asgi import application as inner  # noqa: E402

_PREFIX = "/_bench/tracemalloc/"
_state: dict[str, Any] = {}


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/lib/python3", "/work/main/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def _diff() -> dict[str, Any]:
    snapshot = tracemalloc.take_snapshot().filter_traces([
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    ])
    base = _state.get("mark")
    if base is None:
        return {"error": "mark first"}
    by_line = snapshot.compare_to(base, "lineno")
    by_trace = snapshot.compare_to(base, "traceback")
    by_file = snapshot.compare_to(base, "filename")
    total = sum(stat.size_diff for stat in by_line)
    return {
        "total_growth_bytes": total,
        "by_file": [{"file": _short(s.traceback[0].filename), "kib": round(s.size_diff / 1024, 1),
                     "count": s.count_diff} for s in by_file[:25]],
        "by_line": [{"where": f"{_short(s.traceback[0].filename)}:{s.traceback[0].lineno}",
                     "kib": round(s.size_diff / 1024, 1), "count": s.count_diff} for s in by_line[:40]],
        "by_traceback": [{"kib": round(s.size_diff / 1024, 1), "count": s.count_diff,
                          "stack": [f"{_short(f.filename)}:{f.lineno}" for f in s.traceback][::-1]}
                         for s in by_trace[:25]],
    }


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope.get("path", "").startswith(_PREFIX):
        while (await receive()).get("more_body"):
            pass
        action = scope["path"][len(_PREFIX):]
        if action == "mark":
            _state["mark"] = tracemalloc.take_snapshot()
            body: dict[str, Any] = {"ok": True, "traced_bytes": tracemalloc.get_traced_memory()[0]}
        elif action == "diff":
            body = _diff()
        else:
            body = {"error": f"unknown action {action!r}"}
        payload = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": payload})
        return
    await inner(scope, receive, send)
