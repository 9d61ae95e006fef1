import json

import pytest
import torch
from PIL import Image

from tasks.evaluators import geneval
from tasks.evaluators import geneval_rules as rules

D = rules.Detection


def test_selection_applies_geneval_thresholds():
    dets = [D("cat", (0, 0, 10, 10), 0.95), D("cat", (20, 0, 30, 10), 0.5), D("cat", (40, 0, 50, 10), 0.2),
            D("dog", (0, 20, 10, 30), 0.31)]
    sel = rules.select(dets, "single_object")
    assert [d.score for d in sel["cat"]] == [0.95, 0.5] and len(sel["dog"]) == 1
    sel = rules.select(dets, "counting")  # counting needs > 0.9
    assert [d.score for d in sel["cat"]] == [0.95] and "dog" not in sel
    many = [D("cat", (i, 0, i + 5, 5), 0.5 + i / 1000) for i in range(30)]
    assert len(rules.select(many, "two_object")["cat"]) == 16
    assert rules.select(many, "two_object")["cat"][0].score == max(d.score for d in many)


def test_counting_include_and_exclude():
    meta = {"tag": "counting", "include": [{"class": "cat", "count": 3}], "exclude": [{"class": "cat", "count": 4}]}
    three = {"cat": [D("cat", (i * 20, 0, i * 20 + 10, 10)) for i in range(3)]}
    assert rules.evaluate(three, meta) == (True, "")
    ok, why = rules.evaluate({"cat": three["cat"][:2]}, meta)
    assert not ok and why == "expected cat>=3, found 2"
    ok, why = rules.evaluate({"cat": three["cat"] + [D("cat", (90, 0, 99, 9))]}, meta)
    assert not ok and why == "expected cat<4, found 4"


def test_color_attribution_uses_the_most_confident_objects():
    meta = {"tag": "color_attr", "include": [{"class": "car", "count": 1, "color": "red"},
                                             {"class": "bus", "count": 1, "color": "blue"}]}
    objs = {"car": [D("car", (0, 0, 9, 9), 0.9, "red"), D("car", (20, 0, 29, 9), 0.5, "blue")],
            "bus": [D("bus", (40, 0, 49, 9), 0.8, "blue")]}
    assert rules.evaluate(objs, meta)[0]
    swapped = {"car": [D("car", (0, 0, 9, 9), 0.9, "blue")], "bus": [D("bus", (40, 0, 49, 9), 0.8, "red")]}
    ok, why = rules.evaluate(swapped, meta)
    assert not ok and "expected red car>=1, found 0 red; and 1 blue" in why
    calls = []
    rules.evaluate(objs, meta, lambda dets, cls: calls.append((cls, len(dets))) or ["red"] * len(dets))
    assert calls == [("car", 1), ("bus", 1)]


def test_read_metadata(tmp_path):
    p = tmp_path / "meta.jsonl"
    lines = [{"tag": "position", "include": [{"class": "cow", "count": 1},
                                             {"class": "dog", "count": 1, "position": ["below", 0]}],
              "prompt": "a photo of a dog below a cow"},
             {"tag": "counting", "include": [{"class": "cat", "count": 3}],
              "exclude": [{"class": "cat", "count": 4}], "prompt": "a photo of three cats"}]
    p.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    ps = geneval.read_metadata(str(p))
    assert [x["id"] for x in ps] == ["00000", "00001"]
    assert ps[0]["notions"] == ["category=position", "notion=cow", "notion=dog", "spatial=below"]
    assert "count=three" in ps[1]["notions"] and ps[1]["spec"] == lines[1]
    p.write_text('{"tag": "counting", "prompt": "x", "include": [{"count": 2}]}\n')
    with pytest.raises(ValueError, match="meta.jsonl:1: not a GenEval metadata line"):
        geneval.read_metadata(str(p))


@pytest.mark.slow
def test_yolo_and_clip_backends_run_from_local_random_weights(tmp_path):
    """Plumbing only: random weights in the production formats, loaded by path, inference runs."""
    import open_clip
    from tasks.evaluators.clipscore import CLIPScorer
    from tasks.yolo import yolo_class
    YOLO = yolo_class()
    torch.manual_seed(0)
    import yaml
    from ultralytics.utils import ROOT
    yolo_pt = tmp_path / "yolo_random.pt"
    y = YOLO("yolov8n.yaml")  # COCO's 80 classes, random weights; name them as a COCO .pt does
    y.model.names = yaml.safe_load((ROOT / "cfg/datasets/coco.yaml").read_text())["names"]
    y.save(str(yolo_pt))
    clip_pt = tmp_path / "clip_random.pt"
    m = open_clip.create_model("ViT-S-32", pretrained=None)
    torch.save(m.state_dict(), clip_pt)
    det = geneval.YoloDetector(str(yolo_pt), "cpu")
    img = Image.new("RGB", (96, 64), (200, 30, 30))
    dets = det(img)
    assert all(isinstance(d, rules.Detection) and len(d.box) == 4 and 0 <= d.score <= 1 for d in dets)
    assert det.model.names[0] == "person"  # COCO class table travels with the .pt
    colors = geneval.ClipColors(CLIPScorer("ViT-S-32", str(clip_pt), "cpu", batch_size=32))
    got = colors(img, [D("person", (0, 0, 40, 40)), D("person", (10, 10, 90, 60))], "person")
    assert len(got) == 2 and set(got) <= set(geneval.COLORS)
    scorer = geneval.GenEvalScorer(det, colors)
    score, reason = scorer.score(img, {"tag": "single_object", "include": [{"class": "person", "count": 1}]})
    assert score in (0.0, 1.0) and isinstance(reason, str)
    assert scorer.backend == "yolo:yolo_random.pt+open_clip:ViT-S-32"
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        geneval.YoloDetector("yolov8n.pt")
