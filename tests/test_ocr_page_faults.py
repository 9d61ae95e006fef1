"""The OCR stage keeps onnxruntime's buffers between images inside a Dask worker.

A Dask worker runs with ``MALLOC_TRIM_THRESHOLD_=65536`` (its nanny's default environment) and
runs tasks in a thread. Without onnxruntime's CPU arena every detector call mallocs and frees
its tensors, which glibc then maps and unmaps each time: measured ~8,100 minor page faults and
+13 ms of kernel CPU per image on the 5,000-pair sample (docs/scale.md), against ~2,200 with the
arena. The child process below reproduces that environment.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, random, resource, sys, threading
sys.path.insert(0, sys.argv[1])
from djepa_t2i.config import load_config
from tasks.mini_laion import shapes_image, text_image
from tasks.stages import build_stage

f = build_stage("ocr", load_config())
rng = random.Random(0)
images = [shapes_image(rng)[0] for _ in range(6)] + [text_image(rng)[0] for _ in range(2)]
out = {}

def work():
    for im in images[:2]:
        f([im])  # warm-up: the arena grows to its working size
    r0 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    for im in images:
        f([im])
    out["faults_per_image"] = (resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - r0) / len(images)

t = threading.Thread(target=work)
t.start()
t.join()
print(json.dumps(out))
"""


def test_ocr_page_faults_per_image_in_a_dask_like_worker_thread():
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": "65536"}
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    r = subprocess.run([sys.executable, "-c", CHILD, str(ROOT)], env=env, capture_output=True, text=True,
                       timeout=120, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    faults = json.loads(r.stdout.strip().splitlines()[-1])["faults_per_image"]
    assert 0 < faults < 4000, faults
