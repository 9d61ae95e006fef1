"""Tables, verdicts and plots of the feedback ablation (``experiments.feedback_ablation``).

Kept apart from the runner so that the statistics can be recomputed from a finished run's raw
rows and read on their own: every number here is a pooled share with its Wilson interval beside
the chance controls of the same images, and every claim is a verdict on a bootstrap interval.
"""
from __future__ import annotations

import json
import os

import numpy as np

from djepa_t2i.config import Notions
from experiments import colour_eval as cev
from experiments import reporting as rp
from experiments import verdicts as vd
from experiments.feedback_design import ARMS, RARE
from tasks import shapes_world as sw
from training.feedback_sampler import OVER_TARGET_DISCARD_P
from warehouse.weights_v0 import tempered_targets

CONTROLS = ("uniform_noise", "patch_noise", "shuffled_prompt")
MIN_EFFECT = 0.05   # the smallest gain that would count (Table 3: +0.07 overall at 100k steps)
MIN_MIX_EFFECT = 0.01  # one percentage point of the training mix


def groups(results: dict, arm: str, colours, control: str | None = None) -> list[list[float]]:
    """Per seed of ``arm``, the 0/1 scores of images whose prompt named one of ``colours``
    (``None``: every image)."""
    out = []
    for (a, _), r in sorted(results.items(), key=lambda kv: kv[0][1]):
        if a != arm:
            continue
        if colours is None:
            out.append(cev.scores_of(r["final"], control=control))
        else:
            out.append([x for c in colours for x in cev.scores_of(r["final"], f"color={c}", control)])
    return out


def mix_share(mix: list[dict], colours) -> float:
    """Share of accepted training samples whose colour is one of ``colours`` (whole run)."""
    acc = sum(m["count"] for m in mix if m["value"] == "samples")
    hit = sum(m["count"] for m in mix if m["value"] in {f"color:{c}" for c in colours})
    return hit / acc if acc else float("nan")


def summarize(results: dict, colour_sets: dict) -> dict:
    """Per arm and colour set: the model's share and each control's, plus the training mix."""
    out = {}
    for arm in ARMS:
        for name, cols in colour_sets.items():
            s = {"model": vd.share(groups(results, arm, cols))}
            s.update({c: vd.share(groups(results, arm, cols, c)) for c in CONTROLS})
            s["chance"] = max((s[c] for c in CONTROLS), key=lambda x: x.hi)
            s["mix"] = rp.mean_std(mix_share(r["mix"], cols or ()) for (a, _), r in results.items()
                                   if a == arm) if cols else (1.0, 0.0)
            out[(arm, name)] = s
    return out


def compare(results: dict, summary: dict, a: str, b: str, name: str, cols, claim: str) -> dict:
    point, lo, hi = vd.boot_diff(groups(results, a, cols), groups(results, b, cols))
    above = vd.beats(summary[(a, name)]["model"], summary[(a, name)]["chance"]) or \
        vd.beats(summary[(b, name)]["model"], summary[(b, name)]["chance"])
    v = vd.verdict(lo, hi, MIN_EFFECT, above)
    scale = vd.scale_note(v, above, summary[(a, name)]["model"].n, lo, hi, MIN_EFFECT)
    note = f"{a} {summary[(a, name)]['model']} vs {b} {summary[(b, name)]['model']}" + (f"; {scale}" if scale else "")
    return {"claim": claim, "verdict": v, "diff": point, "lo": lo, "hi": hi, "above_chance": above,
            "scale_needed": scale or None, "line": vd.line(claim, v, point, lo, hi, note)}


def ceiling(natural: float) -> float:
    """The largest share the feedback sampler can give a set of notions with natural share
    ``natural``: every other sample is discarded with p = 0.5 and none of the set is."""
    p = OVER_TARGET_DISCARD_P
    return natural / (natural + (1 - natural) * (1 - p))


def compare_mix(results: dict, a: str, b: str) -> dict:
    ga = [[mix_share(r["mix"], RARE)] for (arm, _), r in sorted(results.items()) if arm == a]
    gb = [[mix_share(r["mix"], RARE)] for (arm, _), r in sorted(results.items()) if arm == b]
    point, lo, hi = vd.boot_diff(ga, gb)
    claim = f"{a} draws the rare colours more often than {b}"
    v = vd.verdict(lo, hi, MIN_MIX_EFFECT, any(x[0] > 0 for x in ga + gb))  # never on two zeros
    return {"claim": claim, "verdict": v, "diff": point, "lo": lo, "hi": hi,
            "line": vd.line(claim, v, point, lo, hi, "share of accepted training samples, bootstrap over seeds")}


def write(a, results: dict, counts, wall: float) -> None:
    """Parquet of raw rows, JSON summary, Markdown tables + verdicts, two plots."""
    c = a.cfg
    os.makedirs(a.results, exist_ok=True)
    base = os.path.join(a.results, "feedback_ablation")
    rows = [{"arm": arm, "seed": seed, "split": "final", "step": c["steps"], **{k: r.get(k) for k in (
        "prompt_id", "image_index", "notion_kind", "notion", "control", "score")}}
            for (arm, seed), res in results.items() for r in res["final"]]
    rows += [{"arm": arm, "seed": seed, "split": "curve", "step": p["step"], "notion": k, "score": v}
             for (arm, seed), res in results.items() for p in res["curve"] for k, v in p.items()
             if k == "overall" or k.startswith("color=") or k.startswith("control:")]
    rows += [{"arm": arm, "seed": seed, "split": "mix", "step": m["step"], "notion": m["value"],
              "score": m["count"]} for (arm, seed), res in results.items() for m in res["mix"]]
    rp.write_rows(base + ".parquet", rows)
    common = tuple(x for x in sw.COLORS if x not in RARE)
    sets = {"all colours": None, "rare (purple, orange)": RARE, "common (4 others)": common}
    summary = summarize(results, sets)
    n_all = sum(counts["color"].values())
    natural = sum(counts["color"][x] for x in RARE) / n_all
    v0 = sum(tempered_targets({k: v / n_all for k, v in counts["color"].items()}, Notions()).get(x, 0.0)
             for x in RARE)
    verdicts = [
        compare(results, summary, "feedback", "static", "rare (purple, orange)", RARE,
                "the full loop beats static v0 on the rare colours"),
        compare(results, summary, "feedback", "uniform", "rare (purple, orange)", RARE,
                "the full loop beats uniform sampling on the rare colours"),
        compare(results, summary, "static", "uniform", "rare (purple, orange)", RARE,
                "static v0 beats uniform sampling on the rare colours"),
        # Table 3 compares training without and with data feedback; in §2.3 data feedback is both
        # the batch-statistics sampler and the evaluation loop, so "without" is the uniform arm
        compare(results, summary, "feedback", "uniform", "all colours", None,
                "the full loop beats uniform sampling on all colours (Table 3's comparison)"),
        compare(results, summary, "feedback", "static", "all colours", None,
                "the full loop beats static v0 on all colours (the evaluation loop's own share)"),
        compare_mix(results, "feedback", "static"),
        compare_mix(results, "static", "uniform"),
    ]
    table = []
    for (arm, name), s in summary.items():
        m, sd_ = s["mix"]
        table.append([arm, name, str(s["model"]), *(f"{s[k].p:.3f}" for k in CONTROLS), rp.fmt(m, sd_)])
    md = [f"### Feedback ablation: preset `{a.preset}`", "",
          *rp.provenance(wall, f"rendering, {len(results)} training runs, evaluations"),
          f"- scale: {c['n_images']} single-object scenes at {c['side']} px, rare colours {', '.join(RARE)} "
          f"at {natural:.3f} of the pairs together; djepa_tiny {c['model']}, {c['steps']} steps x "
          f"{c['batch']} images (equal in every arm), in-loop evaluation (+ feedback) every "
          f"{c['eval_every']} steps ({c['images']} image/prompt); final: 18 prompts x {c['final_images']} "
          f"images at a held-out image seed; seeds {c['seeds']}",
          "", f"Rare colours in the training mix: natural share {natural:.3f}; static v0 target {v0:.3f} "
          f"(tempered^0.5); the sampler's ceiling {ceiling(natural):.3f} (it only discards, p = "
          f"{OVER_TARGET_DISCARD_P:g}, samples above target: at most every other common sample goes).",
          "", "Colour right (pooled over seeds, 95% Wilson interval) beside the chance controls of the same "
          "prompts (uniform noise, palette patch noise, the arm's own images scored against shuffled "
          "prompts; chance is 1/6), and the share of the accepted training samples that carried the "
          "colours (trainer batch_stats, mean ± std over seeds):", "",
          rp.md_table(["arm", "prompts", "colour right [95% CI]", *CONTROLS, "share of training mix"], table),
          "", "Verdicts (bootstrap over seeds, then images; met = interval above 0, not met = interval "
          f"below {MIN_EFFECT} (below {MIN_MIX_EFFECT} for the mix), inconclusive otherwise or when neither "
          "arm beats chance):", ""] + [f"- {v['line']}" for v in verdicts] + [""]
    with open(base + ".md", "w") as f:
        f.write("\n".join(md))
    with open(base + ".json", "w") as f:
        json.dump({"preset": a.preset, "config": c, "command": rp.command(), "date": rp.now(),
                   "hardware": rp.hardware(), "wall_seconds": round(wall, 1), "natural_rare_share": natural,
                   "v0_rare_target": v0, "sampler_ceiling": ceiling(natural),
                   "summary": {f"{arm}/{name}": {k: (v.__dict__ if isinstance(v, vd.Share) else v)
                                                 for k, v in s.items()} for (arm, name), s in summary.items()},
                   "verdicts": [{k: v for k, v in x.items() if k != "line"} for x in verdicts],
                   "runs": {f"{arm}-s{seed}": r["meta"] for (arm, seed), r in results.items()}},
                  f, indent=1, default=str)
    plot_mix(os.path.join(a.results, "feedback_mix.png"), results, counts)
    plot_scores(base + ".png", results, summary, sets)
    print("\n".join(md))


def cumulative_shares(mix: list[dict], colour: str) -> tuple[list[int], list[float]]:
    steps = sorted({m["step"] for m in mix})
    acc = hit = 0.0
    xs, ys = [], []
    for s in steps:
        acc += sum(m["count"] for m in mix if m["step"] == s and m["value"] == "samples")
        hit += sum(m["count"] for m in mix if m["step"] == s and m["value"] == f"color:{colour}")
        xs.append(s)
        ys.append(hit / acc if acc else float("nan"))
    return xs, ys


def plot_mix(path: str, results: dict, counts) -> None:
    """Per arm, the running share of each colour among accepted samples (mean over seeds)."""
    import matplotlib  # heavy
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy

    n = sum(counts["color"].values())
    fig, axes = plt.subplots(1, len(ARMS), figsize=(4.3 * len(ARMS), 3.6), sharey=True)
    for ax, arm in zip(axes, ARMS):
        for colour, rgb in sw.COLORS.items():
            curves = [cumulative_shares(r["mix"], colour) for (a, _), r in results.items() if a == arm]
            xs = curves[0][0]
            ys = np.nanmean([cv[1] for cv in curves], axis=0)
            ax.plot(xs, ys, color=np.array(rgb) / 255, lw=2.2 if colour in RARE else 1.2,
                    label=colour)
            if colour in RARE:
                ax.axhline(counts["color"][colour] / n, color=np.array(rgb) / 255, ls=":", lw=1)
        for (a, _), r in results.items():
            if a == arm:
                for sw_ in r["meta"]["switches"]:
                    ax.axvline(sw_["after_step"], color="0.8", lw=0.8, zorder=0)
        ax.set(title=arm, xlabel="training step", yscale="log", ylim=(0.003, 0.5))  # log: rare visible
    axes[0].set_ylabel("running share of accepted samples (log)")
    axes[-1].legend(fontsize=7, loc="upper right")
    fig.suptitle("training mix actually drawn (dotted: the data's natural share of each rare colour; "
                 "grey: weights switches)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_scores(path: str, results: dict, summary: dict, sets: dict) -> None:
    """Left: in-loop learning curves (all / rare colours); right: final shares with intervals and
    the best chance control of each."""
    import matplotlib  # heavy
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    colours = dict(zip(ARMS, ("tab:gray", "tab:orange", "tab:blue")))
    for arm in ARMS:
        pts = [p for (a, _), r in results.items() if a == arm for p in r["curve"]]
        steps = sorted({p["step"] for p in pts})
        for key, ls in (("overall", "-"), ("rare", "--")):
            def val(p):
                return p["overall"] if key == "overall" else np.nanmean([p.get(f"color={c}", np.nan) for c in RARE])
            ax1.plot(steps, [np.nanmean([val(p) for p in pts if p["step"] == s]) for s in steps], ls,
                     marker="o", color=colours[arm], label=f"{arm}: {'all' if key == 'overall' else 'rare'}")
    ax1.axhline(1 / 6, color="r", lw=0.8, ls=":", label="chance 1/6")
    ax1.set(xlabel="training step", ylabel="colour right (in-loop prompts)", title="learning curves (mean over seeds)")
    ax1.legend(fontsize=7)
    x = np.arange(len(sets))
    for i, arm in enumerate(ARMS):
        ss = [summary[(arm, name)] for name in sets]
        m = np.array([s["model"].p for s in ss])
        err = np.clip([[s["model"].p - s["model"].lo for s in ss], [s["model"].hi - s["model"].p for s in ss]],
                      0, 1)
        ax2.bar(x + (i - 1) * 0.27, m, 0.27, yerr=err, color=colours[arm], label=arm, capsize=3)
        ax2.plot(x + (i - 1) * 0.27, [s["chance"].p for s in ss], "r_", markersize=14, mew=2,
                 label="best chance control" if i == 0 else None)
    ax2.set_xticks(x, list(sets))
    # the bars' intervals count images only; the verdicts also resample seeds (wider)
    ax2.set(ylabel="colour right, held-out seed (95% Wilson)", ylim=(0, 1.05),
            title="final (error bars: images only; verdicts also count the seed spread)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
