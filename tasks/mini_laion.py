"""``t2i make-sample OUT --n N --seed S``: a mini-LAION in img2dataset's exact output layout.

Per shard: ``NNNNN.tar`` ({key}.jpg/.txt/.json), ``NNNNN.parquet`` (one row per attempted URL,
including a few ``failed_to_download`` rows that have no tar members, as img2dataset writes
them) and ``NNNNN_stats.json``. The json carries img2dataset's keys plus ``source`` (which
generator made the pair) and, for the shapes world, the scene's ground truth under ``scene``.
Deterministic for a seed: the same bytes every time.

Sources and their shares (``MIX``): real photos shipped with scikit-image (crops/resizes),
rendered printed text (OCR must reject), the shapes world at 64-1024 px and aspect 1:2-2:1,
low-quality (flat/blurred), too-small and extreme-aspect images, exact and near duplicates of
earlier pairs, and broken entries (truncated JPEG, zero bytes, non-image bytes, missing json,
empty caption, non-UTF-8 caption).
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import random
import tarfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from djepa_t2i.cli_args import int_at_least
from djepa_t2i.config import require_writable
from tasks.shapes_world import ShapesDistribution, render, sample_scene

MIX = {"shapes": 0.60, "photo": 0.10, "text": 0.06, "lowq": 0.04, "small": 0.03, "aspect": 0.03,
       "dup_exact": 0.04, "dup_near": 0.03, "broken": 0.07}
# The shapes world's categories as the sample draws them: like LAION, where most captions name one
# object and its attributes, single coloured objects lead (67% "a red circle", 17% "a circle", the
# four multi-object categories 4% each). Measured (issue #10, docs/experiments.md): with the uniform
# mix the demo's 480 pairs held ~30 "a <color> <shape>" scenes for 18 prompts and its model drew
# colour at chance; at 48% it drew colour but its shapes stayed at chance, since multi-object
# scenes teach scattered small objects.
SCENES = ShapesDistribution(categories={"colors": 8.0, "single_object": 2.0, "two_object": 0.5,
                                        "counting": 0.5, "position": 0.5, "color_attr": 0.5})
SHAPES_ASPECT = (0.5, 2.0)  # scenes are drawn at 1:2 to 2:1; the "aspect" source covers the extremes
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
          "retina", "colorwheel", "camera", "coins", "moon")
PHOTO_CAPTIONS = {"astronaut": "portrait of an astronaut in a white suit", "coffee": "a cup of coffee on a saucer",
                  "chelsea": "a tabby cat looking at the camera", "rocket": "a rocket on the launch pad",
                  "hubble_deep_field": "deep field image of distant galaxies",
                  "immunohistochemistry": "stained tissue under a microscope", "retina": "photo of a human retina",
                  "colorwheel": "a color wheel", "camera": "black and white photo of a cameraman",
                  "coins": "old coins on a table", "moon": "the surface of the moon"}
WORDS = ("SALE", "OPEN", "coffee", "daily", "news", "FREE", "menu", "hotel", "welcome", "special",
         "offer", "today", "garden", "market", "city", "HELLO", "books", "price", "store", "quality")
BROKEN = ("truncated_jpeg", "zero_bytes", "not_an_image", "missing_json", "empty_caption", "non_utf8_caption")


def _font(size: int) -> ImageFont.FreeTypeFont:
    import matplotlib  # heavy
    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), size)


def _jpeg(im: Image.Image, quality: int = 92) -> bytes:
    b = io.BytesIO()
    im.save(b, "JPEG", quality=quality)
    return b.getvalue()


_PHOTO_CACHE: dict[str, Image.Image] = {}


def photo(rng: random.Random) -> tuple[Image.Image, str, dict]:
    import skimage.data  # heavy
    name = rng.choice(PHOTOS)
    if name not in _PHOTO_CACHE:
        a = getattr(skimage.data, name)()
        _PHOTO_CACHE[name] = Image.fromarray(a)
    im = _PHOTO_CACHE[name]
    w, h = im.size
    f = rng.uniform(0.65, 1.0)
    cw, ch = int(w * f), int(h * f)
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    im = im.crop((x, y, x + cw, y + ch))
    s = rng.uniform(0.6, 1.4)
    im = im.resize((max(64, int(cw * s)), max(64, int(ch * s))), Image.BICUBIC)
    return im, PHOTO_CAPTIONS[name], {"photo": name, "crop": [x, y, cw, ch], "scale": round(s, 3)}


def text_image(rng: random.Random) -> tuple[Image.Image, str, dict]:
    w, h = rng.choice([(512, 384), (640, 480), (384, 384), (600, 300)])
    bg = tuple(rng.randint(200, 255) for _ in range(3))
    im = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    lines, y = [], rng.randint(10, 30)
    while y < h - 60:
        size = rng.randint(32, 56)
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 3)))
        d.text((rng.randint(10, 40), y), line, font=_font(size), fill=tuple(rng.randint(0, 90) for _ in range(3)))
        lines.append(line)
        y += int(size * rng.uniform(1.4, 1.9))
    return im, f'a sign that says "{lines[0].lower()}"', {"text": lines}


def shapes_image(rng: random.Random) -> tuple[Image.Image, str, dict]:
    aspect = math.exp(rng.uniform(math.log(SHAPES_ASPECT[0]), math.log(SHAPES_ASPECT[1])))
    long_side = int(math.exp(rng.uniform(math.log(128), math.log(1024))))
    w, h = (long_side, max(64, int(long_side / aspect))) if aspect >= 1 else (max(64, int(long_side * aspect)), long_side)
    scene = sample_scene(rng, w, h, dist=SCENES)
    im = render(scene, supersample=2 if max(w, h) > 512 else 4)
    return im, scene.caption, {"scene": scene.to_json()}


def lowq_image(rng: random.Random, nrng: np.random.Generator) -> tuple[Image.Image, str, dict]:
    w, h = rng.choice([(256, 256), (320, 240), (400, 300)])
    base = rng.randint(90, 170)
    a = np.clip(base + nrng.normal(0, 4, (h, w, 1)).repeat(3, 2), 0, 255).astype(np.uint8)
    im = Image.fromarray(a).filter(ImageFilter.GaussianBlur(6))
    return im, "a blurry grey picture", {"lowq": "flat+blur"}


def small_image(rng: random.Random) -> tuple[Image.Image, str, dict]:
    w, h = rng.choice([(32, 24), (16, 16), (48, 40), (1, 1)])
    return Image.new("RGB", (w, h), tuple(rng.randint(0, 255) for _ in range(3))), "a tiny thumbnail", {}


def aspect_image(rng: random.Random) -> tuple[Image.Image, str, dict]:
    w, h = rng.choice([(1200, 100), (100, 900), (2000, 200)])
    im = Image.linear_gradient("L").resize((w, h)).convert("RGB")
    return im, "a long banner", {}


def _item(kind: str, rng, nrng, done: list[dict]) -> dict:
    """One pair: {'img': bytes|None, 'caption': bytes|None (txt), 'json': bool, 'extra': {...}}"""
    if kind in ("dup_exact", "dup_near"):
        pool = [d for d in done if d["source"] in ("photo", "shapes")]
        if not pool:
            kind = "photo"
        else:
            src = rng.choice(pool)
            if kind == "dup_exact":
                return {"img": src["img"], "caption": src["caption"], "source": kind, "size": src["size"],
                        "extra": {"duplicate_of": src["key"]}}
            im = Image.open(io.BytesIO(src["img"])).convert("RGB")
            im = im.resize((max(64, int(im.width * 0.9)), max(64, int(im.height * 0.9))), Image.BICUBIC)
            return {"img": _jpeg(im, 75), "caption": src["caption"], "source": kind, "size": im.size,
                    "extra": {"near_duplicate_of": src["key"]}}
    if kind == "broken":
        how = rng.choice(BROKEN)
        im, cap, _ = photo(rng)
        b = _jpeg(im)
        item = {"img": b, "caption": cap.encode(), "source": "broken", "size": im.size, "extra": {"broken": how}}
        if how == "truncated_jpeg":
            item["img"] = b[: len(b) // 2]
        elif how == "zero_bytes":
            item["img"] = b""
        elif how == "not_an_image":
            item["img"] = b"<html><body>404 Not Found</body></html>"
        elif how == "missing_json":
            item["no_json"] = True
        elif how == "empty_caption":
            item["caption"] = b""
        elif how == "non_utf8_caption":
            item["caption"] = "caf\u00e9 au lait".encode("latin-1")
        return item
    gen = {"photo": photo, "text": text_image, "shapes": shapes_image, "small": small_image,
           "aspect": aspect_image}.get(kind)
    im, cap, extra = gen(rng) if gen else lowq_image(rng, nrng)
    return {"img": _jpeg(im), "caption": cap.encode(), "source": kind, "size": im.size, "extra": extra}


def kinds_for(n: int, rng: random.Random) -> list[str]:
    """Exactly ``round(share * n)`` of each source (largest-remainder rounding), shuffled."""
    raw = {k: v * n for k, v in MIX.items()}
    counts = {k: int(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - counts[k], reverse=True)[: n - sum(counts.values())]:
        counts[k] += 1
    kinds = [k for k, c in counts.items() for _ in range(c)]
    rng.shuffle(kinds)
    return kinds


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode = len(data), 0, 0o644
    tf.addfile(ti, io.BytesIO(data))


def write_shard(out: str, shard: int, items: list[dict], failed: int, rng: random.Random) -> None:
    name = f"{shard:05d}"
    rows = []
    t0 = time.time()
    with tarfile.open(os.path.join(out, name + ".tar"), "w", format=tarfile.USTAR_FORMAT) as tf:
        for it in items:
            k = it["key"]
            w, h = it["size"]
            cap = it["caption"]
            try:
                cap_s = cap.decode("utf-8")
            except UnicodeDecodeError:
                cap_s = None
            meta = {"url": f"https://example.invalid/{it['source']}/{k}.jpg", "caption": cap_s, "key": k,
                    "status": "success", "error_message": None, "width": w, "height": h,
                    "original_width": w, "original_height": h, "exif": None,
                    "sha256": hashlib.sha256(it["img"]).hexdigest(), "source": it["source"], **it["extra"]}
            _add(tf, f"{k}.jpg", it["img"])
            _add(tf, f"{k}.txt", cap)
            if not it.get("no_json"):
                _add(tf, f"{k}.json", json.dumps(meta, sort_keys=True).encode())
            rows.append({c: meta[c] for c in ("url", "caption", "key", "status", "error_message", "width",
                                              "height", "original_width", "original_height", "exif", "sha256")})
    for j in range(failed):  # img2dataset keeps a row for every URL it could not fetch
        k = f"{shard:05d}{len(items) + j:04d}"
        rows.append({"url": f"https://example.invalid/gone/{k}.jpg", "caption": "unavailable", "key": k,
                     "status": "failed_to_download", "error_message": "HTTP Error 404: Not Found", "width": None,
                     "height": None, "original_width": None, "original_height": None, "exif": None, "sha256": None})
    schema = pa.schema([("url", pa.string()), ("caption", pa.string()), ("key", pa.string()),
                        ("status", pa.string()), ("error_message", pa.string()), ("width", pa.int64()),
                        ("height", pa.int64()), ("original_width", pa.int64()), ("original_height", pa.int64()),
                        ("exif", pa.string()), ("sha256", pa.string())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), os.path.join(out, name + ".parquet"))
    stats = {"count": len(rows), "successes": len(items), "failed_to_download": failed, "failed_to_resize": 0,
             "duration": round(time.time() - t0, 3), "start_time": 0, "end_time": 0,
             "status_dict": {"success": len(items), "HTTP Error 404: Not Found": failed} if failed else {"success": len(items)}}
    with open(os.path.join(out, name + "_stats.json"), "w") as f:
        json.dump(stats, f, indent=4)


def make_sample(out: str, n: int = 200, seed: int = 0, per_shard: int = 64) -> dict[str, int]:
    """Write the sample; returns the number of pairs per source."""
    if n < 1 or per_shard < 1:
        raise ValueError(f"need n >= 1 and per_shard >= 1, got n={n}, per_shard={per_shard}")
    os.makedirs(out, exist_ok=True)
    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    kinds = kinds_for(n, rng)
    done: list[dict] = []
    counts: dict[str, int] = {}
    for s in range(math.ceil(n / per_shard)):
        items = []
        for i, kind in enumerate(kinds[s * per_shard:(s + 1) * per_shard]):
            it = _item(kind, rng, nrng, done)
            it["key"] = f"{s:05d}{i:04d}"
            items.append(it)
            counts[it["source"]] = counts.get(it["source"], 0) + 1
            if it["source"] in ("photo", "shapes"):
                done.append(it)
        write_shard(out, s, items, failed=1 + s % 2, rng=rng)
    return counts


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="output folder (img2dataset layout)")
    p.add_argument("--n", type=int_at_least(1), default=200, help="number of pairs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--per-shard", type=int_at_least(1), default=64, help="pairs per shard")


def run(args) -> int:
    require_writable("out", args.out)
    t = time.time()
    counts = make_sample(args.out, args.n, args.seed, args.per_shard)
    print(f"wrote {sum(counts.values())} pairs to {args.out} in {time.time() - t:.1f}s: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0
