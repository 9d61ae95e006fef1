"""Image tokenizers: images <-> sequences of patch tokens, and packing into one batch.

``PixelTokenizer`` (the embedded default) cuts raw pixels into p x p patches. ``VAETokenizer``
encodes with a diffusers ``AutoencoderKL`` loaded from a local path (model/vae_loader.py: a VAE
folder, a pipeline's ``vae/``, or a single file; SD/SD3/FLUX-style
VAEs), normalises latents with the VAE's own scaling/shift factors and patchifies them; above
``tile_above`` pixels it switches to diffusers' tiled encode/decode so 2K-4K images fit in memory
(D-JEPA·T2I Supp. "Scaling to 4K Resolution": tiles above 2K). Tiles are ``tile_size`` pixels
(default: the VAE's own ``sample_size``, 1024 for SD3/FLUX) overlapping by a quarter and blended,
so peak memory follows the tile, not the image; the seam this leaves is measured in
docs/benchmarks.md (bench/hires_generate.py --seam).
"""
from __future__ import annotations

import threading

import torch

from djepa_t2i.config import default, resolve_device

from model.batch import PackedImages, cu_seqlens_from_lengths
from model.encoder_paths import encoder_name, recorded_path, resolve_encoder_path
from model.vae_loader import load_vae


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    c, h, w = x.shape
    return x.reshape(c, h // p, p, w // p, p).permute(1, 3, 0, 2, 4).reshape((h // p) * (w // p), c * p * p)


def unpatchify(tokens: torch.Tensor, grid: tuple[int, int], c: int, p: int) -> torch.Tensor:
    h, w = grid
    if tokens.shape != (h * w, c * p * p):
        raise ValueError(f"tokens {tuple(tokens.shape)} do not fit grid {grid} x {c * p * p}")
    return tokens.reshape(h, w, c, p, p).permute(2, 0, 3, 1, 4).reshape(c, h * p, w * p)


class PixelTokenizer:
    kind = "pixel"

    def __init__(self, patch_size: int, channels: int = 3):
        self.patch_size, self.channels = patch_size, channels
        self.token_dim = channels * patch_size ** 2
        self.stride = patch_size  # pixels per token side

    def describe(self) -> dict:
        return {"kind": self.kind, "patch_size": self.patch_size, "channels": self.channels}

    def grid(self, height: int, width: int) -> tuple[int, int]:
        if height % self.stride or width % self.stride:
            raise ValueError(f"size {height}x{width} is not a multiple of {self.stride} pixels")
        return height // self.stride, width // self.stride

    def encode(self, img: torch.Tensor) -> torch.Tensor:
        if img.dim() != 3 or img.shape[0] != self.channels:
            raise ValueError(f"expected ({self.channels}, H, W) in [-1, 1], got {tuple(img.shape)}")
        self.grid(img.shape[1], img.shape[2])
        return patchify(img, self.patch_size)

    def decode(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        return unpatchify(tokens, grid, self.channels, self.patch_size)


class VAETokenizer:
    kind = "vae"

    def __init__(self, path: str, patch_size: int = 1, tile_above: int = 2048, device: str = "cpu",
                 dtype: torch.dtype = torch.float32, config: str | None = None, tile_size: int | None = None):
        self.path, self.patch_size, self.tile_above, self.config = str(path), patch_size, tile_above, config
        self.vae = load_vae(self.path, config, dtype).to(device=device)
        cfg = self.vae.config
        self.channels = cfg.latent_channels
        self.scale = float(cfg.scaling_factor or 1.0)
        self.shift = float(getattr(cfg, "shift_factor", None) or 0.0)
        self.factor = 2 ** (len(cfg.block_out_channels) - 1)
        self.tile_size = tile_size
        if tile_size is not None:
            if tile_size % self.factor or tile_size < 4 * self.factor:
                raise ValueError(f"VAE tile_size={tile_size}: expected a multiple of {self.factor} px, at least "
                                 f"{4 * self.factor}")
            self.vae.tile_sample_min_size, self.vae.tile_latent_min_size = tile_size, tile_size // self.factor
        self.token_dim = self.channels * patch_size ** 2
        self.stride = self.factor * patch_size
        self._lock = threading.Lock()  # data workers share the VAE; tiling is a per-call switch

    def describe(self) -> dict:
        return {"kind": self.kind, "name": encoder_name(self.path), "path": recorded_path(self.path),
                "patch_size": self.patch_size, "tile_above": self.tile_above, "tile_size": self.tile_size,
                "config": recorded_path(self.config)}

    grid = PixelTokenizer.grid

    def _tiling(self, height: int, width: int) -> None:
        if max(height, width) > self.tile_above:
            self.vae.enable_tiling()
        else:
            self.vae.disable_tiling()

    @torch.no_grad()
    def encode(self, img: torch.Tensor) -> torch.Tensor:
        if img.dim() != 3 or img.shape[0] != 3:
            raise ValueError(f"expected (3, H, W) in [-1, 1], got {tuple(img.shape)}")
        self.grid(img.shape[1], img.shape[2])
        p = next(self.vae.parameters())
        with self._lock:
            self._tiling(img.shape[1], img.shape[2])
            lat = self.vae.encode(img[None].to(p.device, p.dtype)).latent_dist.mode()[0]
        lat = (lat.float() - self.shift) * self.scale
        return patchify(lat, self.patch_size)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        lat = unpatchify(tokens.float(), grid, self.channels, self.patch_size)
        lat = lat / self.scale + self.shift
        p = next(self.vae.parameters())
        with self._lock:
            self._tiling(grid[0] * self.stride, grid[1] * self.stride)
            return self.vae.decode(lat[None].to(p.device, p.dtype)).sample[0].float()


def vae_dtype(name: str) -> torch.dtype:
    """``model.vae.dtype`` as a torch dtype (``auto`` and ``fp32``: float32)."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(name, torch.float32)


def build_tokenizer(cfg) -> PixelTokenizer | VAETokenizer:
    """cfg: ``djepa_t2i.config.Model``."""
    if cfg.tokenizer == "pixel":
        return PixelTokenizer(cfg.patch_size)
    if not cfg.vae.weights:
        raise ValueError("model.tokenizer=vae needs model.vae.weights (a local AutoencoderKL dir)")
    dev = resolve_device(cfg.vae.device)
    return VAETokenizer(cfg.vae.weights, patch_size=cfg.vae_patch_size, tile_above=cfg.vae_tile_above,
                        device=dev, dtype=vae_dtype(cfg.vae.dtype), config=cfg.vae_config)


def tokenizer_from_meta(meta: dict, device: str = "cpu", ckpt_dir: str | None = None,
                        overrides: dict[str, str] | None = None,
                        dtype: torch.dtype = torch.float32) -> PixelTokenizer | VAETokenizer:
    """The tokenizer a checkpoint recorded; a VAE path is resolved portably (model/encoder_paths.py);
    ``dtype``: the VAE's weights dtype (the recorded ``model.vae.dtype``)."""
    if meta["kind"] == "pixel":
        return PixelTokenizer(meta["patch_size"], meta.get("channels", 3))
    path = resolve_encoder_path("vae", meta, ckpt_dir, overrides)
    return VAETokenizer(path, meta["patch_size"], meta["tile_above"], device=device, dtype=dtype,
                        config=meta.get("config"), tile_size=meta.get("tile_size"))


def pack(images: list[torch.Tensor], tokenizer, max_image_tokens: int = default("train.max_image_tokens"),
         generator: torch.Generator | None = None) -> PackedImages:
    """Tokenize and concatenate; an image above ``max_image_tokens`` keeps a random subset
    (random token drop, indices recorded in ``keep`` so positions stay correct)."""
    return pack_tokens([tokenizer.encode(img) for img in images],
                       [tokenizer.grid(img.shape[1], img.shape[2]) for img in images],
                       max_image_tokens, generator)


def pack_tokens(tokens: list[torch.Tensor], grids: list[tuple[int, int]],
                max_image_tokens: int = default("train.max_image_tokens"),
                generator: torch.Generator | None = None) -> PackedImages:
    """:func:`pack` of images already tokenized (by a data worker, or read from the encode cache)."""
    toks, keep = [], []
    for t in tokens:
        if t.shape[0] > max_image_tokens:
            k = torch.randperm(t.shape[0], generator=generator)[:max_image_tokens].sort().values
            t = t[k.to(t.device)]
            keep.append(k)
        else:
            keep.append(None)
        toks.append(t)
    lengths = [t.shape[0] for t in toks]
    return PackedImages(torch.cat(toks), grids, cu_seqlens_from_lengths(lengths), keep)
