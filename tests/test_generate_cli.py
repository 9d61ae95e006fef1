"""``t2i generate``: which checkpoint, which settings, which errors."""
import json

import pytest
import torch

from djepa_t2i import cli
from model.checkpoint import save_model
from model.djepa import djepa_tiny
from model.tokenizers import PixelTokenizer
from training.generate_cli import resolve_checkpoint


def _checkpoint(path, evaluate: dict, model: dict | None = None, responsive: bool = False):
    torch.manual_seed(0)
    tok = PixelTokenizer(8)
    m = djepa_tiny(token_dim=tok.token_dim, text_dim=384)
    m.tokenizer = tok
    if responsive:  # the flow head starts at zero (output = noise): nudge it so the text shapes samples
        with torch.no_grad():
            for p in m.head.parameters():
                p.add_(0.05 * torch.randn_like(p))
    ema = {k: v.detach().clone() for k, v in m.named_parameters()}
    config = {"evaluate": {**evaluate, "detector": {"future_key": 1}}}
    if model is not None:
        config["model"] = {**model, "vae": {"future_key": 1}}  # keys a later version dropped are ignored
    save_model(str(path), m, ema, {"step": 3, "run_id": "tiny", "config": config})
    (path / "COMPLETE").write_text(json.dumps({"step": 3}))


def _tokens(n: int) -> str:
    """A prompt of exactly ``n`` tokens of the offline text encoder ([CLS] + n - 1 words; the
    words are single word pieces)."""
    return " ".join(["circle"] * (n - 1))


def _image(capsys, tmp_path, ck, prompt: str, *flags: str) -> bytes:
    out = tmp_path / "g.png"
    assert cli.main(["generate", "--ckpt", str(ck), "--prompt", prompt, "--out", str(out), "--no-progress",
                     *flags]) == 0
    capsys.readouterr()
    return out.read_bytes()


def test_generation_cuts_prompts_at_the_recorded_text_length(tmp_path, capsys):
    """The text length is the checkpoint's recorded model.text_max_length (issue #23 item 1:
    generation used to cut every prompt at 77 tokens while training kept 256)."""
    from model.text_encoder import TextEncoder
    from djepa_t2i.config import Model
    ck = tmp_path / "ck"
    _checkpoint(ck, {"size": 16, "steps": 2, "flow_steps": 2, "cfg": 3.0, "cfg_schedule": "constant",
                     "time_shift": 1.0}, model={"text_max_length": 96}, responsive=True)
    te = TextEncoder.from_config(Model(text_max_length=96))
    same90 = [_tokens(90) + " red square", _tokens(90) + " blue star"]
    same96 = [_tokens(100) + " red square", _tokens(100) + " blue star"]
    ids = [te.tokenizer(p, truncation=True, max_length=96)["input_ids"] for p in same90 + same96]
    assert ids[0][:90] == ids[1][:90] and ids[0] != ids[1] and len(ids[0]) == 93  # differ at tokens 91-92
    assert ids[2] == ids[3] and len(ids[2]) == 96  # identical once cut at 96
    a, b = (_image(capsys, tmp_path, ck, p) for p in same90)
    assert a != b  # beyond token 77 the prompt still conditions the image
    c, d = (_image(capsys, tmp_path, ck, p) for p in same96)
    assert c == d  # identical in the first text_max_length tokens: identical images
    assert _image(capsys, tmp_path, ck, same90[0]) == a  # and generation is deterministic
    # the command line overrides the recorded length (and says which it used)
    e, f = (_image(capsys, tmp_path, ck, p, "--text-max-length", "80") for p in same90)
    assert e == f
    assert cli.main(["generate", "--ckpt", str(ck), "--prompt", "a", "--out", str(tmp_path / "h.png"),
                     "--no-progress"]) == 0
    said = capsys.readouterr().out
    assert "text_max_length=96" in said and "cfg_schedule=constant" in said and "cfg=3.0" in said


def test_a_checkpoint_without_a_recorded_config_takes_the_config_defaults(tmp_path, capsys):
    from djepa_t2i.config import Evaluate, Model
    from training.generation import load_generator, settings
    ck = tmp_path / "ck"
    _checkpoint(ck, {})
    gen = load_generator(str(ck), "cpu")
    assert gen.text_encoder.max_length == Model().text_max_length
    s = settings(gen.meta, cfg=2.5)
    ev = Evaluate()
    assert s["cfg"] == 2.5 and s["cfg_schedule"] == ev.cfg_schedule and s["steps"] == ev.steps
    assert s["size"] == (ev.size, ev.size) and s["flow_steps"] == ev.flow_steps


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
    assert "config default auto" in text and "config default 4.5" in text and "config default linear" in text


def test_the_draw_check_takes_sampling_settings_over_the_record(tmp_path):
    """experiments/cfg_schedule.py compares CFG schedules through draw_check.check(**given)."""
    from training.draw_check import check
    ck = tmp_path / "ck"
    _checkpoint(ck, {"size": 16, "steps": 2, "flow_steps": 2, "cfg": 3.0, "cfg_schedule": "linear",
                     "time_shift": 1.0}, responsive=True)
    rec, const = check(str(ck), seeds=1), check(str(ck), seeds=1, cfg_schedule="constant")
    assert rec["settings"]["cfg_schedule"] == "linear" and const["settings"]["cfg_schedule"] == "constant"
    assert rec["images"] == const["images"] == 18
    assert const["settings"]["cfg"] == rec["settings"]["cfg"] == 3.0


def test_the_draw_check_at_1x_and_2x_takes_steps_by_token_count_and_feeds_the_report(tmp_path):
    """The demo's draw check (issue #28): the recorded side and 2x, "auto" steps resolved per size
    (4 tokens a step: 4 tokens -> 1 step, 16 -> 4), grids and draws.json for the report page."""
    from PIL import Image

    from report import draws
    from training.draw_check import check_sizes
    from warehouse.intervals import wilson
    ck = tmp_path / "ck"
    _checkpoint(ck, {"size": 16, "steps": "auto", "flow_steps": 2, "cfg": 3.0, "time_shift": 1.0}, responsive=True)
    out = tmp_path / "report"
    out.mkdir()
    d = check_sizes(str(ck), 1, str(out))
    assert [(r["scale"], r["size"], r["settings"]["steps"], r["images"]) for r in d["sizes"]] == \
        [(1, [16, 16], 1, 18), (2, [32, 32], 4, 18)]
    assert json.loads((out / "draws.json").read_text()) == json.loads(json.dumps(d))
    assert Image.open(out / "draws.png").size == (18 * 16 * 3, 16 * 3)
    assert Image.open(out / "draws_2x.png").size == (18 * 32 * 3, 32 * 3)
    page = draws.fragment("unused-lake", str(out))
    lo, hi = wilson(d["sizes"][1]["color"], 18)
    assert f"{d['sizes'][1]['color']:.0%} ({lo:.0%}-{hi:.0%})" in page
    assert "<td>32x32</td><td>4</td><td>18</td>" in page and "draws_2x.png" in page
    assert draws.fragment("unused-lake", str(tmp_path)) == ""  # no draw check there: nothing shown
