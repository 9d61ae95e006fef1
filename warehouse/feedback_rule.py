"""The feedback rule: evaluation scores + batch statistics -> the next sampling-weights version.

Inputs, all from the lake:
  * the live version (``CURRENT``): per (kind, value) a target frequency; its ``natural`` share
    (the data's observed share, carried from v0 in ``params``);
  * the latest evaluation of the benchmark: per notion the share of correct images whose prompt
    named it (view ``eval_notion_scores``), per category the GenEval accuracy;
  * the trainer's ``batch_stats`` written under the live version: how often each attribute was
    actually accepted (``notion`` counts / ``accepted`` samples).

For every attribute with a target, one multiplicative factor, then bounds (docs/feedback.md):

  1. weak     score < mean_K - margin      f_eval = 1 + (mean_K - score) / mean_K
     learned  score > mean_K + margin      target moves ``decay`` of the way to its natural share
     (mean_K: mean score of the evaluated values of the same kind, so colors compete with colors)
     Neither when mean_K lies inside the score's 95% Wilson interval (noise). Not learned unless
     that interval lies above the notion's own chance (``eval_notion_scores.chance``: images made
     for prompts that did not name it, judged to show it): a model that draws purple for every
     prompt scores purple 1.00 with chance ~1.00, which is a bias, not learning (issue #16).
  2. under-sampled   observed < (1 - tolerance) x target, with >= min_samples accepted:
                     f_obs = target / observed  (the sampler could not reach it: ask for more)
  3. the product is bounded to [1 / (1 + step_size), 1 + step_size] per version, then the target
     is clipped to [floor, cap].
  4. the targets of each kind are rescaled so that their sum (the kind's target mass) is what it
     was: lifting a weak or rare value lowers its siblings. This is what makes a lift act at all,
     because the sampler only ever *discards* (p = 0.5) samples whose attribute is above its
     target; a common value whose target falls below its running frequency starts being thinned,
     and the rare value's share rises. A kind with a single value keeps its own target.
  Attributes with no score and no trusted observation keep their target. Categories are recorded
  as informational rows (the sampler acts on notions; a category's notions carry its score).

Phase 2's resolution schedule advances from its ``start`` trunc_norm to its ``final`` one (paper
§3.1, Fig. 7) once the benchmark's overall score reaches ``advance_schedule_at``: the ``start``
row then carries the final parameters (so a running trainer switches without a restart) with
``advanced_to`` in its params, and stays advanced. (The trainer also switches by step:
``train.final_schedule_at``.)

Every row's ``reason`` spells out its arithmetic, e.g.
``color=purple: eval 0.20 < mean(color) 0.55 -> x1.64, bounded x1.50; target 0.0500 -> 0.0750``.
"""
from __future__ import annotations

import json

from djepa_t2i.config import ConfigError, Feedback
from warehouse import db
from warehouse import weights as wt
from warehouse.intervals import wilson


def _natural(row: dict) -> float | None:
    try:
        p = json.loads(row.get("params") or "{}")
    except ValueError:
        p = {}
    n = p.get("natural", row.get("observed_freq"))
    return float(n) if n is not None else None


Score = float | tuple[float, int] | tuple[float, int, float | None, int | None]


def _unpack(v: Score) -> tuple[float, int | None, float | None, int | None]:
    """(score, n_images, chance, chance_n) from a bare score, ``(score, n)`` or the full tuple."""
    t = v if isinstance(v, tuple) else (v,)
    return (*t, *(None,) * (4 - len(t)))  # type: ignore[return-value]


def _eval_factor(kind: str, m: float, score: float, n: int | None, chance: float | None,
                 chance_n: int | None, t0: float, nat: float | None, rule: Feedback) -> tuple[float, str]:
    """Step 1 for one notion: its factor and the reason. Weak or learned only beyond ``margin``
    and when the kind's mean ``m`` lies outside the score's 95% Wilson interval (not noise);
    learned only when that interval also lies above the notion's own ``chance`` (not a bias: a
    model that draws purple for every prompt scores purple 1.0 and has purple chance 1.0)."""
    lo, hi = wilson(score, n) if n else (score, score)
    ci = f" (95% CI {lo:.2f}-{hi:.2f}, n={n})" if n else ""
    if lo <= m <= hi and n:
        return 1.0, f"eval {score:.2f}{ci} includes mean({kind}) {m:.2f}: no evidence, kept"
    if score < m - rule.margin:
        f = 1.0 + (m - score) / max(m, 1e-6)
        return f, f"eval {score:.2f} < mean({kind}) {m:.2f} -> x{f:.2f}"
    if score > m + rule.margin and nat is not None:
        if chance is not None and lo <= chance:
            return 1.0, (f"eval {score:.2f}{ci} but chance {chance:.2f} (shuffled prompts, "
                         f"n={chance_n}): no evidence, kept")
        goal = t0 + rule.decay * (nat - t0)
        f = goal / t0 if t0 > 0 else 1.0
        above = f", above chance {chance:.2f} (n={chance_n})" if chance is not None else ""
        return f, (f"eval {score:.2f} > mean({kind}) {m:.2f}{above}: decay {rule.decay:g} toward "
                   f"natural {nat:.4f} -> x{f:.2f}")
    return 1.0, f"eval {score:.2f} ~ mean({kind}) {m:.2f}"


def next_rows(prev: list[dict], notion_scores: dict[tuple[str, str], Score],
              category_scores: dict[str, float], observed: dict[tuple[str, str], float],
              n_accepted: float, rule: Feedback, source: str = "") -> list[dict]:
    """The next version's rows from the live version's rows and the measurements (pure), under
    the ``feedback`` config section ``rule``.

    ``notion_scores`` values are ``(score, n_images, chance, chance_n)``, ``(score, n_images)``
    (no chance control) or a bare score (treated as exact); see :func:`_eval_factor`."""
    scores = {k: _unpack(v) for k, v in notion_scores.items()}
    by_kind: dict[str, list[float]] = {}
    for (kind, _), v in scores.items():
        by_kind.setdefault(kind, []).append(v[0])
    means = {k: sum(v) / len(v) for k, v in by_kind.items()}
    trust_obs = n_accepted >= rule.min_samples
    out = []
    for r in prev:
        kind, value = r["kind"], r["value"]
        if kind in ("resolution", "category"):
            continue
        t0 = r.get("target_freq")
        if t0 is None:
            continue
        nat = _natural(r)
        measured = scores.get((kind, value))
        score = measured[0] if measured else None
        obs = observed.get((kind, value), 0.0) / n_accepted if trust_obs else None
        why = []
        factor = 1.0
        if measured is not None:
            factor, reason = _eval_factor(kind, means[kind], *measured, t0, nat, rule)
            why.append(reason)
        if obs is not None and obs < (1 - rule.tolerance) * t0:
            f = t0 / obs if obs > 0 else 1.0 + rule.step_size
            factor *= f
            why.append(f"observed {obs:.4f} < target {t0:.4f} -> x{f:.2f}")
        elif obs is not None:  # trusted and not under-sampled: say so (not "no observation")
            why.append(f"observed {obs:.4f} >= {1 - rule.tolerance:g} x target {t0:.4f}")
        lo, hi = 1.0 / (1.0 + rule.step_size), 1.0 + rule.step_size
        bounded = min(max(factor, lo), hi)
        if bounded != factor:
            why.append(f"bounded x{bounded:.2f} (step {rule.step_size:g})")
        t1 = min(max(t0 * bounded, rule.floor), rule.cap)
        if t1 != t0 * bounded:
            why.append(f"clipped to [{rule.floor:g}, {rule.cap:g}]")
        if not why:
            why.append("no score, no trusted observation: kept")
        params = {"natural": nat, "prev_target": t0, "factor": bounded}
        out.append({"kind": kind, "value": value, "target_freq": t1,
                    "observed_freq": obs if obs is not None else r.get("observed_freq"),
                    "eval_score": score, "weight": t1 / nat if nat else None,
                    "reason": f"{kind}={value}: " + "; ".join(why) + f"; target {t0:.4f} -> {t1:.4f}"
                              + (f" [{source}]" if source else ""),
                    "params": json.dumps(params)})
    _keep_kind_mass(out, prev, rule)
    for cat, s in sorted(category_scores.items()):
        if cat == "overall":
            continue
        out.append({"kind": "category", "value": cat, "eval_score": s,
                    "reason": f"category={cat}: eval {s:.2f} (informational; acted on through its "
                              f"notions) [{source}]"})
    out += resolution_rows(prev, category_scores.get("overall"), rule)
    return out


def _keep_kind_mass(rows: list[dict], prev: list[dict], rule: Feedback) -> None:
    """Step 4: rescale each kind's new targets to the kind's previous total, then re-clip."""
    mass: dict[str, float] = {}
    for r in prev:
        if r["kind"] not in ("resolution", "category") and r.get("target_freq") is not None:
            mass[r["kind"]] = mass.get(r["kind"], 0.0) + r["target_freq"]
    new: dict[str, float] = {}
    size: dict[str, int] = {}
    for r in rows:
        new[r["kind"]] = new.get(r["kind"], 0.0) + r["target_freq"]
        size[r["kind"]] = size.get(r["kind"], 0) + 1
    for r in rows:
        k = r["kind"]
        scale = mass[k] / new[k] if new[k] > 0 and size[k] > 1 else 1.0
        if abs(scale - 1.0) < 1e-9:
            continue
        t = min(max(r["target_freq"] * scale, rule.floor), rule.cap)
        head, tail = r["reason"].rsplit("; target ", 1)
        t0 = json.loads(r["params"])["prev_target"]
        suffix = tail.split(" [", 1)[1] if " [" in tail else ""
        r["reason"] = (f"{head}; {k} mass kept {mass[k]:.4f} -> x{scale:.3f}; target {t0:.4f} -> {t:.4f}"
                       + (f" [{suffix}" if suffix else ""))
        nat = json.loads(r["params"])["natural"]
        r["target_freq"], r["weight"] = t, (t / nat if nat else None)


def resolution_rows(prev: list[dict], overall: float | None, rule: Feedback) -> list[dict]:
    """Carry the resolution schedule; advance ``start`` to the ``final`` parameters when the
    overall score reaches ``advance_schedule_at`` (once advanced, it stays)."""
    res = {r["value"]: r for r in prev if r["kind"] == "resolution"}
    out = []
    for stage, r in sorted(res.items()):
        params = json.loads(r.get("params") or "{}")
        reason = f"resolution {stage}: carried"
        if stage == "start" and "final" in res and not params.get("advanced_to"):
            if overall is not None and overall >= rule.advance_schedule_at:
                params = {**json.loads(res["final"]["params"]), "advanced_to": "final"}
                reason = (f"resolution start: overall eval {overall:.2f} >= advance_schedule_at "
                          f"{rule.advance_schedule_at:g} -> final schedule trunc_norm(mu={params['mu']}, "
                          f"sigma={params['sigma']}, a={params['a']}, b={params['b']})")
            elif overall is not None:
                reason = (f"resolution start: overall eval {overall:.2f} < advance_schedule_at "
                          f"{rule.advance_schedule_at:g}: stays")
        elif params.get("advanced_to"):
            reason = f"resolution {stage}: advanced to {params['advanced_to']} earlier; carried"
        out.append({"kind": "resolution", "value": stage, "params": json.dumps(params),
                    "reason": reason})
    return out


def measurements(lake: str, benchmark: str, version: str | None):
    """(latest evaluated checkpoint, notion scores, category scores, observed counts, accepted)
    from the lake: the latest checkpoint evaluated on ``benchmark`` (per notion ``(score,
    n_images, chance, chance_n)``, chance from the shuffled-prompt control), and the batch
    statistics written under ``version`` (the window since that version went live)."""
    con = db.connect(lake)
    try:
        latest = con.execute(
            "SELECT checkpoint FROM eval_results WHERE benchmark = ? "
            "GROUP BY checkpoint ORDER BY max(created_at) DESC, checkpoint DESC LIMIT 1",
            [benchmark]).fetchone()
        ck = latest[0] if latest else None
        ns = con.execute("SELECT notion_kind, notion, score, n_images, chance, chance_n "
                         "FROM eval_notion_scores WHERE checkpoint = ? AND benchmark = ?",
                         [ck, benchmark]).fetchall()
        cs = con.execute("SELECT category, score FROM eval_summary WHERE checkpoint = ? AND benchmark = ?",
                         [ck, benchmark]).fetchall()
        vq = "weights_version = ?" if version else "weights_version IS NULL"
        obs = con.execute(f"SELECT value, sum(count) FROM batch_stats WHERE kind = 'notion' AND {vq} "
                          "GROUP BY value", [version] if version else []).fetchall()
        acc = con.execute(f"SELECT coalesce(sum(count), 0) FROM batch_stats WHERE kind = 'accepted' "
                          f"AND {vq}", [version] if version else []).fetchone()[0]
    finally:
        con.close()
    observed = {}
    for v, c in obs:
        kind, _, value = v.partition(":")
        observed[(kind, value)] = float(c)
    scores = {(k, n): (float(s), int(c), None if h is None else float(h), None if hn is None else int(hn))
              for k, n, s, c, h, hn in ns}
    return ck, scores, {c: float(s) for c, s in cs}, observed, float(acc)


def compute(lake: str, rule: Feedback) -> tuple[list[dict], str]:
    """The next version's rows and its ``why`` from the latest evaluation on ``rule.benchmark``;
    raises if there is no live version to build on."""
    version, table = wt.load(lake)
    if version is None:
        raise ConfigError(f"lake {lake}: no live sampling-weights version (publish v0 with "
                         "`t2i notions` first)")
    ck, ns, cs, obs, acc = measurements(lake, rule.benchmark, version)
    src = f"{rule.benchmark}@{ck}" if ck else "no evaluation"
    rows = next_rows(table.to_pylist(), ns, cs, obs, acc, rule, src)
    why = (f"feedback from {version}: eval {src} ({len(ns)} notions, overall "
           f"{cs.get('overall', float('nan')):.3f}), batch_stats under {version} ({acc:.0f} accepted "
           f"samples), rule {rule!r}")
    return rows, why


def publish_next(lake: str, rule: Feedback) -> dict:
    """Compute and atomically publish the next version (it becomes CURRENT) under the
    ``feedback`` config section; returns the new version, its row count and why (what the
    ``feedback`` flow and ``t2i evaluate`` report)."""
    rows, why = compute(lake, rule)
    return {"weights_version": wt.publish(lake, rows, why), "rows": len(rows), "why": why}
