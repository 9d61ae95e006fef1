"""Does a checkpoint compose? shapes-geneval on GenEval-style multi-object prompts (issue #27 item 5).

The four multi-object categories of the shapes world ("a circle and a square", "three green
triangles", "a red circle above a blue square", "a red circle and a blue square") and the
single-object ``colors`` category, each image scored by shapes-geneval and, beside it, the
evaluation's chance controls (uniform noise, palette patch noise, the checkpoint's own images
against a shuffled prompt of the same category: ``training.evaluate.control_rows``). Per category
a Wilson interval; the multi-object overall is GenEval's overall over the four categories (the
mean of their shares; with the same images in each, the pooled share, so its Wilson interval too:
the normal interval of a mean of shares collapses to [0, 0] at 0/n). Images are generated with the
checkpoint's recorded settings, as ``t2i generate`` and evaluation sample it.
"""
from __future__ import annotations

from PIL import Image

from djepa_t2i.config import default
from tasks import shapes_world as sw
from tasks.evaluators import shapes_geneval as sg
from training import evaluate as ce
from training.generation import load_generator, settings
from training.lake_io import mean_interval, wilson

MULTI = ("two_object", "counting", "position", "color_attr")
CATEGORIES = (*MULTI, "colors")


def prompts(per_category: int, seed: int, size: int, categories=CATEGORIES) -> list[dict]:
    """``per_category`` prompts of each category, deterministic for ``seed``."""
    return [p for c in categories for p in sw.prompts(c, per_category, seed, size, size)]


def score_checkpoint(ckpt: str, per_category: int, images_per_prompt: int, seed: int,
                     device: str = "cpu", image_dir: str | None = None,
                     batch_size: int = default("evaluate.batch_size"),
                     categories=CATEGORIES) -> list[dict]:
    """One row per image and per (image, control): category, prompt, score, control (None for
    the checkpoint's own images)."""
    gen = load_generator(ckpt, device)
    s = settings(gen.meta)
    h, _ = s["size"]
    jobs = ce.jobs_for(prompts(per_category, seed, h, categories), images_per_prompt, seed)
    images: list[Image.Image] = []

    def score(job, img):
        return sg.score_image(img, job["spec"])

    rows = ce.score_jobs(jobs, lambda b: gen([j["prompt"] for j in b], s, seed=int(b[0]["seed"])),
                         score, sg.BACKEND, batch_size, image_dir, progress=False, keep=images)
    rows += ce.control_rows(jobs, images, score, sg.BACKEND, seed)
    return [{"category": r["category"], "prompt": r["prompt"], "image_index": r["image_index"],
             "score": r["score"], "control": r.get("control")}
            for r in rows if r["notion_kind"] == "category"]


def summarize(rows: list[dict]) -> dict:
    """``{category: {score, lo, hi, n, chance}, 'multi_object': {...}, 'overall': {...}}`` (the
    two means when all their categories were scored); chance is the best of the controls (for a
    mean: the best control's mean over the categories)."""
    def shares(control):
        by: dict[str, list[float]] = {}
        for r in rows:
            if r["control"] == control:
                by.setdefault(r["category"], []).append(r["score"])
        return {c: (sum(v) / len(v), len(v)) for c, v in by.items()}

    own = shares(None)
    controls = {c: shares(c) for c in sorted({r["control"] for r in rows if r["control"]})}
    out = {}
    for cat, (p, n) in own.items():
        lo, hi = wilson(p, n)
        chance = max((v[cat][0] for v in controls.values() if cat in v), default=None)
        out[cat] = {"score": p, "lo": lo, "hi": hi, "n": n, "chance": chance}
    for name, cats in (("multi_object", MULTI), ("overall", sw.CATEGORIES)):
        if all(c in own for c in cats):
            out[name] = _mean_of(own, controls, cats)
    return out


def _mean_of(own: dict, controls: dict, cats) -> dict:
    """GenEval's overall over ``cats``: the mean of their shares, its interval, the best control."""
    parts = [own[c] for c in cats]
    n = sum(k for _, k in parts)
    lo, hi = wilson(sum(p * k for p, k in parts) / n, n) if len({k for _, k in parts}) == 1 \
        else mean_interval(parts)
    chance = max((sum(v[c][0] for c in cats if c in v) / len(parts) for v in controls.values()), default=None)
    return {"score": sum(p for p, _ in parts) / len(parts), "lo": lo, "hi": hi, "n": n, "chance": chance}
