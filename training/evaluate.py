"""Evaluating checkpoints: which ones are pending, generating for a benchmark, scoring, and the
``eval_results`` partition. Plain functions; ``flows/evaluate_checkpoints.py`` wraps them. It sits
above the model (it generates with it) and the pure image scorers of ``tasks.evaluators``.

The scoring path takes a ``generate_fn(jobs) -> images`` so it runs without a trained model (a
renderer of the ground truth must score 1.0). A checkpoint is read only when its directory is
complete (``training.checkpoints``: the trainer writes ``COMPLETE`` last, renames the directory
into place, then registers it), and a checkpoint+benchmark pair with a partition in ``eval_results`` is done:
re-running evaluates nothing twice, and a killed evaluation leaves no partition, so it reruns.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
from typing import Callable

import numpy as np
from PIL import Image
from tqdm import tqdm

from djepa_t2i.cli_args import runtime_fault
from tasks import shapes_world as sw
from tasks.evaluators import controls as ctl
from tasks.evaluators import geneval
from tasks.evaluators import geneval_rules as rules
from tasks.evaluators import shapes_geneval as sg
from tasks.evaluators.clipscore import CLIPScorer
from training import checkpoints as ckpts
from training import lake_io
from training.checkpoints import checkpoint_id
from training.generation import load_generator, sampling_of

log = logging.getLogger(__name__)

GenerateFn = Callable[[list[dict]], list[Image.Image]]


def partition_name(ckpt: str, benchmark: str) -> str:
    return f"{ckpt}-{benchmark}"


def pending_checkpoints(lake: str, benchmark: str) -> tuple[list[dict], list[dict]]:
    """(checkpoints to evaluate, skipped ones with the reason). Skipped: already evaluated for
    ``benchmark``, or its directory is missing or incomplete (it is retried next time)."""
    todo, skipped = [], []
    for r in ckpts.live(lake):
        ck = checkpoint_id(r["run_id"], r["step"])
        if lake_io.has_partition(lake, "eval_results", partition_name(ck, benchmark)):
            skipped.append({**r, "why": "already evaluated"})
        elif not ckpts.is_complete(r["path"] or ""):
            skipped.append({**r, "why": f"incomplete or missing directory {r['path']}"})
        elif why := ckpts.damage(r["path"]):
            skipped.append({**r, "why": f"damaged checkpoint {r['path']}: {why}"})
        else:
            todo.append(r)
    return todo, skipped


def benchmark_prompts(cfg) -> list[dict]:
    """The prompt set of ``cfg.benchmark`` (``cfg``: the ``evaluate`` config section)."""
    if cfg.benchmark == "shapes-geneval":
        return sw.benchmark_prompts(cfg.prompts_per_category, cfg.seed, cfg.size, cfg.size)
    if cfg.benchmark == "geneval":
        if not cfg.metadata:
            raise ValueError("evaluate.benchmark=geneval needs evaluate.metadata "
                             "(path to GenEval's evaluation_metadata.jsonl)")
        return geneval.read_metadata(cfg.metadata)
    raise ValueError(f"unknown benchmark {cfg.benchmark!r}")


def jobs_for(prompts: list[dict], images_per_prompt: int, seed: int) -> list[dict]:
    """One generation job per (prompt, image index), with its own seed (recorded in the rows)."""
    return [{**p, "image_index": j, "seed": seed * 1_000_003 + i * images_per_prompt + j}
            for i, p in enumerate(prompts) for j in range(images_per_prompt)]


def scorer_for(cfg):
    """``score(job, image) -> (score, reason)`` and the backend name for ``cfg.benchmark``."""
    if cfg.benchmark == "shapes-geneval":
        return (lambda job, img: sg.score_image(img, job["spec"])), sg.BACKEND
    scorer = geneval.GenEvalScorer.from_config(cfg)
    return (lambda job, img: scorer.score(img, job["spec"])), scorer.backend


def save_png(img: Image.Image, path: str) -> None:
    """Under a temporary name, renamed into place: a full disk leaves no cut-short image (Pillow
    removes a file it could not finish only when it was new, and a failed flush at close leaves
    it), and a rerun's image replaces the old one whole."""
    tmp = f"{path}.tmp"
    try:
        img.save(tmp, "PNG")
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    os.replace(tmp, path)


def score_jobs(jobs: list[dict], generate_fn: GenerateFn, score_fn, backend: str,
               batch_size: int, image_dir: str | None = None,
               progress: bool = True, keep: list | None = None) -> list[dict]:
    """Generate in batches, save each image as ``<prompt_id>_<j>.png``, score it, and return
    long-format rows (one per notion of the prompt, ``notion_kind='category'`` included).
    ``keep``: a list the generated images are appended to (the shuffled-prompt control)."""
    if image_dir:
        os.makedirs(image_dir, exist_ok=True)
    rows = []
    # closed before an error leaves: its last redraw would follow (and hide) t2i's one-line error
    with tqdm(total=len(jobs), desc="evaluate", unit="img", disable=not progress) as bar:
        for b in range(0, len(jobs), batch_size):
            batch = jobs[b:b + batch_size]
            images = generate_fn(batch)
            if len(images) != len(batch):
                raise ValueError(f"generate_fn returned {len(images)} images for {len(batch)} prompts")
            if keep is not None:
                keep.extend(images)
            for job, img in zip(batch, images):
                score, reason = score_fn(job, img)
                path = None
                if image_dir:
                    path = os.path.join(image_dir, f"{job['id']}_{job['image_index']}.png")
                    save_png(img, path)
                for notion in job["notions"]:
                    kind, value = notion.split("=", 1)
                    rows.append({"category": job["category"], "prompt_id": job["id"],
                                 "prompt": job["prompt"], "image_index": job["image_index"],
                                 "seed": job["seed"], "notion_kind": kind, "notion": value,
                                 "score": float(score), "reason": reason, "backend": backend,
                                 "image_path": path})
            bar.update(len(batch))
    return rows


def chance_notions(job: dict, target: dict) -> list[tuple[str, str]]:
    """The ``(kind, value)`` notions of ``target`` (the deranged prompt an image of ``job`` is
    scored against) that ``job``'s own prompt does not name: a pass on one of them is an image
    made for a prompt that did NOT name the notion judged to show it, i.e. that notion's chance."""
    return [tuple(n.split("=", 1)) for n in target["notions"]
            if n not in job["notions"] and not n.startswith("category=")]


def control_rows(jobs: list[dict], images: list[Image.Image], score_fn, backend: str,
                 seed: int) -> list[dict]:
    """Chance-level controls beside every evaluation (tasks/evaluators/controls.py): uniform
    noise, palette patch noise, and the model's own images scored against another prompt of the
    same category. One ``notion_kind='category'`` row per image and control; the shuffled-prompt
    control also has one row per :func:`chance_notions` notion (the per-notion chance the
    feedback rule compares a notion's score with: a model that draws purple for every prompt
    scores purple prompts 1.0, and its purple chance is 1.0 too)."""
    rng = np.random.default_rng(seed)
    shuffled = ctl.shuffled_within_category(jobs, seed)
    out = []
    for i, (job, img) in enumerate(zip(jobs, images)):
        hw = (img.height, img.width)
        for name, im, target in (("uniform_noise", ctl.uniform_noise(hw, rng), job),
                                 ("patch_noise", ctl.patch_noise(hw, rng), job),
                                 ("shuffled_prompt", img, jobs[shuffled[i]])):
            score, reason = score_fn(target, im)
            row = {"category": job["category"], "prompt_id": target["id"],
                   "prompt": target["prompt"], "image_index": job["image_index"],
                   "seed": job["seed"], "notion_kind": "category", "notion": job["category"],
                   "score": float(score), "reason": reason, "backend": backend,
                   "image_path": None, "control": name}
            out.append(row)
            if name == "shuffled_prompt":
                out += [{**row, "notion_kind": k, "notion": v} for k, v in chance_notions(job, target)]
    return out


def model_generate_fn(path: str, cfg) -> tuple[GenerateFn, dict]:
    """A ``generate_fn`` over a checkpoint's EMA weights (``training.generation``) with the
    ``evaluate`` section's settings; each batch is seeded by its first job's seed, so a rerun
    with the same config is identical."""
    gen = load_generator(path, cfg.device)
    s = sampling_of(cfg)
    return (lambda jobs: gen([j["prompt"] for j in jobs], s, seed=int(jobs[0]["seed"]))), gen.meta


def clipscores(cfg, jobs: list[dict], images: list[Image.Image]) -> dict[tuple[str, int], float]:
    """CLIPScore (torchmetrics' 0-100 scale) of each generated image against its prompt, keyed by
    (prompt id, image index); empty unless ``evaluate.clip`` names local weights. The paper's
    Table 3 is GenEval; CLIPScore is the prompt-image agreement beside it."""
    if cfg.clip.backend == "none":
        return {}
    scorer = CLIPScorer(cfg.clip_arch, cfg.clip.weights, cfg.clip.device, batch_size=cfg.clip.batch_size)
    scores = scorer.score(images, [j["prompt"] for j in jobs]).tolist()
    return {(j["id"], j["image_index"]): float(v) for j, v in zip(jobs, scores)}


def evaluate_checkpoint(lake: str, ckpt: dict, cfg, generate_fn: GenerateFn | None = None,
                        progress: bool = True) -> dict:
    """Evaluate one registered checkpoint (``checkpoints`` row) on ``cfg.benchmark`` and write its
    ``eval_results`` partition; returns the summary. ``generate_fn`` defaults to the checkpoint's
    EMA model."""
    ck = checkpoint_id(ckpt["run_id"], ckpt["step"])
    if generate_fn is None:
        generate_fn, _ = model_generate_fn(ckpt["path"], cfg)
    prompts = benchmark_prompts(cfg)
    jobs = jobs_for(prompts, cfg.images_per_prompt, cfg.seed)
    score_fn, backend = scorer_for(cfg)
    image_dir = os.path.join(cfg.out, ck, cfg.benchmark)
    images: list[Image.Image] = []
    rows = score_jobs(jobs, generate_fn, score_fn, backend, cfg.batch_size, image_dir, progress,
                      keep=images)
    clip = clipscores(cfg, jobs, images)
    for r in rows:
        r["clipscore"] = clip.get((r["prompt_id"], r["image_index"]))
    if cfg.controls:
        rows += control_rows(jobs, images, score_fn, backend, cfg.seed)
    params = json.dumps({k: getattr(cfg, k) for k in ("steps", "flow_steps", "cfg", "temperature",
                                                      "time_shift", "size", "seed",
                                                      "images_per_prompt", "prompts_per_category")})
    now = dt.datetime.now(dt.timezone.utc)
    for r in rows:
        r.update(checkpoint=ck, run_id=ckpt["run_id"], step=ckpt["step"], benchmark=cfg.benchmark,
                 weights_version=ckpt.get("weights_version"), params=params, created_at=now)
    lake_io.write_rows(lake, "eval_results", partition_name(ck, cfg.benchmark), rows)
    summary = rules.summarize((r["category"], r["score"]) for r in rows
                              if r["notion_kind"] == "category" and r.get("control") is None)
    chance = {name: rules.summarize((r["category"], r["score"]) for r in rows
                                    if r.get("control") == name
                                    and r["notion_kind"] == "category")["overall"]
              for name in sorted({r["control"] for r in rows if r.get("control")})}
    log.info("evaluated %s on %s: %s (controls: %s)", ck, cfg.benchmark, summary, chance)
    res = {"checkpoint": ck, "benchmark": cfg.benchmark, "images": len(jobs), "rows": len(rows),
           "backend": backend, "summary": summary, "controls": chance}
    if clip:
        res["clipscore"] = round(sum(clip.values()) / len(clip), 3)
    return res


def evaluate_pending(lake: str, cfg, generate_fn_for: Callable[[dict], GenerateFn] | None = None,
                     progress: bool = True) -> dict:
    """Evaluate every pending checkpoint (at most ``cfg.max_checkpoints`` if > 0)."""
    todo, skipped = pending_checkpoints(lake, cfg.benchmark)
    if cfg.max_checkpoints:
        todo = todo[: cfg.max_checkpoints]
    done, failed = [], []
    for ck in todo:  # one checkpoint that cannot load or generate must not stop the others
        try:
            fn = generate_fn_for(ck) if generate_fn_for else None
            done.append(evaluate_checkpoint(lake, ck, cfg, fn, progress))
        except Exception as e:  # noqa: BLE001 - recorded with its reason, retried next time
            if runtime_fault(e):
                raise  # the disk, not the checkpoint: every other one would fail the same way
            why = f"{type(e).__name__}: {e}"
            log.warning("evaluation of %s failed: %s", ck["path"], why)
            failed.append({"checkpoint": checkpoint_id(ck["run_id"], ck["step"]), "why": why})
    return {"evaluated": done, "failed": failed,
            "skipped": [{"checkpoint": checkpoint_id(s["run_id"], s["step"]), "why": s["why"]} for s in skipped]}
