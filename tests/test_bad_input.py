"""Bad input as a new user's data would have it: each case ends quarantined with a clear reason."""
import io
import json
import os
import tarfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from djepa_t2i.config import load_config
from tasks.curate import process_shard
from tasks.shards import read_tar


def _jpeg(seed=0, size=(96, 80), **kw):
    b = io.BytesIO()
    a = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), np.uint8)
    Image.fromarray(a).save(b, "JPEG", **kw)
    return b.getvalue()


def _add(tf, name, data):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    tf.addfile(ti, io.BytesIO(data))


def _meta(k, cap="a photo"):
    return json.dumps({"key": k, "caption": cap, "url": f"http://x/{k}", "status": "success"}).encode()


def write(tmp, members, parquet_keys=None, name="00000"):
    p = os.path.join(tmp, name + ".tar")
    with tarfile.open(p, "w") as tf:
        for n, data in members:
            _add(tf, n, data)
    keys = parquet_keys if parquet_keys is not None else sorted({n.split(".")[0] for n, _ in members if "/" not in n})
    pq.write_table(pa.Table.from_pylist([{"key": k, "status": "success", "caption": "c"} for k in keys]),
                   os.path.join(tmp, name + ".parquet"))
    return p


def pair(k, img=None, cap=b"a photo", meta=True):
    m = [(f"{k}.jpg", _jpeg(int(k)) if img is None else img), (f"{k}.txt", cap)]
    return m + ([(f"{k}.json", _meta(k))] if meta else [])


@pytest.fixture(scope="module")
def cfg():
    # model stages off: these tests are about reading and accounting, not model scores
    return load_config(overrides=["curate.order=[resolution,dedup]"])


def states(out):
    return {p["key"]: (p["status"], p["stage"], p["reason"]) for p in out.pairs}


def test_broken_pairs_each_get_a_reason(tmp_path, cfg):
    good = _jpeg(1)
    cmyk = io.BytesIO()
    Image.new("CMYK", (80, 80), (0, 255, 0, 0)).save(cmyk, "JPEG")
    i16 = io.BytesIO()
    Image.fromarray(np.arange(80 * 80, dtype=np.uint16).reshape(80, 80)).save(i16, "PNG")
    members = (pair("0001", good[: len(good) // 2]) + pair("0002", b"") + pair("0003", b"GIF89a nonsense")
               + pair("0004", cap=b"") + pair("0005", cap="caf\xe9".encode("latin-1")) + pair("0006", meta=False)
               + pair("0007", img=cmyk.getvalue()) + pair("0008", img=i16.getvalue())
               + [("0009.jpg", _jpeg(9)), ("0009.json", json.dumps({"key": "0009"}).encode())]
               + pair("0010", img=_png(1, 1)) + pair("0011", img=_png(20000, 10)) + pair("0012"))
    out = process_shard(write(str(tmp_path), members), cfg)
    s = states(out)
    assert s["0001"][:2] == ("quarantined", "decode") and "truncated or corrupt JPEG" in s["0001"][2]
    assert s["0002"] == ("quarantined", "decode", "empty image file (0 bytes)")
    assert s["0003"][2].startswith("not an image")
    assert s["0004"] == ("quarantined", "caption", "empty caption")
    assert s["0005"][:2] == ("quarantined", "caption") and "not valid UTF-8" in s["0005"][2]
    assert s["0006"] == ("quarantined", "metadata", "missing json metadata")
    assert s["0007"][0] == "passed" and s["0008"][0] == "passed"  # CMYK and 16-bit convert, not fail
    modes = {p["key"]: p.get("mode") for p in out.pairs}
    assert modes["0007"] == "CMYK" and modes["0008"].startswith("I")
    assert s["0009"] == ("quarantined", "caption", "missing caption (no .txt and no caption in json)")
    assert s["0010"] == ("rejected", "resolution", "too small: short side 1 px < min_side 64")
    assert s["0011"][:2] == ("rejected", "resolution") and "short side 10" in s["0011"][2]
    assert s["0012"][0] == "passed"
    assert out.run["n_in"] == 12 == out.run["n_passed"] + out.run["n_rejected"] + out.run["n_quarantined"]


def _png(w, h):
    b = io.BytesIO()
    Image.new("RGB", (w, h), (10, 200, 30)).save(b, "PNG")
    return b.getvalue()


def test_unsafe_members_refused_never_extracted(tmp_path, cfg):
    sub = tmp_path / "in"
    sub.mkdir()
    p = write(str(sub), pair("0001") + [("../x.jpg", _jpeg(2)), ("/etc/evil.txt", b"x")], parquet_keys=["0001"])
    with tarfile.open(p, "a") as tf:
        ti = tarfile.TarInfo("0002.jpg")
        ti.type, ti.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(ti)
    cwd = os.getcwd()
    os.chdir(sub)
    try:
        out = process_shard(p, cfg)
    finally:
        os.chdir(cwd)
    s = states(out)
    assert s["../x.jpg"][:2] == ("quarantined", "read") and "path escapes the shard" in s["../x.jpg"][2]
    assert "absolute path '/etc/evil.txt'" in s["/etc/evil.txt"][2]
    assert "link member '0002.jpg'" in s["0002.jpg"][2]
    assert s["0001"][0] == "passed"
    assert not (tmp_path / "x.jpg").exists() and out.run["n_refused"] == 3
    assert out.run["n_in"] == 4


def test_truncated_tar_keeps_readable_members(tmp_path, cfg):
    members = pair("0001") + pair("0002") + pair("0003", img=_jpeg(3, size=(400, 400)))
    p = write(str(tmp_path), members)
    data = open(p, "rb").read()
    cut = data.index(b"0003.jpg") + 512 + 2000  # inside 0003.jpg's payload
    open(p, "wb").write(data[:cut])
    entries, _, errors = read_tar(p)
    assert errors and "truncated" in errors[0]
    out = process_shard(p, cfg)
    s = states(out)
    assert s["0001"][0] == "passed" and s["0002"][0] == "passed"
    assert s["0003"][:2] == ("quarantined", "read") and "truncated tar" in s["0003"][2]
    assert any("truncated" in e for e in json.loads(out.run["errors"]))
    assert out.run["n_in"] == 3


def test_parquet_disagrees_with_tar(tmp_path, cfg):
    p = write(str(tmp_path), pair("0001") + pair("0002"), parquet_keys=["0001", "0003"])
    out = process_shard(p, cfg)
    s = states(out)
    assert s["0001"][0] == "passed"
    assert s["0002"] == ("quarantined", "read", "in the tar but missing from the shard's parquet")
    assert s["0003"] == ("quarantined", "read", "listed in parquet (status success) but missing from the tar")
    assert "parquet disagrees with tar: 1 keys only in tar, 1 only in parquet" in out.run["errors"]


def test_decompression_bomb_in_a_shard(tmp_path, cfg):
    from tests.test_decode import _png_claiming
    out = process_shard(write(str(tmp_path), pair("0001", img=_png_claiming(60000, 60000))), cfg)
    st, stage, reason = states(out)["0001"]
    assert (st, stage) == ("quarantined", "decode") and reason.startswith("decompression bomb")
