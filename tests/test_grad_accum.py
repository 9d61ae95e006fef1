"""The paper's global batch on any cluster (#23.2): gradient accumulation normalised by the global
count of loss tokens, so 1 rank x 4 micro-batches, 4 gloo ranks x 1 and 2 x 2 (DDP and FSDP2)
make the same update from the same samples; the accumulation count and its one-line errors."""
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from _train_data import make_lake
from test_cli_validation import one_line_error, t2i

from djepa_t2i.config import ConfigError, load_config
from model.djepa import djepa_tiny
from model.text_encoder import TextStates
from model.tokenizers import PixelTokenizer, pack
from tasks import shard_writer
from training import distributed
from training.grad_accum import (LossTokens, accumulate, accumulation_steps, micro_batch_size,
                                 seed_micro_batch)

TOK = PixelTokenizer(4)
SEED, LR = 3, 1e-3
# four micro-batches of different sizes: 3, 1, 2 and 2 images, 44, 64, 32 and 20 tokens
SIZES = [[(16, 16), (16, 24), (8, 8)], [(32, 32)], [(8, 16), (24, 16)], [(16, 16), (8, 8)]]


def micro_batches() -> list:
    g = torch.Generator().manual_seed(0)
    out = []
    for sizes in SIZES:
        imgs = [torch.rand(3, h, w, generator=g) * 2 - 1 for h, w in sizes]
        text = TextStates(torch.randn(len(sizes), 4, 16, generator=g), torch.ones(len(sizes), 4, dtype=torch.bool))
        out.append((pack(imgs, TOK), text))
    return out


def one_update(rank: int, world: int, fsdp: bool, naive: bool = False) -> dict[str, torch.Tensor]:
    """The trainer's step on this rank's share of the 4 micro-batches: full parameters after one
    AdamW update (``naive``: the mean of per-micro-batch mean losses, for contrast)."""
    torch.manual_seed(0)
    raw = djepa_tiny(token_dim=TOK.token_dim, text_dim=16)
    accum = 4 // world
    model = distributed.wrap(raw, torch.device("cpu"), fsdp, accumulate=accum > 1)
    opt = torch.optim.AdamW([p for p in raw.parameters() if p.requires_grad], lr=LR, weight_decay=0.0)
    mine = micro_batches()[rank * accum:(rank + 1) * accum]
    gen = torch.Generator()

    def step(i: int) -> dict:
        seed_micro_batch(SEED, rank * accum + i, gen)  # its global index (step 0)
        images, text = mine[i]
        return model(images, text, generator=gen)

    if naive:
        for i in range(accum):
            (step(i)["loss"] / accum).backward()
    else:
        accumulate(model, LossTokens(raw), accum, step, world, torch.device("cpu"))
    grads = {f"grad:{n}": _full(p.grad) for n, p in raw.named_parameters() if p.grad is not None}
    opt.step()
    return {n: _full(p) for n, p in raw.named_parameters()} | grads


def _full(t: torch.Tensor) -> torch.Tensor:
    return (t.full_tensor() if hasattr(t, "full_tensor") else t).detach().clone()


def _rank(rank: int, init: str, out: str) -> None:
    """4 ranks x 1 micro-batch, then ranks 0-1 alone: 2 ranks x 2 (the all-reduce skipped on the
    first micro-batch: DDP ``no_sync`` / FSDP2 ``set_requires_gradient_sync``)."""
    torch.set_num_threads(1)
    res = {}
    for world in (4, 2):
        if rank >= world:
            break
        dist.init_process_group("gloo", init_method=f"{init}{world}", rank=rank, world_size=world)
        try:
            res[f"ddp{world}"], res[f"fsdp{world}"] = one_update(rank, world, False), one_update(rank, world, True)
        finally:
            dist.destroy_process_group()
    if rank == 0:
        torch.save(res, out)


def _max_diff(a: dict, b: dict, what: str = "") -> float:
    """The largest difference of the parameters (``what="grad:"``: of the gradients)."""
    return max(float((a[k] - b[k]).abs().max()) for k in a if k.startswith(what) and (what or ":" not in k))


@pytest.mark.slow
def test_one_rank_four_micro_batches_equals_four_ranks_one(tmp_path):
    alone = one_update(0, 1, False)
    naive = one_update(0, 1, False, naive=True)
    init, out = f"file://{tmp_path / 'pg'}", str(tmp_path / "params.pt")
    mp.start_processes(_rank, args=(init, out), nprocs=4, start_method="spawn")
    ranks = torch.load(out, weights_only=True)
    torch.manual_seed(0)
    start = {n: p.detach() for n, p in djepa_tiny(token_dim=TOK.token_dim, text_dim=16).named_parameters()}
    assert _max_diff(alone, start) == pytest.approx(LR, rel=0.01)  # Adam's first step: lr per weight
    # the same gradients to float tolerance, with DDP and with FSDP2, 4 x 1 and 2 x 2 ...
    scale = max(float(v.abs().max()) for k, v in alone.items() if k.startswith("grad:"))
    assert {k: _max_diff(alone, v, "grad:") / scale < 1e-5 for k, v in ranks.items()} == \
        {"ddp4": True, "fsdp4": True, "ddp2": True, "fsdp2": True}
    # ... so the same update (Adam's first step divides by |grad|: a tiny gradient's rounding
    # moves its weight by a small fraction of lr) ...
    assert max(_max_diff(alone, v) for v in ranks.values()) < 0.01 * LR
    # ... which averaging the four micro-batch means would not give (the check can fail)
    assert _max_diff(alone, naive, "grad:") / scale > 1e-2 and _max_diff(alone, naive) > LR


def test_loss_tokens_count_the_masked_tokens_of_each_forward():
    torch.manual_seed(0)
    m = djepa_tiny(token_dim=TOK.token_dim, text_dim=16)
    counter = LossTokens(m)
    images, text = micro_batches()[1]  # one 32x32 image: 64 tokens
    seen = []
    m.pred_proj.register_forward_hook(lambda mod, args, out: seen.append(out.shape[0]))
    m(images, text, generator=torch.Generator().manual_seed(0))
    n = counter.pop()
    assert n == seen[0] and 1 <= n <= 64 and counter.pop() == 0


def _train(**kw):
    sets = {"train.token_budget": 1024, "train.max_image_tokens": 256, "train.lookahead": 32,
            "model.patch_size": 16, **kw}
    return load_config(None, [f"{k}={v}" for k, v in sets.items()]).train


def test_accumulation_steps_from_global_batch_and_world_size():
    # phase 1: images (fixed 256 px squares at stride 16: 256 tokens, 4 per 1,024-token micro-batch)
    p1 = _train(**{"train.fixed_side": 256, "train.global_batch": 2048})
    assert micro_batch_size(p1, 16) == (4, "images")
    assert [accumulation_steps(p1, 16, w) for w in (1, 8, 128, 512)] == [512, 64, 4, 1]
    # phase 2: image tokens (the budget of each packed micro-batch)
    p2 = _train(**{"train.global_batch": 8192})
    assert micro_batch_size(p2, 16) == (1024, "image tokens")
    assert [accumulation_steps(p2, 16, w) for w in (1, 2, 8)] == [8, 4, 1]
    assert accumulation_steps(_train(), 16, 8) == 1  # unset: one micro-batch per rank
    with pytest.raises(ConfigError) as e:
        accumulation_steps(p1, 16, 3)
    assert str(e.value) == ("train.global_batch=2048 images is not a multiple of 3 ranks x 4 images "
                            "per micro-batch (train.token_budget=1024); use a multiple of 12")
    with pytest.raises(ConfigError, match=r"^train.global_batch=8192 image tokens is not a multiple of 16 ranks"):
        accumulation_steps(p2, 16, 16)
    with pytest.raises(ConfigError, match=r"^train.lookahead=2 < 4 images per micro-batch"):
        accumulation_steps(_train(**{"train.fixed_side": 256, "train.global_batch": 8, "train.lookahead": 2}), 16, 1)
    with pytest.raises(ConfigError, match="train.global_batch"):
        _train(**{"train.global_batch": 0})



def test_a_global_batch_that_does_not_divide_is_one_line_before_any_work(tmp_path):
    lake, _ = make_lake(tmp_path, n=8, shards=1)
    shard_writer.build(lake, str(tmp_path / "shards"), samples_per_shard=8, progress=False)
    p = t2i("train", "--set", f"lake={lake}", "--set", f"train.out={tmp_path / 'out'}",
            "--set", "train.global_batch=6000", cwd=tmp_path)
    assert one_line_error(p) == ("t2i train: error: train.global_batch=6000 image tokens is not a multiple "
                                 "of 1 ranks x 4096 image tokens per micro-batch (train.token_budget=4096); "
                                 "use a multiple of 4096")
    assert not (tmp_path / "out" / "checkpoints").exists()
