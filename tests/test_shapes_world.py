import random
from collections import Counter

import numpy as np
import pytest

from tasks import shapes_world as sw

SIZES = [(64, 64), (256, 256), (96, 48), (48, 128)]


def test_rendering_is_deterministic_for_a_seed():
    for kind in sw.CATEGORIES:
        a = sw.sample_scene(random.Random(7), 80, 64, kind)
        b = sw.sample_scene(random.Random(7), 80, 64, kind)
        assert a.to_json() == b.to_json()
        assert np.array_equal(np.asarray(sw.render(a)), np.asarray(sw.render(b)))
    assert sw.prompts("counting", 5, seed=3) == sw.prompts("counting", 5, seed=3)
    assert sw.prompts("counting", 5, seed=3) != sw.prompts("counting", 5, seed=4)


@pytest.mark.parametrize("w,h", SIZES)
def test_rendered_scene_matches_its_spec(w, h):
    rng = random.Random(w * 1000 + h)
    for _ in range(60):
        sc = sw.sample_scene(rng, w, h)
        img = np.asarray(sw.render(sc)).astype(int)
        assert img.shape == (h, w, 3)
        for o in sc.objects:
            x0, y0, x1, y1 = o.box(w, h)
            assert x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h
            assert x1 - x0 >= 0.18 * min(w, h) - 1e-6  # >= 11 px at 64 px: visible
            # the box centre lies inside every shape (the triangle's too); the pixel is the color
            px = img[int((y0 + y1) / 2), int((x0 + x1) / 2)]
            assert np.abs(px - np.array(sw.COLORS[o.color])).max() <= 2, (sc.caption, o)
        for i, p in enumerate(sc.objects):
            for q in sc.objects[i + 1:]:
                assert sw._separated(p, q, w, h)
        # the spec counts what is drawn
        for inc in sc.spec["include"]:
            assert sum(o.shape == inc["class"] for o in sc.objects) == inc["count"]
        if sc.kind == "position":
            rel = sw.relative_position(sc.objects[0].box(w, h), sc.objects[1].box(w, h))
            assert rel == {sc.relation}
        # the background is plain outside the boxes
        assert tuple(img[0, 0]) == sw.BACKGROUND or any(
            o.box(w, h)[0] < 1 and o.box(w, h)[1] < 1 for o in sc.objects)


def test_captions_are_exact_and_natural():
    rng = random.Random(0)
    seen = {}
    for _ in range(300):
        sc = sw.sample_scene(rng, 128, 128)
        seen.setdefault(sc.kind, sc)
        o = sc.objects
        if sc.kind == "single_object":
            assert sc.caption == sw.a(o[0].shape)
        elif sc.kind == "colors":
            assert sc.caption == sw.a(f"{o[0].color} {o[0].shape}")
        elif sc.kind == "counting":
            assert sc.caption == f"{sw.COUNT_WORDS[len(o)]} {o[0].color} {o[0].shape}s"
            assert len({(x.shape, x.color) for x in o}) == 1 and 2 <= len(o) <= 4
        elif sc.kind == "two_object":
            assert sc.caption == f"{sw.a(o[0].shape)} and {sw.a(o[1].shape)}"
            assert o[0].shape != o[1].shape
        elif sc.kind == "color_attr":
            assert o[0].shape != o[1].shape and o[0].color != o[1].color
            assert sc.caption == f"{sw.a(o[0].color + ' ' + o[0].shape)} and {sw.a(o[1].color + ' ' + o[1].shape)}"
        elif sc.kind == "position":
            words = {"left of": "to the left of", "right of": "to the right of"}.get(sc.relation, sc.relation)
            assert words in sc.caption and sc.caption.startswith(sw.a(f"{o[0].color} {o[0].shape}"))
    assert set(seen) == set(sw.CATEGORIES)
    assert sw.a("orange square") == "an orange square"
    assert "count=three" in sw.Scene([sw.Obj("circle", "red", .2, .2, .2)] * 3, "three red circles",
                                     64, 64, None, "counting").notions()


def test_skewed_distribution_makes_values_rare():
    rng = random.Random(1)
    dist = sw.ShapesDistribution.skewed()
    colors, counts, rels = Counter(), Counter(), Counter()
    for _ in range(3000):
        sc = sw.sample_scene(rng, 64, 64, dist=dist)
        colors.update(o.color for o in sc.objects)
        if sc.kind == "counting":
            counts[len(sc.objects)] += 1
        if sc.relation:
            rels[sc.relation] += 1
    tot = sum(colors.values())
    assert colors["purple"] / tot < 0.06 and colors["red"] / tot > 0.15
    assert counts[4] / sum(counts.values()) < 0.1
    assert rels["below"] / sum(rels.values()) < 0.1
    with pytest.raises(ValueError, match="unknown"):
        sw.ShapesDistribution(colors={"pink": 1.0})


def test_bad_input_errors():
    with pytest.raises(ValueError, match="unknown scene kind"):
        sw.sample_scene(random.Random(0), 64, 64, "spatial")
    with pytest.raises(ValueError, match="too small"):
        sw.sample_scene(random.Random(0), 8, 64, "colors")
    with pytest.raises(ValueError, match="unknown category"):
        sw.prompts("nope", 2, 0)


def test_prompts_carry_id_notions_spec_and_ground_truth():
    ps = sw.benchmark_prompts(3, seed=0)
    assert len(ps) == 18 and len({p["id"] for p in ps}) == 18
    for p in ps:
        sc = sw.Scene.from_json(p["scene"])
        assert sc.caption == p["prompt"] and sc.kind == p["category"] == p["spec"]["tag"]
        assert f"category={p['category']}" in p["notions"]


def test_lone_size_sets_a_lone_objects_box_and_nothing_else():
    dist = sw.ShapesDistribution(lone_size=(0.5, 0.55))
    rng = random.Random(0)
    lone = [sw.sample_scene(rng, 32, 48, "colors", dist).objects[0].size for _ in range(50)]
    assert all(0.5 <= s <= 0.55 for s in lone)
    pair = sw.sample_scene(random.Random(0), 64, 64, "two_object", dist).objects
    assert all(0.22 <= o.size <= 0.32 for o in pair)  # groups keep the world's sizes
    with pytest.raises(ValueError, match=r"lone_size: need 0 < lo <= hi < 1, got \(0.7, 0.5\)"):
        sw.ShapesDistribution(lone_size=(0.7, 0.5))
