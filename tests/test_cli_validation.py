"""Bad values, arguments and paths fail before any work, as one line naming the key and what is
allowed, exit code 2 (issue #12 item 5). Run as a user does: ``python -m djepa_t2i.cli`` in a
subprocess, stderr read whole."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def t2i(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "djepa_t2i.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def one_line_error(p: subprocess.CompletedProcess) -> str:
    """The single stderr line of a refused command (exit 2, nothing on stdout, no traceback)."""
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert p.stdout == ""
    return lines[0]


@pytest.mark.parametrize("side", ["-32", "0"])
def test_train_fixed_side_must_be_positive_or_null(tmp_path, side):
    p = t2i("train", "--config", str(ROOT / "configs/demo_phase1.yaml"), "--set", f"train.fixed_side={side}",
            "--set", f"lake={tmp_path}", cwd=tmp_path)
    assert one_line_error(p) == (f"t2i train: error: invalid config: train.fixed_side: Input should be greater "
                                 f"than or equal to 1 (got {side}; allowed: an integer >= 1, or null)")
    assert not (tmp_path / "runs").exists()  # nothing was written


def test_train_resume_from_a_missing_checkpoint_is_one_line(tmp_path):
    (tmp_path / "lake" / "pairs").mkdir(parents=True)
    p = t2i("train", "--resume", str(tmp_path / "nope"), "--set", f"lake={tmp_path / 'lake'}",
            "--set", f"train.out={tmp_path / 'out'}", cwd=tmp_path)
    assert one_line_error(p) == (f"t2i train: error: --resume {tmp_path / 'nope'}: not a complete "
                                 "checkpoint (no COMPLETE marker)")


def test_train_steps_and_lr_ranges_in_one_line(tmp_path):
    p = t2i("train", "--set", "train.steps=0", "--set", "train.lr=0", cwd=tmp_path)
    assert one_line_error(p) == (
        "t2i train: error: invalid config: train.steps: Input should be greater than or equal to 1 "
        "(got 0; allowed: an integer >= 1); train.lr: Input should be greater than 0 "
        "(got 0; allowed: a number in (0, 1.0])")


def test_curate_workers_zero_is_refused(tmp_path):
    p = t2i("curate", str(tmp_path), "--workers", "0", cwd=tmp_path)
    assert one_line_error(p) == "t2i curate: error: argument --workers: must be an integer >= 1, got 0"
    p = t2i("curate", str(tmp_path), "--set", "curate.workers=0", "--no-prefect", cwd=tmp_path)
    assert one_line_error(p) == ("t2i curate: error: invalid config: curate.workers: Input should be greater "
                                 "than or equal to 1 (got 0; allowed: an integer in [1, 1024])")


def test_curate_checks_input_and_lake_before_any_shard(tmp_path):
    p = t2i("curate", str(tmp_path / "nope"), "--lake", str(tmp_path / "lake"), "--no-prefect", cwd=tmp_path)
    assert one_line_error(p) == (f"t2i curate: error: input='{tmp_path / 'nope'}': no such directory "
                                 "(must be an existing directory)")
    p = t2i("curate", str(tmp_path), "--lake", str(tmp_path / "lake"), "--no-prefect", cwd=tmp_path)
    assert one_line_error(p) == (f"t2i curate: error: input='{tmp_path}': no .tar shards there (expected "
                                 "img2dataset output: NNNNN.tar beside NNNNN.parquet)")
    assert not (tmp_path / "lake").exists()
    (tmp_path / "file").write_text("x")
    (tmp_path / "00000.tar").write_bytes(b"")
    p = t2i("curate", str(tmp_path), "--lake", str(tmp_path / "file" / "lake"), cwd=tmp_path)
    assert one_line_error(p) == f"t2i curate: error: lake '{tmp_path / 'file' / 'lake'}' is not writable: Not a directory"


def test_build_shards_on_a_missing_lake(tmp_path):
    lake = tmp_path / "nonexistent"  # (/nonexistent itself may exist on a shared machine)
    p = t2i("build-shards", "--lake", str(lake), "--out", str(tmp_path / "shards"), cwd=tmp_path)
    assert one_line_error(p) == (f"t2i build-shards: error: lake='{lake}': no such directory "
                                 "(must be an existing directory)")
    assert not (tmp_path / "shards").exists()


def test_make_sample_per_shard_zero(tmp_path):
    p = t2i("make-sample", str(tmp_path / "s"), "--per-shard", "0", cwd=tmp_path)
    assert one_line_error(p) == "t2i make-sample: error: argument --per-shard: must be an integer >= 1, got 0"
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("cmd", [["sql", "SELECT 1"], ["evaluate", "--no-prefect"]])
def test_sql_and_evaluate_on_a_missing_lake_exit_2(tmp_path, cmd):
    p = t2i(*cmd, "--lake", str(tmp_path / "nope"), cwd=tmp_path)
    assert one_line_error(p) == (f"t2i {cmd[0]}: error: lake='{tmp_path / 'nope'}': no such directory "
                                 "(must be an existing directory)")


@pytest.mark.parametrize("cmd", [["evaluate"], ["feedback"], ["feedback", "--no-prefect"], ["notions"],
                                 ["recaption", "--no-prefect"], ["report"], ["build-shards"],
                                 ["encode", "--no-prefect"], ["lake", "check"], ["lake", "repair"]])
def test_every_lake_command_checks_the_lake(tmp_path, capsys, cmd):
    """The same path in-process (``cli.main``), for the commands not run as a subprocess above."""
    from djepa_t2i.cli import main
    assert main([*cmd, "--lake", str(tmp_path / "nope")]) == 2
    said = capsys.readouterr()
    assert said.err == (f"t2i {cmd[0]}: error: lake='{tmp_path / 'nope'}': no such directory "
                        "(must be an existing directory)\n") and said.out == ""
    (tmp_path / "home").mkdir()  # an existing folder that holds no lake is refused and left alone
    assert main([*cmd, "--lake", str(tmp_path / "home")]) == 2
    assert capsys.readouterr().err.startswith(f"t2i {cmd[0]}: error: lake='{tmp_path / 'home'}': not a lake")
    assert list((tmp_path / "home").iterdir()) == []


def test_bad_override_and_config_file(tmp_path, capsys):
    from djepa_t2i.cli import main
    assert main(["feedback", "--set", "feedback.step_size"]) == 2
    assert capsys.readouterr().err == \
        "t2i feedback: error: override 'feedback.step_size' must look like key.sub=value\n"
    assert main(["feedback", "--config", str(tmp_path / "no.yaml")]) == 2
    assert capsys.readouterr().err == (f"t2i feedback: error: --config '{tmp_path / 'no.yaml'}': no such file "
                                       "(a YAML file, e.g. configs/demo_phase1.yaml)\n")
    assert main(["generate", "--ckpt", str(tmp_path), "--prompt", "a", "--out", str(tmp_path / "x.png"),
                 "--cfg", "-1"]) == 2
    assert capsys.readouterr().err == ("t2i generate: error: invalid config: evaluate.cfg: Input should be greater "
                                       "than or equal to 0 (got -1.0; allowed: a number >= 0)\n")


def test_debug_shows_the_traceback(tmp_path):
    p = t2i("--debug", "feedback", "--set", "feedback.step_size=2", cwd=tmp_path)
    assert p.returncode == 1 and "Traceback" in p.stderr
    assert p.stderr.strip().splitlines()[-1] == (
        "djepa_t2i.config.base.ConfigError: invalid config: feedback.step_size: Input should be less than or "
        "equal to 1 (got 2; allowed: a number in (0, 1])")
    from djepa_t2i.config import ConfigError
    from djepa_t2i.cli import main
    with pytest.raises(ConfigError):  # --debug after the command too
        main(["feedback", "--set", "feedback.step_size=2", "--debug"])


def test_flows_validate_before_work(tmp_path):
    """Deployments call the flow functions: each checks its paths first (here the plain ``.fn``)."""
    from djepa_t2i.config import ConfigError
    from warehouse.lake import LakeNotWritable
    from flows.build_shards import build_shards
    from flows.curate_laion import curate_laion
    from flows.evaluate_checkpoints import evaluate_checkpoints
    from flows.feedback import feedback
    from flows.notion_stats import notion_stats_flow
    from flows.recaption import recaption_flow
    from flows.train import run_training
    missing = str(tmp_path / "nope")
    for call in (lambda: build_shards.fn(missing), lambda: evaluate_checkpoints.fn(missing),
                 lambda: feedback.fn(missing), lambda: notion_stats_flow.fn(missing),
                 lambda: recaption_flow.fn(missing), lambda: run_training(None, [f"lake={missing}"])):
        with pytest.raises(ConfigError, match=r"^lake='.*/nope': no such directory"):
            call()
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match=r"^input='.*': no .tar shards there"):
        curate_laion.fn(str(tmp_path), str(tmp_path / "lake"))
    assert not (tmp_path / "lake").exists()  # refused before the lake is made
    (tmp_path / "00000.tar").write_bytes(b"")
    with pytest.raises(LakeNotWritable, match=r"^lake '.*/f/lake' is not writable: Not a directory$"):
        curate_laion.fn(str(tmp_path), str(tmp_path / "f" / "lake"))
    assert not (tmp_path / "f").is_dir()


def test_curate_refuses_a_bad_dask_address_before_work(tmp_path):
    (tmp_path / "in").mkdir()
    p = t2i("curate", str(tmp_path / "in"), "--lake", str(tmp_path / "lake"), "--dask-address", "http://h:1",
            cwd=tmp_path)
    assert one_line_error(p) == ("t2i curate: error: invalid config: curate.dask_address: Value error, must be a "
                                 "Dask scheduler address like tcp://127.0.0.1:8786 (got 'http://h:1'; allowed: "
                                 "a string, or null)")
    assert not (tmp_path / "lake").exists()


@pytest.fixture
def read_only_lake(tmp_path):
    """A lake folder nobody may write into, and the OS's reason. Root writes through mode bits, so
    as root the lake is a folder under sysfs, where mkdir is refused to everyone."""
    if os.geteuid() == 0:
        if not Path("/sys/kernel").is_dir():
            pytest.skip("running as root without sysfs: no folder root cannot write")
        yield "/sys/t2i-test-lake", "Operation not permitted"
        return
    lake = tmp_path / "ro-lake"
    lake.mkdir()
    lake.chmod(0o555)
    try:
        yield str(lake), "Permission denied"
    finally:
        lake.chmod(0o755)


@pytest.mark.parametrize("runner", [[], ["--no-prefect"]])
def test_curate_on_a_read_only_lake_is_one_line(tmp_path, read_only_lake, runner):
    """The lake's probe write fails (LakeNotWritable): one line, exit 2, before Prefect or a shard."""
    lake, why = read_only_lake
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "00000.tar").write_bytes(b"")  # a shard, so the lake is what is refused
    p = t2i("curate", str(tmp_path / "in"), "--lake", lake, *runner, cwd=tmp_path)
    assert one_line_error(p) == f"t2i curate: error: lake {lake!r} is not writable: {why}"
    assert "Traceback" not in p.stderr
    p = t2i("--debug", "curate", str(tmp_path / "in"), "--lake", lake, *runner, cwd=tmp_path)
    assert p.returncode == 1 and p.stderr.strip().splitlines()[-1] == (
        f"warehouse.lake.LakeNotWritable: lake {lake!r} is not writable: {why}")


def test_help_shows_defaults_once(capsys):
    """``t2i COMMAND --help`` prints each option's default, and never twice when the help text
    already names it."""
    from djepa_t2i import cli
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "on this machine (default: 1)" in out
    with pytest.raises(SystemExit):
        cli.main(["generate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--seed SEED sampling seed (default: the checkpoint's evaluate.seed; config default 0) --" in out
    assert "(default: None)" not in out and out.count("(default: auto: cuda when available) (default") == 0


def test_a_real_command_line_reports_native_crashes(tmp_path):
    """An abort in a native thread pool (seen once at exit of a curate rerun) prints Python's stacks."""
    code = ("import sys, faulthandler\nsys.argv = ['t2i', 'sql', '--help']\nfrom djepa_t2i.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\nprint('enabled', faulthandler.is_enabled())")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.stdout.strip().endswith("enabled True"), p.stderr[-500:]


def test_serve_lost_after_below_one_and_a_half_heartbeats_is_refused(tmp_path):
    """A lost-run window shorter than 1.5 heartbeats would crash live runs whose heartbeat is late."""
    p = t2i("serve", "start", "--lost-after", "30", cwd=tmp_path)
    assert one_line_error(p) == "t2i serve start: error: argument --lost-after: must be an integer >= 45, got 30"
