"""InternVL2 captioners for both published folder layouts, told apart by ``config.json``.

- ``internvl`` (a transformers-native ``-hf`` conversion): ``InternVLForConditionalGeneration``
  and ``AutoProcessor`` (``tasks.captioning.InternVLCaptioner``); no remote code.
- ``internvl_chat`` (what OpenGVLab publishes as ``OpenGVLab/InternVL2-*``): custom code
  (``modeling_internvl_chat.py`` and friends, named in ``auto_map``) that runs when the model
  loads. It is run only with ``recaption.trust_remote_code=true``, only from the local folder
  (``local_files_only``; an ``auto_map`` entry that points at a hub repo, ``repo--module.Class``,
  is refused), and captions come from the model's own ``batch_chat`` on single 448-px tiles
  normalised with ImageNet statistics, as InternVL's model card preprocesses them.
"""
from __future__ import annotations

from pathlib import Path

from djepa_t2i.config import default
from tasks.captioning import InternVLCaptioner
from tasks.weights_formats import WeightsFormatError, read_json, require_path

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LAYOUTS = "an InternVL2 folder: internvl_chat custom code (OpenGVLab/InternVL2-*) or a transformers-native -hf conversion"


def internvl_layout(weights: str | None) -> tuple[str, dict]:
    """(``internvl`` | ``internvl_chat``, config.json) of a local InternVL folder, or a one-line error."""
    p = require_path(weights, "recaption.weights")
    if not p.is_dir() or not (p / "config.json").exists():
        raise WeightsFormatError(f"recaption.weights={weights!r} is not a folder with config.json; expected {LAYOUTS}")
    cfg = read_json(p / "config.json")
    kind = cfg.get("model_type")
    if kind not in ("internvl", "internvl_chat"):
        raise WeightsFormatError(f"recaption.weights={weights!r} has model_type {kind!r}; expected {LAYOUTS}")
    return kind, cfg


def check_local_code(path: Path, cfg: dict) -> None:
    """Every ``auto_map`` class must live in a .py file of this folder (never a hub repo)."""
    auto = cfg.get("auto_map") or {}
    if "AutoModel" not in auto:
        raise WeightsFormatError(f"{path}: internvl_chat config.json has no auto_map.AutoModel (the custom-code entry)")
    for name, ref in auto.items():
        refs = ref if isinstance(ref, list) else [ref]
        for r in (x for x in refs if x):
            if "--" in r:
                raise WeightsFormatError(f"{path}: auto_map.{name}={r!r} points at a hub repo; only code in the "
                                         "local folder runs")
            module = r.rsplit(".", 1)[0]
            if not (path / f"{module}.py").exists():
                raise WeightsFormatError(f"{path}: auto_map.{name} needs {module}.py, missing from the folder")


class InternVLChatCaptioner:
    """Greedy captions from a local ``internvl_chat`` folder through its own ``batch_chat``."""

    def __init__(self, weights: str, prompt: str, max_new_tokens: int = default("recaption.max_new_tokens"),
                 image_size: int = default("recaption.image_size"), device: str = "auto", dtype: str = "auto",
                 trust_remote_code: bool = default("recaption.trust_remote_code")):
        import torch  # heavy
        from transformers import AutoModel, AutoTokenizer  # heavy
        path = Path(weights)
        _, cfg = internvl_layout(weights)
        if not trust_remote_code:
            raise WeightsFormatError(
                f"recaption.weights={weights!r} is InternVL's internvl_chat custom-code folder: its modeling_*.py "
                "runs when it loads. Set recaption.trust_remote_code=true to run that code from this folder "
                "(never from a hub), or point recaption.weights at a transformers-native -hf conversion")
        check_local_code(path, cfg)
        tile = cfg.get("force_image_size") or (cfg.get("vision_config") or {}).get("image_size")
        if tile and image_size != tile:
            raise ValueError(f"recaption.image_size={image_size} but the checkpoint takes {tile}x{tile} tiles; "
                             f"set recaption.image_size={tile}")
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        use_bf16 = dtype == "bf16" or (dtype == "auto" and self.device.startswith("cuda"))
        self.dtype = torch.bfloat16 if use_bf16 else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(weights, trust_remote_code=True, local_files_only=True)
        self.model = AutoModel.from_pretrained(weights, dtype=self.dtype, trust_remote_code=True,
                                               local_files_only=True).to(self.device).eval()
        self.image_size, self.max_new_tokens = image_size, max_new_tokens
        self.question = f"<image>\n{prompt}"

    def pixel_values(self, images: list):
        """One tile per image: resize to the tile side (bicubic), ImageNet mean/std."""
        import torch  # heavy
        from torchvision.transforms import v2 as T  # heavy
        tf = T.Compose([T.ToImage(), T.Resize((self.image_size, self.image_size), interpolation=T.InterpolationMode.BICUBIC),
                        T.ToDtype(torch.float32, scale=True), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
        return torch.stack([tf(im.convert("RGB")) for im in images])

    def caption(self, images: list) -> list[str]:
        import torch  # heavy
        pv = self.pixel_values(images).to(self.device, self.dtype)
        with torch.inference_mode():
            out = self.model.batch_chat(self.tokenizer, pv, questions=[self.question] * len(images),
                                        generation_config={"max_new_tokens": self.max_new_tokens, "do_sample": False},
                                        num_patches_list=[1] * len(images))
        return [" ".join(str(t).split()) for t in out]


def load_captioner(cfg):
    """The captioner for ``cfg`` (a ``Recaption`` section with backend ``internvl``), by layout."""
    kind, _ = internvl_layout(cfg.weights)
    if kind == "internvl_chat":
        if cfg.crop_to_patches:
            raise ValueError("recaption.crop_to_patches is for the -hf layout; internvl_chat runs one tile per image")
        return InternVLChatCaptioner(cfg.weights, cfg.prompt, cfg.max_new_tokens, cfg.image_size, cfg.device,
                                     cfg.dtype, cfg.trust_remote_code)
    return InternVLCaptioner(cfg.weights, cfg.prompt, cfg.max_new_tokens, cfg.image_size, cfg.crop_to_patches,
                             cfg.device, cfg.dtype, cfg.trust_remote_code)
