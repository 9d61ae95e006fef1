"""Why the demo drew noise (issue #10): does D-JEPA·T2I learn "a <color> <shape>" at 32 px on
CPU, and how fast? A deliberately minimal loop (in-memory shapes-world scenes, no data path, no
checkpoints) around the project's own model, EMA and text encoder, so that each knob (steps,
head_mul, heads / rotary base, mask ratios, sampler settings) is measured alone. Every
``--eval_every`` steps it generates the 18 colour/shape prompts ``--reps`` times and reports the
share with the right dominant colour and shape next to the same images scored against shuffled
prompts (chance).

    python -m experiments.learning_diagnostic --steps 2000 --save runs/diag/d   # the demo's recipe
    python -m experiments.learning_diagnostic --steps 600 --set model.overrides="{heads: 4,
        rope_base: 10000.0, head_mul: 4, mask_min: 0.7, mask_std: 0.25}" --set evaluate.cfg=3
        # the model as it stood before issue #10 (results of both in docs/experiments.md)

The model, optimiser (lr, betas, weight decay, clip, EMAs) and sampler settings come from one
config (``--config``, default the demo's phase 1, plus ``--set key=value``), the same sections
``t2i train`` and ``t2i generate`` read; only the in-memory data and the loop are this script's.
"""
from __future__ import annotations

import argparse
import random
import time

import numpy as np
import torch

import djepa_t2i.env  # noqa: F401  offline environment
from djepa_t2i.config import load_config
from model.djepa import build_model
from model.ema import EMA
from model.text_encoder import TextEncoder
from model.tokenizers import pack
from tasks import shapes_world as sw
from training import lake_io
from training.draw_check import save_grid, score
from training.feedback_sampler import Decision
from training.generation import SAMPLING, decode, resolve_steps, tensor_to_image
from training.images import load_image


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m experiments.learning_diagnostic", description=__doc__,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = p.add_argument_group("data")
    d.add_argument("--size", type=int, default=32, help="image side in pixels")
    d.add_argument("--n", type=int, default=2000, help="rendered scenes held in memory")
    d.add_argument("--kind", default="colors", help="shapes-world categories, comma-separated")
    d.add_argument("--obj_size", default=None,
                   help="single-object box side lo,hi as a fraction of the short side (default: the world's)")
    d.add_argument("--lake", default=None, help="train on this lake's samples (phase-1 crops) instead of scenes")
    d.add_argument("--strip_tags", action="store_true", help='drop recaption tags (" [source: ...]") from captions')
    t = p.add_argument_group("training (model, optimiser, EMAs and sampling: --config/--set)")
    t.add_argument("--config", default="configs/demo_phase1.yaml", help="YAML config file")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. model.overrides={heads: 4} (repeatable)")
    t.add_argument("--steps", type=int, default=1000)
    t.add_argument("--bs", type=int, default=16, help="images per step")
    t.add_argument("--threads", type=int, default=2, help="torch threads")
    e = p.add_argument_group("evaluation")
    e.add_argument("--eval_every", type=int, default=250)
    e.add_argument("--reps", type=int, default=2, help="images per prompt")
    e.add_argument("--save", default=None, help="path prefix: EMA weights and a grid per evaluation")
    return p.parse_args(argv)


def to_tensor(img) -> torch.Tensor:
    """PIL RGB -> (3, H, W) in [-1, 1], the pixel tokenizer's range."""
    return torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1


def scenes(a: argparse.Namespace) -> tuple[list[torch.Tensor], list[str]]:
    """The training images and captions: rendered scenes, or a lake's phase-1 crops."""
    if a.lake:
        return lake_data(a)
    rng, kinds = random.Random(0), a.kind.split(",")
    dist = sw.ShapesDistribution(lone_size=tuple(float(v) for v in a.obj_size.split(",")) if a.obj_size else None)
    drawn = [sw.sample_scene(rng, a.size, a.size, rng.choice(kinds), dist) for _ in range(a.n)]
    return [to_tensor(sw.render(s)) for s in drawn], [s.caption for s in drawn]


def lake_data(a: argparse.Namespace) -> tuple[list[torch.Tensor], list[str]]:
    S = a.size
    rows = [r for r in lake_io.read_index(a.lake).to_pylist() if min(r["width"], r["height"]) >= S]
    imgs = [load_image(Decision(r["key"], r["tar"], r["offset"], r["size"], r["caption"], r["width"],
                                r["height"], S, S, S / 1000, crop=True)) for r in rows]
    caps = [r["caption"].split(" [")[0] if a.strip_tags else r["caption"] for r in rows]
    return imgs, caps


def prompts() -> list[tuple[str, str]]:
    return [(c, s) for c in sw.COLORS for s in sw.SHAPES]


def evaluate(a, cfg, m, ema, te, step: int) -> dict[str, float]:
    """Generate every prompt ``reps`` times with the EMA weights, score, restore the live weights."""
    live = {k: v.clone() for k, v in m.state_dict().items()}
    m.load_state_dict({**live, **ema.state_dict()}, strict=False)
    m.eval()
    pr = prompts() * a.reps
    t0 = time.time()
    out = decode(m.tokenizer, m.generate(te.encode([sw.a(f"{c} {s}") for c, s in pr]), [(a.size, a.size)] * len(pr),
                     **resolve_steps({k: getattr(cfg.evaluate, k) for k in SAMPLING},
                                     m.tokenizer.grid(a.size, a.size)), seed=step))
    images = [tensor_to_image(x) for x in out]
    m.load_state_dict(live)
    m.train()
    r = score(images, pr)
    print(f"EVAL step {step}: color {r['color']:.2f} shape {r['shape']:.2f} | shuffled color "
          f"{r['color_shuffled']:.2f} shape {r['shape_shuffled']:.2f} | gen {time.time() - t0:.1f}s", flush=True)
    if a.save:
        torch.save({"ema": ema.state_dict(), "args": vars(a), "config": cfg.model_dump(mode="json")},
                   f"{a.save}_{step}.pt")
        save_grid(images, len(prompts()), f"{a.save}_{step}.png")
    return r


def main(argv: list[str] | None = None) -> list[tuple[int, dict[str, float]]]:
    a = parse(argv)
    cfg = load_config(a.config, a.overrides)
    t = cfg.train
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    te = TextEncoder.from_config(cfg.model)
    imgs, caps = scenes(a)
    print("data", len(imgs), caps[:3], "uniq", len(set(caps)), flush=True)
    m = build_model(cfg.model, te.dim)
    print("params", sum(p.numel() for p in m.parameters() if p.requires_grad) / 1e6, "M", flush=True)
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=t.lr, betas=t.betas,
                            weight_decay=t.weight_decay)
    ema, gen, t0, losses, curve = EMA(m), torch.Generator().manual_seed(0), time.time(), [], []
    for step in range(1, a.steps + 1):
        idx = torch.randint(len(imgs), (a.bs,), generator=gen).tolist()
        out = m(pack([imgs[i] for i in idx], m.tokenizer), te.encode([caps[i] for i in idx]), generator=gen)
        opt.zero_grad()
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), t.grad_clip)
        opt.step()
        m.update_ema(t.target_ema)
        ema.update(m, t.ema)
        losses.append((out["loss_head"].item(), out["loss_pred"].item()))
        if step % 50 == 0:
            f, p_ = np.mean(losses, 0)
            losses = []
            print(f"step {step} flow {f:.4f} pred {p_:.4f} {(time.time() - t0) / step * 1000:.0f} ms/step", flush=True)
        if step % a.eval_every == 0:
            curve.append((step, evaluate(a, cfg, m, ema, te, step)))
    return curve


if __name__ == "__main__":
    main()
