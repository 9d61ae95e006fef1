"""Post-training (docs/post-training.md): the reward and the held-out metric per GRPO step.

From the ``post_train_curve`` view over ``rollouts``: the rollouts' mean reward (with its spread,
the variance GRPO's advantages feed on), the same reward and the held-out metric on the held-out
prompts, and the KL to the reference. Reward hacking shows as the reward rising while the
held-out metric does not."""
from __future__ import annotations

from report.figures import save_figure
from warehouse import db

RUNS = 2  # newest post-train runs shown


def _runs(lake: str) -> list[str]:
    return [r for (r,) in db.query(lake, "SELECT run_id FROM rollouts GROUP BY run_id "
                                         "ORDER BY max(created_at) DESC, run_id LIMIT ?", [RUNS])[1]]


def _title(run: str) -> str:
    return f"post-training: {run}"


def _curve(lake: str, run: str) -> tuple[list[str], list[tuple]]:
    return db.query(lake, "SELECT step, round(reward, 4) AS reward, round(reward_std, 4) AS reward_std, "
                          "round(kl, 5) AS kl, round(heldout_reward, 4) AS heldout_reward, "
                          "round(heldout_metric, 4) AS heldout_metric FROM post_train_curve "
                          "WHERE run_id = ? ORDER BY step", [run])


def render(lake: str, outdir: str) -> list[tuple[str, str]]:
    import matplotlib  # heavy
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy
    out = []
    for run in _runs(lake):
        _, rows = _curve(lake, run)
        fig, axs = plt.subplots(1, 2, figsize=(12, 4))
        train = [(s, r, sd) for s, r, sd, *_ in rows if r is not None]
        if train:
            xs, ys, sds = zip(*train)
            axs[0].errorbar(xs, ys, yerr=[sd or 0 for sd in sds], marker=".", color="#0072B2",
                            label="reward (rollouts, ±1 std)")
        held = [(s, hr, hm) for s, _, _, _, hr, hm in rows if hm is not None]
        if held:
            xs, hrs, hms = zip(*held)
            axs[0].plot(xs, hrs, marker="s", color="#009E73", label="reward (held-out prompts)")
            axs[0].plot(xs, hms, marker="^", color="#D55E00", label="held-out metric")
        axs[0].set(xlabel="GRPO step", ylabel="score", title=f"reward vs held-out metric: {run}")
        axs[0].legend(fontsize=7)
        kl = [(s, k) for s, _, _, k, _, _ in rows if k is not None]
        if kl:
            axs[1].plot(*zip(*kl), marker=".", color="#CC79A7")
        axs[1].set(xlabel="GRPO step", ylabel="KL per unit", title="KL to the SFT reference")
        out.append((_title(run), save_figure(fig, outdir, f"post_training_{run}")))
    return out


def tables(lake: str) -> dict[str, tuple[list[str], list[tuple]]]:
    return {_title(run): _curve(lake, run) for run in _runs(lake)}
