"""Process-wide settings that keep every library offline and inside the project directory.

Imported first by the CLI, flows and tests: a hub lookup would otherwise retry for ~50 s, and
Prefect/ultralytics would write to the home directory and phone home.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup_offline_env() -> None:
    state = Path(os.environ.get("T2I_STATE_DIR", ROOT / ".state"))
    defaults = {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "DO_NOT_TRACK": "1",
        "PREFECT_HOME": str(state / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        "YOLO_OFFLINE": "1",
        "YOLO_CONFIG_DIR": str(state / "ultralytics"),
        "TOKENIZERS_PARALLELISM": "false",
    }
    for k, v in defaults.items():
        os.environ.setdefault(k, v)
    ycfg = Path(os.environ["YOLO_CONFIG_DIR"])
    ycfg.mkdir(parents=True, exist_ok=True)
    font = ycfg / "Arial.ttf"  # ultralytics downloads Arial.ttf for plots unless one is there
    if not font.exists():
        try:
            import matplotlib  # heavy
            src = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
            shutil.copyfile(src, font)
        except Exception:
            pass


setup_offline_env()
