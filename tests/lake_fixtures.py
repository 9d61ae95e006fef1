"""Pairs rows like curate-laion writes them, plus the shard tars they point to (test fixtures)."""
from __future__ import annotations

import datetime as dt
import io
import tarfile
from pathlib import Path

from warehouse import db
from warehouse import lake as lk

SHAPES = [
    "two red circles to the left of a blue square",
    "a light blue triangle above three green stars",
    "one yellow hexagon to the right of a purple circle",
    "four orange squares below a red triangle",
    "a black and white photo of a dog holding a ball on the beach",
    "an oil painting of a wooden house next to a lake at sunset",
]


def jpeg(w: int, h: int, color=(200, 30, 30)) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, "JPEG")
    return buf.getvalue()


def write_tar(path: Path, members: dict[str, bytes]) -> str:
    with tarfile.open(path, "w") as tf:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return str(path)


def make_lake(root: Path, captions: list | None = None, shards: int = 2, sizes=None) -> tuple[str, list[dict]]:
    """A lake with passed pairs (and one rejected) spread over ``shards`` tars; returns rows."""
    captions = captions or SHAPES
    lake = str(root / "lake")
    rows = []
    now = dt.datetime(2026, 11, 24, tzinfo=dt.timezone.utc)
    sizes = sizes or [(64, 64), (96, 48), (40, 120), (300, 300), (1200, 500)]
    for s in range(shards):
        shard = f"{s:05d}"
        members, shard_rows = {}, []
        for i, cap in enumerate(captions):
            key = f"{shard}{i:04d}"
            w, h = sizes[(i + s) % len(sizes)]
            members[f"{key}.jpg"] = jpeg(w, h)
            shard_rows.append({"key": key, "shard": shard, "status": "passed", "caption": cap,
                               "width": w, "height": h, "source": "shapes" if i < 4 else "laion",
                               "created_at": now})
        rej = f"{shard}9999"
        shard_rows.append({"key": rej, "shard": shard, "status": "rejected", "stage": "aesthetic",
                           "caption": "rejected one", "width": 10, "height": 10, "source": "laion",
                           "created_at": now})
        tar = write_tar(root / f"{shard}.tar", members)
        for r in shard_rows:
            r["source_path"] = tar
        lk.write_partition(lake, "pairs", shard, shard_rows)
        rows += shard_rows
    return lake, rows


def pair_rows(lake: str) -> list[tuple]:
    """Every pair's (shard, key, status, stage), sorted: what a curation rerun must restore exactly."""
    return db.query(lake, "SELECT shard, key, status, stage FROM pairs ORDER BY shard, key")[1]
