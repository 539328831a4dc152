"""Say when not to trust a prediction at all: how unlike the model's training data an image is.

Every BatchNorm layer carries the per-channel mean and variance of its input over the training
set (``running_mean``, ``running_var``). For one image, the same statistics over its pixels should
look like those; an image unlike the training data moves them. The score is the Kullback-Leibler
divergence ``KL(N(m, v) || N(mu, sigma^2))`` per channel, averaged over the channels of two early
BatchNorm inputs: the stem convolution's output and the first dense block's output. Nothing but
the checkpoint is needed; a forward pass through the first block suffices.

A threshold turns the score into a warning. It is calibrated per model on reference images
(:func:`calibrate`: a high quantile of their scores, placed between them and known outliers when
some are given) and travels in ``model.metadata["ood"]`` (saved by ``save_checkpoint``); the bundled
demo model's (generated images vs the bundled photos, :mod:`densenet.demo.calibration`) is in its
checkpoint. Models without one get :data:`DEFAULT_THRESHOLD`, which a user can change. Images far smaller than the model's input are flagged separately (:func:`size_warning`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .topology import topology

DEFAULT_THRESHOLD = 1.0
"""Score above which an image is called unlike the training data when a model has no calibration
(a mean per-channel KL divergence of 1 nat: each channel's statistics about one standard deviation off)."""

SMALL_IMAGE_FACTOR = 4.0
"""An image is "far smaller" than the input when the model's view upsamples it more than this."""


@dataclass(frozen=True)
class Calibration:
    """A model's out-of-distribution threshold and how it was set.

    Attributes:
        threshold: scores above it are flagged.
        reference: what the in-distribution scores came from.
        quantile: the quantile of reference scores the threshold starts from.
        reference_quantile: that quantile's score.
        reference_max: the highest reference score.
        outliers_min: the lowest score of the known outliers (``None`` without outliers).
        auroc: how well the score ranks outliers above references (``None`` without outliers).
        n_reference, n_outliers: how many images each side had.
    """

    threshold: float
    reference: str
    quantile: float = 0.99
    reference_quantile: float | None = None
    reference_max: float | None = None
    outliers_min: float | None = None
    auroc: float | None = None
    n_reference: int = 0
    n_outliers: int = 0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Calibration:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class Assessment:
    """The verdict on one image.

    Attributes:
        score: the OOD score (see the module docstring); higher is stranger.
        threshold: the threshold used.
        threshold_source: ``"checkpoint"``, ``"default"`` or ``"user"``.
        unlike_training_data: ``score > threshold``.
        too_small: the image is far smaller than the model's input.
        warnings: sentences to show beside the prediction (empty when all is well).
    """

    score: float
    threshold: float
    threshold_source: str
    unlike_training_data: bool
    too_small: bool
    warnings: tuple[str, ...]

    @property
    def trusted(self) -> bool:
        return not self.warnings


# --- the score ------------------------------------------------------------------------------------

def _probes(model: nn.Module) -> list[tuple[str, str]]:
    """``(BatchNorm layer, the traced tensor it normalises)`` for the two early probes: the stem convolution's
    output and the first dense block's output."""
    topo = topology(model.config)
    conv, first = topo.stem_rows[0].name, topo.blocks[0]
    # The stem's own BatchNorm when it has one, else the first dense layer's, which reads the stem's maps first.
    stem = next((r.name for r in topo.stem_rows if r.name.endswith("norm0")), f"{first.dense_layers[0]}.norm1")
    block = f"{first.transition}.norm" if first.transition else first.output_name  # norm5 is itself a BatchNorm
    return [(stem, conv), (block, first.name)]


def _early_activations(model: nn.Module, x: Tensor, taps: set[str]) -> dict[str, Tensor]:
    """Run ``model.features`` only as far as the last tap (read-only: no hooks, no state)."""
    out: dict[str, Tensor] = {}
    with torch.no_grad():
        for key, module in model.stages:
            x = module(x)
            if key in taps:
                out[key] = x
            if len(out) == len(taps):
                break
    return out


def _kl_per_channel(a: Tensor, bn: nn.BatchNorm2d) -> Tensor:
    """(N, C, h, w) activations -> (N,) mean over channels of KL(image stats || running stats)."""
    a = a.detach().double()
    m = a.mean(dim=(2, 3))
    v = a.var(dim=(2, 3), unbiased=False)
    mu = bn.running_mean.detach().double().to(a.device)
    var = bn.running_var.detach().double().to(a.device) + bn.eps
    v = v + bn.eps
    kl = 0.5 * ((v + (m - mu) ** 2) / var - 1.0 - torch.log(v / var))  # (N, C)
    return kl.mean(dim=1)


def scores(model: nn.Module, x: Tensor, *, trace: object = None, batch_size: int = 64) -> Tensor:
    """The OOD score of every image of a prepared batch.

    Args:
        model: a DenseNet in eval mode (used read-only).
        x: ``(N, C, H, W)`` model inputs (``preprocess`` output), or ``(C, H, W)``.
        trace: a trace of exactly ``x`` holding ``features.conv0`` and ``features.denseblock1``;
            reused instead of a forward pass when given.
        batch_size: images per forward pass.

    Returns:
        ``(N,)`` float64 scores, >= 0.
    """
    if getattr(model, "training", False):
        raise ValueError("the model is in training mode; BatchNorm statistics would be the batch's: call .eval()")
    probes = _probes(model)
    taps = {tap for _, tap in probes}
    if trace is not None and taps <= set(getattr(trace, "activations", {})):
        acts = [{tap: trace.activations[tap] for tap in taps}]
    else:
        x = model.check_input(x) if hasattr(model, "check_input") else x
        acts = [_early_activations(model, x[i:i + batch_size], taps) for i in range(0, x.shape[0], batch_size)]
    parts = []
    for chunk in acts:
        per_probe = [_kl_per_channel(chunk[tap], model.get_submodule(bn)) for bn, tap in probes]
        parts.append(torch.stack(per_probe).mean(dim=0))
    return torch.cat(parts).cpu()


def score(model: nn.Module, x: Tensor, *, trace: object = None) -> float:
    """The OOD score of one prepared image ``(1, C, H, W)`` (see :func:`scores`)."""
    return float(scores(model, x[:1] if x.dim() == 4 else x, trace=trace)[0])


# --- thresholds -----------------------------------------------------------------------------------

def auroc(negatives: Sequence[float] | Tensor, positives: Sequence[float] | Tensor) -> float:
    """Probability that a positive scores above a negative (ties count one half)."""
    neg = np.asarray(torch.as_tensor(negatives, dtype=torch.float64))
    pos = np.asarray(torch.as_tensor(positives, dtype=torch.float64))
    if neg.size == 0 or pos.size == 0:
        raise ValueError("AUROC needs at least one score on each side")
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def calibrate(model: nn.Module, reference: Tensor, outliers: Tensor | None = None, *, quantile: float = 0.99,
              description: str = "reference images") -> Calibration:
    """Set a model's threshold from inputs it should trust, and optionally ones it should not.

    The threshold is the ``quantile`` of the reference scores; with outliers scoring above it, it is
    moved to the geometric mean of that quantile and the lowest outlier score (the midpoint on a
    log scale), so that both sides keep a margin.

    Args:
        model: the model (eval mode).
        reference: ``(N, C, H, W)`` prepared in-distribution inputs.
        outliers: prepared inputs known to be unlike the training data, or ``None``.
        quantile: of the reference scores, in (0, 1].
        description: what the reference images are (stored with the calibration).
    """
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"quantile must be in (0, 1], got {quantile}")
    ref = scores(model, reference).numpy()
    q = float(np.quantile(ref, quantile))
    threshold, out_min, area, n_out = q, None, None, 0
    if outliers is not None and outliers.shape[0]:
        out = scores(model, outliers).numpy()
        out_min, area, n_out = float(out.min()), auroc(ref, out), int(out.size)
        if out_min > q:
            threshold = math.sqrt(max(q, 1e-12) * out_min)
    return Calibration(threshold=float(threshold), reference=description, quantile=quantile, reference_quantile=q,
                       reference_max=float(ref.max()), outliers_min=out_min, auroc=area,
                       n_reference=int(ref.size), n_outliers=n_out)


def with_calibration(model: nn.Module, calibration: Calibration) -> nn.Module:
    """A shallow copy of ``model`` carrying ``calibration`` in its metadata (saved with it)."""
    import copy

    clone = copy.copy(model)
    clone.metadata = {**getattr(model, "metadata", {}), "ood": calibration.to_dict()}
    return clone


def threshold_for(model: nn.Module) -> tuple[float, str]:
    """The model's threshold and where it came from: ``"checkpoint"`` (its calibration) or ``"default"``."""
    stored = getattr(model, "metadata", {}).get("ood")
    if isinstance(stored, dict) and isinstance(stored.get("threshold"), (int, float)):
        return float(stored["threshold"]), "checkpoint"
    return DEFAULT_THRESHOLD, "default"


# --- the verdict ----------------------------------------------------------------------------------

def size_warning(height: int, width: int, model_or_preset: object) -> str | None:
    """A sentence when the model's view upsamples the image more than :data:`SMALL_IMAGE_FACTOR`, else ``None``."""
    from .geometry import seen_box
    from .presets import resolve_preset

    preset = resolve_preset(model_or_preset)
    x0, y0, x1, y1 = seen_box(height, width, preset)
    seen = {"crop": min(x1 - x0, y1 - y0), "resize": min(height, width), "letterbox": max(height, width)}[preset.geometry]
    factor = preset.size / max(seen, 1e-9)
    if factor <= SMALL_IMAGE_FACTOR:
        return None
    return (f"the image is {width} x {height} pixels, far smaller than the model's {preset.size} x {preset.size} "
            f"input: it is enlarged {factor:.0f}x, so the model sees mostly interpolation")


def assess(model: nn.Module, x: Tensor, *, image_size: tuple[int, int] | None = None, trace: object = None,
           threshold: float | None = None) -> Assessment:
    """Whether to trust a prediction on this image at all.

    Args:
        model: the model (eval mode, read-only).
        x: the prepared input ``(1, C, H, W)``.
        image_size: the original image's ``(height, width)``, for the size warning.
        trace: a trace of ``x`` to reuse (see :func:`scores`).
        threshold: a user's threshold; ``None``: :func:`threshold_for` the model.
    """
    value = score(model, x, trace=trace)
    if threshold is None:
        limit, source = threshold_for(model)
    else:
        limit, source = float(threshold), "user"
    warnings: list[str] = []
    unlike = value > limit
    if unlike:
        warnings.append(f"this image is unlike the model's training data (score {value:.2f} > {limit:.2f}, "
                        f"{source} threshold): do not trust the prediction")
    small = None if image_size is None else size_warning(image_size[0], image_size[1], model)
    if small:
        warnings.append(small)
    return Assessment(score=value, threshold=limit, threshold_source=source, unlike_training_data=unlike,
                      too_small=small is not None, warnings=tuple(warnings))

