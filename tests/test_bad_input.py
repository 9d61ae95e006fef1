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
from flows.curate_laion import run_plain
from tasks.curate import Models, process_shard
from tasks.shards import list_shards, read_tar, shard_name
from warehouse import lake as lk


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
    s = states(out)  # one row per key, not per member
    refused = "tar member refused, not extracted: "
    assert s["../x"] == ("quarantined", "read", refused + "path escapes the shard: '../x.jpg'")
    assert s["/etc/evil"] == ("quarantined", "read", refused + "absolute path '/etc/evil.txt'")
    assert s["0002"] == ("quarantined", "read", refused + "link member '0002.jpg' -> '/etc/passwd'")
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



def _link(name, target="/etc/passwd"):
    """A symbolic-link member (``tarfile`` writes it with no payload)."""
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname = tarfile.SYMTYPE, target
    return ti


def write_members(tmp, members, parquet_keys, name="00000"):
    """Like :func:`write`, but members may be ``TarInfo`` links; names are written as GNU raw
    bytes so an undecodable name (surrogate-escaped) reaches the tar as it would from a crawl."""
    p = os.path.join(tmp, name + ".tar")
    with tarfile.open(p, "w", format=tarfile.GNU_FORMAT, errors="surrogateescape") as tf:
        for m in members:
            tf.addfile(m) if isinstance(m, tarfile.TarInfo) else _add(tf, *m)
    pq.write_table(pa.Table.from_pylist([{"key": k, "status": "success"} for k in parquet_keys]),
                   os.path.join(tmp, name + ".parquet"))
    return p


def _meta_raw(k, text):
    return [(f"{k}.jpg", _jpeg(int(k))), (f"{k}.txt", b"a photo"), (f"{k}.json", text.encode())]


REFUSED = "tar member refused, not extracted: "
DUP = "duplicate member {!r}: a second copy would replace the first, so neither is used"


def test_hostile_values_names_and_members_quarantine_one_pair_each(tmp_path, cfg):
    """Each value that crashed a whole shard (and the flow) before ends as one quarantined pair
    with its reason; the good pairs beside them pass."""
    no_txt = lambda k, meta: [(f"{k}.jpg", _jpeg(int(k))), (f"{k}.json", meta.encode())]  # noqa: E731
    members = (
        pair("0001")
        + _meta_raw("0002", '{"url": NaN, "caption": "x"}')
        + _meta_raw("0003", '{"url": {"nested": "object"}}')
        + _meta_raw("0004", '{"source": ["a", "list"]}')
        + _meta_raw("0005", "[" * 100_000 + "]" * 100_000)
        + no_txt("0006", '{"caption": "\\ud800 lone surrogate"}')
        + no_txt("0007", '{"caption": 42}')
        + _meta_raw("0008", '{"url": "http://x/\\udfff"}')
        + _meta_raw("0009", '["an", "array"]')
        + _meta_raw("0010", '{"url": Infinity}')
        + [("0011.txt", b"a photo"), ("0011.json", _meta("0011")), _link("0011.jpg")]  # link named like a key
        + pair("0012") + [_link("0012")]  # a link whose name is the bare key
        + pair("0013") + [("0013.jpg", b"<html>not an image</html>")]  # same name twice
        + [_link("0014.jpg"), _link("0014.jpg", "/etc/shadow")]  # two refused members, one name
        + pair("0015") + [("0015.JPG", _jpeg(99))]  # case-only repeat is the same member name
        + [("\udcff.jpg", _jpeg(16)), ("\udcff.txt", b"a photo")]  # name bytes not UTF-8
        + pair("0017") + pair("0018"))
    keys = [f"{i:04d}" for i in range(1, 19) if i != 16]
    out = process_shard(write_members(str(tmp_path), members, keys), cfg)
    s = states(out)
    q = lambda stage, why: ("quarantined", stage, why)  # noqa: E731
    assert s["0002"] == q("metadata", "unreadable json metadata: ValueError: NaN is not JSON")
    assert s["0003"] == q("metadata", "json metadata field 'url' is dict, expected a string")
    assert s["0004"] == q("metadata", "json metadata field 'source' is list, expected a string")
    assert s["0005"] == q("metadata", "unreadable json metadata: nested too deeply")
    assert s["0006"] == q("caption", "caption: lone surrogate '\\ud800' at character 0")
    assert s["0007"] == q("caption", "json caption is int, expected a string")
    assert s["0008"] == q("metadata", "json metadata field 'url': lone surrogate '\\udfff' at character 9")
    assert s["0009"] == q("metadata", "json metadata is not an object")
    assert s["0010"] == q("metadata", "unreadable json metadata: ValueError: Infinity is not JSON")
    assert s["0011"] == q("read", REFUSED + "link member '0011.jpg' -> '/etc/passwd'")
    assert s["0012"] == q("read", REFUSED + "link member '0012' -> '/etc/passwd'")
    assert s["0013"] == q("read", REFUSED + DUP.format("0013.jpg"))
    assert s["0014"] == q("read", REFUSED + "link member '0014.jpg' -> '/etc/passwd'; "
                                            "link member '0014.jpg' -> '/etc/shadow'")
    assert s["0015"] == q("read", REFUSED + DUP.format("0015.JPG"))
    st, stage, why = s["\\xff"]  # stored under its escaped bytes, never dropped
    assert (st, stage) == ("quarantined", "store") and why.startswith("row not storable: UnicodeEncodeError")
    assert {k for k, v in s.items() if v[0] == "passed"} == {"0001", "0017", "0018"}
    assert len(s) == len(out.pairs) == out.run["n_in"] == 18 and out.run["n_quarantined"] == 15
    assert {r["key"] for r in out.scores} == {"0001", "0017", "0018"}
    lk.write_partition(str(tmp_path / "lake"), "pairs", "00000", out.pairs)  # every row storable


class _FailingFilter:
    """Fault injection: a model stage that raises, as a broken backend would."""
    name, backend, needs_clip = "aesthetic", "broken", False

    def __call__(self, images, emb):
        raise RuntimeError("CUDA error: device-side assert triggered")


def test_a_shard_level_fault_quarantines_the_shards_pairs(tmp_path):
    cfg = load_config(overrides=["curate.order=[resolution,aesthetic,dedup]"])
    p = write_members(str(tmp_path), pair("0001") + pair("0002") + [_link("0003.jpg")], ["0001", "0002", "0004"])
    out = process_shard(p, cfg, models=Models({"aesthetic": _FailingFilter()}, None, {}))
    why = "shard failed, its pairs quarantined: RuntimeError: CUDA error: device-side assert triggered"
    assert states(out) == {k: ("quarantined", "shard", why) for k in ("0001", "0002", "0003", "0004")}
    assert out.run["n_in"] == 4 == out.run["n_quarantined"] and out.scores == []
    assert json.loads(out.run["errors"])[-1] == "shard failed: RuntimeError: CUDA error: device-side assert triggered"


def test_names_parquet_without_tar_and_the_flow_goes_on(tmp_path, cfg):
    """Shard names that are no safe partition name map to one; a parquet whose tar is missing has
    its keys accounted; the whole run (cross-shard dedup, accounting, warehouse) completes."""
    src = tmp_path / "in"
    src.mkdir()
    write_members(str(src), pair("0001") + _meta_raw("0002", '{"url": NaN}'), ["0001", "0002"], name="part 1")
    write_members(str(src), pair("0003"), ["0003"], name="schärd")
    write_members(str(src), pair("0004"), ["0004"], name="part_1")
    pq.write_table(pa.Table.from_pylist([{"key": k, "status": "success"} for k in ("0005", "0006")]
                                        + [{"key": "0007", "status": "failed_to_download"}]),
                   str(src / "00009.parquet"))
    names = [shard_name(t) for t in list_shards(str(src))]
    assert names == ["00009", "part_1-" + _sha8("part 1"), "part_1", "sch_rd-" + _sha8("schärd")]
    lake = str(tmp_path / "lake")
    summary = run_plain(str(src), lake, cfg, progress=False)
    assert (summary["n_in"], summary["n_passed"], summary["n_quarantined"], summary["n_source_failed"]) == (7, 3, 3, 1)
    rows = {(r["shard"], r["key"]): (r["status"], r["reason"]) for r in lk.read_table(lake, "pairs").to_pylist()}
    missing = "listed in parquet (status success) but missing from the tar, which is missing"
    assert rows[("00009", "0005")] == rows[("00009", "0006")] == ("quarantined", missing)
    assert rows[(names[1], "0001")][0] == rows[(names[2], "0004")][0] == rows[(names[3], "0003")][0] == "passed"
    assert rows[(names[1], "0002")] == ("quarantined", "unreadable json metadata: ValueError: NaN is not JSON")
    run = lk.read_table(lake, "shard_runs", ["00009"]).to_pylist()[0]
    assert "tar 00009.tar is missing: only its parquet exists" in json.loads(run["errors"])
    assert summary["n_shards"] == 4 and os.path.exists(os.path.join(lake, "warehouse.duckdb"))


def _sha8(stem):
    import hashlib
    return hashlib.sha256(stem.encode()).hexdigest()[:8]
