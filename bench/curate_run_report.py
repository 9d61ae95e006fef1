"""What a finished curation run cost, from its lake: pairs/s, CPU per pair per stage, and the
orchestration share (issue #26.2).

    python bench/curate_run_report.py LAKE --wall 412.3 --workers 2 [--run-cpu 801.2] [--load-cpu 6.1]

The shards record their own wall and process-CPU seconds (``shard_runs.seconds`` /
``cpu_seconds``, and per stage ``stage_cpu_seconds``). Everything else a run spends is
orchestration and start-up: Prefect task runs and API calls, Dask's scheduling and transfers,
the lake writes after each shard, the cross-shard dedup and the summary, and the workers'
start (imports, model loads). Two shares:

* **wall** (the issue's definition): ``1 - sum(shard seconds) / (workers x wall)``, the part of
  the workers' time not spent inside a shard;
* **CPU**: ``1 - (sum(shard CPU) + workers x model-load CPU) / run CPU``, where run CPU is every
  process of the run (flow, Prefect API, scheduler, workers); it holds on a shared machine.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import djepa_t2i.env  # noqa: E402,F401


def shard_totals(lake: str) -> dict:
    """Pairs, shards, summed shard wall/CPU seconds and per-stage CPU with the images that entered."""
    from warehouse import db
    _, runs = db.query(lake, "SELECT n_in, seconds, cpu_seconds, stage_cpu_seconds FROM shard_runs")
    stage: dict[str, float] = {}
    for *_, cs in runs:
        for k, v in json.loads(cs).items():
            stage[k] = stage.get(k, 0.0) + v
    _, ent = db.query(lake, "SELECT filter, count(*), sum(passed::int) FROM filter_scores GROUP BY 1")
    n = sum(r[0] for r in runs)
    entered = {"read": (n, n), "decode": (n, n)} | {k: (c, p) for k, c, p in ent}
    return {"pairs": n, "shards": len(runs), "shard_wall": sum(r[1] for r in runs),
            "shard_cpu": sum(r[2] or 0.0 for r in runs), "stage_cpu": stage, "entered": entered}


def shares(t: dict, wall: float, workers: int, run_cpu: float | None = None, load_cpu: float = 0.0) -> dict:
    out = {"pairs_per_s": t["pairs"] / wall, "wall_share": 1 - t["shard_wall"] / (workers * wall),
           "stage_cpu_ms_per_pair": sum(t["stage_cpu"].values()) / t["pairs"] * 1e3}
    if run_cpu:
        out["cpu_share"] = 1 - (t["shard_cpu"] + workers * load_cpu) / run_cpu
        out["run_cpu_ms_per_pair"] = run_cpu / t["pairs"] * 1e3
    return out


def lines(t: dict, s: dict, workers: int, run_cpu: float | None, load_cpu: float) -> list[str]:
    out = [f"- {t['pairs']} pairs in {t['shards']} shards: **{s['pairs_per_s']:.1f} pairs/s** end to end",
           f"- orchestration share, wall: **{s['wall_share']:.1%}** (shards' wall {t['shard_wall']:.1f} s over "
           f"{workers} workers against {t['pairs'] / s['pairs_per_s']:.1f} s end to end)"]
    if run_cpu:
        out.append(f"- orchestration share, CPU: **{s['cpu_share']:.1%}** (run CPU {run_cpu:.1f} s = "
                   f"{s['run_cpu_ms_per_pair']:.1f} ms/pair; shards {t['shard_cpu']:.1f} s; model loads "
                   f"{workers} x {load_cpu:.1f} s)")
    out += ["", "| stage | images in | passed | CPU s | CPU ms/image | CPU ms per input pair | CPU ms per rejection |",
            "|---|---|---|---|---|---|---|"]
    ranks = cascade_ranks(t)
    for k, v in t["stage_cpu"].items():
        n, p = t["entered"].get(k, (0, 0))
        if n:
            out.append(f"| {k} | {n} | {p if k not in ('read', 'decode') else '-'} | {v:.2f} | {v / n * 1e3:.1f} | "
                       f"{v / t['pairs'] * 1e3:.2f} | {ranks[k]:.1f} |" if k in ranks else
                       f"| {k} | {n} | - | {v:.2f} | {v / n * 1e3:.1f} | {v / t['pairs'] * 1e3:.2f} | - |")
    out.append(f"| **all stages** | {t['pairs']} | | {sum(t['stage_cpu'].values()):.2f} | | "
               f"**{s['stage_cpu_ms_per_pair']:.1f}** | |")
    out.append(f"\nCascade by CPU per rejection (cost / (1 - pass rate), cheapest first): {', '.join(sorted(ranks, key=ranks.get))}")
    return out


def cascade_ranks(t: dict) -> dict[str, float]:
    """CPU ms a filter spends per pair it rejects (its cost / its rejection rate; inf when it
    rejected none). For independent filters the cascade is cheapest when run in this order
    (each drops the most pairs per CPU ms before the next), from the lake's own history."""
    out = {}
    for k, v in t["stage_cpu"].items():
        n, p = t["entered"].get(k, (0, 0))
        if n and k not in ("read", "decode"):
            out[k] = v / (n - p) * 1e3 if n > p else float("inf")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("lake")
    ap.add_argument("--wall", type=float, required=True, help="end-to-end seconds of the run")
    ap.add_argument("--workers", type=int, required=True)
    ap.add_argument("--run-cpu", type=float, default=None, help="CPU seconds of every process of the run")
    ap.add_argument("--load-cpu", type=float, default=0.0, help="CPU seconds one worker spends loading the models")
    a = ap.parse_args()
    t = shard_totals(a.lake)
    print("\n".join(lines(t, shares(t, a.wall, a.workers, a.run_cpu, a.load_cpu), a.workers, a.run_cpu, a.load_cpu)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
