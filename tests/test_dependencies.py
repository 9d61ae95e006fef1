"""pyproject.toml pins every dependency exactly, and requirements.lock (what `make setup` installs
as constraints) agrees with each pin; a pin changed without `make lock` fails here, not on a
fresh machine's `make setup`."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
UNLOCKED = {"gpu"}  # flash-attn: a source build for CUDA machines, never installed by make setup


def requirements() -> list[Requirement]:
    extras = [r for name, rs in PROJECT["optional-dependencies"].items() if name not in UNLOCKED for r in rs]
    return [Requirement(r) for r in PROJECT["dependencies"] + extras]


def locked() -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", (ROOT / "requirements.lock").read_text(), re.M)
    return {canonicalize_name(n): v for n, v in pins}


def test_every_dependency_is_pinned_exactly():
    loose = [str(r) for r in requirements() if [s.operator for s in r.specifier] != ["=="]]
    assert not loose, f"pin these exactly in pyproject.toml: {loose}"


def test_the_lock_agrees_with_every_pin():
    lock = locked()
    wrong = {r.name: (next(iter(r.specifier)).version, lock.get(canonicalize_name(r.name)))
             for r in requirements() if lock.get(canonicalize_name(r.name)) != next(iter(r.specifier)).version}
    assert not wrong, f"(pyproject, requirements.lock) differ: {wrong}; run `make lock`"


def test_both_opencv_wheels_are_the_same_version():
    """ultralytics needs opencv-python, rapidocr and nudenet opencv-python-headless; both write cv2/."""
    lock = locked()
    assert lock["opencv-python"] == lock["opencv-python-headless"]
