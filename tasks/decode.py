"""Safe image decoding: every failure becomes a ``DecodeError`` with a reason a user can act on.

The pixel count is checked from the header BEFORE pixels are decoded (a 50-byte PNG can claim
100k x 100k pixels), EXIF orientation is applied so width/height mean what a viewer shows, and
every mode (CMYK, 16-bit, palette, alpha, LA, I;16, 1-bit) ends as 8-bit RGB so downstream
filters see one format. Given a ``draft`` size, a JPEG is decoded once at the smallest of libjpeg's
DCT scales (1/2, 1/4, 1/8) that still leaves it that large (PIL's draft mode): the filters never
look at more pixels than that, and ``size`` keeps the stored size.
"""
from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never grey padding


_TRANSPOSES = range(2, 9)  # EXIF orientations 2-8 (TIFF 6.0): the tags exif_transpose acts on
_SWAPS = range(5, 9)  # of those, the ones that turn the image a quarter (width and height swap)


class DecodeError(ValueError):
    """Why a payload could not become an RGB image (the quarantine reason)."""


@dataclass
class Decoded:
    image: Image.Image  # RGB, orientation applied
    format: str
    mode: str  # original mode, before conversion
    orientation: int  # EXIF orientation tag that was applied (1 = none)
    original_size: tuple[int, int]  # as stored, before orientation
    size: tuple[int, int] = (0, 0)  # as stored, orientation applied (the image may be a draft of it)

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height


def _composite(im: Image.Image) -> Image.Image:
    """Alpha over white: transparent areas must not turn black (they are usually background)."""
    rgba = im.convert("RGBA")
    bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(bg, rgba).convert("RGB")


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode to 8-bit RGB; high bit depths are rescaled, not clipped."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        return _composite(im)
    return im.convert("RGB")  # CMYK, YCbCr, LAB, HSV, P, L, 1


def header_pixels(data: bytes | None) -> int:
    """Pixels the image will have once decoded, read from its header alone (0 when the header is
    unreadable: such a payload is quarantined without decoding). Lets a caller size a batch
    before it pays for the pixels."""
    if not data:
        return 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            w, h = Image.open(io.BytesIO(data)).size
    except Exception:  # noqa: BLE001  (decode_image gives the reason)
        return 0
    return max(w, 0) * max(h, 0)


def draft_size(w: int, h: int, draft: tuple[int, int]) -> tuple[int, int] | None:
    """The size to ask PIL's JPEG draft for so that the long side stays >= ``draft[0]`` and the
    short side >= ``draft[1]``; None when the image is not even twice that (no DCT scale fits)."""
    f = min(max(w, h) / max(draft[0], 1), min(w, h) / max(draft[1], 1))
    return (math.ceil(w / f), math.ceil(h / f)) if f >= 2 else None


def decode_image(data: bytes | None, max_pixels: int, draft: tuple[int, int] | None = None) -> Decoded:
    """``draft``: (long side, short side) the caller needs at least; None decodes every pixel."""
    if data is None:
        raise DecodeError("no image file in the shard for this key")
    if len(data) == 0:
        raise DecodeError("empty image file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:  # PIL's own guard (2x its MAX_IMAGE_PIXELS)
        raise DecodeError(f"decompression bomb: {e}") from None
    except UnidentifiedImageError:
        raise DecodeError(f"not an image: unrecognised bytes (starts {data[:8]!r})") from None
    except ValueError as e:
        if "Decompressed data too large" in str(e):  # PIL's cap on a compressed text chunk (zTXt/iTXt)
            raise DecodeError(f"decompression bomb: {e}") from None
        raise DecodeError(f"not an image: {type(e).__name__}: {e}") from None
    except Exception as e:  # noqa: BLE001  (PIL raises many types on garbage headers)
        raise DecodeError(f"not an image: {type(e).__name__}: {e}") from None
    w, h = im.size
    if w <= 0 or h <= 0:
        raise DecodeError(f"invalid image size {w}x{h}")
    if w * h > max_pixels:
        raise DecodeError(f"decompression bomb: {w}x{h} = {w * h} pixels > max_pixels {max_pixels}")
    fmt, mode = im.format or "unknown", im.mode
    if draft is not None and fmt == "JPEG" and (ask := draft_size(w, h, draft)):
        im.draft(None, ask)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im.load()
    except Exception as e:  # noqa: BLE001
        raise DecodeError(f"truncated or corrupt {fmt} data: {e}") from None
    orientation = 1
    try:
        tag = int(im.getexif().get(0x0112, 1) or 1)
        if tag in _TRANSPOSES:  # 2-8; any other value (0, 9, 65535) is not a transform: none applied
            im, orientation = ImageOps.exif_transpose(im), tag
    except Exception:  # noqa: BLE001  (a broken EXIF block must not lose the image)
        orientation = 1
    try:
        rgb = to_rgb(im)
    except Exception as e:  # noqa: BLE001
        raise DecodeError(f"cannot convert mode {mode} to RGB: {e}") from None
    return Decoded(rgb, fmt, mode, orientation, (w, h), (h, w) if orientation in _SWAPS else (w, h))
