"""Tables, verdicts and plots of the VoPE experiment (``experiments.vope_resolution``): colour
right per arm and size as pooled shares with Wilson intervals beside the chance controls, the
held-out loss, and verdicts on bootstrap intervals of the differences."""
from __future__ import annotations

import glob
import json
import os

import numpy as np
from PIL import Image, ImageDraw

from experiments import reporting as rp
from experiments import verdicts as vd
from experiments.vope_design import ARMS, MARGIN, PATCH, settings
from model.vope import _inv_freq, ntk_base

CONTROLS = ("uniform_noise", "patch_noise", "shuffled_prompt")
MIN_EFFECT = 0.05


def groups(rows: list[dict], arm: str, setting: str, control: str | None = None) -> list[list[float]]:
    """Per seed, the 0/1 colour scores of one arm at one size (or of one chance control)."""
    seeds = sorted({r["seed"] for r in rows})
    return [[r["score"] for r in rows if r["seed"] == s and r["arm"] == arm and r["setting"] == setting
             and r["notion_kind"] == "category" and r.get("control") == control] for s in seeds]


def size_label(name: str, hw: tuple[int, int], base: int) -> str:
    """``4x (128x128, 1024 tok, rho 1/4)``: VoPE's rho is the field of view (the 1x grid) over
    the grid's longest side (D-JEPA·T2I §2.2), 1/4 at the paper's 1K -> 4K ratio."""
    ratio = max(hw) / base
    rho = f"1/{ratio:g}" if ratio > 1 else f"{1 / ratio:g}"
    return f"{name} ({hw[0]}x{hw[1]}, {(hw[0] // PATCH) * (hw[1] // PATCH)} tok, rho {rho})"


def summarize(rows: list[dict], names: list[str]) -> dict:
    out = {}
    for arm in ARMS:
        for s in names:
            d = {"model": vd.share(groups(rows, arm, s))}
            d.update({c: vd.share(groups(rows, arm, s, c)) for c in CONTROLS})
            d["chance"] = max((d[c] for c in CONTROLS), key=lambda x: x.hi)
            loss = [r for r in rows if r["arm"] == arm and r["setting"] == s and r["notion_kind"] == "heldout_loss"]
            d["loss"] = rp.mean_std(r["score"] for r in loss)
            d["seconds"] = rp.mean_std(r["seconds_per_image"] for r in loss if r.get("seconds_per_image") is not None)
            out[(arm, s)] = d
    return out


def compare(rows, summary, a: tuple[str, str], b: tuple[str, str], claim: str, within: bool = False) -> dict:
    if not summary[a]["model"].n or not summary[b]["model"].n:  # a run cut short before this size
        return {"claim": claim, "verdict": "not measured", "line": f"**{claim}: not measured** (the run "
                f"ended before {a[0]} {a[1]} or {b[0]} {b[1]} was scored)"}
    point, lo, hi = vd.boot_diff(groups(rows, *a), groups(rows, *b))
    above = vd.beats(summary[a]["model"], summary[a]["chance"]) or vd.beats(summary[b]["model"], summary[b]["chance"])
    v = vd.verdict_within(lo, hi, MARGIN, above) if within else vd.verdict(lo, hi, MIN_EFFECT, above)
    scale = vd.scale_note(v, above, summary[a]["model"].n, lo, hi, MIN_EFFECT)
    note = (f"{a[0]} {a[1]} {summary[a]['model']} vs {b[0]} {b[1]} {summary[b]['model']}"
            + (f"; {scale}" if scale else ""))
    return {"claim": claim, "verdict": v, "diff": point, "lo": lo, "hi": hi, "above_chance": above,
            "scale_needed": scale or None, "line": vd.line(claim, v, point, lo, hi, note)}


def write(a, rows: list[dict], runs: dict, wall: float) -> None:
    c = a.cfg
    os.makedirs(a.results, exist_ok=True)
    base = os.path.join(a.results, "vope_resolution")
    rp.write_rows(base + ".parquet", rows)
    sizes = settings(c["base"])
    names = list(sizes)
    summary = summarize(rows, names)
    verdicts = [compare(rows, summary, ("vope", s), ("rope", s), f"VoPE beats RoPE at {s}")
                for s in names if s != "1x"]
    verdicts += [compare(rows, summary, ("vope", s), ("rope-ntk", s), f"VoPE beats RoPE+NTK at {s}")
                 for s in names if max(sizes[s]) > c["base"]]
    verdicts += [compare(rows, summary, ("vope", s), ("vope", "1x"), f"VoPE at {s} within {MARGIN} of VoPE at 1x",
                         within=True) for s in ("2x", "4x") if s in sizes]
    table = [[size_label(s, sizes[s], c["base"]),
              *(str(summary[(arm, s)]["model"]) if summary[(arm, s)]["model"].n else "not measured" for arm in ARMS),
              f"{max((summary[(arm, s)]['chance'].p for arm in ARMS if summary[(arm, s)]['chance'].n), default=float('nan')):.3f}"]
             for s in names]
    loss_table = [[s, *(rp.fmt(*summary[(arm, s)]["loss"]) for arm in ARMS),
                   " / ".join(rp.fmt(summary[(arm, s)]["seconds"][0]) for arm in ARMS)] for s in names]
    md = [f"### VoPE vs RoPE vs RoPE+NTK across resolutions: preset `{a.preset}`", "",
          *rp.provenance(wall, f"{len(runs)} training runs, {len(names)} sizes x 3 arms scored"),
          f"- scale: {c['n_images']} single-object scenes (native {c['base']}-{2 * c['base']} px, aspect <= 2), "
          f"djepa_tiny {c['model']}, trained {c['steps']} steps x ~{c['batch']} images at sides "
          f"trunc_norm over [{c['base'] // 2}, {c['base']}] px (patch 4); 1x = {c['base']} px; "
          f"18 prompts x {c['images']} images per size at a held-out image seed; seeds {c['seeds']}",
          "", "Colour right (pooled over seeds, 95% Wilson interval; chance: the best of the three controls, "
          "1/6 expected):", "",
          rp.md_table(["size (HxW px, tokens, VoPE rho)", "VoPE", "RoPE", "RoPE+NTK", "chance"], table), "",
          "Held-out loss (training objective on held-out scenes at that size, EMA weights; mean ± std over "
          "seeds; lower is better) and generation time (seconds per image, mean over seeds, 18-36 images a "
          "batch):", "", rp.md_table(["size", "VoPE", "RoPE", "RoPE+NTK", "s / image (VoPE / RoPE / NTK)"],
                                    loss_table), "",
          "Verdicts (bootstrap over seeds, then images; see experiments/verdicts.py):", ""]
    md += [f"- {v['line']}" for v in verdicts] + [""]
    with open(base + ".md", "w") as f:
        f.write("\n".join(md))
    with open(base + ".json", "w") as f:
        json.dump({"preset": a.preset, "config": c, "command": rp.command(), "date": rp.now(),
                   "hardware": rp.hardware(), "wall_seconds": round(wall, 1),
                   "summary": {f"{arm}/{s}": {k: (v.__dict__ if isinstance(v, vd.Share) else v)
                                              for k, v in d.items()} for (arm, s), d in summary.items()},
                   "verdicts": [{k: v for k, v in x.items() if k != "line"} for x in verdicts], "runs": runs},
                  f, indent=1, default=str)
    plot(base + ".png", summary, sizes)
    head_dim = 64 // c["model"].get("heads", 4)  # djepa_tiny's width is 64
    plot_decay(os.path.join(a.results, "vope_decay.png"), head_dim, c["model"].get("rope_base", 1e4),
               c["base"] // 4)
    for arm in ARMS:
        sample_grid(os.path.join(a.work, "samples", arm, f"s{c['seeds'][0]}"), names,
                    os.path.join(a.results, f"vope_resolution_samples_{arm}.png"), arm)
    print("\n".join(md))


def plot(path: str, summary: dict, sizes: dict) -> None:
    import matplotlib  # heavy
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy
    names = list(sizes)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    x = np.arange(len(names))
    for i, (arm, col) in enumerate(zip(ARMS, ("tab:blue", "tab:orange", "tab:green"))):
        ss = [summary[(arm, n)] for n in names]
        m = np.array([s["model"].p for s in ss])
        err = np.clip([[s["model"].p - s["model"].lo for s in ss], [s["model"].hi - s["model"].p for s in ss]], 0, 1)
        ax1.bar(x + (i - 1) * 0.27, m, 0.27, yerr=err, color=col, label=arm, capsize=3)
        ax1.plot(x + (i - 1) * 0.27, [s["chance"].p for s in ss], "r_", markersize=14, mew=2,
                 label="best chance control" if i == 0 else None)
        lm = np.array([s["loss"][0] for s in ss])
        ax2.errorbar(x + (i - 1) * 0.1, lm, yerr=[s["loss"][1] for s in ss], fmt="o", color=col, label=arm, capsize=3)
    labels = [f"{n}\n{sizes[n][0]}x{sizes[n][1]}" for n in names]
    ax1.set_xticks(x, labels)
    ax1.set(ylabel="colour right (95% Wilson)", title="generation at other sizes / aspects", ylim=(0, 1.05))
    ax1.legend(fontsize=8)
    ax2.set_xticks(x, labels)
    ax2.set(ylabel="held-out loss (mean ± std over seeds)", title="training objective at each size")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def decay(dist, freqs):
    """RoFormer's relative upper bound of a rotary attention score at relative distance ``dist``
    (Su et al. 2021, §3.4.3): mean_j |sum_{k<=j} exp(i dist theta_k)|, normalised to 1 at 0.
    ``freqs``: one axis's rotary frequencies, highest first."""
    d = np.asarray(dist, float)[:, None] * np.asarray(freqs, float)[None, :]
    s = np.abs(np.cumsum(np.exp(1j * d), axis=1)).mean(1)
    return s / ((len(freqs) + 1) / 2)


def plot_decay(path: str, head_dim: int, base: float, grid: int) -> None:
    """Fig. 4a analogue for this model's rotary settings: (a) against token distance, RoPE as
    trained and with NTK scaling for a 2x grid; (b) against distance as a fraction of the image
    side, RoPE at 1x/2x/4x grids (the curve it meets changes with resolution) vs VoPE (one curve)."""
    import matplotlib  # heavy
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy

    n = head_dim // 4
    f = _inv_freq(n, base).numpy()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    m = np.linspace(0, 2 * grid, 400)
    ax1.plot(m, decay(m, f), label=f"RoPE, base {base:g} (as trained)")
    ax1.plot(m, decay(m, _inv_freq(n, ntk_base(base, 2.0, n)).numpy()), "--",
             label="RoPE + NTK for a 2x grid (lowest freq / 2)")
    ax1.axvline(grid, color="0.6", lw=0.8, ls=":", label=f"trained grid ({grid} tokens)")
    ax1.set(xlabel="relative distance (tokens)", ylabel="relative upper bound (1 at 0)",
            title="(a) NTK changes the curve seen in training")
    ax1.legend(fontsize=8)
    frac = np.linspace(0, 1, 400)
    for k, ls in ((1, "-"), (2, "--"), (4, ":")):
        ax2.plot(frac, decay(frac * grid * k, f), ls, color="tab:orange", label=f"RoPE at {k}x ({grid * k} tokens)")
    ax2.plot(frac, decay(frac * grid, f), color="tab:blue", lw=3, alpha=0.5,
             label="VoPE at any size (fov = trained grid)")
    ax2.set(xlabel="relative distance (fraction of the image side)", title="(b) VoPE keeps one curve per image")
    ax2.legend(fontsize=8)
    fig.suptitle(f"rotary relative-position decay, one axis: {n} frequencies (head dim {head_dim}), "
                 f"base {base:g}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def zoom(im: Image.Image) -> int:
    """Nearest-pixel upscale of a sample in the grid: 2x up to 64 px (pixels stay visible), 1x
    above (a 256-px 8x sample is shown at its own pixels, repetitions and all)."""
    return 2 if max(im.size) <= 64 else 1


def sample_grid(root: str, names: list[str], path: str, label: str, per_row: int = 6) -> None:
    """One row per setting: the first image of each colour (``colour-<colour>-<shape>_<k>.png``),
    ``per_row`` at most, at their own size and aspect."""
    rows = []
    for n in names:
        first: dict[str, str] = {}
        for f in sorted(glob.glob(os.path.join(root, n.replace(":", "x"), "*.png"))):
            first.setdefault(os.path.basename(f).split("-")[1], f)
        rows.append((n, [Image.open(f).convert("RGB") for f in list(first.values())[:per_row]]))
    rows = [(n, [im.resize((im.width * zoom(im), im.height * zoom(im)), Image.NEAREST) for im in ims])
            for n, ims in rows]
    heights = [max((im.height for im in ims), default=16) for _, ims in rows]
    widths = [sum(im.width + 4 for im in ims) for _, ims in rows]
    W, H = 60 + max(widths, default=0), sum(h + 6 for h in heights) + 14
    canvas = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(canvas)
    d.text((2, 0), label, fill="black")
    y = 14
    for (n, ims), cell_h in zip(rows, heights):
        d.text((2, y + cell_h // 2 - 5), n, fill="black")
        x = 60
        for im in ims:
            canvas.paste(im, (x, y))
            x += im.width + 4
        y += cell_h + 6
    canvas.save(path)
