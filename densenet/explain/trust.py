"""How far to trust a map: a model-randomisation sanity check and deletion/insertion curves.

- :func:`sanity_check` (Adebayo et al. 2018, "Sanity Checks for Saliency Maps"): re-initialise
  the model from the head down to the explained layer, on a copy, and compare the maps by rank
  correlation. A method that explains the model should give a different map for a model that
  learned nothing (low correlation); one that mostly shows edges of the image will not.
- :func:`deletion_insertion` (Petsiuk et al. 2018, RISE): remove the most salient pixels first
  and watch the target's probability fall (deletion, lower area is better), or reveal them
  first on a blurred image and watch it rise (insertion, higher area is better).

Both leave the given model untouched and hook-free; the check works on a ``copy.deepcopy``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model import DenseNet
from ..topology import topology
from ._common import is_multilabel, prepare_input, resolve_target, to_numpy, upsample
from . import registry
from .cam import CamMap, cam_maps
from .registry import Progress


@dataclass(frozen=True)
class SanityResult:
    """The outcome of :func:`sanity_check`.

    Attributes:
        rank_correlation: Spearman's rho between the two maps, in [-1, 1]; near 0 (say below
            0.3) means the map depends on what the model learned. 0.0 when either map is
            constant (nothing to rank).
        original: (H, W) map of the given model, [0, 1].
        randomized: (H, W) map of the re-initialised copy, [0, 1].
        reinitialised: module names re-initialised, in the order they were (head first).
    """

    rank_correlation: float
    original: np.ndarray
    randomized: np.ndarray
    reinitialised: list[str]


@dataclass(frozen=True)
class DeletionInsertion:
    """The outcome of :func:`deletion_insertion`.

    Attributes:
        deletion_auc: area under the deletion curve, [0, 1]; lower is better.
        insertion_auc: area under the insertion curve, [0, 1]; higher is better.
        fractions: (steps + 1,) fraction of pixels removed / inserted, 0 to 1.
        deletion_scores: (steps + 1,) target probability as pixels are removed.
        insertion_scores: (steps + 1,) target probability as pixels are revealed.
    """

    deletion_auc: float
    insertion_auc: float
    fractions: np.ndarray
    deletion_scores: np.ndarray
    insertion_scores: np.ndarray


# --- model randomisation ----------------------------------------------------------------------

def cascade_modules(model: DenseNet, layer: str) -> list[str]:
    """Modules from the head down to (and including) the one that produces ``layer``.

    Whole blocks and transitions are units; inside the block that holds a dense layer, the
    later dense layers come first, one by one.
    """
    model.resolve_layers(layer)
    found = topology(model.config).locate(layer)  # (block, node) for a dense layer, else None
    units = ["classifier"]
    for name, _ in reversed(model.stages):
        if layer == name:
            units.append(name)
            return units
        if found is not None and found[0].name == name:
            for dense_layer in reversed(found[0].dense_layers):
                units.append(dense_layer)
                if dense_layer == layer:
                    return units
        units.append(name)
    raise ValueError(f"layer {layer!r} is not produced by a module of model.features")


@torch.no_grad()
def _reinitialise(module: nn.Module, generator: torch.Generator) -> bool:
    """Fresh weights as the model's own initialisation draws them; True if anything changed.

    Drawn on the CPU from ``generator`` (then copied), so a seed gives the same weights on
    every device, and torch's global generator is left alone.
    """
    changed = False
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * math.sqrt(2.0 / fan_in))
            if m.bias is not None:
                m.bias.zero_()
            changed = True
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.in_features)
            m.weight.copy_(torch.rand(m.weight.shape, generator=generator) * 2 * bound - bound)
            if m.bias is not None:
                m.bias.zero_()
            changed = True
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_parameters()  # weight 1, bias 0, running mean 0 and variance 1
            changed = True
    return changed


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    a, b = a.ravel(), b.ravel()
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    return float(spearmanr(a, b).statistic)


def sanity_check(model: DenseNet, x: Tensor, target: int | None = None, layer: str = "features.norm5",
                 method: str = "gradcam", cascade: bool = True, seed: int = 0,
                 *, index: int = 0, original: CamMap | np.ndarray | None = None,
                 progress: Progress | None = None, options: dict | None = None) -> SanityResult:
    """Model-randomisation check (Adebayo et al. 2018) of one CAM method at one layer.

    Works on a ``copy.deepcopy`` of the model; the given model is only read.

    Args:
        model: a :class:`DenseNet` in eval mode.
        x: (C, H, W) or (N, C, H, W); sample ``index`` is explained.
        target: class or label index; ``None``: the given model's top prediction (the same
            target is explained on the randomised copy).
        layer: a name from ``model.tap_names``.
        method: a registered method: a CAM read from a trace, or any other (LRP, say) run through
            ``explain.compute``; at ``layer`` when it takes one.
        cascade: re-initialise everything from the head down to the module producing
            ``layer`` (classifier, norm5, then blocks and transitions in reverse order);
            ``False``: only the module producing ``layer`` (independent randomisation).
        seed: seed of the new weights.
        index: which sample of a batch.
        original: the given model's map of this very input, method, target and layer when the
            caller already has it (a :class:`CamMap` or its (H, W) ``map``); it is not recomputed.
            With ``target=None`` and a gradient method, pass the :class:`CamMap` (it names its target).
        progress: called with the fraction done between the steps.
        options: the method's own keywords (an LRP ``rule``), for methods run through the registry.

    Returns:
        A :class:`SanityResult` with both maps and Spearman's rank correlation between them.
    """
    x = prepare_input(model, x, index)
    layer = model.resolve_layers(layer)[0]
    record = registry.method(method)
    if isinstance(original, CamMap):
        if original.layer != layer or original.method != method:
            raise ValueError(f"the map given is {original.method} at {original.layer}, not {method} at {layer}")
        target = original.target if target is None else target
    # Methods that explain a class explain the same class on the randomised copy.
    t = resolve_target(model, x, target) if record.needs_graph or not record.uses_trace else None
    if original is None:
        original_map = _map_of(model, x, method, t, layer, options)
    else:
        original_map = np.asarray(getattr(original, "map", original), dtype=np.float32)
        if original_map.shape != tuple(x.shape[-2:]):
            raise ValueError(f"the map given is {original_map.shape}, the input {tuple(x.shape[-2:])}")
    if progress is not None:
        progress(0.2)

    private = copy.deepcopy(model)
    units = cascade_modules(private, layer) if cascade else [layer]
    generator = torch.Generator().manual_seed(seed)
    reinitialised = [name for name in units if _reinitialise(private.get_submodule(name), generator)]
    if progress is not None:
        progress(0.5)
    randomized = _map_of(private, x, method, t, layer, options)
    if progress is not None:
        progress(1.0)
    return SanityResult(rank_correlation=_spearman(original_map, randomized), original=original_map,
                        randomized=randomized, reinitialised=reinitialised)


def _map_of(model: DenseNet, x: Tensor, method: str, target: int | None, layer: str,
            options: dict | None = None) -> np.ndarray:
    """The shown (H, W) map of ``method``: a CAM from a trace at ``layer``, any other method through
    the registry (at ``layer`` if it takes one, else in input space)."""
    record = registry.method(method)
    if record.uses_trace:
        return cam_maps(model, x, method, target, [layer])[layer].map
    out = registry.compute(method, model, x, target, [layer] if record.needs_layer else None, **(options or {}))
    return next(iter(out.values())).map


# --- deletion / insertion ---------------------------------------------------------------------

def _gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of (N, C, H, W) with reflected borders."""
    radius = max(1, min(math.ceil(2 * sigma), x.shape[-2] - 1, x.shape[-1] - 1))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1),
                 groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1),
                    groups=c)


def _baseline(x: Tensor, baseline: str | float | Tensor) -> Tensor:
    if isinstance(baseline, Tensor):
        return baseline.to(device=x.device, dtype=x.dtype).expand_as(x).clone()
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(x, float(baseline))
    if baseline == "blur":
        # Petsiuk et al. blur with sigma 5 at 224 px; scale it with the image.
        return _gaussian_blur(x, sigma=max(0.5, 5.0 * min(x.shape[-2:]) / 224))
    if baseline == "zero":
        return torch.zeros_like(x)
    if baseline == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
    raise ValueError(f"baseline must be 'blur', 'zero', 'mean', a number or a tensor, got {baseline!r}")


def _saliency(cam_map: CamMap | np.ndarray | Tensor, size: tuple[int, int]) -> Tensor:
    if isinstance(cam_map, CamMap) or hasattr(cam_map, "map"):
        cam_map = cam_map.map
    m = cam_map.detach().float().cpu() if isinstance(cam_map, Tensor) else torch.as_tensor(
        np.asarray(cam_map, dtype=np.float32))
    if m.dim() != 2:
        raise ValueError(f"cam_map must be one (H, W) map, got shape {tuple(m.shape)}")
    if not torch.isfinite(m).all():
        raise ValueError("cam_map has NaN or infinite values")
    return upsample(m[None], size)[0]


def _auc(fractions: np.ndarray, scores: np.ndarray) -> float:
    return float(((scores[1:] + scores[:-1]) / 2 * np.diff(fractions)).sum())


def deletion_insertion(model: nn.Module, x: Tensor, cam_map: CamMap | np.ndarray | Tensor,
                       target: int | None = None, steps: int = 32, baseline: str | float | Tensor | None = None,
                       *, batch_size: int = 16, index: int = 0,
                       progress: Progress | None = None) -> DeletionInsertion:
    """Deletion and insertion curves of a saliency map (Petsiuk et al. 2018).

    Pixels are ranked by ``cam_map`` (ties by position). Deletion replaces the top fraction of
    pixels of ``x`` with the baseline; insertion starts from the baseline and puts the top
    fraction of ``x`` back. The score is the target's softmax probability (sigmoid for a
    multi-label model). The ``2 * (steps + 1)`` images go through the model ``batch_size`` at a
    time, without a graph.

    Args:
        model: in eval mode (any classifier returning (N, K) logits).
        x: (C, H, W) or (N, C, H, W); sample ``index`` is used.
        cam_map: a :class:`CamMap`, or an (h, w) map; resized (bilinear) to the input if needed.
        target: class or label index; ``None``: the top prediction.
        steps: curve points after the first; each step moves ``1 / steps`` of the pixels.
        baseline: what hidden pixels become, for both curves: ``"blur"`` (Gaussian, sigma 5 px
            at 224), ``"zero"``, ``"mean"`` (per channel), a number, or a tensor broadcastable to
            the input. ``None`` (default) follows the paper: deletion sets pixels to zero (the
            dataset mean, for normalised inputs), insertion starts from the blurred image. A
            blurred lesion often still reads as a lesion, so blur would make deletion look bad
            for a map that is right.
        batch_size: images per forward.
        index: which sample of a batch.
        progress: called with the fraction done between batches.

    Returns:
        A :class:`DeletionInsertion`; both areas are in [0, 1].
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    x = prepare_input(model, x, index)
    t = resolve_target(model, x, target)
    h, w = x.shape[-2:]
    saliency = _saliency(cam_map, (h, w)).flatten()
    order = torch.argsort(saliency, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    rank = rank.view(1, 1, h, w).to(x.device)  # 0 = most salient pixel

    fractions = np.arange(steps + 1, dtype=np.float64) / steps
    counts = torch.as_tensor(np.rint(fractions * h * w), dtype=torch.long, device=x.device)
    deleted = _baseline(x, "zero" if baseline is None else baseline)
    canvas = _baseline(x, "blur" if baseline is None else baseline)
    multilabel = is_multilabel(model)
    # Job j < steps + 1 deletes counts[j] pixels; job steps + 1 + j inserts counts[j] pixels.
    jobs = torch.arange(2 * (steps + 1), device=x.device)
    scores = []
    chunks = jobs.split(max(1, batch_size))
    with torch.no_grad():
        for i, chunk in enumerate(chunks):
            if progress is not None and i:
                progress(i / len(chunks))
            step = chunk % (steps + 1)
            hidden = rank < counts[step].view(-1, 1, 1, 1)  # (B, 1, H, W): the top pixels
            deleting = (chunk <= steps).view(-1, 1, 1, 1)
            images = torch.where(deleting, torch.where(hidden, deleted, x), torch.where(hidden, x, canvas))
            logits = model(images).float()
            if not t < logits.shape[1]:
                raise ValueError(f"target {t} out of range for {logits.shape[1]} classes")
            probs = torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)
            scores.append(probs[:, t])
    if progress is not None:
        progress(1.0)
    scores_np = to_numpy(torch.cat(scores)).astype(np.float64)
    deletion, insertion = scores_np[:steps + 1], scores_np[steps + 1:]
    return DeletionInsertion(deletion_auc=_auc(fractions, deletion), insertion_auc=_auc(fractions, insertion),
                             fractions=fractions.astype(np.float32), deletion_scores=deletion.astype(np.float32),
                             insertion_scores=insertion.astype(np.float32))
