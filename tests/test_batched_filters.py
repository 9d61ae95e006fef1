"""The model stages run on batches (issue #26.2-3): the batched path gives what one image at a time
gives, one bad image in a batch costs only its pair, and each JPEG is decoded once, drafted to the
largest size any enabled stage looks at."""
from __future__ import annotations

import io

import numpy as np
import pytest
import skimage.data
from PIL import Image

from djepa_t2i.config import ConfigError, load_config
from tasks.curate_shard import process_shard
from tasks.decode import decode_image
from tasks.model_cache import Pipeline, build_pipeline, decode_size
from tasks.stages import FilterStage, Result, build_stage, stage_device
from tests.test_bad_input import pair, states, write

MIX = 1


def _images() -> list[Image.Image]:
    """Photos, rendered text and flat images of several sizes and aspects (several detector shapes)."""
    from tasks.mini_laion import shapes_image, text_image
    import random
    rng = random.Random(MIX)
    ims = [Image.fromarray(skimage.data.astronaut()), Image.fromarray(skimage.data.coffee()),
           Image.fromarray(skimage.data.chelsea()), Image.fromarray(skimage.data.rocket())]
    ims += [text_image(rng)[0] for _ in range(3)] + [shapes_image(rng)[0] for _ in range(3)]
    return [im.convert("RGB") for im in ims]


@pytest.fixture(scope="module")
def images():
    return _images()


@pytest.fixture(scope="module")
def cfg():
    return load_config()


def test_ocr_batched_detection_equals_rapidocr_one_call_per_image(images):
    ocr = build_stage("ocr", load_config(overrides=["curate.ocr.batch_size=8"]))
    bgrs = [np.ascontiguousarray(np.asarray(im)[:, :, ::-1]) for im in images]
    batched = ocr.detect(bgrs)
    assert sum(len(b) for b, _ in batched) > 0  # the text images have boxes
    for bgr, (boxes, scores) in zip(bgrs, batched):
        det = ocr.engine(bgr, use_det=True, use_cls=False, use_rec=False)
        ref = [] if det.boxes is None else list(det.boxes)
        assert len(boxes) == len(ref)
        for b, r in zip(boxes, ref):
            np.testing.assert_allclose(b, r, atol=1.0)  # pixel coordinates
        if ref:
            np.testing.assert_allclose(scores, det.scores, atol=1e-4)
    whole = ocr(images)
    alone = [ocr([im])[0] for im in images]
    assert [r.passed for r in whole] == [r.passed for r in alone]
    np.testing.assert_allclose([r.score for r in whole], [r.score for r in alone], atol=1e-4)
    assert {r.passed for r in whole} == {True, False}  # text rejected, the rest kept


def test_nudenet_batched_scores_equal_nudenet_detect(images, cfg):
    one = build_stage("nsfw", load_config(overrides=["curate.nsfw.batch_size=1"]))
    four = build_stage("nsfw", load_config(overrides=["curate.nsfw.batch_size=4"]))
    got4, got1 = four(images), one(images)
    for im, a, b in zip(images, got4, got1):
        ref: dict[str, float] = {}
        for d in one.det.detect(np.ascontiguousarray(np.asarray(im)[:, :, ::-1])):
            ref[d["class"]] = max(ref.get(d["class"], 0.0), round(float(d["score"]), 4))
        assert b.details == ref  # the vectorised post-processing keeps what nudenet keeps
        assert a.details.keys() == ref.keys()
        assert all(abs(a.details[k] - ref[k]) <= 2e-4 for k in ref)  # batch of 4 vs 1: float noise only
    assert any(r.details for r in got1)  # the photos have detections (faces)


def test_clip_embedder_batch_equals_one_at_a_time(images, tmp_path):
    import open_clip
    import torch
    from safetensors.torch import save_file

    from tasks.filters.clip_embed import ClipEmbedder
    from tests.tiny_clip import register
    register(tmp_path)
    torch.manual_seed(0)
    save_file(open_clip.create_model("tiny-test-clip").state_dict(), str(tmp_path / "m.safetensors"))
    e = ClipEmbedder("tiny-test-clip", str(tmp_path / "m.safetensors"), "cpu", batch_size=4)
    np.testing.assert_allclose(e(images), np.concatenate([e([im]) for im in images]), atol=1e-5)


def test_yolo_face_results_do_not_depend_on_the_batch(images, tmp_path):
    """Mixed shapes in one predict call: each image gets the boxes it gets alone (every image
    letterboxed to the imgsz square; ultralytics' default pads a one-image batch differently, and
    then a random YOLO finds 4 boxes alone and 6 in the batch on the first image here)."""
    import torch

    from tasks.yolo import yolo_class
    torch.manual_seed(0)
    yolo_class()("yolov8n.yaml").save(str(tmp_path / "y.pt"))  # random weights in the .pt format
    face = build_stage("face", load_config(overrides=[
        "curate.face.backend=yolov8-face", f"curate.face.weights={tmp_path / 'y.pt'}", "curate.face.conf=0.0001",
        "curate.face.imgsz=160", "curate.face.batch_size=4"]))
    mixed = [images[0], images[1], images[3].resize((200, 300))]
    batched = face(mixed)
    assert [r.details for r in batched] == [face([im])[0].details for im in mixed]
    assert all(r.details["n_faces"] > 0 for r in batched)


class _Picky(FilterStage):
    """Fault injection: a model stage that raises on one image (96 px wide) in whatever batch."""
    name, backend, side = "aesthetic", "picky", 64

    def __call__(self, images, emb=None):
        if any(im.width == 96 for im in images):
            raise ValueError("cannot read this image")
        return [Result(float(im.width), True) for im in images]


def _jpeg(w: int, seed: int) -> bytes:
    b = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (64, w, 3), np.uint8)).save(b, "JPEG")
    return b.getvalue()


def test_one_bad_image_in_a_batch_quarantines_only_its_pair(tmp_path):
    cfg = load_config(overrides=["curate.order=[aesthetic]"])
    p = write(str(tmp_path), pair("0001", _jpeg(80, 1)) + pair("0002", _jpeg(96, 2)) + pair("0003", _jpeg(112, 3)))
    out = process_shard(p, cfg, pipeline=Pipeline([_Picky()], None, {}))
    assert states(out) == {"0001": ("passed", None, None), "0003": ("passed", None, None),
                           "0002": ("quarantined", "aesthetic",
                                    "aesthetic failed on this pair: ValueError: cannot read this image")}
    assert {(s["key"], s["score"]) for s in out.scores} == {("0001", 80.0), ("0003", 112.0)}
    bad = next(r for r in out.pairs if r["key"] == "0002")
    assert (bad["width"], bad["height"], bad["caption"]) == (96, 64, "a photo")  # its columns so far kept


def test_one_bad_image_for_the_clip_embedder_quarantines_only_its_pair(tmp_path):
    class Embedder:
        def __call__(self, images):
            if any(im.width == 96 for im in images):
                raise RuntimeError("bad pixels")
            return np.ones((len(images), 4), np.float32) / 2

    class Head(FilterStage):
        name, backend, reads, side = "nsfw", "head", ("clip_embedding",), 0

        def __call__(self, images, emb=None):
            return [Result(float(e.sum()), True) for e in emb]

    cfg = load_config(overrides=["curate.order=[nsfw]"])
    p = write(str(tmp_path), pair("0001", _jpeg(80, 1)) + pair("0002", _jpeg(96, 2)))
    out = process_shard(p, cfg, pipeline=Pipeline([Head()], Embedder(), {}))
    assert states(out) == {"0001": ("passed", None, None),
                           "0002": ("quarantined", "clip", "clip failed on this pair: RuntimeError: bad pixels")}


def _big_jpeg(w: int, h: int, orientation: int = 1) -> bytes:
    b = io.BytesIO()
    ex = Image.Exif()
    ex[0x0112] = orientation
    Image.fromarray(skimage.data.astronaut()).resize((w, h)).save(b, "JPEG", exif=ex.tobytes())
    return b.getvalue()


def test_jpeg_drafted_to_what_the_stages_need_and_the_stored_size_kept():
    d = decode_image(_big_jpeg(2048, 1024), 10**9, draft=(512, 0))
    assert d.image.size == (512, 256) and d.size == (2048, 1024)  # 1/4 keeps the long side >= 512
    d = decode_image(_big_jpeg(2048, 1024), 10**9, draft=(256, 0))
    assert d.image.size == (256, 128)
    d = decode_image(_big_jpeg(2048, 1024), 10**9, draft=(256, 224))  # CLIP's short side wins
    assert d.image.size == (512, 256)
    d = decode_image(_big_jpeg(2048, 1024), 10**9, draft=(256, 300))
    assert d.image.size == (1024, 512)
    d = decode_image(_big_jpeg(900, 600), 10**9, draft=(512, 0))
    assert d.image.size == (900, 600)  # less than twice the need: every pixel decoded
    d = decode_image(_big_jpeg(2048, 1024, orientation=6), 10**9, draft=(512, 0))
    assert d.image.size == (256, 512) and d.size == (1024, 2048) and d.original_size == (2048, 1024)
    assert decode_image(_big_jpeg(2048, 1024), 10**9).image.size == (2048, 1024)


def test_the_decode_size_is_the_largest_any_stage_needs(tmp_path):
    cfg = load_config()  # offline stack: Haar looks at 512 px, the most of any stage
    stages = build_pipeline(cfg)
    assert stages.decode == (512, 0)
    assert decode_size(stages.stages + [_Picky()], None) == (512, 0)
    assert decode_size(stages.stages + [FilterStage()], None) is None  # a stage that needs full resolution
    # the resolution rules read the stored size, not the draft's
    p = write(str(tmp_path), pair("0001", _big_jpeg(2048, 1024)))
    small = load_config(overrides=["curate.order=[resolution]", "curate.resolution.max_side=2000"])
    out = process_shard(p, small, pipeline=Pipeline([build_stage("resolution", small)], None, {}, (256, 0)))
    assert states(out)["0001"] == ("rejected", "resolution", "too large: long side 2048 px > max_side 2000")


def test_curate_device_is_one_field_a_stage_may_override():
    cfg = load_config()
    assert cfg.curate.device == "cpu" and stage_device(cfg) == "cpu"
    assert stage_device(load_config(overrides=["curate.device=cuda"])) == "cuda"
    assert stage_device(load_config(overrides=["curate.device=cuda"]), "cpu") == "cpu"
    with pytest.raises(ConfigError, match="curate.device"):
        load_config(overrides=["curate.device=gpu"])
