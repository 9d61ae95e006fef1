"""Token-budget batches: accepted samples of different sizes packed into one sequence.

A batch is a budget of image tokens, not a count of images: many small or few large images. The
packer keeps a small FIFO look-ahead of accepted decisions and fills the budget first-fit from it
(the oldest sample that fits goes first, so nothing starves and the order stays close to the
sampler's). An image above ``max_image_tokens`` counts as that many (random token drop in
``model.tokenizers.pack``). The look-ahead is part of the state, so a resumed run packs the same
batches.
"""
from __future__ import annotations

from dataclasses import asdict

from djepa_t2i.config import default
from training.feedback_sampler import Decision, FeedbackSampler


def image_tokens(d: Decision, stride: int, max_image_tokens: int) -> int:
    return min((d.out_w // stride) * (d.out_h // stride), max_image_tokens)


class TokenBudgetPacker:
    def __init__(self, sampler: FeedbackSampler, token_budget: int, max_image_tokens: int,
                 stride: int, lookahead: int = default("train.lookahead")):
        if max_image_tokens > token_budget:
            raise ValueError(f"max_image_tokens ({max_image_tokens}) > token_budget ({token_budget}):"
                             " one image could not fit a batch")
        self.sampler, self.budget, self.cap = sampler, token_budget, max_image_tokens
        self.stride, self.lookahead = stride, lookahead
        self.pending: list[Decision] = []

    def tokens(self, d: Decision) -> int:
        return image_tokens(d, self.stride, self.cap)

    def next_batch(self) -> list[Decision]:
        """Decisions whose tokens sum to at most the budget, filled first-fit from the look-ahead."""
        while len(self.pending) < self.lookahead:
            self.pending.append(self.sampler.next())
        batch, room, rest = [], self.budget, []
        for d in self.pending:
            t = self.tokens(d)
            if t <= room:
                batch.append(d)
                room -= t
            else:
                rest.append(d)
        self.pending = rest
        return batch

    def state_dict(self) -> dict:
        return {"sampler": self.sampler.state_dict(), "pending": [asdict(d) for d in self.pending]}

    def load_state_dict(self, s: dict) -> None:
        self.sampler.load_state_dict(s["sampler"])
        self.pending = [Decision(**d) for d in s["pending"]]
