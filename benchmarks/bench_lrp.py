"""LRP: its cost against one forward + backward, and how well it points at the demo set's lesions.

Run it from the repository root:

    python benchmarks/bench_lrp.py            # final figures (~15 minutes on 2 CPU threads)
    python benchmarks/bench_lrp.py --quick    # 40 images, 2 rounds: a dry run

It writes benchmarks/RESULTS_lrp.md (``--out``):

1. Cost, as ratios from interleaved rounds (medians of wall and process CPU time, 2 torch threads): LRP with each rule against one
   plain forward + backward of the target logit to the input on the same model (DenseNet-121 at
   224 px, BatchNorm randomised; and the bundled demo model at 128 px), and LRP with Zennit's own
   rules (``fast=False``) for what our rules bought. The one-off canonization of the copy is timed apart.
2. Faithfulness on the demo set (``densenet.demo.generate``, the held-out seed of the model card's
   evaluation; lesion images only, each explained for its true class): the pointing game (the map's
   maximum inside the lesion box), the share of the map's positive mass inside the box (with the box's
   share of the image for scale), and the deletion AUC (pixels removed most-relevant first, lower is
   better), for LRP (three rules, and at ``denseblock2``), Grad-CAM at the model's CAM layer and
   Integrated Gradients (32 steps); and the randomisation check (rank correlation after re-initialising
   the head down to the CAM layer) on a subset.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import densenet.explain as E  # noqa: E402
from densenet.audit.metrics import energy_inside, pointing_hits  # noqa: E402
from densenet.demo import load  # noqa: E402
from densenet.synthetic import generate, normalize  # noqa: E402
from densenet.explain import lrp_core  # noqa: E402
from bench_cam import make_image, make_model  # noqa: E402
from common import git_commit, machine, setup, versions  # noqa: E402

THREADS = 2
HELD_OUT_SEED = 10_000_000  # the model card's evaluation seed: no training step drew these images
TARGET_RATIO = 1.5


def plain(model: torch.nn.Module, x: torch.Tensor, target: int) -> None:
    """One forward and the gradient of the target logit to the input (what a saliency map costs)."""
    leaf = x.detach().clone().requires_grad_(True)
    torch.autograd.grad(model(leaf)[0, target], leaf)


def timed(fns: dict, rounds: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) seconds per call, round-robin. The CPU time of the process (both threads)
    is the work done; on a machine other jobs share, it moves less than the wall time."""
    for fn in fns.values():
        fn()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            times[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {name: (statistics.median(t[0] for t in ts), statistics.median(t[1] for t in ts))
            for name, ts in times.items()}


def cost(model: torch.nn.Module, x: torch.Tensor, rounds: int) -> tuple[dict[str, tuple[float, float]], float]:
    with torch.no_grad():
        target = int(model(x)[0].argmax())
    start = time.perf_counter()
    lrp_core.canonical(model)  # the one-off copy and canonization
    canonize = time.perf_counter() - start
    fns = {"forward + backward": lambda: plain(model, x, target)}
    for rule in E.lrp_methods.RULES:
        fns[f"LRP {rule}"] = lambda rule=rule: lrp_core.propagate(model, x, target, rule=rule)
    fns["LRP epsilon-plus-flat, Zennit's own rules"] = lambda: lrp_core.propagate(model, x, target, fast=False)
    return timed(fns, rounds), canonize


def box_masks(boxes: torch.Tensor, size: int) -> np.ndarray:
    masks = np.zeros((len(boxes), size, size), bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes.int().tolist()):
        masks[i, y0:y1 + 1, x0:x1 + 1] = True
    return masks


def faithfulness(n: int, sanity_images: int) -> tuple[list[dict], dict]:
    model = load()
    layer = model.metadata.get("cam_layer", "features.norm5")
    images, labels, boxes = generate(n, seed=HELD_OUT_SEED)
    keep = labels > 0
    x, labels, boxes = normalize(images[keep]), labels[keep], boxes[keep]
    size = x.shape[-1]
    truth = box_masks(boxes, size)
    methods = {f"LRP ({rule})": ("lrp", {"rule": rule}) for rule in E.lrp_methods.RULES}
    methods[f"LRP at {layer.split('.')[-1]} (epsilon-plus-flat)"] = ("lrp-layer", {})
    methods[f"Grad-CAM at {layer.split('.')[-1]}"] = ("gradcam", {})
    methods["Integrated Gradients (32 steps)"] = ("integrated-gradients", {"steps": 32})
    rows = []
    for label, (name, options) in methods.items():
        record = E.method(name)
        maps, seconds = [], []
        for i in range(len(x)):
            start = time.perf_counter()
            out = E.compute(name, model, x[i:i + 1], int(labels[i]), [layer] if record.needs_layer else None,
                            **options)
            seconds.append(time.perf_counter() - start)
            m = next(iter(out.values()))
            # Signed input maps rank by their raw value (most positive first); CAMs by their shown map.
            maps.append(m.raw if not record.needs_layer else m.map)
        maps_np = np.stack(maps)
        deletion = [E.deletion_insertion(model, x[i:i + 1], maps_np[i], int(labels[i]), batch_size=33).deletion_auc
                    for i in range(len(x))]
        sanity = [E.sanity_check(model, x[i:i + 1], int(labels[i]), layer, name, options=options).rank_correlation
                  for i in range(min(sanity_images, len(x)))]
        rows.append({"method": label, "pointing": float(pointing_hits(maps_np, truth).mean()),
                     "inside": float(np.nanmean(energy_inside(maps_np, truth))),
                     "deletion": float(np.mean(deletion)), "sanity": float(np.mean(np.abs(sanity))),
                     "seconds": statistics.median(seconds)})
        print(rows[-1], flush=True)
    facts = {"images": int(keep.sum()), "drawn": n, "box_share": float(truth.mean()), "layer": layer}
    return rows, facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="40 images, 2 rounds")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS_lrp.md"))
    parser.add_argument("--n", type=int, default=None, help="images to draw (default 200; --quick 40)")
    parser.add_argument("--sanity", type=int, default=None, help="images for the randomisation check (25; 10)")
    parser.add_argument("--skip-cost", action="store_true", help="only the faithfulness table")
    parser.add_argument("--skip-faithfulness", action="store_true", help="only the cost table")
    args = parser.parse_args()
    setup(THREADS)
    rounds = 2 if args.quick else 7
    n = args.n or (40 if args.quick else 200)
    load_start = os.getloadavg()

    timings = {}
    models = {} if args.skip_cost else {"DenseNet-121, 224 px": (make_model(), make_image(0)),
                                        "demo model, 128 px": (load(), normalize(generate(1, seed=HELD_OUT_SEED)[0]))}
    for label, (model, x) in models.items():
        timings[label] = cost(model, x, rounds)
        print(label, timings[label], flush=True)
    rows, facts = ([], {}) if args.skip_faithfulness else faithfulness(n, args.sanity or (10 if args.quick else 25))

    lines = [f"`python {' '.join(sys.argv)}` — "
             f"{datetime.date.today()}, commit {git_commit()}, {rounds} interleaved round(s)", "",
             f"Machine: {machine()}. Load average at start: {' / '.join(f'{v:.2f}' for v in load_start)}; "
             f"at the end: {' / '.join(f'{v:.2f}' for v in os.getloadavg())}.", "",
             f"Versions: {versions('torch', 'zennit', 'captum', 'numpy')}", "",
             ]
    if timings:
        lines += ["### Cost", "",
                  "| model | contender | median wall | / forward + backward | median CPU | / forward + backward |",
                  "|---|---|---:|---:|---:|---:|"]
    for label, (times, canonize) in timings.items():
        wall, cpu = times["forward + backward"]
        for name, (w, c) in times.items():
            lines.append(f"| {label} | {name} | {w * 1000:.0f} ms | {w / wall:.2f}× | {c * 1000:.0f} ms | "
                         f"{c / cpu:.2f}× |")
        lines.append(f"| {label} | canonizing the copy (once per model) | {canonize * 1000:.0f} ms | | | |")
    if timings:
        lines += ["", f"Target: LRP ≤ {TARGET_RATIO}× one forward + backward.", ""]
    if rows:
        lines += ["### Faithfulness on the demo set", "",
                  f"{facts['images']} lesion images of {facts['drawn']} drawn with seed {HELD_OUT_SEED}, each explained "
                  f"for its true class; the lesion box covers {facts['box_share']:.1%} of the image on average. "
                  "Pointing: the map's maximum inside the box. Inside: the share of the map's positive mass inside "
                  "the box. Deletion AUC: probability as pixels are set to zero most-relevant first (lower is "
                  "better). Randomisation: mean |Spearman ρ| between the map and the map of a copy re-initialised "
                  f"from the head down to {facts['layer'].split('.')[-1]} (low is good).", "",
                  "| method | pointing | inside box | deletion AUC | randomisation ρ | median time |",
                  "|---|---:|---:|---:|---:|---:|"]
        for r in rows:
            lines.append(f"| {r['method']} | {r['pointing']:.1%} | {r['inside']:.1%} | {r['deletion']:.3f} | "
                         f"{r['sanity']:.2f} | {r['seconds'] * 1000:.0f} ms |")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
