"""Data feedback accelerates convergence (paper Table 3), in miniature on the shapes world.

    python -m experiments.feedback_ablation                      # full scale (GPU, hours)
    nice python -m experiments.feedback_ablation --preset cpu-mini   # 2 CPU cores, minutes

A shapes world with a deliberately skewed distribution (``ShapesDistribution.skewed()``: purple
and orange, four-of-a-kind and 'below' rare) is rendered into webdataset shards. The same model is
trained for the same number of steps, per seed, in two arms:

  baseline  sampling weights stay at v0 (tempered observed shares);
  feedback  every ``eval_every`` steps: shapes-geneval on the checkpoint, the feedback rule, a new
            weights version published; the running trainer switches to it (logged).

Both arms are evaluated in-loop on the same schedule (learning curves) and, at the end, on a
held-out prompt set (another prompt seed); the table reports per-category mean ± std over seeds,
the rare notions' scores, and the scorer's chance floor (the same prompts scored on uniform noise).
Writes ``<results>/feedback_ablation.{csv,png,md,json}``.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import djepa_t2i.env  # noqa: F401

PRESETS = {
    # the run issue 7 describes: a small model, long enough to learn the shapes world (GPU)
    "full": dict(n_images=20000, native=128, side=64, patch=4, steps=20000, eval_every=2000,
                 seeds=[0, 1, 2], prompts=8, final_prompts=50, gen_steps=32, flow_steps=32,
                 token_budget=8192, max_image_tokens=256, lr=3e-4, ema=0.999, batch_size=64,
                 model={"width": 384, "enc_depth": 6, "pred_depth": 6, "heads": 6,
                        "head_width": 512, "head_depth": 3}),
    # 2 shared CPU cores, a few minutes: proves the loop runs end to end, not that it converges
    "cpu-mini": dict(n_images=400, native=64, side=32, patch=4, steps=40, eval_every=20,
                     seeds=[0, 1, 2], prompts=2, final_prompts=3, gen_steps=8, flow_steps=8,
                     token_budget=256, max_image_tokens=64, lr=1e-3, ema=0.9, batch_size=24,
                     model={}),
    # the test suite's: every code path, seconds
    "smoke": dict(n_images=40, native=32, side=16, patch=4, steps=2, eval_every=1, seeds=[0],
                  prompts=1, final_prompts=1, gen_steps=2, flow_steps=2, token_budget=64,
                  max_image_tokens=16, lr=1e-3, ema=0.9, batch_size=8, model={}),
}
RARE = [("color", "purple"), ("color", "orange"), ("count", "four"), ("spatial", "below")]
ARMS = ("baseline", "feedback")


def parse(argv=None) -> argparse.Namespace:
    from experiments.reporting import apply_preset, preset_parser
    p = preset_parser("experiments.feedback_ablation", __doc__, PRESETS,
                      ("n_images", "native", "side", "steps", "eval_every", "prompts", "final_prompts",
                       "gen_steps", "flow_steps", "token_budget"), "runs/experiments/feedback_ablation")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the rendered world")
    return apply_preset(p.parse_args(argv), PRESETS)


def spec_for(a, arm: str, seed: int, lake: str):
    from experiments.training_run import RunSpec
    c = a.cfg
    return RunSpec(
        lake=lake, out=os.path.join(a.work, f"{arm}-s{seed}"), seed=seed, steps=c["steps"],
        eval_every=c["eval_every"], feedback=arm == "feedback",
        model={"name": "djepa_tiny", "tokenizer": "pixel", "patch_size": c["patch"],
               "vope_fov": c["side"] / c["patch"], "overrides": c["model"]},
        train={"fixed_side": c["side"], "token_budget": c["token_budget"],
               "max_image_tokens": c["max_image_tokens"], "lr": c["lr"], "ema": c["ema"],
               "warmup": max(1, c["steps"] // 20), "device": a.device, "phase": "phase1"},
        evaluate={"size": c["side"], "prompts_per_category": c["prompts"], "steps": c["gen_steps"],
                  "flow_steps": c["flow_steps"], "seed": 0, "device": a.device,
                  "batch_size": c["batch_size"]},
        # a short run sees each rare notion rarely: trust the stats window earlier
        feedback_rule={"min_samples": 10})


def final_evaluate(a) -> dict:
    c = a.cfg
    return {"size": c["side"], "prompts_per_category": c["final_prompts"], "steps": c["gen_steps"],
            "flow_steps": c["flow_steps"], "seed": 1000, "device": a.device, "batch_size": c["batch_size"]}


def rare_share(lake: str, version_filter: bool = False) -> dict[str, float]:
    """Share of accepted training samples carrying each rare notion (from the trainer's batch_stats)."""
    from warehouse import db
    _, rows = db.query(lake, "SELECT value, sum(count) FROM batch_stats WHERE kind IN ('notion', 'accepted') "
                             "GROUP BY value")
    d = {v: c for v, c in rows}
    n = d.get("samples", 0) or 1
    return {f"{k}={v}": d.get(f"{k}:{v}", 0) / n for k, v in RARE}


def main(argv=None) -> int:
    import torch
    a = parse(argv)
    torch.set_num_threads(int(os.environ.get("EXP_THREADS", min(2, os.cpu_count() or 1))))
    from experiments import shapes_data as sd
    from experiments import training_run as run
    from tasks import shapes_world as sw
    c, t0 = a.cfg, time.time()
    print(f"feedback ablation, preset {a.preset}: {json.dumps(c)}")
    data_lake = os.path.join(a.work, "data-lake")
    import shutil
    shutil.rmtree(a.work, ignore_errors=True)
    counts = sd.build_world(data_lake, os.path.join(a.work, "shards"), c["n_images"],
                            [(c["native"], c["native"])], sw.ShapesDistribution.skewed(), a.data_seed)
    schedule = (c["side"] / 1000, c["side"] / 4000, c["side"] / 2000, c["native"] / 1000)
    results, curves, mixes, runs = [], [], {}, {}
    for seed in c["seeds"]:
        for arm in ARMS:
            lake = os.path.join(a.work, f"{arm}-s{seed}", "lake")
            sd.run_lake(data_lake, lake, counts, c["n_images"], "start", schedule)
            print(f"[{arm} seed {seed}] training {c['steps']} steps")
            t1 = time.time()
            r = run.train_with_evaluations(spec_for(a, arm, seed, lake))
            rows = run.score_checkpoint(r["checkpoint"], final_evaluate(a))
            cats = run.category_scores(rows)
            rare = run.notion_scores(rows, RARE)
            mixes[(arm, seed)] = rare_share(lake)
            runs[f"{arm}-s{seed}"] = {"seconds": round(time.time() - t1, 1), "final_loss": r["final_loss"],
                                      "published": r["published"], "switches": r["switches"],
                                      "rare_share_in_training": mixes[(arm, seed)]}
            print(f"[{arm} seed {seed}] final {cats} rare {rare} switches {r['switches']}")
            for k, v in {**cats, **rare}.items():
                results.append({"arm": arm, "seed": seed, "split": "final", "step": c["steps"],
                                "metric": k, "score": v})
            for pt in r["curve"]:
                for k in sw.CATEGORIES + ("overall",):
                    curves.append({"arm": arm, "seed": seed, "split": "curve", "step": pt["step"],
                                   "metric": k, "score": pt[k]})
    noise = run.score_checkpoint("", final_evaluate(a), noise=True)
    for k, v in {**run.category_scores(noise), **run.notion_scores(noise, RARE)}.items():
        results.append({"arm": "noise-floor", "seed": "", "split": "final", "step": 0, "metric": k, "score": v})
    wall = time.time() - t0
    write_outputs(a, results + curves, mixes, runs, wall)
    return 0


def write_outputs(a, rows: list[dict], mixes: dict, runs: dict, wall: float) -> None:
    from experiments import reporting as rp
    from tasks import shapes_world as sw
    c = a.cfg
    os.makedirs(a.results, exist_ok=True)
    base = os.path.join(a.results, "feedback_ablation")
    rp.write_csv(base + ".csv", rows)
    final = [r for r in rows if r["split"] == "final"]
    metrics = list(sw.CATEGORIES) + ["overall"] + [f"{k}={v}" for k, v in RARE]
    get = lambda arm, m: [r["score"] for r in final if r["arm"] == arm and r["metric"] == m]
    table, summary = [], {}
    for m in metrics:
        (bm, bs), (fm, fs) = rp.mean_std(get("baseline", m)), rp.mean_std(get("feedback", m))
        nm = rp.mean_std(get("noise-floor", m))[0]
        summary[m] = {"baseline": [bm, bs], "feedback": [fm, fs], "delta": fm - bm, "noise_floor": nm}
        table.append([m, rp.fmt(bm, bs), rp.fmt(fm, fs), f"{fm - bm:+.3f}", rp.fmt(nm)])
    share = []
    for arm in ARMS:
        for k in [f"{kk}={v}" for kk, v in RARE]:
            m, s = rp.mean_std(mixes[(ar, sd_)][k] for (ar, sd_) in mixes if ar == arm)
            share.append((arm, k, m, s))
    mix_table = rp.md_table(["notion"] + [f"{arm} share of training samples" for arm in ARMS],
                            [[k] + [rp.fmt(m, s) for arm2, k2, m, s in share if k2 == k]
                             for k in [f"{kk}={v}" for kk, v in RARE]])
    delta = summary["overall"]["delta"]
    md = [f"### Feedback ablation — preset `{a.preset}`", "",
          f"- command: `{rp.command()}`", f"- date: {rp.now()}", f"- hardware: {rp.hardware()}",
          f"- wall time: {wall / 60:.1f} min (everything: rendering, {len(runs)} training runs, evaluations)",
          f"- scale: {c['n_images']} images of {c['native']} px trained at {c['side']} px (patch {c['patch']}), "
          f"{c['steps']} steps x {c['token_budget']} tokens, eval + feedback every {c['eval_every']} steps "
          f"({c['prompts']} prompts/category in-loop; final: {c['final_prompts']} held-out prompts/category, "
          f"prompt seed 1000), seeds {c['seeds']}",
          "", "shapes-geneval on the held-out prompts (mean ± std over seeds; rare notions: share of "
          "correct images whose prompt named them; noise floor: the same prompts scored on uniform noise):", "",
          rp.md_table(["metric", "baseline (v0 fixed)", "feedback", "delta", "noise floor"], table), "",
          "Share of accepted training samples carrying each rare notion (trainer batch_stats):", "", mix_table, "",
          f"Overall delta {delta:+.3f} (target >= +0.05: {'met' if delta >= 0.05 else 'NOT met'}).", ""]
    with open(base + ".md", "w") as f:
        f.write("\n".join(md))
    with open(base + ".json", "w") as f:
        json.dump({"preset": a.preset, "config": c, "command": rp.command(), "date": rp.now(),
                   "hardware": rp.hardware(), "wall_seconds": round(wall, 1), "summary": summary,
                   "runs": runs}, f, indent=1, default=str)
    plot(base + ".png", rows, metrics)
    print("\n".join(md))


def plot(path: str, rows: list[dict], metrics: list[str]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from experiments import reporting as rp
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.2))
    for arm, col in zip(ARMS, ("tab:gray", "tab:blue")):
        pts = [r for r in rows if r["split"] == "curve" and r["arm"] == arm and r["metric"] == "overall"]
        steps = sorted({r["step"] for r in pts})
        ms = [rp.mean_std(r["score"] for r in pts if r["step"] == s) for s in steps]
        m, s = np.array([x[0] for x in ms]), np.array([x[1] for x in ms])
        ax1.plot(steps, m, "o-", color=col, label=arm)
        ax1.fill_between(steps, m - s, m + s, color=col, alpha=0.2)
    ax1.set(xlabel="training step", ylabel="shapes-geneval overall (in-loop prompts)",
            title="learning curve (mean ± std over seeds)")
    ax1.legend()
    x = np.arange(len(metrics))
    for i, (arm, col) in enumerate(zip(ARMS + ("noise-floor",), ("tab:gray", "tab:blue", "tab:red"))):
        ms = [rp.mean_std(r["score"] for r in rows if r["split"] == "final" and r["arm"] == arm
                          and r["metric"] == m) for m in metrics]
        ax2.bar(x + (i - 1) * 0.27, [v[0] for v in ms], 0.27, yerr=[v[1] for v in ms], color=col,
                label=arm, capsize=2)
    ax2.set_xticks(x, metrics, rotation=40, ha="right", fontsize=8)
    ax2.set(ylabel="score (held-out prompts)", title="final, per category and rare notion")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
