"""VoPE / RoPE positions and the rotary relative-position property."""
import pytest
import torch

from model.vope import apply_rotary, axial_angles, image_coords, rope2d_coords, text_angles, vope_coords

@pytest.mark.parametrize("h,w", [(4, 6), (6, 4), (5, 5), (3, 7)])
def test_same_content_two_resolutions_same_positions(h, w):
    lo = vope_coords(h, w, fov=16).reshape(h, w, 2)
    hi = vope_coords(2 * h, 2 * w, fov=16).reshape(2 * h, 2 * w, 2)
    torch.testing.assert_close(hi[::2, ::2], lo, rtol=0, atol=1e-6)


def test_wide_and_tall_follow_the_two_branches():
    # W = 6 > H = 2: rho = 6/12 = 0.5, b = 2 -> (w / rho, (h + b) / rho)
    c = vope_coords(2, 6, fov=12).reshape(2, 6, 2)
    assert c[1, 5].tolist() == [10.0, 6.0]
    assert c[0, 0].tolist() == [0.0, 4.0]
    # W = 2 <= H = 6: (w + b) / rho, h / rho
    c = vope_coords(6, 2, fov=12).reshape(6, 2, 2)
    assert c[5, 1].tolist() == [6.0, 10.0]
    assert c[0, 0].tolist() == [4.0, 0.0]


@pytest.mark.parametrize("h,w", [(4, 10), (10, 4), (3, 8), (8, 3)])
def test_b_centres_the_shorter_side_inside_the_field_of_view(h, w):
    fov = 16.0
    c = vope_coords(h, w, fov)
    x, y = c[:, 0], c[:, 1]
    # both axes share one centre: the shorter side sits in the middle of the longer one
    assert abs(float(x.min() + x.max()) / 2 - float(y.min() + y.max()) / 2) < 1e-5
    assert float(c.min()) >= 0 and float(c.max()) < fov
    # the longer side spans the field of view: (max(W,H) - 1) / rho
    assert abs(float(max(x.max(), y.max())) - (max(h, w) - 1) * fov / max(h, w)) < 1e-5


def test_b_override_moves_content_along_the_shorter_side():
    base = vope_coords(4, 8, fov=8)            # W > H: b acts on y
    top = vope_coords(4, 8, fov=8, b=0.0)
    torch.testing.assert_close(top[:, 0], base[:, 0])
    torch.testing.assert_close(base[:, 1] - top[:, 1], torch.full((32,), 2.0))  # default b = 2, rho = 1


def test_plain_rope_is_integer_grid_and_rejects_b():
    torch.testing.assert_close(rope2d_coords(2, 3)[4], torch.tensor([1.0, 1.0]))
    assert image_coords(3, 3, vope=False, fov=8).max() == 2
    with pytest.raises(ValueError, match="VoPE"):
        image_coords(3, 3, vope=False, fov=8, b=1.0)


def test_rotary_scores_depend_only_on_offset():
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 16), torch.randn(1, 1, 16)

    def score(pq, pk):
        aq = axial_angles(torch.tensor([pq]), 16, 100.0)
        ak = axial_angles(torch.tensor([pk]), 16, 100.0)
        return float((apply_rotary(q, aq.cos(), aq.sin()) * apply_rotary(k, ak.cos(), ak.sin())).sum())

    assert abs(score([1.5, 2.0], [0.5, 1.0]) - score([7.5, 4.0], [6.5, 3.0])) < 1e-4
    assert abs(score([1.5, 2.0], [0.5, 1.0]) - score([1.5, 2.0], [0.5, 3.0])) > 1e-3


def test_text_positions_restart_per_sample():
    a = text_angles([3, 2], 8, 10000.0)
    torch.testing.assert_close(a[3], a[0])
    torch.testing.assert_close(a[4], a[1])


def test_ntk_base_halves_the_lowest_frequency_and_keeps_the_highest():
    from model.vope import _inv_freq, ntk_base
    n, base = 8, 100.0
    f, g = _inv_freq(n, base), _inv_freq(n, ntk_base(base, 2.0, n))
    assert abs(float(g[0]) - 1.0) < 1e-12 and abs(float(f[0]) - 1.0) < 1e-12
    assert abs(float(g[-1] / f[-1]) - 0.5) < 1e-12       # the paper's omega' = omega / 2 at 2x
    assert bool((g[1:] < f[1:]).all())                    # every other frequency slows down
    assert ntk_base(base, 1.0, n) == base
    with pytest.raises(ValueError, match="scale"):
        ntk_base(base, 0.0, n)


def test_ntk_scale_acts_on_image_axes_only():
    from model.djepa import djepa_tiny
    c = torch.tensor([[3.0, 5.0]])
    plain, ntk = axial_angles(c, 16, 100.0), axial_angles(c, 16, 100.0, ntk_scale=2.0)
    assert torch.equal(plain[:, [0, 4]], ntk[:, [0, 4]]) and not torch.equal(plain, ntk)
    m = djepa_tiny(token_dim=48, text_dim=8, vope=False, heads=2, rope_base=100.0)
    a = m._joint([3], [1], c, "cpu")
    m.ntk_scale = 2.0
    b = m._joint([3], [1], c, "cpu")
    assert m.args["ntk_scale"] == 1.0
    assert torch.equal(a.rope_t[0], b.rope_t[0]) and not torch.equal(a.rope_i[0], b.rope_i[0])
