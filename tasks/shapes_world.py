"""The shapes world: solid colored shapes on a plain background, with exact captions.

It is the embedded default's stand-in for LAION: training data (the sample maker renders scenes at
many resolutions) and a benchmark whose ground truth is known exactly, so a programmatic
GenEval-style scorer (``tasks.evaluators.shapes_geneval``) needs no detector weights.

Scenes follow GenEval's six categories and its prompt templates (a class without a color for
``single_object`` and ``two_object``; a color for ``colors`` and ``color_attr``), with colors also
named in ``counting`` and ``position`` captions so those notions are trained too:

    single_object  "a circle"                      one object, color not named
    two_object     "a circle and a square"         two different shapes
    counting       "three green triangles"         2-4 copies of one colored shape
    colors         "a red circle"                  one colored object
    position       "a blue square above a yellow circle"   two different shapes, one relation
    color_attr     "a red circle and a blue square"        two different shapes and colors

Design choices that keep scoring unambiguous at 64 px: six colors far apart in hue (segmentation
by hue with a saturation guard), three shapes whose fill ratio of their bounding box differs
(square 1.0, circle 0.785, triangle 0.5), axis-aligned shapes, and placements rejected unless
bounding boxes keep a gap (same-colored objects never touch, so connected components count them).
A position scene is accepted only if GenEval's relation rule yields exactly the captioned relation.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

from PIL import Image, ImageDraw

from tasks.evaluators.geneval_rules import relative_position

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),        # hue   0
    "orange": (240, 120, 20),    # hue  27
    "yellow": (235, 200, 20),    # hue  50
    "green": (40, 160, 60),      # hue 130
    "blue": (40, 80, 215),       # hue 226
    "purple": (145, 50, 190),    # hue 281
}
BACKGROUND: tuple[int, int, int] = (240, 240, 240)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
CATEGORIES: tuple[str, ...] = ("single_object", "two_object", "counting", "colors", "position",
                               "color_attr")
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")  # GenEval's names
# how a caption says each relation (the canonical spatial notions of tasks/lexicons/spatial.txt)
RELATION_WORDS = {"left of": "to the left of", "right of": "to the right of", "above": "above",
                  "below": "below"}
COUNT_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}
COUNTS: tuple[int, ...] = (2, 3, 4)
MIN_GAP = 0.06            # gap between bounding boxes, fraction of the short side
# box side by object count, as a fraction of the short side. A lone object is a subject, large and
# framed in the central square as in the product shots behind LAION's one-object captions, so a
# phase-1 centre crop (paper §3.1) keeps all of it; at 32 px it spans 4-6 tokens of 4 px, where
# 0.28-0.45 left its shape to the sub-token detail of a few corners (shape-right 0.64 vs 0.43
# after 1,500 steps, docs/experiments.md)
_SIZE = {1: (0.45, 0.70), 2: (0.22, 0.32), 3: (0.18, 0.26), 4: (0.18, 0.24)}


def plural(shape: str) -> str:
    return shape + "s"


def a(phrase: str) -> str:
    """The phrase with its indefinite article: 'a red circle', 'an orange square'."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


@dataclass
class Obj:
    """One solid shape; centre as fractions of width/height, size (box side) as a fraction of the
    image's short side."""
    shape: str
    color: str
    cx: float
    cy: float
    size: float

    def box(self, width: int, height: int) -> tuple[float, float, float, float]:
        """Pixel bounding box (x0, y0, x1, y1)."""
        s = self.size * min(width, height)
        x, y = self.cx * width, self.cy * height
        return (x - s / 2, y - s / 2, x + s / 2, y + s / 2)


@dataclass
class Scene:
    objects: list[Obj]
    caption: str
    width: int
    height: int
    relation: str | None
    kind: str
    spec: dict = field(default_factory=dict)  # GenEval metadata: tag, include, exclude

    def notions(self) -> list[str]:
        return notions_of(self)

    def to_json(self) -> dict:
        return {"caption": self.caption, "width": self.width, "height": self.height,
                "kind": self.kind, "relation": self.relation,
                "objects": [asdict(o) for o in self.objects], "spec": self.spec,
                "notions": self.notions()}

    @classmethod
    def from_json(cls, d: dict) -> "Scene":
        return cls(objects=[Obj(**o) for o in d["objects"]], caption=d["caption"],
                   width=d["width"], height=d["height"], relation=d.get("relation"),
                   kind=d["kind"], spec=d.get("spec", {}))


@dataclass
class ShapesDistribution:
    """Relative probabilities of categories, colors, shapes, counts and relations. Missing keys
    weigh 1; a weight of 0 removes a value. ``skewed()`` is the feedback experiment's world."""
    categories: dict[str, float] = field(default_factory=dict)
    colors: dict[str, float] = field(default_factory=dict)
    shapes: dict[str, float] = field(default_factory=dict)
    counts: dict[int, float] = field(default_factory=dict)
    relations: dict[str, float] = field(default_factory=dict)
    lone_size: tuple[float, float] | None = None  # box side of a lone object (lo, hi); None: _SIZE[1]

    def __post_init__(self):
        if self.lone_size is not None and not 0 < self.lone_size[0] <= self.lone_size[1] < 1:
            raise ValueError(f"ShapesDistribution.lone_size: need 0 < lo <= hi < 1, got {self.lone_size}")
        for name, known in (("categories", CATEGORIES), ("colors", COLORS), ("shapes", SHAPES),
                            ("counts", COUNTS), ("relations", RELATIONS)):
            d = getattr(self, name)
            bad = [k for k in d if k not in known]
            if bad:
                raise ValueError(f"ShapesDistribution.{name}: unknown {bad}; known: {list(known)}")
            if any(v < 0 for v in d.values()) or (d and sum(d.get(k, 1.0) for k in known) <= 0):
                raise ValueError(f"ShapesDistribution.{name}: weights must be >= 0 with a positive sum")

    @classmethod
    def skewed(cls) -> "ShapesDistribution":
        """Purple and orange, four-of-a-kind and 'below' are rare (~3-5% of their kind)."""
        return cls(colors={"purple": 0.15, "orange": 0.25},
                   counts={4: 0.1}, relations={"below": 0.15})

    @staticmethod
    def _draw(rng: random.Random, values, weights: dict, exclude=()) -> object:
        vals = [v for v in values if v not in exclude]
        w = [weights.get(v, 1.0) for v in vals]
        if sum(w) <= 0:
            w = [1.0] * len(vals)
        return rng.choices(vals, weights=w, k=1)[0]

    def category(self, rng):
        return self._draw(rng, CATEGORIES, self.categories)

    def color(self, rng, exclude=()):
        return self._draw(rng, list(COLORS), self.colors, exclude)

    def shape(self, rng, exclude=()):
        return self._draw(rng, SHAPES, self.shapes, exclude)

    def count(self, rng):
        return self._draw(rng, COUNTS, self.counts)

    def relation(self, rng):
        return self._draw(rng, RELATIONS, self.relations)

    def to_json(self) -> dict:
        return asdict(self)


UNIFORM = ShapesDistribution()


def _separated(a: Obj, b: Obj, width: int, height: int) -> bool:
    m = MIN_GAP * min(width, height)
    ax0, ay0, ax1, ay1 = a.box(width, height)
    bx0, by0, bx1, by1 = b.box(width, height)
    return ax1 + m <= bx0 or bx1 + m <= ax0 or ay1 + m <= by0 or by1 + m <= ay0


def _place(rng: random.Random, specs: list[tuple[str, str]], width: int, height: int,
           relation: str | None = None, tries: int = 2000,
           lone_size: tuple[float, float] | None = None) -> list[Obj]:
    """Reject-sample sizes and centres until boxes fit inside the image with a margin, keep a gap,
    and (for two objects with a relation) GenEval's rule yields exactly ``relation``."""
    n = len(specs)
    lo, hi = lone_size if n == 1 and lone_size else _SIZE[min(n, 4)]
    short = min(width, height)
    # a lone subject stays inside the central short x short square; groups use the whole frame
    span_x, span_y = (short / width, short / height) if n == 1 else (1.0, 1.0)
    for _ in range(tries):
        objs = []
        for shape, color in specs:
            size = rng.uniform(lo, hi)
            half_x = size * short / 2 / width + MIN_GAP * short / width / 2
            half_y = size * short / 2 / height + MIN_GAP * short / height / 2
            if half_x >= span_x / 2 or half_y >= span_y / 2:
                break
            objs.append(Obj(shape, color, round(rng.uniform(0.5 - span_x / 2 + half_x, 0.5 + span_x / 2 - half_x), 4),
                            round(rng.uniform(0.5 - span_y / 2 + half_y, 0.5 + span_y / 2 - half_y), 4),
                            round(size, 4)))
        if len(objs) != n:
            continue
        if not all(_separated(objs[i], objs[j], width, height)
                   for i in range(n) for j in range(i + 1, n)):
            continue
        if relation is not None:
            rel = relative_position(objs[0].box(width, height), objs[1].box(width, height))
            if rel != {relation}:
                continue
        return objs
    raise RuntimeError(f"could not place {n} objects in {width}x{height} after {tries} tries")


def _spec(tag: str, include: list[dict], exclude: list[dict] | None = None) -> dict:
    d = {"tag": tag, "include": include}
    if exclude:
        d["exclude"] = exclude
    return d


def sample_scene(rng: random.Random, width: int, height: int, kind: str | None = None,
                 dist: ShapesDistribution | None = None) -> Scene:
    """One scene of ``kind`` (a GenEval category; None draws one from ``dist``)."""
    dist = dist or UNIFORM
    kind = kind or dist.category(rng)
    if kind not in CATEGORIES:
        raise ValueError(f"unknown scene kind {kind!r}; known: {CATEGORIES}")
    if width < 16 or height < 16:
        raise ValueError(f"image {width}x{height} too small for the shapes world (min 16 px)")
    relation = None
    if kind in ("single_object", "colors"):
        s, c = dist.shape(rng), dist.color(rng)
        specs = [(s, c)]
        caption = a(s) if kind == "single_object" else a(f"{c} {s}")
        inc = [{"class": s, "count": 1}] if kind == "single_object" else \
            [{"class": s, "count": 1, "color": c}]
        spec = _spec(kind, inc)
    elif kind == "counting":
        s, c, n = dist.shape(rng), dist.color(rng), dist.count(rng)
        specs = [(s, c)] * n
        caption = f"{COUNT_WORDS[n]} {c} {plural(s)}"
        spec = _spec(kind, [{"class": s, "count": n}], [{"class": s, "count": n + 1}])
    else:  # two different shapes
        s1 = dist.shape(rng)
        s2 = dist.shape(rng, exclude=(s1,))
        c1 = dist.color(rng)
        c2 = dist.color(rng, exclude=(c1,) if kind == "color_attr" else ())
        specs = [(s1, c1), (s2, c2)]
        if kind == "two_object":
            caption = f"{a(s1)} and {a(s2)}"
            spec = _spec(kind, [{"class": s1, "count": 1}, {"class": s2, "count": 1}])
        elif kind == "color_attr":
            caption = f"{a(f'{c1} {s1}')} and {a(f'{c2} {s2}')}"
            spec = _spec(kind, [{"class": s1, "count": 1, "color": c1},
                                {"class": s2, "count": 1, "color": c2}])
        else:  # position: GenEval's form, object 0 relative to object 1
            relation = dist.relation(rng)
            words = RELATION_WORDS[relation]
            caption = f"{a(f'{c1} {s1}')} {words} {a(f'{c2} {s2}')}"
            spec = _spec(kind, [{"class": s2, "count": 1},
                                {"class": s1, "count": 1, "position": [relation, 0]}])
    objs = _place(rng, specs, width, height, relation, lone_size=dist.lone_size)
    return Scene(objs, caption, width, height, relation, kind, spec)


def notions_of(scene: Scene) -> list[str]:
    """``kind=value`` notions named by the caption, spelled as notion-stats extracts them (shape
    singular, count as a word, spatial as its canonical phrase), plus the category; eval scores
    map back to sampling-weight rows ``(kind, value)`` through these."""
    out = [f"category={scene.kind}"]
    named_color = scene.kind in ("counting", "colors", "position", "color_attr")
    for o in scene.objects:
        out.append(f"shape={o.shape}")
        if named_color:
            out.append(f"color={o.color}")
    if scene.kind == "counting":
        out.append(f"count={COUNT_WORDS[len(scene.objects)]}")
    if scene.relation:
        out.append(f"spatial={RELATION_WORDS[scene.relation]}")
    return list(dict.fromkeys(out))


def _triangle(x0, y0, x1, y1):
    return [((x0 + x1) / 2, y0), (x0, y1), (x1, y1)]


def render(scene: Scene, antialias: bool = True, supersample: int = 4) -> Image.Image:
    """The scene as an RGB image: solid shapes on a plain light background. Anti-aliasing draws
    at ``supersample`` x and box-filters down, so edges blend with the background as in photos."""
    k = supersample if antialias else 1
    W, H = scene.width * k, scene.height * k
    img = Image.new("RGB", (W, H), BACKGROUND)
    d = ImageDraw.Draw(img)
    for o in scene.objects:
        x0, y0, x1, y1 = o.box(W, H)
        col = COLORS[o.color]
        if o.shape == "circle":
            d.ellipse([x0, y0, x1, y1], fill=col)
        elif o.shape == "square":
            d.rectangle([x0, y0, x1, y1], fill=col)
        elif o.shape == "triangle":
            d.polygon(_triangle(x0, y0, x1, y1), fill=col)
        else:
            raise ValueError(f"unknown shape {o.shape!r}")
    if k > 1:
        img = img.resize((scene.width, scene.height), Image.BOX)
    return img


def prompts(category: str, n: int, seed: int, width: int = 256, height: int = 256,
            dist: ShapesDistribution | None = None) -> list[dict]:
    """``n`` evaluation prompts of one category, deterministic for ``seed``: id, text, category,
    notions, GenEval-format spec, and the ground-truth scene (rendering it must score 1.0)."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; known: {CATEGORIES}")
    rng = random.Random(f"shapes-geneval/{category}/{seed}")
    out = []
    for i in range(n):
        sc = sample_scene(rng, width, height, category, dist)
        out.append({"id": f"{category}-{seed}-{i:04d}", "prompt": sc.caption, "category": category,
                    "notions": sc.notions(), "spec": sc.spec, "scene": sc.to_json()})
    return out


def benchmark_prompts(per_category: int, seed: int, width: int = 256, height: int = 256) -> list[dict]:
    """The shapes-geneval prompt set: ``per_category`` prompts of each of the six categories."""
    return [p for c in CATEGORIES for p in prompts(c, per_category, seed, width, height)]
