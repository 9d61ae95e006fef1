"""Load an open_clip model from the CLIP files users actually have, by format.

The LAION aesthetic predictor and the LAION NSFW detector were trained on embeddings of
**OpenAI's** CLIP ViT-L/14, published as a TorchScript archive (``ViT-L-14.pt``). OpenAI's
transformers use QuickGELU; open_clip's ``ViT-L-14`` config uses GELU and gives no warning when
weights come from a file path, so OpenAI weights loaded as ``ViT-L-14`` embed silently wrong.
Here QuickGELU is chosen automatically for OpenAI weights (``quick_gelu: auto``):

- ``torchscript`` (OpenAI ``.pt``): code, so refused unless ``allow_torchscript``; convert it once
  with ``t2i convert-weights ViT-L-14.pt`` (safetensors, tagged ``source_format=openai-torchscript``).
- ``safetensors`` / ``torch`` (``weights_only``): an open_clip state dict, e.g. the LAION
  ``open_clip_model.safetensors`` (GELU) or a converted OpenAI file (QuickGELU from its tag).
- a folder holding ``open_clip_model.safetensors`` / ``open_clip_pytorch_model.bin``.

Every load is strict against ``open_clip.create_model(arch)``, so a wrong architecture is a
one-line error, never a half-loaded model. ``arch`` is an open_clip name (``ViT-L-14``) or the
path of an open_clip model config ``.json`` (a custom or tiny architecture, e.g. the rehearsal's),
registered with open_clip in the process that loads it (Dask workers included).
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tasks.weights_formats import (WeightsFormatError, detect, load_tensors, require_path,
                                   safetensors_metadata, strict_load, torchscript_state_dict)

OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")  # non-weights in OpenAI's archive
OPENAI_TAG = "openai-torchscript"
FOLDER_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                "open_clip_pytorch_model.bin")


@dataclass
class LoadedClip:
    model: object
    preprocess: object
    info: dict = field(default_factory=dict)  # format, quick_gelu, arch, path: what ran


def resolve_file(path: Path, key: str) -> Path:
    """The weights file of ``path`` (a file, or an open_clip folder); error if a folder has none."""
    if not path.is_dir():
        return path
    for name in FOLDER_FILES:
        if (path / name).exists():
            return path / name
    hint = (" (a transformers CLIPModel folder: use the repo's open_clip_model.safetensors, or "
            "OpenAI's ViT-L-14.pt)") if (path / "config.json").exists() else ""
    raise WeightsFormatError(f"{key}={str(path)!r} is a folder without {' or '.join(FOLDER_FILES)}{hint}")


def read_clip_state(path: Path, key: str, allow_torchscript: bool) -> tuple[dict, str, bool]:
    """(state dict, format, is_openai) of a CLIP weights file."""
    fmt = detect(path)
    if fmt == "torchscript":
        if not allow_torchscript:
            raise WeightsFormatError(
                f"{key}={str(path)!r} is OpenAI's TorchScript archive: TorchScript is code and runs when "
                f"loaded. Convert it once with `t2i convert-weights {path}` and point {key} at the "
                f".safetensors it writes, or opt in with curate.clip_allow_torchscript=true")
        sd, is_openai = torchscript_state_dict(path), True
    else:
        expected = "an open_clip state dict (.safetensors, or a torch file readable with weights_only)"
        sd = load_tensors(path, key, expected)
        meta = safetensors_metadata(path) if fmt == "safetensors" else {}
        is_openai = meta.get("source_format") == OPENAI_TAG or "input_resolution" in sd
    for k in OPENAI_EXTRA_KEYS:
        sd.pop(k, None)
    return sd, fmt, is_openai


def resolve_arch(arch: str) -> str:
    """The open_clip architecture name of ``arch``: a name as is, or a config ``.json`` registered
    under its file stem (``open_clip.add_model_config``)."""
    if not arch.endswith(".json"):
        return arch
    import open_clip  # heavy
    path = Path(arch).expanduser()
    if not path.is_file():
        raise WeightsFormatError(f"CLIP architecture {arch!r}: no such open_clip model config file")
    open_clip.add_model_config(path)
    return path.stem


class _DropRandomInitNotice(logging.Filter):
    """Drops open_clip's "No pretrained weights loaded ... Model initialized randomly." record:
    untrue here, because :func:`load_clip_model` fills every tensor from the file (strictly) right
    after ``create_model``; open_clip has no way to build a model for weights given as a state
    dict without that line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Model initialized randomly" not in record.getMessage()


@contextmanager
def _quiet_random_init():
    """open_clip logs through the root logger with ``logging.warning``, which installs a stderr
    handler (``basicConfig``) when the root has none: a NullHandler keeps that from happening and
    the filter drops the one record; both are removed afterwards."""
    root, quiet, null = logging.getLogger(), _DropRandomInitNotice(), logging.NullHandler()
    bare = not root.handlers
    root.addFilter(quiet)
    if bare:
        root.addHandler(null)
    try:
        yield
    finally:
        root.removeFilter(quiet)
        if bare:
            root.removeHandler(null)


def load_clip_model(arch: str, weights: str | None, device: str = "cpu", quick_gelu: str | bool = "auto",
                    allow_torchscript: bool = False, key: str = "curate.clip_weights") -> LoadedClip:
    """open_clip ``arch`` with the weights at ``weights`` (file or folder), eval mode on ``device``.

    ``quick_gelu``: ``auto`` = QuickGELU exactly when the weights are OpenAI's (TorchScript
    archive, a converted file's tag, or OpenAI's extra keys) or ``arch`` says ``-quickgelu``.
    """
    import open_clip  # heavy
    arch = resolve_arch(arch)
    path = resolve_file(require_path(weights, key), key)
    sd, fmt, is_openai = read_clip_state(path, key, allow_torchscript)
    qg = (is_openai or arch.endswith("-quickgelu")) if quick_gelu == "auto" else bool(quick_gelu)
    with _quiet_random_init():
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None, force_quick_gelu=qg)
    if "logit_scale" in sd and sd["logit_scale"].ndim != model.logit_scale.ndim:
        sd["logit_scale"] = sd["logit_scale"].reshape(model.logit_scale.shape)
    transient = {n for n, _ in model.named_buffers()} - set(model.state_dict())  # e.g. attn_mask
    sd = {k: v.float() for k, v in sd.items() if k not in transient}
    strict_load(model, sd, f"{key}={str(path)!r}", f"open_clip {arch}")
    model = model.to(device).eval()
    info = {"arch": arch, "format": fmt, "openai": is_openai, "quick_gelu": qg, "path": str(path)}
    return LoadedClip(model, preprocess, info)
