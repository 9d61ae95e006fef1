"""High resolution (issue #28): loading logs that say only what is true, attention memory at long
sequences, tiled VAE decode, and a 4K training sample end to end."""
from __future__ import annotations

import logging

import pytest
import torch

from tasks.filters.clip_loader import _quiet_random_init, load_clip_model


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
