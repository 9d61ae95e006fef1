"""The feedback-vs-RL report: shares with Wilson intervals beside their chance controls, the
compute each arm spent, verdicts from bootstrap intervals (``experiments.verdicts``), and the
plot that leads the docs: our gains over phase 2 beside the two papers'."""
from __future__ import annotations

import json
import os

from experiments import reporting as rp
from experiments import verdicts as vd
from experiments.feedback_vs_rl_design import ARM_TEXT, ARMS, MIN_EFFECT, PAPERS
from tasks import shapes_world as sw
from training.composition import MULTI

SCOPES = {"overall": sw.CATEGORIES, "multi-object": MULTI}


def scores(rows: list[dict], cats, control=None) -> list[float]:
    return [r["score"] for r in rows if r["category"] in cats and r["control"] == control]


def best_control(groups: list[list[dict]], cats) -> vd.Share:
    """The control whose pooled share is highest (the chance an arm must beat)."""
    names = sorted({r["control"] for g in groups for r in g if r["control"]})
    return max((vd.share([scores(g, cats, n) for g in groups]) for n in names), key=lambda s: s.p)


def runs_of(results: dict, arm: str) -> list[dict]:
    return [v for k, v in sorted(results.items()) if k.startswith(arm + "/")]


def arm_groups(results: dict) -> dict[str, list[list[dict]]]:
    """Per arm (and ``base``): the final rows of each seed's run."""
    out = {"base": [results["base"]["final"]]}
    out.update({arm: [r["final"] for r in runs_of(results, arm)] for arm in ARMS})
    out["rl: SFT only"] = [r["final_sft"] for r in runs_of(results, "rl") if "final_sft" in r]
    return {k: v for k, v in out.items() if v}


def verdict_lines(groups: dict) -> list[str]:
    claims = [("data feedback beats SFT + GRPO (D-JEPA·T2I §1)", "feedback", "rl"),
              ("SFT + GRPO beats data feedback (SimpleAR's lever)", "rl", "feedback"),
              ("both beat data feedback alone", "both", "feedback"),
              ("both beat SFT + GRPO alone", "both", "rl")]
    claims += [(f"{a} improves on phase 2", a, "base") for a in (*ARMS, "rl: SFT only")]
    claims += [("GRPO improves on its SFT checkpoint", "rl", "rl: SFT only")]
    out = []
    for scope, cats in SCOPES.items():
        for text, a, b in claims:
            if a not in groups or b not in groups:
                continue
            ga, gb = groups[a], groups[b]
            sa, sb = vd.share([scores(g, cats) for g in ga]), vd.share([scores(g, cats) for g in gb])
            above = vd.beats(sa, best_control(ga, cats)) or vd.beats(sb, best_control(gb, cats))
            point, lo, hi = vd.boot_diff([scores(g, cats) for g in ga], [scores(g, cats) for g in gb])
            v = vd.verdict(lo, hi, MIN_EFFECT, above)
            note = f"{a} {sa} vs {b} {sb}"
            extra = vd.scale_note(v, above, sa.n, lo, hi, MIN_EFFECT)
            out.append("- " + vd.line(f"{text}, {scope}", v, point, lo, hi, note + (f"; {extra}" if extra else "")))
    return out


def share_table(groups: dict) -> str:
    rows = []
    for arm, gs in groups.items():
        for scope, cats in SCOPES.items():
            rows.append([arm, scope, str(vd.share([scores(g, cats) for g in gs])),
                         f"{best_control(gs, cats).p:.3f}"])
        for c in sw.CATEGORIES:
            rows.append([arm, c, str(vd.share([scores(g, [c]) for g in gs])), f"{best_control(gs, [c]).p:.3f}"])
    return rp.md_table(["arm", "prompts", "shapes-geneval right [95% CI]", "best chance control"], rows)


def compute_table(results: dict) -> str:
    rows = []
    for arm in ARMS:
        rs = runs_of(results, arm)
        if rs:
            rows.append([arm, ARM_TEXT[arm], rp.fmt(*rp.mean_std(r["seen"] for r in rs)),
                         rp.fmt(*rp.mean_std(r["generated"] for r in rs)),
                         rp.fmt(*rp.mean_std(r["seen"] + r["generated"] for r in rs)),
                         rp.fmt(*rp.mean_std(r["seconds"] for r in rs))])
    return rp.md_table(["arm", "what", "images seen", "images generated", "total", "seconds"], rows)


def plot(groups: dict, path: str) -> None:
    import matplotlib  # heavy: only when a report is written
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    names = list(groups)
    for i, (scope, cats) in enumerate(SCOPES.items()):
        sh = [vd.share([scores(g, cats) for g in groups[n]]) for n in names]
        ch = [best_control(groups[n], cats).p for n in names]
        x = [j + 0.4 * i for j in range(len(names))]
        axes[0].bar(x, [s.p for s in sh], 0.38, yerr=[[s.p - s.lo for s in sh], [s.hi - s.p for s in sh]],
                    capsize=3, label=f"{scope} (95% Wilson)")
        axes[0].scatter(x, ch, marker="_", s=300, color="k", zorder=3, label="chance" if i == 0 else None)
    axes[0].set_xticks([j + 0.2 for j in range(len(names))], names)
    axes[0].set_ylabel("shapes-geneval right")
    axes[0].set_title("ours: same phase-2 checkpoint, equal images")
    axes[0].legend(fontsize=8)
    labels, gains, errs = [], [], []
    for text, before, after in PAPERS:
        labels.append(text.split(":")[0])
        gains.append(after - before)
        errs.append((0.0, 0.0))
    for arm in (*ARMS, "rl: SFT only"):
        if arm in groups:
            p, lo, hi = vd.boot_diff([scores(g, sw.CATEGORIES) for g in groups[arm]],
                                     [scores(g, sw.CATEGORIES) for g in groups["base"]])
            labels.append(f"ours: {arm}")
            gains.append(p)
            errs.append((p - lo, hi - p))
    axes[1].barh(range(len(labels)), gains, xerr=list(zip(*errs)), capsize=3,
                 color=["grey"] * len(PAPERS) + ["C0"] * (len(labels) - len(PAPERS)))
    axes[1].set_yticks(range(len(labels)), labels, fontsize=8)
    axes[1].axvline(0, color="k", lw=0.5)
    axes[1].set_xlabel("GenEval(-style) overall gain over the starting model")
    axes[1].set_title("published gains vs ours (95% bootstrap CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(a, results: dict, wall: float) -> None:
    os.makedirs(a.results, exist_ok=True)
    stem = os.path.join(a.results, "feedback_vs_rl")
    rows = [{**r, "arm": "base", "seed": None} for r in results["base"]["final"]]
    rows += [{**r, "arm": k.split("/")[0] + suffix, "seed": int(k.split("/")[1])}
             for k, v in results.items() if "/" in k
             for key, suffix in (("final", ""), ("final_sft", ": SFT only")) for r in v.get(key, [])]
    rp.write_rows(stem + ".parquet", rows)
    groups = arm_groups(results)
    plot(groups, stem + ".png")
    seeds = sorted({int(k.split("/")[1]) for k in results if "/" in k})
    c = a.cfg
    md = [f"#### Feedback vs RL: preset `{a.preset}`", "", *rp.provenance(wall, "arms x seeds, final scoring"),
          f"- scale: from `{results['base']['checkpoint']}`; budget {c['budget']} images per arm; seeds {seeds}; "
          f"final: 6 categories x {c['final_per_category']} prompts x {c['final_images']} images per run",
          "", f"![feedback vs RL]({os.path.basename(stem)}.png)", "", compute_table(results), "",
          share_table(groups), "", "Verdicts (bootstrap over seeds, then images; met = interval above 0, "
          f"not met = interval below {MIN_EFFECT}, inconclusive otherwise or when neither arm beats chance):", "",
          *verdict_lines(groups), "",
          "Published, for scale: " + "; ".join(f"{t}: {b:.2f} -> {e:.2f}" for t, b, e in PAPERS) + "."]
    with open(stem + ".md", "w") as f:
        f.write("\n".join(md) + "\n")
    with open(stem + ".json", "w") as f:
        json.dump({k: {kk: vv for kk, vv in v.items() if not kk.startswith("final")} for k, v in results.items()
                   if isinstance(v, dict)}, f, indent=1, default=str)
    print("\n".join(md))
