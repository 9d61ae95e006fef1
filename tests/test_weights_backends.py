"""InternVL2 (both layouts), HF text encoders with a dtype, KL-VAEs (folder, vae/, single file)
and YOLO face weights: each loads from files built in the published layout, or fails in one line."""
import re

import pytest
import torch
from PIL import Image

from djepa_t2i.config import load_config
from tasks.weights_formats import WeightsFormatError


def _recaption(weights, *extra):
    return load_config(overrides=["recaption.backend=internvl", f"recaption.weights={weights}",
                                  "recaption.image_size=56", *extra]).recaption


def test_internvl_chat_folder_runs_its_local_code_only_when_opted_in(tmp_path):
    from tasks.internvl_loader import internvl_layout, load_captioner
    from tests.tiny_internvl_chat import build
    p = build(tmp_path / "InternVL2-2B")
    assert internvl_layout(str(p))[0] == "internvl_chat"
    with pytest.raises(WeightsFormatError, match="custom-code folder.*recaption.trust_remote_code=true"):
        load_captioner(_recaption(p))
    cap = load_captioner(_recaption(p, "recaption.trust_remote_code=true", "recaption.max_new_tokens=9",
                                    "recaption.prompt=Say it."))
    white, black = cap.caption([Image.new("RGB", (80, 60), "white"), Image.new("RGB", (30, 30), "black")])
    # ImageNet-normalised single 56-px tile: white -> mean of (1 - m) / s, black -> mean of -m / s
    assert re.fullmatch(r"Say it\. \| tiles=1 side=56 mean=2\.439 feat=-?\d+\.\d{3} max_new_tokens=9", white)
    assert "mean=-1.986" in black
    with pytest.raises(ValueError, match="recaption.image_size=448 but the checkpoint takes 56x56"):
        load_captioner(_recaption(p, "recaption.trust_remote_code=true", "recaption.image_size=448"))
    hub = build(tmp_path / "hub", hub_ref=True)
    with pytest.raises(WeightsFormatError, match="points at a hub repo"):
        load_captioner(_recaption(hub, "recaption.trust_remote_code=true"))


def test_internvl_layout_errors_name_the_expected_layouts(tmp_path):
    from tasks.internvl_loader import internvl_layout
    (tmp_path / "llava").mkdir()
    (tmp_path / "llava" / "config.json").write_text('{"model_type": "llava"}')
    with pytest.raises(WeightsFormatError, match="model_type 'llava'; expected an InternVL2 folder: internvl_chat"):
        internvl_layout(str(tmp_path / "llava"))
    with pytest.raises(FileNotFoundError, match="recaption.weights='/nope' does not exist"):
        internvl_layout("/nope")


def test_internvl_hf_layout_goes_to_the_native_classes(tmp_path):
    from tasks.captioning import InternVLCaptioner
    from tasks.internvl_loader import load_captioner
    from tests.tiny_internvl import build
    cap = load_captioner(_recaption(build(tmp_path / "InternVL2-1B-hf", image_size=56), "recaption.max_new_tokens=3"))
    assert isinstance(cap, InternVLCaptioner) and len(cap.caption([Image.new("RGB", (64, 64), "red")])) == 1


def _tiny_t5(path):
    from transformers import T5Config, T5ForConditionalGeneration

    from tests.tiny_internvl import build_tokenizer
    torch.manual_seed(0)
    tok = build_tokenizer()
    T5ForConditionalGeneration(T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=1,
                                        num_heads=4, decoder_start_token_id=0)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_t5_text_encoder_loads_in_the_configured_dtype(tmp_path):
    from model.text_encoder import TextEncoder
    p = _tiny_t5(tmp_path / "t5-v1_1-tiny")
    cfg = load_config(overrides=["model.text_encoder.backend=t5", f"model.text_encoder.weights={p}",
                                 "model.text_encoder.dtype=bf16"]).model
    te = TextEncoder.from_config(cfg)
    assert next(te.model.parameters()).dtype == torch.bfloat16 and te.describe()["dtype"] == "bf16"
    assert type(te.model).__name__ == "T5EncoderModel" and te.dim == 32
    s = te.encode(["two red circles", "a star"])
    assert s.states.dtype == torch.float32 and s.states.shape[0] == 2 and s.states.shape[2] == 32
    fp32 = TextEncoder(str(p), "t5", "cpu", max_length=256)
    assert (fp32.encode(["two red circles"]).states[0] - s.states[0, :s.lengths[0]]).abs().max() < 0.1
    with pytest.raises(ValueError, match="T5 activations overflow in fp16"):
        TextEncoder(str(p), "t5", "cpu", max_length=256, dtype="fp16")
    with pytest.raises(ValueError, match="expected a Hugging Face model folder"):
        TextEncoder(str(tmp_path), "t5", "cpu", max_length=256)
    # SD3's diffusers layout: text_encoder_3/ (T5EncoderModel) beside tokenizer_3/
    from transformers import AutoTokenizer
    sd3 = tmp_path / "sd3"
    fp32.model.save_pretrained(sd3 / "text_encoder_3")
    AutoTokenizer.from_pretrained(p).save_pretrained(sd3 / "tokenizer_3")
    te3 = TextEncoder(str(sd3 / "text_encoder_3"), "t5", "cpu", max_length=256)
    assert torch.equal(te3.encode(["two red circles"]).states, fp32.encode(["two red circles"]).states)


def _ldm_keys(sd: dict, n_up: int) -> dict:
    """diffusers AutoencoderKL keys -> the original (ldm) single-file layout published VAE files use."""
    out = {}
    for k, v in sd.items():
        k2 = k.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
        k2 = re.sub(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.", r"encoder.down.\1.block.\2.", k2)
        k2 = re.sub(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", k2)
        k2 = re.sub(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.", lambda m: f"decoder.up.{n_up - 1 - int(m[1])}.block.{m[2]}.", k2)
        k2 = re.sub(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.", lambda m: f"decoder.up.{n_up - 1 - int(m[1])}.upsample.", k2)
        k2 = re.sub(r"mid_block\.resnets\.(\d+)\.", lambda m: f"mid.block_{int(m[1]) + 1}.", k2)
        if "mid_block.attentions.0." in k2:
            k2 = k2.replace("mid_block.attentions.0.", "mid.attn_1.")
            for a, b in (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")):
                k2 = k2.replace(f".{a}.", f".{b}.")
            v = v[:, :, None, None] if v.ndim == 2 else v  # ldm attention projections are 1x1 convs
        out[k2] = v.contiguous()
    return out


def test_vae_folder_pipeline_subfolder_and_single_file_encode_alike(tmp_path):
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file

    from model.tokenizers import build_tokenizer
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                        layers_per_block=1, sample_size=32).eval()
    vae.save_pretrained(tmp_path / "sd3" / "vae")
    (tmp_path / "sd3" / "model_index.json").write_text('{"_class_name": "StableDiffusion3Pipeline"}')
    save_file(_ldm_keys(vae.state_dict(), 2), str(tmp_path / "sd3_vae.safetensors"))
    img = torch.rand(3, 32, 32) * 2 - 1
    ref = None
    for ov in ([f"model.vae.weights={tmp_path / 'sd3' / 'vae'}"], [f"model.vae.weights={tmp_path / 'sd3'}"],
               [f"model.vae.weights={tmp_path / 'sd3_vae.safetensors'}", f"model.vae_config={tmp_path / 'sd3'}"]):
        cfg = load_config(overrides=["model.tokenizer=vae", "model.vae.backend=diffusers", *ov]).model
        tok = build_tokenizer(cfg)
        z = tok.encode(img)
        ref = z if ref is None else ref
        assert z.shape == (256, 4) and torch.allclose(z, ref, atol=1e-5)
    with pytest.raises(ValueError, match="single-file VAE: set model.vae_config"):
        build_tokenizer(load_config(overrides=["model.tokenizer=vae", "model.vae.backend=diffusers",
                                               f"model.vae.weights={tmp_path / 'sd3_vae.safetensors'}"]).model)
    with pytest.raises(ValueError, match="no config.json or vae/config.json; expected a diffusers AutoencoderKL folder"):
        build_tokenizer(load_config(overrides=["model.tokenizer=vae", "model.vae.backend=diffusers",
                                               f"model.vae.weights={tmp_path}"]).model)


def test_yolo_face_refuses_what_is_not_an_ultralytics_pt(tmp_path):
    from tasks.stages import build_stage
    bad = tmp_path / "yolov8n-face.onnx"
    bad.write_bytes(b"\x08\x07onnx")
    with pytest.raises(WeightsFormatError, match=r"is unknown; expected an ultralytics YOLOv8 \.pt checkpoint"):
        build_stage("face", load_config(overrides=["curate.face.backend=yolov8-face", f"curate.face.weights={bad}"]))


def test_checkpoint_encoders_resolve_by_name_override_or_recorded_path(tmp_path, monkeypatch):
    from model.checkpoint import text_encoder_from_meta
    from model.encoder_paths import WEIGHTS_DIR_ENV, resolve_encoder_path
    from model.text_encoder import TextEncoder
    trained = _tiny_t5(tmp_path / "train-machine" / "t5-v1_1-tiny")
    entry = TextEncoder(str(trained), "t5", "cpu", max_length=256).describe()
    assert entry["name"] == "t5-v1_1-tiny" and entry["path"] == str(trained)
    assert resolve_encoder_path("text_encoder", entry) == str(trained)
    (tmp_path / "train-machine").rename(tmp_path / "elsewhere")  # another machine: the path is gone
    with pytest.raises(FileNotFoundError, match=rf"checkpoint's text_encoder 't5-v1_1-tiny' not found .*--text-encoder PATH.*\${WEIGHTS_DIR_ENV}"):
        resolve_encoder_path("text_encoder", entry)
    moved = tmp_path / "elsewhere" / "t5-v1_1-tiny"
    assert resolve_encoder_path("text_encoder", entry, overrides={"text_encoder": str(moved)}) == str(moved)
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path / "elsewhere"))
    te = text_encoder_from_meta(entry, "cpu", ckpt_dir=str(tmp_path / "ckpt"), max_length=256)
    assert te.path == str(moved) and te.dim == 32
    rel = {"name": "t5-v1_1-tiny", "path": "../elsewhere/t5-v1_1-tiny"}  # relative to the checkpoint folder
    monkeypatch.delenv(WEIGHTS_DIR_ENV)
    (tmp_path / "ckpt").mkdir()
    assert resolve_encoder_path("text_encoder", rel, ckpt_dir=str(tmp_path / "ckpt")) == str(tmp_path / "ckpt" / rel["path"])
