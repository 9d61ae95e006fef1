"""The encode cache (issue #15 item 1): the frozen encoders' outputs written beside the training
shards by ``t2i encode`` and read by the trainer's data path when, and only when, they match."""
import os
import shutil

import pytest
import torch
from _train_data import make_lake
from test_model_io import tiny_vae

from djepa_t2i.config import load_config
from flows.encode import encode_lake
from tasks import shard_writer
from training import encode_cache as ec
from training import trainer as tr


def vae_cfg(root, lake, **kw):
    sets = {"lake": lake, "model.name": "djepa_tiny", "model.tokenizer": "vae",
            "model.vae": f"{{backend: diffusers, weights: {root / 'vae'}, device: cpu}}",
            "model.vae_patch_size": 2, "model.overrides": "{width: 32, head_width: 32}",
            "model.text_max_length": 24, "train.fixed_side": 32, "train.out": str(root / "run"),
            "train.steps": 2, "train.token_budget": 64, "train.max_image_tokens": 16,
            "train.lookahead": 4, "train.save_every": 100, "train.device": "cpu",
            "train.num_workers": 2}
    sets.update(kw)
    return load_config(None, [f"{k}={v}" for k, v in sets.items()])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("enc")
    lake, _ = make_lake(root, n=16, shards=2, sizes=((32, 32), (48, 32), (40, 64), (16, 24)))
    shard_writer.build(lake, str(root / "shards"), samples_per_shard=6, progress=False)
    tiny_vae(root / "vae")
    return root, lake


def losses(cfg) -> tuple[list[float], dict]:
    t = tr.Trainer(cfg)
    try:
        hist = t.fit()
        return [h["loss"] for h in hist], dict(t.loader.encoder.hits)
    finally:
        t.close()


def cache_files(root) -> list[str]:
    return sorted(f for f in os.listdir(root / "shards") if f.endswith(".safetensors"))


def test_cached_batch_gives_the_on_the_fly_loss_and_a_foreign_key_is_ignored(data):
    root, lake = data
    for f in cache_files(root):
        os.remove(root / "shards" / f)
    fly, hits = losses(vae_cfg(root, lake))
    assert hits.get("tokens", 0) == 0 and hits["tokens_miss"] > 0 and hits["text_miss"] > 0

    out = encode_lake(vae_cfg(root, lake))
    # 2 shards x (text + vae); 12 passed samples, those with a short side < 32 get no crop latents
    assert (out["shards"], out["written"], out["up_to_date"]) == (2, 4, 0)
    assert out["text"] == 12 and 0 < out["tokens"] < 12
    assert len(cache_files(root)) == 4
    assert encode_lake(vae_cfg(root, lake))["up_to_date"] == 4  # a re-run writes nothing

    shutil.rmtree(root / "run")
    cached, hits = losses(vae_cfg(root, lake))
    assert hits.get("tokens_miss", 0) == 0 and hits.get("text_miss", 0) == 0 and hits["tokens"] > 0
    # the cache stores bf16 (8 mantissa bits): inputs differ by <= 2^-9 relative; the losses of
    # the same two batches by < 1e-3 relative (measured 2.5e-5 on this VAE and MiniLM)
    assert len(cached) == len(fly) == 2
    torch.testing.assert_close(torch.tensor(cached), torch.tensor(fly), rtol=1e-3, atol=0)

    # another encoder setting (text max length) has another key: its files are never read, even
    # renamed to this key's names (the key in the file's metadata must match too)
    shutil.rmtree(root / "run")
    other, hits = losses(vae_cfg(root, lake, **{"model.text_max_length": 16}))
    assert hits.get("text", 0) == 0 and hits["text_miss"] > 0 and hits["tokens"] > 0


def test_renamed_foreign_cache_file_is_ignored(data, tmp_path):
    root, lake = data
    tar = str(root / "shards" / "shard-000000.tar")
    real = ec.cache_path(tar, "text", "a" * 16)
    ec._write(real, {"k/0": torch.ones(2, 3)}, "b" * 16, {"kind": "text"})
    assert ec.EncodeCache("text", "a" * 16).get(tar, "k/0") is None
    assert ec.EncodeCache("text", "b" * 16).get(tar, "k/0") is None  # no file under b's name
    os.replace(real, ec.cache_path(tar, "text", "b" * 16))
    got = ec.EncodeCache("text", "b" * 16).get(tar, "k/0")
    assert got.dtype == torch.float32 and torch.equal(got, torch.ones(2, 3))
    os.remove(ec.cache_path(tar, "text", "b" * 16))


def test_fingerprint_follows_the_weights(tmp_path):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "model.safetensors").write_bytes(b"x" * 100)
    a = ec.fingerprint(str(tmp_path / "w"))
    (tmp_path / "w" / "model.safetensors").write_bytes(b"y" * 100)
    assert ec.fingerprint(str(tmp_path / "w")) != a
