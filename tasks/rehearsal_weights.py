"""``t2i rehearsal-weights DIR``: every production backend's weights, in the published format, at
tiny widths, so that configs/phase1.yaml and phase2.yaml (plus configs/rehearsal.yaml) run the
production path end to end on a CPU in minutes (``make rehearse``).

Each file is written the way its publisher's is, so the production loaders read it unchanged:

| file | published counterpart (docs/weights-production.md) |
|---|---|
| ``clip/open_clip_model.safetensors`` + ``clip/ViT-tiny-rehearsal.json`` | open_clip ViT-L/14 state dict; the tiny architecture is an open_clip model config (``curate.clip_model`` takes its path) |
| ``aesthetic/sac+logos+ava1-l14-linearMSE.pth`` | LAION improved-aesthetic-predictor (``torch.save`` state dict) |
| ``nsfw/clip_ViT-L-14_openai_binary_nsfw_head.pth`` | LAION CLIP-based-NSFW-Detector PyTorch head |
| ``yolov8-face/model.pt`` | an ultralytics YOLOv8 face ``.pt`` (one class, ``face``) |
| ``InternVL2-tiny/`` | OpenGVLab InternVL2 ``internvl_chat`` folder (tasks/rehearsal_internvl.py) |
| ``t5-v1_1-tiny/`` | a T5 encoder folder (``T5EncoderModel`` + tokenizer), as SD3's ``text_encoder_3`` |
| ``sd3-vae-tiny/`` | a diffusers ``AutoencoderKL`` folder with SD3's latent layout (16 channels, stride 8, scaling/shift factors) |
| ``yolov8-coco/yolov8n-coco.pt`` + ``geneval/evaluation_metadata.jsonl`` | GenEval's COCO detector and a few prompts in GenEval's metadata format |

OCR needs no file: rapidocr's bundled model is the production one.

The weights are random (seeded), except where a random head would decide the rehearsal's
outcome: the aesthetic head scores every image 6.0 (above the paper's 5.0) and the NSFW head
0.02, so the production thresholds pass images and every later step has data. A random YOLO
detects nothing at its default confidence. Nothing here is trained; the rehearsal proves the
path (formats, loaders, config plumbing, lake records), not quality.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
import yaml

from djepa_t2i.config import require_writable
from tasks.filters.aesthetic import AestheticMLP
from tasks.filters.clip_loader import resolve_arch
from tasks.filters.nsfw import NsfwMLP
from tasks.rehearsal_internvl import build_tokenizer, write_internvl_chat
from tasks.yolo import yolo_class

CLIP_ARCH = "ViT-tiny-rehearsal"
# ViT-L/14's code path (same open_clip classes and key layout) at a width that loads in a second
CLIP_CONFIG = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
               "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1}}
AESTHETIC_SCORE, NSFW_P = 6.0, 0.02  # constant head outputs (see the module docstring)
INTERNVL_TILE = 56
# GenEval's metadata format (its prompts/evaluation_metadata.jsonl has 553 such lines): one per tag
GENEVAL_PROMPTS = [
    {"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"},
    {"tag": "two_object", "include": [{"class": "cat", "count": 1}, {"class": "dog", "count": 1}],
     "prompt": "a photo of a cat and a dog"},
    {"tag": "counting", "include": [{"class": "apple", "count": 3}], "exclude": [{"class": "apple", "count": 4}],
     "prompt": "a photo of three apples"},
    {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}], "prompt": "a photo of a red car"},
    {"tag": "position", "include": [{"class": "cup", "count": 1},
                                    {"class": "book", "count": 1, "position": ["left of", 0]}],
     "prompt": "a photo of a book left of a cup"},
    {"tag": "color_attr", "include": [{"class": "chair", "count": 1, "color": "blue"},
                                      {"class": "vase", "count": 1, "color": "yellow"}],
     "prompt": "a photo of a blue chair and a yellow vase"},
]


def _seed(seed: int) -> None:
    torch.manual_seed(seed)


def _constant(last: torch.nn.Linear, value: float) -> None:
    """Make a head's last Linear output ``value`` before its activation, whatever the input."""
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(value)


def write_clip(out: Path) -> tuple[Path, Path]:
    """(architecture .json, open_clip_model.safetensors) of a tiny open_clip CLIP (GELU)."""
    import open_clip  # heavy
    from safetensors.torch import save_file  # heavy

    out.mkdir(parents=True, exist_ok=True)
    arch = out / f"{CLIP_ARCH}.json"
    arch.write_text(json.dumps(CLIP_CONFIG, indent=1))
    _seed(0)
    model = open_clip.create_model(resolve_arch(str(arch)), pretrained=None)
    weights = out / "open_clip_model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    return arch, weights


def write_aesthetic(out: Path, dim: int) -> Path:
    """LAION's aesthetic MLP as published (a ``torch.save`` state dict) over ``dim``-d embeddings."""
    _seed(1)
    head = AestheticMLP(dim)
    _constant(head.layers[-1], AESTHETIC_SCORE)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "sac+logos+ava1-l14-linearMSE.pth"
    torch.save(head.state_dict(), path)
    return path


def write_nsfw(out: Path, dim: int) -> Path:
    """LAION's CLIP NSFW head (norm + linear_1..4, sigmoid) with L/14's hidden sizes over ``dim``."""
    _seed(2)
    head = NsfwMLP((dim, 64, 512, 256, 1))
    _constant(head.linear_4, math.log(NSFW_P / (1 - NSFW_P)))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "clip_ViT-L-14_openai_binary_nsfw_head.pth"
    torch.save(head.state_dict(), path)
    return path


def write_yolo(path: Path, names: dict[int, str]) -> Path:
    """An ultralytics YOLOv8n ``.pt`` built from its yaml with ``names`` as its classes."""
    from ultralytics.nn.tasks import DetectionModel  # heavy

    _seed(3)
    yolo = yolo_class()("yolov8n.yaml")
    yolo.model = DetectionModel("yolov8n.yaml", nc=len(names), verbose=False)
    yolo.model.names = names
    path.parent.mkdir(parents=True, exist_ok=True)
    yolo.save(str(path))
    return path


def coco_names() -> dict[int, str]:
    """COCO's 80 class names as ultralytics ships them (a COCO ``.pt`` carries this table)."""
    from ultralytics.utils import ROOT  # heavy
    return yaml.safe_load((ROOT / "cfg/datasets/coco.yaml").read_text())["names"]


def write_t5(out: Path) -> Path:
    """A T5 v1.1-style encoder folder (gated GELU, no tied head): ``T5EncoderModel`` + tokenizer."""
    from transformers import T5Config, T5EncoderModel  # heavy
    _seed(4)
    tok = build_tokenizer()
    cfg = T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                   feed_forward_proj="gated-gelu", tie_word_embeddings=False, pad_token_id=tok.pad_token_id,
                   eos_token_id=tok.eos_token_id, decoder_start_token_id=tok.pad_token_id)
    T5EncoderModel(cfg).eval().save_pretrained(out)
    tok.save_pretrained(out)
    return out


def write_vae(out: Path) -> Path:
    """A diffusers ``AutoencoderKL`` folder laid out as SD3's VAE (16 latent channels, stride 8,
    its scaling and shift factors) at widths of 8-16 channels."""
    from diffusers import AutoencoderKL  # heavy
    _seed(5)
    AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(8, 8, 16, 16),
                  down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                  layers_per_block=1, norm_num_groups=4, sample_size=64, scaling_factor=1.5305,
                  shift_factor=0.0609, use_quant_conv=False, use_post_quant_conv=False).eval().save_pretrained(out)
    return out


def write_geneval_metadata(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(p) + "\n" for p in GENEVAL_PROMPTS))
    return path


def write_all(out: str | Path) -> dict[str, str]:
    """Write every file under ``out``; returns ``{what: path}`` (the paths configs/rehearsal.yaml names)."""
    out = Path(out)
    arch, clip = write_clip(out / "clip")
    dim = CLIP_CONFIG["embed_dim"]
    files = {
        "clip_model": arch, "clip_weights": clip,
        "aesthetic": write_aesthetic(out / "aesthetic", dim),
        "nsfw": write_nsfw(out / "nsfw", dim),
        "face": write_yolo(out / "yolov8-face" / "model.pt", {0: "face"}),
        "internvl": write_internvl_chat(out / "InternVL2-tiny", image_size=INTERNVL_TILE),
        "t5": write_t5(out / "t5-v1_1-tiny"),
        "vae": write_vae(out / "sd3-vae-tiny"),
        "geneval_detector": write_yolo(out / "yolov8-coco" / "yolov8n-coco.pt", coco_names()),
        "geneval_metadata": write_geneval_metadata(out / "geneval" / "evaluation_metadata.jsonl"),
    }
    return {k: str(v) for k, v in files.items()}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="folder to write the weights into (configs/rehearsal.yaml reads runs/rehearse/weights)")


def run(args) -> int:
    require_writable("out", args.out)
    for what, path in write_all(args.out).items():
        print(f"{what:<18} {path}")
    print("ocr                rapidocr's bundled model (the production one; no file)")
    return 0
