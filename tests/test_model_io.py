"""Model I/O: checkpoints, the VAE tokenizer, text encoders (offline default and a T5 by path), CLI."""
import json
from pathlib import Path

import pytest
import torch

from djepa_t2i.config import Backend, Model
from model.checkpoint import load_model, save_model
from model.djepa import djepa_tiny
from model.ema import EMA
from model.text_encoder import TextEncoder
from model.tokenizers import PixelTokenizer, VAETokenizer, pack, patchify


@pytest.fixture(scope="module")
def offline_encoder():
    return TextEncoder.from_config(Model())


def test_pixel_tokenizer_round_trip_and_errors():
    tok = PixelTokenizer(4)
    img = torch.rand(3, 12, 20) * 2 - 1
    t = tok.encode(img)
    assert t.shape == (15, 48)
    assert torch.equal(t[1], img[:, 0:4, 4:8].reshape(-1))  # row-major tokens, channel-major patches
    assert torch.equal(tok.decode(t, (3, 5)), img)
    with pytest.raises(ValueError, match="not a multiple of 4"):
        tok.encode(torch.zeros(3, 10, 12))


def test_offline_text_encoder_states_and_cache(offline_encoder):
    te = offline_encoder
    assert te.backend == "offline" and te.dim == 384
    caps = ["a red circle left of a blue square", "two cats"]
    out = te.encode(caps)
    n = [len(te.tokenizer(c)["input_ids"]) for c in caps]
    assert out.states.shape == (2, max(n), 384) and out.lengths == n
    assert out.mask.sum(1).tolist() == n and out.seq_lengths() == n
    assert out.states[1, n[1]:].abs().sum() == 0
    again = te.encode(["two cats"])  # served from the cache, same values as a fresh batch
    torch.testing.assert_close(again.states[0, :n[1]], out.states[1, :n[1]])
    fresh = te._encode_new(["two cats"], te.max_length)[0]  # bit-identical to the batch's row: the batch
    assert torch.equal(fresh, out.states[1, :n[1]])  # never pads a caption (a resumed run, cache
    # empty, must see exactly the states the uninterrupted run cached)


def test_t5_encoder_loads_by_path(tmp_path, offline_encoder):
    from transformers import T5Config, T5EncoderModel
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=offline_encoder.tokenizer.vocab_size, d_model=32, d_kv=8, d_ff=64,
                   num_layers=2, num_heads=4)
    ref = T5EncoderModel(cfg).eval()
    ref.save_pretrained(tmp_path)
    offline_encoder.tokenizer.save_pretrained(tmp_path)
    te = TextEncoder.from_config(Model(text_encoder={"backend": "t5", "weights": str(tmp_path)}))
    assert te.dim == 32 and te.describe()["model_type"] == "t5"
    out = te.encode(["a green triangle", "three blue circles above a square"])
    ids = te.tokenizer(["a green triangle"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        want = ref(input_ids=ids).last_hidden_state[0]
    torch.testing.assert_close(out.states[0, :ids.shape[1]], want, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="weights"):
        Backend(backend="t5")


def tiny_vae(path: Path):
    from diffusers import AutoencoderKL
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16),
                        layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=32,
                        scaling_factor=0.5, shift_factor=0.1)
    vae.save_pretrained(path)
    return vae


def test_vae_tokenizer_by_path(tmp_path):
    ref = tiny_vae(tmp_path / "vae").eval()
    tok = VAETokenizer(str(tmp_path / "vae"), patch_size=2, tile_above=4096)
    assert tok.token_dim == 16 and tok.stride == 4 and tok.grid(32, 48) == (8, 12)
    img = torch.rand(3, 32, 48) * 2 - 1
    t = tok.encode(img)
    with torch.no_grad():
        lat = ref.encode(img[None]).latent_dist.mode()[0]
    torch.testing.assert_close(t, patchify((lat - 0.1) * 0.5, 2), rtol=1e-4, atol=1e-5)
    rec = tok.decode(t, (8, 12))
    with torch.no_grad():
        want = ref.decode(lat[None]).sample[0]
    torch.testing.assert_close(rec, want, rtol=1e-4, atol=1e-4)
    tiled = VAETokenizer(str(tmp_path / "vae"), patch_size=2, tile_above=16)
    big = torch.rand(3, 64, 64) * 2 - 1
    tt = tiled.encode(big)
    assert tiled.vae.use_tiling and tt.shape == (256, 16)
    assert tiled.decode(tt, (16, 16)).shape == (3, 64, 64)
    packed = pack([img, big], tok)
    assert packed.grids == [(8, 12), (16, 16)] and packed.cu_seqlens.tolist() == [0, 96, 352]


def test_checkpoint_round_trip_is_atomic_and_pickle_free(tmp_path, offline_encoder):
    m = djepa_tiny(token_dim=48, text_dim=384)
    m.tokenizer = PixelTokenizer(4)
    ema = EMA(m)
    with torch.no_grad():
        m.head.net.out.weight.add_(1.0)
    ck = tmp_path / "ck"
    save_model(str(ck), m, ema.state_dict(), {"step": 7, "text_encoder": offline_encoder.describe()})
    save_model(str(ck), m, ema.state_dict(), {"step": 8, "text_encoder": offline_encoder.describe()})
    assert sorted(p.name for p in ck.iterdir()) == ["ema.safetensors", "meta.json", "model.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # no temp dirs left behind
    assert json.loads((ck / "meta.json").read_text())["step"] == 8
    raw, tok, te, meta = load_model(str(ck), ema=False)
    for (k, a), b in zip(m.state_dict().items(), raw.state_dict().values()):
        assert torch.equal(a, b), k
    assert tok.patch_size == 4 and te.backend == "offline" and meta["model"]["name"] == "djepa_tiny"
    smooth, *_ = load_model(str(ck), ema=True)
    torch.testing.assert_close(smooth.head.net.out.weight, m.head.net.out.weight - 1.0)
    with pytest.raises(FileNotFoundError, match="meta.json"):
        load_model(str(tmp_path))


def test_generate_cli_writes_png(tmp_path, offline_encoder):
    from PIL import Image

    from djepa_t2i.cli import main
    torch.manual_seed(0)
    m = djepa_tiny(token_dim=48, text_dim=384)
    m.tokenizer = PixelTokenizer(4)
    save_model(str(tmp_path / "ck"), m, None, {"text_encoder": offline_encoder.describe()})
    out = tmp_path / "x.png"
    rc = main(["generate", "--ckpt", str(tmp_path / "ck"), "--prompt", "a red circle",
               "--size", "24x16", "--steps", "4", "--flow-steps", "2", "--cfg", "4", "--seed", "0",
               "--offset-b", "0.5", "--out", str(out)])
    assert rc == 0 and Image.open(out).size == (24, 16)
    bad = main(["generate", "--ckpt", str(tmp_path / "ck"), "--prompt", "x", "--size", "30x16",
                "--steps", "2", "--out", str(tmp_path / "y.png")])
    assert bad == 2 and not (tmp_path / "y.png").exists()
