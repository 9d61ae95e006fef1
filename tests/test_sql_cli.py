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
    notion_stats(lake, c.notions, progress=False)
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
    for name in ("long_tail", "resolution_aspect", "source_profile"):
        assert main(["sql", "--query", name, "--lake", lake]) == 0
        assert "row" in capsys.readouterr().out.splitlines()[-1]
    assert main(["sql", "--query", "nope", "--lake", lake]) == 1
    assert "available: long_tail, resolution_aspect, source_profile, top_notions" in capsys.readouterr().err


def test_sql_errors_exit_1_with_message(lake, capsys):
    assert main(["sql", "SELEC oops", "--lake", lake]) == 1
    err = capsys.readouterr().err
    assert err.startswith("SQL error:") and "syntax error" in err and "Traceback" not in err
    assert main(["sql", "SELECT * FROM no_such_table", "--lake", lake]) == 1
    assert "no_such_table" in capsys.readouterr().err
    assert main(["sql", "--lake", lake]) == 2


def test_notion_plots_render(lake, tmp_path):
    from warehouse.plots.notions import render
    figs = render(lake, str(tmp_path))
    assert [t for t, _ in figs] == ["resolution and aspect ratio of passed pairs", "top notions with p"]
    from PIL import Image
    for _, png in figs:
        w, h = Image.open(png).size
        assert w > 300 and h > 200
    assert render(str(tmp_path / "empty"), str(tmp_path)) == []
