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


def test_rehearse_refuses_a_bad_override_or_missing_weights_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["rehearse", "--override", "/nope.yaml"]) == 2
    assert capsys.readouterr().err == ("t2i rehearse: error: --config '/nope.yaml': no such file "
                                       "(a YAML file, e.g. configs/demo_phase1.yaml)\n")
    assert main(["rehearse", "--no-weights"]) == 2  # real weights expected: every path must exist
    assert capsys.readouterr().err.startswith("t2i rehearse: error: weights not found: curate.aesthetic.weights=")
    assert not (tmp_path / "runs").exists()  # nothing was started


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


@pytest.mark.slow  # ~3 min on 2 busy cores (80 s of CPU): two Prefect-run trainings, Dask curation
def test_make_rehearse_runs_the_production_configs_end_to_end(tmp_path, monkeypatch):
    """phase1.yaml + phase2.yaml + rehearsal.yaml through the flows, every production backend
    loaded, and the lake names the backend of every step."""
    from flows.rehearse import format_summary, rehearse
    from PIL import Image
    from warehouse.db import query
    monkeypatch.chdir(tmp_path)
    res = rehearse(n=40)
    assert list(res["steps"]) == ["rehearsal-weights", "make-sample", "curate-laion", "recaption", "notion-stats",
                                  "build-shards", "train phase 1", "evaluate + feedback", "train phase 2", "generate"]
    lake = res["lake"]
    _, [(n_in, n_keys)] = query(lake, "SELECT sum(n_in), (SELECT count(DISTINCT key) FROM pairs) FROM shard_runs")
    assert n_in == n_keys == 41  # 40 pairs + 1 URL img2dataset failed to fetch, each accounted once
    b = res["backends"]
    assert {"aesthetic=laion-mlp", "nsfw=clip-mlp", "face=yolov8-face", "ocr=rapidocr",
            "clip_similarity=open_clip"} <= set(b["curate"])
    assert b["recaption"] == ["vlm:InternVL2-tiny"]
    assert b["train"] == [f"{p}: text=t5:runs/rehearse/weights/t5-v1_1-tiny tokens=vae:runs/rehearse/weights/sd3-vae-tiny"
                          for p in ("phase1", "phase2")]
    assert b["evaluate"] == ["geneval=yolo:yolov8n-coco.pt+open_clip:ViT-tiny-rehearsal"]
    assert b["feedback"] == ["v0001: geneval"]
    _, passed = query(lake, "SELECT count(*) FROM pairs WHERE status = 'passed'")
    _, vlm = query(lake, "SELECT count(*) FROM captions_current WHERE source = 'vlm'")
    assert passed[0][0] == vlm[0][0] > 20  # every passed pair captioned by InternVL
    _, wv = query(lake, "SELECT DISTINCT weights_version FROM batch_stats WHERE run_id = 'train-phase2'")
    assert {v for (v,) in wv} == {"v0001"}  # phase 2 sampled with the version GenEval feedback published
    _, ev = query(lake, "SELECT count(DISTINCT prompt_id) FROM eval_results WHERE control IS NULL")
    assert ev[0][0] == 6  # every GenEval prompt of the metadata file
    _, cs = query(lake, "SELECT run_id, images, clipscore FROM eval_clipscore")
    assert len(cs) == 1 and cs[0][:2] == ("train-phase1", 6) and 0 <= cs[0][2] <= 100  # CLIPScore by local path
    img = Image.open(res["steps"]["generate"]["result"])
    assert img.size == (256, 256)  # phase2.yaml's evaluate.size, through the checkpoint's recorded config
    assert "geneval=yolo:yolov8n-coco.pt" in format_summary(res)
