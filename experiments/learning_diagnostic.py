"""Why the demo drew noise (issue #10): does D-JEPA·T2I learn "a <color> <shape>" at 32 px on
CPU, and how fast? A deliberately minimal loop (in-memory shapes-world scenes, no data path, no
checkpoints) around the project's own model, EMA and text encoder, so that each knob (steps,
head_mul, heads / rotary base, mask ratios, sampler settings) is measured alone. Every
``--eval_every`` steps it generates the 18 colour/shape prompts ``--reps`` times and reports the
share with the right dominant colour and shape next to the same images scored against shuffled
prompts (chance).

    python -m experiments.learning_diagnostic --steps 2000 --head_mul 1 --heads 2 --base 100 \\
        --save runs/diag/d        # the demo's recipe; results in docs/experiments.md

The defaults are the model as it stood before issue #10 (4 heads, base 1e4, MAR's 70-100% masks,
4 t-draws per token); docs/experiments.md lists the flags of every row it reports.
"""
from __future__ import annotations

import argparse
import random
import time

import numpy as np
import torch

import djepa_t2i.env  # noqa: F401  offline environment
from djepa_t2i.config import Model
from model.djepa import DJEPAT2I
from model.ema import EMA
from model.text_encoder import TextEncoder
from model.tokenizers import PixelTokenizer, pack
from tasks import shapes_world as sw
from training import lake_io
from training.draw_check import save_grid, score
from training.feedback_sampler import Decision
from training.generation import tensor_to_image
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
    m = p.add_argument_group("model")
    m.add_argument("--patch", type=int, default=4, help="pixel-tokenizer patch side")
    m.add_argument("--width", type=int, default=64, help="transformer width")
    m.add_argument("--depth", type=int, default=2, help="encoder and predictor depth each")
    m.add_argument("--heads", type=int, default=4, help="attention heads")
    m.add_argument("--base", type=float, default=10000.0, help="rotary base")
    m.add_argument("--fov", type=float, default=8.0, help="VoPE field of view in tokens")
    m.add_argument("--hw", type=int, default=128, help="flow-head width")
    m.add_argument("--hd", type=int, default=2, help="flow-head depth")
    m.add_argument("--head_mul", type=int, default=4, help="t-draws per token for the flow loss")
    m.add_argument("--pred_weight", type=float, default=1.0, help="weight of the JEPA prediction loss")
    m.add_argument("--mask_min", type=float, default=0.7, help="lowest mask ratio (MAR: 0.7)")
    m.add_argument("--mask_std", type=float, default=0.25, help="std of the truncated-normal mask ratio")
    t = p.add_argument_group("training")
    t.add_argument("--steps", type=int, default=1000)
    t.add_argument("--bs", type=int, default=16, help="images per step")
    t.add_argument("--lr", type=float, default=1e-3, help="constant AdamW learning rate")
    t.add_argument("--ema", type=float, default=0.99, help="EMA decay of the sampled weights")
    t.add_argument("--tema", type=float, default=0.996, help="EMA decay of the target encoder")
    t.add_argument("--threads", type=int, default=2, help="torch threads")
    e = p.add_argument_group("evaluation")
    e.add_argument("--eval_every", type=int, default=250)
    e.add_argument("--reps", type=int, default=2, help="images per prompt")
    e.add_argument("--cfg", type=float, default=3.0)
    e.add_argument("--gsteps", type=int, default=16, help="autoregressive steps")
    e.add_argument("--fsteps", type=int, default=16, help="flow (Euler) steps per token")
    e.add_argument("--temp", type=float, default=1.0, help="sampling temperature")
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


def build(a: argparse.Namespace, text_dim: int):
    tok = PixelTokenizer(a.patch)
    m = DJEPAT2I(token_dim=tok.token_dim, text_dim=text_dim, width=a.width, enc_depth=a.depth,
                 pred_depth=a.depth, heads=a.heads, head_width=a.hw, head_depth=a.hd, vope_fov=a.fov,
                 rope_base=a.base, pred_weight=a.pred_weight, head_mul=a.head_mul,
                 mask_min=a.mask_min, mask_std=a.mask_std)
    m.tokenizer = tok
    return m


def prompts() -> list[tuple[str, str]]:
    return [(c, s) for c in sw.COLORS for s in sw.SHAPES]


def evaluate(a, m, ema, te, step: int) -> dict[str, float]:
    """Generate every prompt ``reps`` times with the EMA weights, score, restore the live weights."""
    live = {k: v.clone() for k, v in m.state_dict().items()}
    m.load_state_dict({**live, **ema.state_dict()}, strict=False)
    m.eval()
    pr = prompts() * a.reps
    t0 = time.time()
    out = m.generate(te.encode([sw.a(f"{c} {s}") for c, s in pr]), [(a.size, a.size)] * len(pr),
                     steps=a.gsteps, cfg=a.cfg, cfg_schedule="linear", flow_steps=a.fsteps,
                     temperature=a.temp, time_shift=1.0, seed=step)
    images = [tensor_to_image(x) for x in out]
    m.load_state_dict(live)
    m.train()
    r = score(images, pr)
    print(f"EVAL step {step}: color {r['color']:.2f} shape {r['shape']:.2f} | shuffled color "
          f"{r['color_shuffled']:.2f} shape {r['shape_shuffled']:.2f} | gen {time.time() - t0:.1f}s", flush=True)
    if a.save:
        torch.save({"ema": ema.state_dict(), "args": vars(a)}, f"{a.save}_{step}.pt")
        save_grid(images, len(prompts()), f"{a.save}_{step}.png")
    return r


def main(argv: list[str] | None = None) -> list[tuple[int, dict[str, float]]]:
    a = parse(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    te = TextEncoder.from_config(Model())
    imgs, caps = scenes(a)
    print("data", len(imgs), caps[:3], "uniq", len(set(caps)), flush=True)
    m = build(a, te.dim)
    print("params", sum(p.numel() for p in m.parameters() if p.requires_grad) / 1e6, "M", flush=True)
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=a.lr, betas=(0.9, 0.95),
                            weight_decay=0.02)
    ema, gen, t0, losses, curve = EMA(m), torch.Generator().manual_seed(0), time.time(), [], []
    for step in range(1, a.steps + 1):
        idx = torch.randint(len(imgs), (a.bs,), generator=gen).tolist()
        out = m(pack([imgs[i] for i in idx], m.tokenizer), te.encode([caps[i] for i in idx]), generator=gen)
        opt.zero_grad()
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        m.update_ema(a.tema)
        ema.update(m, a.ema)
        losses.append((out["loss_head"].item(), out["loss_pred"].item()))
        if step % 50 == 0:
            f, p_ = np.mean(losses, 0)
            losses = []
            print(f"step {step} flow {f:.4f} pred {p_:.4f} {(time.time() - t0) / step * 1000:.0f} ms/step", flush=True)
        if step % a.eval_every == 0:
            curve.append((step, evaluate(a, m, ema, te, step)))
    return curve


if __name__ == "__main__":
    main()
