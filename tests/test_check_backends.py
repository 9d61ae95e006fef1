"""``t2i check-backends`` runs every configured backend on one image and reports each in one line."""
import os

import pytest
import skimage.data
from PIL import Image

from djepa_t2i.config import load_config
from tasks.check_backends import check_backends


@pytest.mark.slow  # ~40 s on 2 busy cores: imports open_clip + transformers and loads MiniLM
def test_check_backends_reports_what_ran_and_what_failed(tmp_path):
    import torch

    from tasks.filters.nsfw import NsfwMLP
    torch.manual_seed(0)
    head = tmp_path / "clip_ViT-L-14_openai_binary_nsfw_head.pth"
    torch.save(NsfwMLP().state_dict(), head)
    cfg = load_config(overrides=["curate.order=[resolution,aesthetic,nsfw,face]", "curate.nsfw.backend=clip-mlp",
                                 f"curate.nsfw.weights={head}", f"curate.clip_weights={os.devnull}"])
    checks = {c.step: c for c in check_backends(cfg, Image.fromarray(skimage.data.astronaut()))}
    assert list(checks) == ["clip", "aesthetic", "nsfw", "face", "text_encoder"]
    assert checks["aesthetic"].backend == "offline-nrq" and checks["aesthetic"].score.startswith("offline-nrq: score ")
    assert checks["face"].score == "haar: score 0.0344 (passed)"
    assert "384" in checks["text_encoder"].score and checks["text_encoder"].error is None
    # /dev/null is no CLIP checkpoint: the clip line says why, the head that needs it says so too
    assert checks["clip"].error.startswith("WeightsFormatError: curate.clip_weights='/dev/null' is unknown, not a weights file")
    assert checks["nsfw"].error == "RuntimeError: no CLIP embedding (see the clip line)"
    line = checks["face"].line()
    assert line.split()[:3] == ["face", "haar", "opencv-python-headless"] and "FAILED" in checks["clip"].line()
