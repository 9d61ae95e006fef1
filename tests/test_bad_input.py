"""Bad input as a new user's data would have it: each case ends quarantined with a clear reason."""
import io
import json
import os
import tarfile
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from djepa_t2i.config import load_config
from flows.curate_laion import run_plain
from tasks.curate_shard import process_shard
from tasks.model_cache import Pipeline
from tasks.shard_format import split_key
from tasks.shards import list_shards, read_tar, shard_name
from tasks.stages import FilterStage
from tests.test_decode import _png_claiming
from warehouse import lake as lk
from warehouse.lake import LakeNotWritable


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


class _FailingFilter(FilterStage):
    """Fault injection: a model stage that raises, as a broken backend would."""
    name, backend = "aesthetic", "broken"

    def __call__(self, images, emb):
        raise RuntimeError("CUDA error: device-side assert triggered")


def test_a_shard_level_fault_quarantines_the_shards_pairs(tmp_path):
    cfg = load_config(overrides=["curate.order=[resolution,aesthetic,dedup]"])
    p = write_members(str(tmp_path), pair("0001") + pair("0002") + [_link("0003.jpg")], ["0001", "0002", "0004"])
    out = process_shard(p, cfg, pipeline=Pipeline([_FailingFilter()], None, {}))
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


# ------------------------------------------------------------------------------------------------
# The bad-input corpus: one tiny shard per kind of bad input, two good pairs (0001, 0003) beside
# the bad one wherever the fault is a pair's; every key's exact (status, stage, reason) asserted.

PASSED = ("passed", None, None)
GOOD = {"0001": PASSED, "0003": PASSED}


def q(stage, why):
    return ("quarantined", stage, why)


def _img(mode="RGB", size=(96, 80), fmt="PNG", seed=2, **kw):
    """A noise image of any mode (noise keeps pHash apart from the good pairs)."""
    alpha = mode in ("RGBA", "LA")
    a = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 4 if alpha else 3), np.uint8)
    im = Image.fromarray(a, "RGBA" if alpha else "RGB").convert(mode)
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def _png16():
    b = io.BytesIO()
    Image.fromarray(np.random.default_rng(2).integers(0, 65535, (80, 96), np.uint16)).save(b, "PNG")
    return b.getvalue()


def _exif_jpeg(orientation):
    im = Image.fromarray(np.random.default_rng(2).integers(0, 255, (80, 120, 3), np.uint8))
    exif = im.getexif()
    exif[0x0112] = orientation
    b = io.BytesIO()
    im.save(b, "JPEG", exif=exif.tobytes())
    return b.getvalue()


def _gif_animated():
    frames = [Image.fromarray(np.random.default_rng(s).integers(0, 255, (80, 96, 3), np.uint8)).convert("P")
              for s in (2, 5)]
    b = io.BytesIO()
    frames[0].save(b, "GIF", save_all=True, append_images=frames[1:])
    return b.getvalue()


def _ztxt_bomb():
    """A PNG whose compressed text chunk inflates past PIL's MAX_TEXT_CHUNK (a memory bomb in metadata)."""
    from PIL import PngImagePlugin
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "x" * (PngImagePlugin.MAX_TEXT_CHUNK + 1), zip=True)
    return _img(pnginfo=info)


def _tinfo(name, type_, linkname=""):
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname = type_, linkname
    return ti


def _bad(k="0002", img=None, cap=b"a photo", meta=None, exts=("jpg", "txt", "json")):
    """The bad pair's members: defaults for every member it does not override."""
    vals = {"jpg": _img(fmt="JPEG") if img is None else img, "txt": cap,
            "json": _meta(k) if meta is None else meta}
    return [(f"{k}.{e}", vals[e]) for e in exts]


CAP = "cut from {} to 2048 characters (curate.caption_max_chars)"
BIG = b"a photo " * 1_310_720  # 10 MiB of alt text
TRUNC_JPEG, TRUNC_PNG = _jpeg(2, size=(300, 300))[:3000], _img(size=(300, 300))[:3000]


@dataclass
class Kind:
    id: str
    bad: list  # members of the bad pair(s) (or a whole shard when good=False)
    expect: dict  # key -> (status, stage, reason) of every key besides the good ones
    good: bool = True  # the two good pairs sit beside the bad members
    parquet: object = "members"  # "members": the tar's keys; None: no parquet; a list: rows; bytes: the file
    name: str = "00000"
    tar: object = "plain"  # "plain" | "gz" | None (missing) | bytes (the file)
    overrides: tuple = ()
    check: object = None  # extra assertions on the ShardOutput


def _rows(out):
    return {p["key"]: p for p in out.pairs}


def _errors(out):
    return json.loads(out.run["errors"])


KINDS = [
    # --- json metadata ------------------------------------------------------------------------
    Kind("json-nan", _bad(meta=b'{"url": NaN}'), {"0002": q("metadata", "unreadable json metadata: ValueError: NaN is not JSON")}),
    Kind("json-infinity", _bad(meta=b'{"url": Infinity}'),
         {"0002": q("metadata", "unreadable json metadata: ValueError: Infinity is not JSON")}),
    Kind("json-minus-infinity", _bad(meta=b'{"source": -Infinity}'),
         {"0002": q("metadata", "unreadable json metadata: ValueError: -Infinity is not JSON")}),
    Kind("json-nested-object", _bad(meta=b'{"url": {"a": {"b": 1}}}'),
         {"0002": q("metadata", "json metadata field 'url' is dict, expected a string")}),
    Kind("json-list-value", _bad(meta=b'{"source": ["a", "list"]}'),
         {"0002": q("metadata", "json metadata field 'source' is list, expected a string")}),
    Kind("json-number-url", _bad(meta=b'{"url": 42}'),
         {"0002": q("metadata", "json metadata field 'url' is int, expected a string")}),
    Kind("json-100k-deep", _bad(meta=b"[" * 100_000 + b"]" * 100_000),
         {"0002": q("metadata", "unreadable json metadata: nested too deeply")}),
    Kind("json-array", _bad(meta=b'["an", "array"]'), {"0002": q("metadata", "json metadata is not an object")}),
    Kind("json-string", _bad(meta=b'"a string"'), {"0002": q("metadata", "json metadata is not an object")}),
    Kind("json-null", _bad(meta=b"null"), {"0002": q("metadata", "json metadata is not an object")}),
    Kind("json-not-utf8", _bad(meta=b'{"url": "\xff\xfe"}'),
         {"0002": q("metadata", "unreadable json metadata: UnicodeDecodeError: 'utf-8' codec can't decode byte "
                                "0xff in position 9: invalid start byte")}),
    Kind("json-truncated", _bad(meta=b'{"url": "http://x'),
         {"0002": q("metadata", "unreadable json metadata: JSONDecodeError: Unterminated string starting at: "
                                "line 1 column 9 (char 8)")}),
    Kind("json-empty", _bad(meta=b""),
         {"0002": q("metadata", "unreadable json metadata: JSONDecodeError: Expecting value: line 1 column 1 (char 0)")}),
    Kind("json-utf8-bom", _bad(meta=b'\xef\xbb\xbf{"url": "http://x"}'),
         {"0002": q("metadata", "unreadable json metadata: JSONDecodeError: Unexpected UTF-8 BOM (decode using "
                                "utf-8-sig): line 1 column 1 (char 0)")}),
    Kind("json-missing", _bad(exts=("jpg", "txt")), {"0002": q("metadata", "missing json metadata")}),
    Kind("json-lone-surrogate-url", _bad(meta=b'{"url": "http://x/\\udfff"}'),
         {"0002": q("metadata", "json metadata field 'url': lone surrogate '\\udfff' at character 9")}),
    Kind("json-duplicate-field", _bad(meta=b'{"url": "http://a", "url": "http://b"}'), {"0002": PASSED},
         check=lambda out: _rows(out)["0002"]["url"] == "http://b"),  # JSON's last-wins, as every parser
    Kind("json-huge-number", _bad(meta=b'{"url": "http://x", "width": 1e400}'), {"0002": PASSED}),
    # --- captions -----------------------------------------------------------------------------
    Kind("caption-empty", _bad(cap=b""), {"0002": q("caption", "empty caption")}),
    Kind("caption-whitespace", _bad(cap=b"  \n\t \r\n "), {"0002": q("caption", "empty caption")}),
    Kind("caption-not-utf8", _bad(cap="caf\xe9".encode("latin-1")),
         {"0002": q("caption", "caption is not valid UTF-8 (unexpected end of data at byte 3)")}),
    Kind("caption-utf16", _bad(cap="a photo".encode("utf-16")),
         {"0002": q("caption", "caption is not valid UTF-8 (invalid start byte at byte 0)")}),
    Kind("caption-json-lone-surrogate", _bad(meta=b'{"caption": "\\ud800 lone"}', exts=("jpg", "json")),
         {"0002": q("caption", "caption: lone surrogate '\\ud800' at character 0")}),
    Kind("caption-json-int", _bad(meta=b'{"caption": 42}', exts=("jpg", "json")),
         {"0002": q("caption", "json caption is int, expected a string")}),
    Kind("caption-missing", _bad(meta=b'{"url": "http://x"}', exts=("jpg", "json")),
         {"0002": q("caption", "missing caption (no .txt and no caption in json)")}),
    Kind("caption-from-json", _bad(meta=b'{"caption": "from the json"}', exts=("jpg", "json")), {"0002": PASSED},
         check=lambda out: _rows(out)["0002"]["caption"] == "from the json"),
    Kind("caption-10mb", _bad(cap=BIG), {"0002": PASSED},
         check=lambda out: (len(_rows(out)["0002"]["caption"]) == 2047  # the cut's trailing space goes
                            and _rows(out)["0002"]["caption_raw"] == BIG.decode().strip()
                            and _rows(out)["0002"]["caption_changes"] == CAP.format(len(BIG) - 1))),
    Kind("caption-rtl-override", _bad(cap="invoice \u202egnp.exe".encode()), {"0002": PASSED},
         check=lambda out: (_rows(out)["0002"]["caption"], _rows(out)["0002"]["caption_changes"])
         == ("invoice gnp.exe", "removed 1 control/format character")),
    Kind("caption-rtl-text", _bad(cap="\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627".encode()), {"0002": PASSED},
         check=lambda out: _rows(out)["0002"].get("caption_raw") is None),  # right-to-left script is text, kept
    Kind("caption-terminal-escapes", _bad(cap=b"\x1b[2J\x1b[31mred\x1b[0m car\x07"), {"0002": PASSED},
         check=lambda out: (_rows(out)["0002"]["caption"], _rows(out)["0002"]["caption_changes"])
         == ("red car", "removed 3 terminal escape sequences; removed 1 control/format character")),
    Kind("caption-controls-only", _bad(cap=b"\x1b[31m\x07\x00"),
         {"0002": q("caption", "empty caption after normalisation: removed 1 terminal escape sequence; "
                               "removed 2 control/format characters")}),
    Kind("caption-zero-width-only", _bad(cap="\u200b\u2060\ufeff".encode()),
         {"0002": q("caption", "empty caption after normalisation: removed 3 control/format characters")}),
    Kind("caption-nfd", _bad(cap="cafe\u0301".encode()), {"0002": PASSED},
         check=lambda out: (_rows(out)["0002"]["caption"], _rows(out)["0002"]["caption_changes"]) == ("caf\u00e9", "NFC")),
    Kind("caption-newlines", _bad(cap=b"line one\n\nline two"), {"0002": PASSED},
         check=lambda out: _rows(out)["0002"]["caption"] == "line one line two"),
    # --- images ---------------------------------------------------------------------------------
    Kind("jpeg-truncated", _bad(img=TRUNC_JPEG),
         {"0002": q("decode", "truncated or corrupt JPEG data: image file is truncated (73 bytes not processed)")}),
    Kind("png-truncated", _bad(img=TRUNC_PNG),
         {"0002": q("decode", "truncated or corrupt PNG data: image file is truncated")}),
    Kind("zero-byte-image", _bad(img=b""), {"0002": q("decode", "empty image file (0 bytes)")}),
    Kind("html-as-jpeg", _bad(img=b"<html><body>404 Not Found</body></html>"),
         {"0002": q("decode", "not an image: unrecognised bytes (starts b'<html><b')")}),
    Kind("garbage-gif-header", _bad(img=b"GIF89a nonsense"),
         {"0002": q("decode", "not an image: unrecognised bytes (starts b'GIF89a n')")}),
    Kind("no-image-member", _bad(exts=("txt", "json")), {"0002": q("decode", "no image file in the shard for this key")}),
    Kind("png-named-jpg", _bad(img=_img()), {"0002": PASSED}, check=lambda out: _rows(out)["0002"]["width"] == 96),
    Kind("jpg-and-png-members", _bad(exts=("jpg", "txt", "json")) + [("0002.png", _img(seed=5))], {"0002": PASSED}),
    Kind("cmyk-jpeg", _bad(img=_img("CMYK", fmt="JPEG")), {"0002": PASSED},
         check=lambda out: _rows(out)["0002"]["mode"] == "CMYK"),
    Kind("png-16-bit", _bad(img=_png16()), {"0002": PASSED}, check=lambda out: _rows(out)["0002"]["mode"].startswith("I")),
    Kind("palette-png", _bad(img=_img("P")), {"0002": PASSED}, check=lambda out: _rows(out)["0002"]["mode"] == "P"),
    Kind("palette-transparency", _bad(img=_img("P", transparency=0)), {"0002": PASSED}),
    Kind("rgba-png", _bad(img=_img("RGBA")), {"0002": PASSED}, check=lambda out: _rows(out)["0002"]["mode"] == "RGBA"),
    Kind("la-png", _bad(img=_img("LA")), {"0002": PASSED}, check=lambda out: _rows(out)["0002"]["mode"] == "LA"),
    Kind("one-bit-png", _bad(img=_img("1")), {"0002": PASSED}, check=lambda out: _rows(out)["0002"]["mode"] == "1"),
    Kind("gif-animated", _bad(img=_gif_animated()), {"0002": PASSED}),
    Kind("webp", _bad(img=_img(fmt="WEBP")), {"0002": PASSED}),
    Kind("bmp", _bad(img=_img(fmt="BMP")), {"0002": PASSED}),
    Kind("tiff", _bad(img=_img(fmt="TIFF")), {"0002": PASSED}),
    Kind("one-by-one", _bad(img=_png(1, 1)), {"0002": ("rejected", "resolution", "too small: short side 1 px < min_side 64")}),
    Kind("extreme-aspect", _bad(img=_png(20000, 10)),
         {"0002": ("rejected", "resolution", "too small: short side 10 px < min_side 64")}),
    Kind("decompression-bomb-pil", _bad(img=_png_claiming(60000, 60000)),
         {"0002": q("decode", "decompression bomb: Image size (3600000000 pixels) exceeds limit of 178956970 pixels, "
                              "could be decompression bomb DOS attack.")}),
    Kind("over-max-pixels", _bad(img=_png_claiming(10000, 10000)),
         {"0002": q("decode", "decompression bomb: 10000x10000 = 100000000 pixels > max_pixels 89478485")}),
    Kind("png-ztxt-bomb", _bad(img=_ztxt_bomb()),
         {"0002": q("decode", "decompression bomb: Decompressed data too large for PngImagePlugin.MAX_TEXT_CHUNK")}),
    Kind("exif-orientation-6", _bad(img=_exif_jpeg(6)), {"0002": PASSED},
         check=lambda out: (lambda r: (r["orientation"], r["width"], r["height"]) == (6, 80, 120))(_rows(out)["0002"])),
    Kind("exif-orientation-9", _bad(img=_exif_jpeg(9)), {"0002": PASSED},  # not a transform: recorded as none applied
         check=lambda out: (lambda r: (r["orientation"], r["width"], r["height"]) == (1, 120, 80))(_rows(out)["0002"])),
    # --- tar members and names ------------------------------------------------------------------
    Kind("symlink-named-like-key", _bad(exts=("txt", "json")) + [_link("0002.jpg")],
         {"0002": q("read", REFUSED + "link member '0002.jpg' -> '/etc/passwd'")}),
    Kind("symlink-bare-key", _bad() + [_link("0002")], {"0002": q("read", REFUSED + "link member '0002' -> '/etc/passwd'")}),
    Kind("hardlink", _bad(exts=("txt", "json")) + [_tinfo("0002.jpg", tarfile.LNKTYPE, "0001.jpg")],
         {"0002": q("read", REFUSED + "link member '0002.jpg' -> '0001.jpg'")}),
    Kind("device-member", _bad(exts=("txt", "json")) + [_tinfo("0002.jpg", tarfile.CHRTYPE)],
         {"0002": q("read", REFUSED + "special member '0002.jpg' (type b'3')")}),
    Kind("fifo-member", _bad(exts=("txt", "json")) + [_tinfo("0002.jpg", tarfile.FIFOTYPE)],
         {"0002": q("read", REFUSED + "special member '0002.jpg' (type b'6')")}),
    Kind("directory-member", [_tinfo("0002", tarfile.DIRTYPE)], {}),  # a folder is no pair
    Kind("duplicate-member-html", _bad() + [("0002.jpg", b"<html>not an image</html>")],
         {"0002": q("read", REFUSED + DUP.format("0002.jpg"))}),
    Kind("duplicate-member-case", _bad() + [("0002.JPG", _jpeg(7))], {"0002": q("read", REFUSED + DUP.format("0002.JPG"))}),
    Kind("two-refused-one-name", _bad(exts=("txt", "json")) + [_link("0002.jpg"), _link("0002.jpg", "/etc/shadow")],
         {"0002": q("read", REFUSED + "link member '0002.jpg' -> '/etc/passwd'; link member '0002.jpg' -> '/etc/shadow'")}),
    Kind("refused-members-one-row-per-pair", [_link("0002.jpg"), _link("0002.txt"), _link("0002.json")],
         {"0002": q("read", REFUSED + "link member '0002.jpg' -> '/etc/passwd'; link member '0002.txt' -> "
                                      "'/etc/passwd'; link member '0002.json' -> '/etc/passwd'")}),
    Kind("path-traversal", [("../0002.jpg", _jpeg(2))],
         {"../0002": q("read", REFUSED + "path escapes the shard: '../0002.jpg'")}),
    Kind("absolute-path", [("/etc/0002.txt", b"x")], {"/etc/0002": q("read", REFUSED + "absolute path '/etc/0002.txt'")}),
    Kind("name-not-utf8", [("\udcff.jpg", _jpeg(2)), ("\udcff.txt", b"a photo"), ("\udcff.json", _meta("0002"))],
         {"\\xff": q("store", "row not storable: UnicodeEncodeError: 'utf-8' codec can't encode character '\\udcff' "
                              "in position 0: surrogates not allowed")}),  # kept under its escaped bytes
    Kind("key-in-subfolder", _bad("sub/0002"), {"sub/0002": PASSED}),
    Kind("key-with-space-and-unicode", _bad("\u043a\u043b\u044e\u0447 2"), {"\u043a\u043b\u044e\u0447 2": PASSED}),
    # --- shards ---------------------------------------------------------------------------------
    Kind("shard-name-with-space", _bad(), {"0002": PASSED}, name="part 1",
         check=lambda out: out.run["shard"] == "part_1-" + _sha8("part 1")),
    Kind("shard-name-non-ascii", _bad(), {"0002": PASSED}, name="sch\u00e4rd",
         check=lambda out: out.run["shard"] == "sch_rd-" + _sha8("sch\u00e4rd")),
    Kind("parquet-keys-without-tar", [], {k: q("read", "listed in parquet (status success) but missing from the tar, "
                                                      "which is missing") for k in ("0001", "0002")},
         good=False, parquet=["0001", "0002"], tar=None,
         check=lambda out: "tar 00000.tar is missing: only its parquet exists" in _errors(out)),
    Kind("parquet-key-missing-from-tar", _bad(), {"0002": PASSED, "0004": q("read", "listed in parquet (status success) "
                                                                                   "but missing from the tar")},
         parquet=["0001", "0002", "0003", "0004"]),
    Kind("tar-key-missing-from-parquet", _bad(), {"0002": q("read", "in the tar but missing from the shard's parquet")},
         parquet=["0001", "0003"]),
    Kind("parquet-int-keys", _bad(), {"0001": q("read", "in the tar but missing from the shard's parquet"),
                                      "0002": q("read", "in the tar but missing from the shard's parquet"),
                                      "0003": q("read", "in the tar but missing from the shard's parquet"),
                                      **{k: q("read", "listed in parquet (status success) but missing from the tar")
                                         for k in ("1", "2", "3")}},
         good=True, parquet=[1, 2, 3]),
    Kind("no-parquet", _bad(), {"0002": PASSED}, parquet=None,
         check=lambda out: _errors(out) == ["no parquet beside the tar: keys not cross-checked"]),
    Kind("parquet-garbage", _bad(), {"0002": PASSED}, parquet=b"PAR1 this is not parquet",
         check=lambda out: _errors(out)[0].startswith("unreadable parquet 00000.parquet: ArrowInvalid")),
    Kind("parquet-without-key-column", _bad(), {"0002": PASSED}, parquet=[{"url": "x"}],
         check=lambda out: _errors(out)[0] == "parquet 00000.parquet has no 'key' column"),
    Kind("source-failed-rows", _bad(), {"0002": PASSED, "0004": ("source_failed", "download",
                                                               "img2dataset failed_to_download: HTTP 404")},
         parquet=["0001", "0002", "0003", {"key": "0004", "status": "failed_to_download", "error_message": "HTTP 404"}]),
    Kind("empty-tar", [], {k: q("read", "listed in parquet (status success) but missing from the tar") for k in ("0001", "0002")},
         good=False, parquet=["0001", "0002"]),
    Kind("tar-is-garbage", [], {k: q("read", "listed in parquet (status success) but missing from the tar")
                                for k in ("0001", "0002")},
         good=False, parquet=["0001", "0002"], tar=b"this is no tar file " * 100,
         check=lambda out: _errors(out)[0].startswith("cannot open tar: ReadError")),
    Kind("tar-truncated-mid-member", _bad(img=_jpeg(2, size=(400, 400))), {"0002": q("read", "member cut off by a truncated tar")},
         tar="cut-0002"),
    Kind("gzip-bombed-tar", _bad(img=bytes(50_000_000)),
         {"0002": q("read", REFUSED + "member '0002.jpg' has 50000000 bytes > curate.max_member_bytes 1000000")},
         tar="gz", overrides=("curate.max_member_bytes=1000000",)),
]


def _parquet_rows(kind: Kind, members) -> list[dict]:
    """img2dataset's rows for the kind: success rows for the tar's keys unless the kind says."""
    if kind.parquet == "members":
        keys = []
        for m in members:
            name = m.name if isinstance(m, tarfile.TarInfo) else m[0]
            k = split_key(name)[0]
            if not (isinstance(m, tarfile.TarInfo) and m.isdir()) and not name.startswith(("/", "..")) \
                    and _utf8(k) and k not in keys:
                keys.append(k)
        return [{"key": k, "status": "success", "caption": "c"} for k in keys]
    return [r if isinstance(r, dict) else {"key": r, "status": "success"} for r in kind.parquet]


def _utf8(k: str) -> bool:
    try:
        k.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _write_kind(root: str, kind: Kind) -> str:
    """One shard folder for the kind: tar (plain, gzip, cut, garbage or missing) + parquet."""
    d = os.path.join(root, kind.id)
    os.makedirs(d)
    p = os.path.join(d, kind.name + ".tar")
    members = (pair("0001") + pair("0003") if kind.good else []) + kind.bad  # bad last: a cut keeps the good
    if isinstance(kind.tar, bytes):
        open(p, "wb").write(kind.tar)
    elif kind.tar is not None:
        with tarfile.open(p, "w:gz" if kind.tar == "gz" else "w", format=tarfile.GNU_FORMAT,
                          errors="surrogateescape") as tf:
            for m in members:
                tf.addfile(m) if isinstance(m, tarfile.TarInfo) else _add(tf, *m)
        if kind.tar.startswith("cut-"):
            data = open(p, "rb").read()
            open(p, "wb").write(data[: data.index(kind.tar[4:].encode() + b".jpg") + 512 + 2000])
    pq_path = os.path.join(d, kind.name + ".parquet")
    if isinstance(kind.parquet, bytes):
        open(pq_path, "wb").write(kind.parquet)
    elif kind.parquet is not None:
        rows = _parquet_rows(kind, members)
        cols = list(dict.fromkeys(c for r in rows for c in r))
        pq.write_table(pa.Table.from_pylist([{c: r.get(c) for c in cols} for r in rows]), pq_path)
    return p


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """Every kind's shard built and curated once: {kind id: ShardOutput}."""
    root = str(tmp_path_factory.mktemp("corpus"))
    base = ["curate.order=[resolution,dedup]"]
    return {k.id: process_shard(_write_kind(root, k), load_config(overrides=base + list(k.overrides)))
            for k in KINDS}


def test_the_corpus_has_at_least_60_kinds():
    assert len({k.id for k in KINDS}) == len(KINDS) >= 60


@pytest.mark.parametrize("kind", KINDS, ids=[k.id for k in KINDS])
def test_bad_input_kind(corpus, kind):
    out = corpus[kind.id]
    assert states(out) == ({**GOOD} if kind.good else {}) | kind.expect
    assert out.run["n_in"] == len(out.pairs) == sum(out.run[f"n_{s}"] for s in
                                                    ("passed", "rejected", "quarantined", "source_failed"))
    assert {r["key"] for r in out.scores} == {k for k, v in states(out).items() if v[0] in ("passed", "rejected")}
    if kind.check:
        assert kind.check(out)
    lk.to_arrow("pairs", out.pairs)  # every row storable


def test_an_unwritable_lake_fails_before_any_shard(tmp_path, cfg):
    """One line naming the lake and the OS's reason, raised before the first shard is read (the
    run used to curate every shard and fail at the first write)."""
    src = tmp_path / "in"
    src.mkdir()
    write(str(src), pair("0001"))
    (tmp_path / "a-file").write_text("not a folder")
    lake = str(tmp_path / "a-file" / "lake")
    with pytest.raises(LakeNotWritable) as e:
        run_plain(str(src), lake, cfg, progress=False)
    assert str(e.value) == f"lake {lake!r} is not writable: Not a directory"


def test_garbage_keeps_its_reason_after_ultralytics_is_loaded():
    """Loading YOLO (face filter, GenEval detector) must not change why garbage is refused:
    ultralytics patches PIL.Image.open to pip-install pi-heif on unidentified bytes."""
    from tasks.decode import DecodeError, decode_image
    from tasks.yolo import yolo_class
    yolo_class()
    with pytest.raises(DecodeError, match=r"unrecognised bytes \(starts b'<html>"):
        decode_image(b"<html><body>not a jpeg</body></html>", 10_000_000)
