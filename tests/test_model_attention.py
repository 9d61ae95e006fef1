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


def _packed_block_inputs(text_lens: list[int], img_grids: list[tuple[int, int]], dim: int, heads: int):
    from model.blocks import build_joint
    from model.vope import axial_angles, text_angles, vope_coords
    hd = dim // heads
    coords = torch.cat([vope_coords(h, w, 16.0) for h, w in img_grids])
    joint = build_joint(text_lens, [h * w for h, w in img_grids], text_angles(text_lens, hd, 1e4),
                        axial_angles(coords, hd, 1e4), "cpu")
    return torch.randn(sum(text_lens), dim), torch.randn(coords.shape[0], dim), joint


def test_block_compiles_without_graph_breaks_over_packed_batches():
    """Issue #15: a MultimodalBlock traces as ONE graph (``fullgraph=True`` raises on any graph
    break) over packed batches of new lengths each step, equals eager, and a new batch costs at
    most one recompilation (lengths become symbolic), not one per batch."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    from model.blocks import MultimodalBlock, Stack
    torch.manual_seed(0)
    torch._dynamo.reset()
    counters.clear()
    stack = Stack(32, 1, 4, 4.0, "sdpa")
    stack.blocks[0].compile(fullgraph=True, backend="eager")
    eager = MultimodalBlock(32, 4, attention="sdpa")
    eager.load_state_dict(stack.blocks[0].state_dict())
    batches = [([3, 5, 2], [(4, 4), (2, 4), (3, 4)]), ([7, 1], [(4, 6), (2, 2)]),
               ([2, 2, 4, 1], [(2, 3), (5, 4), (1, 4), (3, 3)]), ([4, 4], [(3, 3), (3, 3)])]
    for text_lens, grids in batches:
        xt, xi, joint = _packed_block_inputs(text_lens, grids, 32, 4)
        stack(xt, xi, joint)  # prepares the segment tables, as the model does
        got = stack.blocks[0](xt, xi, joint)
        want = eager(xt, xi, joint)
        torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-5)
    assert counters["stats"]["unique_graphs"] <= 3, dict(counters["stats"])
