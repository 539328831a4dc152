"""The demo model's out-of-distribution calibration: generated images (in) against the bundled photos (out).

It travels in the checkpoint's metadata (``model.metadata["ood"]``, read by
:func:`densenet.ood.threshold_for`), so the library needs no knowledge of the demo to use it.
``python -m densenet.demo evaluate`` writes it after stamping the weights.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from densenet import ood
from densenet.checkpoints import load_checkpoint, save_checkpoint
from densenet.images import load_image
from densenet.model import DenseNet
from densenet.preprocess import preprocess
from densenet.synthetic import generate, normalize

from . import SAMPLES_DIR

SEED = 30_000_000  # neither a training, evaluation nor sample seed of the demo
IMAGES = 256


def reference(n: int, seed: int) -> Tensor:
    """``n`` generated demo images, prepared as the demo model's inputs."""
    return normalize(generate(n, seed)[0])


def outliers(model: DenseNet) -> Tensor:
    """The bundled photos (``assets/samples/skimage_*.png``), prepared as ``model``'s inputs."""
    photos = sorted(SAMPLES_DIR.glob("skimage_*.png"))
    return torch.cat([preprocess(load_image(p), model) for p in photos])


def calibration(model: DenseNet, images: int = IMAGES) -> ood.Calibration:
    """Calibrate ``model`` on ``images`` generated images against the bundled photos."""
    return ood.calibrate(model, reference(images, SEED), outliers(model),
                         description=f"{images} generated demo images (seed {SEED}) vs the bundled photos")


def write_calibration(weights: str | os.PathLike, images: int = IMAGES) -> ood.Calibration:
    """Calibrate the model in ``weights`` and rewrite the file with the calibration in its metadata (same tensors)."""
    model = load_checkpoint(weights)
    found = calibration(model, images)
    save_checkpoint(ood.with_calibration(model, found), weights)
    return found
