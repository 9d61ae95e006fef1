"""The rehearsal: production configs + configs/rehearsal.yaml, with every production backend
loaded from tiny weights written in the published formats (``t2i rehearsal-weights``)."""
from pathlib import Path

import pytest
import yaml

from djepa_t2i.cli import main
from djepa_t2i.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent
PHASE1, PHASE2, REHEARSAL = (str(ROOT / "configs" / f) for f in ("phase1.yaml", "phase2.yaml", "rehearsal.yaml"))


def test_config_files_merge_in_order_and_interpolate(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(yaml.safe_dump({"lake": "A", "train": {"phase": "phase2", "steps": 5, "lr": 0.5}}))
    b.write_text("train: {steps: 7, out: 'runs/x-${train.phase}'}\n")
    cfg = load_config([str(a), str(b)], ["train.lr=0.25"])
    assert (cfg.lake, cfg.train.steps, cfg.train.lr, cfg.train.out) == ("A", 7, 0.25, "runs/x-phase2")
    assert load_config([str(b), str(a)]).train.steps == 5  # the later file wins
    with pytest.raises(ConfigError, match=r"^--config '/nope.yaml': no such file"):
        load_config([str(a), "/nope.yaml"])


def test_rehearsal_overrides_sizes_and_paths_only(tmp_path, monkeypatch):
    """Every backend, benchmark and recipe value of phase1/phase2 survives the override file."""
    monkeypatch.chdir(tmp_path)
    over = yaml.safe_load(Path(REHEARSAL).read_text())
    for base in (PHASE1, PHASE2):
        prod = load_config(base, check_paths=False)
        cfg = load_config([base, REHEARSAL], check_paths=False)
        assert cfg.train.out == f"runs/rehearse/train-{prod.train.phase}"
        for key in ("model.name", "model.tokenizer", "model.vae.backend", "model.text_encoder.backend",
                    "model.vae_patch_size", "model.text_max_length", "curate.aesthetic.backend",
                    "curate.aesthetic.threshold", "curate.nsfw.backend", "curate.face.backend",
                    "recaption.backend", "evaluate.benchmark", "evaluate.detector.backend",
                    "evaluate.clip.backend", "evaluate.cfg", "evaluate.size", "feedback.benchmark",
                    "train.lr", "train.schedule", "train.ema", "train.precision", "train.fixed_side"):
            obj_p, obj_c = prod, cfg
            for part in key.split("."):
                obj_p, obj_c = getattr(obj_p, part), getattr(obj_c, part)
            assert obj_p == obj_c, key
    assert set(over) == {"lake", "shards", "schedule", "curate", "recaption", "model", "train", "evaluate"}
    with pytest.raises(ConfigError, match=r"weights not found: curate.aesthetic.weights='runs/rehearse/weights/"):
        load_config([PHASE1, REHEARSAL])  # before `t2i rehearsal-weights`: one line, the first missing path


@pytest.mark.slow  # ~30 s on 2 cores: writes every tiny model, then loads each through check-backends
def test_rehearsal_weights_load_in_every_production_backend(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["rehearsal-weights", "runs/rehearse/weights"]) == 0
    assert main(["check-backends", "--config", PHASE1, "--config", REHEARSAL]) == 0
    out = capsys.readouterr().out
    assert "10/10 backends ran" in out
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln and ln.split()[0] in (
        "aesthetic", "nsfw", "face", "recaption", "text_encoder", "vae", "eval.detector")}
    assert "laion-mlp: score 6.0000 (passed)" in lines["aesthetic"]
    assert "clip-mlp: score 0.0200 (passed)" in lines["nsfw"]
    assert lines["face"].split()[1] == "yolov8-face" and lines["recaption"].split()[1] == "internvl"
    assert "t5 fp32" in lines["text_encoder"] and "256x256 encode+decode" in lines["vae"]
