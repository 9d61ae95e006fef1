"""Load a KL-VAE (diffusers ``AutoencoderKL``) from the layouts its publishers use, by path.

- a VAE folder: ``config.json`` + ``diffusion_pytorch_model.safetensors`` (e.g. ``sd-vae-ft-mse``);
- a pipeline folder with a ``vae/`` subfolder (``stabilityai/stable-diffusion-3-medium-diffusers``,
  ``black-forest-labs/FLUX.1-dev``): the ``vae/`` part is loaded;
- a single ``.safetensors`` file in the original (ldm) key layout (``sdxl_vae.safetensors``,
  FLUX ``ae.safetensors``): ``AutoencoderKL.from_single_file`` with a *local* config
  (``model.vae_config``: a VAE folder, or a pipeline folder with ``vae/config.json``), since
  diffusers would otherwise fetch a config from the hub.

Nothing is downloaded (``local_files_only``); a path that fits none of these is a one-line error.
"""
from __future__ import annotations

from pathlib import Path

import torch

LAYOUTS = ("a diffusers AutoencoderKL folder (config.json), a pipeline folder with vae/, or a single-file "
           ".safetensors VAE with model.vae_config")


def vae_folder(path: Path) -> tuple[Path, str | None]:
    """(root, subfolder) of the AutoencoderKL config under ``path``, or an error naming the layouts."""
    if (path / "config.json").exists():
        return path, None
    if (path / "vae" / "config.json").exists():
        return path, "vae"
    raise ValueError(f"model.vae.weights={str(path)!r}: no config.json or vae/config.json; expected {LAYOUTS}")


def load_vae(weights: str, config: str | None = None, dtype: torch.dtype = torch.float32):
    """An eval-mode ``AutoencoderKL`` from ``weights`` (folder or single file) in ``dtype``."""
    from diffusers import AutoencoderKL  # heavy
    p = Path(weights).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"model.vae.weights={weights!r} does not exist (a local path; nothing is downloaded)")
    if p.is_dir():
        root, sub = vae_folder(p)
        vae = AutoencoderKL.from_pretrained(str(root), subfolder=sub, local_files_only=True, torch_dtype=dtype)
    elif p.suffix == ".safetensors":
        if not config:
            raise ValueError(f"model.vae.weights={weights!r} is a single-file VAE: set model.vae_config to a local folder "
                             "with its config.json (the vae/ folder of the matching diffusers repo)")
        root, sub = vae_folder(Path(config).expanduser())
        vae = AutoencoderKL.from_single_file(str(p), config=str(root), subfolder=sub, local_files_only=True,
                                             torch_dtype=dtype)
    else:
        raise ValueError(f"model.vae.weights={weights!r} is neither a folder nor a .safetensors file; expected {LAYOUTS}")
    return vae.eval().requires_grad_(False)
