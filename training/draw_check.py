"""Does the model draw? "a <color> <shape>" prompts through ``t2i generate``'s defaults, checked
pixel by pixel, beside a prompt-shuffled control (issue #10 §2).

For each of the 6 x 3 colour/shape prompts, ``seeds`` images at the checkpoint's evaluation size
(or a given one; ``check_sizes``: 1x and 2x, the demo's check that VoPE carries to a larger grid):
the dominant palette colour of the image (shapes-geneval's hue segmentation, at least 2% of the
pixels) and the class of its largest detected shape. Chance is 1/6 for colour and 1/3 for shape;
the control scores the same images against a shuffled prompt, so a model that ignores the text
sits at chance there.
"""
from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

from djepa_t2i.config import recorded
from tasks import shapes_world as sw
from tasks.evaluators import controls
from tasks.evaluators import shapes_geneval as sg
from training.generation import Generator, load_generator, settings

COLORS, SHAPES = list(sw.COLORS), list(sw.SHAPES)
DRAWS_JSON = "draws.json"  # the demo's draw check at each size, beside its grids in the report folder


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


def check(ckpt: str, seeds: int = 4, device: str = "cpu", grid: str | None = None,
          size: tuple[int, int] | None = None, **given) -> dict:
    """Generate and score; returns accuracies, their controls and the sampling settings used
    (``steps: "auto"`` resolved for the size). ``size``: (H, W), else the checkpoint's evaluation
    size; ``given``: sampling settings that replace the checkpoint's record (``generation.SAMPLING``)."""
    gen = load_generator(ckpt, device)
    return draw(gen, gen.resolve(settings(gen.meta, size, **given)), seeds, grid)


def check_sizes(ckpt: str, seeds: int, out_dir: str, scales: tuple[int, ...] = (1, 2),
                device: str = "cpu") -> dict:
    """The draw check at the checkpoint's evaluation side times each of ``scales`` (the demo:
    its training side and 2x, where VoPE has to carry the layout to a grid never trained at a
    fixed size), each with its steps by token count. Grids ``draws.png`` (1x) and ``draws_<k>x.png``;
    the results also go to ``<out_dir>/draws.json`` for the report page (``report.draws``)."""
    gen = load_generator(ckpt, device)
    side = recorded(gen.meta.get("config"), "evaluate").size
    results = []
    for k in scales:
        grid = os.path.join(out_dir, "draws.png" if k == 1 else f"draws_{k}x.png")
        s = gen.resolve(settings(gen.meta, (side * k, side * k)))
        results.append({"scale": k, **draw(gen, s, seeds, grid)})
    out = {"checkpoint": str(ckpt), "sizes": results}
    with open(os.path.join(out_dir, DRAWS_JSON), "w") as f:
        json.dump(out, f, indent=1)
    return out


def draw(gen: Generator, s: dict, seeds: int, grid: str | None = None) -> dict:
    """``seeds`` images of each prompt with the resolved settings ``s``, scored (``score``)."""
    ps = prompts() * seeds
    images = []
    for k in range(seeds):
        batch = ps[k * len(prompts()):(k + 1) * len(prompts())]
        images += gen([p for _, _, p in batch], s, seed=k)
    out = {"images": len(ps), "size": list(s["size"]), "settings": {k: v for k, v in s.items()},
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
