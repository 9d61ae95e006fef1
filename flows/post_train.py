"""post-train flow: GRPO on the flow head from an SFT checkpoint (docs/post-training.md).

    t2i post-train --config configs/demo_phase2.yaml --set post_train.init_from=CKPT [--no-prefect]

Writes the lake's ``rollouts`` table (one partition per step and split; the ``post_train_curve``
view: reward, KL and held-out metric per step) and checkpoints in training's format under
``post_train.out``, which ``t2i generate`` and ``t2i evaluate`` read unchanged.
"""
from __future__ import annotations

import argparse

import djepa_t2i.env  # noqa: F401
from djepa_t2i.cli_args import add_flow_arguments
from djepa_t2i.config import ConfigPaths, load_config, require_exists
from flows.step import finish, run_lake_step
from prefect import flow, task

from training.grpo_run import post_train
from warehouse.lake import checked_lake


def _summary(curve: list[dict]) -> dict:
    """First and last held-out metric and reward, steps run, the last checkpoint."""
    held = [r for r in curve if any(k.startswith("heldout_") for k in r)]
    keys = [k for k in held[0] if k.startswith("heldout_")] if held else []
    ckpt = [r["checkpoint"] for r in curve if "checkpoint" in r]
    return {"steps": len(curve) - 1, "checkpoint": ckpt[-1] if ckpt else None,
            **{f"{k}_first": held[0][k] for k in keys}, **{f"{k}_last": held[-1][k] for k in keys},
            "reward_first": curve[0].get("reward"), "reward_last": curve[-2].get("reward") if len(curve) > 1 else None}


@task(name="grpo")
def _grpo(cfg) -> list[dict]:
    return post_train(cfg)


@flow(name="post-train")
def post_train_flow(lake: str | None = None, config: ConfigPaths = None,
                    overrides: list[str] | None = None) -> dict:
    cfg = load_config(config, [*(overrides or []), *([f"lake={lake}"] if lake else [])])
    checked_lake(cfg)
    if cfg.post_train.init_from:
        require_exists("post_train.init_from", cfg.post_train.init_from)
    return finish("post-train", cfg.lake, _summary(_grpo(cfg)))


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_flow_arguments(p)


def run(args) -> int:
    return run_lake_step(args, lambda cfg, lake: _summary(post_train(cfg.model_copy(update={"lake": lake}))),
                         lambda lake: post_train_flow(lake, args.config, args.overrides))
