import pytest

from djepa_t2i.config import ConfigError, load_config


def test_defaults_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("curate:\n  aesthetic:\n    threshold: 5.0\n")
    c = load_config(f, ["train.steps=7", "curate.ocr.max_text_area=0.1"])
    assert c.curate.aesthetic.threshold == 5.0 and c.train.steps == 7
    assert c.curate.ocr.max_text_area == 0.1


def test_bad_value_names_key_and_range():
    with pytest.raises(ConfigError, match=r"curate\.aesthetic\.threshold: Input should be less than or equal to 10"):
        load_config(None, ["curate.aesthetic.threshold=11"])


def test_unknown_key_and_missing_weights():
    with pytest.raises(ConfigError, match=r"curate\.bogus"):
        load_config(None, ["curate.bogus=1"])
    with pytest.raises(ConfigError, match="needs a local 'weights' path"):
        load_config(None, ["curate.nsfw.backend=clip-mlp"])


def test_trunc_norm_bounds():
    with pytest.raises(ConfigError, match="need a < b"):
        load_config(None, ["schedule.start.a=2.0", "schedule.start.b=1.0"])


@pytest.mark.parametrize("addr", ["tcp://127.0.0.1:8786", "tls://sched.example:8786", "[::1]:8786", "node-1:8786"])
def test_dask_address_accepts_scheduler_addresses(addr):
    assert load_config(None, [f"curate.dask_address='{addr}'"]).curate.dask_address == addr  # quoted: YAML


@pytest.mark.parametrize("addr", ["127.0.0.1", "http://127.0.0.1:8786", "tcp://127.0.0.1:port", "scheduler.json"])
def test_dask_address_refuses_non_addresses(addr):
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"curate.dask_address={addr}"])
    assert str(e.value) == ("invalid config: curate.dask_address: Value error, must be a Dask scheduler address "
                            f"like tcp://127.0.0.1:8786 (got {addr!r}; allowed: a string, or null)")
