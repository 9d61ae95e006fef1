"""Stochastic samplers with a tractable per-step log-probability, for RL on the token heads.

The flow head (model/flow_head.py) samples by an Euler ODE, which is deterministic: a policy
gradient needs each step to be a distribution. Flow-GRPO (Liu et al. 2025, arXiv 2505.05470,
§4.2 Eq. 8-9) replaces the ODE by the SDE that has the same marginals p_t, discretised by
Euler-Maruyama, so each step is a Gaussian. Derived here for this project's parameterisation:

    x_t = t x + (1 - t) eps,  t = 0 noise -> 1 data,  v(x, t) = E[x - eps | x_t]   (flow_head.py)

On the linear path x_t - t (x - eps) = eps, so E[eps | x_t] = x_t - t v, and since
x_t | x ~ N(t x, (1 - t)^2 I) the score is  grad log p_t(x_t) = -(x_t - t v) / (1 - t).
Any dx = [v + (sigma_t^2 / 2) grad log p_t] dt + sigma_t dW has the ODE's marginals (the
Fokker-Planck terms of the noise and of the score cancel), hence

    dx = [ v - sigma_t^2 / (2 (1 - t)) (x - t v) ] dt + sigma_t dW,   sigma_t = a sqrt((1 - t) / t)

which is Flow-GRPO's Eq. 8 under t -> 1 - t, v -> -v (their t is the noise level, their v points
to the noise); ``a`` is their noise level (0.7). One Euler-Maruyama step of size dt > 0 is

    x' ~ N( x (1 - sigma^2 dt / (2 (1 - t))) + v dt (1 + sigma^2 t / (2 (1 - t))),  sigma^2 dt I ).

sigma_t diverges at t = 0 (pure noise): as Flow-GRPO's code does, the first step's sigma is taken
at the next grid time. The KL between the policy's and the reference's step (same variance) is
||mean - mean_ref||^2 / (2 sigma^2 dt) (Flow-GRPO §4.1).

The DDPM head (model/diffusion_head.py) already samples by Gaussian posterior steps; its step
log-probability is DDPO's (Black et al. 2023): ``ddpm_step``. ``HeadSchedule``/``step_mean``
give both heads one step interface for the rollout (model/ar_rollout.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from model.denoising_mlp import DenoisingMLP
from model.diffusion_head import T_MAX
from model.flow_head import shifted_times

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def sde_sigmas(ts: torch.Tensor, a: float) -> torch.Tensor:
    """(steps,) sigma_t = a sqrt((1 - t) / t) at each step's start time; t = 0 uses ts[1]."""
    t = ts[:-1].clone()
    t[t <= 0] = ts[1]
    return a * ((1 - t) / t).sqrt()


def sde_mean(x: torch.Tensor, v: torch.Tensor, t: torch.Tensor | float, dt: torch.Tensor | float,
             sigma: torch.Tensor | float) -> torch.Tensor:
    """The Euler-Maruyama step's mean (module docstring). ``t``, ``dt``, ``sigma``: scalars or
    broadcastable columns. At sigma = 0 it is the ODE's Euler step x + v dt."""
    k = sigma ** 2 * dt / (2 * (1 - t))
    return x * (1 - k) + v * (dt + k * t)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor | float) -> torch.Tensor:
    """log N(x; mean, std^2 I) summed over the last dimension (one token): one value per row."""
    std = torch.as_tensor(std, dtype=mean.dtype, device=mean.device)
    z = (x - mean) / std
    return (-0.5 * z ** 2 - std.log() - LOG_SQRT_2PI).sum(-1)


def step_kl(mean: torch.Tensor, mean_ref: torch.Tensor, std: torch.Tensor | float) -> torch.Tensor:
    """KL(N(mean, std^2 I) || N(mean_ref, std^2 I)) per row: ||mean - mean_ref||^2 / (2 std^2)."""
    return ((mean - mean_ref) ** 2).sum(-1) / (2 * torch.as_tensor(std) ** 2)


def sample_sde(velocity: Velocity, x: torch.Tensor, ts: torch.Tensor, a: float,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integrate the SDE from ``x`` (noise, t = ts[0]) along ``ts``; ``velocity(x, t)`` -> v.

    Returns the end point, the trajectory (steps + 1, n, d) and each step's log-probability
    (steps, n): the record GRPO re-scores under the updated policy. ``a = 0`` is the ODE's Euler
    sampler (no noise drawn, so the generator advances as ``FlowHead.sample``'s does); its steps
    have no density and their log-probabilities are recorded as 0."""
    sig = sde_sigmas(ts, a)
    xs, logps = [x], []
    for j in range(len(ts) - 1):
        t, dt = ts[j], ts[j + 1] - ts[j]
        mean = sde_mean(x, velocity(x, t), t, dt, sig[j])
        if a == 0:
            x = mean
            logps.append(torch.zeros(x.shape[0], device=x.device))
        else:
            std = sig[j] * dt.sqrt()
            x = mean + std * torch.randn(x.shape, device=x.device, generator=generator)
            logps.append(gaussian_log_prob(x, mean, std))
        xs.append(x)
    return x, torch.stack(xs), torch.stack(logps)


def head_velocity(net: DenoisingMLP, x: torch.Tensor, t: torch.Tensor, z: torch.Tensor,
                  z_uncond: torch.Tensor | None = None, cfg=1.0) -> torch.Tensor:
    """The flow head's velocity at (x, t | z), with classifier-free guidance when ``z_uncond``
    is given (v_u + cfg (v_c - v_u), as ``flow_head.euler_step``); differentiable."""
    tt = torch.as_tensor(t, device=x.device, dtype=torch.float32).expand(x.shape[0])
    if z_uncond is None:
        return net(x.to(z.dtype), tt, z).float()
    v = net(torch.cat([x, x]).to(z.dtype), torch.cat([tt, tt]), torch.cat([z, z_uncond])).float()
    vc, vu = v.chunk(2)
    return vu + cfg * (vc - vu)


def ddpm_schedule(steps: int, device=None) -> torch.Tensor:
    """The DDPM head's respaced timesteps (as ``DiffusionHead.sample``): T_MAX - 1 down to 0."""
    return torch.linspace(T_MAX - 1, 0, min(steps, T_MAX), device=device).round().long()


def ddpm_step(alphas_cumprod: torch.Tensor, x: torch.Tensor, eps: torch.Tensor, t: torch.Tensor,
              t_prev: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The DDPM posterior q(x_prev | x_t, x0_hat) of ``DiffusionHead.sample``: (mean, std).

    ``t_prev`` None is the last step (to t = 0): std 0, a deterministic step with no
    log-probability (DDPO scores the stochastic steps only)."""
    a_t = alphas_cumprod[t]
    a_prev = alphas_cumprod[t_prev] if t_prev is not None else torch.ones((), device=x.device)
    std = (1 - a_t / a_prev) * (1 - a_prev) / (1 - a_t)
    return ddpm_mean(x, eps, a_t, a_prev), std.sqrt() if t_prev is not None else torch.zeros(())


def ddpm_mean(x: torch.Tensor, eps: torch.Tensor, a_t: torch.Tensor, a_prev: torch.Tensor) -> torch.Tensor:
    """The posterior mean from the predicted noise (``DiffusionHead.sample``'s formula)."""
    x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    beta = 1 - a_t / a_prev
    return (a_prev.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - a_prev) * x) / (1 - a_t)


@dataclass
class HeadSchedule:
    """A token head's stochastic sampler, step by step: ``net_t`` (K,) the time each step feeds
    the denoising MLP, ``std`` (K,) each step's Gaussian std (0: a deterministic step, no
    log-probability), and per kind: the flow SDE's times ``ts`` (K + 1,) and ``sigmas`` (K,), or
    the DDPM head's alpha-bar at each step and the next (``a_t``, ``a_prev``)."""
    kind: str
    net_t: torch.Tensor
    std: torch.Tensor
    ts: torch.Tensor | None = None
    sigmas: torch.Tensor | None = None
    a_t: torch.Tensor | None = None
    a_prev: torch.Tensor | None = None


def head_schedule(head, steps: int, noise: float, time_shift: float, device,
                  ode_last: bool = False) -> HeadSchedule:
    """The flow head's SDE (noise level ``noise``; 0 = the Euler ODE) or the DDPM head's posterior
    steps (its own noise; ``noise`` and ``time_shift`` do not apply, as in its sampler).

    ``ode_last``: the flow head's last step (to the data, t = 1) is the ODE's Euler step, with no
    noise and no log-probability, as the DDPM head's last step is. Its SDE noise, std
    a sqrt(dt (1 - t) / t) (0.20 at 4 steps, a = 0.7), is never denoised: in a latent model the
    VAE decoder smooths it, but pixel tokens keep it as speckle, which the shapes scorer reads as
    clutter (every demo rollout scored 0). The marginal at the last step's start is the SDE's, and
    an ODE step keeps it, so the end point still follows the model's distribution."""
    if head.kind == "flow":
        ts = shifted_times(steps, time_shift, device)
        sig = sde_sigmas(ts, noise)
        if ode_last:
            sig[-1] = 0.0
        return HeadSchedule("flow", ts[:-1], sig * (ts[1:] - ts[:-1]).sqrt(), ts=ts, sigmas=sig)
    t = ddpm_schedule(steps, device)
    ac = head.alphas_cumprod.to(device)
    a_t = ac[t]
    a_prev = torch.cat([ac[t[1:]], torch.ones(1, device=device)])
    std = ((1 - a_t / a_prev) * (1 - a_prev) / (1 - a_t)).clamp(min=0).sqrt()
    return HeadSchedule("diffusion", t.float() / T_MAX, std, a_t=a_t, a_prev=a_prev)


def step_mean(head, sc: HeadSchedule, x: torch.Tensor, idx: torch.Tensor, z: torch.Tensor,
              z_uncond: torch.Tensor | None, cfg) -> torch.Tensor:
    """Mean of the Gaussian step ``idx`` (one step index per row) from ``x``: the head's guided
    output (velocity or noise) turned into the SDE's or the posterior's mean; differentiable."""
    out = head_velocity(head.net, x, sc.net_t[idx], z, z_uncond, cfg)
    if sc.kind == "flow":
        t, dt = sc.ts[idx][:, None], (sc.ts[idx + 1] - sc.ts[idx])[:, None]
        return sde_mean(x, out, t, dt, sc.sigmas[idx][:, None])
    return ddpm_mean(x, out, sc.a_t[idx][:, None], sc.a_prev[idx][:, None])
