"""Curation as declared stages: the registry reads ``curate.order`` and the runner never names a stage."""
import pytest

from djepa_t2i.config import ConfigError, load_config
from tasks.curate_shard import process_shard
from tasks.stages import CLIP_EMBEDDING, READS, SKIPPED_NO_CLIP, Stage, declare_stages
from tests.test_bad_input import _jpeg, pair, write

BUILT_IN = ("laion_scores", "resolution", "dedup", "aesthetic", "clip_similarity", "semantic_dedup", "ocr", "nsfw", "face")


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


@pytest.mark.parametrize("name, why", [
    ("blurry", "curate.order: unknown stage 'blurry' (no module tasks.filters.blurry; "
               "docs/curation.md: adding a stage)"),
    ("clip_loader", "curate.order: tasks.filters.clip_loader is no stage (it has no build(cfg))"),
])
def test_an_unknown_stage_is_one_line(name, why):
    cfg = load_config(overrides=["curate.order=[resolution]"])
    cfg.curate.order.append(name)
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
