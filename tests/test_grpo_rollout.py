"""model/ar_rollout.py: the recorded Algorithm-1 rollout is generate's sampler, and re-scores itself."""
import pytest
import torch

from model.ar_rollout import generated, rollout, score_step
from model.djepa import djepa_tiny
from model.text_encoder import TextStates
from model.tokenizers import PixelTokenizer
from training.generation import decode


def sample_images(m, *args, **kw):
    """Pixels of what ``m.generate`` sampled (the model returns tokens; the engine decodes)."""
    return decode(kw.get("tokenizer") or m.tokenizer, m.generate(*args, **kw))


TOK = PixelTokenizer(4)


def tiny_model(seed=0, head="flow"):
    torch.manual_seed(seed)
    m = djepa_tiny(token_dim=TOK.token_dim, text_dim=16, text_drop=0.0, head=head)
    m.tokenizer = TOK
    with torch.no_grad():  # the head starts at zero; nudge it so z shapes the samples
        for p in m.head.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m.eval()


def text(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TextStates(torch.randn(n, 5, 16, generator=g), torch.ones(n, 5, dtype=torch.bool), [5] * n)


@pytest.mark.parametrize("cfg", [1.0, 3.0])
def test_noise_free_rollout_is_generates_sampler(cfg):
    m = tiny_model()
    ro = rollout(m, text(), [(3, 3), (2, 4)], steps=4, head_steps=3, cfg=cfg, noise=0.0, seed=5)
    ref = sample_images(m, text(), [(12, 12), (8, 16)], steps=4, cfg=cfg, cfg_schedule="linear",
                     temperature=1.0, flow_steps=3, time_shift=1.0, seed=5)
    for a, b in zip(decode(m.tokenizer, generated(ro)), ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_rescoring_reproduces_the_recorded_log_probs():
    m = tiny_model()
    ro = rollout(m, text(), [(3, 3), (2, 4)], steps=4, head_steps=3, cfg=3.0, noise=0.7, seed=1)
    assert len(ro.steps) == 4 and sum(len(s.owner) for s in ro.steps) == 9 + 8
    for k, s in enumerate(ro.steps):
        with torch.no_grad():
            logp, mean = score_step(m, ro, k)
        assert logp.shape == s.logp.shape == (3, len(s.owner)) and mean.shape == s.traj[1:].shape
        torch.testing.assert_close(logp, s.logp, atol=1e-3, rtol=1e-4)
    total = ro.image_log_prob()
    assert total.shape == (2,)
    torch.testing.assert_close(total.sum(), sum(s.logp.sum() for s in ro.steps))


def test_rescoring_under_other_weights_changes_the_log_probs_and_has_a_gradient():
    m, other = tiny_model(0), tiny_model(1)
    ro = rollout(m, text(), [(3, 3)] * 2, steps=3, head_steps=2, cfg=2.0, noise=0.7, seed=2)
    logp, _ = score_step(other, ro, 1)
    assert not torch.allclose(logp, ro.steps[1].logp, atol=1e-2)
    logp.sum().backward()
    assert other.head.net.out.weight.grad.abs().sum() > 0
    assert other.context.img_embed.weight.grad.abs().sum() > 0  # through z: the AR transformer


def test_ddpm_head_rollout_is_generates_sampler_and_rescores_itself():
    """The DDPM head's posterior steps are already Gaussian (DDPO): its rollout draws the same
    noise as ``generate`` and every step but the last (deterministic) has a log-probability."""
    torch.manual_seed(0)
    m = djepa_tiny(token_dim=TOK.token_dim, text_dim=16, text_drop=0.0, head="diffusion")
    m.tokenizer = TOK
    with torch.no_grad():
        for p in m.head.parameters():
            p.add_(0.05 * torch.randn_like(p))
    m.eval()
    ro = rollout(m, text(), [(3, 3), (2, 4)], steps=3, head_steps=5, cfg=3.0, noise=0.7, seed=4)
    ref = sample_images(m, text(), [(12, 12), (8, 16)], steps=3, cfg=3.0, cfg_schedule="linear",
                     temperature=1.0, flow_steps=5, time_shift=1.0, seed=4)
    for a, b in zip(decode(m.tokenizer, generated(ro)), ref):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    for k, s in enumerate(ro.steps):
        assert (s.logp[:-1] != 0).all() and (s.logp[-1] == 0).all()
        with torch.no_grad():
            logp, _ = score_step(m, ro, k)
        torch.testing.assert_close(logp, s.logp, atol=1e-3, rtol=1e-4)


def test_ode_last_step_leaves_no_noise_and_rescores_itself():
    """``ode_last``: the flow head's last step is the Euler ODE step (no noise, log-prob 0), the
    others stay stochastic; the same seed draws the same earlier steps."""
    m = tiny_model()
    kw = dict(steps=3, head_steps=3, cfg=2.0, noise=0.7, seed=3)
    ro, noisy = rollout(m, text(), [(3, 3)] * 2, ode_last=True, **kw), rollout(m, text(), [(3, 3)] * 2, **kw)
    sc = ro.sched
    assert sc.std[-1] == 0 and sc.sigmas[-1] == 0 and (sc.std[:-1] > 0).all()
    torch.testing.assert_close(sc.std[:-1], noisy.sched.std[:-1])
    torch.testing.assert_close(ro.steps[0].traj[:-1], noisy.steps[0].traj[:-1])  # same draws before
    for k, s in enumerate(ro.steps):
        assert (s.logp[-1] == 0).all() and (s.logp[:-1] != 0).all()
        with torch.no_grad():
            logp, mean = score_step(m, ro, k)
            _, noisy_mean = score_step(m, noisy, k)
        torch.testing.assert_close(logp, s.logp, atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(s.traj[-1], mean[-1])  # the last state is its step's mean
        assert not torch.allclose(noisy.steps[k].traj[-1], noisy_mean[-1], atol=1e-3)  # noise drawn
