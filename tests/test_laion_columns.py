"""LAION's own columns (punsafe, pwatermark, similarity) as filter inputs, off by default."""
import math
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from djepa_t2i.config import ConfigError, load_config
from tasks.curate_shard import process_shard
from tests.test_bad_input import pair, write

LAION = {"0001": (0.02, 0.10, 0.33), "0002": (0.93, 0.10, 0.31), "0003": (0.01, 0.85, 0.30),
         "0004": (0.05, 0.05, 0.12), "0005": (None, None, None)}


def _shard(tmp_path):
    """A shard whose parquet carries LAION's columns, as img2dataset's save_additional_columns writes."""
    p = write(str(tmp_path), [m for k in LAION for m in pair(k, img=None)])
    rows = [{"key": k, "status": "success", "caption": "c", "punsafe": u, "pwatermark": w, "similarity": s,
             "NSFW": "UNLIKELY" if u is not None and u < 0.5 else "NSFW", "original_width": 640}
            for k, (u, w, s) in LAION.items()]
    pq.write_table(pa.Table.from_pylist(rows), os.path.join(tmp_path, "00000.parquet"))
    return p


def _states(out):
    return {p["key"]: (p["status"], p["stage"], p["reason"]) for p in out.pairs}


def test_laion_scores_are_kept_and_off_by_default(tmp_path):
    out = process_shard(_shard(tmp_path), load_config(overrides=["curate.order=[laion_scores,resolution]"]))
    assert {k: st for k, (st, _, _) in _states(out).items()} == {k: "passed" for k in LAION}
    assert not [s for s in out.scores if s["filter"] == "laion_scores"]
    by = {p["key"]: p for p in out.pairs}
    assert (by["0002"]["punsafe"], by["0002"]["nsfw_label"], by["0002"]["original_width"]) == (0.93, "NSFW", 640)
    assert by["0005"]["punsafe"] is None and by["0005"]["similarity"] is None


def test_laion_thresholds_reject_with_the_deciding_value(tmp_path):
    cfg = load_config(overrides=["curate.order=[laion_scores,resolution]", "curate.laion_scores.max_punsafe=0.5",
                                 "curate.laion_scores.max_pwatermark=0.8", "curate.laion_scores.min_similarity=0.28"])
    out = process_shard(_shard(tmp_path), cfg)
    s = _states(out)
    assert s["0001"][0] == "passed" and s["0005"][0] == "passed"  # no LAION columns: passes, recorded missing
    assert s["0002"] == ("rejected", "laion_scores", "LAION punsafe 0.930 > max_punsafe 0.5")
    assert s["0003"] == ("rejected", "laion_scores", "LAION pwatermark 0.850 > max_pwatermark 0.8")
    assert s["0004"] == ("rejected", "laion_scores", "LAION similarity 0.120 < min_similarity 0.28")
    rows = {r["key"]: r for r in out.scores if r["filter"] == "laion_scores"}
    assert len(rows) == 5 and rows["0002"]["score"] == 0.93 and rows["0001"]["score"] == 0.02
    assert math.isnan(rows["0005"]["score"]) and '"missing": ["punsafe", "pwatermark", "similarity"]' in rows["0005"]["details"]
    assert '"laion_scores": "img2dataset-columns"' in out.run["backends"]


def test_laion_thresholds_are_range_checked():
    with pytest.raises(ConfigError, match=r"curate.laion_scores.max_punsafe: Input should be less than or equal to 1"):
        load_config(overrides=["curate.laion_scores.max_punsafe=3"])
