"""Small real inputs for the build-shards / sampler / trainer tests: img2dataset tars of real
JPEGs (colored shapes at several sizes) plus the ``pairs`` and ``notions`` rows that curation and
notion-stats would have written."""
from __future__ import annotations

import io
import json
import tarfile

import numpy as np
from PIL import Image, ImageDraw

from warehouse import lake as lk

COLORS = {"red": (220, 30, 30), "blue": (30, 60, 220), "green": (30, 180, 60)}
SHAPES = ("square", "circle")


def jpeg(w: int, h: int, color: str, shape: str) -> bytes:
    im = Image.new("RGB", (w, h), (235, 235, 235))
    d = ImageDraw.Draw(im)
    box = (w // 4, h // 4, 3 * w // 4, 3 * h // 4)
    (d.rectangle if shape == "square" else d.ellipse)(box, fill=COLORS[color])
    b = io.BytesIO()
    im.save(b, "JPEG", quality=90)
    return b.getvalue()


def make_lake(root, n: int = 24, shards: int = 2, sizes=((32, 32), (48, 32), (24, 40), (64, 64)),
              seed: int = 0, failed: int = 2) -> tuple[str, list[str]]:
    """Write ``shards`` img2dataset tars and their pairs/notions partitions; returns (lake, keys
    that passed)."""
    rng = np.random.default_rng(seed)
    lake = str(root / "lake")
    src = root / "src"
    src.mkdir(parents=True, exist_ok=True)
    passed = []
    for s in range(shards):
        shard = f"{s:05d}"
        path = src / f"{shard}.tar"
        rows, notions = [], []
        with tarfile.open(path, "w") as tf:
            for i in range(n // shards):
                key = f"{shard}{i:04d}"
                w, h = sizes[int(rng.integers(len(sizes)))]
                color = list(COLORS)[int(rng.integers(len(COLORS)))]
                shape = SHAPES[int(rng.integers(len(SHAPES)))]
                cap = f"a {color} {shape}"
                for ext, data in (("jpg", jpeg(w, h, color, shape)), ("txt", cap.encode()),
                                  ("json", json.dumps({"key": key}).encode())):
                    ti = tarfile.TarInfo(f"{key}.{ext}")
                    ti.size = len(data)
                    tf.addfile(ti, io.BytesIO(data))
                status = "rejected" if i < failed else "passed"
                rows.append({"key": key, "shard": shard, "source_path": str(path), "status": status,
                             "width": w, "height": h, "caption": cap, "source": "laion" if i % 3 else "cc"})
                notions += [{"key": key, "notion": color, "kind": "color"},
                            {"key": key, "notion": shape, "kind": "shape"}]
                if status == "passed":
                    passed.append(key)
        lk.write_partition(lake, "pairs", shard, rows)
        lk.write_partition(lake, "notions", shard, notions)
    return lake, sorted(passed)
