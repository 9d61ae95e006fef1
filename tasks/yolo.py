"""``ultralytics.YOLO`` without ultralytics' global patch of ``PIL.Image.open``.

Importing ultralytics replaces ``PIL.Image.open`` for the whole process
(``ultralytics/utils/patches.py``) with a wrapper that, on bytes PIL cannot identify, calls
``check_requirements("pi-heif")`` (a pip install at run time, which this offline project must
never attempt) and then fails with ``ModuleNotFoundError: No module named 'pi_heif'``. Once the
face filter or the GenEval detector had loaded, every undecodable member was quarantined with
that message instead of its real reason (``unrecognised bytes (starts b'<html>...')``), and which
reason a pair got depended on import order. Every project import of YOLO goes through here.
"""
from __future__ import annotations

from PIL import Image


def yolo_class():
    """The ``YOLO`` class, with PIL's own ``Image.open`` put back."""
    from ultralytics import YOLO  # heavy
    from ultralytics.utils import patches  # heavy
    Image.open = getattr(patches, "_image_open", Image.open)  # the original, kept by ultralytics
    return YOLO
