"""The SDE sampler of model/flow_sde.py: the ODE's marginals, exact step densities (issue #27)."""
import torch
from torch.distributions import Normal

from model.flow_head import FlowHead, shifted_times
from model.flow_sde import (ddpm_schedule, ddpm_step, gaussian_log_prob, head_velocity, sample_sde,
                            sde_mean, sde_sigmas, step_kl)

MU, S0 = torch.tensor([1.5, -0.5]), torch.tensor([0.5, 2.0])


def gaussian_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """E[x - eps | x_t] when the data are N(MU, S0^2) per dimension (closed form)."""
    var = t ** 2 * S0 ** 2 + (1 - t) ** 2
    return MU + (t * S0 ** 2 - (1 - t)) / var * (x - t * MU)


def test_sde_and_ode_reach_the_data_distribution():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(20000, 2, generator=g)
    ts = shifted_times(100, 1.0)
    x_ode, _, _ = sample_sde(gaussian_velocity, x0, ts, a=0.0, generator=g)
    x_sde, traj, logp = sample_sde(gaussian_velocity, x0, ts, a=0.7, generator=g)
    assert traj.shape == (101, 20000, 2) and logp.shape == (100, 20000)
    for x in (x_ode, x_sde):
        torch.testing.assert_close(x.mean(0), MU, atol=0.05, rtol=0)
        torch.testing.assert_close(x.std(0), S0, atol=0.0, rtol=0.04)
    # the SDE is stochastic: its end points are not the ODE's from the same start
    assert (x_sde - x_ode).abs().mean() > 0.1


def test_sde_marginals_match_at_an_intermediate_time():
    """Half-way along the path the SDE's samples have the ODE's N(t MU, t^2 S0^2 + (1-t)^2)."""
    g = torch.Generator().manual_seed(1)
    ts = shifted_times(60, 3.0)
    _, traj, _ = sample_sde(gaussian_velocity, torch.randn(20000, 2, generator=g), ts, 0.9, g)
    j = 30
    t = ts[j]
    torch.testing.assert_close(traj[j].mean(0), t * MU, atol=0.05, rtol=0)
    torch.testing.assert_close(traj[j].std(0), (t ** 2 * S0 ** 2 + (1 - t) ** 2).sqrt(), atol=0, rtol=0.04)


def test_step_log_prob_is_the_independent_gaussian_density():
    g = torch.Generator().manual_seed(2)
    ts = shifted_times(5, 2.0)
    x = torch.randn(7, 3, generator=g)
    _, traj, logp = sample_sde(lambda x, t: -x + 0.3, x, ts, a=0.7, generator=g)
    sig = sde_sigmas(ts, 0.7)
    for j in range(5):
        t, dt = ts[j], ts[j + 1] - ts[j]
        v = -traj[j] + 0.3
        # the mean written out from the discretised SDE, not through sde_mean
        mean = traj[j] + (v - sig[j] ** 2 / (2 * (1 - t)) * (traj[j] - t * v)) * dt
        ref = Normal(mean, sig[j] * dt.sqrt()).log_prob(traj[j + 1]).sum(-1)
        torch.testing.assert_close(logp[j], ref, atol=1e-4, rtol=1e-5)


def test_first_sigma_is_finite_and_zero_noise_is_the_euler_step():
    ts = shifted_times(4, 1.0)
    sig = sde_sigmas(ts, 0.7)
    assert torch.isfinite(sig).all() and sig[0] == sig[1]
    x, v = torch.randn(5, 2), torch.randn(5, 2)
    torch.testing.assert_close(sde_mean(x, v, ts[1], ts[2] - ts[1], 0.0), x + v * (ts[2] - ts[1]))


def test_step_kl_is_the_closed_form_of_two_gaussians():
    m, mr, std = torch.randn(4, 3), torch.randn(4, 3), torch.tensor(0.3)
    ref = torch.distributions.kl_divergence(Normal(m, std), Normal(mr, std)).sum(-1)
    torch.testing.assert_close(step_kl(m, mr, std), ref)
    assert torch.equal(step_kl(m, m, std), torch.zeros(4))


def test_head_velocity_is_the_euler_steps_guided_velocity():
    torch.manual_seed(0)
    head = FlowHead(4, 8, width=16, depth=1)
    for p in head.parameters():
        torch.nn.init.normal_(p, std=0.2)
    x, z, zu = torch.randn(3, 4), torch.randn(3, 8), torch.randn(3, 8)
    t = torch.tensor(0.4)
    vc = head.net(x, t.expand(3), z)
    vu = head.net(x, t.expand(3), zu)
    torch.testing.assert_close(head_velocity(head.net, x, t, z, zu, cfg=3.0), vu + 3.0 * (vc - vu))
    torch.testing.assert_close(head_velocity(head.net, x, t, z), vc)


def test_ddpm_step_is_the_heads_posterior_and_last_step_is_deterministic():
    ac = torch.cumprod(1 - torch.linspace(1e-4, 2e-2, 1000), 0)
    ts = ddpm_schedule(10)
    x, eps = torch.randn(5, 2), torch.randn(5, 2)
    mean, std = ddpm_step(ac, x, eps, ts[3], ts[4])
    a_t, a_p = ac[ts[3]], ac[ts[4]]
    beta = 1 - a_t / a_p
    x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    # the posterior mean in its textbook form (Ho et al. 2020, Eq. 7)
    ref = (a_p.sqrt() * beta / (1 - a_t)) * x0 + ((1 - beta).sqrt() * (1 - a_p) / (1 - a_t)) * x
    torch.testing.assert_close(mean, ref)
    assert std > 0 and ddpm_step(ac, x, eps, ts[-1], None)[1] == 0
    y = mean + std * torch.randn(5, 2)
    torch.testing.assert_close(gaussian_log_prob(y, mean, std), Normal(mean, std).log_prob(y).sum(-1))
