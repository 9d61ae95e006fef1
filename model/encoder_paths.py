"""Portable encoder references in checkpoints: a name plus an overridable path.

A checkpoint's ``meta.json`` records the frozen encoders it was trained with (``text_encoder``,
``tokenizer`` for the VAE) by ``name`` (the weights folder or file name, e.g. ``t5-v1_1-xxl``,
``sd3-vae``) and the ``path`` it was trained from. On another machine that path rarely exists,
so ``resolve_encoder_path`` looks, in order, at:

1. an explicit override (``overrides[kind]``, e.g. from ``generate --text-encoder PATH``);
2. ``$DJEPA_WEIGHTS_DIR/<name>`` (one folder holding a team's published weights);
3. the recorded path, absolute or relative to the checkpoint folder;

and otherwise fails with every place it tried and how to point it elsewhere.
"""
from __future__ import annotations

import os
from pathlib import Path

WEIGHTS_DIR_ENV = "DJEPA_WEIGHTS_DIR"


def encoder_name(path: str) -> str:
    """The portable name of a weights path: its last component (``/models/t5-v1_1-xxl`` -> ``t5-v1_1-xxl``)."""
    return Path(str(path).rstrip("/")).name


def recorded_path(path: str | None) -> str | None:
    """The path a checkpoint records: absolute, since a path relative to the training run's working
    directory would later be read relative to the checkpoint folder (step 3 above) and miss."""
    return None if path is None else os.path.abspath(os.path.expanduser(str(path)))


def resolve_encoder_path(kind: str, entry: dict, ckpt_dir: str | None = None,
                         overrides: dict[str, str] | None = None) -> str:
    """The local path of the ``kind`` encoder (``text_encoder`` | ``vae``) a checkpoint recorded."""
    tried = []
    override = (overrides or {}).get(kind)
    if override:
        if Path(override).expanduser().exists():
            return str(Path(override).expanduser())
        raise FileNotFoundError(f"{kind} override {override!r} does not exist")
    name = entry.get("name") or encoder_name(entry["path"])
    root = os.environ.get(WEIGHTS_DIR_ENV)
    candidates = [Path(root) / name] if root else []
    recorded = Path(entry["path"]).expanduser()
    candidates.append(recorded if recorded.is_absolute() or not ckpt_dir else Path(ckpt_dir) / recorded)
    for c in candidates:
        if c.exists():
            return str(c)
        tried.append(str(c))
    raise FileNotFoundError(f"checkpoint's {kind} {name!r} not found (tried {', '.join(tried)}); pass an override "
                            f"(e.g. generate --{kind.replace('_', '-')} PATH) or set ${WEIGHTS_DIR_ENV} to a folder "
                            f"holding {name}")
