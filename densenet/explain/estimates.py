"""Time estimates for the captum methods (Integrated Gradients, SmoothGrad, Occlusion, Guided Grad-CAM).

Each estimate times one batch of the method's real unit of work on this machine (a forward and
backward of a few copies of the image, or a forward for Occlusion), after a warm-up, and multiplies
by the number of batches the method runs at its defaults: measured, not guessed, as
:func:`~densenet.explain.estimate_time` does for the forward-only CAMs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ._common import prepare_input

__all__ = ["attribution_estimate", "attribution_passes"]

_BATCH = 8  # copies timed together (the dashboard runs these methods in chunks of about this size)


def attribution_passes(method: str, x: Tensor, **options: Any) -> tuple[int, bool, str]:
    """How many images the method runs and whether each needs a backward pass, at its defaults.

    Returns:
        (images, backward, what each is in words).
    """
    h, w = x.shape[-2:]
    if method == "integrated-gradients":
        return int(options.get("steps") or 32), True, "forward and backward passes along the path"
    if method == "smoothgrad":
        return int(options.get("samples") or 16), True, "forward and backward passes of noisy copies"
    if method == "occlusion":
        window = options.get("window") or max(1, round(min(h, w) / 7))
        stride = options.get("stride") or max(1, window // 2)
        patches = (math.ceil((h - window) / stride) + 1) * (math.ceil((w - window) / stride) + 1)
        return patches, False, f"forwards with one {window}×{window} patch hidden"
    if method == "guided-gradcam":
        return 2, True, "forward and backward passes (Grad-CAM and guided backpropagation)"
    raise ValueError(f"no time estimate for {method!r}")


def attribution_estimate(method: str) -> Callable[..., Any]:
    """The ``estimate`` of a method record: ``estimate(model, x, layers, *, trace=None, top=None)`` returning a
    :class:`~densenet.explain.TimeEstimate`."""
    attribution_passes(method, torch.zeros(1, 1, 8, 8))  # an unknown method fails at registration

    def estimate(model: nn.Module, x: Tensor, layers: list[str] | None = None, *, trace: object = None,
                 top: int | None = None, index: int = 0, **options: Any) -> Any:
        # Imported here: perturbation registers its methods on import, after these (the registry's order).
        from .perturbation import TimeEstimate

        x1 = prepare_input(model, x, index)
        images, backward, work = attribution_passes(method, x1, **options)
        b = min(_BATCH, images)
        batch = x1.expand(b, *x1.shape[1:]).clone()
        took = float("inf")
        for _ in range(2):  # the first call warms up allocator and kernels
            start = time.perf_counter()
            if backward:
                with torch.enable_grad():
                    leaf = batch.detach().requires_grad_(True)
                    torch.autograd.grad(model(leaf)[:, 0].sum(), leaf)
            else:
                with torch.no_grad():
                    model(batch)
            took = min(took, time.perf_counter() - start)
        batches = math.ceil(images / b)
        device = "CPU" if x1.device.type == "cpu" else torch.cuda.get_device_name(x1.device)
        return TimeEstimate(seconds=took * batches, forwards=images, batches=batches, work=work, device=device)

    return estimate
