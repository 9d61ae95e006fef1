import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny ops: extra threads only wait for a core
os.environ.setdefault("T2I_THREADS_PER_RANK", "1")  # the same for training subprocesses
os.environ.setdefault("T2I_STATE_DIR", str(ROOT / ".state" / "test"))

import djepa_t2i.env  # noqa: E402,F401  offline environment for every test
import torch  # noqa: E402

torch.set_num_threads(1)

import logging  # noqa: E402

# Prefect's ephemeral API logs "Stopping temporary server" from an atexit hook, after pytest has
# closed its capture streams; without this the run ends with a spurious "--- Logging error ---".
logging.raiseExceptions = False
