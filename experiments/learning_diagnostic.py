"""Why the demo drew noise (issue #10): does D-JEPA·T2I learn "a <color> <shape>" at 32 px on
CPU, and how fast? A deliberately minimal loop (in-memory shapes-world scenes, no data path, no
checkpoints) around the project's own model, EMA and text encoder, so that each knob (steps,
head_mul, heads / rotary base, sampler settings) is measured alone. Every ``--eval_every`` steps
it generates the 18 colour/shape prompts twice and reports the share with the right dominant
colour and shape next to the same images scored against shuffled prompts (chance).

    python -m experiments.learning_diagnostic --steps 2000 --head_mul 1 --heads 2 --base 100 \
        --save runs/diag/d        # the demo's recipe; results in docs/experiments.md
"""
import argparse
import random
import time

import numpy as np
import torch
from model.djepa import DJEPAT2I
from model.tokenizers import PixelTokenizer, pack
from model.text_encoder import TextEncoder
from djepa_t2i.config import Backend
from tasks import shapes_world as sw
from model.ema import EMA

p = argparse.ArgumentParser()
p.add_argument('--size', type=int, default=32); p.add_argument('--patch', type=int, default=4)
p.add_argument('--steps', type=int, default=1000); p.add_argument('--bs', type=int, default=16)
p.add_argument('--lr', type=float, default=1e-3); p.add_argument('--width', type=int, default=64)
p.add_argument('--depth', type=int, default=2); p.add_argument('--hw', type=int, default=128)
p.add_argument('--hd', type=int, default=2); p.add_argument('--n', type=int, default=2000)
p.add_argument('--kind', default='colors'); p.add_argument('--ema', type=float, default=0.99)
p.add_argument('--eval_every', type=int, default=250); p.add_argument('--cfg', type=float, default=3.0)
p.add_argument('--gsteps', type=int, default=16); p.add_argument('--fsteps', type=int, default=16)
p.add_argument('--temp', type=float, default=1.0); p.add_argument('--tema', type=float, default=0.996)
p.add_argument('--pred_weight', type=float, default=1.0); p.add_argument('--threads', type=int, default=2)
p.add_argument('--head_mul', type=int, default=4); p.add_argument('--fov', type=float, default=8.0)
p.add_argument('--reps', type=int, default=2); p.add_argument('--mask_min', type=float, default=0.7); p.add_argument('--mask_std', type=float, default=0.25)
p.add_argument('--obj_size', default=None, help='single-object box side lo,hi (fraction of the short side)')
p.add_argument('--lake', default=None, help='train on this lake\'s samples (phase-1 crops) instead of fresh scenes')
p.add_argument('--strip_tags', action='store_true', help='drop the recaption tags (" [source: ...]") from lake captions')
p.add_argument('--heads', type=int, default=4); p.add_argument('--base', type=float, default=10000.0); p.add_argument('--save', default=None)
a = p.parse_args()
torch.set_num_threads(a.threads); torch.manual_seed(0)
S = a.size; tok = PixelTokenizer(a.patch)
te = TextEncoder.from_config(Backend())
rng = random.Random(0)
def img_t(im): return torch.from_numpy(np.asarray(im, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1
kinds = a.kind.split(',')
if a.obj_size:
    sw._SIZE[1] = tuple(float(v) for v in a.obj_size.split(','))
scenes = [sw.sample_scene(rng, S, S, rng.choice(kinds)) for _ in range(a.n)]
imgs = [img_t(sw.render(s)) for s in scenes]; caps = [s.caption for s in scenes]
if a.lake:
    from training import lake_io
    from training.data import load_image
    from training.feedback_sampler import Decision
    rows = [r for r in lake_io.read_index(a.lake).to_pylist() if min(r['width'], r['height']) >= S]
    imgs = [load_image(Decision(r['key'], r['tar'], r['offset'], r['size'], r['caption'], r['width'],
                                r['height'], S, S, S / 1000, crop=True)) for r in rows]
    caps = [r['caption'].split(' [')[0] if a.strip_tags else r['caption'] for r in rows]
print('data', len(imgs), caps[:3], 'uniq', len(set(caps)), flush=True)
m = DJEPAT2I(token_dim=tok.token_dim, text_dim=te.dim, width=a.width, enc_depth=a.depth, pred_depth=a.depth,
             heads=a.heads, head_width=a.hw, head_depth=a.hd, vope_fov=a.fov, rope_base=a.base, pred_weight=a.pred_weight, head_mul=a.head_mul,
             mask_min=a.mask_min, mask_std=a.mask_std)
m.tokenizer = tok
print('params', sum(p.numel() for p in m.parameters() if p.requires_grad) / 1e6, 'M', flush=True)
opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=a.lr, betas=(0.9, 0.95), weight_decay=0.02)
ema = EMA(m)
gen = torch.Generator().manual_seed(0)
COL = list(sw.COLORS); SH = list(sw.SHAPES)
prompts = [(c, s) for c in COL for s in SH]

from training.draw_check import read as check  # noqa: E402  (colour, shape) of one image
from tasks.evaluators.controls import derangement  # noqa: E402


def evaluate(step):
    from training.generation import tensor_to_image
    backup = {k: v.clone() for k, v in m.state_dict().items()}
    m.load_state_dict({**backup, **ema.state_dict()}, strict=False)
    m.eval()
    caps = [sw.a(f'{c} {s}') for c, s in prompts] * a.reps
    text = te.encode(caps)
    t0 = time.time()
    out = m.generate(text, [(S, S)] * len(caps), steps=a.gsteps, cfg=a.cfg, flow_steps=a.fsteps, temperature=a.temp, seed=step)
    gt = time.time() - t0
    ims = [tensor_to_image(x) for x in out]
    cc = sc = 0; shuf_c = shuf_s = 0
    pr = prompts * a.reps
    perm = derangement(len(pr), seed=0)
    for i, (im, (c, s)) in enumerate(zip(ims, pr)):
        col, shp = check(im)
        cc += col == c; sc += shp == s
        c2, s2 = pr[perm[i]]
        shuf_c += col == c2; shuf_s += shp == s2
    n = len(ims)
    m.load_state_dict(backup); m.train()
    if a.save:
        torch.save({'ema': ema.state_dict(), 'args': vars(a)}, f'{a.save}_{step}.pt')
    print(f'EVAL step {step}: color {cc/n:.2f} shape {sc/n:.2f} | shuffled color {shuf_c/n:.2f} shape {shuf_s/n:.2f} | gen {gt:.1f}s', flush=True)
    if a.save:
        from PIL import Image
        W = Image.new('RGB', (S * 18, S * a.reps))
        for i, im in enumerate(ims): W.paste(im, ((i % 18) * S, (i // 18) * S))
        W.resize((S * 18 * 3, S * a.reps * 3), Image.NEAREST).save(f'{a.save}_{step}.png')

t0 = time.time(); lw = []
for step in range(1, a.steps + 1):
    idx = torch.randint(len(imgs), (a.bs,), generator=gen).tolist()
    batch = pack([imgs[i] for i in idx], tok)
    text = te.encode([caps[i] for i in idx])
    out = m(batch, text, generator=gen)
    opt.zero_grad(); out['loss'].backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step()
    m.update_ema(a.tema); ema.update(m, a.ema)
    lw.append((out["loss_head"].item(), out['loss_pred'].item()))
    if step % 50 == 0:
        f, pr_ = np.mean(lw, 0); lw = []
        print(f'step {step} flow {f:.4f} pred {pr_:.4f} {(time.time()-t0)/step*1000:.0f} ms/step', flush=True)
    if step % a.eval_every == 0:
        evaluate(step)
