"""Curation as declared stages: the registry reads ``curate.order`` and the runner never names a stage."""
import io
import re
from pathlib import Path

import pytest
from PIL import Image

from djepa_t2i.config import ConfigError, load_config
from flows.curate_laion import run_plain
from tasks.curate_shard import process_shard
from tasks.filters.clip_head import ClipHeadFilter
from tasks.stages import CLIP_EMBEDDING, READS, SKIPPED_NO_CLIP, Stage, declare_stages
from tests.test_bad_input import _jpeg, pair, write
from warehouse import db

DOC = Path(__file__).resolve().parents[1] / "docs" / "curation.md"

BUILT_IN = (
    "laion_scores", "resolution", "dedup", "aesthetic", "clip_similarity", "semantic_dedup", "ocr", "nsfw", "face")


def test_every_built_in_stage_keeps_the_interface():
    cfg = load_config(overrides=["curate.laion_scores.max_punsafe=0.5", "curate.clip_weights=/unused"])
    d = declare_stages(cfg)
    assert [s.name for s in d.stages] == list(cfg.curate.order) == list(BUILT_IN) and d.skipped == {}
    for s in d.stages:
        assert isinstance(s, Stage) and set(s.reads) <= READS
    reads_clip = {s.name for s in d.stages if CLIP_EMBEDDING in s.reads}
    assert reads_clip == {"clip_similarity", "semantic_dedup"}  # the offline aesthetic/nsfw read pixels
    writes = {s.name: s.writes for s in d.stages if s.writes}
    assert writes == {"dedup": ("sha256", "phash", "dup_of"), "semantic_dedup": ("dup_of",)}


def test_off_and_skipped_stages_follow_the_config():
    d = declare_stages(load_config(overrides=["curate.nsfw.backend=none", "curate.ocr.backend=none"]))
    names = [s.name for s in d.stages]
    assert names == ["resolution", "dedup", "aesthetic", "face"]  # laion_scores: no threshold set
    assert d.skipped == {"clip_similarity": SKIPPED_NO_CLIP, "semantic_dedup": SKIPPED_NO_CLIP}


def test_the_clip_heads_are_clip_head_filters_that_read_the_embedding():
    cfg = load_config(overrides=["curate.clip_weights=/c", "curate.aesthetic.backend=laion-mlp",
                                 "curate.aesthetic.weights=/a", "curate.nsfw.backend=clip-mlp", "curate.nsfw.weights=/n",
                                 "curate.nsfw.batch_size=8", "curate.order=[aesthetic,nsfw]"], check_paths=False)
    heads = declare_stages(cfg).stages  # declared, not set up: no weights are read
    assert [(h.name, h.backend, h.reads) for h in heads] == [("aesthetic", "laion-mlp", (CLIP_EMBEDDING,)),
                                                              ("nsfw", "clip-mlp", (CLIP_EMBEDDING,))]
    assert all(isinstance(h, ClipHeadFilter) for h in heads) and [h.batch_size for h in heads] == [32, 8]


@pytest.mark.parametrize("name, why", [
    ("blurry", "curate.order: unknown stage 'blurry' (no module tasks.filters.blurry; "
               "docs/curation.md: adding a stage)"),
    ("clip_loader", "curate.order: tasks.filters.clip_loader is no stage (it has no build(cfg))"),
])
def test_an_unknown_stage_is_one_line(name, why):
    cfg = load_config(overrides=[f"curate.order=[resolution,{name}]"])
    with pytest.raises(ConfigError) as e:
        declare_stages(cfg)
    assert str(e.value) == why


def test_within_shard_duplicates_name_the_kept_pair(tmp_path):
    img = _jpeg(7)
    out = process_shard(write(str(tmp_path), pair("0001", img) + pair("0002") + pair("0003", img)),
                        load_config(overrides=["curate.order=[resolution,dedup]"]))
    by = {p["key"]: p for p in out.pairs}
    assert [by[k]["status"] for k in ("0001", "0002", "0003")] == ["passed", "passed", "rejected"]
    assert by["0003"]["dup_of"] == "00000/0001" and by["0003"]["reason"] == "exact duplicate of 00000/0001"
    assert by["0003"]["sha256"] == by["0001"]["sha256"] and by["0001"].get("dup_of") is None


def _grey_jpeg(level: int) -> bytes:
    b = io.BytesIO()
    Image.new("L", (96, 80), level).save(b, "JPEG")
    return b.getvalue()


@pytest.fixture
def greyscale_example(tmp_path, monkeypatch):
    """The worked example of docs/curation.md, as written there, importable as a module."""
    code = re.search(r"Worked example.*?```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    (tmp_path / "greyscale_example.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    return ["curate.stages.greyscale.module=greyscale_example"]


def test_a_new_stage_is_one_file_plus_one_config_entry(tmp_path, greyscale_example):
    src = tmp_path / "in"
    src.mkdir()
    write(str(src), pair("0001", _grey_jpeg(90)) + pair("0002") + pair("0003", _grey_jpeg(200)))
    lake = str(tmp_path / "lake")
    cfg = load_config(overrides=["curate.order=[resolution,greyscale]", "curate.stages.greyscale.min_saturation=0.1",
                                 *greyscale_example])
    s = run_plain(str(src), lake, cfg, progress=False)
    assert s["order"] == [("resolution", 0), ("greyscale", 2)] and s["backends"]["greyscale"] == "hsv-saturation"
    _, pairs = db.query(lake, "SELECT key, status, stage, reason, score FROM pairs ORDER BY key")
    why = "mean saturation 0.000 < min_saturation 0.1"
    assert pairs == [("0001", "rejected", "greyscale", why, 0.0), ("0002", "passed", None, None, None),
                     ("0003", "rejected", "greyscale", why, 0.0)]
    _, scores = db.query(lake, "SELECT key, backend, passed FROM filter_scores WHERE filter = 'greyscale' ORDER BY key")
    assert scores == [("0001", "hsv-saturation", False), ("0002", "hsv-saturation", True),
                      ("0003", "hsv-saturation", False)]


def test_a_new_stages_settings_are_checked_in_one_line(greyscale_example):
    cfg = load_config(overrides=["curate.order=[greyscale]", "curate.stages.greyscale.min_saturation=2",
                                 *greyscale_example])
    with pytest.raises(ConfigError) as e:
        declare_stages(cfg)
    assert str(e.value) == ("invalid config: curate.stages.greyscale.min_saturation: Input should be less than "
                            "or equal to 1 (got 2)")


@pytest.mark.parametrize("override, why", [
    ("curate.order=[resolution,Bad-Name]", "curate.order.1: String should match pattern"),
    ("curate.stages.ocr.max_text_area=0.1", "stages.ocr: a built-in stage's settings live in curate.ocr"),
])
def test_stage_names_and_entries_are_config_errors(override, why):
    with pytest.raises(ConfigError, match=re.escape(why)):
        load_config(overrides=[override])


_STAGE = '''
from tasks.stages import FilterStage, Result


class Broken(FilterStage):
    name, backend, writes = "broken", "test", WRITES

    def process(self, batch):
        for cd in batch.cands:
            cd.row["phash"] = "0"
        return [Result(0.0, True) for _ in batch.cands[SKIP:]]


def build(cfg):
    return Broken()
'''


def _stage_module(tmp_path, monkeypatch, module: str, writes: tuple, skip: int = 0) -> list[str]:
    """A stage ``broken`` from a module written here: it writes ``phash`` and skips ``skip`` results."""
    (tmp_path / f"{module}.py").write_text(_STAGE.replace("WRITES", repr(writes)).replace("SKIP", str(skip)))
    monkeypatch.syspath_prepend(str(tmp_path))
    return ["curate.order=[resolution,broken]", f"curate.stages.broken.module={module}"]


def test_a_stage_may_write_only_its_own_pairs_columns(tmp_path, monkeypatch):
    cfg = load_config(overrides=_stage_module(tmp_path, monkeypatch, "writes_status", ("status", "phash")))
    with pytest.raises(ConfigError) as e:
        declare_stages(cfg)
    assert str(e.value) == ("stage 'broken' writes ['status']: a stage writes pairs columns other than created_at, "
                            "key, reason, run_id, score, shard, source_path, stage, status (the runner's)")


@pytest.mark.parametrize("module, writes, skip, why", [
    ("one_result_short", ("phash",), 1, "stage 'broken' gave 1 results for 2 pairs"),
    ("undeclared_write", (), 0, "stage 'broken' wrote ['phash'], not in its writes"),
])
def test_a_stage_that_breaks_its_declaration_quarantines_its_shard(tmp_path, monkeypatch, module, writes, skip, why):
    cfg = load_config(overrides=_stage_module(tmp_path, monkeypatch, module, writes, skip))
    out = process_shard(write(str(tmp_path), pair("0001") + pair("0002")), cfg)
    why = f"shard failed, its pairs quarantined: AccountingError: {why}"
    assert [(p["key"], p["status"], p["reason"]) for p in out.pairs] == [("0001", "quarantined", why),
                                                                         ("0002", "quarantined", why)]
