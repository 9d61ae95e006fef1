import io
import tarfile

import pytest

from djepa_t2i.config import load_config
from tasks.captioning import normalize_caption, provenance, strip_tags, with_tags
from tasks.recaption import recaption
from tasks.shard_format import read_images
from tests.lake_fixtures import jpeg, make_lake, write_tar
from warehouse import db
from warehouse import lake as lk


def cfg(*overrides):
    return load_config(overrides=list(overrides)).recaption


def test_provenance_version_rules(tmp_path):
    a, b = provenance(cfg()), provenance(cfg())
    assert a == b and a.source == "alt" and a.version.startswith("alt-")
    (tmp_path / "InternVL2-2B").mkdir()
    w = str(tmp_path / "InternVL2-2B")
    v1 = provenance(cfg("recaption.backend=internvl", f"recaption.weights={w}"))
    v2 = provenance(cfg("recaption.backend=internvl", f"recaption.weights={w}"))
    v3 = provenance(cfg("recaption.backend=internvl", f"recaption.weights={w}", "recaption.prompt=Tags?"))
    assert v1 == v2 and v1.source == "vlm" and v1.model_id == "InternVL2-2B"
    assert v3.version != v1.version and v3.prompt_hash != v1.prompt_hash and v3.model_id == v1.model_id


def test_tags_appended_and_stripped():
    c = with_tags("a dog", ["style: photo", "source: laion"])
    assert c == "a dog [style: photo; source: laion]"
    assert strip_tags(c, "style: photo; source: laion") == "a dog"
    assert strip_tags("a dog", None) == "a dog"


def test_alt_backend_keeps_alt_text_and_never_duplicates(tmp_path):
    caps = ["a black and white photo of two cats", "", "  ", "x" * 10_000, "它是一只猫",
            "🐱🐱", "red cube'; DROP TABLE captions; --"]
    lake, rows = make_lake(tmp_path, caps, shards=2)
    passed = sum(r["status"] == "passed" for r in rows)
    s = recaption(lake, cfg(), progress=False)
    assert s["backend"] == "alt" and "no VLM ran" in s["note"]
    assert s["pairs"] == passed and s["alt_empty"] == 4 and s["alt"] == passed
    assert recaption(lake, cfg(), progress=False)["shards_skipped"] == 2  # resume: nothing redone
    recaption(lake, cfg(), force=True, progress=False)  # redo: replaced, not appended
    t = lk.read_table(lake, "captions").to_pylist()
    assert len(t) == passed and len({r["key"] for r in t}) == passed
    r = next(r for r in t if r["alt_text"].startswith("a black"))
    assert r["caption"] == "a black and white photo of two cats [style: black and white, photo; source: shapes]"
    assert r["source"] == "alt" and r["model_id"] == "alt" and r["created_at"] is not None
    inj = next(r for r in t if "DROP" in r["alt_text"])
    assert inj["alt_text"] == "red cube'; DROP TABLE captions; --"
    _, n = db.query(lake, "SELECT count(*) FROM captions WHERE alt_text = ?", [inj["alt_text"]])
    assert n == [(2,)]
    # a new setting is a new version beside the old one; captions_current has one row per key
    recaption(lake, cfg("recaption.append_tags=false"), progress=False)
    _, got = db.query(lake, "SELECT count(DISTINCT version), count(*) FROM captions")
    assert got == [(2, 2 * passed)]
    _, got = db.query(lake, "SELECT count(*), count(DISTINCT key) FROM captions_current")
    assert got == [(passed, passed)]
    _, got = db.query(lake, "SELECT version, n, n_current, n_empty FROM caption_stats ORDER BY created_at")
    assert [g[1] for g in got] == [passed, passed] and [g[2] for g in got] == [0, passed]


def test_tar_reading_refuses_unsafe_members(tmp_path):
    tar = tmp_path / "evil.tar"
    with tarfile.open(tar, "w") as tf:
        for name, data in {"../a.jpg": jpeg(8, 8), "ok.jpg": jpeg(8, 8)}.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        link = tarfile.TarInfo("b.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    found, errors = read_images(str(tar), ["../a", "ok", "b", "missing"])
    assert set(found) == {"ok"} and found["ok"][0] == "jpg"
    assert "path escapes the shard: '../a.jpg'" in errors["../a"]
    assert "link member 'b.jpg'" in errors["b"] and "no image member" in errors["missing"]
    assert "cannot read tar" in read_images(str(tmp_path / "nope.tar"), ["x"])[1]["x"]


@pytest.mark.slow
def test_internvl_backend_runs_generate_inside_the_flow(tmp_path):
    from tests.tiny_internvl import build
    from flows.recaption import recaption_flow
    weights = build(tmp_path / "tiny-internvl", image_size=56)
    lake, rows = make_lake(tmp_path, ["two red circles", "a blue star", "a photo of a cat"], shards=1)
    # one passed pair's image is missing from its tar: falls back to its alt text, counted
    write_tar(tmp_path / "00000.tar", {"000000000.jpg": jpeg(64, 64), "000000001.jpg": jpeg(30, 90)})
    ov = ["recaption.backend=internvl", f"recaption.weights={weights}", "recaption.image_size=56",
          "recaption.max_new_tokens=6", "recaption.batch_size=2", "recaption.prompt=Describe it."]
    s = recaption_flow(str(lake), overrides=ov)
    assert s["backend"] == "internvl" and "InternVL from" in s["note"]
    assert s["image_errors"] == 1 and s["fallback_alt"] == 1
    got = lk.read_table(lake, "captions").to_pylist()
    assert len(got) == 3
    assert all(r["model_id"] == "tiny-internvl" and r["version"].startswith("vlm-") for r in got)
    vlm = [r for r in got if r["source"] == "vlm"]
    assert len(vlm) + s.get("vlm_empty", 0) == 2
    for r in vlm:  # generate() produced text; tags appended; alt text kept
        assert r["caption"].endswith("[source: shapes]") and r["alt_text"] in ("two red circles", "a blue star")
        assert r["prompt_hash"] == provenance(load_config(overrides=ov).recaption).prompt_hash
    # re-run with the same model and prompt: nothing new
    s2 = recaption_flow(str(lake), overrides=ov)
    assert s2["shards_skipped"] == 1 and lk.read_table(lake, "captions").num_rows == 3


@pytest.mark.parametrize("raw,text,changes", [
    ("a red circle", "a red circle", ()),
    ("cafe\u0301 au lait", "caf\u00e9 au lait", ("NFC",)),
    ("evil \u202egnp.exe", "evil gnp.exe", ("removed 1 control/format character",)),
    ("\u2067rtl\u2069 isolate \u200fmark", "rtl isolate mark", ("removed 3 control/format characters",)),
    ("\x1b[31mred\x1b[0m text", "red text", ("removed 2 terminal escape sequences",)),
    ("title\x1b]0;pwned\x07 here", "title here", ("removed 1 terminal escape sequence",)),
    ("bell\x07 nul\x00 del\x7f c1\x9b", "bell nul del c1", ("removed 4 control/format characters",)),
    ("zero\u200bwidth \ufeffbom", "zerowidth bom", ("removed 2 control/format characters",)),
    ("line one\n\nline\ttwo\u2028three", "line one line two three", ("whitespace collapsed",)),
    ("family \U0001f468\u200d\U0001f469 and \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
     "family \U0001f468\u200d\U0001f469 and \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", ()),  # ZWJ/ZWNJ kept
    ("\u202e\u202d\x1b[0m", "", ("removed 1 terminal escape sequence", "removed 2 control/format characters")),
])
def test_normalize_caption(raw, text, changes):
    n = normalize_caption(raw, 2048)
    assert (n.text, n.changes) == (text, changes)


def test_normalize_caption_cuts_to_the_cap_and_says_so():
    n = normalize_caption(("word " * 1000).strip(), 2050)
    assert len(n.text) == 2049 and n.text.endswith("word")  # the cut's trailing space goes
    assert n.changes == ("cut from 4999 to 2050 characters (curate.caption_max_chars)",)
    assert normalize_caption("x" * 2048, 2048).changes == ()


def test_internvl_batched_greedy_captions_equal_one_at_a_time(tmp_path):
    """Left-padded batch generation (issue #26.3): with dynamic tiling the images' prompts differ
    in length (1 to 6 tiles of 256 image tokens here), so the batch is padded on the left; greedy
    captions of the batch equal the ones each image gets alone."""
    import numpy as np
    from PIL import Image

    from tasks.captioning import InternVLCaptioner
    from tests.tiny_internvl import build
    import torch
    cap = InternVLCaptioner(str(build(tmp_path / "tiny-internvl", image_size=56)), "Describe it.",
                            max_new_tokens=8, image_size=56, crop_to_patches=True, device="cpu")
    g = torch.Generator().manual_seed(0)  # weights wide enough that greedy tokens follow the image
    with torch.no_grad():  # (at the checkpoint's init scale every image gets the same token)
        for p in cap.model.parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
              for w, h in ((56, 56), (168, 56), (56, 112), (112, 112), (224, 56))]
    inputs = cap.processor(images=images, text=[cap.text] * len(images), return_tensors="pt", padding=True,
                           crop_to_patches=True, size={"height": 56, "width": 56})
    mask = inputs["attention_mask"]
    assert len(set(mask.sum(1).tolist())) > 2 and (mask[:, 0] == 0).any() and (mask[:, -1] == 1).all()  # left padded
    batched = cap.caption(images)
    assert batched == [cap.caption([im])[0] for im in images]
    assert len(set(batched)) == len(images) and all(batched)  # each image its own caption
