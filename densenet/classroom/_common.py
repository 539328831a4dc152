"""Helpers every classroom experiment shares: progress reporting, demo batches, seeding, timing."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..explain.registry import Cancelled, Progress

__all__ = ["Cancelled", "Progress", "Stepper", "demo_batch", "fit_exponent", "report", "seeded", "train_step"]


def report(progress: Progress | None, fraction: float) -> None:
    """Call ``progress`` with ``fraction`` clamped to [0, 1]; an exception it raises propagates (that stops the work)."""
    if progress is not None:
        progress(min(1.0, max(0.0, float(fraction))))


class Stepper:
    """Counts units of work and reports the fraction done to a progress callback.

    Args:
        progress: the callback (``None``: silent).
        total: the number of units the whole experiment does (> 0).
    """

    def __init__(self, progress: Progress | None, total: int) -> None:
        if total < 1:
            raise ValueError(f"total work must be >= 1 unit, got {total}")
        self.progress, self.total, self.done = progress, total, 0

    def step(self, units: int = 1) -> None:
        self.done += units
        report(self.progress, self.done / self.total)


def demo_batch(n: int, seed: int, size: int) -> tuple[Tensor, Tensor]:
    """``n`` generated demo images, normalised as the demo preset, (N, 1, size, size), and labels (N,)."""
    from ..synthetic import generate, normalize

    images, labels, _ = generate(n, seed, size)
    return normalize(images), labels


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's global generator for building models, restoring its state afterwards."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: Tensor, y: Tensor,
               forward: Callable[[Tensor], Tensor] | None = None) -> tuple[float, float]:
    """One SGD step on cross-entropy; returns (loss, accuracy) of the batch before the update.

    ``forward`` defaults to ``model``; pass another callable when the logits need a different route.
    """
    logits = (forward or model)(x)
    loss = F.cross_entropy(logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # the model is private to the experiment, so .grad on its parameters is fine
    optimizer.step()
    return float(loss.detach()), float((logits.detach().argmax(1) == y).float().mean())


def fit_exponent(x: list[float] | np.ndarray, y: list[float] | np.ndarray) -> float:
    """Least-squares slope of ``log y`` against ``log x``: the ``p`` of ``y ~ c * x**p``.

    Raises:
        ValueError: fewer than two points, or a non-positive value.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size < 2 or x.shape != y.shape:
        raise ValueError(f"need two or more matching points to fit an exponent, got {x.size} and {y.size}")
    if (x <= 0).any() or (y <= 0).any():
        raise ValueError("an exponent fit needs positive values")
    slope = np.polyfit(np.log(x), np.log(y), 1)[0]
    return float(slope) if math.isfinite(slope) else float("nan")
