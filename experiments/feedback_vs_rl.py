"""Data feedback or RL? (issue #27 item 6: D-JEPA·T2I §1 against SimpleAR §3.2 / Tab. 4)

    nice python -m experiments.feedback_vs_rl --preset cpu --demo runs/demo   # after make demo

D-JEPA·T2I (§1) calls RL fine-tuning "remedial measures with inconsistent effectiveness" and
offers data feedback instead (Table 3: GenEval 0.48 -> 0.55); SimpleAR gains with SFT + GRPO
(Tab. 4: 0.53 -> 0.59). Here both levers start from the same checkpoint (``make demo``'s latest
phase 2) with the same extra compute, counted in images: every image a training step sees, every
image generated for a decision (the feedback arm's in-loop evaluations, the GRPO rollouts).
The GRPO run's held-out monitoring changes nothing and is not counted. Three arms
(``experiments.feedback_vs_rl_design``):

  feedback  phase-2 training continues (configs/demo_phase2.yaml, fresh optimiser, the
            checkpoint's model and EMA weights, as the SFT phase starts), evaluated ``evals`` times on
            shapes-geneval with feedback (``warehouse.feedback_rule.publish_next``) between slices;
  rl        ``make demo-post``'s recipe (configs/demo_post.yaml): SFT on the composition tier for
            ``sft_share`` of the budget, GRPO for the rest, on all six categories' prompts;
  both      half the budget as ``feedback``, the other half as ``rl`` from its checkpoint.

Each arm's final checkpoint, and phase 2 itself, are scored on the same held-out shapes-geneval
prompts (6 categories) with the chance controls; verdicts from bootstrap intervals over seeds
then images (``experiments.verdicts``). Writes ``<results>/feedback_vs_rl.{parquet,json,md,png}``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time

import torch

import djepa_t2i.env  # noqa: F401
from djepa_t2i.config import load_config
from djepa_t2i.env import ROOT
from experiments import feedback_vs_rl_report as report
from experiments.feedback_vs_rl_design import ARMS, feedback_plan, split
from experiments.reporting import apply_preset, preset_parser, run_cli
from tasks import shapes_world as sw
from training import checkpoints as ckpts
from training import composition
from training import evaluate as ce
from training.checkpoints import latest
from training.grpo_run import PostTrainRun
from training.trainer import Trainer
from warehouse.feedback_rule import publish_next
from warehouse.tiers import write_tier

PHASE2 = [str(ROOT / "configs/demo_phase2.yaml")]
POST = [str(ROOT / f"configs/{n}.yaml") for n in ("demo_phase2", "demo_sft", "demo_post")]
GRPO = dict(group=4, prompts_per_step=4, head_steps=4, ar_steps=8, ar_fraction=0.25)
PRESETS = {
    # 2 CPU cores: 1,920 images per arm, so the rl arm's GRPO is make demo-post's 60 steps of 16
    # images (its rollouts dominate the wall time: ~3.7 s a step)
    "cpu": dict(budget=1920, seeds=[0, 1, 2], evals=3, eval_per_category=4, eval_images=2, sft_share=0.5,
                final_per_category=4, final_images=4, grpo=GRPO),
    # the test suite's: every code path, seconds
    "smoke": dict(budget=40, seeds=[0], evals=1, eval_per_category=1, eval_images=1, sft_share=0.5,
                  final_per_category=1, final_images=1,
                  grpo=dict(group=2, prompts_per_step=1, head_steps=2, ar_steps=2, ar_fraction=1.0)),
}
FINAL_SEED = 1000  # held-out prompts and image seeds of the final scoring (evaluation uses 0)


def parse(argv=None) -> argparse.Namespace:
    p = preset_parser("experiments.feedback_vs_rl", __doc__, PRESETS, ("budget", "evals"),
                      "runs/experiments/feedback_vs_rl")
    p.add_argument("--demo", default="runs/demo", help="a finished make demo (lake, shards, train-phase2)")
    return apply_preset(p.parse_args(argv), PRESETS)


def _overrides(work: str, lake: str, seed: int, a) -> list[str]:
    return [f"lake={lake}", f"shards.out={os.path.join(a.demo, 'shards')}", f"seed={seed}",
            f"train.out={work}", f"train.seed={seed}", f"evaluate.out={os.path.join(work, 'eval')}",
            f"evaluate.device={a.device}", f"train.device={a.device}", "train.keep_last=2"]


def train_images(tr: Trainer, images: int) -> int:
    """Continue ``tr`` until it has seen ``images`` more images (at least); returns the count.
    Steps see different numbers of images (resolution schedule, packing), so each ``fit`` call
    runs the steps the images per step so far predict (one checkpoint per call, at its end)."""
    seen, steps = 0, 0
    while seen < images:
        k = 1 if not steps else max(1, math.ceil((images - seen) * steps / seen))
        hist = tr.fit(tr.step + k)
        seen += sum(len(r["keys"]) for r in hist)
        steps += len(hist)
    return seen


def feedback_arm(a, lake: str, init: str, work: str, seed: int, budget: int) -> dict:
    """One trainer for the whole arm (as ``experiments.training_run``): train a slice, evaluate the
    checkpoint it ends with, publish the next weights, which the running trainer adopts."""
    c = a.cfg
    n_eval = c["eval_per_category"] * len(sw.CATEGORIES) * c["eval_images"]
    ov = _overrides(work, lake, seed, a) + [f"train.init_from={init}",
                                            f"evaluate.prompts_per_category={c['eval_per_category']}",
                                            f"evaluate.images_per_prompt={c['eval_images']}"]
    cfg = load_config(PHASE2, ov)
    seen, generated, published = 0, 0, []
    plan = feedback_plan(budget, c["evals"], n_eval)
    tr = Trainer(cfg)
    try:
        for i, images in enumerate(plan):
            seen += train_images(tr, images)
            if i < len(plan) - 1:  # evaluate the newest checkpoint, publish the next weights
                ce.evaluate_checkpoint(lake, ckpts.live(lake)[-1], cfg.evaluate, progress=False)
                generated += n_eval
                published.append(publish_next(lake, cfg.feedback)["weights_version"])
        switches = [{"after_step": s, "from": f, "to": t} for s, f, t in tr.switches]
    finally:
        tr.close()
    return {"checkpoint": str(latest(work)), "seen": seen, "generated": generated, "published": published,
            "switches": switches}


def rl_arm(a, lake: str, init: str, work: str, seed: int, budget: int) -> dict:
    c = a.cfg
    sft_images, grpo_images = split(budget, c["sft_share"])
    tier = os.path.join(work, "sft_tier.parquet")
    write_tier(lake, tier, min_objects=2)
    ov = _overrides(os.path.join(work, "sft"), lake, seed, a) + [f"train.init_from={init}",
                                                                 f"train.samples_index={tier}"]
    tr = Trainer(load_config(POST, ov))
    try:
        seen = train_images(tr, sft_images)
    finally:
        tr.close()
    sft = str(latest(os.path.join(work, "sft")))
    g = c["grpo"]
    steps = max(1, round(grpo_images / (g["group"] * g["prompts_per_step"])))
    pt = [f"post_train.{k}={v}" for k, v in g.items()] + [
        f"post_train.init_from={sft}", f"post_train.out={os.path.join(work, 'grpo')}",
        f"post_train.steps={steps}", f"post_train.eval_every={steps}", f"post_train.save_every={steps}",
        f"post_train.seed={seed}", f"post_train.device={a.device}", "post_train.categories=null",
        "post_train.heldout_prompts_per_category=1"]
    curve = PostTrainRun(load_config(POST, ov + pt)).run()
    return {"checkpoint": str(latest(os.path.join(work, "grpo"))), "sft_checkpoint": sft, "seen": seen,
            "generated": steps * g["group"] * g["prompts_per_step"], "grpo_steps": steps,
            "curve": [{k: v for k, v in r.items() if isinstance(v, (int, float))} for r in curve]}


def run_arm(a, arm: str, seed: int, base: str) -> dict:
    work = os.path.join(a.work, f"{arm}-s{seed}")
    shutil.rmtree(work, ignore_errors=True)
    lake = os.path.join(work, "lake")
    shutil.copytree(os.path.join(a.demo, "lake"), lake)
    t0, b = time.time(), a.cfg["budget"]
    if arm == "feedback":
        r = feedback_arm(a, lake, base, os.path.join(work, "train"), seed, b)
    elif arm == "rl":
        r = rl_arm(a, lake, base, work, seed, b)
    else:
        f = feedback_arm(a, lake, base, os.path.join(work, "train"), seed, b // 2)
        r = rl_arm(a, lake, f["checkpoint"], work, seed, b - b // 2)
        r.update(seen=r["seen"] + f["seen"], generated=r["generated"] + f["generated"],
                 published=f["published"], feedback_checkpoint=f["checkpoint"])
    r["seconds"] = round(time.time() - t0, 1)
    r["final"] = final_rows(r["checkpoint"], a)
    if arm == "rl":  # what GRPO added to its own SFT checkpoint
        r["final_sft"] = final_rows(r["sft_checkpoint"], a)
    print(f"[{arm} seed {seed}] seen {r['seen']} generated {r['generated']} in {r['seconds']} s: "
          f"{composition.summarize(r['final']).get('overall', {}).get('score')}", flush=True)
    return r


def final_rows(ckpt: str, a) -> list[dict]:
    c = a.cfg
    return composition.score_checkpoint(ckpt, c["final_per_category"], c["final_images"], FINAL_SEED,
                                        device=a.device, categories=sw.CATEGORIES)


def main(argv=None) -> int:
    a = parse(argv)
    torch.set_num_threads(int(os.environ.get("EXP_THREADS", min(2, os.cpu_count() or 1))))
    c, t0 = a.cfg, time.time()
    print(f"feedback vs RL, preset {a.preset}: {json.dumps(c)}", flush=True)
    base = str(latest(os.path.join(a.demo, "train-phase2")))
    os.makedirs(a.work, exist_ok=True)
    saved = os.path.join(a.work, "results.json")
    results = json.load(open(saved)) if os.path.exists(saved) else {}  # resumable: whole arms kept
    results.setdefault("base", {"checkpoint": base, "final": final_rows(base, a)})
    for seed in c["seeds"]:  # seed-major: a run cut short still has whole seeds of all arms
        for arm in ARMS:
            key = f"{arm}/{seed}"
            if key not in results:
                results[key] = run_arm(a, arm, seed, base)
                with open(saved, "w") as f:
                    json.dump(results, f, default=str)
    report.write(a, results, time.time() - t0)
    return 0


def report_only(argv=None) -> int:
    """Rewrite the report from a (possibly partial) run's ``<work>/results.json``, keeping only
    seeds whose three arms all finished; the wall time is the arms' own seconds."""
    a = parse(argv)
    with open(os.path.join(a.work, "results.json")) as f:
        saved = json.load(f)
    whole = {s for s in {k.split("/")[1] for k in saved if "/" in k} if all(f"{arm}/{s}" in saved for arm in ARMS)}
    results = {k: v for k, v in saved.items() if "/" not in k or k.split("/")[1] in whole}
    report.write(a, results, sum(v["seconds"] for k, v in results.items() if "/" in k))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main, report_only))
