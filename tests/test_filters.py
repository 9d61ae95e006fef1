import io
import random

import numpy as np
import pytest
import torch
from PIL import Image

from djepa_t2i.config import load_config
from tasks.stages import build_stage
from tasks.filters.aesthetic import AestheticMLP
from tasks.filters.dedup import PhashIndex, phash, pixel_sha256
from tasks.mini_laion import lowq_image, text_image


def _photo(name):
    import skimage.data
    return Image.fromarray(getattr(skimage.data, name)())


def _shapes(seed=0):
    from tasks.shapes_world import render, sample_scene
    return render(sample_scene(random.Random(seed), 320, 240))


def test_resolution_rules():
    f = build_stage("resolution", load_config())
    small, wide, ok = f([Image.new("RGB", (1, 1)), Image.new("RGB", (2000, 100)), Image.new("RGB", (400, 300))])
    assert not small.passed and small.reason == "too small: short side 1 px < min_side 64"
    assert not wide.passed and "extreme aspect ratio 20.00 > max_aspect 4.0" in wide.reason
    assert ok.passed and ok.details == {"width": 400, "height": 300, "aspect": 1.3333}


def test_phash_index_exact_and_near():
    im = _photo("coffee")
    idx = PhashIndex(4)
    sha, ph = pixel_sha256(im), phash(im)
    assert idx.query(sha, ph) is None
    idx.add(sha, ph, "a")
    assert idx.query(sha, ph) == ("exact", "a", 0)
    b = io.BytesIO()
    im.resize((540, 360)).save(b, "JPEG", quality=70)
    near = Image.open(b).convert("RGB")
    kind, who, dist = idx.query(pixel_sha256(near), phash(near))
    assert (kind, who) == ("near", "a") and dist <= 4
    other = _photo("chelsea")
    assert idx.query(pixel_sha256(other), phash(other)) is None


def test_offline_quality_separates_flat_from_photos():
    f = build_stage("aesthetic", load_config())
    rng, nrng = random.Random(0), np.random.default_rng(0)
    flat, ph, sh = f([lowq_image(rng, nrng)[0], _photo("astronaut"), _shapes()])
    assert f.backend == "offline-nrq"
    assert not flat.passed and flat.score < 1.0 and "offline-nrq" in flat.reason
    assert ph.passed and sh.passed and 0 <= ph.score <= 10
    assert set(ph.details) == {"sharpness", "contrast", "colorfulness"}


def test_ocr_rejects_text_keeps_shapes_and_photos():
    f = build_stage("ocr", load_config())
    rng = random.Random(1)
    txt, sh, ph = f([text_image(rng)[0], _shapes(2), _photo("coffee")])
    assert not txt.passed and txt.score > 0.05 and txt.details["n_boxes"] >= 1
    assert any(len(t) >= 3 for t in txt.details["text"])
    assert sh.passed and ph.passed and sh.score <= 0.05


def test_nudenet_and_haar_offline():
    cfg = load_config()
    nsfw, face = build_stage("nsfw", cfg), build_stage("face", cfg)
    assert (nsfw.backend, face.backend) == ("nudenet", "haar")
    r = nsfw([_photo("coffee")])[0]
    assert r.passed and 0.0 <= r.score < 0.5
    astro, coffee = face([_photo("astronaut"), _photo("coffee")])
    assert astro.details["n_faces"] >= 1 and 0.01 < astro.score < 0.5 and astro.passed
    assert coffee.details["n_faces"] == 0 and coffee.score == 0.0
    strict = build_stage("face", load_config(overrides=["curate.face.max_faces=0"]))
    r = strict([_photo("astronaut")])[0]
    assert not r.passed and "> max_faces 0 (haar)" in r.reason


def test_missing_weights_are_a_clear_config_error():
    from djepa_t2i.config import ConfigError
    with pytest.raises(ConfigError, match="needs a local 'weights' path"):
        load_config(overrides=["curate.face.backend=yolov8-face"])
    with pytest.raises(ConfigError, match="needs curate.clip_weights"):
        load_config(overrides=["curate.aesthetic.backend=laion-mlp", "curate.aesthetic.weights=/x"])


def test_yolo_face_backend_random_model(tmp_path):
    from tasks.yolo import yolo_class
    YOLO = yolo_class()
    torch.manual_seed(0)
    p = tmp_path / "yolov8n-face.pt"
    YOLO("yolov8n.yaml").save(str(p))
    cfg = load_config(overrides=["curate.face.backend=yolov8-face", f"curate.face.weights={p}",
                                 "curate.face.imgsz=160", "curate.face.conf=0.0001"])
    f = build_stage("face", cfg)
    rs = f([_photo("astronaut"), _shapes()])
    assert f.backend == "yolov8-face" and len(rs) == 2
    for r in rs:
        assert r.details["n_faces"] >= 0 and 0.0 <= r.score <= 1.0
        assert all(len(b) == 4 for b in r.details["boxes"])


@pytest.mark.slow
def test_clip_embedder_random_weights_in_a_shard_run(tmp_path):
    """The production CLIP path for real: an open_clip checkpoint by local path, embeddings fed
    to both heads inside a shard run. ViT-B-32 (512-d) stands in for ViT-L-14 to keep CI fast
    (ViT-L-14 takes ~100 s to init twice on 2 cores); the code path is the same."""
    import open_clip
    torch.manual_seed(0)
    m = open_clip.create_model("ViT-B-32", pretrained=None)
    ck = tmp_path / "clip.pt"
    torch.save({k: v.half() for k, v in m.state_dict().items()}, ck)
    del m
    from tasks.filters.clip_embed import ClipEmbedder
    e = ClipEmbedder("ViT-B-32", str(ck), "cpu", batch_size=2)
    out = e([_photo("coffee"), _shapes(), _photo("astronaut")])
    assert out.shape == (3, 512) and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-4)
    torch.save(AestheticMLP(512).state_dict(), tmp_path / "a.pth")
    from tasks.filters.nsfw import NsfwMLP
    torch.save(NsfwMLP((512, 32, 32, 1)).state_dict(), tmp_path / "n.pth")
    from tests.test_bad_input import pair, write
    from tasks.curate_shard import process_shard
    cfg = load_config(overrides=[f"curate.clip_weights={ck}", "curate.clip_model=ViT-B-32", "curate.aesthetic.backend=laion-mlp",
                                 f"curate.aesthetic.weights={tmp_path / 'a.pth'}", "curate.nsfw.backend=clip-mlp",
                                 f"curate.nsfw.weights={tmp_path / 'n.pth'}", "curate.order=[resolution,nsfw,aesthetic]",
                                 "curate.aesthetic.threshold=0", "curate.nsfw.threshold=1"])
    shard = write(str(tmp_path), pair("0001") + pair("0002"))
    res = process_shard(shard, cfg)
    backends = {(s["filter"], s["backend"]) for s in res.scores}
    assert backends == {("resolution", "rules"), ("aesthetic", "laion-mlp"), ("nsfw", "clip-mlp")}
    assert '"clip": "open_clip:ViT-B-32"' in res.run["backends"]
    assert sum(s["filter"] == "aesthetic" for s in res.scores) == 2
