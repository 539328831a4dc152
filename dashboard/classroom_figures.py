"""Figures of the classroom experiments (``densenet.classroom``) as pure plotly functions (no Streamlit).

Each function takes an experiment's plain result and returns a figure (or a DataFrame / an RGB
array), so the Claims and DenseNet-vs-ResNet pages and the lesson export draw the same pictures.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from densenet.classroom import Comparison, GradientResult, LearnSnapshot, MemoryResult, ParamsVsAccuracy, SameDepth

from .analysis import source_color
from .numbers import big, byte_size

#: One colour per network, the same on every page and in the lesson.
COLORS = {"DenseNet": "#0f766e", "ResNet": "#9333ea", "plain CNN": "#dc2626"}
MEMORY_COLORS = ("#dc2626", "#0f766e", "#9333ea")  # naive, memory-efficient, ResNet
_LAYOUT = dict(margin=dict(l=10, r=10, t=50, b=10), plot_bgcolor="white", paper_bgcolor="white")
_GRID = "#eef2f7"


def _tick(units: tuple[str, str, str, str]) -> Callable[[float], str]:
    """A tick formatter: 20 M, 5 MB ("G", "M", "k", "" or their byte names)."""
    def fmt(v: float) -> str:
        for unit, size in zip(units, (1e9, 1e6, 1e3, 1)):
            if abs(v) >= size:
                return f"{v / size:g} {unit}".strip()
        return f"{v:g}"
    return fmt


def log_ticks(lo: float, hi: float, fmt: Callable[[float], str]) -> dict:
    """Tick values 1, 2, 5 × 10^n spanning [lo, hi] with their labels, for a log axis that reads at a glance."""
    if not 0 < lo <= hi:
        raise ValueError(f"a log axis needs 0 < lo <= hi, got {lo}, {hi}")
    decades = math.log10(hi / lo)
    mantissas = (1, 2, 3, 5) if decades <= 1.5 else (1, 2, 5) if decades <= 3 else (1,)
    values = [m * 10.0 ** e for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
              for m in mantissas]
    inside = [v for v in values if lo / 1.6 <= v <= hi * 1.6]
    return dict(tickvals=inside, ticktext=[fmt(v) for v in inside])


def color_of(network: str) -> str:
    """The colour of a network by its name's family (``"DenseNet"``, ``"ResNet"``, ``"plain CNN"``)."""
    for name, color in COLORS.items():
        if network.startswith(name):
            return color
    return "#475569"


# --- fewer parameters ----------------------------------------------------------------------------

def params_vs_accuracy(result: ParamsVsAccuracy, *, height: int = 400) -> go.Figure:
    """Parameters (log x) against published ImageNet top-1 (y), one line per family, each point named."""
    fig = go.Figure()
    families = list(dict.fromkeys(m.family for m in result.models))
    for family in families:
        models = result.family(family)
        fig.add_trace(go.Scatter(
            x=[m.params for m in models], y=[m.top1 for m in models], mode="lines+markers+text", name=family,
            text=[m.name.removeprefix("densenet").removeprefix("resnet") for m in models],
            textposition="top center" if family == "DenseNet" else "bottom right", cliponaxis=False,
            line=dict(color=color_of(family), width=2), marker=dict(size=9),
            hovertext=[f"{m.name}: {big(m.params)} parameters, {big(m.macs)} MACs, top-1 {m.top1:.2f} %, "
                       f"top-5 {m.top5:.2f} % ({m.weights})" for m in models], hoverinfo="text"))
    fig.update_layout(**_LAYOUT, height=height,
                      title=dict(text="ImageNet top-1 against parameters (torchvision's published figures)",
                                 font=dict(size=14)),
                      legend=dict(orientation="h", yanchor="bottom", y=0.0, xanchor="right", x=1.0),
                      xaxis=dict(title="parameters (log scale)", type="log", gridcolor=_GRID,
                                 **log_ticks(min(m.params for m in result.models),
                                             max(m.params for m in result.models), _tick(("G", "M", "k", "")))),
                      yaxis=dict(title="top-1 accuracy (%)", gridcolor=_GRID))
    return fig


def same_depth_bars(result: SameDepth, *, height: int = 400) -> go.Figure:
    """Two bars: the DenseNet's parameters and those of the ResNet of exactly its depth."""
    labels = ["DenseNet", f"ResNet ({result.resnet_block})"]
    values = [result.densenet_params, result.resnet_params]
    fig = go.Figure(go.Bar(
        x=labels, y=values, marker_color=[COLORS["DenseNet"], COLORS["ResNet"]],
        text=[big(v) for v in values], textposition="outside", cliponaxis=False,
        hovertext=[f"DenseNet: {values[0]:,} parameters, {big(result.densenet_macs)} MACs",
                   f"ResNet, {result.resnet_layout} {result.resnet_block} blocks per stage, width "
                   f"{result.resnet_width}: {values[1]:,} parameters, {big(result.resnet_macs)} MACs"],
        hoverinfo="text"))
    fig.update_layout(**_LAYOUT, height=height, showlegend=False,
                      title=dict(text=f"Depth {result.depth}: ResNet has {result.ratio:.1f}× the parameters",
                                 font=dict(size=14)),
                      yaxis=dict(title="parameters", gridcolor=_GRID, rangemode="tozero",
                                 range=[0, max(values) * 1.18]))
    return fig


# --- vanishing gradients ---------------------------------------------------------------------------

def gradient_profiles(result: GradientResult, *, height: int = 420) -> go.Figure:
    """||dL/dh|| against depth, log y, one line per network: at initialisation (left), after training (right)."""
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=("at initialisation", f"after {result.steps} training steps"))
    for p in result.profiles:
        for col, values in ((1, p.init), (2, p.trained)):
            fig.add_trace(go.Scatter(
                x=p.depths, y=np.maximum(np.asarray(values, dtype=float), 1e-30), mode="lines+markers",
                name=p.network, legendgroup=p.network, showlegend=col == 1,
                line=dict(color=color_of(p.network), width=2), marker=dict(size=4),
                hovertext=[f"{p.network}, {layer} (depth {d}): {v:.3g}" for layer, d, v in
                           zip(p.layers, p.depths, values)], hoverinfo="text"), row=1, col=col)
    fig.update_yaxes(type="log", gridcolor=_GRID, exponentformat="power")
    fig.update_yaxes(title_text="||dL/dh|| (log scale)", row=1, col=1)
    fig.update_xaxes(title_text="depth of the unit (input → output)", gridcolor=_GRID)
    fig.update_layout(**{**_LAYOUT, "margin": dict(l=10, r=10, t=60, b=10)}, height=height,
                      title=dict(text=f"Gradient norm at every depth, depth {result.depth}", font=dict(size=14)),
                      legend=dict(orientation="h", yanchor="bottom", y=1.09, xanchor="right", x=1.0))
    return fig


# --- memory ----------------------------------------------------------------------------------------

def memory_curves(result: MemoryResult, *, height: int = 420) -> go.Figure:
    """Peak bytes of one training step against L, log-log; each curve's fitted exponent in its legend."""
    fig = go.Figure()
    short = ("DenseNet, naive concatenation", "DenseNet, memory-efficient", "ResNet stack, about the same parameters")
    for curve, name, color, dash in zip(result.curves, short, MEMORY_COLORS, ("solid", "solid", "dash")):
        fig.add_trace(go.Scatter(
            x=curve.depths, y=curve.peak_bytes, mode="lines+markers", meta={"label": curve.label},
            name=f"{name}: ∝ L<sup>{curve.exponent:.2f}</sup>", line=dict(color=color, width=2, dash=dash),
            hovertext=[f"{curve.label}, L = {d}: {byte_size(b)} peak, {big(p)} parameters" for d, b, p in
                       zip(curve.depths, curve.peak_bytes, curve.params)], hoverinfo="text"))
    fig.update_layout(**{**_LAYOUT, "margin": dict(l=10, r=10, t=50, b=10)}, height=height,
                      title=dict(text=f"Peak memory of one training step, dense block of L layers "
                                      f"(k = {result.growth_rate})", font=dict(size=14)),
                      legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0.0),
                      xaxis=dict(title="layers L (log scale)", type="log", gridcolor=_GRID,
                                 tickvals=result.depths, ticktext=[str(d) for d in result.depths]),
                      yaxis=dict(title="peak memory (log scale)", type="log", gridcolor=_GRID,
                                 **log_ticks(min(min(c.peak_bytes) for c in result.curves),
                                             max(max(c.peak_bytes) for c in result.curves), _tick(("GB", "MB", "kB", "B")))))
    return fig


def memory_exponents(result: MemoryResult) -> str:
    """One sentence with every curve's fitted exponent (overall and between the two deepest points)."""
    parts = [f"{c.label}: peak ∝ L^{c.exponent:.2f} (L^{c.tail_exponent:.2f} between the two deepest)"
             for c in result.curves]
    return "Fitted exponents: " + "; ".join(parts) + "."


# --- watch it learn ----------------------------------------------------------------------------------

def _smooth(values: list[float], window: int = 5) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return v
    kernel = np.ones(min(window, v.size))
    good = np.isfinite(v)
    sums = np.convolve(np.where(good, v, 0.0), kernel, mode="full")[:v.size]
    counts = np.convolve(good.astype(float), kernel, mode="full")[:v.size]
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def learning_curves(snap: LearnSnapshot, *, height: int = 330) -> go.Figure:
    """Training loss (left) and accuracy (right) of both networks so far, running mean of 5 steps."""
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=("training loss", "training accuracy"))
    for net in (snap.densenet, snap.resnet):
        name = f"{net.name} ({big(net.params)} params)"
        for col, values in ((1, net.loss), (2, net.accuracy)):
            fig.add_trace(go.Scatter(x=net.steps, y=_smooth(values), mode="lines", name=name,
                                     legendgroup=net.name, showlegend=col == 1,
                                     line=dict(color=color_of(net.name), width=2)), row=1, col=col)
    fig.update_xaxes(title_text="step", range=[0, max(1, snap.total_steps)], gridcolor=_GRID)
    fig.update_yaxes(gridcolor=_GRID, rangemode="tozero")
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", row=1, col=2)
    fig.update_layout(**{**_LAYOUT, "margin": dict(l=10, r=10, t=60, b=10)}, height=height,
                      title=dict(text=f"Step {snap.step} of {snap.total_steps}", font=dict(size=14)),
                      legend=dict(orientation="h", yanchor="bottom", y=1.1, xanchor="right", x=1.0))
    return fig


def cam_overlay(image: np.ndarray, cam: np.ndarray | None, *, alpha: float = 0.5) -> np.ndarray:
    """A grey image (H, W) in [0, 1] with a CAM (H, W) in [0, 1] laid over it in 'jet': RGB uint8 (H, W, 3)."""
    from matplotlib import colormaps

    grey = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    base = np.repeat(grey[..., None], 3, axis=2)
    if cam is None:
        return (base * 255).astype(np.uint8)
    if cam.shape != grey.shape:
        raise ValueError(f"cam shape {cam.shape} differs from the image's {grey.shape}")
    heat = colormaps["jet"](np.clip(cam, 0.0, 1.0))[..., :3].astype(np.float32)
    return (np.clip((1 - alpha) * base + alpha * heat, 0.0, 1.0) * 255).astype(np.uint8)


# --- side by side ------------------------------------------------------------------------------------

def comparison_table(comparison: Comparison) -> pd.DataFrame:
    """The aligned rows: quantity, left, right, right − left, right ÷ left (memory in MB)."""
    rows = []
    for row in comparison.rows:
        scale = 1e6 if "bytes" in row.quantity else 1
        quantity = row.quantity.replace("(bytes)", "(MB)")

        def shown(v: float | int | None) -> float | None:
            return None if v is None else v / scale

        rows.append({"Quantity": quantity, comparison.left.name: shown(row.left),
                     comparison.right.name: shown(row.right), "Difference": shown(row.difference),
                     "Ratio": row.ratio})
    return pd.DataFrame(rows)


def reads_bars(comparison: Comparison, *, height: int = 340) -> go.Figure:
    """Channels each unit reads, one panel per network (shared y): DenseNet's widen, ResNet's stay flat."""
    left, right = comparison.left, comparison.right
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=(f"{left.name}: {left.units} units, {left.links:,} links",
                                        f"{right.name}: {right.units} units, {right.links:,} links"))
    for col, arch in ((1, left), (2, right)):
        groups = [n.split(".")[0] if n.startswith("stage") else n.split(".")[1] if "." in n else n
                  for n in arch.unit_names]
        order = list(dict.fromkeys(groups))
        fig.add_trace(go.Bar(
            x=list(range(1, arch.units + 1)), y=arch.reads, name=arch.name, showlegend=False,
            marker_color=[source_color(order.index(g)) for g in groups],
            hovertext=[f"{n.removeprefix('features.')}: reads {r} channels" for n, r in zip(arch.unit_names, arch.reads)],
            hoverinfo="text"), row=1, col=col)
    fig.update_xaxes(title_text="unit H_l, input side first", gridcolor=_GRID)
    fig.update_yaxes(gridcolor=_GRID, rangemode="tozero")
    fig.update_yaxes(title_text="channels it reads", row=1, col=1)
    fig.update_layout(**{**_LAYOUT, "margin": dict(l=10, r=10, t=60, b=10)}, height=height, bargap=0.1,
                      title=dict(text="Channels each unit reads (colour: block or stage)", font=dict(size=14)))
    return fig


def ratio_text(value: float | None) -> str:
    """``×2.41`` / ``–`` for a ratio column."""
    return "–" if value is None or not math.isfinite(value) else f"×{value:.2f}"
