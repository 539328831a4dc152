"""Train the demo DenseNet on freshly generated images: a fixed recipe, so every run is the same.

Step ``s`` draws a new batch with ``generate(batch, seed=s)`` (training seeds are
``0 .. steps - 1``; evaluation uses :data:`EVAL_SEED`, far above), so no image is seen twice.

Most steps train on 64x64 crops that contain the whole lesion: a quarter of the pixels, a
quarter of the compute (measured 8 vs 32 ms per image on 2 cores), and the label stays true
because the lesion is inside. The network is fully convolutional, so the same weights then
train on whole 128x128 images for the last steps, where the head's log-mean-exp pooling and
the BatchNorm statistics settle on the size the model is used at. AdamW, linear warm-up,
cosine decay; weights, data and crops are all seeded.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from densenet.demo import WEIGHTS_PATH
from densenet.synthetic import CLASSES, generate, normalize
from densenet.synthetic import model_config as demo_config  # the architecture the images are made for

ASSET_DIR = WEIGHTS_PATH.parent
EVAL_SEED = 10_000_000  # never a training seed (those are 0 .. steps - 1)
_CROP_SEED = 1  # crop offsets come from default_rng([_CROP_SEED, step])
_RUN_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "OMP_WAIT_POLICY")  # see __main__


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the trained weights (besides the code).

    Attributes:
        crop_steps: steps on ``crop`` x ``crop`` windows holding the whole lesion.
        full_steps: then steps on whole ``size`` x ``size`` images.
        batch_size: images per step.
        lr: peak learning rate (AdamW), reached after ``warmup_steps``, then cosine to 0.
        weight_decay: AdamW decay of conv and linear weights (not BatchNorm, not biases).
        seed: model initialisation.
    """

    crop_steps: int = 1200
    full_steps: int = 300
    batch_size: int = 32
    crop: int = 64
    size: int = 128
    lr: float = 3e-3
    weight_decay: float = 5e-4
    warmup_steps: int = 50
    seed: int = 0

    @property
    def steps(self) -> int:
        return self.crop_steps + self.full_steps


SMOKE = Recipe(crop_steps=1, full_steps=1, batch_size=4, warmup_steps=1)


def crop_around_lesions(images: torch.Tensor, boxes: torch.Tensor, crop: int,
                        rng: np.random.Generator) -> torch.Tensor:
    """Random ``crop`` x ``crop`` windows (N, C, crop, crop) that contain each image's lesion box.

    Args:
        images: (N, C, H, W).
        boxes: (N, 4) inclusive ``x0, y0, x1, y1``; all -1 (no lesion): any window.
        crop: window side; must be at least every box's width and height.
        rng: draws the offsets.
    """
    n, _, h, w = images.shape
    out = images.new_empty((n, images.shape[1], crop, crop))
    for i, (x0, y0, x1, y1) in enumerate(boxes.round().long().tolist()):
        if x0 < 0:  # no lesion
            lo_x, hi_x, lo_y, hi_y = 0, w - crop, 0, h - crop
        else:
            lo_x, hi_x = max(0, x1 - crop + 1), min(x0, w - crop)
            lo_y, hi_y = max(0, y1 - crop + 1), min(y0, h - crop)
            if lo_x > hi_x or lo_y > hi_y:
                raise ValueError(f"a {x1 - x0 + 1}x{y1 - y0 + 1} px lesion does not fit a {crop} px crop")
        ox, oy = int(rng.integers(lo_x, hi_x + 1)), int(rng.integers(lo_y, hi_y + 1))
        out[i] = images[i, :, oy:oy + crop, ox:ox + crop]
    return out


def batch(step: int, recipe: Recipe) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised inputs (N, 1, S, S) and labels (N,) of training step ``step``."""
    images, labels, boxes = generate(recipe.batch_size, seed=step, size=recipe.size)
    if step < recipe.crop_steps:
        images = crop_around_lesions(images, boxes, recipe.crop, np.random.default_rng([_CROP_SEED, step]))
    return normalize(images), labels  # exactly the DEMO preset: (x - 0.5) / 0.25


def train(recipe: Recipe = Recipe(), out: str | os.PathLike = WEIGHTS_PATH, *, progress: bool = True,
          threads: int | None = 2) -> dict:
    """Train the demo model and write it (with config, class names and preprocessing) to ``out``.

    Args:
        recipe: the training recipe; :data:`SMOKE` runs two tiny steps.
        out: where to write the ``.safetensors`` checkpoint (folders are created).
        progress: show a tqdm progress bar.
        threads: ``torch.set_num_threads`` value (None leaves it alone).

    Returns:
        A JSON-able summary: recipe, wall time, images seen, final running loss and accuracy.
    """
    import densenet
    from densenet.preprocess import DEMO
    from tqdm import tqdm

    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(recipe.seed)
    model = densenet.create(demo_config(), class_names=list(CLASSES))
    model.preprocessing = DEMO
    model.train()

    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr)

    def lr_at(step: int) -> float:
        if step < recipe.warmup_steps:
            return recipe.lr * (step + 1) / recipe.warmup_steps
        t = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
        return recipe.lr * 0.5 * (1 + math.cos(math.pi * t))

    start = time.perf_counter()
    ema_loss = ema_acc = float("nan")  # running averages over ~50 steps, shown on the bar
    phase_seconds = {"crop": 0.0, "full": 0.0}
    bar = tqdm(range(recipe.steps), desc="training", unit="step", disable=not progress,
               dynamic_ncols=True, mininterval=2.0)
    for step in bar:
        t0 = time.perf_counter()
        x, labels = batch(step, recipe)
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        logits = model(x)
        loss = F.cross_entropy(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        acc = (logits.detach().argmax(1) == labels).float().mean().item()
        ema_loss = loss.item() if math.isnan(ema_loss) else 0.98 * ema_loss + 0.02 * loss.item()
        ema_acc = acc if math.isnan(ema_acc) else 0.98 * ema_acc + 0.02 * acc
        phase_seconds["crop" if step < recipe.crop_steps else "full"] += time.perf_counter() - t0
        if step % 10 == 0 or step == recipe.steps - 1:
            bar.set_postfix(phase="crop" if step < recipe.crop_steps else "full", loss=f"{ema_loss:.3f}",
                            acc=f"{ema_acc:.3f}", lr=f"{lr_at(step):.1e}", refresh=False)
    seconds = time.perf_counter() - start
    bar.close()

    model.eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    densenet.save_checkpoint(model, out)
    return {
        "recipe": asdict(recipe),
        "steps": recipe.steps,
        "seconds": round(seconds, 1),
        "phase_seconds": {k: round(v, 1) for k, v in phase_seconds.items()},
        "images_seen": recipe.steps * recipe.batch_size,
        "final_running_loss": round(ema_loss, 4),
        "final_running_accuracy": round(ema_acc, 4),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "environment": {k: os.environ.get(k) for k in _RUN_ENV},
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def log_path_for(weights: str | os.PathLike) -> Path:
    """Where the training summary of ``weights`` lives: ``train_log.json`` beside them."""
    return Path(weights).with_name("train_log.json")


def write_log(summary: dict, path: str | os.PathLike) -> None:
    """Write the training summary next to the weights (the model card quotes it)."""
    Path(path).write_text(json.dumps(summary, indent=2) + "\n")
