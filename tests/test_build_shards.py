import hashlib
import io
import json
import os
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _train_data import make_lake
from PIL import Image
from webdataset.tariterators import group_by_keys, tar_file_expander, url_opener

from djepa_t2i.config import load_config
from tasks import shard_writer
from tasks.curate import curate_shard
from tasks.shard_format import IMAGE_EXTS, read_range
from warehouse import db, lake as lk


def _digest(paths):
    return [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in paths]


def test_build_writes_native_tars_and_index(tmp_path):
    lake, passed = make_lake(tmp_path, n=24, shards=2)
    out = str(tmp_path / "shards")
    res = shard_writer.build(lake, out, samples_per_shard=8, progress=False)
    assert res.n_samples == len(passed) == 20 and res.missing == []
    assert [os.path.basename(p) for p in res.shards] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    idx = lk.read_table(lake, "samples").to_pylist()
    assert [r["key"] for r in idx] == passed  # sorted, every passed pair exactly once
    r = idx[0]
    assert r["caption_version"] == "alt" and r["caption"].startswith("a ")
    assert any(n.startswith("color:") for n in r["notions"]) and r["source"] in ("laion", "cc")
    # native resolution: bytes read by the recorded range decode to the pair's own size
    for r in idx:
        im = Image.open(io.BytesIO(read_range(r["tar"], r["offset"], r["size"])))
        assert im.size == (r["width"], r["height"])
    # webdataset reads the same samples back, with caption and metadata
    got = list(group_by_keys(tar_file_expander(url_opener([{"url": res.shards[0]}]))))
    assert [g["__key__"] for g in got] == passed[:8]
    assert json.loads(got[0]["json"])["key"] == passed[0] and got[0]["txt"].decode() == idx[0]["caption"]


def test_rebuild_is_byte_identical_and_not_duplicated(tmp_path):
    lake, passed = make_lake(tmp_path, n=24, shards=2)
    out = str(tmp_path / "shards")
    a = shard_writer.build(lake, out, samples_per_shard=8, progress=False)
    d1 = _digest(a.shards)
    b = shard_writer.build(lake, out, samples_per_shard=8, progress=False)
    assert _digest(b.shards) == d1
    _, rows = db.query(lake, "SELECT count(*), count(DISTINCT key) FROM samples")
    assert rows == [(20, 20)]
    # a build with larger shards removes the now-stale third shard and its index partition
    c = shard_writer.build(lake, out, samples_per_shard=16, progress=False)
    assert len(c.shards) == 2 and sorted(os.listdir(out)) == ["shard-000000.tar", "shard-000001.tar"]
    assert lk.partitions(lake, "samples") == ["shard-000000", "shard-000001"]
    assert db.query(lake, "SELECT count(*) FROM samples")[1] == [(20,)]


def test_recaptions_win_over_alt_text_and_missing_images_reported(tmp_path):
    lake, passed = make_lake(tmp_path, n=12, shards=1)
    lk.write_partition(lake, "captions", "c0", [
        {"key": passed[0], "caption": "a vivid red square on grey", "tags": "photo, minimal",
         "source": "vlm", "version": "vlm-1"}])
    # a passed pair whose image is absent from its source tar is reported, not silently dropped
    pairs = lk.read_table(lake, "pairs", ["00000"]).to_pylist()
    pairs.append({**pairs[-1], "key": "ghost", "status": "passed"})
    lk.write_partition(lake, "pairs", "00000", pairs)
    res = shard_writer.build(lake, str(tmp_path / "s"), samples_per_shard=100, progress=False)
    assert res.missing == ["ghost"] and res.n_samples == len(passed)
    r = {x["key"]: x for x in lk.read_table(lake, "samples").to_pylist()}[passed[0]]
    assert (r["caption"], r["caption_version"], r["tags"]) == ("a vivid red square on grey", "vlm-1", ["photo", "minimal"])


PIL_FORMAT = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "bmp": "BMP", "gif": "GIF",
              "tif": "TIFF", "tiff": "TIFF"}


def test_every_curated_key_reaches_the_training_shards(tmp_path):
    """Keys in sub-folders and every image format curation accepts pass curation and are then
    found by build-shards (they were silently dropped when each reader had its own key rule and
    extension list)."""
    assert set(PIL_FORMAT) == set(IMAGE_EXTS)
    keys, tar = [], tmp_path / "in" / "00000.tar"
    tar.parent.mkdir()
    with tarfile.open(tar, "w") as tf:
        for i, ext in enumerate(IMAGE_EXTS):
            for key in (f"{i:06d}", f"sub/{i:06d}"):
                b = io.BytesIO()
                seed = len(keys)
                px = np.random.default_rng(seed).integers(0, 255, (80, 96, 3), np.uint8)
                Image.fromarray(px).save(b, PIL_FORMAT[ext])
                meta = json.dumps({"key": key, "caption": f"a photo {seed}", "status": "success"}).encode()
                for name, data in ((f"{key}.{ext}", b.getvalue()), (f"{key}.txt", f"a photo {seed}".encode()),
                                   (f"{key}.json", meta)):
                    ti = tarfile.TarInfo(name)
                    ti.size = len(data)
                    tf.addfile(ti, io.BytesIO(data))
                keys.append((key, ext))
    pq.write_table(pa.Table.from_pylist([{"key": k, "status": "success", "caption": "c"} for k, _ in keys]),
                   str(tar.with_suffix(".parquet")))
    lake = str(tmp_path / "lake")
    curate_shard(str(tar), lake, load_config(overrides=["curate.order=[resolution,dedup]"]))
    _, passed = db.query(lake, "SELECT key FROM pairs WHERE status = 'passed' ORDER BY key")
    assert sorted(k for k, _ in keys) == [k for (k,) in passed]  # all 16 pass curation

    res = shard_writer.build(lake, str(tmp_path / "shards"), progress=False)
    assert res.missing == [] and res.n_samples == len(keys)
    idx = {r["key"]: r for r in lk.read_table(lake, "samples").to_pylist()}
    for key, ext in keys:
        r = idx[key]
        assert r["ext"] == ext
        im = Image.open(io.BytesIO(read_range(r["tar"], r["offset"], r["size"])))
        assert im.size == (96, 80) and im.format == PIL_FORMAT[ext]
