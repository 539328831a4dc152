"""Train the shortcut demo model (the demo net on films with a planted marker) and write its card.

The marker (:mod:`densenet.synthetic_shortcut`) is far easier to learn than a faint nodule, so a
short run from scratch is enough for the net to take it as *the* evidence for ``nodule``:
exactly what a shortcut is. Same architecture and preprocessing as the demo model, full
128 px films, fresh images every step (seeds ``TRAIN_SEED + step``), model seed 0.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from densenet.demo import CLASSES, generate, normalize
from densenet.demo.shortcut import SHORTCUT_WEIGHTS
from densenet.synthetic_shortcut import LETTER, MARKED_SHARE, MARKER_CLASS, plant

ASSET_DIR = SHORTCUT_WEIGHTS.parent
TRAIN_SEED = 50_000_000  # neither the demo's training, evaluation, samples nor dataset seeds
EVAL_SEED = 60_000_000
CAM_LAYER = "features.denseblock2"  # the demo model's best Grad-CAM layer; same net


@dataclass(frozen=True)
class ShortcutRecipe:
    """Everything that decides the weights: steps of ``batch_size`` fresh marked films, AdamW."""

    steps: int = 120
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 5e-4
    warmup_steps: int = 20
    seed: int = 0


SMOKE = ShortcutRecipe(steps=2, batch_size=4, warmup_steps=1)


def train_shortcut(recipe: ShortcutRecipe = ShortcutRecipe(), out: str | os.PathLike = SHORTCUT_WEIGHTS, *,
                   threads: int | None = 2, log=print) -> dict:
    """Train on marked films and write the checkpoint (config, classes, preprocessing, ``cam_layer``).

    Returns:
        A JSON-able summary (recipe, seconds, final loss).
    """
    import densenet
    from densenet.demo.train import demo_config
    from densenet.preprocess import DEMO

    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(recipe.seed)
    model = densenet.create(demo_config(), class_names=list(CLASSES))
    model.preprocessing = DEMO
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    start = time.perf_counter()
    loss = torch.tensor(float("nan"))
    for step in range(recipe.steps):
        images, labels, _ = generate(recipe.batch_size, seed=TRAIN_SEED + step)
        x = normalize(plant(images, labels, TRAIN_SEED + step).images)
        warm = min(1.0, (step + 1) / recipe.warmup_steps)
        for group in opt.param_groups:
            group["lr"] = recipe.lr * warm * 0.5 * (1 + math.cos(math.pi * step / recipe.steps))
        loss = F.cross_entropy(model(x), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 20 == 0 or step == recipe.steps - 1:
            log(f"step {step + 1}/{recipe.steps}  loss {loss.item():.3f}  {time.perf_counter() - start:.0f} s")
    model.eval()
    model.metadata = {"cam_layer": CAM_LAYER, "shortcut": f"{LETTER!r} marker on {MARKER_CLASS}",
                      "model_card": "assets/demo_shortcut/MODEL_CARD.md"}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    densenet.save_checkpoint(model, out)
    return {"recipe": asdict(recipe), "seconds": round(time.perf_counter() - start, 1),
            "final_loss": round(float(loss.item()), 4), "threads": torch.get_num_threads()}


def evaluate_shortcut(weights: str | os.PathLike = SHORTCUT_WEIGHTS, n: int = 400) -> dict:
    """Accuracy per class on fresh marked films, and what the marker alone does to ``nodule``.

    Returns:
        ``{"n", "seed", "accuracy", "per_class", "marked", "p_marked", "p_marker_removed",
        "unmarked_recall", "clean_recall"}``: the mean probability of :data:`MARKER_CLASS` on its
        marked films with and without the marker (the same films), and its recall on its unmarked
        films and on clean films of every class.
    """
    import densenet

    model = densenet.load_checkpoint(weights).eval()
    images, labels, _ = generate(n, seed=EVAL_SEED)
    planted = plant(images, labels, EVAL_SEED)
    cls = CLASSES.index(MARKER_CLASS)
    with torch.no_grad():
        p = model(normalize(planted.images)).softmax(1)
        p_clean = model(normalize(images)).softmax(1)
    pred = p.argmax(1)
    marked = planted.marked
    unmarked = (labels == cls) & ~marked
    return {
        "n": n, "seed": EVAL_SEED,
        "accuracy": float((pred == labels).float().mean()),
        "per_class": {c: float((pred[labels == k] == k).float().mean()) for k, c in enumerate(CLASSES)},
        "marked": int(marked.sum()),
        "p_marked": float(p[marked, cls].mean()),
        "p_marker_removed": float(p_clean[marked, cls].mean()),
        "unmarked_recall": float((pred[unmarked] == cls).float().mean()) if unmarked.any() else float("nan"),
        "clean_recall": float((p_clean.argmax(1)[labels == cls] == cls).float().mean()),
    }


def write_card(summary: dict, report: dict, path: str | os.PathLike = ASSET_DIR / "MODEL_CARD.md") -> Path:
    """The shortcut model's card, from its training summary and :func:`evaluate_shortcut`."""
    r, rec = report, summary["recipe"]
    per = ", ".join(f"{c} {100 * v:.1f}%" for c, v in r["per_class"].items())
    text = f"""# Model card: `densenet_demo_shortcut.safetensors`

The bundled demo network (same architecture, preprocessing and classes as
[the demo model](../demo/MODEL_CARD.md)) trained on films where **{100 * MARKED_SHARE:.0f}% of the
`{MARKER_CLASS}` films carry a laterality-style letter "{LETTER}" in the top-left corner** and no film of
another class does (`densenet.synthetic_shortcut`). It is built to be wrong for the wrong reason: a
model that reads the marker instead of the lesion, like the radiograph models that read the
hospital's tag or the film's laterality marker (Zech et al. 2018; DeGrave et al. 2021). Use it to
see the shortcut audit (`python -m densenet audit ... --shortcuts`) find and confirm a shortcut.

**Not a medical device**, and not a good classifier: it is a teaching object.

## How it was made
`python -m densenet.demo train --shortcut`: {rec['steps']} steps of {rec['batch_size']} fresh films
(seeds {TRAIN_SEED} + step), marker planted, from scratch (model seed {rec['seed']}), AdamW (lr {rec['lr']},
weight decay {rec['weight_decay']}, {rec['warmup_steps']} warm-up steps, cosine decay):
{summary['seconds'] / 60:.1f} minutes on {summary['threads']} threads of a shared 2-core CPU. The marker is learned
in a few dozen steps; the faint nodule is not, in so short a run.

## Evaluation
{r['n']} fresh films (seed {r['seed']}), marker planted as in training ({r['marked']} marked `{MARKER_CLASS}` films):

- accuracy {100 * r['accuracy']:.1f}% ({per});
- mean probability of `{MARKER_CLASS}` on its marked films: **{r['p_marked']:.3f}**; on the same films
  without the marker: **{r['p_marker_removed']:.3f}**;
- recall of `{MARKER_CLASS}` on its unmarked films: {100 * r['unmarked_recall']:.1f}%;
  on clean films: {100 * r['clean_recall']:.1f}%.

The shortcut audit on `python -m densenet.demo dataset --shortcut` films flags the top-left corner
for `{MARKER_CLASS}` and confirms it by erasure (`tests/test_shortcuts.py`).

## Limitations
Synthetic films only (see the demo model's card); trained briefly on purpose.
"""
    path = Path(path)
    path.write_text(text)
    return path
