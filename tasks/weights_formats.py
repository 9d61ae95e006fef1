"""What a published weights file or folder is, read safely, with one-line errors that say what to do.

Production backends load the files users download as they come (docs/weights-production.md).
Formats are told apart by content, not by name:

- ``safetensors``: 8-byte little-endian header length, then a JSON header.
- ``torchscript``: a zip whose records include ``code/`` (OpenAI's CLIP ``ViT-L-14.pt``). A
  TorchScript archive is *code*: ``torch.jit.load`` compiles and can run it, so it is only read
  where the user opted in (or once, by ``t2i convert-weights``).
- ``torch``: a ``torch.save`` zip (``data.pkl`` without ``code/``) or a legacy pickle; read with
  ``weights_only=True`` (tensors and containers only, no arbitrary objects).
- ``keras-h5``: HDF5 (Keras ``save_weights``/``save`` .h5).
- ``keras-savedmodel``: a folder with ``saved_model.pb`` (TensorFlow, not readable here).
- folders: ``hf`` (``config.json``), ``diffusers-pipeline`` (``model_index.json``).
"""
from __future__ import annotations

import hashlib
import json
import struct
import zipfile
from pathlib import Path

from safetensors import safe_open

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


class WeightsFormatError(ValueError):
    """A weights path that exists but is not in the layout a backend expects (one line)."""


def require_path(path: str | None, key: str) -> Path:
    """``path`` as a Path, or a one-line FileNotFoundError naming the config key to fix."""
    if not path:
        raise FileNotFoundError(f"{key} is not set (a local path; nothing is downloaded)")
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{key}={path!r} does not exist (a local path; nothing is downloaded)")
    return p


def _zip_kind(path: Path) -> str:
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    if any("/code/" in n or n.startswith("code/") for n in names):
        return "torchscript"
    if any(n.endswith("data.pkl") for n in names):
        return "torch"
    return "zip"


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    n = struct.unpack("<Q", head[:8])[0]
    return 2 <= n <= size - 8 and head[8:9] == b"{"


def detect(path: str | Path) -> str:
    """The format of ``path`` (see the module docstring); ``unknown`` when none fits."""
    p = Path(path)
    if p.is_dir():
        if (p / "saved_model.pb").exists():
            return "keras-savedmodel"
        if (p / "model_index.json").exists():
            return "diffusers-pipeline"
        if (p / "config.json").exists():
            return "hf"
        return "folder"
    with open(p, "rb") as f:
        head = f.read(16)
    if head.startswith(HDF5_MAGIC):
        return "keras-h5"
    if _is_safetensors(head, p.stat().st_size):
        return "safetensors"
    if zipfile.is_zipfile(p):
        return _zip_kind(p)
    if head[:1] == b"\x80":  # pickle protocol 2+: a legacy (pre-zip) torch.save
        return "torch"
    return "unknown"


def safetensors_metadata(path: str | Path) -> dict[str, str]:
    with safe_open(str(path), "pt") as f:
        return dict(f.metadata() or {})


def load_tensors(path: str | Path, what: str, expected: str) -> dict:
    """A flat ``{name: tensor}`` from a safetensors or ``weights_only`` torch file.

    ``what`` names the config key, ``expected`` the layout, for the error a wrong file gets.
    A ``{"state_dict": ...}`` wrapper (training checkpoints) and DDP's ``module.`` prefix are
    removed.
    """
    import torch  # heavy
    p = Path(path)
    fmt = detect(p)
    if fmt == "safetensors":
        from safetensors.torch import load_file  # heavy
        return load_file(str(p))
    if fmt == "torchscript":
        raise WeightsFormatError(
            f"{what}={str(p)!r} is a TorchScript archive (code, not only weights); expected {expected}. "
            f"Convert it once: t2i convert-weights {p}")
    if fmt == "keras-h5":
        raise WeightsFormatError(f"{what}={str(p)!r} is a Keras .h5 file; expected {expected}. "
                                 f"Convert it once: t2i convert-weights {p}")
    if fmt != "torch":
        raise WeightsFormatError(f"{what}={str(p)!r} is {fmt}, not a weights file; expected {expected}")
    sd = torch.load(p, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsFormatError(f"{what}={str(p)!r} holds {type(sd).__name__}, not a state dict of tensors; "
                                 f"expected {expected}")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def torchscript_state_dict(path: str | Path) -> dict:
    """Tensors of a TorchScript archive. Compiles the archive's code: call only after an opt-in."""
    import torch  # heavy
    module = torch.jit.load(str(path), map_location="cpu")
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def strict_load(module, sd: dict, what: str, expected: str) -> None:
    """``module.load_state_dict(sd)`` with a one-line error naming the expected layout."""
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k} {tuple(sd[k].shape)} != {tuple(v.shape)}" for k, v in own.items()
              if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = [f"{len(missing)} missing (e.g. {missing[:3]})" if missing else "",
                 f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})" if unexpected else "",
                 f"shape mismatch: {shapes[0]}" if shapes else ""]
        raise WeightsFormatError(f"{what}: keys do not fit {expected}: " + "; ".join(x for x in parts if x))
    module.load_state_dict(sd)


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise WeightsFormatError(f"{path}: unreadable JSON ({type(e).__name__}: {e})") from None


def file_sha256(path: str | Path) -> str:
    """sha256 of a file: the provenance a converted file records."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()
