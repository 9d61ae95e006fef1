"""One accepted sample's pixels: read by its byte range from its shard, scaled to the size the
sampler chose, as a tensor in [-1, 1]. The data path (training/data.py) and the encoder cache
(training/encode_cache.py) both read images this way; its own module keeps the two from importing
each other."""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from tasks.shard_format import read_range
from training.feedback_sampler import Decision


def load_image(d: Decision) -> torch.Tensor:
    """Read one accepted sample by its byte range, downscale to (out_h, out_w), map to [-1, 1]."""
    im = Image.open(io.BytesIO(read_range(d.tar, d.offset, d.size)))
    if d.crop:  # phase 1 (Supp. §7): short side to the target, then a centre crop
        s = d.out_w / min(d.width, d.height)
        rw, rh = max(d.out_w, round(d.width * s)), max(d.out_h, round(d.height * s))
    else:
        rw, rh = d.out_w, d.out_h
    im.draft("RGB", (rw, rh))  # JPEG: decode at the smallest scale >= the target
    im = im.convert("RGB")
    if im.size != (rw, rh):
        im = im.resize((rw, rh), Image.Resampling.BICUBIC, reducing_gap=3.0)
    if d.crop:
        x0, y0 = (rw - d.out_w) // 2, (rh - d.out_h) // 2
        im = im.crop((x0, y0, x0 + d.out_w, y0 + d.out_h))
    arr = np.array(im, dtype=np.uint8)  # one uint8 copy, then PIL's 4-byte-per-pixel buffer goes
    del im  # before the float image exists: the peak is the float image plus one uint8 copy
    return torch.from_numpy(arr).permute(2, 0, 1).float().div_(127.5).sub_(1.0)
