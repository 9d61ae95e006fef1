"""The summary of a curation run over its shards, checked: in = passed + rejected + quarantined + source_failed.

``summarize`` reads the shards' ``pairs`` and ``shard_runs`` partitions and raises
``AccountingError`` when a shard is unfinished, a pair is counted twice or the totals disagree;
``format_summary`` prints it as the funnel ``t2i curate`` shows.
"""
from __future__ import annotations

import json

from tasks import img2dataset_meta as i2d
from tasks.curate_rows import AccountingError, count_statuses, shard_done
from warehouse import lake as lk


def _by_stage(pairs: list[dict]) -> dict[str, dict[str, int]]:
    """{status: {stage: count}} of the pairs that did not pass."""
    out: dict[str, dict[str, int]] = {}
    for p in pairs:
        if p["status"] != "passed":
            per = out.setdefault(p["status"], {})
            per[p["stage"] or ""] = per.get(p["stage"] or "", 0) + 1
    return out


def _check(shards: list[str], runs: list[dict], pairs: list[dict], n_in: int, n: dict[str, int]) -> None:
    missing = sorted(set(shards) - {r["shard"] for r in runs})
    if missing:
        raise AccountingError(f"shards not finished: {missing}")
    keys = [(p["shard"], p["key"]) for p in pairs]
    if len(set(keys)) != len(keys):
        raise AccountingError("a pair is accounted more than once")
    if n_in != sum(n.values()):
        raise AccountingError(f"in={n_in} != passed {n['n_passed']} + rejected {n['n_rejected']} + quarantined "
                              f"{n['n_quarantined']} + source_failed {n['n_' + i2d.SOURCE_FAILED]}")


def summarize(lake: str, shards: list[str], order: list[str] | tuple = ()) -> dict:
    """Counts over the given shards, checked: in == passed + rejected + quarantined + source_failed."""
    runs = lk.read_table(lake, "shard_runs", [s for s in shards if shard_done(lake, s)]).to_pylist()
    pairs = lk.read_table(lake, "pairs", [s for s in shards if lk.has_partition(lake, "pairs", s)]).to_pylist()
    n = count_statuses(p["status"] for p in pairs)
    n_in = sum(r["n_in"] for r in runs)
    stages = _by_stage(pairs)
    backends: dict[str, str] = {}
    for r in runs:
        backends.update(json.loads(r["backends"] or "{}"))
    errors = {r["shard"]: json.loads(r["errors"] or "[]") for r in runs}
    summary = {"n_shards": len(shards), "n_in": n_in, **n,
               "source_failed_by_stage": stages.get(i2d.SOURCE_FAILED, {}),
               "rejected_by_stage": stages.get("rejected", {}),
               "quarantined_by_stage": stages.get("quarantined", {}), "backends": backends,
               "order": [(st, stages.get("rejected", {}).get(st, 0)) for st in order],
               "shard_errors": {s: e for s, e in errors.items() if e}}
    _check(shards, runs, pairs, n_in, n)
    return summary


def format_summary(s: dict) -> str:
    lines = [f"curated {s['n_shards']} shards: in={s['n_in']} = passed {s['n_passed']} + rejected "
             f"{s['n_rejected']} + quarantined {s['n_quarantined']} + source_failed {s['n_source_failed']}  [checked]",
             "funnel:"]
    left = s["n_in"]
    lines.append(f"  {'input':<12}{left:>8}   (img2dataset rows)")
    f = s["n_source_failed"]
    left -= f
    lines.append(f"  {'downloaded':<12}{left:>8}   (-{f} source_failed: "
                 + ", ".join(f"{k} {v}" for k, v in sorted(s["source_failed_by_stage"].items())) + ")")
    q = sum(s["quarantined_by_stage"].values())
    left -= q
    lines.append(f"  {'readable':<12}{left:>8}   (-{q} quarantined: "
                 + ", ".join(f"{k} {v}" for k, v in sorted(s["quarantined_by_stage"].items())) + ")")
    for stage, k in s.get("order", []):
        left -= k
        lines.append(f"  {stage:<12}{left:>8}   (-{k})")
    lines.append("backends: " + ", ".join(f"{k}={v}" for k, v in sorted(s["backends"].items())))
    for shard, errs in s["shard_errors"].items():
        lines.append(f"shard {shard}: " + "; ".join(errs))
    return "\n".join(lines)
