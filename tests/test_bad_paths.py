"""Every command, every bad path: one line on stderr, exit 2 for the user's input, exit 1 for a
fault of the machine such as a full disk (issue #25 item 2). Table-driven over the ``t2i``
subcommands and the flow entries, in-process (``cli.main``) for speed; the subprocess form of the
same contract is tests/test_cli_validation.py, the missing-lake row of every lake command is its
``test_every_lake_command_checks_the_lake``."""
import errno
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from djepa_t2i.cli import main
from djepa_t2i.config import ConfigError
from warehouse import db
from warehouse import files


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict[str, str]:
    """One folder per bad condition."""
    t = tmp_path_factory.mktemp("bad")
    (t / "empty").mkdir()
    (t / "noshards").mkdir()
    (t / "noshards" / "readme.txt").write_text("not a shard")
    db.ensure_warehouse(str(t / "emptylake"))  # every table, no rows
    (t / "run").mkdir()  # a training run folder without checkpoints
    (t / "run" / "checkpoints").mkdir()
    return {k: str(t / k) for k in ("empty", "noshards", "emptylake", "run")} | {"root": str(t)}


def _run(argv: list[str], capsys) -> tuple[int, list[str], str]:
    rc = main(argv)
    said = capsys.readouterr()
    return rc, said.err.strip().splitlines(), said.out


def _no_curate_input(p: str) -> str:
    return f"t2i curate: error: input='{p}': no .tar shards there (expected img2dataset output: NNNNN.tar beside NNNNN.parquet)"


def _no_samples(cmd: str, p: str) -> str:
    return f"t2i {cmd}: error: lake='{p}': no samples yet (run `t2i build-shards` first)"


# (name, argv from the paths, exit code, the one stderr line; None: exit 0 with nothing to do)
CASES = [
    ("curate/empty folder", lambda p: ["curate", p["empty"], "--lake", p["root"] + "/l1", "--no-prefect"],
     2, lambda p: _no_curate_input(p["empty"])),
    ("curate/no shards", lambda p: ["curate", p["noshards"], "--lake", p["root"] + "/l2", "--no-prefect"],
     2, lambda p: _no_curate_input(p["noshards"])),
    ("curate/no shards, Prefect", lambda p: ["curate", p["noshards"], "--lake", p["root"] + "/l3"],
     2, lambda p: _no_curate_input(p["noshards"])),
    ("notions/empty lake", lambda p: ["notions", "--lake", p["emptylake"], "--no-prefect"], 2,
     lambda p: (f"t2i notions: error: lake '{p['emptylake']}' has no captions: run `t2i recaption --lake "
                f"{p['emptylake']}` first (the default backend keeps the alt text)")),
    ("encode/empty lake", lambda p: ["encode", "--lake", p["emptylake"], "--no-prefect"], 2,
     lambda p: _no_samples("encode", p["emptylake"])),
    ("train/empty lake", lambda p: ["train", "--set", f"lake={p['emptylake']}", "--set",
                                    f"train.out={p['root']}/train"], 2, lambda p: _no_samples("train", p["emptylake"])),
    ("feedback/empty lake", lambda p: ["feedback", "--lake", p["emptylake"], "--no-prefect"], 2,
     lambda p: (f"t2i feedback: error: lake {p['emptylake']}: no live sampling-weights version (publish v0 "
                "with `t2i notions` first)")),
    ("generate/no checkpoints", lambda p: ["generate", "--ckpt", p["run"], "--prompt", "a", "--out",
                                           p["root"] + "/x.png"], 2,
     lambda p: (f"t2i generate: --ckpt {p['run']}: no checkpoint there (expected a checkpoint directory with "
                "meta.json, a run folder or its checkpoints/ folder)")),
    ("sft-tier/empty lake", lambda p: ["sft-tier", "--lake", p["emptylake"], "--out", p["root"] + "/tier.parquet"],
     2, None),
    ("post-train/no checkpoint", lambda p: ["post-train", "--lake", p["emptylake"], "--no-prefect", "--set",
                                            f"train.out={p['root']}/pt"], 2,
     lambda p: "t2i post-train: error: post_train.init_from: give the SFT checkpoint to start from"),
    ("convert-weights/a folder", lambda p: ["convert-weights", p["empty"]], 2, None),
    # an empty lake is a lake: these have nothing to do and say so by exiting 0
    ("recaption/empty lake", lambda p: ["recaption", "--lake", p["emptylake"], "--no-prefect"], 0, None),
    ("build-shards/empty lake", lambda p: ["build-shards", "--lake", p["emptylake"], "--out",
                                           p["root"] + "/shards", "--no-prefect"], 0, None),
    ("evaluate/empty lake", lambda p: ["evaluate", "--lake", p["emptylake"], "--no-prefect"], 0, None),
    ("report/empty lake", lambda p: ["report", "--lake", p["emptylake"], "--out", p["root"] + "/rep"], 0, None),
    ("lake check/empty lake", lambda p: ["lake", "check", "--lake", p["emptylake"]], 0, None),
]


@pytest.mark.parametrize("name,argv,code,line", CASES, ids=[c[0] for c in CASES])
def test_bad_path(paths, capsys, name, argv, code, line):
    rc, err, out = _run(argv(paths), capsys)
    assert rc == code, (err[-5:], out[-500:])
    if code:
        assert len(err) == 1 and out == "", err
        assert "Traceback" not in err[0]
        if line is not None:
            assert err[0] == line(paths)
        else:
            assert err[0].startswith(f"t2i {name.split('/')[0]}: error: ")


def test_curate_refuses_no_shards_before_making_the_lake(paths, capsys):
    rc, _, _ = _run(["curate", paths["noshards"], "--lake", paths["root"] + "/never", "--no-prefect"], capsys)
    assert rc == 2 and not os.path.exists(paths["root"] + "/never")


def test_flow_entries_refuse_an_empty_lake(paths):
    """Deployments call the flow functions: the same one-line errors as ConfigError."""
    from flows.encode import encode
    from flows.feedback import feedback
    from flows.notion_stats import notion_stats_flow
    lake = paths["emptylake"]
    for call, match in ((lambda: notion_stats_flow.fn(lake), "has no captions"),
                        (lambda: feedback.fn(lake), "no live sampling-weights version"),
                        (lambda: encode.fn(lake), "no samples yet")):
        with pytest.raises(ConfigError, match=match):
            call()


def test_a_lake_of_an_older_schema_version_is_read_and_upgraded(tmp_path, capsys):
    """A lake written before columns were added (another DDL stamp, partitions without the new
    columns): every reader sees the old rows with NULL in the new columns, the stamp is renewed."""
    lake = tmp_path / "old"
    (lake / "pairs").mkdir(parents=True)
    pq.write_table(pa.table({"key": ["a", "b"], "shard": ["00000", "00000"], "status": ["passed", "rejected"]}),
                   lake / "pairs" / "00000.parquet")
    (lake / db.STAMP).write_text("sha256-of-an-older-schema")
    rc, err, out = _run(["sql", "--lake", str(lake), "--format", "csv",
                         "SELECT count(*) AS n, count(caption_raw) AS raw FROM pairs"], capsys)
    assert rc == 0, err
    assert out.splitlines() == ["n,raw", "2,0"]
    assert (lake / db.STAMP).read_text() == db.ddl_hash()
    assert _run(["report", "--lake", str(lake), "--out", str(tmp_path / "rep")], capsys)[0] == 0
    assert _run(["lake", "check", "--lake", str(lake)], capsys)[0] == 0


@pytest.mark.parametrize("exc", [
    OSError(errno.ENOSPC, "No space left on device", "/lake/pairs/.00000.parquet.1.tmp"),
    OSError("[errno 28] No space left on device"),  # Arrow's error: the text only
])
def test_a_full_disk_is_one_line_exit_1(monkeypatch, capsys, tmp_path, exc):
    import report.page as report

    def full(args):
        raise exc
    monkeypatch.setattr(report, "run", full)
    rc, err, out = _run(["report", "--lake", str(tmp_path)], capsys)
    where = f" ({exc.filename})" if exc.filename else ""
    assert (rc, err, out) == (1, [f"t2i report: error: no space left on device{where}; free space, then rerun "
                                  "the command (finished work is kept)"], "")
    with pytest.raises(OSError):  # --debug: the traceback
        main(["--debug", "report", "--lake", str(tmp_path)])


def test_a_failed_partition_write_leaves_no_temp_file(tmp_path, monkeypatch):
    """``write_atomic`` removes its temporary file when the write fails (a full disk mid-write)."""
    import fsspec
    fs = fsspec.filesystem("file")
    real_open = fs.open

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def write(self, data):
            self.f.write(data[:10])
            raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(fs, "open", lambda p, mode="rb": Full(real_open(p, mode)))
    with pytest.raises(OSError):
        files.write_atomic(fs, f"{tmp_path}/x.parquet", b"0123456789abcdef")
    assert list(Path(tmp_path).iterdir()) == []
