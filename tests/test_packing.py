import math

import numpy as np
import pyarrow as pa
import pytest
import torch

from model.tokenizers import PixelTokenizer, pack
from training.feedback_sampler import FeedbackSampler
from training.packing import TokenBudgetPacker
from warehouse.schema import SCHEMAS

PHASE2 = {"mu": 1.024, "sigma": 1.0, "a": 0.256, "b": 4.096}


def index(n, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        s, a = float(rng.choice([300, 600, 1000, 2000, 4500])), float(rng.choice([1.0, 0.5, 1.5, 2.0]))
        rows.append({"key": f"k{i:05d}", "tar": "/t/a.tar", "width": int(s * math.sqrt(a)),
                     "height": int(s / math.sqrt(a)), "caption": "c", "notions": [], "tags": [],
                     "source": "x", "offset": 0, "size": 1, "ext": "jpg"})
    return pa.Table.from_pylist(rows, schema=SCHEMAS["samples"])


def test_mixed_size_stream_fills_the_budget():
    sampler = FeedbackSampler(index(2000), stride=16, schedule=PHASE2, seed=0)
    packer = TokenBudgetPacker(sampler, token_budget=16384, max_image_tokens=4096, stride=16)
    fills, counts, seen = [], [], []
    for _ in range(60):
        b = packer.next_batch()
        t = [packer.tokens(d) for d in b]
        assert sum(t) <= 16384 and max(t) <= 4096
        fills.append(sum(t) / 16384)
        counts.append(len(b))
        seen += [d.key for d in b]
    assert np.mean(fills) >= 0.97, np.mean(fills)
    assert min(counts) < max(counts)  # a batch holds many small or few large images
    assert len(seen) == len(set(seen)) or sampler.epoch > 0  # nothing packed twice within an epoch
    # the look-ahead is state: a packer restored from it packs the same next batches
    st = packer.state_dict()
    ref = [[d.key for d in packer.next_batch()] for _ in range(5)]
    p2 = TokenBudgetPacker(FeedbackSampler(index(2000), stride=16, schedule=PHASE2, seed=0), 16384, 4096, 16)
    p2.load_state_dict(st)
    assert [[d.key for d in p2.next_batch()] for _ in range(5)] == ref


def test_token_drop_caps_at_4096():
    tok = PixelTokenizer(patch_size=2)
    big = torch.rand(3, 160, 128) * 2 - 1       # 80 * 64 = 5120 tokens
    small = torch.rand(3, 32, 32) * 2 - 1       # 256 tokens
    g = torch.Generator().manual_seed(0)
    p = pack([big, small], tok, max_image_tokens=4096, generator=g)
    assert p.cu_seqlens.tolist() == [0, 4096, 4352]
    assert p.grids == [(80, 64), (16, 16)] and p.keep[1] is None
    k = p.keep[0]
    assert len(k) == 4096 and len(set(k.tolist())) == 4096 and int(k.max()) < 5120
    assert torch.equal(p.tokens[:4096], tok.encode(big)[k])  # kept tokens are the original ones


def test_budget_smaller_than_one_image_is_refused():
    sampler = FeedbackSampler(index(10), stride=16, schedule=PHASE2)
    with pytest.raises(ValueError, match="max_image_tokens"):
        TokenBudgetPacker(sampler, token_budget=1024, max_image_tokens=4096, stride=16)
