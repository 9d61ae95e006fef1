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
import io
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from djepa_t2i.config import Schedule
from model.batch import PackedImages
from model.text_encoder import TextStates
from model.tokenizers import pack_tokens
from tasks.shard_format import read_range
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


def load_image(d: Decision) -> torch.Tensor:
    """Read one accepted sample by its byte range, downscale to (out_h, out_w), map to [-1, 1]."""
    im = Image.open(io.BytesIO(read_range(d.tar, d.offset, d.size)))
    if d.crop:  # phase 1 (Supp. §7): short side to the target, then a centre crop
        s = d.out_w / min(d.width, d.height)
        rw, rh = max(d.out_w, round(d.width * s)), max(d.out_h, round(d.height * s))
    else:
        rw, rh = d.out_w, d.out_h
    im.draft("RGB", (rw, rh))  # JPEG: decode at the smallest scale >= the target
    im = im.convert("RGB")
    if im.size != (rw, rh):
        im = im.resize((rw, rh), Image.Resampling.BICUBIC, reducing_gap=3.0)
    if d.crop:
        x0, y0 = (rw - d.out_w) // 2, (rh - d.out_h) // 2
        im = im.crop((x0, y0, x0 + d.out_w, y0 + d.out_h))
    x = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)
    return x.float().div_(127.5).sub_(1.0)


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
    threads with the decode, so the frozen encoders stay out of the training step."""

    def __init__(self, packer: TokenBudgetPacker, tokenizer, max_image_tokens: int, seed: int,
                 rank: int = 0, workers: int = 0, encoder: BatchEncoder | None = None):
        self.packer, self.tokenizer, self.cap = packer, tokenizer, max_image_tokens
        self.encoder = encoder or BatchEncoder(tokenizer, use_cache=False)
        self.gen = torch.Generator().manual_seed(seed * 1000 + rank)  # random token drop
        self.pool = ThreadPoolExecutor(workers) if workers > 0 else None
        self._ahead: list[tuple[dict, list[Decision], list[Future] | None, dict]] = []

    @property
    def sampler(self) -> FeedbackSampler:
        return self.packer.sampler

    def _snapshot(self) -> dict:
        return copy.deepcopy({"packer": self.packer.state_dict(), "token_drop": self.gen.get_state()})

    def _schedule(self) -> None:
        snap = self._snapshot()
        # the sampler's stats window must count the batches handed out, not those decided ahead:
        # else batch_stats depend on prefetching, and a resume counts the prefetched batch twice
        win = self.sampler.pop_window()
        decisions = self.packer.next_batch()
        delta, self.sampler.window = self.sampler.pop_window(), win
        futs = [self.pool.submit(self.encoder.tokens, d) for d in decisions] + \
            [self.pool.submit(self.encoder.text, decisions)] if self.pool else None
        self._ahead.append((snap, decisions, futs, delta))

    def next(self) -> TrainBatch:
        if not self._ahead:
            self._schedule()
        _, decisions, futs, delta = self._ahead.pop(0)
        for kind, counts in delta.items():
            self.sampler.window[kind].update(counts)
        if futs:
            *tokens, text = [f.result() for f in futs]
        else:
            tokens, text = [self.encoder.tokens(d) for d in decisions], self.encoder.text(decisions)
        packed = self._pack(tokens, decisions)
        if self.pool:
            self._schedule()  # decode and encode the next batch while this one trains
        return TrainBatch(packed, [d.caption for d in decisions], [d.key for d in decisions],
                          [(d.out_h, d.out_w) for d in decisions], int(packed.cu_seqlens[-1]), text)

    def _pack(self, tokens: list[torch.Tensor], decisions: list[Decision]) -> PackedImages:
        grids = [self.tokenizer.grid(d.out_h, d.out_w) for d in decisions]
        return pack_tokens(tokens, grids, self.cap, self.gen)

    def state_dict(self) -> dict:
        """State before the first batch not yet handed out (prefetched batches are replayed)."""
        if self._ahead:
            return copy.deepcopy(self._ahead[0][0])
        return self._snapshot()

    def load_state_dict(self, s: dict) -> None:
        self._ahead.clear()
        self.packer.load_state_dict(s["packer"])
        self.gen.set_state(s["token_drop"])

    def close(self) -> None:
        if self.pool:
            self.pool.shutdown(wait=True, cancel_futures=True)
