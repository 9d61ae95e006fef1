"""Captioning backends and caption provenance.

Two backends:
* ``alt`` (offline default): keeps the pair's alt text; ``source='alt'``.
* ``internvl`` (production): an InternVL checkpoint from a local directory, ``source='vlm'``.
  The -hf layout runs here with transformers' native ``InternVLForConditionalGeneration`` and
  ``AutoProcessor``, batched greedy ``generate()``, bf16 on GPU; OpenGVLab's ``internvl_chat``
  custom-code layout runs through ``tasks.internvl_loader`` (opt-in ``trust_remote_code``).

Either way the alt text is kept in ``alt_text`` and the paper's image tags (style words found in
the alt text, the data source) are appended to the caption, e.g.
``"... on a white background. [style: photo; source: laion]"``.

A caption *version* is a hash of everything that changes the text (backend, model, prompt,
generation settings, tags), so the same model and prompt map to the same partitions (a re-run
replaces, never duplicates) and a new prompt is a new version beside the old one.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from PIL import Image

from djepa_t2i.config import default, resolve_device

TAG_OPEN, TAG_CLOSE = " [", "]"


def sha(s: str, n: int = 16) -> str:
    return hashlib.sha256(s.encode("utf-8")).hexdigest()[:n]


@dataclass(frozen=True)
class Provenance:
    source: str            # alt | vlm
    model_id: str          # "alt" or the checkpoint name
    prompt_hash: str | None
    version: str           # "<source>-<hash of every setting that changes the text>"


def provenance(cfg) -> Provenance:
    """Provenance of the captions ``cfg`` (a ``Recaption`` section) produces."""
    if cfg.backend == "alt":
        settings = {"backend": "alt", "append_tags": cfg.append_tags}
        return Provenance("alt", "alt", None, "alt-" + sha(json.dumps(settings, sort_keys=True), 10))
    model_id = cfg.model_id or Path(cfg.weights).resolve().name
    settings = {"backend": cfg.backend, "model_id": model_id, "prompt": cfg.prompt,
                "max_new_tokens": cfg.max_new_tokens, "image_size": cfg.image_size,
                "crop_to_patches": cfg.crop_to_patches, "append_tags": cfg.append_tags}
    return Provenance("vlm", model_id, sha(cfg.prompt),
                      "vlm-" + sha(json.dumps(settings, sort_keys=True), 10))


def image_tags(alt_text: str | None, source: str | None, style_matcher=None) -> list[str]:
    """The paper's appended tags: style words of the alt text, then the data source."""
    tags = []
    if style_matcher is not None and alt_text:
        styles = sorted({c for c, k in style_matcher.match(alt_text) if k == "style"})
        if styles:
            tags.append("style: " + ", ".join(styles))
    if source:
        tags.append(f"source: {source}")
    return tags


def with_tags(caption: str, tags: Sequence[str]) -> str:
    return caption + (TAG_OPEN + "; ".join(tags) + TAG_CLOSE if tags else "")


def strip_tags(caption: str, tags: str | None) -> str:
    """The caption without the suffix :func:`with_tags` added (notions come from the text)."""
    suffix = TAG_OPEN + tags + TAG_CLOSE if tags else ""
    return caption[: -len(suffix)] if suffix and caption.endswith(suffix) else caption


# ---------------------------------------------------------------------------- normalising alt text

# A terminal escape sequence: CSI (ESC [ ... final byte), OSC (ESC ] ... BEL or ESC \\), or a
# two-character escape. The whole sequence goes, not just the ESC that would leave "[31m" behind.
_ESCAPE_SEQ = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-_])?")
# Format characters that belong to the spelling, kept: ZWNJ/ZWJ (Persian, Indic scripts, emoji
# sequences) and the tag characters of subdivision-flag emoji.
_KEEP_FORMAT = {0x200C, 0x200D, *range(0xE0020, 0xE0080)}


def _removable(text: str) -> set[str]:
    """The control (Cc) and format (Cf) characters of ``text`` (bidi overrides and isolates
    included), except whitespace controls (made spaces) and :data:`_KEEP_FORMAT`. Checked per
    distinct character, so a 10 MB caption costs one pass of ``set``."""
    return {c for c in set(text) if unicodedata.category(c) in ("Cc", "Cf")
            and ord(c) not in _KEEP_FORMAT and not c.isspace()}


@dataclass(frozen=True)
class NormalizedCaption:
    text: str  # what curation stores and trains on ("" when nothing printable is left)
    changes: tuple[str, ...]  # what was done to the raw text, empty when nothing was


def normalize_caption(raw: str, max_chars: int) -> NormalizedCaption:
    """Alt text as a caption: Unicode NFC, escape sequences and control/format characters
    (C0/C1 controls, bidi overrides such as U+202E, zero-width spaces, BOM) removed, whitespace
    runs (newlines, tabs, U+2028) made one space, then cut to ``max_chars`` characters. Every
    change is named in ``changes`` so the stored pair says why its caption differs from the raw
    text it keeps."""
    changes = []
    text = unicodedata.normalize("NFC", raw)
    if text != raw:
        changes.append("NFC")
    text, n = _ESCAPE_SEQ.subn("", text)
    if n:
        changes.append(f"removed {n} terminal escape sequence{'s' * (n != 1)}")
    if bad := _removable(text):
        n = len(text)
        text = text.translate(dict.fromkeys(map(ord, bad)))
        n -= len(text)
        changes.append(f"removed {n} control/format character{'s' * (n != 1)}")
    spaced = " ".join(text.split())
    if spaced != text:
        changes.append("whitespace collapsed")
    if len(spaced) > max_chars:
        changes.append(f"cut from {len(spaced)} to {max_chars} characters (curate.caption_max_chars)")
        spaced = spaced[:max_chars].rstrip()
    return NormalizedCaption(spaced, tuple(changes))


# ---------------------------------------------------------------------------- reading images

class ImageReadError(ValueError):
    """Why an image could not be read for captioning (recorded, never raised past the flow)."""


def decode_rgb(data: bytes, max_pixels: int = default("curate.resolution.max_pixels")):
    """RGB PIL image; the pixel count is checked from the header before decoding."""
    try:
        im = Image.open(io.BytesIO(data))
        w, h = im.size
        if w * h > max_pixels:
            raise ImageReadError(f"decompression bomb guard: {w}x{h} > {max_pixels} pixels")
        im.load()
    except ImageReadError:
        raise
    except Exception as e:  # noqa: BLE001  (PIL raises many types on garbage)
        raise ImageReadError(f"undecodable image: {type(e).__name__}: {e}") from None
    return im.convert("RGB")


# ---------------------------------------------------------------------------- InternVL backend

class InternVLCaptioner:
    """Greedy batched captions from a local InternVL checkpoint (native transformers classes)."""

    def __init__(self, weights: str, prompt: str, max_new_tokens: int = default("recaption.max_new_tokens"),
                 image_size: int = default("recaption.image_size"),
                 crop_to_patches: bool = default("recaption.crop_to_patches"), device: str = "auto",
                 dtype: str = "auto", trust_remote_code: bool = default("recaption.trust_remote_code")):
        import torch  # heavy
        from transformers import AutoProcessor, InternVLForConditionalGeneration  # heavy
        if not Path(weights).is_dir():
            raise FileNotFoundError(f"recaption.weights {weights!r} is not a local directory")
        self.device = resolve_device(device)
        use_bf16 = dtype == "bf16" or (dtype == "auto" and self.device.startswith("cuda"))
        self.dtype = torch.bfloat16 if use_bf16 else torch.float32
        self.processor = AutoProcessor.from_pretrained(weights, local_files_only=True,
                                                       trust_remote_code=trust_remote_code)
        self.processor.tokenizer.padding_side = "left"  # batched decoder-only generation
        self.model = InternVLForConditionalGeneration.from_pretrained(
            weights, dtype=self.dtype, local_files_only=True,
            trust_remote_code=trust_remote_code).to(self.device).eval()
        vis = self.model.config.vision_config.image_size
        vis = vis[0] if isinstance(vis, (list, tuple)) else vis
        if image_size != vis:
            raise ValueError(f"recaption.image_size={image_size} but the checkpoint's vision tower "
                             f"takes {vis}x{vis} tiles; set recaption.image_size={vis}")
        self.image_size, self.crop_to_patches = image_size, crop_to_patches
        self.max_new_tokens = max_new_tokens
        self.text = self._prompt_text(prompt)

    def _prompt_text(self, prompt: str) -> str:
        p = self.processor
        if getattr(p, "chat_template", None):
            msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
            return p.apply_chat_template(msgs, add_generation_prompt=True)
        return f"{p.image_token}\n{prompt}"

    def caption(self, images: list) -> list[str]:
        import torch  # heavy
        inputs = self.processor(images=images, text=[self.text] * len(images), return_tensors="pt",
                                padding=True, crop_to_patches=self.crop_to_patches,
                                size={"height": self.image_size, "width": self.image_size})
        inputs = inputs.to(self.device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        new = out[:, inputs["input_ids"].shape[1]:]
        return [" ".join(t.split()) for t in self.processor.batch_decode(new, skip_special_tokens=True)]
