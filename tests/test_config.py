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
        load_config(None, ["train.resolution.a=2.0", "train.resolution.b=1.0"])
