"""djepa_t2i.env: the offline settings, and the font ultralytics would otherwise download (it is
not kept in git: a fresh clone gets it from matplotlib the first time the environment is set up)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

from djepa_t2i.env import setup_offline_env


def test_a_fresh_state_dir_gets_the_font_ultralytics_wants(tmp_path, monkeypatch):
    monkeypatch.setenv("T2I_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("YOLO_CONFIG_DIR")
    setup_offline_env()
    font = tmp_path / "state" / "ultralytics" / "Arial.ttf"
    dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    assert font.read_bytes() == dejavu.read_bytes()
    assert font.read_bytes()[:4] == b"\x00\x01\x00\x00"          # a TrueType file
