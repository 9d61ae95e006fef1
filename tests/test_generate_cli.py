"""``t2i generate``: which checkpoint, which settings, which errors."""
import json

import pytest
import torch

from djepa_t2i import cli
from model.checkpoint import save_model
from model.djepa import djepa_tiny
from model.tokenizers import PixelTokenizer
from training.generate_cli import resolve_checkpoint


def _checkpoint(path, evaluate: dict):
    torch.manual_seed(0)
    tok = PixelTokenizer(8)
    m = djepa_tiny(token_dim=tok.token_dim, text_dim=384)
    m.tokenizer = tok
    ema = {k: v.detach().clone() for k, v in m.named_parameters()}
    save_model(str(path), m, ema, {"step": 3, "run_id": "tiny",
                                   "config": {"evaluate": {**evaluate, "detector": {"future_key": 1}}}})
    (path / "COMPLETE").write_text(json.dumps({"step": 3}))


def test_run_folder_latest_checkpoint_and_recorded_defaults(tmp_path, capsys):
    run = tmp_path / "run"
    for step in (3, 6):
        _checkpoint(run / "checkpoints" / f"step_{step:08d}", {"size": 16, "steps": 2, "flow_steps": 3,
                                                                "cfg": 2.0, "time_shift": 1.0})
    assert resolve_checkpoint(str(run)).name == "step_00000006"
    assert resolve_checkpoint(str(run / "checkpoints")).name == "step_00000006"
    out = tmp_path / "x.png"
    assert cli.main(["generate", "--ckpt", str(run), "--prompt", "a red circle", "--out", str(out),
                     "--no-progress"]) == 0
    said = capsys.readouterr().out
    # the checkpoint's recorded evaluate section set every default (unknown sections ignored)
    assert "(16x16)" in said and "steps=2" in said and "flow_steps=3" in said and "cfg=2.0" in said
    from PIL import Image
    assert Image.open(out).size == (16, 16)
    assert cli.main(["generate", "--ckpt", str(run), "--prompt", "a", "--prompt", "b", "--size", "24x16",
                     "--steps", "1", "--out", str(out), "--no-progress"]) == 0
    assert Image.open(tmp_path / "x_1.png").size == (24, 16)


def test_a_wrong_path_is_one_clear_line(tmp_path, capsys):
    assert cli.main(["generate", "--ckpt", str(tmp_path / "nope"), "--prompt", "a", "--out",
                     str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no checkpoint there" in err[0]


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["generate", "--help"])
    text = capsys.readouterr().out
    text = " ".join(text.split())  # argparse wraps lines
    assert "paper and config default 64" in text and "paper and config default 4.5" in text
