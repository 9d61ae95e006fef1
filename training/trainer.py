"""The D-JEPA·T2I training loop: one process per rank, CPU or GPU, alone or under torchrun.

    python -m training.trainer --config configs/demo_phase1.yaml            # one process
    torchrun --nproc_per_node 8 -m training.trainer --config configs/phase1.yaml --resume auto

Per step, for each of this rank's micro-batches: the loader hands out a token-budget batch chosen
by the feedback sampler, its image
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
rank's sampler switches at the same step. ``train.global_batch`` splits a step into micro-batches
(training/grad_accum.py); the data stream is global, every rank deciding all micro-batches and
reading its own (training/data.py), so a checkpoint (its files: training/run_checkpoint.py; the
protocol: training/checkpoints.py) resumes on any number of ranks. The lake is reached only
through ``training.lake_io``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist

import djepa_t2i.env  # noqa: F401
from djepa_t2i.cli_args import add_config_arguments, int_at_least, runtime_fault
from djepa_t2i.config import Config, ConfigError, ConfigPaths, load_config, require_dir, require_writable
from model.djepa import build_model
from model.ema import EMA
from model.text_encoder import TextEncoder
from model.tokenizers import build_tokenizer
from training import checkpoints as ckpts
from training import lake_io, run_checkpoint
from training.data import TrainLoader, WeightsWatcher
from training.distributed import broadcast, dist_env, init_distributed, pick_device, wrap
from training.encode_cache import BatchEncoder
from training.feedback_sampler import FeedbackSampler
from training.grad_accum import LossTokens, accumulate, accumulation_steps, seed_micro_batch
from training.packing import TokenBudgetPacker
from training.recipe import compile_blocks, compile_enabled, lr_factor, param_groups, set_fast_math, weight_decay_at

log = logging.getLogger("t2i.train")
STEPS_LOG = "steps.jsonl"  # rank 0's per-step record in train.out: step, keys, sizes, losses, lr
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


# ------------------------------------------------------------------------------ the trainer
class Trainer:
    def __init__(self, cfg: Config, resume: str | None = None):
        self.cfg, t = cfg, cfg.train
        self.rank, self.world, local = dist_env()
        self.device = pick_device(t.device, local)
        init_distributed(self.device)
        self.run_id = t.resolved_run_id()
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
        # fused on CPU too: one kernel over all tensors (its speed-up: docs/benchmarks.md)
        self.opt = torch.optim.AdamW(param_groups(self.raw, t.weight_decay), lr=t.lr, betas=t.betas,
                                     fused=self.device.type in ("cuda", "cpu"))
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: lr_factor(s, t.warmup, t.steps, t.schedule, t.lr_end / t.lr))
        torch.manual_seed(t.seed * 7919 + self.rank)  # per-rank stream for the flow-matching noise
        self.gen = torch.Generator().manual_seed(t.seed * 1000 + self.rank)  # masks, caption drop
        stride = self.tokenizer.stride
        sampler = FeedbackSampler(lake_io.read_index(cfg.lake, t.samples_index), stride=stride, schedule=cfg.schedule.start.model_dump(),
                                  fixed_side=t.fixed_side, seed=t.seed, max_retries=t.max_retries)  # global
        packer = TokenBudgetPacker(sampler, t.token_budget, t.max_image_tokens, stride, t.lookahead)
        encoder = BatchEncoder(self.tokenizer, self.text)
        self.loader = TrainLoader(packer, self.tokenizer, t.max_image_tokens, t.seed, self.rank,
                                  t.num_workers, encoder, self.world, self.accum)
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
        self.window["tokens"]["image"] += tokens
        # the random token drop above max_image_tokens (which tokens survive: images.keep, drawn from
        # the loader's checkpointed token_drop generator, so a resume reproduces them)
        self.window["tokens"]["dropped"] += sum(h * w for b in batches for h, w in b.images.grids) - tokens
        self.window["tokens"]["budget"] += t.token_budget * len(batches)
        self.window["images"]["count"] += sum(len(b.keys) for b in batches)
        self.window_steps += 1
        # keys and sizes of the whole global batch (every rank decides them all), this rank's tokens
        rec = {"step": self.step, "keys": batches[0].step_keys, "sizes": batches[0].step_sizes,
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
            self.loader.rewind()
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
        return run_checkpoint.save(self)

    def register_checkpoint(self, final: Path, step: int, weights_version: str | None, loss: float) -> None:
        ckpts.register(self.cfg.lake, final, self.run_id, step, self.cfg.train.phase, weights_version,
                       loss, self.cfg.model_dump(mode="json"), self.world)

    def load_weights(self, path: Path) -> None:
        """Model and EMA weights only (phase 2 starting from phase 1): optimizer, schedule and
        data stream start fresh."""
        run_checkpoint.load_weights(self, path)

    def load_checkpoint(self, path: Path) -> None:
        run_checkpoint.load(self, path)

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
    except Exception as e:  # a full disk: one line per rank, exit 1 (torchrun names the rank)
        if (fault := runtime_fault(e)) is None:
            raise
        print(f"training.trainer: error: {fault}", file=sys.stderr)
        return 1


def train_main(args: argparse.Namespace) -> int:
    rank = dist_env()[0]
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format=f"%(asctime)s [rank {rank}] %(name)s: %(message)s", stream=sys.stdout,
                        force=True)  # importing prefect (t2i's CLI does) installs a WARNING root handler
    logging.getLogger("training.feedback_sampler").setLevel(logging.INFO)
    resume = args.resume
    if resume is None and int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0:
        resume = "auto"  # torchrun restarted the group after a rank died: continue, never start over
    cfg = checked_config(args.config, args.overrides, resume)
    tr = Trainer(cfg, resume=resume)
    try:
        tr.fit(args.steps)
    finally:
        tr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
