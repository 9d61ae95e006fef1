"""The exit-time abort of issue #25: a successful ``t2i curate`` that sometimes exited -6
('terminate called without an active exception') when an Arrow pool thread freed Python bytes
of a lake read while the interpreter finalized (see ``warehouse.files.read_parquet``)."""
import gc
import io
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from warehouse import files
from warehouse import lake as lk

ROOT = Path(__file__).resolve().parent.parent


class _Tracked(bytes):
    """Bytes that record which thread frees them."""
    freed_by: list[int] = []

    def __del__(self) -> None:
        _Tracked.freed_by.append(threading.get_ident())


class _File(io.RawIOBase):
    """A Python file object, as fsspec gives Arrow, whose reads are tracked bytes."""

    def __init__(self, path: str) -> None:
        self.f = open(path, "rb")
        self.handed_out = 0

    def read(self, n: int = -1) -> bytes:
        self.handed_out += 1
        return _Tracked(self.f.read(n))

    def seek(self, *a) -> int:
        return self.f.seek(*a)

    def tell(self) -> int:
        return self.f.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.f.close()
        super().close()


class _FS:
    def __init__(self) -> None:
        self.files: list[_File] = []

    def open(self, path: str, mode: str = "rb") -> _File:
        self.files.append(_File(path))
        return self.files[-1]


def test_a_lake_read_frees_every_python_buffer_in_the_calling_thread(tmp_path):
    """Before the fix ``pq.read_table`` left frees to Arrow's threads in about 1 read of 5."""
    rows = [{"key": f"{i:05d}", "shard": "00000", "status": "passed", "caption": "a red circle " * (i % 7)}
            for i in range(2000)]
    path = lk.write_partition(str(tmp_path / "lake"), "pairs", "00000", rows)
    fs, main = _FS(), threading.get_ident()
    _Tracked.freed_by = []
    for _ in range(40):
        t = files.read_parquet(fs, path)
        assert t.num_rows == 2000 and t.column("key")[1999].as_py() == "01999"
        del t
    gc.collect()
    handed_out = sum(f.handed_out for f in fs.files)
    assert handed_out >= 80  # footer and column chunks of each of the 40 reads
    assert len(_Tracked.freed_by) == handed_out  # nothing still held once the table is gone
    assert set(_Tracked.freed_by) == {main}


@pytest.mark.slow
def test_ten_consecutive_curate_runs_exit_0(tmp_path):
    """bench/curate_exits.py at 10 runs of an 8-pair sample: every exit 0 (before the fix about 1
    run in 30 exited -6, so this caught it about 1 time in 3; the test above is the deterministic
    one). No busy loop of its own: under ``make test`` the other pytest worker loads the other core."""
    p = subprocess.run([sys.executable, "bench/curate_exits.py", "--runs", "10", "--n", "8", "--no-load",
                        "--dir", str(tmp_path / "w"), "--json"], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    s = json.loads(p.stdout.strip().splitlines()[-1])
    assert s["codes"] == [0] * 10, (s, [f.read_text()[-1500:] for f in (tmp_path / "w").glob("run-*.err")])
    assert p.returncode == 0
