"""Forward-only CAMs, one family in one module (its records, scoring and time estimate share one work plan).

Ablation-CAM by resuming from the explained layer, Score-CAM, SS-CAM, IS-CAM.

Every method here weights the explained layer's channels ``A_k`` (1, C, h, w) by how the target's
raw logit ``y`` responds when the network is run again with something changed, and returns
``sum_k w_k A_k`` (ReLU, upsampling and min-max only for the shown map, as for every CAM):

- **Ablation-CAM** (Desai & Ramaswamy 2020): channel k of the layer set to ``fill`` (0), the rest of
  the network resumed from that layer (:meth:`DenseNet.forward_from`), ``w_k = (y - y_k) / y``.
  Everything before the layer is the same for every channel, so it is never re-run: at
  ``features.norm5`` only the head runs per channel, at ``features.denseblock3`` only transition 3,
  block 4 and the head. pytorch-grad-cam runs the whole network before the layer once per channel.
- **Score-CAM** (Wang et al. 2020): the input multiplied by channel k's upsampled, min-max
  normalised map ``M_k``; ``w = softmax_k(y(M_k * x) - y(x))``. Two mask conventions (``masks``):
  ``"torch-cam"`` (default): min-max each channel at the layer's resolution (``(a - min) /
  (max - min + 1e-8)``), then bilinear upsampling with half-pixel centres (``align_corners=False``),
  as torch-cam's ``ScoreCAM``; ``"pytorch-grad-cam"``: bilinear upsampling with
  ``align_corners=True`` (``nn.UpsamplingBilinear2d``) first, then min-max at input resolution, as
  pytorch-grad-cam's ``ScoreCAM``. The baseline ``y(x)`` does not change a softmax.
- **SS-CAM** (Wang et al. 2020, torch-cam's definition): the scores averaged over ``samples`` masks
  with Gaussian noise (std ``std``) added to the upsampled normalised map, drawn in torch-cam's
  order (per sample, all channels) from a seeded CPU generator.
- **IS-CAM** (Naidu et al. 2020, torch-cam's definition): the scores averaged over ``samples``
  inputs ``c_i * (M_k * x)`` with ``c_i = sum_{j<=i} j / samples``.

Work is done in batches of ``batch_size`` perturbed copies; the progress callback hears the
fraction done after each batch, and raising from it stops the work there. ``top`` scores only the
``top`` channels ranked by mean activation (``rank_by="activation"``) or by the energy of
gradient x activation, ``sum_ij (g * a)^2`` (``rank_by="gradient"``, one backward pass); the other
channels get weight 0 — a fast preview whose error against all channels BENCHMARKS.md measures.

No hooks, no state on the model, no ``.grad``: every call returns new arrays.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..model import DenseNet
from ..trace import Trace
from . import registry
from ._common import Size, check_eval, prepare_input, resolve_size, to_numpy
from .cam import CamMap, default_layers, shown_map
from .registry import Kind, Method, Progress, register

MASKS = ("torch-cam", "pytorch-grad-cam")
RANKS = ("activation", "gradient")


def default_batch_size(method: str, device: torch.device | str = "cpu") -> int:
    """The batch size used when none is given, by method and device type.

    Args:
        method: a registered perturbation method (``"ablationcam"``, ``"scorecam"``, ...).
        device: where the model lives.

    Returns:
        Perturbed copies per forward.
    """
    return _spec(method).batch["cuda" if torch.device(device).type == "cuda" else "cpu"]


# --- what the work needs --------------------------------------------------------------------

@dataclass(frozen=True)
class _Job:
    """One layer's work: its activation, the channels to score and what the resumed forward needs."""

    layer: str
    activation: Tensor  # (1, C, h, w), detached
    channels: Tensor  # (m,) int64, ascending
    saved: dict[str, Tensor]  # resume inputs of the layer, (1, ...)


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def _check_options(batch_size: int | None, top: int | None, rank_by: str) -> None:
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise ValueError(f"top must be a positive int or None (all channels), got {top!r}")
    if rank_by not in RANKS:
        raise ValueError(f"rank_by must be one of {RANKS}, got {rank_by!r}")


def _prepare(model: DenseNet, x: Tensor | None, target: int | None, layers: Iterable[str] | str | None,
             trace: Trace | None, index: int, top: int | None, rank_by: str) -> tuple[Trace, int, int, list[_Job]]:
    """Resolve layers and target, reuse or make one trace, rank channels; returns (trace, row, target, jobs)."""
    check_eval(model)
    names = default_layers(model) if layers is None else model.resolve_layers(layers)
    if not names:
        raise ValueError("no layers to explain")
    needed = list(dict.fromkeys(n for name in names for n in (*model.resume_inputs(name), name)))
    need_graph = rank_by == "gradient" and top is not None
    usable = (trace is not None and all(n in trace.activations for n in needed)
              and (not need_graph or all(trace.activations[n].requires_grad for n in names)))
    if trace is not None and not -trace.logits.shape[0] <= index < trace.logits.shape[0]:
        raise ValueError(f"index {index} out of range for a trace of {trace.logits.shape[0]}")
    if not usable:
        source = trace.inputs[index:index + 1].detach() if trace is not None else prepare_input(model, x, index)
        trace, row = model.trace(source, needed, keep_graph=need_graph), 0
    else:
        row = index % trace.logits.shape[0]
    if target is not None and (isinstance(target, bool) or not isinstance(target, (int, np.integer))):
        raise TypeError(f"target must be an int class index or None, got {target!r}")
    t = int(trace.targets(None if target is None else int(target))[row])
    grads = (trace.gradients(trace.targets(t), names) if need_graph else {})
    jobs = []
    for name in names:
        a = trace.activations[name][row:row + 1].detach()
        c = a.shape[1]
        if top is None or top >= c:
            channels = torch.arange(c, device=a.device)
        else:
            if rank_by == "gradient":
                score = (grads[name][row].float() * a[0].float()).pow(2).sum(dim=(1, 2))
            else:
                score = a[0].float().mean(dim=(1, 2))
            channels = torch.sort(torch.argsort(score, descending=True, stable=True)[:top]).values
        saved = {n: trace.activations[n][row:row + 1].detach() for n in model.resume_inputs(name)}
        jobs.append(_Job(name, a, channels, saved))
    return trace, row, t, jobs


# --- the scores --------------------------------------------------------------------------------

def _masks(a: Tensor, channels: Tensor, size: tuple[int, int], style: str) -> Tensor:
    """Channels of a (1, C, h, w) activation as (1, m, H, W) masks in [0, 1] (see the module docstring)."""
    sel = a[:, channels].float()  # (1, m, h, w)
    if style == "torch-cam":
        sel = sel - sel.amin(dim=(2, 3), keepdim=True)
        sel = sel / (sel.amax(dim=(2, 3), keepdim=True) + 1e-8)
        return F.interpolate(sel, size=size, mode="bilinear", align_corners=False)
    up = F.interpolate(sel, size=size, mode="bilinear", align_corners=True)
    lo, hi = up.amin(dim=(2, 3), keepdim=True), up.amax(dim=(2, 3), keepdim=True)
    return (up - lo) / (hi - lo + 1e-8)


class _Ticker:
    """Counts batches over all layers and reports the fraction done after each."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total, self.done, self.progress = max(1, total), 0, progress

    def tick(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(min(self.done / self.total, 1.0))


def _batches(job: _Job, bs: int, passes: int) -> int:
    return math.ceil(job.channels.numel() / bs) * passes


def _ablation_scores(model: DenseNet, job: _Job, t: int, bs: int, fill: float, ticker: _Ticker) -> Tensor:
    """y_k for every scored channel k: the logit with channel k set to ``fill``, resumed from the layer."""
    a, ks = job.activation, job.channels
    out = torch.empty(ks.numel(), dtype=torch.float32, device=a.device)
    for part in _chunks(ks.numel(), bs):
        chunk = ks[part]
        batch = a.expand(chunk.numel(), *a.shape[1:]).clone()  # (b, C, h, w)
        batch[torch.arange(chunk.numel(), device=a.device), chunk] = fill
        out[part] = model.forward_from(job.layer, batch, job.saved)[:, t].float()
        ticker.tick()
    return out


def _masked_scores(model: DenseNet, job: _Job, x: Tensor, t: int, base: float, bs: int, *, noise: bool,
                   scaled: bool, style: str, passes: int, std: float, generator: torch.Generator | None,
                   channels_last: bool, ticker: _Ticker) -> Tensor:
    """Mean over ``passes`` of y(masked input) - y(x), per scored channel (Score-, SS-, IS-CAM).

    ``noise``: Gaussian noise of std ``std`` is added to each mask (SS-CAM); ``scaled``: pass i
    scales the masked input by ``c_i = sum_{j<=i} j / passes`` (IS-CAM).
    """
    size = tuple(x.shape[-2:])
    ks = job.channels
    masks = _masks(job.activation, ks, size, style)[0]  # (m, H, W)
    total = torch.zeros(ks.numel(), dtype=torch.float32, device=x.device)
    # SS-CAM noise, drawn like torch-cam (all channels of one sample, samples in order) but chunk by
    # chunk: the CPU normal sampler fills blocks of 16, so equal streams need H*W % 16 == 0.
    per_chunk_noise = size[0] * size[1] % 16 == 0
    coeff = 0.0
    for s in range(passes):
        coeff += (s + 1) / passes
        noise_all = None
        if noise and not per_chunk_noise:
            noise_all = torch.normal(0.0, std, tuple(masks.shape), generator=generator).to(x.device)
        for part in _chunks(ks.numel(), bs):
            m = masks[part]  # (b, H, W)
            if noise:
                m = m + (noise_all[part] if noise_all is not None else
                         torch.normal(0.0, std, tuple(m.shape), generator=generator).to(x.device))
            inputs = m[:, None] * x  # (b, C_in, H, W)
            if scaled:
                inputs = coeff * inputs
            if channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            total[part] += model(inputs.to(x.dtype))[:, t].float() - base
            ticker.tick()
    return total / passes


def _drop_weights(scores: Tensor, y: float) -> Tensor:
    # The paper's (y - y_k) / y; a zero logit leaves the unnormalised drop (same shown map up to sign).
    return (y - scores) / (y if y != 0 else 1.0)


def _softmax_weights(scores: Tensor, y: float) -> Tensor:
    return torch.softmax(scores, dim=0)


# --- the family: one record per method, every default in it ---------------------------------------

@dataclass(frozen=True)
class _Spec:
    """How one forward-only CAM works, and its defaults (the one place they live).

    Attributes:
        name: the registered name.
        resumes: scores come from the network resumed from the layer with one channel ablated
            (Ablation-CAM); else from full forwards of the input masked by each channel.
        weights: channel scores and the unperturbed logit -> channel weights.
        defaults: the method's options and their defaults (``samples`` is the number of passes).
        noise, scaled: SS-CAM's noisy masks, IS-CAM's scaled inputs (masked scores only).
        batch: default perturbed copies per forward, by device type (measured on 2 CPU threads with
            DenseNet-121 at 224, ``benchmarks/bench_perturbation.py --batch-sizes``: resumed forwards are
            small, so larger batches amortise the per-call overhead; full forwards of masked inputs gain
            nothing past 16 on a CPU, memory-bound, and run about 1.4x faster channels-last).
        label, description: for the registry.
        preview_top: the registry's fast preview, if one is close enough.
    """

    name: str
    resumes: bool
    weights: Callable[[Tensor, float], Tensor]
    defaults: dict[str, Any]
    label: str
    description: str
    noise: bool = False
    scaled: bool = False
    batch: dict[str, int] = field(default_factory=lambda: {"cpu": 16, "cuda": 64})
    preview_top: int | None = None

    @property
    def work(self) -> str:
        """What one forward of its work is, in words (for :class:`TimeEstimate`)."""
        return "forwards of the network after" if self.resumes else "full forwards of masked inputs"


_SPECS: dict[str, _Spec] = {s.name: s for s in (
    _Spec("ablationcam", resumes=True, weights=_drop_weights, defaults={"fill": 0.0},
          batch={"cpu": 64, "cuda": 256}, label="Ablation-CAM",
          description="Channel weights from the score drop when each channel is zeroed; the network is resumed "
                      "from the layer (Desai & Ramaswamy 2020).",
          preview_top=64),  # top-64 by activation: max error 0.07 of the [0, 1] map (BENCHMARKS.md)
    _Spec("scorecam", resumes=False, weights=_softmax_weights, defaults={"masks": "torch-cam"}, label="Score-CAM",
          description="Channel weights from the scores of the input masked by each channel (Wang et al. 2020)."),
    _Spec("sscam", resumes=False, weights=_softmax_weights, noise=True,
          defaults={"masks": "torch-cam", "samples": 35, "std": 2.0, "seed": 0}, label="SS-CAM",
          description="Score-CAM with scores averaged over noisy masks (Wang et al. 2020; torch-cam's definition)."),
    _Spec("iscam", resumes=False, weights=_softmax_weights, scaled=True,
          defaults={"masks": "torch-cam", "samples": 10}, label="IS-CAM",
          description="Score-CAM with scores integrated over scaled masked inputs (Naidu et al. 2020; torch-cam's "
                      "definition)."),
)}


def _spec(method: str) -> _Spec:
    try:
        return _SPECS[method]
    except (KeyError, TypeError):
        raise ValueError(f"unknown perturbation method {method!r}; choose from {', '.join(_SPECS)}") from None


class _Default:
    """The value of an option left to the method's record (:data:`DEFAULT`)."""

    def __repr__(self) -> str:
        return "DEFAULT"


#: An option's value that means "the method's own default" (the wrappers' keyword defaults).
DEFAULT: Any = _Default()


def _options(spec: _Spec, options: dict[str, Any]) -> dict[str, Any]:
    """The method's defaults overridden by ``options`` (:data:`DEFAULT` keeps the default); unknown ones refused."""
    unknown = set(options) - set(spec.defaults) - {"channels_last"}
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)} for {spec.name}; it takes "
                        f"{', '.join(sorted(spec.defaults) + ['channels_last'])}")
    given = {k: v for k, v in options.items() if v is not DEFAULT}
    return {"samples": 1, **spec.defaults, "channels_last": None, **given}


def _run(spec: _Spec, model: DenseNet, x: Tensor | None, target: int | None, layers: Iterable[str] | str | None,
         *, trace: Trace | None, size: Size | None, index: int, batch_size: int | None, top: int | None,
         rank_by: str, progress: Progress | None, options: dict[str, Any]) -> dict[str, CamMap]:
    _check_options(batch_size, top, rank_by)
    opts = _options(spec, options)
    if opts.get("masks", MASKS[0]) not in MASKS:
        raise ValueError(f"masks must be one of {MASKS}, got {opts['masks']!r}")
    samples = opts["samples"]
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples must be a positive int, got {samples!r}")
    if "std" in opts and not opts["std"] > 0:
        raise ValueError(f"std must be positive, got {opts['std']!r}")
    trace, row, t, jobs = _prepare(model, x, target, layers, trace, index, top, rank_by)
    inputs = trace.inputs[row:row + 1].detach()
    out_size = resolve_size(size, tuple(inputs.shape[-2:]))
    device = inputs.device
    bs = batch_size or default_batch_size(spec.name, device)
    channels_last = device.type == "cpu" if opts["channels_last"] is None else opts["channels_last"]
    y = float(trace.logits[row, t].detach())
    seed = opts.get("seed")
    generator = torch.Generator().manual_seed(seed) if (spec.noise and seed is not None) else None
    ticker = _Ticker(sum(_batches(job, bs, samples) for job in jobs), progress)
    results = {}
    with torch.inference_mode():
        for job in jobs:
            if spec.resumes:
                scores = _ablation_scores(model, job, t, bs, opts["fill"], ticker)
            else:
                scores = _masked_scores(model, job, inputs, t, y, bs, noise=spec.noise, scaled=spec.scaled,
                                        style=opts["masks"], passes=samples, std=opts.get("std", 0.0),
                                        generator=generator, channels_last=channels_last, ticker=ticker)
            w = spec.weights(scores, y)  # (m,)
            a = job.activation[0, job.channels].float()  # (m, h, w)
            raw = (w[:, None, None] * a).sum(dim=0, keepdim=True)  # (1, h, w)
            results[job.layer] = CamMap(raw=to_numpy(raw[0]), map=to_numpy(shown_map(raw, spec.name, out_size)[0]),
                                        layer=job.layer, method=spec.name, target=t)
    return results


# --- public functions ---------------------------------------------------------------------------

def perturbation_cam_maps(model: DenseNet, x: Tensor | None, method: str = "ablationcam", target: int | None = None,
                          layers: Iterable[str] | str | None = None, *, trace: Trace | None = None,
                          size: Size | None = None, index: int = 0, batch_size: int | None = None,
                          top: int | None = None, rank_by: str = "activation", progress: Progress | None = None,
                          **options: Any) -> dict[str, CamMap]:
    """Full :class:`CamMap` results (raw and shown map) of one forward-only CAM at several layers.

    Args:
        model: a :class:`DenseNet` in eval mode, on any device.
        x: (C, H, W) or (N, C, H, W); sample ``index`` is explained. May be ``None`` with a ``trace``.
        method: ``"ablationcam"``, ``"scorecam"``, ``"sscam"`` or ``"iscam"``.
        target: class or label index whose raw logit is explained; ``None``: the top prediction.
        layers: names from ``model.tap_names``; ``None``: block outputs and ``features.norm5``.
        trace: a trace of ``x`` to reuse (its layer and :meth:`DenseNet.resume_inputs` are read);
            a trace lacking them is replaced by a new one of its input.
        size: (H, W) or side of ``CamMap.map``; ``None``: the input's size.
        index: which sample of ``x`` (or of ``trace``).
        batch_size: perturbed copies per forward; ``None``: :func:`default_batch_size`.
        top: score only this many channels (the rest get weight 0); ``None``: all.
        rank_by: how ``top`` picks channels: ``"activation"`` (mean activation) or ``"gradient"``
            (energy of gradient x activation, from one backward pass).
        progress: called with the fraction done after every batch; raising from it stops the work.
        options: the method's own, each defaulting to its record's value (:data:`DEFAULT`): ``fill`` (Ablation-CAM: the ablated value), ``masks`` (``"torch-cam"`` or
            ``"pytorch-grad-cam"``), ``samples`` (SS-CAM and IS-CAM passes), ``std`` (SS-CAM noise),
            ``seed`` (SS-CAM noise generator; ``None``: torch's global one); and for every method
            ``channels_last`` (masked inputs in NHWC; default on CPU, where the convolutions run faster so).

    Returns:
        layer name -> :class:`CamMap`, in forward order.

    Raises:
        ValueError, TypeError: an unknown method, layer or option, a bad target, a model in train mode.
    """
    return _run(_spec(method), model, x, target, layers, trace=trace, size=size, index=index,
                batch_size=batch_size, top=top, rank_by=rank_by, progress=progress, options=options)


def ablation_cam(model: DenseNet, x: Tensor, target: int | None = None, layers: Iterable[str] | str | None = None,
                 *, size: Size | None = None, index: int = 0, batch_size: int | None = None, top: int | None = None,
                 rank_by: str = "activation", fill: float = DEFAULT, trace: Trace | None = None,
                 progress: Progress | None = None) -> dict[str, np.ndarray]:
    """Ablation-CAM maps, layer name -> (H, W) in [0, 1]: ``w_k = (y - y_k) / y`` with channel k set to
    ``fill``, the network resumed from the layer (see :func:`perturbation_cam_maps` for the arguments)."""
    maps = perturbation_cam_maps(model, x, "ablationcam", target, layers, trace=trace, size=size, index=index,
                                 batch_size=batch_size, top=top, rank_by=rank_by, progress=progress, fill=fill)
    return {name: m.map for name, m in maps.items()}


def score_cam(model: DenseNet, x: Tensor, target: int | None = None, layers: Iterable[str] | str | None = None,
              *, size: Size | None = None, index: int = 0, batch_size: int | None = None, top: int | None = None,
              rank_by: str = "activation", masks: str = DEFAULT, trace: Trace | None = None,
              progress: Progress | None = None) -> dict[str, np.ndarray]:
    """Score-CAM maps: softmax of the logits of the input masked by each channel's normalised map;
    ``masks`` picks torch-cam's or pytorch-grad-cam's mask convention (module docstring)."""
    maps = perturbation_cam_maps(model, x, "scorecam", target, layers, trace=trace, size=size, index=index,
                                 batch_size=batch_size, top=top, rank_by=rank_by, progress=progress, masks=masks)
    return {name: m.map for name, m in maps.items()}


def ss_cam(model: DenseNet, x: Tensor, target: int | None = None, layers: Iterable[str] | str | None = None,
           *, size: Size | None = None, index: int = 0, batch_size: int | None = None, top: int | None = None,
           rank_by: str = "activation", samples: int = DEFAULT, std: float = DEFAULT, seed: int | None = DEFAULT,
           masks: str = DEFAULT, trace: Trace | None = None,
           progress: Progress | None = None) -> dict[str, np.ndarray]:
    """SS-CAM maps: Score-CAM scores averaged over ``samples`` noisy masks (noise std ``std``, seeded by
    ``seed``; ``None``: torch's global generator, as torch-cam draws it)."""
    maps = perturbation_cam_maps(model, x, "sscam", target, layers, trace=trace, size=size, index=index,
                                 batch_size=batch_size, top=top, rank_by=rank_by, progress=progress, masks=masks,
                                 samples=samples, std=std, seed=seed)
    return {name: m.map for name, m in maps.items()}


def is_cam(model: DenseNet, x: Tensor, target: int | None = None, layers: Iterable[str] | str | None = None,
           *, size: Size | None = None, index: int = 0, batch_size: int | None = None, top: int | None = None,
           rank_by: str = "activation", samples: int = DEFAULT, masks: str = DEFAULT, trace: Trace | None = None,
           progress: Progress | None = None) -> dict[str, np.ndarray]:
    """IS-CAM maps: Score-CAM scores averaged over ``samples`` integration steps ``c_i * (M_k * x)``."""
    maps = perturbation_cam_maps(model, x, "iscam", target, layers, trace=trace, size=size, index=index,
                                 batch_size=batch_size, top=top, rank_by=rank_by, progress=progress, masks=masks,
                                 samples=samples)
    return {name: m.map for name, m in maps.items()}


# --- time estimate -------------------------------------------------------------------------------

@dataclass(frozen=True)
class TimeEstimate:
    """How long a forward-only CAM will take, from one timed batch.

    Attributes:
        seconds: the extrapolated wall time.
        forwards: perturbed forwards in all (channels x samples, summed over layers).
        batches: forwards / batch size, rounded up per layer and pass.
        work: what each forward is, in words (``"forwards of the network after norm5"``).
        device: ``"CPU"`` or the GPU's name.
    """

    seconds: float
    forwards: int
    batches: int
    work: str
    device: str

    @property
    def text(self) -> str:
        """``"≈ 40 s on this CPU: 1,024 forwards of the network after norm5"``."""
        s = self.seconds
        when = f"{s:.1f} s" if s < 10 else (f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min")
        where = "this CPU" if self.device == "CPU" else self.device
        return f"≈ {when} on {where}: {self.forwards:,} {self.work}"


def estimate_time(model: DenseNet, x: Tensor | None, method: str = "ablationcam",
                  layers: Iterable[str] | str | None = None, *, trace: Trace | None = None, index: int = 0,
                  batch_size: int | None = None, top: int | None = None, samples: int | None = None,
                  channels_last: bool | None = None) -> TimeEstimate:
    """Time one batch of the method's real work on this machine and extrapolate to the whole run.

    Runs one warm-up and one timed batch per distinct kind of work (resumed forwards from each
    layer, or full forwards of masked inputs), so the estimate is measured, not guessed.

    Args:
        model, x, layers, trace, index, batch_size, top: as for :func:`perturbation_cam_maps`.
        method: ``"ablationcam"``, ``"scorecam"``, ``"sscam"`` or ``"iscam"``.
        samples: SS-/IS-CAM passes (``None``: the method's default).
        channels_last: as for :func:`perturbation_cam_maps`.

    Returns:
        A :class:`TimeEstimate`; ``.text`` is the sentence to show.
    """
    spec = _spec(method)
    _check_options(batch_size, top, "activation")
    samples = samples or spec.defaults.get("samples", 1)
    trace, row, t, jobs = _prepare(model, x, None, layers, trace, index, top, "activation")
    inputs = trace.inputs[row:row + 1].detach()
    device = inputs.device
    bs = batch_size or default_batch_size(spec.name, device)
    if channels_last is None:
        channels_last = device.type == "cpu"
    seconds, forwards, batches = 0.0, 0, 0
    per_batch: dict[str, float] = {}
    with torch.inference_mode():
        for job in jobs:
            m = job.channels.numel()
            b = min(bs, m)
            key = job.layer if spec.resumes else "masked"
            if key not in per_batch:
                probe = _Job(job.layer, job.activation, job.channels[:b], job.saved)
                ticker = _Ticker(1, None)
                for _ in range(2):  # the first call warms up allocator and kernels
                    start = time.perf_counter()
                    if spec.resumes:
                        _ablation_scores(model, probe, t, b, 0.0, ticker)
                    else:  # one pass of plain masked inputs: noise and scaling cost nothing measurable
                        _masked_scores(model, probe, inputs, t, 0.0, b, noise=False, scaled=False, style=MASKS[0],
                                       passes=1, std=0.0, generator=None, channels_last=channels_last,
                                       ticker=ticker)
                    if device.type == "cuda":
                        torch.cuda.synchronize(device)
                    elapsed = time.perf_counter() - start
                per_batch[key] = elapsed / b
            n = m * samples
            forwards += n
            batches += _batches(job, bs, samples)
            seconds += per_batch[key] * n
    work = spec.work
    if spec.resumes:
        work += " " + ", ".join(sorted({j.layer.removeprefix("features.") for j in jobs}))
    name = "CPU" if device.type == "cpu" else torch.cuda.get_device_name(device) if device.type == "cuda" else \
        device.type.upper()
    return TimeEstimate(seconds=seconds, forwards=forwards, batches=batches, work=work, device=name)


# --- the records -----------------------------------------------------------------------------------

def _runner(method: str) -> registry.Runner:
    def run(model: DenseNet, x: Tensor, target: int | None, layers: list[str], *, trace: Trace | None = None,
            size: Size | None = None, progress: Progress | None = None, **options: Any) -> dict[str, CamMap]:
        return perturbation_cam_maps(model, x if trace is None else None, method, target, layers, trace=trace,
                                     size=size, progress=progress, **options)
    return run


def _estimator(method: str) -> Callable[..., TimeEstimate]:
    def estimate(model: DenseNet, x: Tensor | None, layers: list[str], *, trace: Trace | None = None,
                 top: int | None = None) -> TimeEstimate:
        return estimate_time(model, x, method, layers, trace=trace, top=top)
    return estimate


for _s in _SPECS.values():
    register(Method(name=_s.name, label=_s.label, description=_s.description, kind=Kind.PERTURBATION,
                    needs_layer=True, needs_graph=False, slow=True, run=_runner(_s.name), chunk_option="batch_size",
                    estimate=_estimator(_s.name), preview_top=_s.preview_top))
del _s

__all__ = ["DEFAULT", "MASKS", "TimeEstimate", "ablation_cam", "default_batch_size", "estimate_time", "is_cam",
           "perturbation_cam_maps", "score_cam", "ss_cam"]
