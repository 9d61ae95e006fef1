"""shapes-geneval is refused, in one line, on a lake whose captions are not shapes-world captions,
unless the config names it (issue #23.5)."""
import pytest

from djepa_t2i.cli import main
from djepa_t2i.config import ConfigError, load_config
from tasks.captioning import with_tags
from training.benchmark_fit import check_benchmark, is_shapes_caption, shapes_share
from warehouse import lake as lk


def _lake(tmp_path, captions):
    lake = str(tmp_path / "lake")
    lk.write_partition(lake, "captions", "c0", [  # captions with the paper's tags appended (with_tags)
        {"key": f"k{i}", "caption": with_tags(c, ["source: laion"]), "tags": "source: laion", "source": "alt"}
        for i, c in enumerate(captions)])
    return lake


def test_shapes_world_captions_are_told_from_others():
    for c in ("a red circle", "an orange square", "two blue squares", "a circle and a triangle",
              "a red circle to the left of a blue square", "four purple triangles above"):
        assert is_shapes_caption(c), c
    for c in ("a cup of coffee on a saucer", "", "Describe this image in one detailed sentence.",
              "a red car"):
        assert not is_shapes_caption(c), c


def test_default_benchmark_is_refused_on_a_laion_like_lake(tmp_path):
    lake = _lake(tmp_path, ["a red circle", "a cup of coffee on a saucer", "a tabby cat", "a rocket"])
    assert shapes_share(lake) == (1, 4)  # the appended tags are stripped before reading
    with pytest.raises(ConfigError) as e:
        check_benchmark(lake, load_config(check_paths=False))
    assert str(e.value) == (
        "evaluate.benchmark and feedback.benchmark: shapes-geneval (the default) scores the synthetic shapes "
        f"world, but 1 of 4 current captions in {lake} are shapes-world captions; set "
        "evaluate.benchmark=geneval and feedback.benchmark=geneval (GenEval weights: "
        "docs/weights-production.md), or name shapes-geneval explicitly to run it anyway")
    check_benchmark(lake, load_config(overrides=["evaluate.benchmark=shapes-geneval",
                                                 "feedback.benchmark=shapes-geneval"]))  # explicit: runs
    with pytest.raises(ConfigError, match=r"^feedback.benchmark: shapes-geneval \(the default\)"):
        check_benchmark(lake, load_config(overrides=["evaluate.benchmark=shapes-geneval"]))
    check_benchmark(lake, load_config(overrides=["evaluate.benchmark=shapes-geneval"]), ("evaluate",))


def test_shapes_lake_and_empty_lake_pass(tmp_path, capsys):
    check_benchmark(_lake(tmp_path / "a", ["a red circle", "two blue squares", "a rocket"]), load_config())
    empty = str(tmp_path / "b" / "lake")
    lk.write_partition(empty, "pairs", "p0", [{"key": "k0", "status": "passed"}])
    check_benchmark(empty, load_config())  # no captions: nothing to judge by
    lake = _lake(tmp_path / "c", ["a tabby cat"])
    assert main(["feedback", "--lake", lake, "--no-prefect"]) == 2
    assert "t2i feedback: error: feedback.benchmark: shapes-geneval (the default)" in capsys.readouterr().err
