"""All state the dashboard shares, in one place: cached models, per-session results, the compute gate.

* Models live in ``st.cache_resource`` (shared by every session, ``max_entries`` bounded), built
  once, moved to the device and put in ``eval()`` once. Nothing afterwards mutates them: no
  hooks, no ``.train()``, no ``requires_grad_``; traces use ``torch.autograd.grad`` only.
* Results are per session (``st.session_state``), keyed by the model's key, a hash of the image
  bytes and the settings. One trace per (model, image) serves every page.
* Heavy work goes through :func:`computing`, a semaphore sized so that torch's intra-op threads
  times concurrent jobs never exceed the cores: several sessions each running torch with all
  threads made an 80 ms forward take seconds (OpenMP threads busy-waiting on each other).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import streamlit as st
import torch

import densenet
from densenet.device import describe

from . import analysis, backend

T = TypeVar("T")

# --- compute gate --------------------------------------------------------------------------------

def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


CORES = _cores()
THREADS_PER_JOB = min(CORES, 4)  # beyond ~4 threads a DenseNet forward on CPU gains little
COMPUTE_SLOTS = max(1, CORES // THREADS_PER_JOB)
torch.set_num_threads(THREADS_PER_JOB)
DEVICE = densenet.pick_device()

_local = threading.local()


@st.cache_resource(show_spinner=False)
def _gate() -> threading.BoundedSemaphore:
    """One semaphore per server process (a cached resource survives script reruns and reloads)."""
    return threading.BoundedSemaphore(COMPUTE_SLOTS)


@contextlib.contextmanager
def computing(message: str) -> Iterator[None]:
    """Run model work holding a compute slot, with a spinner; re-entrant within one thread."""
    depth = getattr(_local, "depth", 0)
    if depth:
        _local.depth = depth + 1
        try:
            yield
        finally:
            _local.depth -= 1
        return
    gate = _gate()
    acquired = gate.acquire(blocking=False)
    try:
        # Any Streamlit call may raise StopException when the session reruns or closes (the
        # spinner's exit included): the release sits in the same try as every acquisition.
        if not acquired:
            with st.spinner("Waiting for the model: another computation is running…"):
                while not acquired:
                    acquired = gate.acquire(timeout=0.2)
        _local.depth = 1
        with st.spinner(message):
            yield
    finally:
        _local.depth = 0
        if acquired:
            gate.release()


def device_label() -> str:
    return describe(DEVICE) + (f", {COMPUTE_SLOTS} job(s) at a time" if DEVICE.type == "cpu" else "")


# --- per-session memo ------------------------------------------------------------------------------

def _session_cache(name: str) -> OrderedDict:
    key = f"_cache_{name}"
    if key not in st.session_state:
        st.session_state[key] = OrderedDict()
    return st.session_state[key]


def memo(name: str, key: Hashable, compute: Callable[[], T], *, max_entries: int = 8) -> T:
    """Per-session LRU cache: ``compute()`` once per ``key``; at most ``max_entries`` kept."""
    cache = _session_cache(name)
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = compute()
    cache[key] = value
    while len(cache) > max_entries:
        try:
            cache.popitem(last=False)
        except KeyError:  # an overlapping (stopping) run of this session emptied it first
            break
    return value


def peek(name: str, key: Hashable) -> Any | None:
    """A memoised value if present, without computing it."""
    return _session_cache(name).get(key)


@st.cache_resource(max_entries=256, show_spinner=False)
def shared_figure(kind: str, key: str, _build: Callable[[], Any]) -> Any:
    """A figure built once per ``(kind, key)`` for all sessions (pure function of the key)."""
    return _build()


# --- sticky widgets ----------------------------------------------------------------------------------

def sticky(key: str, default: Any, options: list | None = None) -> None:
    """Prepare ``st.session_state[key]`` before the widget with this key is drawn.

    Widgets that are not drawn in a run lose their state (e.g. on another page). Call this
    before the widget and :func:`remember` after it: the value survives page switches and is
    reset to ``default`` when it is no longer among ``options`` (another model, another block).
    """
    keep = f"_keep_{key}"
    value = st.session_state.get(key, st.session_state.get(keep, default))

    def valid(v: Any) -> bool:
        if options is None:
            return True
        if isinstance(v, list):
            return all(item in options for item in v)
        return v in options

    if not valid(value):
        value = default if valid(default) else (options[0] if options else None)
    if st.session_state.get(key, object()) != value:
        st.session_state[key] = value


def remember(key: str) -> None:
    if key in st.session_state:
        st.session_state[f"_keep_{key}"] = st.session_state[key]


def choose(key: str, value: Any) -> None:
    """Set a sticky choice from elsewhere (a click on a graph); safe inside callbacks."""
    st.session_state[f"_keep_{key}"] = value
    st.session_state[key] = value


def kept(key: str, default: Any = None) -> Any:
    return st.session_state.get(key, st.session_state.get(f"_keep_{key}", default))


# --- models ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelSpec:
    """What the sidebar asked for; cheap to build, hashable, and enough to load the model.

    Attributes:
        kind: ``demo``, ``variant`` (fresh weights), ``custom`` (classroom config, fresh
            weights), ``imagenet`` (torchvision weights) or ``checkpoint`` (an upload).
        name: variant name, or the checkpoint's file name.
        config: the architecture when known without loading (variant, custom).
        digest: content hash of an uploaded checkpoint.
    """

    kind: str
    name: str
    config: densenet.DenseNetConfig | None = None
    digest: str | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}|{self.name}|{self.config.to_json() if self.config else ''}|{self.digest or ''}"

    @property
    def label(self) -> str:
        return {
            "demo": "bundled demo model",
            "variant": f"{self.name} (fresh weights)",
            "custom": "custom DenseNet (fresh weights)",
            "imagenet": f"{self.name} (ImageNet weights)",
            "checkpoint": f"checkpoint {self.name}",
        }.get(self.kind, self.name)

    @property
    def trained(self) -> bool:
        return self.kind in ("demo", "imagenet", "checkpoint")


class ModelError(Exception):
    """A model that cannot be loaded; the message is for the user."""


@st.cache_resource(max_entries=4, show_spinner=False)
def _load(key: str, _spec: ModelSpec, _read: Callable[[], bytes] | None) -> densenet.DenseNet:
    """Build or load a model once per key for all sessions; device and eval() set here only."""
    spec = _spec
    if spec.kind == "demo":
        model = backend.demo_model()
        if model is None:
            raise ModelError("the bundled demo model is not available yet")
    elif spec.kind in ("variant", "custom"):
        model = backend.build_fresh(spec.config)
    elif spec.kind == "imagenet":
        model = densenet.create(spec.name, weights="imagenet")
    elif spec.kind == "checkpoint":
        model = densenet.load_checkpoint(_read())
    else:
        raise ValueError(f"unknown model kind {spec.kind!r}")
    return model.to(DEVICE).eval()


def load_model(spec: ModelSpec, read: Callable[[], bytes] | None = None) -> densenet.DenseNet:
    """The model for ``spec`` (cached); raises :class:`ModelError` with a plain reason.

    ``read`` returns an uploaded checkpoint's bytes; it is called only when the model is not cached.
    """
    failed = _session_cache("failed_models")
    if spec.key in failed:
        raise ModelError(failed[spec.key])
    try:
        with computing(f"Loading {spec.label}…"):
            return _load(spec.key, spec, read)
    except (densenet.CheckpointError, densenet.WeightsUnavailableError, ModelError, ValueError, TypeError) as e:
        failed[spec.key] = str(e)
        raise ModelError(str(e)) from None


# --- images --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageInput:
    """The chosen image: its name, content hash and pixels (float32 in [0, 1], (H, W[, 3]))."""

    name: str
    digest: str
    pixels: np.ndarray = field(repr=False, compare=False)

    def thumbnail(self) -> np.ndarray:
        """A small uint8 copy for the sidebar (a 40-megapixel upload is not re-encoded on every rerun)."""
        return memo("thumbnails", self.digest, lambda: analysis.thumbnail(self.pixels), max_entries=4)


def file_digest(file_id: str, read: Callable[[], bytes]) -> str:
    """Content hash of an uploaded file, computed once per upload (reading and hashing 100 MB takes a while)."""
    return memo("digests", file_id, lambda: backend.digest(read()), max_entries=8)


def read_image(name: str, digest: str, read: Callable[[], bytes]) -> ImageInput:
    """Decode once per content hash; raises ``backend.ImageError`` for bad files."""
    pixels = memo("images", digest, lambda: backend.load_image(read()), max_entries=4)
    return ImageInput(name, digest, pixels)


# --- the context the entrypoint hands to pages ---------------------------------------------------------

@dataclass
class Context:
    """What the sidebar chose, read by every page through :func:`context`."""

    spec: ModelSpec
    read: Callable[[], bytes] | None = field(default=None, repr=False)
    image: ImageInput | None = None
    image_error: str | None = None
    notes: list[str] = field(default_factory=list)

    def model(self) -> densenet.DenseNet:
        return load_model(self.spec, self.read)

    @property
    def config(self) -> densenet.DenseNetConfig:
        return self.spec.config if self.spec.config is not None else self.model().config

    @property
    def input_size(self) -> int:
        if self.spec.config is not None and self.spec.kind in ("variant", "custom"):
            return backend.fresh_preprocessing(self.spec.config).size
        return self.model().preprocessing.size


def set_context(ctx: Context) -> None:
    st.session_state["_context"] = ctx


def context() -> Context:
    return st.session_state["_context"]


@st.cache_resource(max_entries=64, show_spinner=False)
def _topology(config_json: str, size: int) -> densenet.Topology:
    return densenet.topology(densenet.DenseNetConfig.from_dict(_json_loads(config_json)), size)


def _json_loads(s: str) -> dict:
    import json

    return json.loads(s)


def topology(config: densenet.DenseNetConfig, size: int) -> densenet.Topology:
    """Topology of a config at an input size; shared across sessions (pure function)."""
    return _topology(config.to_json(), int(size))


# --- one trace per (model, image) ----------------------------------------------------------------

@dataclass
class Analysis:
    """One forward pass of one image, with everything the pages read from it.

    Attributes:
        key: model key + image hash.
        trace: every tap's activation, with the autograd graph kept for gradients.
        x: the (1, C, H, W) input tensor on the model's device.
        display: the image exactly as the model sees it (cropped, resized), in [0, 1].
        predictions: the top predictions.
    """

    key: str
    trace: densenet.Trace
    x: torch.Tensor
    display: np.ndarray
    predictions: list[analysis.Prediction]
    multilabel: bool

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.x.shape[-2:])


def get_analysis(ctx: Context) -> Analysis:
    """The session's trace of the current model and image, computed once."""
    if ctx.image is None:
        raise ValueError("no image chosen")
    model = ctx.model()
    key = f"{ctx.spec.key}#{ctx.image.digest}"

    def run() -> Analysis:
        with computing("Running the model…"):
            x = backend.preprocess(ctx.image.pixels, model)
            trace = model.trace(x, keep_graph=True)  # the graph lets every CAM reuse this one trace
            display = backend.to_display(ctx.image.pixels, model.preprocessing)
            preds = analysis.top_k(trace.probabilities, trace.logits, model.class_names,
                                   k=min(5, len(model.class_names)))
        return Analysis(key, trace, x, display, preds, model.config.multilabel)

    # One trace per session: it holds the autograd graph, which is not small.
    return memo("analysis", key, run, max_entries=1)


def image_page(title: str) -> tuple[Context, densenet.DenseNet, Analysis, densenet.Topology]:
    """The top of a page that needs an image: its header, then the objects it reads.

    Without an image the page shows why (or a hint) and stops here.
    """
    ctx = context()
    st.header(title, divider="gray")
    if ctx.image is None:
        st.info(ctx.image_error or "Choose a sample or upload an image in the sidebar.")
        st.stop()
    model = ctx.model()
    return ctx, model, get_analysis(ctx), topology(model.config, ctx.input_size)


def get_cams(an: Analysis, method: str, target: int, layers: list[str]) -> dict[str, backend.Map]:
    """CAM-family maps from the session's trace, one backward for all ``layers``; memoised."""
    layers = list(layers)
    key = (an.key, method, target, tuple(layers))

    def run() -> dict[str, backend.Map]:
        with computing(f"Computing {backend.method_label(method)}…"):
            return backend.cams(an.trace, method, target, layers, an.size)

    return memo("cams", key, run, max_entries=32)


def get_attribution(ctx: Context, an: Analysis, method: str, target: int, layer: str,
                    progress: Callable[[float], None] | None = None) -> backend.Map:
    key = (an.key, method, target, layer if method == "guided-gradcam" else None)

    def run() -> backend.Map:
        with computing(f"Computing {backend.method_label(method)}…"):
            return backend.attribution(method, ctx.model(), an.x, target, layer, progress)

    return memo("attributions", key, run, max_entries=8)


def has_attribution(an: Analysis, method: str, target: int, layer: str) -> bool:
    return peek("attributions", (an.key, method, target, layer if method == "guided-gradcam" else None)) is not None


def get_trust(ctx: Context, an: Analysis, method: str, target: int, layer: str, cam_map: np.ndarray) -> dict[str, Any]:
    """Sanity check (model randomisation) and deletion/insertion AUC for one map; memoised."""
    key = (an.key, method, target, layer)

    def run() -> dict[str, Any]:
        with computing("Checking the map: randomisation test and deletion/insertion…"):
            model = ctx.model()
            sanity = backend.sanity_check(model, an.x, target, layer, method) if method in backend.CAM_METHODS else None
            curves = backend.deletion_insertion(model, an.x, cam_map, target)
        return {"sanity": sanity, "curves": curves}

    return memo("trust", key, run, max_entries=16)


def peek_trust(an: Analysis, method: str, target: int, layer: str) -> dict[str, Any] | None:
    return peek("trust", (an.key, method, target, layer))


# --- timing ------------------------------------------------------------------------------------------

def start_timer() -> None:
    st.session_state["_run_started"] = time.perf_counter()


def elapsed_ms() -> float:
    return (time.perf_counter() - st.session_state.get("_run_started", time.perf_counter())) * 1e3
