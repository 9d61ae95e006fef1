"""The post-train run: GRPO from an SFT checkpoint, rollouts in the lake, checkpoints as training's.

Each step draws ``prompts_per_step`` prompts from the training pool, samples ``group`` images of
each with the flow head's SDE (``head_steps`` head steps: fewer than evaluation's, as Flow-GRPO
trains with 10 and evaluates with 40; ``ar_steps`` AR steps, default evaluation's), scores them with the reward backends, and takes
``inner_updates`` GRPO steps (training/grpo.py). Every ``eval_every`` steps the policy samples the
held-out prompts as evaluation does (ODE, the checkpoint's recorded settings) and they are scored
by the reward and by the held-out metric; a sample grid is saved. Checkpoints go through
training/checkpoints.py (stage, COMPLETE, register), so ``t2i generate`` and evaluation read them.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from PIL import Image

from djepa_t2i.config import Config, ConfigError, require_exists, resolve_device
from model.ar_rollout import generated, rollout
from model.checkpoint import load_model, save_model
from tasks import shapes_world as sw
from training import checkpoints as ckpts
from training import lake_io
from training.evaluate import benchmark_prompts
from training.generation import Generator, decode, resolve_steps, settings, tensor_to_image
from training.grpo import ar_subset, group_advantages, grpo_update
from training.rewards import load_backend, load_rewards

log = logging.getLogger("t2i.post_train")
HELDOUT_EVERY = 5  # GenEval metadata: every 5th prompt is held out (553 -> 442 train, 111 held out)


def grid_image(images: list[Image.Image], cols: int = 8) -> Image.Image:
    """The images tiled row by row (the sample grid saved at each held-out evaluation)."""
    w, h = images[0].size
    rows = -(-len(images) // cols)
    out = Image.new("RGB", (w * min(cols, len(images)), h * rows), "white")
    for i, im in enumerate(images):
        out.paste(im, ((i % cols) * w, (i // cols) * h))
    return out


def prompt_sets(cfg: Config, w: int, h: int) -> tuple[list[dict], list[dict]]:
    """(training prompts, held-out prompts) of ``evaluate.benchmark``: shapes-geneval draws two
    disjoint seeds of its generator (``post_train.categories`` of its six); GenEval's metadata is
    split, every 5th prompt held out."""
    pt = cfg.post_train
    if cfg.evaluate.benchmark == "geneval":
        prompts = benchmark_prompts(cfg.evaluate)
        return ([p for i, p in enumerate(prompts) if i % HELDOUT_EVERY],
                [p for i, p in enumerate(prompts) if i % HELDOUT_EVERY == 0])
    cats = pt.categories or sw.CATEGORIES
    return ([p for c in cats for p in sw.prompts(c, pt.prompts_per_category, pt.prompt_seed, w, h)],
            [p for c in cats for p in sw.prompts(c, pt.heldout_prompts_per_category, cfg.evaluate.seed, w, h)])


class PostTrainRun:
    """One post-train run over ``cfg.post_train`` (see the module docstring)."""

    def __init__(self, cfg: Config):
        pt = self.pt = cfg.post_train
        if not pt.init_from:
            raise ConfigError("post_train.init_from: give the SFT checkpoint to start from")
        require_exists("post_train.init_from", pt.init_from)
        self.cfg, self.device = cfg, resolve_device(pt.device)
        self.lake = lake_io.checked_lake(cfg)
        self.run_id = pt.run_id or Path(pt.out).name
        self.rewards = load_rewards(pt.rewards, cfg.evaluate)
        self.heldout_fn = load_backend(pt.heldout, cfg.evaluate)
        self.policy, self.tok, self.te, self.meta = load_model(pt.init_from, ema=True, device=self.device)
        self.ref = load_model(pt.init_from, ema=True, device=self.device)[0].requires_grad_(False)
        self.s = settings(self.meta)
        h, w = self.s["size"]
        self.grid = self.tok.grid(h, w)
        self.s = resolve_steps(self.s, self.grid)  # evaluate.steps "auto": the number for this grid
        self.pool, self.heldout = prompt_sets(cfg, w, h)
        self.opt = torch.optim.AdamW([p for p in self.policy.parameters() if p.requires_grad],
                                     lr=pt.lr, weight_decay=0.0)
        self.out = Path(pt.out)
        self.curve: list[dict] = []

    # ------------------------------------------------------------------ one GRPO step
    def step(self, step: int) -> dict:
        pt = self.pt
        n = len(self.pool)
        chosen = [self.pool[(step * pt.prompts_per_step + i) % n] for i in range(pt.prompts_per_step)]
        jobs = [p for p in chosen for _ in range(pt.group)]
        groups = torch.arange(len(chosen)).repeat_interleave(pt.group)
        text = self.te.encode([j["prompt"] for j in jobs])
        ro = rollout(self.policy, text, [self.grid] * len(jobs), steps=pt.ar_steps or self.s["steps"],
                     head_steps=pt.head_steps, cfg=self.s["cfg"], noise=pt.noise,
                     time_shift=self.s["time_shift"], cfg_schedule=self.s["cfg_schedule"],
                     seed=pt.seed * 1_000_003 + step, ode_last=pt.ode_last)
        images = [tensor_to_image(x) for x in decode(self.policy.tokenizer, generated(ro))]
        per, total = self.rewards(images, jobs)
        adv = group_advantages(torch.tensor(total), groups)
        logp = ro.image_log_prob().cpu()
        g = torch.Generator().manual_seed(pt.seed * 1_000_003 + step)
        for _ in range(pt.inner_updates):
            stats = grpo_update(self.policy, self.ref, ro, adv.to(ro.tokens.device), self.opt,
                                clip=pt.clip, beta=pt.beta, grad_clip=pt.grad_clip,
                                steps=ar_subset(len(ro.steps), pt.ar_fraction, g))
        paths = self._save_images("rollouts", step, images)
        rows = [{"run_id": self.run_id, "step": step, "split": "train", "prompt_id": j["id"],
                 "prompt": j["prompt"], "category": j["category"], "group_id": int(groups[i]),
                 "image_index": i % pt.group, "image_path": paths[i], "reward": total[i],
                 "rewards": json.dumps({k: v[i] for k, v in per.items()}),
                 "advantage": float(adv[i]), "kl": float(stats["kl_image"][i]), "logp": float(logp[i]),
                 "metric": None, "created_at": ckpts._now()} for i, j in enumerate(jobs)]
        lake_io.write_rows(self.lake, "rollouts", f"{self.run_id}-s{step:08d}-train", rows)
        return {"step": step, "reward": sum(total) / len(total),
                "reward_std": float(torch.tensor(total).std(unbiased=False)),
                **{k: v for k, v in stats.items() if k != "kl_image"}}

    # ------------------------------------------------------------------ held-out prompts
    def evaluate(self, step: int) -> dict:
        """The held-out prompts sampled as evaluation samples (the recorded settings, the ODE):
        reward and held-out metric side by side, and the sample grid."""
        gen = Generator(self.policy, self.tok, self.te, self.meta, self.device)
        images = gen([p["prompt"] for p in self.heldout], self.s, seed=self.cfg.evaluate.seed)
        per, total = self.rewards(images, self.heldout)
        metric = [float(v) for v in self.heldout_fn(images, self.heldout)]
        paths = self._save_images("heldout", step, images)
        grid_image(images).save(self.out / "heldout" / f"grid_{step:08d}.png")
        rows = [{"run_id": self.run_id, "step": step, "split": "heldout", "prompt_id": p["id"],
                 "prompt": p["prompt"], "category": p["category"], "group_id": None,
                 "image_index": 0, "image_path": paths[i], "reward": total[i],
                 "rewards": json.dumps({k: v[i] for k, v in per.items()}), "advantage": None,
                 "kl": None, "logp": None, "metric": metric[i], "created_at": ckpts._now()}
                for i, p in enumerate(self.heldout)]
        lake_io.write_rows(self.lake, "rollouts", f"{self.run_id}-s{step:08d}-heldout", rows)
        return {"step": step, "heldout_reward": sum(total) / len(total),
                f"heldout_{self.pt.heldout}": sum(metric) / len(metric)}

    def _save_images(self, split: str, step: int, images: list[Image.Image]) -> list[str]:
        d = self.out / split / f"step_{step:08d}"
        d.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, im in enumerate(images):
            im.save(d / f"{i:04d}.png")
            paths.append(str((d / f"{i:04d}.png").resolve()))
        return paths

    # ------------------------------------------------------------------ checkpoints
    def save(self, step: int, loss: float) -> Path:
        """A checkpoint in training's format (weights = the policy; no EMA file, so loading with
        ema=True reads the policy itself) registered in the lake with phase 'post-train'."""
        final = ckpts.final_dir(str(self.out), step)
        stage = ckpts.stage_dir(final)
        meta = {**self.meta, "step": step, "run_id": self.run_id, "phase": "post-train",
                "loss": loss, "init_from": str(self.pt.init_from),
                "post_train": self.pt.model_dump(mode="json")}
        meta.pop("model", None)  # write_meta records the network's own
        save_model(str(stage), self.policy, None, meta)
        ckpts.commit(stage, final, step, 1)
        ckpts.register(self.lake, final, self.run_id, step, "post-train", meta.get("weights_version"),
                       loss, self.cfg.model_dump(mode="json"), 1)
        return final

    def run(self) -> list[dict]:
        pt = self.pt
        ckpts.clean_stale_stages(str(self.out))
        for step in range(pt.steps + 1):
            rec = {"step": step}  # the policy after `step` updates
            if step % pt.eval_every == 0 or step == pt.steps:
                rec.update(self.evaluate(step))
            if step and (step % pt.save_every == 0 or step == pt.steps):
                rec["checkpoint"] = str(self.save(step, self.curve[-1].get("loss", float("nan"))))
            if step < pt.steps:
                rec.update(self.step(step))
            log.info("post-train %s", {k: round(v, 4) if isinstance(v, float) else v for k, v in rec.items()})
            self.curve.append(rec)
        return self.curve


def post_train(cfg: Config) -> list[dict]:
    """Run ``cfg.post_train``; returns one record per step (reward, KL, held-out metric)."""
    return PostTrainRun(cfg).run()
