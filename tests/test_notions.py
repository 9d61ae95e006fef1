import pytest

from djepa_t2i.config import ConfigError
from tasks.notions import (AttributeMatcher, ExtractStats, NotionExtractor, clean_caption,
                           load_lexicons)
from tests.lake_fixtures import make_lake
from warehouse import db
from warehouse import lake as lk


@pytest.fixture(scope="module")
def matcher():
    return AttributeMatcher(load_lexicons())


@pytest.fixture(scope="module")
def extractor():
    return NotionExtractor()


def test_longest_match_wins(matcher):
    assert matcher.match("a light blue car") == [("light blue", "color")]
    assert matcher.match("a cat to the left of a dog") == [("to the left of", "spatial")]
    assert matcher.match("the left door") == [("left", "spatial")]
    # a longer phrase of another kind beats its parts: not black + white
    assert matcher.match("a black and white photo") == [("black and white", "style"), ("photo", "style")]
    assert matcher.match("LIGHT-BLUE") == [("light blue", "color")]


def test_aliases_plurals_and_word_boundaries(matcher):
    assert matcher.match("2 circles on the left of 3 boxes") == [
        ("two", "count"), ("circle", "shape"), ("to the left of", "spatial"), ("three", "count")]
    assert matcher.match("grey stars") == [("gray", "color"), ("star", "shape")]
    assert matcher.match("someone bluered starling") == []  # no match inside words


def test_shapes_world_caption(matcher):
    got = matcher.match("two red circles to the left of a blue square")
    assert got == [("two", "count"), ("red", "color"), ("circle", "shape"),
                   ("to the left of", "spatial"), ("blue", "color"), ("square", "shape")]


def test_lexicon_phrase_in_two_kinds_is_refused(tmp_path):
    from tasks.notions import LEXICON_DIR
    for f in LEXICON_DIR.glob("*.txt"):
        (tmp_path / f.name).write_text(f.read_text())
    (tmp_path / "textures.txt").write_text("wooden\nred\n")
    with pytest.raises(ValueError, match="'red' is already a color word"):
        load_lexicons(tmp_path)


def test_entity_words_are_lemmatised_heads(extractor):
    (s,), _ = extractor.extract_many(["Two red circles to the left of a blue square"])
    ents = {n for n, k in s if k == "notion"}
    assert ents == {"circle", "square"}  # "left" belongs to the spatial phrase
    (s,), _ = extractor.extract_many(["A man in New York dreams of freedom and love"])
    ents = {n for n, k in s if k == "notion"}
    assert {"man", "freedom", "love"} <= ents and "new york" in ents


def test_bad_captions_are_counted_not_raised(extractor):
    bad = [None, "", "   \n\t", "x" * 10_000, "Ein roter Hund läuft über die Straße", "🙂🎉🙂",
           b"\xff\xfe\xfa caption", "a red cube'; DROP TABLE notions; --", "\udcff lone surrogate"]
    sets, st = extractor.extract_many(bad)
    assert len(sets) == len(bad)
    assert (st.captions, st.empty, st.truncated, st.non_utf8) == (9, 3, 1, 2)
    assert sets[5] == set() and st.no_notions >= 1
    assert ("red", "color") in sets[7] and ("cube", "shape") in sets[7]
    assert st.rows == sum(len(s) for s in sets)


def test_clean_caption():
    st = ExtractStats()
    assert clean_caption(b"caf\xc3\xa9 ", 100, st) == "café"
    assert clean_caption("abcdef", 3, st) == "abc" and st.truncated == 1


def test_notion_stats_flow_function(tmp_path):
    from djepa_t2i.config import load_config
    from flows.notion_stats import notion_stats
    from tasks.recaption import recaption
    caps = ["two red circles to the left of a blue square", "", "🙂🙂",
            "it's a \"quoted\" red star; -- not SQL", "three green triangles above a yellow cube"]
    lake, rows = make_lake(tmp_path, caps, shards=2)
    c = load_config()
    with pytest.raises(ConfigError, match="no captions"):
        notion_stats(lake, c.notions, c.schedule, progress=False)
    recaption(lake, c.recaption, progress=False)
    s1 = notion_stats(lake, c.notions, c.schedule, progress=False)
    n1 = lk.read_table(lake, "notions").num_rows
    assert s1["captions"] == 10 and s1["empty"] == 2 and s1["rows"] == n1 > 0
    s2 = notion_stats(lake, c.notions, c.schedule, progress=False)  # re-run: replaced, not duplicated
    assert lk.read_table(lake, "notions").num_rows == n1 and s2["weights_version"] == "v0001"
    _, got = db.query(lake, "SELECT n, p FROM notion_stats WHERE notion = ? AND kind = ?", ["red", "color"])
    assert got == [(4, 4 / 10)]  # 2 captions x 2 shards; p over all 10 captions incl. empty ones
    _, got = db.query(lake, "SELECT n FROM notion_stats WHERE notion = 'to the left of'")
    assert got == [(2,)]
    # tags appended by recaption ("[source: shapes]") are not notions
    _, got = db.query(lake, "SELECT count(*) FROM notions WHERE notion IN ('source', 'shapes')")
    assert got == [(0,)]
