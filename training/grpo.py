"""GRPO for the flow head: SimpleAR §3.2's J_GRPO over Flow-GRPO's stochastic head steps.

For a prompt t, G images o_1..o_G are sampled from pi_old (``model.ar_rollout.rollout``: the
generalized next-token loop with the flow head's SDE), each scored by the reward, and

    J(theta) = 1/G sum_i  mean_u [ min(r_iu A_i, clip(r_iu, 1 - eps, 1 + eps) A_i) ] - beta KL,
    A_i = (R_i - mean_G R) / (std_G R + 1e-4),   r_iu = pi_theta(u) / pi_old(u)     (SimpleAR Eq. J_GRPO)

where a unit u of image i is one (AR step k, head step j): the Gaussian transition of all the
tokens image i predicted at AR step k. An image's log-probability is the sum over its units
(``Rollout.image_log_prob``, recorded in the ``rollouts`` table); the ratio is taken per unit, as
SimpleAR takes it per token and Flow-GRPO per denoising step, and a unit's log-probability is
averaged over its tokens x dims (Flow-GRPO's ``log_prob.mean`` over the latent), so the ratio's
scale does not grow with the image. KL is the closed form between the policy's and the frozen
reference's step Gaussians (equal variance, Flow-GRPO §4.1), averaged the same way.
"""
from __future__ import annotations

import torch

from model.ar_rollout import Rollout, score_step
from model.djepa import DJEPAT2I
from model.flow_sde import step_kl

ADV_EPS = 1e-4  # Flow-GRPO's std floor in the group normalisation


def group_advantages(rewards: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """(R - mean of its group) / (std of its group + 1e-4): GRPO's group-relative advantage.
    A group whose images all score the same gets 0 (no preference to learn from)."""
    adv = torch.zeros_like(rewards, dtype=torch.float32)
    for g in groups.unique():
        m = groups == g
        r = rewards[m].float()
        std = r.std(unbiased=False) if r.numel() > 1 else torch.zeros(())
        adv[m] = (r - r.mean()) / (std + ADV_EPS)
    return adv


def per_image_units(x: torch.Tensor, owner: torch.Tensor, n_images: int, token_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, P) per-token values -> (K, B) per (head step, image) averaged over the image's tokens
    x dims, and the (B,) mask of images that predicted tokens at this AR step."""
    out = torch.zeros(x.shape[0], n_images, device=x.device, dtype=x.dtype)
    out = out.index_add(1, owner, x)
    count = torch.bincount(owner, minlength=n_images).to(x.device)
    has = count > 0
    return out / (count.clamp(min=1) * token_dim), has


def surrogate(logp: torch.Tensor, logp_old: torch.Tensor, adv: torch.Tensor, clip: float) -> torch.Tensor:
    """The clipped objective per unit (to maximise): min(r A, clip(r, 1 - eps, 1 + eps) A)."""
    ratio = (logp - logp_old).exp()
    return torch.minimum(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)


def ar_subset(n_steps: int, fraction: float, generator: torch.Generator | None = None) -> list[int]:
    """The AR steps an update re-scores: all, or a random ``fraction`` of them (at least one),
    as Flow-GRPO trains on a fraction of its denoising steps (``timestep_fraction``)."""
    if fraction >= 1.0:
        return list(range(n_steps))
    k = max(1, round(fraction * n_steps))
    return sorted(torch.randperm(n_steps, generator=generator)[:k].tolist())


def grpo_backward(policy: DJEPAT2I, ref: DJEPAT2I | None, ro: Rollout, adv: torch.Tensor, *,
                  clip: float, beta: float, steps: list[int] | None = None) -> dict[str, float]:
    """Accumulate -J's gradient into ``policy`` one AR step at a time (memory: one step's graph);
    ``steps``: the AR steps to re-score (default all).

    Returns the loss, the mean KL per unit, the share of units whose ratio was clipped, and the
    per-image KL (for the rollouts table)."""
    B, d = len(ro.grids), policy.token_dim
    steps = list(range(len(ro.steps))) if steps is None else steps
    live = ro.sched.std > 0  # the head's stochastic steps (DDPM: all but the last)
    units = int(live.sum()) * sum(int(torch.bincount(ro.steps[k].owner, minlength=B).gt(0).sum()) for k in steps)
    loss_sum, kl_sum, clipped = 0.0, 0.0, 0
    kl_image = torch.zeros(B)
    for k in steps:
        s = ro.steps[k]
        logp, mean = score_step(policy, ro, k)
        new, has = per_image_units(logp, s.owner, B, d)
        old, _ = per_image_units(s.logp, s.owner, B, d)
        obj = surrogate(new, old, adv[None, :].to(new.device), clip)[live][:, has]
        loss = -obj.sum()
        if beta > 0 and ref is not None:
            with torch.no_grad():
                _, mean_ref = score_step(ref, ro, k)
            std = ro.sched.std.clamp(min=1e-12)[:, None]
            kl, _ = per_image_units(step_kl(mean, mean_ref, std) * live[:, None], s.owner, B, d)
            loss = loss + beta * kl[live][:, has].sum()
            kl_sum += float(kl[live][:, has].detach().sum())
            kl_image += kl.detach().sum(0).cpu()
        (loss / units).backward()
        loss_sum += float(loss.detach())
        ratio = (new - old).exp()[live][:, has]
        clipped += int(((ratio - 1).abs() > clip).sum())
    return {"loss": loss_sum / units, "kl": kl_sum / units, "clip_frac": clipped / units,
            "kl_image": kl_image}


def grpo_update(policy: DJEPAT2I, ref: DJEPAT2I | None, ro: Rollout, adv: torch.Tensor,
                opt: torch.optim.Optimizer, *, clip: float, beta: float, grad_clip: float,
                steps: list[int] | None = None) -> dict:
    """One optimiser step on -J for the rollout ``ro`` (SimpleAR: AdamW, no warm-up or decay)."""
    opt.zero_grad(set_to_none=True)
    stats = grpo_backward(policy, ref, ro, adv, clip=clip, beta=beta, steps=steps)
    params = [p for p in policy.parameters() if p.requires_grad]
    stats["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, grad_clip or float("inf")))
    opt.step()
    return stats
