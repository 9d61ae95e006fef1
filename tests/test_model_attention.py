"""Every CPU attention backend equals per-sample attention over the packed sequence."""
import math

import pytest
import torch

from model.attention import Segments, packed_attention, resolve_backend

def reference(q, k, v, lengths):
    outs, s = [], 0
    for n in lengths:
        qs, ks, vs = (x[s:s + n].transpose(0, 1) for x in (q, k, v))  # (H, n, Dh)
        w = torch.softmax(qs @ ks.transpose(1, 2) / math.sqrt(q.shape[-1]), -1)
        outs.append((w @ vs).transpose(0, 1))
        s += n
    return torch.cat(outs)


@pytest.mark.parametrize("backend", ["sdpa", "flex", "loop"])
def test_packed_equals_per_sample(backend):
    torch.manual_seed(0)
    lengths = [5, 17, 1, 9, 30]
    n = sum(lengths)
    q, k, v = (torch.randn(n, 2, 16) for _ in range(3))
    seg = Segments.from_lengths(lengths, "cpu")
    out = packed_attention(q, k, v, seg, backend)
    torch.testing.assert_close(out, reference(q, k, v, lengths), rtol=1e-4, atol=1e-5)


def test_no_leak_across_samples():
    torch.manual_seed(1)
    lengths = [4, 6]
    q, k, v = (torch.randn(10, 2, 8) for _ in range(3))
    seg = Segments.from_lengths(lengths, "cpu")
    a = packed_attention(q, k, v, seg, "sdpa")
    v2 = v.clone()
    v2[4:] += 100.0  # change only the second sample
    b = packed_attention(q, k, v2, seg, "sdpa")
    torch.testing.assert_close(a[:4], b[:4])


def test_backend_resolution_on_cpu():
    assert resolve_backend("auto", torch.device("cpu")) == "sdpa"
    with pytest.raises(RuntimeError, match="no CPU kernel"):
        resolve_backend("varlen", torch.device("cpu"))
    with pytest.raises(ValueError, match="unknown attention backend"):
        resolve_backend("magic", torch.device("cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_backends_match_reference():
    torch.manual_seed(0)
    lengths = [5, 17, 1, 9, 30]
    q, k, v = (torch.randn(sum(lengths), 2, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    seg = Segments.from_lengths(lengths, "cuda")
    ref = reference(q.float(), k.float(), v.float(), lengths)
    for backend in ("varlen", "flex", "sdpa"):
        out = packed_attention(q, k, v, seg, backend).float()
        torch.testing.assert_close(out, ref, rtol=2e-2, atol=2e-2)
