"""Input attributions through captum, not re-implemented: Integrated Gradients, SmoothGrad,
Occlusion and Guided Grad-CAM, all with one call shape and one result type.

Safety on a shared model: Integrated Gradients, SmoothGrad (Saliency in a NoiseTunnel) and
Occlusion only call the model and differentiate with respect to a private copy of the input,
so they register no hook and run directly on the given model. Guided Grad-CAM needs hooks
(a forward hook on the layer, backward hooks on every ReLU), so it runs on a private
``copy.deepcopy`` of the model made per call: the shared model never carries a hook, even
for a moment, and concurrent calls never see each other's hooks.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

# captum is imported inside each function: it takes about a second to load (matplotlib and
# more), which the CAM family, and every page that does not use attributions, need not pay.

from . import registry
from .estimates import attribution_estimate
from ._common import normalise, prepare_input, resolve_target, to_numpy
from .registry import INPUT, Kind, Method, Progress, register

# captum warns on every GuidedBackprop call that it hooks the ReLUs; ours are on a private
# copy of the model (see guided_grad_cam), so the warning only adds noise to the logs.
warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU activations", category=UserWarning,
                        module="captum")


@dataclass(frozen=True)
class Attribution:
    """One input attribution.

    Attributes:
        raw: (H, W) float32, signed: the attribution summed over input channels (Occlusion:
            averaged, since its window spans every channel and each holds the same value).
        map: (H, W) float32 in [0, 1]: ``|raw|`` min-max normalised.
        method: the registered method's name.
        target: the class or label index explained.
        layer: the layer a layer-guided method (Guided Grad-CAM) used; ``None`` otherwise.
    """

    raw: np.ndarray
    map: np.ndarray
    method: str
    target: int
    layer: str | None = None

    def clipped(self, percentile: float = 99.0) -> np.ndarray:
        """``map`` rescaled so its ``percentile`` becomes 1 (clipped): a few extreme pixels
        otherwise leave the rest of a gradient map nearly black (captum's ``outlier_perc``)."""
        if not 0 < percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {percentile}")
        top = float(np.percentile(self.map, percentile))
        return np.clip(self.map / top, 0, 1).astype(np.float32) if top > 0 else self.map.copy()


def _result(attr: Tensor, method: str, target: int, reduce: str = "sum", layer: str | None = None) -> Attribution:
    # attr: (1, C, H, W) -> (H, W)
    raw = attr.detach().float().sum(dim=1) if reduce == "sum" else attr.detach().float().mean(dim=1)
    return Attribution(raw=to_numpy(raw[0]), map=to_numpy(normalise(raw.abs())[0]), method=method, target=target,
                       layer=layer)


def _reporting(model: Callable[[Tensor], Tensor], expected_calls: int,
               progress: Progress | None) -> Callable[[Tensor], Tensor]:
    """``model`` wrapped so that ``progress`` hears the fraction done after each of captum's chunks.

    captum evaluates its chunks (path points, noisy copies, occluded images) one forward each;
    whatever ``progress`` does between them (draw a bar, let other work go first, raise to
    cancel) happens between two chunks.
    """
    if progress is None:
        return model
    calls = 0

    def forward(inputs: Tensor) -> Tensor:
        nonlocal calls
        if calls:
            progress(min(calls / expected_calls, 0.999))
        out = model(inputs)
        calls += 1
        return out

    return forward


def _with_grad(x: Tensor) -> Tensor:
    # captum differentiates with respect to its inputs; give it our own copy so that the
    # caller's tensor keeps its requires_grad flag (and captum does not warn).
    return x.detach().clone().requires_grad_(True)


def integrated_gradients(model: nn.Module, x: Tensor, target: int | None = None, steps: int = 32,
                         *, internal_batch_size: int = 8, index: int = 0,
                         progress: Progress | None = None) -> Attribution:
    """Integrated Gradients from an all-zero input (captum ``IntegratedGradients``).

    Zero is the per-channel dataset mean for mean/std-normalised inputs. Runs on the given
    model (no hooks).

    Args:
        model: in eval mode, on any device.
        x: (C, H, W) or (N, C, H, W); sample ``index`` is explained.
        target: class or label index; ``None``: the top prediction.
        steps: points on the path (Gauss-Legendre); more is slower and closer to the integral.
        internal_batch_size: path points per forward/backward, to bound memory.
        index: which sample of a batch.
        progress: called with the fraction done between chunks (:data:`~densenet.explain.Progress`).

    Returns:
        An :class:`Attribution` with ``method="integrated-gradients"``.
    """
    from captum.attr import IntegratedGradients

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    x = prepare_input(model, x, index)
    t = resolve_target(model, x, target)
    chunk = max(1, internal_batch_size)
    forward = _reporting(model, math.ceil(steps / chunk), progress)
    attr = IntegratedGradients(forward).attribute(_with_grad(x), baselines=torch.zeros_like(x), target=t,
                                                  n_steps=steps, internal_batch_size=chunk)
    if progress is not None:
        progress(1.0)
    return _result(attr, "integrated-gradients", t)


def smoothgrad(model: nn.Module, x: Tensor, target: int | None = None, samples: int = 16, stdev: float = 0.15,
               *, batch_size: int = 8, index: int = 0, progress: Progress | None = None) -> Attribution:
    """SmoothGrad: input gradients averaged over noisy copies (captum ``NoiseTunnel(Saliency)``).

    The noise comes from torch's global generator (captum draws it), so two calls differ
    slightly; keep the result rather than recomputing on every redraw. Runs on the given
    model (no hooks).

    Args:
        model: in eval mode, on any device.
        x: (C, H, W) or (N, C, H, W); sample ``index`` is explained.
        target: class or label index; ``None``: the top prediction.
        samples: noisy copies.
        stdev: noise level as a fraction of the input's range ``x.max() - x.min()``
            (Smilkov et al. 2017 recommend 0.1-0.2).
        batch_size: noisy copies per forward/backward.
        index: which sample of a batch.
        progress: called with the fraction done between chunks (:data:`~densenet.explain.Progress`).

    Returns:
        An :class:`Attribution` with ``method="smoothgrad"`` (signed mean gradient, summed over channels).
    """
    from captum.attr import NoiseTunnel, Saliency

    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if stdev < 0:
        raise ValueError(f"stdev must be >= 0, got {stdev}")
    x = prepare_input(model, x, index)
    t = resolve_target(model, x, target)
    sigma = float(stdev * (x.max() - x.min()))
    chunk = max(1, batch_size)
    forward = _reporting(model, math.ceil(samples / chunk), progress)
    attr = NoiseTunnel(Saliency(forward)).attribute(_with_grad(x), nt_type="smoothgrad", nt_samples=samples,
                                                    nt_samples_batch_size=chunk, stdevs=sigma, target=t, abs=False)
    if progress is not None:
        progress(1.0)
    return _result(attr, "smoothgrad", t)


def occlusion(model: nn.Module, x: Tensor, target: int | None = None, window: int | None = None,
              stride: int | None = None, progress: Progress | None = None,
              *, batch_size: int = 16, index: int = 0) -> Attribution:
    """Occlusion: how much the target's raw logit drops when a square patch is set to zero
    (captum ``Occlusion``; the patch spans every channel).

    Runs on the given model (no hooks). Cost: about ``((H - window) / stride + 1)^2`` images,
    evaluated ``batch_size`` at a time (DenseNet-121 at 224 with the defaults: 170 images).

    Args:
        model: in eval mode, on any device.
        x: (C, H, W) or (N, C, H, W); sample ``index`` is explained.
        target: class or label index; ``None``: the top prediction.
        window: side of the patch in pixels; ``None``: a seventh of the shorter side (32 at 224).
        stride: step between patches; ``None``: half the window.
        progress: called with the fraction done between batches (:data:`~densenet.explain.Progress`).
        batch_size: occluded images per forward.
        index: which sample of a batch.

    Returns:
        An :class:`Attribution` with ``method="occlusion"``; positive where hiding a pixel
        lowers the logit.
    """
    from captum.attr import Occlusion

    x = prepare_input(model, x, index)
    t = resolve_target(model, x, target)
    c, h, w = x.shape[1:]
    window = max(1, round(min(h, w) / 7)) if window is None else int(window)
    stride = max(1, window // 2) if stride is None else int(stride)
    if not 1 <= window <= min(h, w):
        raise ValueError(f"window must be between 1 and {min(h, w)} pixels, got {window}")
    if not 1 <= stride <= window:
        raise ValueError(f"stride must be between 1 and the window ({window}), got {stride}")
    batch_size = max(1, batch_size)
    patches = (math.ceil((h - window) / stride) + 1) * (math.ceil((w - window) / stride) + 1)
    forward = _reporting(model, 1 + math.ceil(patches / batch_size), progress)  # unoccluded, then batches
    attr = Occlusion(forward).attribute(x, sliding_window_shapes=(c, window, window), strides=(c, stride, stride),
                                        baselines=0.0, target=t, perturbations_per_eval=batch_size)
    if progress is not None:
        progress(1.0)
    return _result(attr, "occlusion", t, reduce="mean")


def guided_grad_cam(model: nn.Module, x: Tensor, target: int | None = None, layer: str = "features.norm5",
                    *, index: int = 0) -> Attribution:
    """Guided Grad-CAM: guided backpropagation times the upsampled Grad-CAM of ``layer``
    (captum ``GuidedGradCam``, nearest-neighbour upsampling as captum does).

    captum registers hooks to do this, so it runs on a private ``copy.deepcopy`` of the model
    made for this call and dropped after it: the given model never carries a hook. Only
    ``nn.ReLU`` modules are guided; a functional ReLU (our head's ``F.relu`` after norm5, like
    torchvision's) passes gradients unguided.

    Args:
        model: in eval mode, on any device.
        x: (C, H, W) or (N, C, H, W); sample ``index`` is explained.
        target: class or label index; ``None``: the top prediction.
        layer: the Grad-CAM layer, a module name such as ``model.tap_names`` lists.
        index: which sample of a batch.

    Returns:
        An :class:`Attribution` with ``method="guided-gradcam"``.
    """
    from captum.attr import GuidedGradCam

    x = prepare_input(model, x, index)
    names = getattr(model, "tap_names", None)
    if names is not None and layer not in names:
        raise ValueError(f"unknown layer {layer!r}; traceable layers look like {names[0]!r}, {names[-1]!r}")
    t = resolve_target(model, x, target)
    private = copy.deepcopy(model)  # the hooks go here, and die with it
    attr = GuidedGradCam(private, private.get_submodule(layer)).attribute(_with_grad(x), target=t)
    return _result(attr, "guided-gradcam", t, layer=layer)


# --- the records ------------------------------------------------------------------------------

def _input_runner(function: Callable[..., Attribution]) -> registry.Runner:
    def run(model: nn.Module, x: Tensor, target: int | None, layers: list[str], *, trace: object = None,
            size: object = None, progress: Progress | None = None, **options: object) -> dict[str, Attribution]:
        return {INPUT: function(model, x, target, progress=progress, **options)}
    return run


def _run_guided(model: nn.Module, x: Tensor, target: int | None, layers: list[str], *, trace: object = None,
                size: object = None, progress: Progress | None = None) -> dict[str, Attribution]:
    return {layer: guided_grad_cam(model, x, target, layer) for layer in layers}


register(Method("integrated-gradients", "Integrated Gradients",
                "Input gradients integrated along the path from an all-zero (dataset-mean) input "
                "(Sundararajan et al. 2017; captum).", Kind.INPUT_ATTRIBUTION, needs_layer=False, needs_graph=False,
                slow=True, run=_input_runner(integrated_gradients),
                estimate=attribution_estimate("integrated-gradients"),
                chunk_option="internal_batch_size"))
register(Method("smoothgrad", "SmoothGrad",
                "Input gradients averaged over noisy copies of the image (Smilkov et al. 2017; captum NoiseTunnel).",
                Kind.INPUT_ATTRIBUTION, needs_layer=False, needs_graph=False, slow=True,
                run=_input_runner(smoothgrad), chunk_option="batch_size",
                estimate=attribution_estimate("smoothgrad")))
register(Method("occlusion", "Occlusion",
                "How much the score drops when a patch is set to zero, patch by patch (Zeiler & Fergus 2014; "
                "captum).", Kind.PERTURBATION, needs_layer=False, needs_graph=False, slow=True,
                run=_input_runner(occlusion), chunk_option="batch_size",
                estimate=attribution_estimate("occlusion")))
register(Method("guided-gradcam", "Guided Grad-CAM",
                "Guided backpropagation times the layer's Grad-CAM (Selvaraju et al. 2017; captum).",
                Kind.INPUT_ATTRIBUTION, needs_layer=True, needs_graph=False, slow=True, run=_run_guided,
                estimate=attribution_estimate("guided-gradcam")))
