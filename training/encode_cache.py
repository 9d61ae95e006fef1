"""Frozen-encoder outputs cached beside the training shards (issue #15, item 1).

MAR caches its VAE latents once (``main_cache.py``) so that training never runs the VAE; here
``t2i encode`` does the same for both frozen encoders of D-JEPA·T2I (§3.1: the VAE and the T5
text encoder), and the trainer's data path reads the cache when it matches and encodes on the fly
(in the prefetch workers) when it does not. Beside ``shard-000001.tar``:

    shard-000001.text-<key>.safetensors   "<sample key>/<caption sha1>" -> (L, D) text states
    shard-000001.vae-<key>.safetensors    "<sample key>/<h>x<w>[c]"     -> (N, token_dim) tokens

bf16 (half the bytes of fp32, the precision a GPU step consumes them in), read lazily through
safetensors' memory map (only the tensors of the batch are touched). ``<key>`` hashes the
encoder's description (name, dtype, patch size, max length, ...), a fingerprint of its weight
files and :data:`FORMAT`, and the same key is stored in the file's metadata: a cache written by a
different encoder, or by the same encoder at other settings, is never read. A caption changed by
a later recaption has another sha1, and a sample drawn at a size the cache lacks (the trunc_norm
sizes of phase 2) is a miss: both fall back to the encoder.

Latents are written at the phase-1 size (``train.fixed_side``: the paper's 256² centre crop,
where most of its steps go); text states for every sample.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from model.text_encoder import TextStates, text_states
from training.feedback_sampler import Decision
from training.images import load_image

FORMAT = 1
FINGERPRINT_BYTES = 1 << 20
MAX_OPEN = 64  # cache files held open per kind (shards are read in bursts)


def fingerprint(path: str) -> str:
    """sha256 over every file of a weights folder (or one file): relative name, size and the
    first MiB. Cheap on a 10 GB T5-XXL, and any re-save, re-quantisation or swap changes it."""
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.relative_to(p) if p.is_dir() else f.name}:{f.stat().st_size}:".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(FINGERPRINT_BYTES))
    return h.hexdigest()


def _key(description: dict) -> str:
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:16]


def text_key(text_encoder) -> str:
    d = {k: v for k, v in text_encoder.describe().items() if k != "path"}
    return _key({"format": FORMAT, **d, "max_length": text_encoder.max_length,
                 "weights": fingerprint(text_encoder.path)})


def vae_key(tokenizer) -> str | None:
    """None for the pixel tokenizer: its 'encoding' is a reshape, nothing to cache."""
    if tokenizer.kind != "vae":
        return None
    d = {k: v for k, v in tokenizer.describe().items() if k not in ("path", "tile_above", "tile_size")}
    return _key({"format": FORMAT, **d, "dtype": str(next(tokenizer.vae.parameters()).dtype),
                 "weights": fingerprint(tokenizer.path)})


def cache_path(tar: str, kind: str, key: str) -> str:
    return f"{tar[:-4] if tar.endswith('.tar') else tar}.{kind}-{key}.safetensors"


def text_name(key: str, caption: str) -> str:
    return f"{key}/{hashlib.sha1(caption.encode()).hexdigest()[:16]}"


def token_name(d: Decision) -> str:
    return f"{d.key}/{d.out_h}x{d.out_w}{'c' if d.crop else ''}"


class EncodeCache:
    """Read side: tensors by name from the cache files of one encoder key, or None (a miss)."""

    def __init__(self, kind: str, key: str | None):
        self.kind, self.key = kind, key
        self._files: dict[str, tuple | None] = {}
        self._lock = threading.Lock()

    def _open(self, tar: str):
        with self._lock:
            if tar not in self._files:
                if len(self._files) >= MAX_OPEN:  # bound the open memory maps
                    self._files.pop(next(iter(self._files)))
                self._files[tar] = self._load(cache_path(tar, self.kind, self.key))
            return self._files[tar]

    def _load(self, path: str):
        if not os.path.exists(path):
            return None
        f = safe_open(path, "pt")
        if (f.metadata() or {}).get("encoder_key") != self.key:
            return None  # renamed or foreign: never trust a file name alone
        return f, set(f.keys())

    def get(self, tar: str, name: str) -> torch.Tensor | None:
        if self.key is None:
            return None
        f = self._open(tar)
        if f is None or name not in f[1]:
            return None
        with self._lock:
            return f[0].get_tensor(name).float()


@dataclass
class BatchEncoder:
    """What the loader's workers run per sample (tokens) and per batch (text states): the cache
    when it holds the entry, else the encoder itself."""
    tokenizer: object
    text_encoder: object | None = None  # cuts captions at its own max_length (model.text_max_length)
    use_cache: bool = True

    def __post_init__(self):
        self.tokens_cache = EncodeCache("vae", vae_key(self.tokenizer) if self.use_cache else None)
        self.text_cache = EncodeCache(
            "text", text_key(self.text_encoder)
            if self.use_cache and self.text_encoder is not None else None)
        self.hits: dict[str, int] = defaultdict(int)

    def tokens(self, d: Decision) -> torch.Tensor:
        t = self.tokens_cache.get(d.tar, token_name(d))
        self.hits["tokens" if t is not None else "tokens_miss"] += 1
        return t if t is not None else self.tokenizer.encode(load_image(d)).cpu()

    def text(self, decisions: list[Decision]) -> TextStates | None:
        if self.text_encoder is None:
            return None
        rows = [self.text_cache.get(d.tar, text_name(d.key, d.caption)) for d in decisions]
        miss = [i for i, r in enumerate(rows) if r is None]
        self.hits["text"] += len(rows) - len(miss)
        self.hits["text_miss"] += len(miss)
        if miss:
            fresh = self.text_encoder.rows([decisions[i].caption for i in miss])
            for i, r in zip(miss, fresh):
                rows[i] = r
        return text_states(rows, self.text_encoder.dim)


def _write(path: str, tensors: dict[str, torch.Tensor], key: str, extra: dict) -> None:
    """Under a temporary name, renamed into place: a reader (or a rerun's :func:`_complete`)
    never sees half a file; a failed write (a full disk) removes its temporary file."""
    tmp = f"{path}.tmp"
    try:
        save_file({k: v.to(torch.bfloat16).contiguous() for k, v in tensors.items()}, tmp,
                  metadata={"encoder_key": key, "format": str(FORMAT), **extra})
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    os.replace(tmp, path)


def _complete(path: str, key: str, names: set[str]) -> bool:
    if not os.path.exists(path):
        return False
    with safe_open(path, "pt") as f:
        return (f.metadata() or {}).get("encoder_key") == key and names <= set(f.keys())


def encode_shards(index, tokenizer, text_encoder, fixed_side: int | None,
                  batch_size: int = 64) -> dict:
    """Write the cache files of every shard in ``index`` (the lake's ``samples`` table).

    Text states for every sample; VAE tokens at the phase-1 crop when the tokenizer is a VAE and
    ``fixed_side`` is set (a sample whose short side is below it is never drawn, so skipped).
    A shard whose file already holds every entry for this key is left as it is."""
    rows = index.select(["key", "tar", "offset", "size", "caption", "width", "height"]).to_pylist()
    by_tar: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_tar[r["tar"]].append(r)
    tk = text_key(text_encoder)
    vk = vae_key(tokenizer) if fixed_side else None
    out = {"shards": len(by_tar), "text": 0, "tokens": 0, "written": 0, "up_to_date": 0}
    for tar, rs in sorted(by_tar.items()):
        jobs = [("text", tk, lambda rs=rs: _text_tensors(rs, text_encoder, batch_size),
                 {text_name(r["key"], r["caption"]) for r in rs})]
        if vk is not None:
            ds = [_crop_decision(r, fixed_side) for r in rs if min(r["width"], r["height"]) >= fixed_side]
            jobs.append(("vae", vk, lambda ds=ds: {token_name(d): tokenizer.encode(load_image(d)) for d in ds},
                         {token_name(d) for d in ds}))
        for kind, key, make, names in jobs:
            path = cache_path(tar, kind, key)
            out["text" if kind == "text" else "tokens"] += len(names)
            if _complete(path, key, names):
                out["up_to_date"] += 1
                continue
            _write(path, make(), key, {"kind": kind})
            out["written"] += 1
    return out


def _text_tensors(rs: list[dict], text_encoder, batch_size: int) -> dict:
    t = {}
    for i in range(0, len(rs), batch_size):
        chunk = rs[i:i + batch_size]
        for r, s in zip(chunk, text_encoder.rows([r["caption"] for r in chunk])):
            t[text_name(r["key"], r["caption"])] = s
    return t


def _crop_decision(r: dict, side: int) -> Decision:
    """The decision the phase-1 sampler makes for this sample (training/feedback_sampler.py)."""
    return Decision(r["key"], r["tar"], r["offset"], r["size"], r["caption"], r["width"],
                    r["height"], side, side, side / 1000.0, crop=True)

