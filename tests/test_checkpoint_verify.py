"""Checkpoints are verified before use: the COMPLETE marker records every file's size and
sha256, and resume falls back to the newest intact checkpoint, naming the bad file."""
import json
import logging

import pytest
import torch
from safetensors.torch import save_file

from training import checkpoints as ckpts


def _write(out, step):
    """A checkpoint as the trainer commits it: staged files, marker last, renamed into place."""
    final = ckpts.final_dir(str(out), step)
    stage = ckpts.stage_dir(final)
    (stage / "sharded").mkdir(parents=True)
    save_file({"w": torch.full((64, 64), float(step))}, str(stage / "model.safetensors"))
    (stage / "meta.json").write_text(json.dumps({"step": step}))
    (stage / "sharded" / "rank0.pt").write_bytes(bytes(range(256)) * 8)
    ckpts.commit(stage, final, step, 1)
    return final


def test_marker_records_sizes_and_checksums(tmp_path):
    p = _write(tmp_path, 10)
    files = json.loads((p / ckpts.COMPLETE).read_text())["files"]
    assert sorted(files) == ["meta.json", "model.safetensors", "sharded/rank0.pt"]
    assert files["sharded/rank0.pt"][0] == 2048 and len(files["model.safetensors"][1]) == 64
    assert ckpts.damage(p) is None


def test_resume_falls_back_past_a_truncated_and_a_flipped_checkpoint(tmp_path, caplog):
    a, b, c = (_write(tmp_path, s) for s in (10, 20, 30))
    model = c / "model.safetensors"
    model.write_bytes(model.read_bytes()[:-100])  # cut short, as a full disk would
    rank = b / "sharded" / "rank0.pt"
    data = bytearray(rank.read_bytes())
    data[1000] ^= 0x01  # one flipped bit, same size
    rank.write_bytes(bytes(data))
    size = (a / "model.safetensors").stat().st_size  # the same tensor shape: same file size
    assert ckpts.damage(c) == f"model.safetensors: {size - 100} bytes, {size} recorded (truncated or overwritten)"
    assert ckpts.damage(b) == "sharded/rank0.pt: sha256 differs from the recorded one (corrupted)"
    # the CLI's pre-flight check reads sizes only; the rank hashes the files once, when it loads
    assert ckpts.damage(b, hashes=False) is None and ckpts.damage(c, hashes=False) == ckpts.damage(c)
    with caplog.at_level(logging.WARNING, logger="t2i.train"):
        assert ckpts.resolve_resume("auto", str(tmp_path)) == a
    assert [r.getMessage().split(" (")[1].split(":")[0] for r in caplog.records] == [
        "model.safetensors", "sharded/rank0.pt"]
    with pytest.raises(ValueError, match="damaged checkpoint: model.safetensors: .* recorded"):
        ckpts.resolve_resume(str(c), str(tmp_path))
    (a / "meta.json").unlink()
    assert ckpts.damage(a) == "meta.json: missing" and ckpts.latest(str(tmp_path)) is None
