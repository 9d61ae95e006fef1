"""Does the model draw? "a <color> <shape>" prompts through ``t2i generate``'s defaults, checked
pixel by pixel, beside a prompt-shuffled control (issue #10 §2).

For each of the 6 x 3 colour/shape prompts, ``seeds`` images at the checkpoint's evaluation size:
the dominant palette colour of the image (shapes-geneval's hue segmentation, at least 2% of the
pixels) and the class of its largest detected shape. Chance is 1/6 for colour and 1/3 for shape;
the control scores the same images against a shuffled prompt, so a model that ignores the text
sits at chance there.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from tasks import shapes_world as sw
from tasks.evaluators import controls
from tasks.evaluators import shapes_geneval as sg
from training.generation import load_generator, settings

COLORS, SHAPES = list(sw.COLORS), list(sw.SHAPES)


def prompts() -> list[tuple[str, str, str]]:
    return [(c, s, sw.a(f"{c} {s}")) for c in COLORS for s in SHAPES]


def read(img: Image.Image) -> tuple[str | None, str | None]:
    """(dominant palette colour or None, class of the largest detected shape or None)."""
    arr = np.asarray(img.convert("RGB"))
    lab = sg.color_labels(arr)
    counts = np.bincount(lab[lab >= 0].ravel(), minlength=len(COLORS))
    color = COLORS[int(counts.argmax())] if counts.sum() >= 0.02 * lab.size else None
    dets = sg.detect(arr, lab)
    shape = max(dets, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1])).cls if dets else None
    return color, shape


def check(ckpt: str, seeds: int = 4, device: str = "cpu", grid: str | None = None, **given) -> dict:
    """Generate and score; returns accuracies, their controls and the sampling settings used.
    ``given``: sampling settings that replace the checkpoint's record (``generation.SAMPLING``)."""
    gen = load_generator(ckpt, device)
    s = settings(gen.meta, **given)
    ps = prompts() * seeds
    images = []
    for k in range(seeds):
        batch = ps[k * len(prompts()):(k + 1) * len(prompts())]
        images += gen([p for _, _, p in batch], s, seed=k)
    out = {"images": len(ps), "settings": {k: v for k, v in s.items()},
           **score(images, [(c, sh) for c, sh, _ in ps]),
           "chance": {"color": 1 / len(COLORS), "shape": 1 / len(SHAPES)}}
    if grid:
        save_grid(images, len(prompts()), grid)
        out["grid"] = grid
    return out


def score(images: list[Image.Image], pairs: list[tuple[str, str]]) -> dict[str, float]:
    """Share of images with the prompted (colour, shape), and the same images against a
    derangement of the prompts: a model that ignores the text sits at chance there."""
    got = [read(im) for im in images]
    perm = controls.derangement(len(pairs), seed=0)
    n = len(pairs)
    return {"color": sum(g[0] == p[0] for g, p in zip(got, pairs)) / n,
            "shape": sum(g[1] == p[1] for g, p in zip(got, pairs)) / n,
            "color_shuffled": sum(got[i][0] == pairs[perm[i]][0] for i in range(n)) / n,
            "shape_shuffled": sum(got[i][1] == pairs[perm[i]][1] for i in range(n)) / n}


def save_grid(images: list[Image.Image], cols: int, path: str, scale: int = 3) -> None:
    """Rows of ``cols`` images (one row per seed), upscaled ``scale`` x with nearest pixels."""
    w, h = images[0].size
    rows = -(-len(images) // cols)
    g = Image.new("RGB", (cols * w, rows * h), (255, 255, 255))
    for i, im in enumerate(images):
        g.paste(im, ((i % cols) * w, (i // cols) * h))
    g.resize((cols * w * scale, rows * h * scale), Image.NEAREST).save(path)
