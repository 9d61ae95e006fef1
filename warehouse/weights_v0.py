"""Sampling weights version 0: target frequencies from the observed data distribution.

Before any evaluation exists, the only signal is what the data contains. The paper keeps each
non-transformable attribute near a target frequency; v0 sets that target by *tempering* the
observed share, which lifts the long tail and lowers the head without inventing anything:

    for each kind K (notion, color, shape, count, spatial, texture, nonspatial, style, source):
        p_v    = observed share of captions (pairs, for source) that contain value v
        M_K    = sum_v p_v                                   (the kind's total mass, kept)
        t_v    = M_K * p_v**temper / sum_u p_u**temper       (temper 1: as observed; 0: flat)
        target = clip(t_v, min_target, max_target)
        weight = target / p_v                                (> 1: the sampler should see more)

With temper=0.5 a notion seen in 1% of captions next to one seen in 25% moves from 1:25 to
1:5. ``max_target`` caps the head (e.g. "photo" in half the alt texts), ``min_target`` keeps rare
values from vanishing. The resolution schedule rows are phase 2's two truncated normals of the
side length in kilopixels (paper §3.1, Fig. 7; phase 1 is a fixed 256² centre crop and needs
none): the config's ``schedule.start`` and ``schedule.final``. The tempering parameters are the
``notions`` section. See docs/weights.md.
"""
from __future__ import annotations

import json

from djepa_t2i.config import Notions, Schedule
from warehouse import db, weights

NOTION_KINDS = ("notion", "color", "shape", "count", "spatial", "texture", "nonspatial", "style")


def tempered_targets(observed: dict[str, float], t: Notions) -> dict[str, float]:
    """``{value: target}`` for one kind from ``{value: observed share}`` (the rule above)."""
    obs = {v: p for v, p in observed.items() if p and p > 0}
    if not obs:
        return {}
    mass = sum(obs.values())
    z = sum(p ** t.temper for p in obs.values())
    return {v: min(max(mass * p ** t.temper / z, t.min_target), t.max_target) for v, p in obs.items()}


def _rows_for_kind(kind: str, stats: list[tuple[str, int, float]], t: Notions) -> list[dict]:
    stats = [s for s in stats if s[1] >= t.min_count][: t.max_values_per_kind]
    targets = tempered_targets({v: p for v, _, p in stats}, t)
    rows = []
    for value, n, p in stats:
        if value not in targets:
            continue
        tgt = targets[value]
        clip = " (clipped)" if tgt in (t.min_target, t.max_target) else ""
        rows.append({
            "kind": kind, "value": value, "observed_freq": p, "target_freq": tgt, "weight": tgt / p,
            "reason": f"v0: observed p={p:.4g} (n={n}) tempered^{t.temper:g} within {kind}{clip}",
            "params": json.dumps({"n": n, "temper": t.temper, "min_target": t.min_target,
                                  "max_target": t.max_target}),
        })
    return rows


def compute(lake: str, t: Notions, schedule: Schedule) -> tuple[list[dict], str]:
    """The v0 rows and the version's ``why`` from the lake's notion_stats and pairs, under the
    ``notions`` config section ``t`` and phase 2's resolution ``schedule``."""
    con = db.connect(lake)
    try:
        n_captions = con.execute("SELECT coalesce(sum(n_captions), 0) FROM notion_runs").fetchone()[0]
        stats = con.execute("SELECT kind, notion, n, p FROM notion_stats WHERE p IS NOT NULL "
                            "ORDER BY kind, n DESC, notion").fetchall()
        src = con.execute(
            "SELECT coalesce(source, 'unknown'), count(*), count(*) / sum(count(*)) OVER () "
            "FROM pairs WHERE status = 'passed' GROUP BY 1 ORDER BY 2 DESC, 1").fetchall()
    finally:
        con.close()
    by_kind: dict[str, list] = {}
    for kind, notion, n, p in stats:
        by_kind.setdefault(kind, []).append((notion, n, p))
    rows = []
    for kind in NOTION_KINDS:
        rows += _rows_for_kind(kind, by_kind.get(kind, []), t)
    rows += _rows_for_kind("source", [(s, n, p) for s, n, p in src],
                           t.model_copy(update={"max_target": 1.0}))  # sources are not capped
    for stage in ("start", "final"):
        tn = getattr(schedule, stage)
        mu, sigma, a, b = tn.mu, tn.sigma, tn.a, tn.b
        rows.append(weights.resolution_row(
            stage, mu, sigma, a, b,
            f"v0: phase-2 {stage} side-length schedule trunc_norm(mu={mu}, sigma={sigma}, a={a}, b={b}) kpx"))
    why = (f"v0 from notion_stats over {n_captions} captions and {sum(n for _, n, _ in src)} passed "
           f"pairs: target = clip(mass_K * p^{t.temper:g} / sum p^{t.temper:g}, "
           f"{t.min_target:g}, {t.max_target:g})")
    return rows, why


def publish_v0(lake: str, t: Notions, schedule: Schedule) -> tuple[str, int]:
    """Compute and publish v0 as the next version (atomic, becomes CURRENT); (version, rows)."""
    rows, why = compute(lake, t, schedule)
    return weights.publish(lake, rows, why), len(rows)
