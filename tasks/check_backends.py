"""``t2i check-backends``: load every configured backend, run it on one image, say what ran.

The check a newcomer runs after pointing the config at downloaded weights
(docs/weights-production.md): each curate filter in ``curate.order`` (and the shared CLIP
embedder when a head needs it), the captioner, the text encoder, the VAE when
``model.tokenizer=vae``, and the evaluation CLIP / detector when configured. One line per
backend: step, backend, the library version that ran it, the weights, a score on the image and
the seconds it took; a backend that fails prints its one-line error, the others still run, and
the exit code is 1.
"""
from __future__ import annotations

import importlib.metadata as md
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from djepa_t2i.cli_args import add_config_arguments
from djepa_t2i.config import load_config, require_exists
from model.text_encoder import TextEncoder
from model.tokenizers import build_tokenizer
from tasks.evaluators.clipscore import CLIPScorer
from tasks.filters import MODEL_STAGES
from tasks.filters.clip_embed import ClipEmbedder
from tasks.internvl_loader import load_captioner
from tasks.stages import CLIP_EMBEDDING, build_stage, stage_device
from tasks.yolo import yolo_class

# backend -> the distribution whose code runs it (its version is printed)
LIBRARY = {"offline-nrq": "opencv-python-headless", "haar": "opencv-python-headless", "rapidocr": "rapidocr",
           "nudenet": "nudenet", "laion-mlp": "torch", "clip-mlp": "torch", "yolov8-face": "ultralytics",
           "open_clip": "open_clip_torch", "internvl": "transformers", "alt": "djepa-t2i", "offline": "transformers",
           "t5": "transformers", "hf": "transformers", "diffusers": "diffusers", "yolo": "ultralytics",
           "rules": "djepa-t2i", "img2dataset-columns": "djepa-t2i"}


@dataclass
class Check:
    step: str
    backend: str
    weights: str | None
    score: str = ""
    error: str | None = None
    seconds: float = 0.0

    def line(self) -> str:
        lib = LIBRARY.get(self.backend, "")
        try:
            ver = f"{lib} {md.version(lib)}" if lib else "-"
        except md.PackageNotFoundError:
            ver = f"{lib} (not installed)"
        what = f"FAILED: {self.error}" if self.error else self.score
        return (f"{self.step:<14}{self.backend:<18}{ver:<32}{Path(self.weights).name if self.weights else '-':<40}"
                f"{self.seconds:>6.1f}s  {what}")


def _timed(check: Check, fn) -> Check:
    t = time.perf_counter()
    try:
        check.score = fn()
    except Exception as e:  # noqa: BLE001  (every failure is reported, one line each)
        check.error = f"{type(e).__name__}: {e}".splitlines()[0]
    check.seconds = time.perf_counter() - t
    return check


def _filters(cfg, image) -> list[Check]:
    c, out, emb = cfg.curate, [], {}
    stages = [s for s in MODEL_STAGES if s in c.order and getattr(c, s).backend != "none"]
    heads = [s for s in stages if getattr(c, s).backend in ("laion-mlp", "clip-mlp")]
    if heads:
        def embed():
            e = ClipEmbedder(c.clip_model, c.clip_weights, stage_device(cfg, getattr(c, heads[0]).device), 1, c.clip_quick_gelu,
                             c.clip_allow_torchscript)
            emb["x"] = e([image])
            return f"{emb['x'].shape[1]}-d embedding, quick_gelu={e.info['quick_gelu']}, format={e.info['format']}"
        out.append(_timed(Check("clip", "open_clip", c.clip_weights), embed))
    for s in stages:
        b = getattr(c, s)

        def run(s=s, check=None):
            f = build_stage(s, cfg)
            check.backend = f.backend  # the resolved name ("offline" -> offline-nrq, nudenet, haar)
            if CLIP_EMBEDDING in f.reads and "x" not in emb:
                raise RuntimeError("no CLIP embedding (see the clip line)")
            r = f([image], emb.get("x"))[0]
            return f"{f.backend}: score {r.score:.4f} ({'passed' if r.passed else 'rejected: ' + str(r.reason)})"
        check = Check(s, b.backend, b.weights)
        out.append(_timed(check, lambda run=run, check=check: run(check=check)))
    return out


def _encoders(cfg, image) -> list[Check]:
    import torch  # heavy
    out = []
    r = cfg.recaption
    if r.backend == "internvl":
        def caption():
            return repr(load_captioner(r).caption([image])[0][:80])
        out.append(_timed(Check("recaption", r.backend, r.weights), caption))
    te = cfg.model.text_encoder

    def encode():
        enc = TextEncoder.from_config(cfg.model)
        s = enc.encode(["a photo of an astronaut"])
        return f"{enc.describe()['model_type']} {enc.dtype}: {s.lengths[0]} tokens x {enc.dim}, mean |h| {s.states.abs().mean():.4f}"
    out.append(_timed(Check("text_encoder", te.backend, te.weights), encode))
    if cfg.model.tokenizer == "vae":
        def roundtrip():
            tok = build_tokenizer(cfg.model)
            side = 256 // tok.stride * tok.stride
            x = torch.from_numpy(np.asarray(image.resize((side, side)), np.float32) / 127.5 - 1).permute(2, 0, 1)
            y = tok.decode(tok.encode(x), tok.grid(side, side)).clamp(-1, 1)
            psnr = 10 * torch.log10(4 / ((y.cpu() - x) ** 2).mean())
            return f"{side}x{side} encode+decode PSNR {psnr:.2f} dB"
        out.append(_timed(Check("vae", cfg.model.vae.backend, cfg.model.vae.weights), roundtrip))
    return out


def _evaluators(cfg, image) -> list[Check]:
    e, out = cfg.evaluate, []
    if e.clip.backend != "none":
        def clipscore():
            s = CLIPScorer(e.clip_arch, e.clip.weights, e.clip.device, batch_size=e.clip.batch_size)
            return f"CLIPScore('a photo of an astronaut') {s.score([image], ['a photo of an astronaut'])[0]:.2f}"
        out.append(_timed(Check("eval.clip", e.clip.backend, e.clip.weights), clipscore))
    if e.detector.backend != "none":
        def detect():
            r = yolo_class()(e.detector.weights).predict(np.asarray(image)[:, :, ::-1], verbose=False)[0]
            names = sorted({r.names[int(k)] for k in r.boxes.cls.tolist()}) if r.boxes is not None else []
            return f"{len(names)} classes detected: {', '.join(names[:5])}"
        out.append(_timed(Check("eval.detector", e.detector.backend, e.detector.weights), detect))
    return out


def check_backends(cfg, image) -> list[Check]:
    """Run every configured backend on ``image`` (a PIL RGB image)."""
    return _filters(cfg, image) + _encoders(cfg, image) + _evaluators(cfg, image)


def add_arguments(p) -> None:
    add_config_arguments(p, "curate.face.weights=/models/yolov8n-face.pt")
    p.add_argument("--image", default=None, help="image to run on (default: skimage's astronaut)")


def run(args) -> int:

    cfg = load_config(args.config, args.overrides)
    if args.image:
        require_exists("--image", args.image)
        image = Image.open(args.image).convert("RGB")
    else:
        import skimage.data  # heavy
        image = Image.fromarray(skimage.data.astronaut())
    checks = check_backends(cfg, image)
    print(f"{'step':<14}{'backend':<18}{'library':<32}{'weights':<40}{'time':>7}  result")
    for c in checks:
        print(c.line())
    failed = [c.step for c in checks if c.error]
    print(f"{len(checks) - len(failed)}/{len(checks)} backends ran" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
