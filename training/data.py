"""The training data path: index -> feedback sampler -> token-budget packer -> decoded, packed batch.

Decisions (which sample, at which size) are made in the main process from the index alone; only
accepted samples are read (by byte range) and decoded, in a thread pool that preserves order. The
stream is therefore a pure function of (seed, state) however many decode workers run. With
``workers > 0`` the next batch is decoded while the current one trains; the state returned by
:meth:`TrainLoader.state_dict` is the one *before* the first batch not yet handed out, so a
checkpoint never skips or repeats the prefetched batch.
"""
from __future__ import annotations

import copy
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import torch

from djepa_t2i.config import Schedule
from model.batch import PackedImages
from model.text_encoder import TextStates
from model.tokenizers import pack_tokens
from training import lake_io
from training.encode_cache import BatchEncoder
from training.feedback_sampler import Decision, FeedbackSampler
from training.packing import TokenBudgetPacker


@dataclass
class TrainBatch:
    images: PackedImages
    captions: list[str]
    keys: list[str]
    sizes: list[tuple[int, int]]  # (out_h, out_w) per image
    tokens: int                   # image tokens in the batch (after token drop)
    text: TextStates | None = None  # host states of the captions, when the loader has a text encoder
    step_keys: list[str] | None = None  # a step's first micro-batch: the keys of all ranks' ones
    step_sizes: list[tuple[int, int]] | None = None


class WeightsWatcher:
    """Polls ``CURRENT``; ``apply`` turns a version into the sampler's targets and the
    resolution trunc_norm of ``stage`` (phase 2's ``start`` or ``final``). With no live version,
    or one without a ``stage`` row, the trunc_norm is the config's ``schedule.<stage>``: the
    step-based switch (``train.final_schedule_at``) moves the schedule with or without weights."""

    def __init__(self, lake: str, schedule: Schedule):
        self.lake, self.schedule = lake, schedule

    def poll(self) -> str | None:
        return lake_io.current_weights_version(self.lake)

    def apply(self, sampler: FeedbackSampler, version: str | None, stage: str) -> None:
        configured = getattr(self.schedule, stage).model_dump()
        if version is None:
            sampler.switch_weights(None, {}, configured)
            return
        targets, live = lake_io.weights_targets(self.lake, version, stage)
        sampler.switch_weights(version, targets, live or configured)


class TrainLoader:
    """``encoder``: how a decision becomes image tokens and text states (training/encode_cache.py:
    the cache beside the shards, else the tokenizer and text encoder); run in the ``workers``
    threads with the decode, so the frozen encoders stay out of the training step.

    One global stream for all ranks: every rank runs the same sampler and packer over the whole
    index and decides all ``world x accum`` micro-batches of a step (decisions are cheap: the
    index alone), keeps its own block ``[rank x accum, (rank + 1) x accum)`` and reads and
    decodes only those. The stream's state is therefore the same on every rank at a step
    boundary and does not depend on the number of ranks: a checkpoint written by N ranks
    resumes on M with the same global sequence of samples (:meth:`stream_state`)."""

    def __init__(self, packer: TokenBudgetPacker, tokenizer, max_image_tokens: int, seed: int,
                 rank: int = 0, workers: int = 0, encoder: BatchEncoder | None = None,
                 world: int = 1, accum: int = 1):
        self.packer, self.tokenizer, self.cap = packer, tokenizer, max_image_tokens
        self.encoder = encoder or BatchEncoder(tokenizer, use_cache=False)
        self.gen = torch.Generator().manual_seed(seed * 1000 + rank)  # random token drop
        self.rank, self.world, self.accum = rank, world, accum
        self.pool = ThreadPoolExecutor(workers) if workers > 0 else None
        self._ahead: list[_Pending] = []

    @property
    def sampler(self) -> FeedbackSampler:
        return self.packer.sampler

    def _schedule_step(self) -> None:
        """Decide every micro-batch of the next step; queue this rank's own."""
        snap = copy.deepcopy(self.packer.state_dict())
        drop = self.gen.get_state()
        # the sampler's stats window must count the batches handed out, not those decided ahead:
        # else batch_stats depend on prefetching, and a resume counts the prefetched batch twice
        win = self.sampler.pop_window()
        steps, mine = [], range(self.rank * self.accum, (self.rank + 1) * self.accum)
        for j in range(self.world * self.accum):
            decisions = self.packer.next_batch()
            delta = self.sampler.pop_window()  # a micro-batch's discards count for its rank
            steps.append(decisions)
            if j in mine:
                self._ahead.append(_Pending(decisions, delta))
        self.sampler.window = win
        first = self._ahead[-self.accum]
        first.stream, first.token_drop = snap, drop
        first.step_keys = [d.key for ds in steps for d in ds]
        first.step_sizes = [(d.out_h, d.out_w) for ds in steps for d in ds]

    def _submit(self, p: _Pending) -> None:
        if self.pool and p.futures is None:
            p.futures = [self.pool.submit(self.encoder.tokens, d) for d in p.decisions] + \
                [self.pool.submit(self.encoder.text, p.decisions)]

    def next(self) -> TrainBatch:
        if not self._ahead:
            self._schedule_step()
        p = self._ahead.pop(0)
        for kind, counts in p.delta.items():
            self.sampler.window[kind].update(counts)
        self._submit(p)
        if p.futures:
            *tokens, text = [f.result() for f in p.futures]
        else:
            tokens, text = [self.encoder.tokens(d) for d in p.decisions], self.encoder.text(p.decisions)
        packed = self._pack(tokens, p.decisions)
        if self.pool:  # decode and encode the next micro-batch while this one trains
            if not self._ahead:
                self._schedule_step()
            self._submit(self._ahead[0])
        ds = p.decisions
        return TrainBatch(packed, [d.caption for d in ds], [d.key for d in ds], [(d.out_h, d.out_w) for d in ds],
                          int(packed.cu_seqlens[-1]), text, p.step_keys, p.step_sizes)

    def _pack(self, tokens: list[torch.Tensor], decisions: list[Decision]) -> PackedImages:
        grids = [self.tokenizer.grid(d.out_h, d.out_w) for d in decisions]
        return pack_tokens(tokens, grids, self.cap, self.gen)

    def stream_state(self) -> dict:
        """The global stream at the start of the first step not yet handed out (a prefetched
        step is replayed): the same on every rank, loadable on any number of ranks."""
        return copy.deepcopy(self._ahead[0].stream if self._ahead else self.packer.state_dict())

    def state_dict(self) -> dict:
        """The stream and this rank's token-drop RNG, before the first step not yet handed out."""
        if self._ahead and self._ahead[0].stream is None:
            raise RuntimeError("loader state asked for in the middle of a step")
        drop = self._ahead[0].token_drop if self._ahead else self.gen.get_state()
        return {"packer": self.stream_state(), "token_drop": drop.clone()}

    def rewind(self) -> None:
        """Forget the steps decided ahead (by the decode threads' prefetch) and return the stream
        to the state before them: a weights switch must apply to every step not yet handed out,
        as in a run without threads or one resumed at the switch."""
        if self._ahead:
            self.load_state_dict(self.state_dict())

    def load_state_dict(self, s: dict) -> None:
        """``s["token_drop"]`` may be absent: a rank that did not exist in the checkpoint's run."""
        self._ahead.clear()
        self.packer.load_state_dict(s["packer"])
        if "token_drop" in s:
            self.gen.set_state(s["token_drop"])

    def close(self) -> None:
        if self.pool:
            self.pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class _Pending:
    """A micro-batch decided but not handed out; a step's first carries the stream state from
    before the step and the whole step's keys and sizes (all ranks')."""
    decisions: list[Decision]
    delta: dict
    futures: list[Future] | None = None
    stream: dict | None = None
    token_drop: torch.Tensor | None = None
    step_keys: list[str] | None = None
    step_sizes: list[tuple[int, int]] | None = None
