"""CLIP image-text similarity and semantic near-duplicate filters on the shared CLIP embeddings."""
import io

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from djepa_t2i.config import load_config
from tasks.curate_shard import process_shard
from tasks.decode import decode_image
from tasks.model_cache import build_pipeline
from tests.test_bad_input import write


def _jpeg(arr):
    b = io.BytesIO()
    Image.fromarray(arr).convert("RGB").save(b, "JPEG", quality=95)
    return b.getvalue()


def _shard(tmp_path):
    """0001 astronaut, 0002 the same photo again, 0003 coffee; captions say what they show."""
    astro, coffee = _jpeg(skimage.data.astronaut()), _jpeg(skimage.data.coffee())
    members = []
    for k, img, cap in [("0001", astro, b"an astronaut"), ("0002", astro, b"an astronaut again"),
                        ("0003", coffee, b"a cup of coffee")]:
        members += [(f"{k}.jpg", img), (f"{k}.txt", cap),
                    (f"{k}.json", ('{"key": "%s", "caption": "c", "url": "http://x/%s"}' % (k, k)).encode())]
    return write(str(tmp_path), members)


def test_clip_stages_are_skipped_and_recorded_without_clip_weights(tmp_path):
    cfg = load_config(overrides=["curate.order=[resolution,clip_similarity,semantic_dedup]"])
    out = process_shard(_shard(tmp_path), cfg, pipeline=build_pipeline(cfg))
    assert '"clip_similarity": "skipped: needs CLIP weights (curate.clip_weights)"' in out.run["backends"]
    assert '"semantic_dedup": "skipped: needs CLIP weights (curate.clip_weights)"' in out.run["backends"]
    assert {p["status"] for p in out.pairs} == {"passed"} and {s["filter"] for s in out.scores} == {"resolution"}


@pytest.fixture(scope="module")
def clip_ckpt(tmp_path_factory):
    import open_clip
    from safetensors.torch import save_file

    from tests.tiny_clip import register
    d = tmp_path_factory.mktemp("clip")
    register(d)
    torch.manual_seed(0)
    save_file(open_clip.create_model("tiny-test-clip").state_dict(), str(d / "open_clip_model.safetensors"))
    return d / "open_clip_model.safetensors"


def _cfg(ckpt, *extra):
    return load_config(overrides=["curate.clip_model=tiny-test-clip", f"curate.clip_weights={ckpt}",
                                  "curate.order=[resolution,clip_similarity,semantic_dedup]", *extra])


def test_clip_similarity_scores_are_image_text_cosines(tmp_path, clip_ckpt):
    models = build_pipeline(_cfg(clip_ckpt))
    out = process_shard(_shard(tmp_path), _cfg(clip_ckpt), pipeline=models)
    sims = {s["key"]: s["score"] for s in out.scores if s["filter"] == "clip_similarity"}
    assert len(sims) == 3 and all(p["status"] == "passed" for p in out.pairs)  # thresholds off: record only
    # the same cosine computed directly: normalised image embedding . normalised text embedding
    clip = models.clip
    # the image as curation decodes it: once, drafted to the embedder's size (models.decode)
    img = clip([decode_image(_jpeg(skimage.data.coffee()), 10**9, models.decode).image])[0]
    txt = clip.embed_texts(["a cup of coffee"])[0]
    assert sims["0003"] == pytest.approx(float(np.dot(img, txt)), abs=1e-5)
    thr = (sims["0001"] + sims["0003"]) / 2
    low = min(sims, key=sims.get)
    out2 = process_shard(_shard(tmp_path), _cfg(clip_ckpt, f"curate.clip_similarity.min_similarity={thr}"))
    rejected = {p["key"]: p["reason"] for p in out2.pairs if p["status"] == "rejected"}
    assert low in rejected and rejected[low].startswith(f"CLIP image-text similarity {sims[low]:.3f} < min_similarity")


def test_semantic_dedup_rejects_the_second_copy_within_a_shard(tmp_path, clip_ckpt):
    out = process_shard(_shard(tmp_path), _cfg(clip_ckpt, "curate.semantic_dedup.max_cosine=0.999"))
    by = {p["key"]: p for p in out.pairs}
    assert by["0001"]["status"] == "passed" and by["0003"]["status"] == "passed"
    assert by["0002"]["status"] == "rejected" and by["0002"]["stage"] == "semantic_dedup"
    assert by["0002"]["dup_of"] == "00000/0001" and "semantic near-duplicate of 0001" in by["0002"]["reason"]
    scores = {s["key"]: s for s in out.scores if s["filter"] == "semantic_dedup"}
    assert scores["0002"]["score"] > 0.999 > scores["0003"]["score"]
    assert '"backends"' not in out.run and '"semantic_dedup": "clip-cosine"' in out.run["backends"]
    # state is per shard: the same shard again gives the same answer (nothing remembered)
    again = process_shard(_shard(tmp_path), _cfg(clip_ckpt, "curate.semantic_dedup.max_cosine=0.999"))
    assert [p["status"] for p in again.pairs] == [p["status"] for p in out.pairs]
