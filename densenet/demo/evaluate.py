"""Measure the demo model on held-out generated images and write its model card.

Three questions, each against a known truth because the generator knows where it drew the lesion:

- Does it classify? Accuracy on images from a seed no training step used.
- Does Grad-CAM point at the lesion? The pointing game: on lesion images, does the map's peak
  (explaining the true class) fall inside the lesion's box? Per layer, against a baseline that
  needs no model: the brightest spot of the blurred image.
- Does the map depend on what the model learned? The cascading model-randomisation check
  (Adebayo et al. 2018, ``densenet.explain.sanity_check``): re-initialise from the head down
  through the explained layer and compare the maps by rank correlation.
"""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from densenet.synthetic import CLASSES, generate, normalize
from densenet.demo.train import EVAL_SEED

LAYERS: tuple[str, ...] = (
    "features.denseblock1", "features.transition1", "features.denseblock2",
    "features.transition2", "features.denseblock3", "features.norm5",
)
BASELINE_SIGMAS: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 6.0)


def predict(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """Class indices (N,) for [0, 1] images (N, 1, H, W), normalised as the DEMO preset does."""
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            out.append(model(normalize(images[i:i + batch_size])).argmax(1))
    return torch.cat(out)


def in_box(points_yx: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Whether each (row, col) point (N, 2) lies in its inclusive box ``x0, y0, x1, y1`` (N, 4)."""
    y, x = points_yx[:, 0].float(), points_yx[:, 1].float()
    return (x >= boxes[:, 0]) & (x <= boxes[:, 2]) & (y >= boxes[:, 1]) & (y <= boxes[:, 3])


def peaks(maps: torch.Tensor) -> torch.Tensor:
    """(row, col) of the maximum of each (N, H, W) map, (N, 2); the first one on ties."""
    flat = maps.flatten(1).argmax(1)
    return torch.stack([flat // maps.shape[-1], flat % maps.shape[-1]], 1)


def grad_cam_maps(model: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                  layers: tuple[str, ...] = LAYERS, batch_size: int = 64,
                  progress: bool = False) -> dict[str, torch.Tensor]:
    """Grad-CAM maps (N, H, W) in [0, 1] per layer, each image explained for its own target.

    Images sharing a target are traced together (one forward and one backward per batch),
    through ``densenet.explain.cams_from_trace``; each map equals ``grad_cam(model, x, target,
    layers, index=i)`` for that image, since the model is in eval mode and samples are independent.
    """
    from densenet.explain import cams_from_trace

    n, _, h, w = images.shape
    out = {name: torch.zeros(n, h, w) for name in layers}
    bar = tqdm(total=n, desc="Grad-CAM", unit="image", disable=not progress)
    for t in targets.unique().tolist():
        idx = (targets == t).nonzero().flatten()
        for i in range(0, len(idx), batch_size):
            part = idx[i:i + batch_size]
            trace = model.trace(normalize(images[part]), list(layers), keep_graph=True)
            for j, k in enumerate(part.tolist()):
                for name, cam_map in cams_from_trace(trace, "gradcam", int(t), list(layers), index=j).items():
                    out[name][k] = torch.from_numpy(cam_map.map)
            bar.update(len(part))
    bar.close()
    return out


def blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, 1, H, W) with reflected borders."""
    r = max(1, int(round(3 * sigma)))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    x = F.conv2d(F.pad(images, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))


def brightest_spot_hits(images: torch.Tensor, boxes: torch.Tensor, sigma: float) -> torch.Tensor:
    """The model-free baseline: is the brightest pixel of the blurred image in the box? (N,) bool."""
    return in_box(peaks(blur(images, sigma)[:, 0]), boxes)


def evaluate(weights: str | os.PathLike, n: int = 1000, seed: int = EVAL_SEED, sanity_images: int = 100,
             threads: int | None = 2, progress: bool = True) -> dict:
    """Accuracy, per-layer pointing game, baseline and sanity check of a demo checkpoint.

    Args:
        weights: a demo checkpoint (``.safetensors``).
        n: held-out images to draw with ``seed``.
        seed: generator seed; the default is never used in training.
        sanity_images: lesion images per layer for the randomisation check (each needs two
            traces of one image on a model copy).
        threads: ``torch.set_num_threads`` value (None leaves it alone).
        progress: show tqdm progress bars (Grad-CAM maps, sanity checks).

    Returns:
        A JSON-able dict of every figure the model card quotes.
    """
    import densenet
    from densenet.explain import sanity_check

    if threads is not None:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    model = densenet.load_checkpoint(weights).eval()
    images, labels, boxes = generate(n, seed)
    pred = predict(model, images)
    correct = pred == labels
    confusion = torch.zeros(len(CLASSES), len(CLASSES), dtype=torch.long)
    confusion.index_put_((labels, pred), torch.ones_like(labels), accumulate=True)

    lesion = labels > 0
    maps = grad_cam_maps(model, images[lesion], labels[lesion], progress=progress)
    pointing = {name: in_box(peaks(m), boxes[lesion]) for name, m in maps.items()}
    lesion_labels = labels[lesion]

    baseline = {sigma: brightest_spot_hits(images[lesion], boxes[lesion], sigma).float().mean().item()
                for sigma in BASELINE_SIGMAS}

    # Sanity check on the first lesion images the model classifies correctly.
    ok = (lesion & correct).nonzero().flatten()[:sanity_images]
    sanity = {}
    bar = tqdm(total=len(LAYERS) * len(ok), desc="sanity checks", unit="map", disable=not progress)
    for name in LAYERS:
        rhos = []
        for i in ok.tolist():
            rhos.append(sanity_check(model, normalize(images[i:i + 1]), target=int(labels[i]), layer=name,
                                     seed=0).rank_correlation)
            bar.update()
        sanity[name] = {"mean_rank_correlation": float(np.mean(rhos)), "images": len(rhos),
                        "fraction_below_0.3": float(np.mean(np.array(rhos) < 0.3))}

    size_px = (boxes[:, 2] - boxes[:, 0] + 1).maximum(boxes[:, 3] - boxes[:, 1] + 1)[lesion]
    small = size_px < 12
    best = max(pointing, key=lambda k: pointing[k].float().mean().item())
    return {
        "weights": Path(weights).name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "n": n,
        "seed": seed,
        "accuracy": correct.float().mean().item(),
        "per_class_accuracy": {c: correct[labels == i].float().mean().item() for i, c in enumerate(CLASSES)},
        "confusion": confusion.tolist(),
        "lesion_images": int(lesion.sum()),
        "pointing": {name: hits.float().mean().item() for name, hits in pointing.items()},
        "pointing_per_class": {name: {CLASSES[c]: hits[lesion_labels == c].float().mean().item() for c in (1, 2, 3)}
                               for name, hits in pointing.items()},
        "pointing_small": {name: hits[small].float().mean().item() for name, hits in pointing.items()} if small.any() else {},
        "small_lesions": int(small.sum()),
        "best_layer": best,
        "baseline_brightest_spot": {str(k): v for k, v in baseline.items()},
        "sanity": sanity,
        "seconds": round(time.perf_counter() - start, 1),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "date": date.today().isoformat(),
    }


def stamp_checkpoint(weights: str | os.PathLike, r: dict) -> None:
    """Record the measured best Grad-CAM layer (and the figures behind it) in the checkpoint.

    Rewrites ``weights`` with the same tensors and ``model.metadata`` set to ``cam_layer`` (the
    dashboard explains that layer first), accuracy and pointing game, so the checkpoint itself
    says where its maps are best read.
    """
    import densenet

    model = densenet.load_checkpoint(weights)
    model.metadata = {
        "cam_layer": r["best_layer"],
        "eval_accuracy": round(r["accuracy"], 4),
        "eval_pointing_game": {name: round(v, 4) for name, v in r["pointing"].items()},
        "eval_seed": r["seed"],
        "eval_images": r["n"],
        "model_card": "assets/demo/MODEL_CARD.md",
    }
    densenet.save_checkpoint(model, weights)


def refresh_ood_calibration(weights: str | os.PathLike) -> Path:
    """Calibrate the out-of-distribution score of the weights just evaluated and store it in their metadata.

    :func:`stamp_checkpoint` writes the metadata afresh, so this comes after it; the calibration then
    travels with the file (:func:`densenet.ood.threshold_for` reads it), whatever weights these are.

    Returns:
        ``weights``, rewritten (same tensors).
    """
    from densenet.demo.calibration import write_calibration

    write_calibration(weights)
    return Path(weights)


def format_report(r: dict) -> str:
    """The figures as plain text for the terminal."""
    lines = [f"accuracy on {r['n']} held-out images (seed {r['seed']}): {r['accuracy']:.1%}",
             "  per class: " + ", ".join(f"{c} {a:.1%}" for c, a in r["per_class_accuracy"].items()),
             f"Grad-CAM pointing game on {r['lesion_images']} lesion images (true class explained):"]
    for name, hit in r["pointing"].items():
        s = r["sanity"][name]
        lines.append(f"  {name:24s} {hit:6.1%}   sanity rank corr {s['mean_rank_correlation']:+.2f}")
    base = r["baseline_brightest_spot"]
    best_sigma = max(base, key=base.get)
    lines.append(f"baseline (brightest spot of the blurred image, best sigma {best_sigma}): {base[best_sigma]:.1%}")
    lines.append(f"best layer: {r['best_layer']} ({r['pointing'][r['best_layer']]:.1%}); took {r['seconds']:.0f} s")
    return "\n".join(lines)


_LAYER_RES = {"features.denseblock1": 64, "features.transition1": 32, "features.denseblock2": 32,
              "features.transition2": 16, "features.denseblock3": 16, "features.norm5": 16}


def write_model_card(r: dict, path: str | os.PathLike, train_log: str | os.PathLike | None = None) -> None:
    """Write ``MODEL_CARD.md`` from an :func:`evaluate` report and the training summary, and the
    report itself as ``evaluation.json`` beside it."""
    Path(path).with_name("evaluation.json").write_text(json.dumps(r, indent=2) + "\n")
    log = json.loads(Path(train_log).read_text()) if train_log and Path(train_log).exists() else {}
    recipe = log.get("recipe", {})
    base = r["baseline_brightest_spot"]
    best_sigma = max(base, key=base.get)
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    rows = "\n".join(
        f"| `{name}` | {_LAYER_RES.get(name, '?')}×{_LAYER_RES.get(name, '?')} | {pct(hit)} | "
        + " | ".join(pct(r["pointing_per_class"][name][c]) for c in CLASSES[1:])
        + (f" | {pct(r['pointing_small'][name])}" if r["pointing_small"] else " | –")
        + f" | {r['sanity'][name]['mean_rank_correlation']:+.2f} |"
        for name, hit in r["pointing"].items())
    confusion = "\n".join(f"| **{CLASSES[i]}** | " + " | ".join(str(v) for v in row) + " |"
                          for i, row in enumerate(r["confusion"]))
    minutes = log.get("seconds", float("nan")) / 60
    phase = log.get("phase_seconds", {})
    phases = f"{phase.get('crop', float('nan')) / 60:.1f} on crops, {phase.get('full', float('nan')) / 60:.1f} on whole images"
    text = f"""# Model card: `densenet_demo.safetensors`

The model the dashboard opens on. A DenseNet-BC of {r["parameters"]:,} parameters trained from scratch, on this
machine's CPU, on procedurally generated radiograph-like images (`densenet.demo.generate`), so that
it works offline and so that where it *should* look is known for every image.

**Not a medical device.** It has never seen a real radiograph; on real images its outputs mean nothing.

## Classes
`{", ".join(CLASSES)}` (index 0 to 3). One lesion per image, or none:

| class | what the generator draws |
|---|---|
| `none` | no lesion (distractors only) |
| `nodule` | a filled round disc, radius 4–10 px, domed (brighter in the middle), soft edge |
| `opacity` | a hazy filled ellipse, semi-axes 8–17 px by a 2.4–4× shorter one, any angle |
| `ring` | an annulus, radius 6–12 px, 1.8–3.2 px thick |

Every image also has a smooth tissue background, curved rib-like bands, faint bent vessels,
short bright segments and tiny specks (distractors, in every class), a random gain and noise.
Lesion contrast is 0.08–0.25 on a [0, 1] scale, at a random position.

## Input
One channel, 128×128, pixels in [0, 1] normalised as `(x - 0.5) / 0.25` (the `demo` preprocessing
preset, stored in the checkpoint's metadata together with the config and class names).
Load it with `densenet.load_checkpoint("assets/demo/densenet_demo.safetensors")` or `densenet.demo.load()`.

## Architecture
`DenseNetConfig(growth_rate=12, block_config=(4, 4, 4), num_init_features=24, bn_size=4,
compression=0.5, in_channels=1, num_classes=4, stem="small", pool="lme", null_class=True)`:
a 3×3 stride-1 stem conv with BN, ReLU and a 3×3/2 max-pool, then three dense blocks of four
bottleneck layers at 64, 32 and 16 px, joined by transitions that halve channels and resolution.
The head classifies every 16×16 location and pools the scores by log-mean-exp (sharpness 5);
`none` is a fixed zero logit, so each lesion logit is evidence against "nothing there".

## How it was made
`{log.get("command", "python -m densenet.demo train")}`: {log.get("steps", "?")} steps of
{recipe.get("batch_size", "?")} fresh images ({log.get("images_seen", "?")} images; step `s` draws
`generate(batch, seed=s)`, so no image is seen twice). The first {recipe.get("crop_steps", "?")} steps train on
{recipe.get("crop", "?")}×{recipe.get("crop", "?")} crops that contain the whole lesion (a quarter of the compute
per image; the label stays true), the last {recipe.get("full_steps", "?")} on whole {recipe.get("size", "?")}×{recipe.get("size", "?")}
images, so that the log-mean-exp pooling and the BatchNorm statistics settle on the size the model
is used at. AdamW (peak lr {recipe.get("lr", "?")}, weight decay {recipe.get("weight_decay", "?")} on conv and linear
weights), {recipe.get("warmup_steps", "?")} warm-up steps then cosine decay to 0, model seed {recipe.get("seed", "?")}.

It took **{minutes:.1f} minutes** ({phases}) on {log.get("threads", "?")} threads of a
{log.get("cores", "?")}-core {log.get("cpu", "?")} shared with other jobs, torch {log.get("torch", "?")}.
`python -m densenet.demo` re-executes itself with glibc's allocator told to keep freed memory
(`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`, `MALLOC_TOP_PAD_`: 1.4× faster steps) and
`OMP_WAIT_POLICY=PASSIVE` (OpenMP threads that spin at barriers starve each other on a busy
machine: 3–10× slower steps without it). Final running training accuracy (last ~50 steps):
{pct(log.get("final_running_accuracy", float("nan")))}.

## Evaluation
`python -m densenet.demo evaluate` on {r["n"]} images drawn with seed {r["seed"]} (no training step
used it), {r["date"]}:

**Accuracy: {pct(r["accuracy"])}** ({", ".join(f"{c} {pct(a)}" for c, a in r["per_class_accuracy"].items())}).

| true \\ predicted | {" | ".join(CLASSES)} |
|---|---|---|---|---|
{confusion}

### Does Grad-CAM point at the lesion?
Pointing game on the {r["lesion_images"]} lesion images: the Grad-CAM map (`densenet.explain`,
explaining the true class) counts as a hit when its peak falls inside the lesion's box: the pointing game **by box**,
which a dataset audit reports as `hit_rate_box` (its `hit_box` column). An audit's headline `hit` is the
pointing game **by mask** where the image has a mask (CheXlocalize's definition): for the `ring`, an annulus,
the peak usually sits in the ring's hole, inside the box but outside the mask, so its hit rate by mask is
far lower than its hit rate here by box; the two numbers answer different questions.
Sanity: the mean Spearman rank correlation between the map and the map of a copy re-initialised
from the head down through that layer (cascading randomisation, `densenet.explain.sanity_check`,
{r["sanity"][LAYERS[0]]["images"]} correctly classified lesion images per layer); near 0 means the map
depends on what the model learned.

| layer | map | pointing | nodule | opacity | ring | small (< 12 px, {r["small_lesions"]}) | sanity ρ |
|---|---|---|---|---|---|---|---|
{rows}

Best layer: `{r["best_layer"]}` ({pct(r["pointing"][r["best_layer"]])}); the checkpoint's metadata names it
(`cam_layer`), so the dashboard explains it first. A model-free baseline, the
brightest pixel of the image blurred with a Gaussian (best of σ = {", ".join(base)} px: σ = {best_sigma}),
hits {pct(base[best_sigma])}.

## Limitations
- Synthetic data only: four hand-made shapes on a hand-made background. It knows nothing of anatomy
  or real pathology, and any real image (the bundled photos, CT and MR slices) is out of distribution.
- One lesion per image at most; with two, the softmax still names one class.
- Thin opacities can be taken for the bright distractor segments, and the 16 px maps (block 3, norm5)
  are coarse for the smallest lesions.
- The pointing game asks only whether the peak is in the box, not whether the map covers the lesion.

Re-create: `python -m densenet.demo train && python -m densenet.demo evaluate`
(evaluation took {r["seconds"]:.0f} s).
"""
    Path(path).write_text(text)
