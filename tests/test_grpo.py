"""training/grpo.py: group advantages, the clipped objective, and one update's direction."""
import dataclasses

import pytest
import torch

from model.ar_rollout import rollout, score_step
from training.grpo import ar_subset, group_advantages, grpo_backward, grpo_update, per_image_units, surrogate
from training.rewards import clause_credit, load_rewards
from tests.test_grpo_rollout import text, tiny_model


def test_advantages_are_normalised_within_each_group():
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.2, 0.8])
    g = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    a = group_advantages(r, g)
    torch.testing.assert_close(a[:4], (r[:4] - 0.25) / (r[:4].std(unbiased=False) + 1e-4))
    assert torch.equal(a[4:6], torch.zeros(2))  # equal rewards: nothing to prefer
    assert a[6] < 0 < a[7] and abs(float(a[:4].sum())) < 1e-5


def test_surrogate_clips_the_ratio_on_the_side_the_advantage_pushes():
    old = torch.zeros(4)
    new = torch.log(torch.tensor([1.5, 1.5, 0.5, 0.5]))
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    torch.testing.assert_close(surrogate(new, old, adv, 0.2), torch.tensor([1.2, -1.5, 0.5, -0.8]))


def test_surrogate_gradient_raises_positive_and_lowers_negative_advantage_log_probs():
    logp = torch.zeros(3, requires_grad=True)
    adv = torch.tensor([1.0, -1.0, 0.0])
    (-surrogate(logp, torch.zeros(3), adv, 0.2).sum()).backward()
    assert logp.grad[0] < 0 < logp.grad[1] and logp.grad[2] == 0  # descent raises logp[0]


def test_per_image_units_average_over_tokens_and_dims():
    x = torch.tensor([[1.0, 2.0, 3.0, 6.0]])
    owner = torch.tensor([0, 0, 2, 2])
    u, has = per_image_units(x, owner, 3, token_dim=2)
    torch.testing.assert_close(u, torch.tensor([[0.75, 0.0, 2.25]]))
    assert has.tolist() == [True, False, True]


@pytest.mark.parametrize("head", ["flow", "diffusion"])
def test_one_update_moves_log_probs_the_way_the_advantages_say(head):
    """A toy reward: image 0 of the group is good, image 1 bad; after one step the policy gives
    image 0's trajectory more probability and image 1's less (both token heads). The DDPM head
    takes 16 steps: with 4, its step from t = 333 to 0 has posterior std 0.01 and lr 1e-3
    overshoots (measured: the log-probs fall to -6e4; they rise as they should at lr 1e-5)."""
    policy, ref = tiny_model(head=head), tiny_model(head=head)
    ro = rollout(policy, text(2), [(3, 3)] * 2, steps=3, head_steps=4 if head == "flow" else 16, cfg=2.0, noise=0.7, seed=0)
    before = ro.image_log_prob()
    adv = group_advantages(torch.tensor([1.0, 0.0]), torch.tensor([0, 0]))
    opt = torch.optim.SGD([p for p in policy.parameters() if p.requires_grad], lr=1e-3)
    stats = grpo_update(policy, ref, ro, adv, opt, clip=0.2, beta=0.04, grad_clip=0.0)
    assert stats["kl"] == 0.0 and stats["clip_frac"] == 0.0  # on-policy: ratio 1, policy = reference
    with torch.no_grad():
        after = torch.zeros(2)
        for k, s in enumerate(ro.steps):
            logp, _ = score_step(policy, ro, k)
            after.index_add_(0, s.owner, logp.sum(0))
    assert after[0] > before[0] and after[1] < before[1]
    stats = grpo_update(policy, ref, ro, adv, opt, clip=0.2, beta=0.04, grad_clip=1.0)
    assert stats["kl"] > 0 and stats["kl_image"].shape == (2,)


def test_clause_credit_is_dense_and_agrees_with_the_verdict():

    from tasks import shapes_world as sw
    from tasks.evaluators import shapes_geneval as sg
    p = sw.prompts("two_object", 1, seed=0, width=64, height=64)[0]
    scene = sw.Scene.from_json(p["scene"])
    good = sw.render(scene)
    assert clause_credit(good, p["spec"]) == 1.0 == sg.score_image(good, p["spec"])[0]
    half = sw.render(dataclasses.replace(scene, objects=scene.objects[:1]))
    assert clause_credit(half, p["spec"]) == 0.5 and sg.score_image(half, p["spec"])[0] == 0.0
    rewards = load_rewards({"shapes-clauses": 0.5, "shapes-geneval": 2.0}, None)
    per, total = rewards([good, half], [p, p])
    assert per == {"shapes-clauses": [1.0, 0.5], "shapes-geneval": [1.0, 0.0]} and total == [2.5, 0.25]


def test_ar_subset_picks_a_seeded_fraction_and_the_update_uses_only_those_steps():
    assert ar_subset(5, 1.0) == [0, 1, 2, 3, 4]
    a = ar_subset(10, 0.3, torch.Generator().manual_seed(0))
    assert len(a) == 3 and a == sorted(set(a)) and a == ar_subset(10, 0.3, torch.Generator().manual_seed(0))
    assert ar_subset(4, 0.01) != [] and len(ar_subset(4, 0.01)) == 1
    policy = tiny_model()
    ro = rollout(policy, text(2), [(3, 3)] * 2, steps=3, head_steps=2, cfg=2.0, noise=0.7, seed=0)
    adv = torch.tensor([1.0, -1.0])
    opt = torch.optim.SGD([p for p in policy.parameters() if p.requires_grad], lr=0.0)
    grads = []
    for steps in ([0], [0, 2]):
        opt.zero_grad()
        grpo_backward(policy, None, ro, adv, clip=0.2, beta=0.0, steps=steps)
        grads.append(policy.head.net.out.weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1])
