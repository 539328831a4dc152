"""The one list of explanation methods: what each one is, what it needs, and how to run it.

Every selector, label, help text, caption and dispatcher (the dashboard's, the audit's) reads
:data:`METHODS`; no other table of method names exists.

Adding a gradient CAM method (the whole recipe, in ``densenet/explain/cam.py``):

1. write its channel weights, ``def _mine_weights(a, g) -> Tensor`` (``a``, ``g``: the layer's
   activations and gradients, (N, C, h, w); return ``W`` broadcastable to ``a``: the map is
   ``sum_c W_c * A_c``);
2. register one record next to the others::

       register(gradient_cam("mine", "My-CAM", "What it does (Author et al. 2026).", _mine_weights))

That is all: the library functions (``explain.compute``, ``cams_from_trace``), the audit and the
dashboard's Attention page offer it from then on. A method of another kind registers a
:class:`Method` whose ``run`` has the uniform call shape :data:`Runner`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from torch import Tensor, nn

from ..topology import topology
from ._common import prepare_input

#: The key of a map that lives in input space (no layer).
INPUT = "input"

#: Called between chunks of work with the fraction done (0 to 1). Raising from it (for example
#: :class:`Cancelled`) stops the work at that point; blocking in it pauses the work.
Progress = Callable[[float], None]


class Cancelled(Exception):
    """Raised by a progress callback to stop a long explanation between two chunks."""


class Explanation(Protocol):
    """What every method returns per layer: :class:`~densenet.explain.CamMap` and
    :class:`~densenet.explain.Attribution` both have these attributes."""

    raw: np.ndarray
    map: np.ndarray
    method: str
    target: int | None
    layer: str | None


class Kind(enum.Enum):
    """How a method gets its map; decides what it needs and how the app offers it."""

    GRADIENT_CAM = "layer CAM from gradients"
    ACTIVATION_CAM = "layer CAM without gradients"
    INPUT_ATTRIBUTION = "input-space attribution"
    PERTURBATION = "perturbation"
    RELEVANCE = "layer map from relevance propagation"


#: ``run(model, x, target, layers, *, trace, size, progress)`` -> ``{layer or INPUT: Explanation}``.
#: ``x`` is one prepared (1, C, H, W) input; ``trace`` a trace of it when the caller has one
#: (with a graph when the method ``needs_graph``), else ``None``; ``layers`` the layers asked for
#: (``[]`` for a method without a layer); ``size`` the (H, W) of the maps.
Runner = Callable[..., dict[str, Explanation]]


@dataclass(frozen=True)
class Method:
    """One explanation method.

    Attributes:
        name: the key used everywhere (``"gradcam"``); stable, lower case.
        label: for people (``"Grad-CAM"``).
        description: one line, with its reference.
        kind: how it gets its map.
        needs_layer: explains a layer's activations (else the map lives on the input).
        needs_graph: needs a trace with an autograd graph (``keep_graph=True``).
        slow: re-runs the model many times: offer it on demand, with progress.
        run: the uniform runner (:data:`Runner`).
        weights: for gradient CAMs, the channel weights ``W(a, g)``.
        reduce: for activation CAMs, ``a -> (N, h, w)``.
        relu: the shown map keeps only positive evidence.
        chunk_option: the keyword of ``run`` that sets how much work goes between two progress
            calls (``batch_size``, ``internal_batch_size``); ``None`` if it has no chunks.
        featured: among the few a comparison shows first (a varied set, one per idea).
        estimate: ``estimate(model, x, layers, *, trace=None, top=None)`` -> an object whose
            ``.text`` says how long the run will take on this machine, measured (slow methods).
        preview_top: a fast preview that scores only this many channels (``top=``) is close
            enough to the full map to offer (measured in BENCHMARKS.md); ``None``: none is.
    """

    name: str
    label: str
    description: str
    kind: Kind
    needs_layer: bool
    needs_graph: bool
    slow: bool
    run: Runner
    weights: Callable[[Tensor, Tensor], Tensor] | None = None
    reduce: Callable[[Tensor], Tensor] | None = None
    relu: bool = True
    chunk_option: str | None = None
    featured: bool = False
    estimate: Callable[..., Any] | None = None
    preview_top: int | None = None

    @property
    def uses_trace(self) -> bool:
        """Reads a traced layer (a CAM of either kind): the page's trace serves it."""
        return self.kind in (Kind.GRADIENT_CAM, Kind.ACTIVATION_CAM)


METHODS: dict[str, Method] = {}


def register(record: Method) -> Method:
    """Add a method; a second record of the same name is refused (torchvision's model registry does the same)."""
    if not isinstance(record, Method):
        raise TypeError(f"expected a Method, got {type(record).__name__}")
    if record.name in METHODS:
        raise ValueError(f"an explanation method named {record.name!r} is already registered")
    METHODS[record.name] = record
    return record


def unregister(name: str) -> None:
    """Remove a method (for tests and plug-ins that registered a throw-away one)."""
    METHODS.pop(name, None)


def method(name: str) -> Method:
    """The record of ``name``; a clear error names the known ones."""
    if not isinstance(name, str):
        raise TypeError(f"method must be a string, got {type(name).__name__}")
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown explanation method {name!r}; choose from {', '.join(METHODS)}") from None


def methods(*, kind: Kind | Iterable[Kind] | None = None, uses_trace: bool | None = None,
            needs_layer: bool | None = None) -> list[Method]:
    """The registered methods in registration order, optionally filtered."""
    kinds = {kind} if isinstance(kind, Kind) else (set(kind) if kind is not None else None)
    return [m for m in METHODS.values()
            if (kinds is None or m.kind in kinds)
            and (uses_trace is None or m.uses_trace == uses_trace)
            and (needs_layer is None or m.needs_layer == needs_layer)]


def compute(name: str, model: nn.Module, x: Tensor, target: int | None = None,
            layers: Iterable[str] | str | None = None, *, trace: Any = None, size: Any = None,
            progress: Progress | None = None, index: int = 0, **options: Any) -> dict[str, Explanation]:
    """Run any registered method with one call shape.

    Args:
        name: a key of :data:`METHODS`.
        model: a DenseNet in eval mode (used read-only).
        x: (C, H, W) or (N, C, H, W); sample ``index`` is explained.
        target: class or label index; ``None``: the top prediction.
        layers: for methods with a layer: names from ``model.tap_names`` (``None``: the default
            layers); ignored by input-space methods.
        trace: a trace of exactly this input, reused when the method reads one.
        size: (H, W) or side of the maps; ``None``: the input's size.
        progress: :data:`Progress`, called between chunks by the slow methods.
        index: which sample of a batch.
        options: method-specific keywords (``steps`` for Integrated Gradients, ...).

    Returns:
        layer name (or :data:`INPUT`) -> explanation, in forward order.
    """
    record = method(name)
    if trace is None:
        x = prepare_input(model, x, index)
    if record.needs_layer:
        names = topology(model.config).cam_layers if layers is None else model.resolve_layers(layers)
    else:
        names = []
    return record.run(model, x, target, names, trace=trace, size=size, progress=progress, **options)
