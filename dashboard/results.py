"""Typed results of the chosen model on the chosen image, each computed once per session.

One :class:`Analysis` (a trace) per (model, image) serves every page; it holds an autograd
graph only once a page asks for a gradient explanation. Maps are memoised per layer, so the
Map tab and the across-layers tab share their work. Every result has one key function.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

import densenet
from densenet import explain
from densenet.preprocess import prepare

from . import analysis, runtime, session, shared
from .inputs import ImageInput
from .sources import ModelError, ModelSpec, load_model


# --- what the sidebar chose -----------------------------------------------------------------

@dataclass(frozen=True)
class Choices:
    """What the user said a loaded model's outputs and inputs mean (``None``: as the file says).

    Attributes:
        multilabel: one sigmoid per finding, or one softmax.
        classes: a class-name preset key, or the names themselves.
        thresholds: one operating threshold per finding.
        geometry: how the image becomes the model's square input (``densenet.geometry.GEOMETRIES``).
    """

    multilabel: bool | None = None
    classes: str | tuple[str, ...] | None = None
    thresholds: tuple[float, ...] | None = None
    geometry: str | None = None

    @property
    def empty(self) -> bool:
        return self == Choices()

    @property
    def key(self) -> str:
        return "" if self.empty else repr(self)


def customised(model: densenet.DenseNet, choices: Choices) -> densenet.DenseNet:
    """``model`` as the user reads it: a shallow copy (weights shared) when any choice was made."""
    if choices.empty:
        return model
    from densenet.convert import apply_choices

    return apply_choices(model, classes=None if choices.classes is None else (
        choices.classes if isinstance(choices.classes, str) else list(choices.classes)),
        multilabel=choices.multilabel, thresholds=None if choices.thresholds is None else list(choices.thresholds),
        geometry=choices.geometry)


@dataclass
class Context:
    """The sidebar's choices, handed to every page.

    Attributes:
        spec: the model asked for.
        config, input_size: its architecture and input side, known without loading for
            config-only sources (the classroom knobs redraw without building a model).
        read: an uploaded checkpoint's bytes, on demand.
        model_error: why the model asked for cannot be used; pages show it and stop.
        choices: what the user said the outputs and inputs mean.
        image: the chosen image, or ``None`` with ``image_error`` saying why.
    """

    spec: ModelSpec
    config: densenet.DenseNetConfig | None
    input_size: int
    read: Callable[[], bytes] | None = field(default=None, repr=False)
    model_error: str | None = None
    choices: Choices = Choices()
    image: ImageInput | None = None
    image_error: str | None = None

    @property
    def key(self) -> str:
        """The model as used: its source and the user's choices."""
        return self.spec.key + (f"~{self.choices.key}" if not self.choices.empty else "")

    def base(self) -> densenet.DenseNet:
        """The loaded model as its file describes it (cached for all sessions); raises :class:`ModelError`."""
        return load_model(self.spec, self.read)

    def load(self) -> densenet.DenseNet:
        """The model as the user reads it (:func:`customised`, kept per session); raises :class:`ModelError`."""
        base = self.base()
        if self.choices.empty:
            return base
        return session.memo("customised", self.key, lambda: customised(base, self.choices), max_entries=4)

    def with_choices(self, choices: Choices) -> Context:
        """This context with the user's choices applied (the architecture and input size follow them)."""
        self.choices = choices
        self.config = self.load().config
        return self

    @property
    def topology(self) -> densenet.Topology:
        return shared.topology(self.config, self.input_size)


def context_for(spec: ModelSpec, read: Callable[[], bytes] | None = None) -> Context:
    """A context for ``spec``: loads the model only when its architecture is not known otherwise."""
    from densenet.presets import for_fresh_model

    if spec.source.from_config:
        return Context(spec, spec.config, for_fresh_model(spec.config).size, read)
    try:
        model = load_model(spec, read)
    except ModelError as e:
        return Context(spec, None, 0, read, model_error=str(e))
    return Context(spec, model.config, model.preprocessing.size, read)


# --- one trace per (model, image) ---------------------------------------------------------------

@dataclass(frozen=True)
class Analysis:
    """One forward pass of one image, with everything the pages read from it.

    Attributes:
        key: model key + image hash.
        trace: every tap's activation; with an autograd graph only if ``has_graph``.
        x: the (1, C, H, W) input tensor on the model's device.
        display: the image exactly as the model sees it (cropped, resized), in [0, 1].
        predictions: the top predictions.
        multilabel: one sigmoid per label rather than one softmax.
        has_graph: gradient explanations can be read from ``trace``.
        seconds: how long the trace took: one forward's cost, which sizes the chunks of long work.
    """

    key: str
    trace: densenet.Trace
    x: torch.Tensor
    display: np.ndarray
    predictions: list[analysis.Prediction]
    multilabel: bool
    has_graph: bool
    seconds: float | None = None

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.x.shape[-2:])


def analysis_key(ctx: Context) -> str:
    return f"{ctx.key}#{ctx.image.digest}"


def get_analysis(ctx: Context, *, graph: bool = False) -> Analysis:
    """The session's trace of the current model and image, computed once (again only to add a graph).

    Only one is kept per session: a DenseNet-121 trace with its graph is ~150 MB.
    """
    if ctx.image is None:
        raise ValueError("no image chosen")
    key = analysis_key(ctx)
    held = session.peek("analysis", key)
    if held is not None and (held.has_graph or not graph):
        return held
    model = ctx.load()

    def run() -> Analysis:
        with runtime.job("Running the model"):
            prepared = prepare(ctx.image.pixels, model)  # the input and what to draw maps over, one pass
            x, display = prepared.x, prepared.display
            started = time.perf_counter()
            trace = model.trace(x, keep_graph=graph)
            seconds = time.perf_counter() - started
            preds = analysis.top_k(trace.probabilities, trace.logits, model.class_names,
                                   k=min(5, len(model.class_names)))
        return Analysis(key, trace, x, display, preds, model.config.multilabel, graph, seconds)

    session.forget("analysis")
    return session.memo("analysis", key, run, max_entries=1)


# --- maps -------------------------------------------------------------------------------------

def map_key(an: Analysis, method: str, target: int, layer: str, options: dict | None = None) -> tuple:
    """One map: ``layer`` is :data:`explain.INPUT` for methods without a layer; ``options`` the
    method's own (a top-m preview)."""
    record = explain.method(method)
    return (an.key, method, target if record.needs_graph or not record.uses_trace else None, layer,
            tuple(sorted((options or {}).items())))


def map_layers(method: str, layers: list[str]) -> list[str]:
    """The keys a method's maps come under: the layers, or the one input-space map."""
    return list(layers) if explain.method(method).needs_layer else [explain.INPUT]


def peek_map(an: Analysis, method: str, target: int, layer: str,
             options: dict | None = None) -> explain.Explanation | None:
    return session.peek("maps", map_key(an, method, target, layer, options))


def chunk_size(an: Analysis, record: explain.Method | None = None) -> int:
    """Images per chunk of a slow method (or of the checks' forwards) on this model, from the trace's time.

    Input attributions differentiate every chunk (a forward and a backward: about three forwards).
    """
    passes = 3 if record is not None and record.kind is explain.Kind.INPUT_ATTRIBUTION else 1
    return runtime.chunk_size(None if an.seconds is None else an.seconds * passes)


def get_maps(ctx: Context, an: Analysis, method: str, target: int, layers: list[str],
             options: dict | None = None) -> dict[str, explain.Explanation]:
    """The maps of ``method`` for ``target`` at ``layers`` (memoised per layer).

    Trace-based methods read the session's trace (all missing layers from one backward);
    slow methods run as a long job: a progress bar, chunks between other sessions' work.
    """
    record = explain.method(method)
    wanted = map_layers(method, layers)
    options = dict(options or {})
    found = {layer: peek_map(an, method, target, layer, options) for layer in wanted}
    missing = [layer for layer, m in found.items() if m is None]
    if missing:
        if record.uses_trace:
            if record.needs_graph and not an.has_graph:
                an = get_analysis(ctx, graph=True)
            with runtime.job(f"Computing {record.label}"):
                new = explain.compute(method, ctx.load(), an.x, target, missing, trace=an.trace, size=an.size)
        else:
            model = ctx.load()
            with runtime.job(record.label, long=True, bar=True) as job:
                chunks = {record.chunk_option: chunk_size(an, record)} if record.chunk_option else {}
                new = explain.compute(method, model, an.x, target, missing if record.needs_layer else None,
                                      size=an.size, progress=job.progress, **chunks, **options)
        for layer, m in new.items():
            session.memo("maps", map_key(an, method, target, layer, options), lambda m=m: m, max_entries=64)
            found[layer] = m
    return found


# --- trust ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Trust:
    """How far to trust one map.

    Attributes:
        sanity: the model-randomisation check (CAMs read from a trace, and the fast methods such as LRP).
        curves: deletion and insertion of pixels by the map's ranking.
    """

    sanity: explain.SanityResult | None
    curves: explain.DeletionInsertion


def trust_key(an: Analysis, method: str, target: int, layer: str) -> tuple:
    return (an.key, method, target, layer)


def peek_trust(an: Analysis, method: str, target: int, layer: str) -> Trust | None:
    return session.peek("trust", trust_key(an, method, target, layer))


def get_trust(ctx: Context, an: Analysis, method: str, target: int, layer: str,
              shown: explain.Explanation) -> Trust:
    """Sanity check and deletion/insertion of ``shown`` (the page's map, not recomputed); memoised."""
    record = explain.method(method)

    def run() -> Trust:
        model = ctx.load()
        # The bar's share of each part follows its work, so the time left is not extrapolated from the
        # quick part: the check traces and differentiates once per randomised module (about 3 forwards
        # each); the curves run 2 x 33 forwards of the image, batched (about half a forward each).
        checks = 3.0 * (len(explain.cascade_modules(model, layer)) + 1) if record.uses_trace else 0.0
        share = checks / (checks + 33.0)
        with runtime.job("Checking the map", long=True, bar=True) as job:
            sanity = None
            if record.uses_trace or not record.slow:  # LRP: one pass, cheap to run on a randomised copy
                sanity = explain.sanity_check(model, an.x, target, layer, method, original=shown,
                                              progress=lambda f: job.progress(share * f))
            curves = explain.deletion_insertion(model, an.x, shown.map, target, batch_size=chunk_size(an),
                                                progress=lambda f: job.progress(share + (1 - share) * f))
        return Trust(sanity, curves)

    return session.memo("trust", trust_key(an, method, target, layer), run, max_entries=16)


# --- trust in the prediction itself -------------------------------------------------------------

def get_ood(ctx: Context, an: Analysis, threshold: float | None = None) -> object:
    """The out-of-distribution assessment of the session's image (``densenet.ood.Assessment``); memoised."""
    from densenet import ood

    def run() -> object:
        with runtime.job("Checking the image against the training data"):
            return ood.assess(ctx.load(), an.x, image_size=tuple(ctx.image.pixels.shape[:2]), trace=an.trace,
                              threshold=threshold)

    return session.memo("ood", (an.key, threshold), run, max_entries=8)


def full_overlay(ctx: Context, an: Analysis, shown: explain.Explanation, alpha: float, colormap: str) -> np.ndarray:
    """The map over the original image at its full resolution, uint8 RGB (the model's view outlined)."""
    from densenet import render

    key = (an.key, shown.method, shown.target, shown.layer, alpha, colormap)
    return session.memo("full_overlays", key, lambda: render.overlay_original(
        ctx.image.pixels, shown.map, ctx.load(), alpha=alpha, colormap=colormap), max_entries=4)


def _estimate_key(an: Analysis, method: str, layer: str, options: dict | None) -> tuple:
    return (an.key, method, layer, tuple(sorted((options or {}).items())))


def peek_time_estimate(an: Analysis, method: str, layer: str,
                       options: dict | None = None) -> explain.TimeEstimate | None:
    return session.peek("estimates", _estimate_key(an, method, layer, options))


def get_time_estimate(ctx: Context, an: Analysis, method: str, layer: str,
                      options: dict | None = None) -> explain.TimeEstimate | None:
    """How long a slow method will take here, measured on a batch of its real work (``None``: no estimate)."""
    record = explain.method(method)
    if record.estimate is None:
        return None

    def run() -> explain.TimeEstimate:
        with runtime.job(f"Timing one batch of {record.label}"):
            layers = [layer] if record.needs_layer else []
            return record.estimate(ctx.load(), an.x, layers, top=(options or {}).get("top"))

    return session.memo("estimates", _estimate_key(an, method, layer, options), run, max_entries=16)


def get_estimate(ctx: Context, an: Analysis, method: str, layer: str, options: dict | None = None) -> str | None:
    """:func:`get_time_estimate` in words (``"≈ 40 s on this CPU: 1,024 forwards of …"``)."""
    estimate = get_time_estimate(ctx, an, method, layer, options)
    return None if estimate is None else estimate.text


# --- relevance on the dense links ----------------------------------------------------------------

def get_relevance(ctx: Context, an: Analysis, target: int, method: str = "gradient") -> explain.LinkRelevance:
    """Link relevance of every dense connection for ``target``: gradient × activation from one
    backward through the trace, or LRP (``method="lrp"``) through the model's canonized copy."""
    if method == "gradient" and not an.has_graph:
        an = get_analysis(ctx, graph=True)

    def run() -> explain.LinkRelevance:
        with runtime.job("Tracing the evidence through the dense links"):
            return explain.link_relevance(an.trace, target, method=method, model=ctx.load())

    return session.memo("relevance", (an.key, target, method), run, max_entries=8)
