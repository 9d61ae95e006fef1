"""Load a checkpoint and generate images: the one path ``t2i generate``, checkpoint evaluation
(``training.evaluate``) and the demo's draw check (``training.draw_check``) share.

Sampling is Algorithm 1 of D-JEPA·T2I (``model.djepa.DJEPAT2I.generate``) under bf16 autocast on
CUDA. Every model and sampling fact comes from the config the checkpoint recorded: the text
length and encoders from its ``model`` section (``model.checkpoint.load_model``), the sampling
settings from its ``evaluate`` section (how its own evaluations sampled); a setting given here
overrides, one the record lacks takes the config's default (the paper's values, Supp. §7).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image
from tqdm import tqdm

from djepa_t2i.config import Evaluate, auto_steps, recorded, resolve_device
from model.checkpoint import load_model

# the sampling settings (config.Evaluate fields) that DJEPAT2I.generate takes
SAMPLING = ("steps", "cfg", "cfg_schedule", "temperature", "flow_steps", "time_shift")


def tensor_to_image(x) -> Image.Image:
    """(C, H, W) in [-1, 1] -> RGB PIL image."""
    arr = ((x.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    if arr.shape[2] == 1:
        arr = arr.repeat(3, axis=2)
    return Image.fromarray(arr[..., :3])


def settings(meta: dict, size: tuple[int, int] | None = None, **given: Any) -> dict:
    """The sampling settings: each of ``given`` (``SAMPLING`` names and ``seed``; None = not
    given), else the checkpoint's recorded ``evaluate`` value, else the config default;
    ``size`` is (H, W)."""
    rec: Evaluate = recorded(meta.get("config"), "evaluate")
    out = {k: given[k] if given.get(k) is not None else getattr(rec, k) for k in (*SAMPLING, "seed")}
    out["size"] = size or (rec.size, rec.size)
    return out


def sampling_of(ev: Evaluate) -> dict:
    """The ``SAMPLING`` settings of an ``evaluate`` section, with its square ``size``."""
    return {**{k: getattr(ev, k) for k in (*SAMPLING, "seed")}, "size": (ev.size, ev.size)}


@dataclass
class Generator:
    """A loaded checkpoint: the network (its tokenizer attached), the text encoder, its meta."""
    model: Any
    tokenizer: Any
    text_encoder: Any
    meta: dict
    device: str

    def __call__(self, prompts: list[str], s: dict, *, seed: int, offset_b: float | None = None,
                 progress: bool = False) -> list[Image.Image]:
        """PIL images for ``prompts`` at ``s['size']`` (H, W) with the sampling settings ``s``
        (``settings``); the text encoder cuts each prompt at the recorded text length."""
        import torch  # heavy
        s = self.resolve(s)
        text = self.text_encoder.encode(prompts)
        bar = tqdm(total=s["steps"], desc="generate", unit="step", disable=not progress)
        with torch.autocast(device_type=self.device, dtype=torch.bfloat16, enabled=self.device == "cuda"):
            out = decode(self.tokenizer, self.model.generate(
                text, [s["size"]] * len(prompts), **{k: s[k] for k in SAMPLING}, seed=seed,
                offset_b=offset_b, on_step=lambda k, n: bar.update(1)))
        bar.close()
        return [tensor_to_image(x) for x in out]

    def resolve(self, s: dict) -> dict:
        """``s`` with ``steps: "auto"`` replaced by the number for ``s['size']`` under this
        checkpoint's tokenizer."""
        return resolve_steps(s, self.tokenizer.grid(*s["size"]))


def decode(tokenizer: Any, generated: list[tuple[Any, tuple[int, int]]]) -> list[Any]:
    """(C, H, W) pixels in [-1, 1] of each image ``DJEPAT2I.generate`` (or a rollout) sampled as
    (tokens, grid): the engine decodes, the network returns tokens (as MAR's engine does)."""
    return [tokenizer.decode(t, g).clamp(-1, 1) for t, g in generated]


def resolve_steps(s: dict, grid: tuple[int, int]) -> dict:
    """``s`` with ``steps: "auto"`` replaced by the count for an image of ``grid`` tokens
    (``config.auto_steps``: D-JEPA·T2I §3.1, 64 at 256 tokens to ~100 at 2K-4K)."""
    return s if s["steps"] != "auto" else {**s, "steps": auto_steps(grid[0] * grid[1])}


def load_generator(ckpt: str, device: str, ema: bool = True, encoder_paths: dict[str, str] | None = None,
                   text_max_length: int | None = None) -> Generator:
    """The checkpoint at ``ckpt`` (EMA weights unless ``ema=False``) on ``device``;
    ``encoder_paths`` overrides the recorded text encoder / VAE paths, ``text_max_length`` the
    recorded ``model.text_max_length``."""
    device = resolve_device(device)
    model, tok, te, meta = load_model(str(ckpt), ema=ema, device=device, encoder_paths=encoder_paths,
                                      text_max_length=text_max_length)
    return Generator(model, tok, te, meta, device)
