"""``t2i convert-weights``: turn a published file that cannot be loaded safely into safetensors, once.

- OpenAI CLIP TorchScript (``ViT-L-14.pt``): TorchScript is code, so the production loader
  refuses it by default; running this command is the explicit, one-time opt-in. The tensors are
  written as ``<name>.safetensors`` tagged ``source_format=openai-torchscript``, which makes
  ``tasks.filters.clip_loader`` pick QuickGELU for them (OpenAI's activation).
- LAION CLIP-based-NSFW-Detector as Keras weights (``.h5`` from Keras 2 ``save``/``save_weights``
  or a Keras 3 ``.weights.h5``): written in the ``clip-mlp`` head's layout (``norm.mean|variance``,
  ``linear_i.weight|bias``, kernels transposed), the layout LAION's own PyTorch port uses.
  The autokeras SavedModel folder in LAION's zip is TensorFlow's format and is not read here:
  use LAION's ``clip_ViT-L-14_openai_binary_nsfw_head.pth`` from the same repository instead.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from djepa_t2i.config import require_exists, require_writable
from tasks.filters.clip_loader import OPENAI_EXTRA_KEYS, OPENAI_TAG
from tasks.weights_formats import WeightsFormatError, detect, file_sha256, require_path, torchscript_state_dict


def read_keras_h5_layers(path: str | Path) -> list[tuple[str, list[tuple[str, np.ndarray]]]]:
    """``[(layer, [(weight name, array), ...]), ...]`` of a Keras 2 or Keras 3 weights h5."""
    import h5py  # heavy
    with h5py.File(path, "r") as f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" in root.attrs:  # Keras 2: names listed in attributes, in model order
            out = []
            for ln in root.attrs["layer_names"]:
                ln = ln.decode() if isinstance(ln, bytes) else str(ln)
                g = root[ln]
                names = [w.decode() if isinstance(w, bytes) else str(w) for w in g.attrs.get("weight_names", [])]
                out.append((ln, [(w, np.asarray(g[w])) for w in names]))
            return out
        if "layers" in root:  # Keras 3 .weights.h5: layers/<name>/vars/<i>
            out = []
            for ln in sorted(root["layers"], key=_natural):
                v = root["layers"][ln].get("vars", {})
                out.append((ln, [(f"vars/{i}", np.asarray(v[i])) for i in sorted(v, key=int)]))
            return out
    raise WeightsFormatError(f"{path}: HDF5 without Keras weights (no layer_names attribute, no layers/ group)")


def _natural(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def keras_head_state_dict(layers) -> dict[str, np.ndarray]:
    """Keras Normalization + Dense layers (in model order) -> the ``NsfwMLP`` state dict."""
    norm, dense = None, []
    for ln, ws in layers:
        names = " ".join(n for n, _ in ws)
        if "mean" in names or (len(ws) >= 2 and ws[0][1].ndim < 2):  # Normalization: mean, variance[, count]
            by = {n: np.squeeze(a) for n, a in ws}
            vec = [a for a in by.values() if a.ndim == 1]
            mean = next((a for n, a in by.items() if "mean" in n), vec[0])
            var = next((a for n, a in by.items() if "variance" in n), vec[1])
            norm = (mean, var)
        elif ws and ws[0][1].ndim == 2:  # Dense: kernel (in, out), bias (out,)
            k = ws[0][1]
            dense.append((ln, k, ws[1][1] if len(ws) > 1 else np.zeros(k.shape[1], np.float32)))
    if not dense:
        raise WeightsFormatError("no Dense layers in the Keras weights: expected LAION's NSFW detector "
                                 "(Normalization, Dense 64/512/256/1 for ViT-L/14)")
    chain = _chain(dense, None if norm is None else norm[0].shape[0])
    d_in = chain[0][1].shape[0]
    mean, var = norm if norm is not None else (np.zeros(d_in, np.float32), np.ones(d_in, np.float32))
    sd = {"norm.mean": mean.astype(np.float32), "norm.variance": var.astype(np.float32)}
    for i, (_, k, b) in enumerate(chain, start=1):
        sd[f"linear_{i}.weight"] = np.ascontiguousarray(k.T.astype(np.float32))
        sd[f"linear_{i}.bias"] = b.astype(np.float32)
    return sd


def _chain(dense, d_in: int | None):
    """The Dense layers in model order (Keras 2: ``layer_names``; Keras 3: creation-order names
    dense, dense_1, ...), checked to chain by shape from the input to one output."""
    dims = [d_in or dense[0][1].shape[0]]
    for name, k, _ in dense:
        if k.shape[0] != dims[-1]:
            raise WeightsFormatError(f"Dense layer {name} takes {k.shape[0]} inputs, the layer before gives {dims[-1]}: "
                                     f"not a chain {[(n, kk.shape) for n, kk, _ in dense]}")
        dims.append(k.shape[1])
    if dims[-1] != 1:
        raise WeightsFormatError(f"last Dense layer {dense[-1][0]} has {dims[-1]} outputs; "
                                 "the NSFW head ends in one (P(nsfw))")
    return dense


def _save(tensors: dict, out: Path, meta: dict[str, str]) -> None:
    import torch  # heavy
    from safetensors.torch import save_file  # heavy
    tmp = out.with_name(f".{out.name}.tmp")
    save_file({k: torch.as_tensor(np.asarray(v) if not isinstance(v, torch.Tensor) else v).contiguous()
               for k, v in tensors.items()}, str(tmp), metadata=meta)
    os.replace(tmp, out)


def _unreadable(p: Path, fmt: str) -> WeightsFormatError:
    if fmt == "keras-savedmodel":
        return WeightsFormatError(f"{p} is a TensorFlow SavedModel (LAION's autokeras zip), not readable without "
                                  "TensorFlow: use LAION's clip_ViT-L-14_openai_binary_nsfw_head.pth directly "
                                  "(curate.nsfw.weights), or save the Keras model's weights as .h5 and convert that")
    return WeightsFormatError(f"{p} is {fmt}: convert-weights reads a TorchScript archive (OpenAI CLIP .pt) "
                              "or Keras weights (.h5); safetensors and torch state dicts load as they are")


def convert(src: str, out: str | None = None) -> tuple[Path, str, int]:
    """Convert ``src``; returns (output path, what it was, tensor count)."""
    p = require_path(src, "convert-weights SRC")
    fmt = detect(p)
    dst = Path(out) if out else p.with_name(p.name.split(".")[0] + ".safetensors")
    if dst.resolve() == p.resolve():
        raise ValueError(f"output {dst} would overwrite the input; pass --out")
    if fmt not in ("torchscript", "keras-h5"):
        raise _unreadable(p, fmt)
    meta = {"source": p.name, "source_sha256": file_sha256(p), "source_format": fmt}
    if fmt == "torchscript":
        sd = {k: v for k, v in torchscript_state_dict(p).items() if k not in OPENAI_EXTRA_KEYS}
        meta["source_format"] = OPENAI_TAG
        kind = "OpenAI CLIP TorchScript -> open_clip state dict (QuickGELU)"
    else:
        sd = keras_head_state_dict(read_keras_h5_layers(p))
        kind = "Keras NSFW detector -> clip-mlp head (norm + linear_1..%d)" % (len(sd) // 2 - 1)
    _save(sd, dst, meta)
    return dst, kind, len(sd)


def add_arguments(p) -> None:
    p.add_argument("src", help="OpenAI CLIP TorchScript .pt, or LAION NSFW detector Keras weights .h5")
    p.add_argument("--out", default=None, help="output .safetensors (default: beside SRC)")


def run(args) -> int:
    require_exists("src", args.src)
    if args.out:
        require_writable("--out", Path(args.out).parent)
    dst, kind, n = convert(args.src, args.out)
    print(f"wrote {dst} ({n} tensors): {kind}")
    return 0
