import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny ops: extra threads only wait for a core
os.environ.setdefault("T2I_THREADS_PER_RANK", "1")  # the same for training subprocesses
_STATE = os.environ.setdefault("T2I_STATE_DIR", str(ROOT / ".state" / "test"))
if os.environ.get("PYTEST_XDIST_WORKER"):  # set by pytest-xdist before this file is imported
    # each worker its own state (Prefect's ephemeral-API sqlite DB lives there); the environment a
    # worker inherits from the controller already holds what djepa_t2i.env derived from the shared one
    for _key in ("PREFECT_HOME", "YOLO_CONFIG_DIR"):
        if os.environ.get(_key, "").startswith(_STATE):
            del os.environ[_key]
    os.environ["T2I_STATE_DIR"] = str(Path(_STATE) / os.environ["PYTEST_XDIST_WORKER"])

import djepa_t2i.env  # noqa: E402,F401  offline environment for every test
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

import logging  # noqa: E402

# Prefect's ephemeral API logs "Stopping temporary server" from an atexit hook, after pytest has
# closed its capture streams; without this the run ends with a spurious "--- Logging error ---".
logging.raiseExceptions = False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test``: ``-n 2 --dist loadfile``) a worker takes a whole file at a
    time, in collection order; files with end-to-end (``slow``) tests go first so the longest ones
    do not start last and leave one worker idle while the other finishes them."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)  # stable: file and test order kept otherwise
