import math

import numpy as np
import pyarrow as pa
import pytest
import torch
from scipy import stats

from training.feedback_sampler import FeedbackSampler, target_size, trunc_norm
from warehouse.schema import SCHEMAS

PHASE1 = {"mu": 0.512, "sigma": 0.12, "a": 0.256, "b": 1.024}


def index(sizes, attrs=None, n_tars=4):
    """A synthetic samples index (the sampler decides from attributes only, no bytes needed)."""
    rows = []
    for i, (w, h) in enumerate(sizes):
        rows.append({"key": f"k{i:06d}", "tar": f"/t/shard-{i % n_tars:06d}.tar", "width": w, "height": h,
                     "caption": "c", "notions": (attrs[i] if attrs else []), "tags": [], "source": "laion",
                     "offset": 0, "size": 1, "ext": "jpg"})
    return pa.Table.from_pylist(rows, schema=SCHEMAS["samples"])


def test_trunc_norm_draws_and_target_size():
    rng = np.random.default_rng(0)
    x = np.array([trunc_norm(rng, **PHASE1) for _ in range(4000)])
    assert x.min() >= 0.256 and x.max() <= 1.024
    d = stats.truncnorm((0.256 - 0.512) / 0.12, (1.024 - 0.512) / 0.12, loc=0.512, scale=0.12)
    assert stats.kstest(x, d.cdf).pvalue > 0.01
    assert target_size(2000, 1000, 512, 16) == (720, 352)  # aspect 2:1 kept, floored to 16
    assert target_size(1000, 1000, 512, 16) == (512, 512)


def test_accepted_sides_follow_schedule_and_never_upscale():
    rng = np.random.default_rng(1)
    # a LAION-like mix: many small images, some large, various aspects
    sides = rng.choice([200, 300, 480, 640, 800, 1200, 2000], size=3000, p=[.25, .2, .2, .15, .1, .06, .04])
    aspects = rng.choice([1.0, 0.75, 1.5, 0.5, 2.0], size=3000)
    sizes = [(int(s * math.sqrt(a)), int(s / math.sqrt(a))) for s, a in zip(sides, aspects)]
    s = FeedbackSampler(index(sizes), stride=16, schedule=PHASE1, seed=0)
    got = [s.next() for _ in range(1500)]
    for d in got:  # never an upscale, stride multiples, aspect kept
        assert d.out_w <= d.width and d.out_h <= d.height
        assert d.out_w % 16 == 0 and d.out_h % 16 == 0
        assert abs(math.log((d.out_w / d.out_h) / (d.width / d.height))) < 0.2
    drawn = np.array([d.side_kpx for d in got])
    dist = stats.truncnorm((0.256 - 0.512) / 0.12, (1.024 - 0.512) / 0.12, loc=0.512, scale=0.12)
    # the resolution histogram of accepted samples follows the configured trunc_norm
    assert stats.kstest(drawn, dist.cdf).pvalue > 0.01
    real = np.array([math.sqrt(d.out_w * d.out_h) for d in got]) / 1000
    assert abs(real.mean() - dist.mean()) < 0.03  # snapping costs < one stride on average
    w = s.pop_window()
    assert w["discard"]["upscale"] > 0 and w["accepted"]["samples"] == 1500
    assert sum(w["resolution"].values()) == 1500


def test_discard_rule_drives_overrepresented_attribute_toward_target():
    n = 4000
    rng = np.random.default_rng(2)
    attrs = [["color:red"] if rng.random() < 0.8 else ["color:blue"] for _ in range(n)]
    s = FeedbackSampler(index([(64, 64)] * n, attrs), stride=8, schedule=PHASE1, fixed_side=32, seed=0)
    s.switch_weights("v0000", {("color", "red"): 0.3, ("color", "blue"): 0.7}, None)
    for _ in range(3000):
        s.next()
    f = s.frequency("color:red")
    # with p=0.5 discards the fixed point is 0.8*0.5 / (0.8*0.5 + 0.2) = 2/3, down from 0.8
    assert abs(f - 2 / 3) < 0.03 and abs(f - 0.3) < abs(0.8 - 0.3)
    w = s.pop_window()
    assert w["discard"]["over_target"] > 0 and set(w["over_target"]) == {"color:red"}  # blue never discarded
    # without targets nothing is discarded for frequency and red stays at its natural rate
    s2 = FeedbackSampler(index([(64, 64)] * n, attrs), stride=8, schedule=PHASE1, fixed_side=32, seed=0)
    for _ in range(3000):
        s2.next()
    assert abs(s2.frequency("color:red") - 0.8) < 0.03 and s2.pop_window()["discard"]["over_target"] == 0


def test_state_roundtrip_continues_the_same_stream(tmp_path):
    sizes = [(w, h) for w in (100, 300, 700, 1200) for h in (100, 400, 900)] * 20
    a = FeedbackSampler(index(sizes), stride=16, schedule=PHASE1, seed=3)
    a.switch_weights("v1", {("source", "laion"): 0.5}, None)
    for _ in range(50):
        a.next()
    p = tmp_path / "s.pt"
    torch.save(a.state_dict(), p)
    ref = [a.next().key for _ in range(400)]  # crosses an epoch boundary
    b = FeedbackSampler(index(sizes), stride=16, schedule=PHASE1, seed=3)
    b.load_state_dict(torch.load(p, weights_only=True))
    assert [b.next().key for _ in range(400)] == ref and b.epoch >= 1
    with pytest.raises(ValueError, match="different index"):
        FeedbackSampler(index(sizes[:-1]), stride=16, schedule=PHASE1).load_state_dict(torch.load(p, weights_only=True))


def test_ranks_get_disjoint_shares_and_unreachable_schedule_fails_clearly():
    sizes = [(600, 600)] * 40
    shares = [set(FeedbackSampler(index(sizes), stride=16, schedule=PHASE1, rank=r, world_size=2).keys)
              for r in range(2)]
    assert not shares[0] & shares[1] and len(shares[0] | shares[1]) == 40
    tiny = FeedbackSampler(index([(100, 100)] * 10), stride=16, schedule=PHASE1, max_consecutive_discards=500)
    with pytest.raises(RuntimeError, match="no sample in this rank's share can reach"):
        tiny.next()


def test_phase_one_is_a_centre_crop_of_the_short_side(tmp_path):
    """Supp. §7: short side resized to 256 (here 32), then a centre crop; a sample whose short
    side is smaller is discarded, never upscaled."""
    import io
    import tarfile

    from PIL import Image

    from training.images import load_image
    sizes = [(96, 48), (48, 96), (20, 200), (64, 64)]
    s = FeedbackSampler(index(sizes * 50), stride=8, schedule=PHASE1, fixed_side=32, seed=0)
    got = [s.next() for _ in range(60)]
    assert all((d.out_w, d.out_h, d.crop) == (32, 32, True) for d in got)
    assert all(min(d.width, d.height) >= 32 for d in got)  # the 20x200 sample never trains
    assert s.pop_window()["discard"]["upscale"] > 0
    # the loader's crop: a 96x48 image, left half red, right half blue, centre band green
    img = np.zeros((48, 96, 3), np.uint8)
    img[:, :32] = (255, 0, 0)
    img[:, 32:64] = (0, 255, 0)
    img[:, 64:] = (0, 0, 255)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    tar = tmp_path / "t.tar"
    with tarfile.open(tar, "w") as tf:
        info = tarfile.TarInfo("k.png")
        info.size = len(buf.getvalue())
        tf.addfile(info, io.BytesIO(buf.getvalue()))
    with tarfile.open(tar) as tf:
        off = tf.getmember("k.png").offset_data
    d = got[0].__class__("k", str(tar), off, len(buf.getvalue()), "c", 96, 48, 32, 32, 0.032, True)
    x = load_image(d)
    assert x.shape == (3, 32, 32)
    assert x[1, :, 12:20].mean() > 0.9 and x[0, :, 12:20].mean() < -0.9  # the centre is green


def test_final_schedule_at_moves_the_schedule_with_or_without_a_weights_row(tmp_path):
    """Phase 2's step switch (train.final_schedule_at -> stage "final") must reach the sampler
    whether the live weights version has a ``final`` row, only a ``start`` row, or there is no
    version at all (issue #23 item 4: it used to keep the start schedule without a row)."""
    from djepa_t2i.config import Schedule
    from training.data import WeightsWatcher
    from warehouse import weights as wt
    sched = Schedule(start={"mu": 0.032, "sigma": 0.01, "a": 0.016, "b": 0.064},
                     final={"mu": 0.064, "sigma": 0.05, "a": 0.016, "b": 0.256})
    lake = str(tmp_path / "lake")
    s = FeedbackSampler(index([(512, 512)] * 8), stride=8, schedule=PHASE1, seed=0)
    w = WeightsWatcher(lake, sched)
    assert w.poll() is None
    w.apply(s, None, "start")
    assert s.schedule == sched.start.model_dump() and s.weights_version is None
    w.apply(s, None, "final")  # no weights version at all
    assert s.schedule == sched.final.model_dump()
    live_start = {"mu": 0.03, "sigma": 0.02, "a": 0.016, "b": 0.064}
    v = wt.publish(lake, [{"kind": "color", "value": "red", "target_freq": 0.2},
                          wt.resolution_row("start", *live_start.values(), "v0")], why="start row only")
    w.apply(s, w.poll(), "start")
    assert s.schedule == live_start and s.weights_version == v
    w.apply(s, v, "final")  # a version without a final row: the configured final schedule
    assert s.schedule == sched.final.model_dump() and s.targets == {"color:red": 0.2}
    live_final = {"mu": 0.05, "sigma": 0.1, "a": 0.016, "b": 0.128}
    v2 = wt.publish(lake, [wt.resolution_row("start", *live_start.values(), "v1"),
                           wt.resolution_row("final", *live_final.values(), "v1")], why="both rows")
    w.apply(s, v2, "final")  # the live version's final row wins over the config
    assert s.schedule == live_final
    draws = [s._draw_target() for _ in range(200)]
    assert min(draws) >= live_final["a"] and max(draws) <= live_final["b"] and max(draws) > live_start["b"]
