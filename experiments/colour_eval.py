"""The experiments' benchmark at CPU scale: is the object's colour the one the prompt names?

At 32 px the tiny model learns colour within minutes and shape barely (docs/experiments.md, "Does
the model learn?": colour right 0.97-1.00 by 600-2,000 steps, shape 0.36-0.42 with chance 0.33,
as the earlier corner-test reader read shapes), so a shapes-geneval "colors" item (right shape *and* colour) mostly measures shape luck. This
benchmark keeps GenEval's layout (prompts x images, one row per notion, chance controls) and
scores only the colour: every "a <colour> <shape>" prompt, ``images_per_prompt`` seeded images,
each read by ``training.draw_check.read`` (the dominant palette colour, shapes-geneval's hue
segmentation). Rows go to ``eval_results`` under the benchmark name ``shapes-colour`` with the
uniform-noise, patch-noise and shuffled-prompt controls (chance 1/6), so the real feedback rule
(``warehouse.feedback_rule``, ``benchmark="shapes-colour"``) reads per-colour scores from the
``eval_notion_scores`` view exactly as it reads shapes-geneval's.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Callable

import torch
from PIL import Image

from experiments.training_run import load_ema
from tasks import shapes_world as sw
from training import evaluate as ce
from training import lake_io
from training.checkpoints import checkpoint_id
from training.draw_check import read
from training.generation import decode, tensor_to_image

BENCHMARK = "shapes-colour"
CATEGORY = "colors"


def prompts() -> list[dict]:
    """The 18 colour x shape prompts; notions: the category and the colour (what is scored)."""
    return [{"id": f"colour-{c}-{s}", "category": CATEGORY, "prompt": sw.a(f"{c} {s}"), "color": c,
             "shape": s, "notions": [f"category={CATEGORY}", f"color={c}"]}
            for c in sw.COLORS for s in sw.SHAPES]


def score(job: dict, img: Image.Image) -> tuple[float, str]:
    """1 when the image's dominant palette colour is the prompt's colour."""
    got, _ = read(img)
    return float(got == job["color"]), f"dominant colour {got}, prompt {job['color']}"


def generate_fn(path: str, hw: tuple[int, int], sampling: dict, device: str = "cpu",
                ntk_scale: float = 1.0) -> Callable[[list[dict]], list[Image.Image]]:
    """Images from a checkpoint's EMA model at (H, W) = ``hw``; ``ntk_scale`` != 1 samples a RoPE
    model with NTK-aware scaling (``model.vope.ntk_base``). Each batch is seeded by its first job."""
    model, text_encoder = load_ema(path, device)

    def gen(jobs: list[dict]) -> list[Image.Image]:
        text = text_encoder.encode([j["prompt"] for j in jobs])
        model.ntk_scale = ntk_scale
        try:
            with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
                out = decode(model.tokenizer, model.generate(text, [hw] * len(jobs), seed=int(jobs[0]["seed"]),
                                                             **sampling))
        finally:
            model.ntk_scale = 1.0
        return [tensor_to_image(x) for x in out]
    return gen


def evaluate(jobs: list[dict], gen, batch_size: int = 36, image_dir: str | None = None,
             seed: int = 0) -> list[dict]:
    """Score ``jobs`` (``ce.jobs_for(prompts(), ...)``) and their three chance controls."""
    images: list[Image.Image] = []
    rows = ce.score_jobs(jobs, gen, score, BENCHMARK, batch_size, image_dir, progress=False, keep=images)
    return rows + ce.control_rows(jobs, images, score, BENCHMARK, seed)


def evaluate_checkpoint(lake: str, ckpt: dict, images_per_prompt: int, sampling: dict, size: int,
                        device: str = "cpu", seed: int = 0, image_dir: str | None = None) -> dict:
    """The in-loop evaluation: score a registered checkpoint and write its ``eval_results``
    partition (what the feedback rule reads). Returns per-colour and overall shares."""
    ck = checkpoint_id(ckpt["run_id"], ckpt["step"])
    jobs = ce.jobs_for(prompts(), images_per_prompt, seed)
    rows = evaluate(jobs, generate_fn(ckpt["path"], (size, size), sampling, device), image_dir=image_dir,
                    seed=seed)
    now, params = dt.datetime.now(dt.timezone.utc), json.dumps({**sampling, "size": size, "seed": seed})
    for r in rows:
        r.update(checkpoint=ck, run_id=ckpt["run_id"], step=ckpt["step"], benchmark=BENCHMARK,
                 weights_version=ckpt.get("weights_version"), params=params, created_at=now)
    lake_io.write_rows(lake, "eval_results", ce.partition_name(ck, BENCHMARK), rows)
    return {"checkpoint": ck, "step": ckpt["step"], **colour_summary(rows)}


def colour_summary(rows: list[dict]) -> dict[str, float]:
    """Share of correct images overall, per colour, and per chance control (prefix ``control:``)."""
    out: dict[str, list[float]] = {}
    for r in rows:
        if r.get("control"):
            if r["notion_kind"] == "category":  # one row per image (not the per-notion chance rows)
                out.setdefault(f"control:{r['control']}", []).append(r["score"])
        elif r["notion_kind"] == "category":
            out.setdefault("overall", []).append(r["score"])
        elif r["notion_kind"] == "color":
            out.setdefault(f"color={r['notion']}", []).append(r["score"])
    return {k: sum(v) / len(v) for k, v in out.items()}


def scores_of(rows: list[dict], notion: str | None = None, control: str | None = None) -> list[float]:
    """0/1 scores of the model's images (or of one ``control``), optionally of one ``color=...``."""
    if control is not None:
        return [r["score"] for r in rows if r.get("control") == control and r["notion_kind"] == "category"
                and (notion is None or r["prompt_id"].split("-")[1] == notion.split("=")[1])]
    if notion is None:
        return [r["score"] for r in rows if not r.get("control") and r["notion_kind"] == "category"]
    kind, value = notion.split("=", 1)
    return [r["score"] for r in rows if not r.get("control") and r["notion_kind"] == kind
            and r["notion"] == value]
