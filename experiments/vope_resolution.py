"""VoPE enables continuous-resolution generation (paper section 2.2, Fig. 4), in miniature.

    python -m experiments.vope_resolution                        # full scale (GPU)
    nice python -m experiments.vope_resolution --preset cpu-mini     # 2 CPU cores, minutes

Two models identical but for image positions (``model.vope=true``: VoPE; ``false``: plain 2-D
RoPE on integer token coordinates) are trained, with the same seed and data stream, on shapes-
world scenes at sides drawn from ``trunc_norm`` over [S/2, S] (S = ``--base``, the 1x size; native
images are larger and of mixed aspect, so the sampler only downscales). Each is then asked to
generate the same held-out shapes-geneval prompts at 0.5x, 1x and 2x of S and at the extreme
aspect ratios 1:4 and 4:1 (same pixel count as 1x), and every image is scored. The field of view
is S / patch tokens, so at 1x square both schemes give the very same coordinates; they differ
everywhere else. Writes ``<results>/vope_resolution.{csv,png,md,json}`` and
``vope_resolution_samples_<vope|rope>.png``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time

import djepa_t2i.env  # noqa: F401
from djepa_t2i.config import resolve_device

PRESETS = {
    "full": dict(n_images=20000, base=256, patch=8, steps=20000, prompts=50, gen_steps=32,
                 flow_steps=32, token_budget=16384, max_image_tokens=1024, lr=3e-4, ema=0.999,
                 batch_size=32, seeds=[0], loss_images=64,
                 model={"width": 384, "enc_depth": 6, "pred_depth": 6, "heads": 6,
                        "head_width": 512, "head_depth": 3}),
    "cpu-mini": dict(n_images=400, base=32, patch=4, steps=40, prompts=2, gen_steps=8, flow_steps=8,
                     token_budget=256, max_image_tokens=64, lr=1e-3, ema=0.9, batch_size=18,
                     seeds=[0], loss_images=16, model={}),
    "smoke": dict(n_images=40, base=16, patch=4, steps=2, prompts=1, gen_steps=2, flow_steps=2,
                  token_budget=64, max_image_tokens=16, lr=1e-3, ema=0.9, batch_size=8, seeds=[0],
                  loss_images=2, model={}),
}
POSITIONS = {"vope": True, "rope": False}


def settings(base: int) -> dict[str, tuple[int, int]]:
    """Generation sizes (H, W) in pixels: 0.5x, 1x, 2x square; 1:4 and 4:1 with 1x's pixel count."""
    return {"0.5x": (base // 2, base // 2), "1x": (base, base), "2x": (2 * base, 2 * base),
            "1:4": (2 * base, base // 2), "4:1": (base // 2, 2 * base)}


def parse(argv=None) -> argparse.Namespace:
    from experiments.reporting import apply_preset, preset_parser
    p = preset_parser("experiments.vope_resolution", __doc__, PRESETS,
                      ("n_images", "base", "steps", "prompts", "gen_steps", "flow_steps", "token_budget"),
                      "runs/experiments/vope_resolution")
    return apply_preset(p.parse_args(argv), PRESETS)


def spec_for(a, pos: str, seed: int, lake: str):
    from experiments.training_run import RunSpec
    c = a.cfg
    S = c["base"]
    return RunSpec(
        lake=lake, out=os.path.join(a.work, f"{pos}-s{seed}"), seed=seed, steps=c["steps"],
        eval_every=c["steps"],
        model={"name": "djepa_tiny", "tokenizer": "pixel", "patch_size": c["patch"],
               "vope": POSITIONS[pos], "vope_fov": S / c["patch"], "overrides": c["model"]},
        train={"resolution": {"mu": 0.75 * S / 1000, "sigma": 0.25 * S / 1000, "a": 0.5 * S / 1000,
                              "b": S / 1000},
               "token_budget": c["token_budget"], "max_image_tokens": c["max_image_tokens"],
               "lr": c["lr"], "ema": c["ema"], "warmup": max(1, c["steps"] // 20),
               "device": a.device, "phase": "phase1"},
        evaluate={"size": S, "prompts_per_category": c["prompts"], "steps": c["gen_steps"],
                  "flow_steps": c["flow_steps"], "seed": 0, "device": a.device,
                  "batch_size": c["batch_size"]})


def gen_evaluate(a) -> dict:
    c = a.cfg
    return {"size": c["base"], "prompts_per_category": c["prompts"], "steps": c["gen_steps"],
            "flow_steps": c["flow_steps"], "seed": 1000, "device": a.device, "batch_size": c["batch_size"]}


def main(argv=None) -> int:
    import torch
    a = parse(argv)
    torch.set_num_threads(int(os.environ.get("EXP_THREADS", min(2, os.cpu_count() or 1))))
    from experiments import shapes_data as sd
    from experiments import training_run as run
    from tasks import shapes_world as sw
    c, t0 = a.cfg, time.time()
    S = c["base"]
    print(f"VoPE vs RoPE, preset {a.preset}: {json.dumps(c)}")
    shutil.rmtree(a.work, ignore_errors=True)
    data_lake = os.path.join(a.work, "data-lake")
    native = [(2 * S, 2 * S), (2 * S, S), (S, 2 * S), (3 * S // 2, 3 * S // 2)]  # (w, h), aspect <= 2
    counts = sd.build_world(data_lake, os.path.join(a.work, "shards"), c["n_images"], native,
                            sw.UNIFORM, 0)
    schedule = (0.75 * S / 1000, 0.25 * S / 1000, 0.5 * S / 1000, S / 1000)
    rows, runs = [], {}
    for seed in c["seeds"]:
        for pos in POSITIONS:
            lake = os.path.join(a.work, f"{pos}-s{seed}", "lake")
            sd.run_lake(data_lake, lake, counts, c["n_images"], "start", schedule)
            print(f"[{pos} seed {seed}] training {c['steps']} steps")
            t1 = time.time()
            r = run.train_with_evaluations(spec_for(a, pos, seed, lake))
            runs[f"{pos}-s{seed}"] = {"train_seconds": round(time.time() - t1, 1),
                                      "final_loss": r["final_loss"], "checkpoint": r["checkpoint"]}
            for name, hw in settings(S).items():
                img_dir = os.path.join(a.work, "samples", pos, f"s{seed}", name.replace(":", "x"))
                res = run.category_scores(run.score_checkpoint(r["checkpoint"], gen_evaluate(a), hw, img_dir))
                dev = resolve_device(a.device)
                loss = run.heldout_loss(r["checkpoint"], hw, c["loss_images"], seed, device=dev)
                res.update({"heldout_loss": loss["loss"], "heldout_loss_head": loss["loss_head"]})
                print(f"[{pos} seed {seed}] {name} {hw}: overall {res['overall']:.3f} "
                      f"held-out loss {loss['loss']:.4f}")
                rows += [{"positions": pos, "seed": seed, "setting": name, "height": hw[0], "width": hw[1],
                          "metric": k, "score": v} for k, v in res.items()]
    for name, hw in settings(S).items():  # noise-floor: scores only (it has no loss)
        res = run.category_scores(run.score_checkpoint("", gen_evaluate(a), hw, noise=True))
        rows += [{"positions": "noise-floor", "seed": "", "setting": name, "height": hw[0], "width": hw[1],
                  "metric": k, "score": v} for k, v in res.items()]
    wall = time.time() - t0
    write_outputs(a, rows, runs, wall)
    return 0


def write_outputs(a, rows: list[dict], runs: dict, wall: float) -> None:
    from experiments import reporting as rp
    c = a.cfg
    os.makedirs(a.results, exist_ok=True)
    base = os.path.join(a.results, "vope_resolution")
    rp.write_csv(base + ".csv", rows)
    names = list(settings(c["base"]))
    get = lambda pos, s, m="overall": [r["score"] for r in rows
                                      if r["positions"] == pos and r["setting"] == s and r["metric"] == m]
    table, summary = [], {}
    for s in names:
        v, r_, n = (rp.mean_std(get(p, s)) for p in ("vope", "rope", "noise-floor"))
        hw = settings(c["base"])[s]
        summary[s] = {"vope": list(v), "rope": list(r_), "noise_floor": n[0], "hw": hw}
        table.append([f"{s} ({hw[0]}x{hw[1]})", rp.fmt(*v), rp.fmt(*r_), f"{v[0] - r_[0]:+.3f}", rp.fmt(n[0])])
    loss_rows = []
    for s in names:
        lv, lr_ = (rp.mean_std(get(p, s, "heldout_loss")) for p in ("vope", "rope"))
        summary[s].update(heldout_loss_vope=list(lv), heldout_loss_rope=list(lr_))
        loss_rows.append([s, rp.fmt(*lv), rp.fmt(*lr_), f"{lv[0] - lr_[0]:+.3f}"])
    v1, v2, r2 = summary["1x"]["vope"][0], summary["2x"]["vope"][0], summary["2x"]["rope"][0]
    within, better = abs(v2 - v1) <= 0.05, v2 > r2
    cats = [m for m in dict.fromkeys(r["metric"] for r in rows)
            if m != "overall" and not m.startswith("heldout")]
    per_cat = rp.md_table(["setting"] + [f"{p}: {m}" for p in ("vope", "rope") for m in cats],
                          [[s] + [rp.fmt(rp.mean_std(get(p, s, m))[0]) for p in ("vope", "rope") for m in cats]
                           for s in names])
    md = [f"### VoPE vs plain 2-D RoPE across resolutions — preset `{a.preset}`", "",
          f"- command: `{rp.command()}`", f"- date: {rp.now()}", f"- hardware: {rp.hardware()}",
          f"- wall time: {wall / 60:.1f} min (rendering, {len(runs)} training runs, "
          f"{len(names) * (len(runs) + 1)} scored generation sets)",
          f"- scale: {c['n_images']} images (native {c['base']}-{2 * c['base']} px, aspect <= 2), trained "
          f"{c['steps']} steps x {c['token_budget']} tokens at sides trunc_norm over "
          f"[{c['base'] // 2}, {c['base']}] px (patch {c['patch']}); 1x = {c['base']} px; "
          f"{c['prompts']} held-out prompts/category (prompt seed 1000), seeds {c['seeds']}",
          "", "shapes-geneval overall (mean ± std over seeds; noise floor: the same prompts scored on "
          "uniform noise of that size):", "",
          rp.md_table(["setting (HxW px)", "VoPE", "RoPE", "VoPE - RoPE", "noise floor"], table), "",
          "Per category:", "", per_cat, "",
          f"Held-out loss (the training objective, flow + prediction, EMA weights, on "
          f"{c['loss_images']} held-out scenes rendered at each size; lower is better; a continuous "
          "signal that exists before any shape is drawn):", "",
          rp.md_table(["setting", "VoPE", "RoPE", "VoPE - RoPE"], loss_rows), "",
          f"Targets: VoPE 2x within 0.05 of VoPE 1x: {'met' if within else 'NOT met'} "
          f"({v2:.3f} vs {v1:.3f}); VoPE 2x better than RoPE 2x: {'met' if better else 'NOT met'} "
          f"({v2:.3f} vs {r2:.3f}).", ""]
    with open(base + ".md", "w") as f:
        f.write("\n".join(md))
    with open(base + ".json", "w") as f:
        json.dump({"preset": a.preset, "config": c, "command": rp.command(), "date": rp.now(),
                   "hardware": rp.hardware(), "wall_seconds": round(wall, 1), "summary": summary,
                   "targets": {"vope_2x_within_0.05_of_1x": within, "vope_2x_better_than_rope": better},
                   "runs": runs}, f, indent=1, default=str)
    plot(base + ".png", summary, names)
    for pos in POSITIONS:
        sample_grid(os.path.join(a.work, "samples", pos, f"s{c['seeds'][0]}"), names,
                    os.path.join(a.results, f"vope_resolution_samples_{pos}.png"), pos)
    print("\n".join(md))


def plot(path: str, summary: dict, names: list[str]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(names))
    for i, (k, col) in enumerate((("vope", "tab:blue"), ("rope", "tab:orange"))):
        ax.bar(x + (i - 0.5) * 0.38, [summary[n][k][0] for n in names], 0.38,
               yerr=[summary[n][k][1] for n in names], color=col, label=k.upper() if k == "rope" else "VoPE",
               capsize=3)
    ax.plot(x, [summary[n]["noise_floor"] for n in names], "r_", markersize=28, mew=2, label="noise floor")
    ax.set_xticks(x, [f"{n}\n{summary[n]['hw'][0]}x{summary[n]['hw'][1]}" for n in names])
    ax.set(ylabel="shapes-geneval overall", title="generation at other resolutions / aspect ratios")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sample_grid(root: str, names: list[str], path: str, label: str, per_row: int = 6) -> None:
    """One row per setting: the first ``per_row`` generated images, at their own size and aspect."""
    import glob

    from PIL import Image, ImageDraw
    rows = []
    for n in names:
        files = sorted(glob.glob(os.path.join(root, n.replace(":", "x"), "*.png")))[:per_row]
        rows.append((n, [Image.open(f).convert("RGB") for f in files]))
    scale = 2
    cell_h = max((im.height for _, ims in rows for im in ims), default=16) * scale
    widths = [sum(im.width * scale + 4 for im in ims) for _, ims in rows]
    W, H = 60 + max(widths, default=0), (cell_h + 6) * len(rows) + 14
    canvas = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(canvas)
    d.text((2, 0), label, fill="black")
    y = 14
    for n, ims in rows:
        d.text((2, y + cell_h // 2 - 5), n, fill="black")
        x = 60
        for im in ims:
            canvas.paste(im.resize((im.width * scale, im.height * scale), Image.NEAREST), (x, y))
            x += im.width * scale + 4
        y += cell_h + 6
    canvas.save(path)


if __name__ == "__main__":
    raise SystemExit(main())
