"""High resolution (issue #28): loading logs that say only what is true, attention memory at long
sequences, tiled VAE decode, and a 4K training sample end to end."""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tasks.filters.clip_loader import _quiet_random_init, load_clip_model

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_clip_file(tmp_path_factory):
    import open_clip
    from safetensors.torch import save_file

    from tests.tiny_clip import register
    d = tmp_path_factory.mktemp("clip")
    arch = register(d)
    model = open_clip.create_model(arch, pretrained=None)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(d / "clip.safetensors"))
    return arch, d / "clip.safetensors", model.state_dict()


def test_clip_load_says_nothing_about_random_init_and_fills_every_tensor(tiny_clip_file, caplog):
    import open_clip
    arch, path, expected = tiny_clip_file
    with caplog.at_level(logging.INFO):
        open_clip.create_model_and_transforms(arch, pretrained=None)  # the record exists upstream...
    assert any("Model initialized randomly" in r.getMessage() for r in caplog.records)
    caplog.clear()
    handlers = list(logging.getLogger().handlers)
    with caplog.at_level(logging.INFO):
        loaded = load_clip_model(arch, str(path), key="curate.clip_weights")
    assert not any("initialized randomly" in r.getMessage() for r in caplog.records)  # ...not here
    assert logging.getLogger().handlers == handlers and not logging.getLogger().filters
    got = loaded.model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in expected.items() if k in got)


def test_only_the_random_init_record_is_dropped(caplog):
    with caplog.at_level(logging.INFO), _quiet_random_init():
        logging.getLogger().warning("No pretrained weights loaded for model 'x'. Model initialized randomly.")
        logging.getLogger().warning("something else")
    assert [r.getMessage() for r in caplog.records] == ["something else"]


def _rss_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


def _load_peaks_in_a_fresh_process(tar: str, offset: int, size: int) -> dict[int, float]:
    """Peak RSS growth of ``load_image`` at sides 1024 and 4096 of a 4096² JPEG, in a new
    interpreter. Measured in the suite's long-lived worker process, the growth also counts what the
    allocator does with memory that earlier tests freed (which files a worker ran before changes
    with load): it once read 391 MiB at 4096 on a loaded machine, against 228-244 MiB in 6 of 6
    fresh processes; that says nothing of ``load_image``."""
    code = f"""
import json, sys
sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "tests")!r}]
from test_hires import _peak_mib
from training.feedback_sampler import Decision
from training.images import load_image
d = lambda side: Decision("k", {tar!r}, {offset}, {size}, "a shape", 4096, 4096, side, side, side / 1000)
print(json.dumps({{side: _peak_mib(lambda: load_image(d(side)).shape)[0] for side in (1024, 4096)}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    return {int(k): v for k, v in json.loads(out.stdout.splitlines()[-1]).items()}


def _peak_mib(fn) -> tuple[float, object]:
    """(peak RSS growth in MiB while ``fn`` runs, its result): VmHWM reset to the current RSS first."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _rss_kib("VmRSS")
    out = fn()
    return (_rss_kib("VmHWM") - base) / 1024, out


@pytest.mark.parametrize("backend", ["auto", "sdpa", "flex"])
def test_cpu_attention_never_holds_an_n_by_n_matrix(backend):
    from model.attention import Segments, packed_attention
    torch.manual_seed(0)
    lens, H, D = [4096, 4026], 4, 16  # a cond and an uncond row at 4096 image tokens, as generate packs them
    q, k, v = (torch.randn(sum(lens), H, D) for _ in range(3))
    seg = Segments.from_lengths(lens, "cpu")
    ref = packed_attention(q, k, v, Segments.from_lengths(lens, "cpu"), "loop")
    scores_mib = H * sum(lens) ** 2 * 4 / 2**20  # one fp32 block-diagonal score matrix: ~1 GiB
    peak, out = _peak_mib(lambda: packed_attention(q, k, v, seg, backend))
    assert peak < 64 < scores_mib / 15, f"{backend}: {peak:.0f} MiB"
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def sd3_vae(tmp_path_factory):
    from tasks.rehearsal_weights import write_vae
    return str(write_vae(tmp_path_factory.mktemp("vae") / "sd3-vae-tiny"))


def test_vae_decodes_in_tiles_of_tile_size_above_tile_above(sd3_vae):
    from model.tokenizers import VAETokenizer, tokenizer_from_meta
    tok = VAETokenizer(sd3_vae, patch_size=1, tile_above=128, tile_size=64)
    seen = []
    hook = tok.vae.decoder.register_forward_pre_hook(lambda m, a: seen.append(tuple(a[0].shape[-2:])))
    tokens = torch.randn(32 * 32, tok.token_dim, generator=torch.Generator().manual_seed(0))
    img = tok.decode(tokens, (32, 32))  # 256 px > tile_above: tiles of 64 px = 8 latent px, stride 6
    assert img.shape == (3, 256, 256) and len(seen) == 36 and max(max(s) for s in seen) == 8
    seen.clear()
    assert tok.decode(tokens[:16 * 16], (16, 16)).shape == (3, 128, 128) and seen == [(16, 16)]  # untiled
    hook.remove()
    assert tokenizer_from_meta(tok.describe()).tile_size == 64
    with pytest.raises(ValueError, match=r"^VAE tile_size=60: expected a multiple of 8 px, at least 32$"):
        VAETokenizer(sd3_vae, tile_size=60)


def test_auto_steps_follow_the_paper_64_at_256_tokens_about_100_at_2k_to_4k():
    from djepa_t2i.config import auto_steps
    assert [auto_steps(n) for n in (16, 64, 256, 1024, 4096, 16384, 65536)] == [4, 16, 64, 76, 88, 100, 100]
    assert [auto_steps(n) for n in (1, 2, 3, 8, 255)] == [1, 1, 1, 2, 64]


def test_batch_stats_count_the_tokens_the_random_drop_removed(tmp_path):
    from _train_data import make_lake
    from test_trainer import tiny_cfg

    from tasks import shard_writer
    from training import trainer as tr
    from warehouse import db
    from warehouse import weights as wt
    lake, _ = make_lake(tmp_path, n=12, shards=1, sizes=((64, 64), (64, 48)))
    shard_writer.build(lake, str(tmp_path / "shards"), samples_per_shard=12, progress=False)
    wt.publish(lake, [wt.resolution_row("start", 0.064, 0.004, 0.056, 0.064, "near native")], why="test")
    t = tr.Trainer(tiny_cfg(lake, str(tmp_path / "run"), **{"train.steps": 4, "train.save_every": 4}))
    try:
        hist = t.fit()
    finally:
        t.close()
    over_cap = sum(max(0, (h // 8) * (w // 8) - 32) for rec in hist for h, w in rec["sizes"])  # cap: 32 tokens
    _, rows = db.query(lake, "SELECT value, sum(count) FROM batch_stats WHERE kind = 'tokens' GROUP BY value")
    assert dict(rows)["dropped"] == over_cap > 0
    assert dict(rows)["image"] == sum(rec["tokens"] for rec in hist)


@pytest.mark.slow
def test_a_4k_phase2_sample_decodes_tokenises_in_tiles_drops_and_packs_in_bounded_memory(tmp_path, sd3_vae):
    """A 4096² shapes-world JPEG read by its byte range as the loader reads it (D-JEPA·T2I Supp.
    "Scaling to 4K": tiles above 2K, at most 4096 tokens per image by random drop)."""
    import io
    import random

    from model.tokenizers import VAETokenizer, pack_tokens
    from tasks.shapes_world import render, sample_scene
    from tasks.shard_format import write_tar
    from training.images import load_image
    from training.feedback_sampler import Decision
    buf = io.BytesIO()
    render(sample_scene(random.Random(0), 4096, 4096, "single_object"), antialias=False).save(buf, "JPEG", quality=90)
    off, size, _ = write_tar(str(tmp_path / "s.tar"), [{"__key__": "k", "jpg": buf.getvalue()}])["k"]

    def decision(side):
        return Decision("k", str(tmp_path / "s.tar"), off, size, "a shape", 4096, 4096, side, side, side / 1000)

    full_decode_mib = 4096 * 4096 * 3 / 2**20  # 48 MiB: the source decoded at full size, uint8
    peaks = _load_peaks_in_a_fresh_process(str(tmp_path / "s.tar"), off, size)
    assert peaks[1024] < full_decode_mib  # JPEG draft: decoded at 1/4 scale
    x = load_image(decision(4096))
    out_mib = x.numel() * 4 / 2**20  # 192 MiB: the float image the VAE needs
    assert x.shape == (3, 4096, 4096) and -1 <= float(x.min()) < float(x.max()) <= 1
    assert load_image(decision(1024)).shape == (3, 1024, 1024)
    assert peaks[4096] < 2 * out_mib, f"{peaks[4096]:.0f} MiB"  # one float image, no second full-size float copy
    tok = VAETokenizer(sd3_vae, patch_size=2, tile_above=2048, tile_size=512)
    seen = []
    hook = tok.vae.encoder.register_forward_pre_hook(lambda m, a: seen.append(tuple(a[0].shape[-2:])))
    peak, tokens = _peak_mib(lambda: tok.encode(x))
    hook.remove()
    assert tokens.shape == (256 * 256, 64) and max(max(s) for s in seen) == 512 and len(seen) == 121
    assert peak < out_mib, f"{peak:.0f} MiB"  # an untiled encode holds 8 x 4096² floats per activation (512 MiB)
    packed = pack_tokens([tokens], [tok.grid(4096, 4096)], 4096, torch.Generator().manual_seed(7))
    keep = packed.keep[0]
    assert packed.tokens.shape == (4096, 64) and packed.cu_seqlens.tolist() == [0, 4096]
    assert torch.equal(keep, keep.unique()) and int(keep.max()) < 65536  # sorted, distinct, in the grid
    assert torch.equal(packed.tokens, tokens[keep])
    again = pack_tokens([tokens], [tok.grid(4096, 4096)], 4096, torch.Generator().manual_seed(7))
    assert torch.equal(again.keep[0], keep)  # the loader's checkpointed generator reproduces the survivors


def test_generate_takes_steps_by_token_count_and_prints_the_number(tmp_path, capsys):
    from djepa_t2i.cli import main
    from model.checkpoint import save_model
    from model.djepa import djepa_tiny
    from model.tokenizers import PixelTokenizer
    torch.manual_seed(0)
    m = djepa_tiny(token_dim=48, text_dim=384)
    m.tokenizer = PixelTokenizer(4)
    save_model(str(tmp_path / "ck"), m, None, {})  # no recorded evaluate section: the default, "auto"
    for size, flag, steps in (("24x16", [], 6), ("8x8", ["--steps", "auto"], 1), ("8x8", ["--steps", "3"], 3)):
        rc = main(["generate", "--ckpt", str(tmp_path / "ck"), "--prompt", "a red circle", "--size", size,
                   "--flow-steps", "1", "--no-progress", "--out", str(tmp_path / "x.png"), *flag])
        assert rc == 0 and f" steps={steps} " in capsys.readouterr().out


@pytest.mark.slow
def test_hires_bench_runs_t2i_generate_and_writes_its_row():
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, "bench/hires_generate.py", "--sizes", "512x256", "--threads", "1",
                        "--flow-steps", "1"], cwd=root, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    row = next(ln for ln in r.stdout.splitlines() if ln.startswith("| 512x256"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:3] == ["32", "8"] and float(cells[4]) > 0 and cells[5].endswith("GiB")  # 8x4 tokens, auto: 4 a step
