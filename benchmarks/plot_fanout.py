"""Plot fan-out latency against load: benchmarks/results/fanout.json -> benchmarks/results/fanout.png.

x: concurrent sessions (each relaying 10 events/s); y: frame -> dashboard latency (p50, p99) with five
dashboards, the single-dashboard point at 200 sessions, the bare group_send baseline under the same
load, and the 50 ms target. Log scale, so both the baseline and a saturated server fit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import harness as h


def plot(source: Path, target: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data: dict[str, Any] = json.loads(source.read_text())
    levels = data["levels"]
    target_ms = data["figure"].get("target_p99_ms", 50.0)
    five = sorted((lv for lv in levels if lv["dashboards"] == 5 and lv["frame_to_dashboard_ms"].get("n")),
                  key=lambda lv: lv["sessions"])
    one = [lv for lv in levels if lv["dashboards"] == 1 and lv["frame_to_dashboard_ms"].get("n")]

    fig, ax = plt.subplots(figsize=(11, 5.5), dpi=120)
    xs = [lv["sessions"] for lv in five]
    ax.plot(xs, [lv["frame_to_dashboard_ms"]["p99"] for lv in five], "o-", color="tab:red",
            label="frame → dashboard p99 (5 dashboards)")
    ax.plot(xs, [lv["frame_to_dashboard_ms"]["p50"] for lv in five], "o-", color="tab:blue",
            label="frame → dashboard p50 (5 dashboards)")
    if one:
        ax.plot([lv["sessions"] for lv in one], [lv["frame_to_dashboard_ms"]["p99"] for lv in one], "^",
                color="tab:red", markersize=9, markerfacecolor="none", label="p99, 1 dashboard")
        ax.plot([lv["sessions"] for lv in one], [lv["frame_to_dashboard_ms"]["p50"] for lv in one], "^",
                color="tab:blue", markersize=9, markerfacecolor="none", label="p50, 1 dashboard")
    ax.plot(xs, [lv["baseline_group_send_under_load_ms"].get("p99") for lv in five], "s--", color="grey",
            label="baseline: bare group_send p99, same load")
    ax.plot(xs, [lv["baseline_group_send_idle_ms"].get("p99") for lv in five], "x:", color="grey",
            label="baseline: bare group_send p99, idle")
    for lv in five + one:
        if lv.get("percentiles_censored"):
            ax.annotate(f"{lv['frames_undelivered']} frames undelivered:\npercentiles are lower bounds",
                        (lv["sessions"], lv["frame_to_dashboard_ms"]["p99"]), textcoords="offset points",
                        xytext=(-60, 12), fontsize=7, color="tab:red")
    ax.axhline(target_ms, color="black", linewidth=1, linestyle="-.", label=f"target p99 ≤ {target_ms:g} ms")
    ax.set_yscale("log")
    ax.set_xlabel("concurrent voice sessions on process A (10 events/s each)")
    ax.set_ylabel("latency, ms (log scale)")
    machine = data.get("machine", {})
    ax.set_title(f"Fan-out latency vs load — {machine.get('cpus', '?')} CPUs, {data.get('finished_at', '')}"
                 + (" (quick)" if data.get("config", {}).get("quick") else ""), fontsize=10)
    ax.set_xticks(xs or [0])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    fig.savefig(target)
    plt.close(fig)
    h.log(f"wrote {target.relative_to(h.REPO) if target.is_relative_to(h.REPO) else target}")
    return target


if __name__ == "__main__":
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else h.RESULTS / "fanout.json"
    dst = Path(sys.argv[2]) if len(sys.argv) > 2 else h.RESULTS / "fanout.png"
    plot(src, dst)
