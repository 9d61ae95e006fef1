"""Production backends load the files users download, as published, detected by format.

Every file here is built in the real format (a TorchScript archive via ``torch.jit.script``,
``torch.save`` state dicts, safetensors, Keras 2 and Keras 3 weights written with h5py), small.
"""
import os
import re

import numpy as np
import pytest
import torch

from djepa_t2i.config import load_config
from tasks.stages import build_stage
from tasks.filters.aesthetic import AestheticMLP
from tasks.weights_formats import WeightsFormatError, detect

UNUSED_CLIP = f"curate.clip_weights={os.devnull}"  # heads scored on given embeddings: no CLIP runs

@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A tiny open_clip architecture registered as ``tiny-test-clip``, and OpenAI-style files:
    a TorchScript archive (QuickGELU, like OpenAI's ViT-L-14.pt) and a plain state dict."""
    import open_clip

    from tests.tiny_clip import register
    d = tmp_path_factory.mktemp("clip")
    register(d)
    torch.manual_seed(0)
    m = open_clip.create_model("tiny-test-clip", force_quick_gelu=True).eval()
    torch.jit.script(m).save(str(d / "ViT-L-14.pt"))
    return d


def _embed(loaded, seed=0):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return loaded.model.encode_image(x)


def test_openai_torchscript_is_refused_converted_and_gets_quickgelu(tiny_clip):
    from tasks.convert_weights import convert
    from tasks.filters.clip_loader import load_clip_model
    ts = tiny_clip / "ViT-L-14.pt"
    assert detect(ts) == "torchscript"
    with pytest.raises(WeightsFormatError, match=r"TorchScript is code .* `t2i convert-weights .*clip_allow_torchscript=true"):
        load_clip_model("tiny-test-clip", str(ts))
    direct = load_clip_model("tiny-test-clip", str(ts), allow_torchscript=True)
    assert direct.info == {"arch": "tiny-test-clip", "format": "torchscript", "openai": True,
                           "quick_gelu": True, "path": str(ts)}
    out, kind, n = convert(str(ts))
    assert out == tiny_clip / "ViT-L-14.safetensors" and "QuickGELU" in kind and n > 30
    conv = load_clip_model("tiny-test-clip", str(out))
    assert conv.info["format"] == "safetensors" and conv.info["quick_gelu"] is True
    assert torch.equal(_embed(direct), _embed(conv))
    gelu = load_clip_model("tiny-test-clip", str(out), quick_gelu=False)  # what open_clip did silently
    assert (_embed(gelu) - _embed(conv)).abs().max() > 1e-4


def test_open_clip_files_and_folders_load_with_gelu(tiny_clip, tmp_path):
    import open_clip
    from safetensors.torch import save_file

    from tasks.filters.clip_loader import load_clip_model
    m = open_clip.create_model("tiny-test-clip")
    (tmp_path / "repo").mkdir()
    save_file(m.state_dict(), str(tmp_path / "repo" / "open_clip_model.safetensors"))
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in m.state_dict().items()}},
               tmp_path / "epoch_3.pt")
    a = load_clip_model("tiny-test-clip", str(tmp_path / "repo"))
    b = load_clip_model("tiny-test-clip", str(tmp_path / "epoch_3.pt"))
    assert a.info["quick_gelu"] is False and a.info["path"].endswith("open_clip_model.safetensors")
    assert torch.equal(_embed(a), _embed(b))
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    with pytest.raises(WeightsFormatError, match="transformers CLIPModel folder"):
        load_clip_model("tiny-test-clip", str(tmp_path / "hf"))
    with pytest.raises(WeightsFormatError, match=r"keys do not fit open_clip ViT-B-32: \d+ missing"):
        load_clip_model("ViT-B-32", str(tmp_path / "epoch_3.pt"))
    with pytest.raises(FileNotFoundError, match="curate.clip_weights='/nope' does not exist"):
        load_clip_model("tiny-test-clip", "/nope")


def test_curate_embedder_records_quickgelu_for_openai(tiny_clip):
    from tasks.model_cache import build_pipeline
    cfg = load_config(overrides=["curate.clip_model=tiny-test-clip", f"curate.clip_weights={tiny_clip / 'ViT-L-14.pt'}",
                                 "curate.clip_allow_torchscript=true", "curate.aesthetic.backend=laion-mlp",
                                 f"curate.aesthetic.weights={_aesthetic_pth(tiny_clip, 32)}",
                                 "curate.order=[aesthetic]"])
    models = build_pipeline(cfg)
    assert models.backends["clip"] == "open_clip:tiny-test-clip-quickgelu"
    assert models.clip.info["openai"] is True


def _aesthetic_pth(d, dim=768):
    p = d / f"aesthetic_{dim}.pth"
    torch.save(AestheticMLP(dim).state_dict(), p)  # what LAION publishes: a plain torch.save state dict
    return p


def test_aesthetic_pth_loads_and_wrong_files_say_what_to_do(tiny_clip, tmp_path):
    ov = [UNUSED_CLIP, "curate.aesthetic.backend=laion-mlp", "curate.aesthetic.threshold=0"]
    f = build_stage("aesthetic", load_config(overrides=ov + [f"curate.aesthetic.weights={_aesthetic_pth(tmp_path)}"]))
    emb = torch.nn.functional.normalize(torch.randn(3, 768), dim=-1).numpy()
    assert len(f([None] * 3, emb)) == 3
    with pytest.raises(ValueError, match="head takes 768-d CLIP embeddings, got 512-d"):
        f([None], np.zeros((1, 512), np.float32))
    with pytest.raises(WeightsFormatError, match=r"TorchScript archive .* t2i convert-weights"):
        build_stage("aesthetic", load_config(overrides=ov + [f"curate.aesthetic.weights={tiny_clip / 'ViT-L-14.pt'}"]))
    torch.save({"layers.0.weight": torch.zeros(3, 3)}, tmp_path / "bad.pth")
    with pytest.raises(WeightsFormatError, match=r"curate.aesthetic.weights: keys do not fit the LAION improved-aesthetic"):
        build_stage("aesthetic", load_config(overrides=ov + [f"curate.aesthetic.weights={tmp_path / 'bad.pth'}"]))


def _keras_nsfw(rng, dims=(768, 64, 512, 256, 1)):
    mean, var = rng.normal(size=dims[0]).astype(np.float32) * 0.01, rng.uniform(0.5, 2, dims[0]).astype(np.float32)
    dense = [(rng.normal(size=(a, b)).astype(np.float32) / np.sqrt(a), rng.normal(size=b).astype(np.float32) * 0.1)
             for a, b in zip(dims[:-1], dims[1:])]
    return mean, var, dense


def _keras_reference(x, mean, var, dense):
    """The Keras model's math: Normalization, Dense+ReLU..., Dense+sigmoid."""
    h = (x - mean) / np.sqrt(var)
    for i, (k, b) in enumerate(dense):
        h = h @ k + b
        h = np.maximum(h, 0) if i < len(dense) - 1 else 1 / (1 + np.exp(-h))
    return h[:, 0]


def _write_keras2(path, mean, var, dense):
    """Keras 2 ``model.save('x.h5')`` layout: /model_weights/<layer>/<layer>/<var>:0 + name attributes."""
    import h5py
    names = ["input_1", "normalization"] + ["dense" + (f"_{i}" if i else "") for i in range(len(dense))]
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = "{}"
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [n.encode() for n in names]
        g.create_group("input_1").attrs["weight_names"] = []
        norm = g.create_group("normalization")
        norm.attrs["weight_names"] = [b"normalization/mean:0", b"normalization/variance:0", b"normalization/count:0"]
        norm["normalization/mean:0"], norm["normalization/variance:0"] = mean, var
        norm["normalization/count:0"] = np.int64(1000)
        for n, (k, b) in zip(names[2:], dense):
            lg = g.create_group(n)
            lg.attrs["weight_names"] = [f"{n}/kernel:0".encode(), f"{n}/bias:0".encode()]
            lg[f"{n}/kernel:0"], lg[f"{n}/bias:0"] = k, b
        f.create_group("optimizer_weights")["junk"] = np.zeros(3)


def _write_keras3(path, mean, var, dense):
    """Keras 3 ``model.save_weights('x.weights.h5')`` layout: layers/<name>/vars/<i>."""
    import h5py
    with h5py.File(path, "w") as f:
        layers = f.create_group("layers")
        v = layers.create_group("normalization").create_group("vars")
        v["0"], v["1"] = mean, var
        for i, (k, b) in enumerate(dense):
            v = layers.create_group("dense" + (f"_{i}" if i else "")).create_group("vars")
            v["0"], v["1"] = k, b


@pytest.mark.parametrize("writer", [_write_keras2, _write_keras3])
def test_keras_nsfw_detector_converts_into_the_head(tmp_path, writer):
    from tasks.convert_weights import convert
    rng = np.random.default_rng(0)
    mean, var, dense = _keras_nsfw(rng)
    src = tmp_path / "clip_autokeras_binary_nsfw.h5"
    writer(src, mean, var, dense)
    assert detect(src) == "keras-h5"
    out, kind, n = convert(str(src))
    assert out.name == "clip_autokeras_binary_nsfw.safetensors" and n == 10 and "linear_1..4" in kind
    f = build_stage("nsfw", load_config(overrides=[UNUSED_CLIP, "curate.nsfw.backend=clip-mlp",
                                                   f"curate.nsfw.weights={out}"]))
    x = rng.normal(size=(6, 768)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    got = np.array([r.score for r in f([None] * 6, x)])
    np.testing.assert_allclose(got, _keras_reference(x, mean, var, dense), rtol=1e-4, atol=1e-6)
    with pytest.raises(WeightsFormatError, match=r"Keras .h5 file; .* t2i convert-weights"):
        build_stage("nsfw", load_config(overrides=[UNUSED_CLIP, "curate.nsfw.backend=clip-mlp",
                                                   f"curate.nsfw.weights={src}"]))


def test_laion_pytorch_nsfw_heads_load_as_published(tmp_path):
    """LAION's own PyTorch ports (models/clip_ViT-{L-14,B-32}_openai_binary_nsfw_head.pth)."""
    from tasks.filters.nsfw import NsfwMLP
    for dims in [(768, 64, 512, 256, 1), (512, 32, 32, 1)]:
        sd = NsfwMLP(dims).state_dict()
        assert sorted(sd)[:2] == ["linear_1.bias", "linear_1.weight"] and sd["norm.mean"].shape == (dims[0],)
        p = tmp_path / f"head_{dims[0]}.pth"
        torch.save(sd, p)
        f = build_stage("nsfw", load_config(overrides=[UNUSED_CLIP, "curate.nsfw.backend=clip-mlp",
                                                       f"curate.nsfw.weights={p}"]))
        rs = f([None] * 2, np.zeros((2, dims[0]), np.float32))
        assert all(0.0 <= r.score <= 1.0 for r in rs) and f.in_dim == dims[0]


def test_convert_weights_cli_refuses_what_it_cannot_read(tmp_path, capsys):
    from djepa_t2i.cli import main
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "saved_model.pb").write_bytes(b"\x08\x01")
    assert main(["convert-weights", str(tmp_path / "saved")]) == 2  # one line, exit 2 (#25.2)
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert re.search("TensorFlow SavedModel .* clip_ViT-L-14_openai_binary_nsfw_head.pth", err)
    rng = np.random.default_rng(1)
    _write_keras3(tmp_path / "n.weights.h5", *_keras_nsfw(rng, (512, 32, 32, 1)))
    assert main(["convert-weights", str(tmp_path / "n.weights.h5"), "--out", str(tmp_path / "o.safetensors")]) == 0
    assert "wrote " + str(tmp_path / "o.safetensors") + " (8 tensors)" in capsys.readouterr().out


def test_backend_names_and_weight_paths_fail_when_the_config_loads(tmp_path):
    from djepa_t2i.config import ConfigError
    with pytest.raises(ConfigError, match=r"curate.nsfw: Value error, unknown backend 'clip'; allowed: clip-mlp, none, nudenet, offline"):
        load_config(overrides=["curate.nsfw.backend=clip"])
    with pytest.raises(ConfigError, match=r"model.text_encoder: Value error, unknown backend 'T5'; allowed: hf, offline, t5"):
        load_config(overrides=["model.text_encoder.backend=T5", "model.text_encoder.weights=/x"])
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["curate.face.backend=yolov8-face", "curate.face.weights=/models/yolov8n-face.pt",
                               "model.tokenizer=vae", "model.vae.backend=diffusers", f"model.vae.weights={tmp_path}"])
    assert str(e.value) == (
        "weights not found: curate.face.weights='/models/yolov8n-face.pt' does not exist (a local path, "
        "nothing is downloaded; docs/weights-production.md)")
    # a stage that is not in the order reads no weights, so its path is not checked
    load_config(overrides=["curate.face.backend=yolov8-face", "curate.face.weights=/nope", "curate.order=[resolution]"])
