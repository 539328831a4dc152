"""The CAM family for many layers from one forward and one backward pass.

Every gradient method combines a layer's activations ``A`` (N, C, h, w) with the gradient ``G``
of the target's raw logit with respect to them (``Trace.gradients``: ``torch.autograd.grad`` on
the traced tensors, so the backward stops at the earliest requested layer, no parameter gets a
``.grad`` and no hook is registered). The methods differ only in the weights ``W`` of the shared
core ``sum_c W_c * A_c`` (pytorch-grad-cam's ``get_cam_weights``): per-channel weights (C, 1, 1)
for Grad-CAM, Grad-CAM++ and XGrad-CAM, elementwise weights (C, h, w) for HiResCAM and LayerCAM.
EigenCAM and the raw activation maps need no gradient.

Nothing here keeps state: every call returns new arrays, so one model can serve many threads.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..model import DenseNet
from ..topology import topology
from ..trace import Trace
from . import registry
from ._common import Size, normalise, prepare_input, resolve_size, to_numpy, upsample
from .registry import Kind, Method, register

@dataclass(frozen=True)
class CamMap:
    """One explanation map of one layer.

    Attributes:
        raw: (h, w) float32 at the layer's resolution: exactly the method's value, signed,
            before ReLU and normalisation (compare magnitudes here, not in ``map``).
        map: (H, W) float32 in [0, 1] at input resolution: ReLU (gradient methods and
            EigenCAM), bilinear upsampling, then min-max; a constant map becomes all zeros.
        layer: the traced layer (a name in ``model.tap_names``).
        method: a key of :data:`~densenet.explain.METHODS`.
        target: the class or label index explained; ``None`` for methods without gradients.
    """

    raw: np.ndarray
    map: np.ndarray
    layer: str
    method: str
    target: int | None


# --- the methods: only the weights differ ---------------------------------------------------
# A, G: (N, C, h, w). A weights function returns W broadcastable to A; the map is sum_c W_c A_c.

def _gradcam_weights(a: Tensor, g: Tensor) -> Tensor:
    return g.mean(dim=(2, 3), keepdim=True)  # (N, C, 1, 1)


def _hirescam_weights(a: Tensor, g: Tensor) -> Tensor:
    return g


def _gradcampp_weights(a: Tensor, g: Tensor) -> Tensor:
    # Eq. 19 of Chattopadhay et al., with exp(score) folded in as pytorch-grad-cam does, so that
    # higher derivatives are powers of the first; alpha is zero where the gradient is.
    g2 = g.pow(2)
    g3 = g2 * g
    sum_a = a.sum(dim=(2, 3), keepdim=True)
    alpha = g2 / (2 * g2 + sum_a * g3 + 1e-6)
    alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
    return (g.clamp(min=0) * alpha).sum(dim=(2, 3), keepdim=True)


def _xgradcam_weights(a: Tensor, g: Tensor) -> Tensor:
    sum_a = a.sum(dim=(2, 3), keepdim=True)
    return (g * a / (sum_a + 1e-7)).sum(dim=(2, 3), keepdim=True)


def _layercam_weights(a: Tensor, g: Tensor) -> Tensor:
    return g.clamp(min=0)


def _eigencam(a: Tensor) -> Tensor:
    """Projection on the first principal component of the pixels-by-channels matrix, (N, h, w).

    The sign of a singular vector is arbitrary; we pick the one that correlates positively
    with the mean activation, so bright means "more of what this layer responds to".
    """
    n, c, h, w = a.shape
    x = a.flatten(2).transpose(1, 2)  # (N, h*w, C)
    x = x - x.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)  # vh: (N, min(h*w, C), C)
    proj = torch.bmm(x, vh[:, :1, :].transpose(1, 2)).squeeze(2)  # (N, h*w)
    mean_act = a.mean(dim=1).flatten(1)  # (N, h*w)
    sign = torch.sign((proj * (mean_act - mean_act.mean(dim=1, keepdim=True))).sum(dim=1, keepdim=True))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return (proj * sign).view(n, h, w)


# --- layers ------------------------------------------------------------------------------

def default_layers(model: DenseNet) -> list[str]:
    """The layers explained when none are given: every dense block's output, then ``features.norm5``
    (:attr:`densenet.topology.Topology.cam_layers`)."""
    return topology(model.config).cam_layers


# --- from a trace -----------------------------------------------------------------------------

def _cam_record(method: str) -> Method:
    record = registry.method(method)
    if not record.uses_trace:
        raise ValueError(f"{record.label} is not a CAM read from a trace ({record.kind.value}); "
                         "use explain.compute")
    return record


def _ordered_layers(trace: Trace, layers: Iterable[str] | str | None) -> list[str]:
    if layers is None:
        names = list(trace.activations)
    else:
        names = [layers] if isinstance(layers, str) else list(layers)
        missing = [name for name in names if name not in trace.activations]
        if missing:
            raise ValueError(f"layer(s) {missing} were not traced; traced: {list(trace.activations)}")
        order = {name: i for i, name in enumerate(trace.activations)}
        names = sorted(dict.fromkeys(names), key=order.__getitem__)
    if not names:
        raise ValueError("no layers to explain: the trace holds no activations")
    return names


def raw_cams(trace: Trace, method: str = "gradcam", targets: int | Iterable[int] | Tensor | None = None,
             layers: Iterable[str] | str | None = None) -> tuple[dict[str, Tensor], Tensor | None]:
    """The raw maps of every sample of a batched trace: the core that every CAM result comes from.

    Args:
        trace: a trace (with a graph for gradient methods).
        method: a registered CAM method (gradient or activation kind).
        targets: one class for all samples, one per sample, or ``None`` (each sample's top prediction).
        layers: traced layer names; ``None``: every layer in the trace.

    Returns:
        (layer -> (N, h, w) float32 raw maps, signed, before ReLU; the (N,) targets explained, or
        ``None`` for methods without gradients). One backward pass serves every layer.
    """
    record = _cam_record(method)
    names = _ordered_layers(trace, layers)
    if record.kind is Kind.GRADIENT_CAM:
        if not all(trace.activations[name].requires_grad for name in names):
            raise ValueError(f"{record.label} needs gradients: trace with keep_graph=True")
        t = trace.targets(targets)
        grads = trace.gradients(t, names)  # one backward for every layer
    else:
        t, grads = None, {}
    raws = {}
    with torch.no_grad():
        for name in names:
            a = trace.activations[name].detach().float()  # (N, C, h, w)
            if record.kind is Kind.GRADIENT_CAM:
                raws[name] = (record.weights(a, grads[name].float()) * a).sum(dim=1)  # (N, h, w)
            else:
                raws[name] = record.reduce(a)
    return raws, t


def shown_map(raw: Tensor, method: str, size: tuple[int, int]) -> Tensor:
    """Raw (N, h, w) maps -> what is shown: ReLU where the method keeps positive evidence only,
    bilinear upsampling to ``size``, min-max to [0, 1]."""
    record = registry.method(method)
    return normalise(upsample(raw.clamp(min=0) if record.relu else raw, size))


def cams_from_trace(trace: Trace, method: str = "gradcam", target: int | None = None,
                    layers: Iterable[str] | str | None = None, size: Size | None = None,
                    *, index: int = 0) -> dict[str, CamMap]:
    """CAMs of several layers from an existing trace, with at most one backward pass.

    Args:
        trace: from ``model.trace(x, layers, keep_graph=True)``; methods without gradients
            (``eigencam``, ``activation-*``) also accept a trace without a graph.
        method: a registered CAM method (``explain.methods(uses_trace=True)``).
        target: class (softmax) or label (multi-label) index whose raw logit is explained;
            ``None``: the top prediction of sample ``index``.
        layers: traced layer names; ``None``: every layer in the trace.
        size: (H, W) or side of ``CamMap.map``; ``None``: the input's size.
        index: which sample of a batched trace to explain.

    Returns:
        layer name -> :class:`CamMap`, in forward order.

    Raises:
        ValueError: unknown method or layer, bad target or index, or a trace without a graph
            for a gradient method.
    """
    _cam_record(method)
    n = trace.logits.shape[0]
    index = operator.index(index)
    if not -n <= index < n:
        raise ValueError(f"index {index} out of range for a batch of {n}")
    index %= n
    out_size = resolve_size(size, tuple(trace.inputs.shape[-2:]))
    raws, t = raw_cams(trace, method, target, layers)
    explained = None if t is None else int(t[index])
    with torch.no_grad():
        return {name: CamMap(raw=to_numpy(raw[index]), map=to_numpy(shown_map(raw[index:index + 1], method,
                                                                                out_size)[0]),
                             layer=name, method=method, target=explained)
                for name, raw in raws.items()}


def top_channels(trace: Trace, layer: str, k: int = 8, *, index: int = 0,
                 by: str = "mean") -> dict[int, np.ndarray]:
    """The ``k`` most active channels of one traced layer, strongest first.

    Args:
        trace: any trace holding ``layer``.
        layer: a traced layer name.
        k: how many channels (fewer if the layer has fewer).
        index: which sample of the batch.
        by: rank by spatial ``"mean"`` or ``"max"`` activation.

    Returns:
        channel index -> its raw (h, w) float32 activation map (a copy).
    """
    if layer not in trace.activations:
        raise ValueError(f"layer {layer!r} was not traced; traced: {list(trace.activations)}")
    if by not in ("mean", "max"):
        raise ValueError(f"by must be 'mean' or 'max', got {by!r}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    a = trace.activations[layer][index].detach().float()  # (C, h, w)
    score = a.mean(dim=(1, 2)) if by == "mean" else a.amax(dim=(1, 2))
    order = torch.argsort(score, descending=True, stable=True)[:k].tolist()
    return {c: to_numpy(a[c]) for c in order}


# --- from a model and an input ----------------------------------------------------------------

def cam_maps(model: DenseNet, x: Tensor, method: str = "gradcam", target: int | None = None,
             layers: Iterable[str] | str | None = None, *, size: Size | None = None,
             index: int = 0) -> dict[str, CamMap]:
    """Trace sample ``index`` of ``x`` once and return full :class:`CamMap` results (raw and map).

    Same arguments as :func:`cam`.
    """
    record = _cam_record(method)
    x = prepare_input(model, x, index)
    names = default_layers(model) if layers is None else model.resolve_layers(layers)
    trace = model.trace(x, names, keep_graph=record.needs_graph)
    return cams_from_trace(trace, method, target, names, size)


def cam(model: DenseNet, x: Tensor, method: str = "gradcam", target: int | None = None,
        layers: Iterable[str] | str | None = None, *, size: Size | None = None,
        index: int = 0) -> dict[str, np.ndarray]:
    """Explain one image with one CAM method at several layers: one forward, one backward.

    The model is used read-only: no hook, no ``.grad``, no mode change, so concurrent calls on
    one shared model are safe.

    Args:
        model: a :class:`DenseNet` in eval mode, on any device.
        x: (C, H, W) or (N, C, H, W); moved to the model's device; sample ``index`` is explained.
        method: a registered CAM method (``explain.methods(uses_trace=True)``).
        target: class (softmax) or label (multi-label) index; ``None``: the top prediction.
        layers: names from ``model.tap_names``; ``None``: :func:`default_layers` (block outputs
            and ``features.norm5``).
        size: (H, W) or side of the maps; ``None``: the input's size.
        index: which sample of a batch.

    Returns:
        layer name -> (H, W) float32 map in [0, 1] on the CPU.

    Raises:
        ValueError: unknown method or layer, bad target, or a model in train mode.
        TypeError: ``x`` is not a tensor.
    """
    return {name: m.map for name, m in cam_maps(model, x, method, target, layers, size=size, index=index).items()}


def grad_cam(model: DenseNet, x: Tensor, target: int | None = None,
             layers: Iterable[str] | str | None = None, *, size: Size | None = None,
             index: int = 0) -> dict[str, np.ndarray]:
    """Grad-CAM maps, layer name -> (H, W) in [0, 1]; :func:`cam` with ``method="gradcam"``."""
    return cam(model, x, "gradcam", target, layers, size=size, index=index)


def hires_cam(model: DenseNet, x: Tensor, target: int | None = None,
              layers: Iterable[str] | str | None = None, *, size: Size | None = None,
              index: int = 0) -> dict[str, np.ndarray]:
    """HiResCAM maps; :func:`cam` with ``method="hirescam"``."""
    return cam(model, x, "hirescam", target, layers, size=size, index=index)


def grad_cam_pp(model: DenseNet, x: Tensor, target: int | None = None,
                layers: Iterable[str] | str | None = None, *, size: Size | None = None,
                index: int = 0) -> dict[str, np.ndarray]:
    """Grad-CAM++ maps; :func:`cam` with ``method="gradcam++"``."""
    return cam(model, x, "gradcam++", target, layers, size=size, index=index)


def xgrad_cam(model: DenseNet, x: Tensor, target: int | None = None,
              layers: Iterable[str] | str | None = None, *, size: Size | None = None,
              index: int = 0) -> dict[str, np.ndarray]:
    """XGrad-CAM maps; :func:`cam` with ``method="xgradcam"``."""
    return cam(model, x, "xgradcam", target, layers, size=size, index=index)


def layer_cam(model: DenseNet, x: Tensor, target: int | None = None,
              layers: Iterable[str] | str | None = None, *, size: Size | None = None,
              index: int = 0) -> dict[str, np.ndarray]:
    """LayerCAM maps; :func:`cam` with ``method="layercam"``."""
    return cam(model, x, "layercam", target, layers, size=size, index=index)


def eigen_cam(model: DenseNet, x: Tensor, target: int | None = None,
              layers: Iterable[str] | str | None = None, *, size: Size | None = None,
              index: int = 0) -> dict[str, np.ndarray]:
    """EigenCAM maps (forward only; ``target`` is accepted for a uniform call and ignored)."""
    return cam(model, x, "eigencam", target, layers, size=size, index=index)


# --- the records ------------------------------------------------------------------------------

def _run_cam(method: str) -> registry.Runner:
    def run(model: DenseNet, x: Tensor, target: int | None, layers: list[str], *, trace: Trace | None = None,
            size: Size | None = None, progress: registry.Progress | None = None) -> dict[str, CamMap]:
        if trace is None:
            trace = model.trace(x, layers, keep_graph=registry.method(method).needs_graph)
        return cams_from_trace(trace, method, target, layers, size)
    return run


def gradient_cam(name: str, label: str, description: str, weights: Callable[[Tensor, Tensor], Tensor],
                 *, featured: bool = False) -> Method:
    """The record of a gradient CAM whose map is ``sum_c weights(A, G)_c * A_c``, ReLU'd."""
    return Method(name=name, label=label, description=description, kind=Kind.GRADIENT_CAM, needs_layer=True,
                  needs_graph=True, slow=False, run=_run_cam(name), weights=weights, featured=featured)


def activation_cam(name: str, label: str, description: str, reduce: Callable[[Tensor], Tensor],
                   *, relu: bool = True, featured: bool = False) -> Method:
    """The record of a map computed from a layer's activations alone, ``reduce(A) -> (N, h, w)``."""
    return Method(name=name, label=label, description=description, kind=Kind.ACTIVATION_CAM, needs_layer=True,
                  needs_graph=False, slow=False, run=_run_cam(name), reduce=reduce, relu=relu, featured=featured)


register(gradient_cam("gradcam", "Grad-CAM", "Activations weighted by their spatially averaged gradient "
                      "(Selvaraju et al. 2017).", _gradcam_weights, featured=True))
register(gradient_cam("hirescam", "HiResCAM", "Activations times gradients, elementwise, summed over channels "
                      "(Draelos & Carin 2020).", _hirescam_weights))
register(gradient_cam("gradcam++", "Grad-CAM++", "Positive gradients weighted by per-pixel alphas "
                      "(Chattopadhay et al. 2018).", _gradcampp_weights, featured=True))
register(gradient_cam("xgradcam", "XGrad-CAM", "Gradients weighted by normalised activations (Fu et al. 2020).",
                      _xgradcam_weights))
register(gradient_cam("layercam", "LayerCAM", "Activations times positive gradients, elementwise "
                      "(Jiang et al. 2021).", _layercam_weights, featured=True))
register(activation_cam("eigencam", "EigenCAM", "First principal component of the activations, no gradient "
                        "(Muhammad & Yeasin 2020).", _eigencam, featured=True))
# Activation maps keep their sign, so that a pre-ReLU tap such as norm5 is shown as it is.
register(activation_cam("activation-mean", "Activation (mean)", "Mean activation over channels, no gradient "
                        "(signed; not ReLU'd).", lambda a: a.mean(dim=1), relu=False))
register(activation_cam("activation-max", "Activation (max)", "Maximum activation over channels, no gradient "
                        "(signed; not ReLU'd).", lambda a: a.amax(dim=1), relu=False))
