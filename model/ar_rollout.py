"""Algorithm 1 with a recorded, re-scorable trajectory: the rollouts of RL post-training.

``DJEPAT2I.generate`` samples each step's tokens with the flow ODE; :func:`rollout` walks the
same generalized next-token loop (cosine schedule, random order, linear CFG, conditional and
null-caption rows side by side) but samples the flow head with the SDE of ``model.flow_sde``
and keeps every head state x_j of every AR step. Since a token never changes after its step,
the final tokens are the visible context of every step, so :func:`score_step` can recompute
step k's z and its per-token Gaussian log-probabilities under any weights (the policy with a
gradient, the frozen reference without) from the record alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from djepa_t2i.config import default
from model.djepa import DJEPAT2I, TextInput
from model.flow_sde import HeadSchedule, gaussian_log_prob, head_schedule, step_mean
from model.masking import cosine_schedule
from model.text_encoder import TextStates


@dataclass
class ARStep:
    """One generalized next-token step: which packed positions were visible and predicted
    (conditional rows, then the null-caption rows when guided), whose image each predicted
    token is, its guidance scale, and the head's trajectory (K + 1, P, d) with log-probs (K, P)."""
    known: list[int]
    vis_idx: torch.Tensor
    pred_idx: torch.Tensor
    owner: torch.Tensor
    scale: torch.Tensor | float
    traj: torch.Tensor
    logp: torch.Tensor


@dataclass
class Rollout:
    text: TextStates
    grids: list[tuple[int, int]]
    tokens: torch.Tensor        # (N, d) the final tokens, images packed one after another
    sched: HeadSchedule         # the head's K stochastic steps
    guided: bool
    steps: list[ARStep]

    @property
    def lens(self) -> list[int]:
        return [h * w for h, w in self.grids]

    def image_log_prob(self) -> torch.Tensor:
        """(B,) log-probability of each image: summed over its tokens, head and AR steps."""
        out = torch.zeros(len(self.grids), device=self.tokens.device)
        for s in self.steps:
            out.index_add_(0, s.owner, s.logp.sum(0))
        return out


def _layout(model: DJEPAT2I, text: TextStates, grids, guided: bool, dev):
    B = len(grids)
    lens = [h * w for h, w in grids]
    rep = 2 if guided else 1
    text_in = model._text_input(text, list(range(B)) + ([None] * B if guided else []), dev)
    coords = model._coords(grids, [None] * B, dev).repeat(rep, 1)
    return text_in, coords, model._joint(text_in.lengths, lens * rep, coords, dev), rep


def _z(model: DJEPAT2I, tokens, s: ARStep, text_in: TextInput, coords, full_joint, rep: int):
    """z at step ``s``'s predicted positions (conditional rows, then null-caption rows)."""
    dev, N = tokens.device, tokens.shape[0]
    enc_joint = model._joint(text_in.lengths, s.known * rep, coords.index_select(0, s.vis_idx), dev)
    z = model._predict(tokens.repeat(rep, 1), s.vis_idx, N * rep, text_in, enc_joint, full_joint)
    return z.index_select(0, s.pred_idx)


@torch.no_grad()
def rollout(model: DJEPAT2I, text: TextStates, grids: list[tuple[int, int]], *, steps: int,
            head_steps: int, cfg: float, noise: float, time_shift: float = 1.0,
            cfg_schedule: str = default("evaluate.cfg_schedule"), seed: int = 0,
            ode_last: bool = False) -> Rollout:
    """Generate token grids (h, w) with the flow head's SDE (noise level ``noise``, Flow-GRPO's
    a) or the DDPM head's posterior steps, and record everything :func:`score_step` needs;
    decode with the model's tokenizer. ``ode_last``: the flow head's last step is the ODE's
    (``flow_sde.head_schedule``)."""
    dev = next(model.parameters()).device
    B = len(grids)
    lens = [h * w for h, w in grids]
    N, offs = sum(lens), [sum(lens[:i]) for i in range(B)]
    g_host = torch.Generator().manual_seed(seed)
    g_dev = torch.Generator(device=dev).manual_seed(seed)
    orders = [torch.randperm(n, generator=g_host) + o for n, o in zip(lens, offs)]
    guided = cfg != 1.0
    text_in, coords, full_joint, rep = _layout(model, text, grids, guided, dev)
    scheds = [cosine_schedule(n, steps) for n in lens]
    sched = head_schedule(model.head, head_steps, noise, time_shift, dev, ode_last)
    tokens = torch.zeros(N, model.token_dim, device=dev)
    known, record = [0] * B, []
    for k in range(steps):
        nxt = [s[k] for s in scheds]
        counts = [b - a for a, b in zip(known, nxt)]
        if any(counts):
            vis = [o[:a] for o, a in zip(orders, known)]
            pred = [o[a:b] for o, a, b in zip(orders, known, nxt)]
            s = ARStep(known=list(known),
                       vis_idx=model._gather(vis + [v + N for v in vis][:B * (rep - 1)], dev),
                       pred_idx=model._gather(pred + [p + N for p in pred][:B * (rep - 1)], dev),
                       owner=torch.repeat_interleave(torch.arange(B), torch.tensor(counts)).to(dev),
                       scale=model._cfg_scales(cfg, cfg_schedule, lens, nxt, counts, dev),
                       traj=torch.empty(0), logp=torch.empty(0))
            z = _z(model, tokens, s, text_in, coords, full_joint, rep)
            P = sum(counts)
            zc, zu = z[:P], (z[P:] if guided else None)
            x0 = torch.randn(P, model.token_dim, device=dev, generator=g_dev)
            x, s.traj, s.logp = _sample_head(model, sched, x0, zc, zu, s.scale, g_dev)
            tokens.index_copy_(0, s.pred_idx[:P], x)
            record.append(s)
        known = nxt
    return Rollout(text, list(grids), tokens, sched, guided, record)


def _sample_head(model: DJEPAT2I, sc: HeadSchedule, x: torch.Tensor, zc, zu, scale, g):
    """The head's stochastic steps from ``x``: end point, trajectory (K + 1, P, d), log-probs
    (K, P); a deterministic step (std 0) draws no noise and records log-probability 0, so the
    generator advances as the heads' own samplers do."""
    xs, logps = [x], []
    for j in range(len(sc.std)):
        idx = torch.full((x.shape[0],), j, dtype=torch.long, device=x.device)
        mean = step_mean(model.head, sc, x, idx, zc, zu, scale)
        if sc.std[j] > 0:
            x = mean + sc.std[j] * torch.randn(x.shape, device=x.device, generator=g)
            logps.append(gaussian_log_prob(x, mean, sc.std[j]))
        else:
            x = mean
            logps.append(torch.zeros(x.shape[0], device=x.device))
        xs.append(x)
    return x, torch.stack(xs), torch.stack(logps)


def score_step(model: DJEPAT2I, ro: Rollout, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """AR step k of ``ro`` under ``model``'s weights: (log-probs (K, P), step means (K, P, d)).

    Differentiable when grad is enabled: z of the transformer and the head's velocity at every
    recorded head state, all K head steps in one batched call of the denoising MLP."""
    dev = ro.tokens.device
    text_in, coords, full_joint, rep = _layout(model, ro.text, ro.grids, ro.guided, dev)
    s = ro.steps[k]
    z = _z(model, ro.tokens, s, text_in, coords, full_joint, rep)
    K, P, d = s.traj.shape[0] - 1, s.traj.shape[1], s.traj.shape[2]
    idx = torch.arange(K, device=dev).repeat_interleave(P)
    scale = s.scale.repeat(K, 1) if torch.is_tensor(s.scale) else s.scale
    zu = z[P:].repeat(K, 1) if ro.guided else None
    mean = step_mean(model.head, ro.sched, s.traj[:-1].reshape(K * P, d), idx, z[:P].repeat(K, 1),
                     zu, scale).reshape(K, P, d)
    live = ro.sched.std > 0
    std = torch.where(live, ro.sched.std, torch.ones_like(ro.sched.std))[:, None, None]
    logp = gaussian_log_prob(s.traj[1:], mean, std) * live[:, None]
    return logp, mean


def generated(ro: Rollout) -> list[tuple[torch.Tensor, tuple[int, int]]]:
    """Each image's (tokens, grid), as ``DJEPAT2I.generate`` returns them (the engine decodes)."""
    out, o = [], 0
    for n, g in zip(ro.lens, ro.grids):
        out.append((ro.tokens[o:o + n], g))
        o += n
    return out
