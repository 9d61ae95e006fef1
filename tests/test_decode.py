import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tasks.decode import DecodeError, decode_image

MAXP = 89_478_485


def _bytes(im, fmt="PNG", **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def _png_claiming(w, h):
    """A valid PNG header that claims w x h pixels (a decompression bomb without the memory)."""
    raw = _bytes(Image.new("L", (1, 1)))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return raw[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + raw[33:]


@pytest.mark.parametrize("data,reason", [
    (b"", r"empty image file \(0 bytes\)"),
    (b"<html>404</html>", "not an image"),
    (None, "no image file"),
])
def test_unreadable(data, reason):
    with pytest.raises(DecodeError, match=reason):
        decode_image(data, MAXP)


def test_truncated_jpeg():
    b = _bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)), "JPEG")
    with pytest.raises(DecodeError, match="truncated or corrupt JPEG"):
        decode_image(b[: len(b) // 2], MAXP)


def test_bomb_refused_before_decode():
    with pytest.raises(DecodeError, match=r"decompression bomb.*10000000000 pixels"):
        decode_image(_png_claiming(100_000, 100_000), MAXP)
    with pytest.raises(DecodeError, match="decompression bomb: 100x100 = 10000 pixels > max_pixels 5000"):
        decode_image(_bytes(Image.new("RGB", (100, 100))), 5000)


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "P", "RGBA", "LA", "L", "1"])
def test_modes_to_rgb(mode):
    if mode == "I;16":
        im = Image.fromarray(np.full((8, 8), 65535, np.uint16))
    else:
        im = Image.new(mode, (8, 8))
    d = decode_image(_bytes(im, "TIFF" if mode == "CMYK" else "PNG"), MAXP)
    assert d.image.mode == "RGB" and d.image.size == (8, 8)
    if mode == "I;16":
        assert d.mode.startswith("I") and np.asarray(d.image).min() == 255  # rescaled, not clipped to 255 by luck
    if mode in ("RGBA", "LA"):  # fully transparent -> white background
        assert np.asarray(d.image).min() == 255


def test_palette_with_transparency_composited_on_white():
    im = Image.new("P", (4, 4), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.info["transparency"] = 0
    d = decode_image(_bytes(im, transparency=0), MAXP)
    assert tuple(np.asarray(d.image)[0, 0]) == (255, 255, 255)


def test_exif_orientation_applied():
    im = Image.new("RGB", (40, 20), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 10, 20))  # red strip on the left of the stored image
    ex = Image.Exif()
    ex[0x0112] = 6  # rotate 90 CW for display
    d = decode_image(_bytes(im, "JPEG", exif=ex.tobytes(), quality=95), MAXP)
    assert d.orientation == 6 and d.original_size == (40, 20) and d.image.size == (20, 40)
    a = np.asarray(d.image).astype(int)
    assert a[2, 10, 0] > 200 and a[2, 10, 2] < 60  # the red strip is now at the top
    assert a[-2, 10, 2] > 200
