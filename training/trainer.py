"""The D-JEPA·T2I training loop: one process per rank, CPU or GPU, alone or under torchrun.

    python -m training.trainer --config configs/demo_phase1.yaml            # one process
    torchrun --nproc_per_node 8 -m training.trainer --config configs/phase1.yaml --resume auto

Per step: the loader hands out a token-budget batch chosen by the feedback sampler, its image
tokens and caption states read from the encode cache beside the shards or encoded by the frozen
encoders in the loader's workers (training/encode_cache.py); D-JEPA·T2I returns its losses; AdamW (warmup, cosine or
constant), gradient clipping, then the target-encoder EMA and the evaluation EMA. DDP by default
(gloo on CPU, NCCL on GPU), FSDP2 ``fully_shard`` per block with ``train.fsdp``; bf16 autocast
on GPU; an FSDP run saves and loads its state sharded (``torch.distributed.checkpoint``).
The step never waits on the device: its losses and grad norm stay device tensors until
:meth:`Trainer.flush` reads all pending ones at once (every ``log_every`` / ``stats_every`` /
``save_every`` step and at the end); TF32 is on for CUDA and ``train.compile`` (default: on for
CUDA) compiles every transformer block.

Every ``stats_every`` steps each rank writes its batch statistics to the lake; every
``weights_check_every`` steps rank 0 reads the live weights version and broadcasts it, and every
rank's sampler switches at the same step. A checkpoint is one directory: the model checkpoint
(``model.safetensors``, ``ema.safetensors``, ``meta.json``: loadable by ``model.checkpoint``),
``trainer.pt`` (optimizer, scheduler, step) and ``rank-NNN.pt`` per rank (sampler + loader + RNG
state), all loadable with ``torch.load(weights_only=True)``; the protocol (stage, ``COMPLETE``,
rename, register, prune) is ``training.checkpoints``. The lake is reached only through
``training.lake_io``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import shutil
import sys
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist

import djepa_t2i.env  # noqa: F401
from djepa_t2i.config import Config, ConfigError, ConfigPaths, load_config, require_dir, require_writable
from training import checkpoints as ckpts
from training import lake_io
from training.distributed import (barrier, broadcast, dist_env, init_distributed, pick_device,
                                  rng_state, set_rng_state, wrap)
from training.grad_accum import LossTokens, accumulate, accumulation_steps, seed_micro_batch

log = logging.getLogger("t2i.train")
STEPS_LOG = "steps.jsonl"  # rank 0's per-step record in train.out: step, keys, sizes, losses, lr


# ------------------------------------------------------------------------------ schedule
def lr_factor(step: int, warmup: int, total: int, schedule: str, end: float = 0.0) -> float:
    """Linear warmup, then constant or cosine decay to ``end`` (a fraction of the peak) at
    ``total``: the paper's phase 1 is cosine 1e-5 -> 1e-6 after 100k warm-up steps (end 0.1),
    phase 2 a constant 5e-5 (§3.1)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    t = min(max(step - warmup, 0) / max(total - warmup, 1), 1.0)
    return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * t))


def weight_decay_at(step: int, total: int, start: float, end: float | None) -> float:
    """D-JEPA App. B: weight decay ramped linearly from 0.02 to 0.2 over training."""
    if end is None:
        return start
    return start + (end - start) * min(step / max(total, 1), 1.0)


NO_DECAY = ("pred_proj.", "head.")  # D-JEPA App. B: no decay on u_theta, eps_theta (target: frozen)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """[decayed, not decayed] trainable parameters: the prediction MLP and the token head are
    never decayed; the target encoder has no gradient and is not in either group."""
    decay, keep = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (keep if name.startswith(NO_DECAY) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay, "ramp": True},
            {"params": keep, "weight_decay": 0.0, "ramp": False}]


# ------------------------------------------------------------------------------ run state
def _truncate_steps_log(path: Path, step: int) -> None:
    """Keep the records of steps <= ``step`` (the checkpoint resumed from; 0 for a fresh start), so
    a resumed run appends after them and no step appears twice; a torn last line is dropped."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(ln + "\n" for ln in keep))
    os.replace(tmp, path)


# ------------------------------------------------------------------------------ speed
def set_fast_math(device: torch.device) -> None:
    """TF32 for the float32 matmuls and convolutions left outside bf16 autocast (the encoders,
    the optimizer's reductions): ~8x the fp32 tensor-core rate on Ampere and later."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def compile_enabled(flag: bool | None, device: torch.device) -> bool:
    """``train.compile``: None means on for CUDA, off on CPU."""
    return device.type == "cuda" if flag is None else flag


def compile_blocks(model: torch.nn.Module) -> None:
    """``torch.compile`` every transformer block in place (context, predictor, target): one graph
    per block with symbolic lengths, so a new packed batch re-uses it (no graph break in a block:
    tests/test_model_attention.py). Blocks, not the whole model, because the per-batch layout
    (masks, permutations, rotary tables) is host work that would only split the graph."""
    from model.blocks import MultimodalBlock
    for m in model.modules():
        if isinstance(m, MultimodalBlock):
            m.compile(dynamic=None)


# ------------------------------------------------------------------------------ the trainer
class Trainer:
    def __init__(self, cfg: Config, resume: str | None = None):
        from model.djepa import build_model
        from model.ema import EMA
        from model.text_encoder import TextEncoder
        from model.tokenizers import build_tokenizer
        from training.data import TrainLoader, WeightsWatcher
        from training.encode_cache import BatchEncoder
        from training.feedback_sampler import FeedbackSampler
        from training.packing import TokenBudgetPacker

        self.cfg, t = cfg, cfg.train
        self.rank, self.world, local = dist_env()
        self.device = pick_device(t.device, local)
        init_distributed(self.device)
        self.run_id = t.run_id or Path(t.out).resolve().name
        self.out = t.out
        torch.manual_seed(t.seed)  # identical initial weights on every rank
        self.tokenizer = build_tokenizer(cfg.model)
        self.accum = accumulation_steps(t, self.tokenizer.stride, self.world)  # micro-batches per rank and step
        self.text = TextEncoder.from_config(cfg.model)
        self.raw = build_model(cfg.model, self.text.dim, self.tokenizer).to(self.device)
        self.raw.set_grad_checkpointing(t.grad_checkpointing)
        self.loss_tokens = LossTokens(self.raw) if t.global_batch is not None else None
        set_fast_math(self.device)
        if compile_enabled(t.compile, self.device):
            compile_blocks(self.raw)
        self.model = wrap(self.raw, self.device, t.fsdp, accumulate=self.accum > 1)
        self.ema = EMA(self.raw)  # after wrapping: under FSDP the EMA shadows are shards too
        # fused on CPU too: one kernel over all tensors, 2.0 vs 8.4 ms per step for djepa_tiny's 148
        # tensors on 2 cores (2026-12-03); make demo's phase 1 took 307 instead of 379 s (3,600 steps)
        self.opt = torch.optim.AdamW(param_groups(self.raw, t.weight_decay), lr=t.lr, betas=t.betas,
                                     fused=self.device.type in ("cuda", "cpu"))
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: lr_factor(s, t.warmup, t.steps, t.schedule, t.lr_end / t.lr))
        torch.manual_seed(t.seed * 7919 + self.rank)  # per-rank stream for the flow-matching noise
        self.gen = torch.Generator().manual_seed(t.seed * 1000 + self.rank)  # masks, caption drop
        stride = self.tokenizer.stride
        sampler = FeedbackSampler(lake_io.read_index(cfg.lake), stride=stride, schedule=cfg.schedule.start.model_dump(),
                                  fixed_side=t.fixed_side, seed=t.seed, rank=self.rank,
                                  world_size=self.world, max_retries=t.max_retries)
        packer = TokenBudgetPacker(sampler, t.token_budget, t.max_image_tokens, stride, t.lookahead)
        encoder = BatchEncoder(self.tokenizer, self.text)
        self.loader = TrainLoader(packer, self.tokenizer, t.max_image_tokens, t.seed, self.rank,
                                  t.num_workers, encoder)
        self.watcher = WeightsWatcher(cfg.lake, cfg.schedule)
        self.step = 0
        self.window: dict[str, Counter] = {"tokens": Counter(), "loss": Counter(), "images": Counter()}
        self.window_steps = 0
        self.last_loss = float("nan")
        self.pending: list[dict] = []  # step records whose device-side values are not read yet
        self.switches: list[tuple[int, str | None, str | None]] = []  # (after step, old, new)
        ck = ckpts.resolve_resume(resume, t.out)
        if self.rank == 0:
            ckpts.clean_stale_stages(t.out)
        if ck is not None:
            self.load_checkpoint(ck)
        else:
            if t.init_from:
                self.load_weights(Path(t.init_from))
            self.watcher.apply(sampler, broadcast(self.watcher.poll() if self.rank == 0 else None),
                               self.schedule_stage(self.step))
        self.stage = self.schedule_stage(self.step)
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                         if self.device.type == "cuda" and t.precision in ("auto", "bf16") else nullcontext())
        self.steps_log = Path(t.out) / STEPS_LOG if self.rank == 0 else None
        if self.steps_log is not None:
            self.steps_log.parent.mkdir(parents=True, exist_ok=True)
            _truncate_steps_log(self.steps_log, self.step)

    @property
    def sampler(self):
        return self.loader.sampler

    # -------------------------------------------------------------------------- one step
    def train_step(self) -> dict:
        """One optimizer step: this rank's ``accum`` micro-batches (one without ``global_batch``),
        then weight decay, clipping, AdamW, the schedule and both EMAs."""
        t = self.cfg.train
        if self.step % t.weights_check_every == 0 and self.step > 0:
            self._check_weights()
        batches = []
        if self.loss_tokens is None:  # one micro-batch per rank, its mean loss (the ranks average)
            batches.append(self.loader.next())
            out = self._forward(batches[0])
            self.opt.zero_grad(set_to_none=True)
            out["loss"].backward()
        else:
            self.opt.zero_grad(set_to_none=True)
            out = accumulate(self.model, self.loss_tokens, self.accum,
                             lambda i: self._forward(self._micro_batch(i, batches)), self.world, self.device)
        wd = weight_decay_at(self.step, t.steps, t.weight_decay, t.weight_decay_end)
        for g in self.opt.param_groups:
            if g["ramp"]:
                g["weight_decay"] = wd
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip) if t.grad_clip > 0 \
            else torch.zeros((), device=self.device)
        self.opt.step()
        self.sched.step()
        self.raw.update_ema(t.target_ema)
        self.ema.update(self.raw, t.ema)
        self.step += 1
        tokens = sum(b.tokens for b in batches)
        keys = [k for b in batches for k in b.keys]
        self.window["tokens"]["image"] += tokens
        self.window["tokens"]["budget"] += t.token_budget * len(batches)
        self.window["images"]["count"] += len(keys)
        self.window_steps += 1
        rec = {"step": self.step, "keys": keys, "sizes": [s for b in batches for s in b.sizes],
               "tokens": tokens, "lr": self.sched.get_last_lr()[0],
               "grad_norm": (gnorm.full_tensor() if hasattr(gnorm, "full_tensor") else gnorm).detach(),
               **{k: v.detach() for k, v in out.items()}}
        self.pending.append(rec)
        return rec

    def _micro_batch(self, i: int, batches: list):
        """Micro-batch ``i`` of this rank's step, its randomness seeded from its global index (the
        update does not depend on how the global batch is split: training/grad_accum.py)."""
        index = (self.step * self.world + self.rank) * self.accum + i
        seed_micro_batch(self.cfg.train.seed, index, self.gen, self.loader.gen)
        batches.append(self.loader.next())
        return batches[-1]

    def _forward(self, batch) -> dict[str, torch.Tensor]:
        with self.autocast:
            return self.model(batch.images.to(self.device), batch.text.to(self.device), generator=self.gen)

    def flush(self) -> None:
        """Read the pending steps' losses and grad norms off the device in ONE transfer (the step
        itself never waits on the device), turn them into floats in place (the records ``fit``
        returned see them), add them to the statistics window and append them to the step log.
        ``fit`` calls it every ``log_every`` / ``stats_every`` steps, before a checkpoint and at
        the end, so the log and the lake see exactly what a per-step read would have written."""
        if not self.pending:
            return
        names = [k for k in self.pending[0] if k == "grad_norm" or k.startswith("loss")]
        vals = torch.stack([r[k].float() for r in self.pending for k in names]).tolist()
        lines = []
        for i, rec in enumerate(self.pending):
            rec.update(zip(names, vals[i * len(names):(i + 1) * len(names)]))
            for k in names:
                self.window["loss"][k] += rec[k]
            lines.append(json.dumps(rec) + "\n")
        self.last_loss = self.pending[-1]["loss"]
        self.pending = []
        if self.steps_log is not None:
            with open(self.steps_log, "a") as f:  # one write per line: a kill leaves at most a torn last line
                f.writelines(lines)

    def _check_weights(self) -> None:
        v = broadcast(self.watcher.poll() if self.rank == 0 else None)
        stage = self.schedule_stage(self.step)
        if v != self.sampler.weights_version or stage != self.stage:
            self.stage = stage
            log.info("step %d: sampling weights %s -> %s (resolution %s)", self.step,
                     self.sampler.weights_version, v, stage)
            self.switches.append((self.step, self.sampler.weights_version, v))
            self.watcher.apply(self.sampler, v, stage)

    def schedule_stage(self, step: int) -> str:
        """Phase 2's trunc_norm in force at ``step``: ``final`` from ``train.final_schedule_at``
        on, else ``start`` (feedback may also advance ``start`` itself to the final parameters)."""
        at = self.cfg.train.final_schedule_at
        return "final" if at is not None and step >= at else "start"

    # -------------------------------------------------------------------------- stats
    def write_stats(self) -> None:
        """This rank's window of batch statistics as one lake partition (run-rank-step)."""
        now = dt.datetime.now(dt.timezone.utc)
        ver = self.sampler.weights_version
        n = max(self.window_steps, 1)
        rows = []
        for kind, c in self.sampler.pop_window().items():
            rows += [{"kind": kind, "value": k, "count": float(v)} for k, v in sorted(c.items())]
        rows += [{"kind": "loss", "value": k, "count": v / n} for k, v in sorted(self.window["loss"].items())]
        rows += [{"kind": "tokens", "value": k, "count": float(v)} for k, v in sorted(self.window["tokens"].items())]
        rows += [{"kind": "images", "value": "count", "count": float(self.window["images"]["count"])},
                 {"kind": "steps", "value": "count", "count": float(self.window_steps)},
                 {"kind": "lr", "value": "lr", "count": float(self.sched.get_last_lr()[0])}]
        for r in rows:
            r.update(run_id=self.run_id, rank=self.rank, step=self.step, weights_version=ver, created_at=now)
        lake_io.write_rows(self.cfg.lake, "batch_stats", f"{self.run_id}-r{self.rank:03d}-s{self.step:08d}", rows)
        self.window = {k: Counter() for k in self.window}
        self.window_steps = 0

    # -------------------------------------------------------------------------- checkpoints
    @property
    def sharded(self) -> bool:
        return self.cfg.train.fsdp and dist.is_initialized()

    def save_checkpoint(self) -> Path:
        from model.checkpoint import save_model, write_meta
        t = self.cfg.train
        final = ckpts.final_dir(self.out, self.step)
        stage = ckpts.stage_dir(final)
        meta = {"step": self.step, "run_id": self.run_id, "phase": t.phase,
                "weights_version": self.sampler.weights_version, "world_size": self.world,
                "loss": self.last_loss, "text_encoder": self.text.describe(),
                "config": self.cfg.model_dump(mode="json")}
        trainer_state = {"scheduler": self.sched.state_dict(), "step": self.step, "world_size": self.world}
        if self.rank == 0:
            shutil.rmtree(stage, ignore_errors=True)
        if self.sharded:
            barrier()
            ckpts.save_sharded(stage, self.model, self.opt, self.ema.state_dict())
            if self.rank == 0:
                write_meta(stage, self.raw, meta)
                torch.save(trainer_state, stage / "trainer.pt")
        elif self.rank == 0:
            save_model(str(stage), self.raw, self.ema.state_dict(), meta)
            torch.save({"optimizer": self.opt.state_dict(), **trainer_state}, stage / "trainer.pt")
        barrier()
        torch.save({"loader": self.loader.state_dict(), "rng": rng_state(self.device),
                    "model_rng": self.gen.get_state(), "step": self.step, "rank": self.rank},
                   stage / f"rank-{self.rank:03d}.pt")
        barrier()
        if self.rank == 0:
            ckpts.commit(stage, final, self.step, self.world)
            self._register(final, self.step, self.sampler.weights_version, self.last_loss)
            ckpts.prune(self.cfg.lake, self.out, self.run_id, t.keep_last)
            log.info("step %d: checkpoint %s", self.step, final)
        barrier()
        return final

    def _register(self, final: Path, step: int, weights_version: str | None, loss: float) -> None:
        ckpts.register(self.cfg.lake, final, self.run_id, step, self.cfg.train.phase, weights_version,
                       loss, self.cfg.model_dump(mode="json"), self.world)

    def load_weights(self, path: Path) -> None:
        """Model and EMA weights only (phase 2 starting from phase 1): optimizer, schedule and
        data stream start fresh."""
        from safetensors.torch import load_file
        self.raw.load_state_dict(load_file(str(path / "model.safetensors")), strict=True)
        if (path / "ema.safetensors").exists():
            self.ema.load_state_dict({k: v.to(self.device) for k, v in load_file(str(path / "ema.safetensors")).items()})
        log.info("initialised weights from %s", path)

    def load_checkpoint(self, path: Path) -> None:
        from safetensors.torch import load_file
        tr = torch.load(path / "trainer.pt", weights_only=True)
        if tr["world_size"] != self.world:
            raise ValueError(f"{path} was written by {tr['world_size']} ranks; this run has {self.world}. "
                             "The data stream is per rank: resume with the same world size.")
        if self.sharded:
            ckpts.load_sharded(path, self.model, self.opt, self.ema.state_dict())
        else:
            self.raw.load_state_dict(load_file(str(path / "model.safetensors")), strict=True)
            self.opt.load_state_dict(tr["optimizer"])
            if (path / "ema.safetensors").exists():
                self.ema.load_state_dict({k: v.to(self.device)
                                          for k, v in load_file(str(path / "ema.safetensors")).items()})
        self.sched.load_state_dict(tr["scheduler"])
        rs = torch.load(path / f"rank-{self.rank:03d}.pt", weights_only=True)
        self.loader.load_state_dict(rs["loader"])
        set_rng_state(rs["rng"], self.device)
        self.gen.set_state(rs["model_rng"])
        self.step = tr["step"]
        if self.rank == 0 and not ckpts.is_registered(self.cfg.lake, self.run_id, self.step):
            # the run was killed between the rename and the registration: the dir is live, record it
            meta = json.loads((path / "meta.json").read_text())
            self._register(path, self.step, meta.get("weights_version"), meta.get("loss", float("nan")))
        log.info("resumed from %s at step %d (weights %s)", path, self.step, self.sampler.weights_version)

    # -------------------------------------------------------------------------- the loop
    def fit(self, steps: int | None = None, on_step=None) -> list[dict]:
        t = self.cfg.train
        end = steps if steps is not None else t.steps
        history = []
        t0, tok0 = time.perf_counter(), 0
        self.model.train()
        while self.step < end:
            rec = self.train_step()
            history.append(rec)
            tok0 += rec["tokens"]
            if on_step:
                on_step(rec)
            if self.step % t.log_every == 0 or self.step % t.stats_every == 0 \
                    or self.step % t.save_every == 0 or self.step == end:
                self.flush()
            if self.step % t.log_every == 0 and self.rank == 0:
                dtm = time.perf_counter() - t0
                log.info("step %d loss %.4f (head %.4f pred %.4f) lr %.2e %.0f img-tok/s/rank", self.step,
                         rec["loss"], rec["loss_head"], rec["loss_pred"], rec["lr"], tok0 / max(dtm, 1e-9))
                t0, tok0 = time.perf_counter(), 0
            if self.step % t.stats_every == 0:
                self.write_stats()
            if self.step % t.save_every == 0 or self.step == end:
                self.save_checkpoint()
        return history

    def close(self) -> None:
        self.loader.close()
        if dist.is_initialized():
            dist.destroy_process_group()


# ------------------------------------------------------------------------------ entry point
def add_arguments(p: argparse.ArgumentParser) -> None:
    from djepa_t2i.cli_args import add_config_arguments, int_at_least
    add_config_arguments(p)
    p.add_argument("--resume", help="auto (latest complete checkpoint in train.out) or a checkpoint dir")
    p.add_argument("--steps", type=int_at_least(1), help="stop at this step (default train.steps)")


def checked_config(config_path: ConfigPaths, overrides: list[str] | None,
                   resume: str | None = None) -> Config:
    """The validated config with the paths a run needs: the lake (its samples index; it receives
    batch stats and checkpoint rows), a writable ``train.out``, an existing ``init_from`` and a
    complete ``--resume`` checkpoint of the recorded sizes (the rank verifies its hashes once)."""
    cfg = load_config(config_path, overrides)
    if resume and resume != "auto":
        try:
            ckpts.resolve_resume(resume, cfg.train.out, hashes=False)
        except (FileNotFoundError, ValueError) as e:
            raise ConfigError(str(e)) from None
    lake_io.checked_lake(cfg)
    require_writable("train.out", cfg.train.out)
    if cfg.train.init_from:
        require_dir("train.init_from", cfg.train.init_from)
    return cfg


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="training.trainer", description=__doc__.split("\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return train_main(args)
    except ConfigError as e:  # under torchrun too: one line per rank, exit 2
        print(f"training.trainer: error: {e}", file=sys.stderr)
        return 2


def train_main(args: argparse.Namespace) -> int:
    rank = dist_env()[0]
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"%(asctime)s [rank {rank}] %(name)s: %(message)s", stream=sys.stdout,
                        force=True)  # importing prefect (t2i's CLI does) installs a WARNING root handler
    logging.getLogger("training.feedback_sampler").setLevel(logging.INFO)
    cfg = checked_config(args.config, args.overrides, args.resume)
    tr = Trainer(cfg, resume=args.resume)
    try:
        tr.fit(args.steps)
    finally:
        tr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
