"""A tiny open_clip architecture (``tiny-test-clip``) registered with open_clip for tests:
the code path of ViT-L/14 (same classes, OpenAI key layout) at a size that loads in a second."""
from __future__ import annotations

import json
from pathlib import Path

NAME = "tiny-test-clip"
CONFIG = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
          "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1}}


def register(folder: str | Path) -> str:
    """Write the config into ``folder`` and register it; returns the architecture name."""
    import open_clip
    p = Path(folder) / f"{NAME}.json"
    p.write_text(json.dumps(CONFIG))
    open_clip.add_model_config(p)
    return NAME
