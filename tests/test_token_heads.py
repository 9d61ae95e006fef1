"""The two token heads (flow matching, D-JEPA·T2I Eq. 1; DDPM, base D-JEPA) and the
class-conditional D-JEPA they make possible."""
import pytest
import torch

from model.diffusion_head import T_MAX, DiffusionHead
from model.djepa import djepa_tiny
from model.flow_head import FlowHead, shifted_times
from model.text_encoder import TextStates
from model.tokenizers import PixelTokenizer, pack
from training.generation import decode


def sample_images(m, *args, **kw):
    """Pixels of what ``m.generate`` sampled (the model returns tokens; the engine decodes)."""
    return decode(kw.get("tokenizer") or m.tokenizer, m.generate(*args, **kw))



@pytest.mark.parametrize("head_cls", [FlowHead, DiffusionHead])
def test_head_learns_a_conditional_two_point_distribution(head_cls):
    """z = +e selects the token +0.8, z = -e the token -0.8: after training, samples for each z
    land on its own value (the head models p(x | z), not the marginal)."""
    torch.manual_seed(0)
    head = head_cls(token_dim=4, cond_dim=8, width=64, depth=2)
    e = torch.zeros(8)
    e[0] = 1.0
    z = torch.stack([e, -e]).repeat(64, 1)
    x = torch.tensor([[0.8] * 4, [-0.8] * 4]).repeat(64, 1)
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    first = None
    for _ in range(300):
        loss = head.loss(x, z, mul=2)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    g = torch.Generator().manual_seed(1)
    out = head.sample(torch.stack([e, -e]).repeat(16, 1), steps=50, generator=g)
    assert (out[0::2] - 0.8).abs().mean() < 0.2 and (out[1::2] + 0.8).abs().mean() < 0.2


def test_diffusion_schedule_is_the_papers():
    """D-JEPA App. B / ADM: 1000 steps, betas linear from 1e-4 to 2e-2."""
    h = DiffusionHead(4, 8, 16, 1)
    ac = h.alphas_cumprod.double()
    assert ac.shape == (T_MAX,)
    betas = 1 - ac / torch.cat([torch.ones(1, dtype=ac.dtype), ac[:-1]])
    torch.testing.assert_close(betas[[0, -1]].float(), torch.tensor([1e-4, 2e-2]), rtol=1e-3, atol=0)
    assert "alphas_cumprod" not in h.state_dict()  # derived, never stored in checkpoints


def test_time_shift_spends_steps_at_high_noise():
    ts = shifted_times(8, 4.5)
    assert ts[0] == 0 and ts[-1] == 1 and torch.all(ts[1:] > ts[:-1])
    assert ts[4] < shifted_times(8, 1.0)[4]  # halfway in steps, still noisier than linear


@pytest.mark.slow
def test_class_conditional_djepa_with_the_diffusion_head():
    """The base D-JEPA: one weight set for condition and image tokens, DDPM head, class labels
    as prompts. Two classes, two flat colours: it learns which label draws which colour."""
    torch.manual_seed(0)
    tok = PixelTokenizer(4)
    m = djepa_tiny(token_dim=tok.token_dim, text_dim=8, head="diffusion", separate_text=False,
                   text_drop=0.1)
    m.tokenizer = tok
    assert m.context.stack.blocks[0].text is None
    red, blue = torch.full((3, 16, 16), -0.8), torch.full((3, 16, 16), -0.8)
    red[0], blue[2] = 0.8, 0.8
    g = torch.Generator().manual_seed(0)
    labels = TextStates(torch.randn(2, 1, 8, generator=g), torch.ones(2, 1, dtype=torch.bool))
    images = pack([red, blue], tok)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3, weight_decay=0)
    for _ in range(400):  # DDPM's noise MSE needs ~3x the steps flow matching does here
        out = m(images, labels, g)
        assert set(out) == {"loss", "loss_head", "loss_pred"}
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        m.update_ema(0.99)
    m.eval()
    a, b = sample_images(m, labels, [(16, 16), (16, 16)], steps=4, cfg=2.0, flow_steps=50, seed=1,
                      cfg_schedule="linear", temperature=1.0, time_shift=1.0)
    assert (a - red).abs().mean() < 0.15 and (b - blue).abs().mean() < 0.15


def test_unknown_head_is_refused():
    with pytest.raises(ValueError, match="unknown token head 'gan'"):
        djepa_tiny(token_dim=48, text_dim=8, head="gan")


def _reference_flow_sample(head: FlowHead, z, z_uncond, cfg, steps, time_shift, generator):
    """The sampler as first written: the whole MLP (time and condition embeddings included) on
    freshly concatenated cond + uncond rows at every Euler step."""
    n = z.shape[0]
    x = torch.randn(n, head.token_dim, generator=generator)
    ts = shifted_times(steps, time_shift)
    cond = torch.cat([z, z_uncond])
    for j in range(steps):
        v = head.net(torch.cat([x, x]), ts[j].expand(2 * n), cond)
        vc, vu = v[:n], v[n:]
        x = x + (ts[j + 1] - ts[j]) * (vu + cfg * (vc - vu))
    return x


def _trained_flow_head() -> FlowHead:
    torch.manual_seed(0)
    head = FlowHead(token_dim=6, cond_dim=8, width=32, depth=2)
    for p in head.parameters():  # nonzero everywhere: zero-initialised gates would hide errors
        torch.nn.init.normal_(p, std=0.2)
    return head


@pytest.mark.parametrize("cfg", [1.5, "per-token"])
def test_flow_sampler_with_hoisted_embeddings_matches_the_reference(cfg):
    """Same seed, old loop vs the launch-lean one (c_embed once, t_embed once per step, guided
    rows batched once): equal to float tolerance, with a scalar and a per-token guidance scale."""
    head = _trained_flow_head()
    z, zu = torch.randn(10, 8), torch.randn(10, 8)
    scale = torch.linspace(1.0, 4.0, 10)[:, None] if cfg == "per-token" else cfg
    new = head.sample(z, z_uncond=zu, cfg=scale, steps=12, time_shift=3.0,
                      generator=torch.Generator().manual_seed(5))
    ref = _reference_flow_sample(head, z, zu, scale, 12, 3.0, torch.Generator().manual_seed(5))
    torch.testing.assert_close(new, ref, rtol=1e-5, atol=1e-5)
    assert new.abs().mean() > 0.1  # a real trajectory, not zeros


def test_flow_euler_step_is_one_graph():
    """``fullgraph=True`` refuses any graph break, so the step can be captured whole (CUDA
    graphs on a GPU); the eager backend checks the capture without a C++ compile."""
    from model.flow_head import euler_step
    head = _trained_flow_head()
    x, c = torch.randn(4, 6), torch.randn(8, 32)
    step = torch.compile(euler_step, fullgraph=True, backend="eager")
    for scale in (2.0, torch.full((4, 1), 2.0)):
        torch.testing.assert_close(step(head.net, x, c, torch.tensor(0.1), scale, True),
                                   euler_step(head.net, x, c, torch.tensor(0.1), scale, True))


def test_compiled_sampling_needs_the_flow_head():
    tok = PixelTokenizer(4)
    m = djepa_tiny(token_dim=tok.token_dim, text_dim=8, head="diffusion")
    text = TextStates(torch.randn(1, 3, 8), torch.ones(1, 3, dtype=torch.bool), [3])
    with pytest.raises(ValueError, match="compile=True needs the flow head"):
        sample_images(m, text, [(8, 8)], steps=2, cfg=4.0, cfg_schedule="linear", temperature=1.0, flow_steps=32,
                   time_shift=1.0, seed=0, tokenizer=tok, compile=True)
