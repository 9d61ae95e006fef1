"""One experiment training run through the project's own components: ``training.trainer.Trainer``
(feedback sampler, packing, live weights switch, checkpoints), an in-loop evaluation that writes
``eval_results`` (shapes-geneval by default, ``experiments.colour_eval`` in the ablations), and
``warehouse.feedback_rule`` (the next weights version, which the running trainer adopts at its
next ``weights_check_every`` step).

No training loop of its own: ``Trainer.fit(end)`` is called in slices of ``eval_every`` steps and
the evaluation/feedback happen between slices, in the same process, exactly as the scheduled
evaluate-checkpoints flow would do beside a running trainer.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import numpy as np
import torch

from djepa_t2i.config import Config
from model.checkpoint import load_model
from model.tokenizers import pack
from tasks import shapes_world as sw
from training import checkpoints as ckpts
from training import evaluate as ce
from training.trainer import Trainer
from warehouse.feedback_rule import publish_next


@dataclass
class RunSpec:
    lake: str
    out: str
    seed: int
    steps: int
    eval_every: int
    model: dict                     # the config's ``model`` section
    train: dict                     # extra ``train`` keys (sizes, budget, lr, ema...)
    evaluate: dict                  # the ``evaluate`` section for the in-loop evaluations
    feedback: bool = False          # publish a new weights version after each evaluation
    feedback_rule: dict = field(default_factory=dict)


def config_for(spec: RunSpec) -> Config:
    return Config.model_validate({
        "lake": spec.lake, "seed": spec.seed, "model": spec.model,
        "train": {"out": spec.out, "steps": spec.steps, "seed": spec.seed,
                  "save_every": spec.eval_every, "keep_last": 2,
                  "weights_check_every": max(1, min(spec.eval_every, 10)),
                  "stats_every": max(1, min(spec.eval_every, 10)), "log_every": 10 ** 6, **spec.train},
        "evaluate": {"out": os.path.join(spec.out, "eval"), "run_feedback": spec.feedback, **spec.evaluate},
        "feedback": spec.feedback_rule})


def train_with_evaluations(spec: RunSpec, log: Callable[[str], None] = print,
                           evaluate_fn: Callable[[str, dict], dict] | None = None,
                           benchmark: str | None = None, in_loop: bool = True) -> dict:
    """Train ``spec.steps`` steps, evaluating every ``eval_every`` (and feeding back when asked).
    ``evaluate_fn(lake, checkpoint_row) -> summary`` writes the checkpoint's ``eval_results`` for
    ``benchmark`` (default: ``training.evaluate.evaluate_checkpoint`` on the config's benchmark).
    ``in_loop=False``: train only (checkpoints every ``eval_every`` steps, nothing evaluated).
    Returns the learning curve, the weights switches the trainer made, and the last checkpoint."""
    cfg = config_for(spec)
    benchmark = benchmark or cfg.evaluate.benchmark
    if evaluate_fn is None:
        def evaluate_fn(lake: str, ck: dict) -> dict:
            return ce.evaluate_checkpoint(lake, ck, cfg.evaluate, progress=False)["summary"]
    tr = Trainer(cfg)
    curve, published = [], []
    try:
        ends = list(range(spec.eval_every, spec.steps + 1, spec.eval_every))
        if not ends or ends[-1] != spec.steps:
            ends.append(spec.steps)
        for end in ends:
            tr.fit(end)
            todo, _ = ce.pending_checkpoints(spec.lake, benchmark) if in_loop else ([], [])
            for ck in todo:
                s = evaluate_fn(spec.lake, ck)
                curve.append({"step": ck["step"], "weights_version": ck.get("weights_version"),
                              "loss": tr.last_loss, **s})
                log(f"  step {ck['step']}: loss {tr.last_loss:.4f} overall {s['overall']:.3f} "
                    f"(weights {ck.get('weights_version')})")
            if spec.feedback and end < spec.steps:
                s = publish_next(spec.lake, cfg.feedback.model_copy(update={"benchmark": benchmark}))
                published.append({"after_step": end, "version": s["weights_version"], "rows": s["rows"]})
        last = str(ckpts.live(spec.lake)[-1]["path"])
        switches = [{"after_step": s, "from": a, "to": b} for s, a, b in tr.switches]
    finally:
        tr.close()
    return {"curve": curve, "published": published, "switches": switches, "checkpoint": last,
            "final_loss": tr.last_loss}


@lru_cache(maxsize=2)
def load_ema(path: str, device: str):
    """(EMA model, text encoder) of a checkpoint, loaded once per (path, device)."""
    model, _, text_encoder, _ = load_model(path, ema=True, device=device)
    return model, text_encoder


def heldout_loss(path: str, hw: tuple[int, int], n: int = 8, seed: int = 0, repeats: int = 4,
                 device: str = "cpu") -> dict[str, float]:
    """The model's own objective (flow-matching + prediction loss on masked tokens, EMA weights,
    eval mode: no caption dropout) on ``n`` held-out shapes-world scenes rendered at ``hw`` = (H,
    W), averaged over ``repeats`` seeded mask/noise draws. A continuous signal of how well the
    model handles a size even before it generates anything recognisable."""
    model, text_encoder = load_ema(path, device)
    rng = random.Random(f"heldout/{seed}/{hw}")
    k = -(-16 // min(hw))  # the world's minimum side is 16 px: render larger, box-filter down
    scenes = [sw.sample_scene(rng, hw[1] * k, hw[0] * k) for _ in range(n)]
    imgs = [torch.from_numpy(np.asarray(sw.render(s).resize((hw[1], hw[0]), 4), dtype=np.float32))
            .permute(2, 0, 1) / 127.5 - 1 for s in scenes]  # 4 = PIL BOX
    text = text_encoder.encode([s.caption for s in scenes]).to(device)
    images = pack([x.to(device) for x in imgs], model.tokenizer, 10 ** 9)
    tot: dict[str, float] = {}
    with torch.no_grad():
        for r in range(repeats):
            torch.manual_seed(seed * 1000 + r)
            out = model(images, text, generator=torch.Generator().manual_seed(seed * 1000 + r))
            for k, v in out.items():
                tot[k] = tot.get(k, 0.0) + float(v) / repeats
    return tot
