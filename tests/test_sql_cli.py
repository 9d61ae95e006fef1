import json

import pytest

from djepa_t2i.cli import main
from tests.lake_fixtures import make_lake


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    from djepa_t2i.config import load_config
    from flows.notion_stats import notion_stats
    from tasks.recaption import recaption
    lake, _ = make_lake(tmp_path_factory.mktemp("sql"))
    c = load_config()
    recaption(lake, c.recaption, progress=False)
    notion_stats(lake, c.notions, c.schedule, progress=False)
    return lake


def test_table_shows_real_notions(lake, capsys):
    assert main(["sql", "SELECT * FROM notion_stats ORDER BY n DESC, notion, kind LIMIT 20", "--lake", lake]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["notion", "kind", "n", "p"] and out[-1] == "(20 rows)"
    body = " ".join(out[2:])
    for word in ("circle", "red", "square", "triangle"):
        assert word in body


def test_formats_and_bound_params(lake, capsys):
    assert main(["sql", "SELECT notion, n FROM notion_stats WHERE kind = ? ORDER BY n DESC, notion",
                 "--lake", lake, "--param", "spatial", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["notion"] for r in rows} == {"to the left of", "to the right of", "above", "below", "next to"}
    evil = "x'); DROP VIEW notion_stats; --"
    assert main(["sql", "SELECT count(*) AS c FROM notion_stats WHERE notion = ?", "--lake", lake,
                 "--param", evil, "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines() == ["c", "0"]


def test_saved_queries(lake, capsys):
    assert main(["sql", "--query", "top_notions", "--lake", lake, "--param", "color", "--param", "3",
                 "-f", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "notion,kind,n,p" and len(lines) == 4 and lines[1].startswith("red,color,4,")
    for name in ("long_tail", "quality_tier", "resolution_aspect", "source_profile"):
        assert main(["sql", "--query", name, "--lake", lake]) == 0
        assert "row" in capsys.readouterr().out.splitlines()[-1]
    assert main(["sql", "--query", "nope", "--lake", lake]) == 2
    assert "t2i sql: error: no saved query 'nope'; available: grpo_groups, long_tail, quality_tier, resolution_aspect, source_profile, top_notions" in capsys.readouterr().err


def test_sql_errors_exit_1_with_message(lake, capsys):
    assert main(["sql", "SELEC oops", "--lake", lake]) == 1
    err = capsys.readouterr().err
    assert err.startswith("SQL error:") and "syntax error" in err and "Traceback" not in err
    assert main(["sql", "SELECT * FROM no_such_table", "--lake", lake]) == 1
    assert "no_such_table" in capsys.readouterr().err
    assert main(["sql", "--lake", lake]) == 2


def test_notion_plots_render(lake, tmp_path):
    from report.notions import render
    figs = render(lake, str(tmp_path))
    assert [t for t, _ in figs] == ["resolution and aspect ratio of passed pairs", "top notions with p"]
    from PIL import Image
    for _, png in figs:
        w, h = Image.open(png).size
        assert w > 300 and h > 200
    assert render(str(tmp_path / "empty"), str(tmp_path)) == []


def _snapshot(root) -> dict:
    """Every file under the lake with its bytes' sha256: what "unchanged" means here."""
    import hashlib
    import os
    return {os.path.join(d, f): hashlib.sha256(open(os.path.join(d, f), "rb").read()).hexdigest()
            for d, _, fs in os.walk(root) for f in fs}


def test_every_write_path_is_refused_and_the_lake_is_unchanged(lake, capsys, tmp_path):
    import glob
    import os
    part = sorted(glob.glob(os.path.join(lake, "pairs", "*.parquet")))[0]
    attempts = {
        f"COPY (SELECT * FROM pairs LIMIT 1) TO '{part}' (FORMAT parquet)": "COPY statements are refused",
        f"COPY (SELECT * FROM pairs) TO '{lake}/pairs' (FORMAT parquet, PARTITION_BY (shard), OVERWRITE)":
            "COPY statements are refused",
        f"ATTACH '{lake}/warehouse.duckdb' AS w": "ATTACH statements are refused",
        "DROP VIEW pairs": "DROP statements are refused",
        "INSTALL httpfs": "LOAD statements are refused",
        "LOAD httpfs": "LOAD statements are refused",
        "CREATE TABLE t AS SELECT 1": "CREATE statements are refused",
        "SET lock_configuration = false": "SET statements are refused",
        f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{part}'": "EXPLAIN statements are refused",
        f"SELECT 1; COPY (SELECT 1) TO '{part}'": "COPY statements are refused",
        "SELECT * FROM read_text('/etc/passwd')": "Permission Error",
        f"SELECT * FROM read_text('{tmp_path}/outside.txt')": "Permission Error",
    }
    (tmp_path / "outside.txt").write_text("kept out")
    before = _snapshot(lake)
    for sql, why in attempts.items():
        assert main(["sql", sql, "--lake", lake]) == 1, sql
        err = capsys.readouterr().err
        assert err.startswith("SQL error: ") and why in err and err.count("\n") == 1, (sql, err)
    assert _snapshot(lake) == before
    assert main(["sql", f"SELECT content FROM read_text('{tmp_path}/outside.txt')", "--lake", lake,
                 "--read", str(tmp_path / "outside.txt"), "--format", "csv"]) == 0  # a path the user names
    assert capsys.readouterr().out.splitlines() == ["content", "kept out"]
    assert main(["sql", "SELECT count(*) AS n FROM pairs", "--lake", lake, "--format", "csv"]) == 0
    assert int(capsys.readouterr().out.splitlines()[1]) > 0  # the lake itself still reads


def test_control_characters_are_escaped_and_a_missing_lake_fails(lake, capsys, tmp_path):
    sql = "SELECT 'red' || chr(27) || '[31m' || chr(8238) || chr(7) || 'x' AS c"
    assert main(["sql", sql, "--lake", lake]) == 0
    out = capsys.readouterr().out
    assert "red\\x1b[31m\\u202e\\x07x" in out and "\x1b" not in out and "\u202e" not in out
    assert main(["sql", "SELECT 1", "--lake", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == (f"t2i sql: error: lake={str(tmp_path / 'nope')!r}: no such directory "
                                       "(must be an existing directory)\n")


def test_names_and_errors_are_escaped_too(lake, capsys):
    pivot = ("SELECT * FROM (SELECT chr(27) || '[31m' AS k, 1 AS v) "
             "PIVOT (sum(v) FOR k IN (chr(27) || '[31m'))")
    assert main(["sql", pivot, "--lake", lake]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "\\x1b[31m" and "\x1b" not in out
    assert main(["sql", "SELECT CAST(chr(27) || '[2Jx' AS INT)", "--lake", lake]) == 1
    err = capsys.readouterr().err
    assert err.startswith("SQL error: ") and "\\x1b[2Jx" in err and "\x1b" not in err


def test_a_folder_that_is_no_lake_is_refused_and_left_empty(lake, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["sql", "SELECT 1", "--lake", str(empty)]) == 2
    assert capsys.readouterr().err.startswith(f"t2i sql: error: lake={str(empty)!r}: not a lake")
    assert list(empty.iterdir()) == []
    assert main(["sql", "SELECT 1", "--lake", lake, "--read", str(tmp_path / "nope.csv")]) == 2
    assert "--read" in capsys.readouterr().err
