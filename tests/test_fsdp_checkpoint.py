"""FSDP2 checkpoints on CPU: 2 gloo ranks, ``fully_shard`` per block, state written sharded with
``torch.distributed.checkpoint`` (one file per rank, no gather), read back whole by
``model.checkpoint.load_model`` in one process, and an exact resume from the sharded state."""
import json
import os

import pytest
import torch
from _train_data import make_lake

from djepa_t2i.config import load_config
from flows import train as train_flow
from model.checkpoint import load_model
from tasks import shard_writer
from training import checkpoints as ckpts
from training import trainer as tr
from training.trainer import STEPS_LOG
from warehouse import weights as wt


def _overrides(lake: str, out: str) -> list[str]:
    return [f"lake={lake}", "model.patch_size=8", "model.overrides={width: 32, head_width: 32}",
            f"train.out={out}", "train.steps=4", "train.token_budget=64", "train.max_image_tokens=32",
            "train.lookahead=4", "schedule.start={mu: 0.032, sigma: 0.01, a: 0.016, b: 0.064}",
            "train.save_every=2", "train.stats_every=2", "train.device=cpu", "train.log_every=2",
            "train.fsdp=true"]


def _losses(out) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (out / STEPS_LOG).read_text().splitlines())}


@pytest.mark.slow
def test_fsdp_sharded_checkpoint_loads_whole_and_resumes_exactly(tmp_path):
    lake, _ = make_lake(tmp_path, n=48, shards=4, sizes=((32, 32), (48, 32), (24, 40), (64, 48)))
    shard_writer.build(lake, str(tmp_path / "shards"), samples_per_shard=12, progress=False)
    wt.publish(lake, [wt.resolution_row("start", 0.032, 0.01, 0.016, 0.064, "demo scale")], why="v0")
    lines: list[str] = []
    ref = tmp_path / "ref"
    res = train_flow.run_training(None, _overrides(lake, str(ref)), nproc=2, on_line=lines.append)
    assert res["returncode"] == 0, "\n".join(lines[-30:])

    ck = ref / "checkpoints" / "step_00000002"
    assert sorted(os.listdir(ck)) == ["COMPLETE", "meta.json", "rank-000.pt", "rank-001.pt", "state",
                                      "stream.pt", "trainer.pt"]  # no gathered model.safetensors
    assert sorted(os.listdir(ck / ckpts.SHARDED)) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert ckpts.is_complete(ck)

    # one process, no process group: the whole model (raw and EMA) from the shards
    raw, _, _, meta = load_model(str(ck), ema=False)
    ema, _, _, _ = load_model(str(ck), ema=True)
    assert meta["world_size"] == 2 and meta["step"] == 2
    with torch.no_grad():
        diffs = [float((a - b).abs().max()) for a, b in zip(raw.parameters(), ema.parameters())]
        assert all(torch.isfinite(p).all() for p in raw.parameters())
    assert max(diffs) > 0  # the EMA shadow is its own tensor set, not the raw weights again

    # resume the sharded state of step 2 in a fresh run: steps 3 and 4 repeat the reference exactly
    again = tmp_path / "again"
    res = train_flow.run_training(None, _overrides(lake, str(again)), nproc=2, resume=str(ck),
                                  on_line=lines.append)
    assert res["returncode"] == 0, "\n".join(lines[-30:])
    want, got = _losses(ref), _losses(again)
    assert sorted(got) == [3, 4]
    assert [got[s] for s in (3, 4)] == [want[s] for s in (3, 4)]

    # 2 -> 1 (#23.3): one process, no process group, loads the 2-rank shards whole (DCP) and the
    # global stream; without train.global_batch its step is one micro-batch, so steps 3-6 train the
    # micro-batches the 2 ranks trained in steps 3-4, in the same order
    t = tr.Trainer(load_config(None, _overrides(lake, str(tmp_path / "one")) + ["train.steps=6"]), resume=str(ck))
    try:
        assert t.world == 1 and not t.sharded
        hist = t.fit()
    finally:
        t.close()
    ref_keys = [json.loads(ln)["keys"] for ln in (ref / STEPS_LOG).read_text().splitlines()]
    assert [k for h in hist for k in h["keys"]] == [k for keys in ref_keys[2:] for k in keys]
