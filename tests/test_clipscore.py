import pytest
import torch
from PIL import Image

from tasks.evaluators.clipscore import CLIPScorer, load_clip


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    import open_clip
    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("clip") / "vit_s_32_random.pt"
    torch.save(open_clip.create_model("ViT-S-32", pretrained=None).state_dict(), p)
    return str(p)


def test_clipscore_shapes_range_and_determinism(weights):
    s = CLIPScorer("ViT-S-32", weights, "cpu", batch_size=2)
    imgs = [Image.new("RGB", (64, 48), c) for c in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    caps = ["a red square", "a blue square", "a green square"]
    a = s.score(imgs, caps)
    assert a.shape == (3,) and torch.all((a >= 0) & (a <= 100))
    assert torch.equal(a, s.score(imgs, caps))
    # the score is the clamped cosine of the normalised embeddings
    cos = (s.embed_images(imgs[:1]) * s.embed_texts(caps[:1])).sum(-1)
    assert a[0].item() == pytest.approx(100 * max(cos.item(), 0.0), abs=1e-4)
    assert s.embed_images(imgs).shape[0] == 3 and s.score([], []).shape == (0,)
    with pytest.raises(ValueError, match="2 images but 1 captions"):
        s.score(imgs[:2], caps[:1])


def test_weights_must_be_a_local_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        load_clip("ViT-L-14", "openai")
    bad = tmp_path / "bad.pt"
    torch.save({"nope": torch.zeros(1)}, bad)
    with pytest.raises(Exception):
        load_clip("ViT-S-32", str(bad))
