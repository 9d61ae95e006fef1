import hashlib
import json
import os
import tarfile

import pyarrow.parquet as pq

from tasks.mini_laion import MIX, kinds_for, make_sample
import random


def _digest(d):
    return {f: hashlib.sha256(open(os.path.join(d, f), "rb").read()).hexdigest()
            for f in sorted(os.listdir(d)) if not f.endswith("_stats.json")}


def test_sample_layout_deterministic_and_proportions(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    counts = make_sample(str(a), n=50, seed=3, per_shard=20)
    make_sample(str(b), n=50, seed=3, per_shard=20)
    assert _digest(a) == _digest(b)  # same bytes for the same seed
    assert sorted(os.listdir(a)) == [f"0000{i}{ext}" for i in range(3) for ext in (".parquet", ".tar", "_stats.json")]
    assert sum(counts.values()) == 50
    expect = {}
    for k in kinds_for(50, random.Random(0)):
        expect[k] = expect.get(k, 0) + 1
    assert counts["shapes"] == expect["shapes"] == round(MIX["shapes"] * 50)
    with tarfile.open(a / "00000.tar") as tf:
        names = tf.getnames()
        metas = [json.loads(tf.extractfile(n).read()) for n in names if n.endswith(".json")]
    assert names[:3] == ["000000000.jpg", "000000000.txt", "000000000.json"]
    need = {"url", "caption", "key", "status", "error_message", "width", "height", "original_width",
            "original_height", "exif", "sha256", "source"}
    assert all(need <= set(m) for m in metas)
    shapes = [m for m in metas if m["source"] == "shapes"]
    assert shapes and all(m["scene"]["caption"] == m["caption"] for m in shapes)
    assert all(64 <= min(m["width"], m["height"]) and max(m["width"], m["height"]) <= 1024 for m in shapes)
    t = pq.read_table(a / "00000.parquet").to_pylist()
    ok = {r["key"] for r in t if r["status"] == "success"}
    assert ok == {n.split(".")[0] for n in names}
    assert any(r["status"] == "failed_to_download" for r in t)
    stats = json.load(open(a / "00000_stats.json"))
    assert stats["successes"] == 20 and stats["count"] == len(t)
