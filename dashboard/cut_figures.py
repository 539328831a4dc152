"""Figures for cutting dense links: the block with its cut links, importance beside relevance, the sentence between.

Pure functions of library objects (no Streamlit), so each can be built and checked in a plain test.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from densenet.topology import BlockInfo

from .analysis import short_name
from .figures import LINK_COLOR, NODE_COLOR, _LAYOUT, _segments, link_text

CUT_COLOR = "#dc2626"


def link_label(link: tuple[int, int]) -> str:
    """``(0, 3)`` -> ``in → 3``; ``(2, 5)`` -> ``2 → 5``."""
    j, l = link
    return f"{'in' if j == 0 else j} → {l}"


def link_key(link: tuple[int, int]) -> str:
    """The ``customdata`` of a link's marker: ``link:j:l`` (a click names the link)."""
    return f"link:{link[0]}:{link[1]}"


def clicked_links(event: object) -> list[tuple[int, int]]:
    """The links a plotly selection event on :func:`cut_graph` or :func:`cut_matrix` picked."""
    try:
        points = event["selection"]["points"]  # type: ignore[index]
    except (KeyError, TypeError):
        return []
    found = []
    for point in points or []:
        data = point.get("customdata")
        if isinstance(data, list):
            data = data[0] if data else None
        if isinstance(data, str) and data.startswith("link:"):
            _, j, l = data.split(":")
            found.append((int(j), int(l)))
    return found


def cut_graph(block: BlockInfo, cuts: set[tuple[int, int]], *, height: int = 360) -> go.Figure:
    """The block's arcs with the cut ones dashed red; a marker at each apex names its link (click to cut).

    Traces: ``kept links``, ``cut links`` (only with cuts), ``link markers`` (``customdata`` ``link:j:l``),
    ``layers``.
    """
    n = block.num_layers
    kept = [link for link in block.links if link not in cuts]
    cut = [link for link in block.links if link in cuts]
    fig = go.Figure()
    for name, links, style in (("kept links", kept, dict(color=LINK_COLOR, width=1.2)),
                               ("cut links", cut, dict(color=CUT_COLOR, width=2.0, dash="dot"))):
        if not links and name == "cut links":
            continue
        xs, ys = _segments(links)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, hoverinfo="skip", line=style,
                                 meta={"links": len(links)}))
    fig.add_trace(go.Scatter(
        x=[(s + t) / 2.0 for s, t in block.links], y=[(t - s) / 2.0 for s, t in block.links], mode="markers",
        name="link markers", showlegend=False,
        marker=dict(size=9 if n <= 12 else 6, symbol=["x" if link in cuts else "circle" for link in block.links],
                    color=[CUT_COLOR if link in cuts else "rgba(100,116,139,0.45)" for link in block.links]),
        customdata=[link_key(link) for link in block.links],
        hovertext=[("<b>cut</b>: " if link in cuts else "click to cut: ") + link_text(block, *link)
                   for link in block.links], hoverinfo="text"))
    fig.add_trace(go.Scatter(
        x=list(range(n + 1)), y=[0.0] * (n + 1), mode="markers+text" if n <= 48 else "markers", name="layers",
        showlegend=False, text=["in"] + [str(i) for i in range(1, n + 1)], textposition="bottom center",
        marker=dict(size=16 if n <= 24 else 10, color=NODE_COLOR, line=dict(color="white", width=1)),
        hoverinfo="skip"))
    top = max(1.0, n / 2.0)
    fig.update_layout(
        **_LAYOUT, height=height, dragmode=False, clickmode="event+select", hovermode="closest",
        title=dict(text=f"{short_name(block.name)}: {len(cut)} of {block.num_links} links cut", font=dict(size=14)),
        legend=dict(orientation="h", yanchor="top", y=0.0, xanchor="center", x=0.5, font=dict(size=11)),
        xaxis=dict(visible=False, range=[-0.8, n + 0.8]),
        yaxis=dict(visible=False, range=[-0.22 * top - 0.6, top * 1.06], scaleanchor="x", scaleratio=1))
    return fig


def cut_matrix(block: BlockInfo, cuts: set[tuple[int, int]], *, height: int = 420) -> go.Figure:
    """The same links as cells (row: the reading layer, column: the source); cut cells red; click a cell."""
    n = block.num_layers
    z = np.full((n, n), np.nan)
    data = [["" for _ in range(n)] for _ in range(n)]
    hover = [["" for _ in range(n)] for _ in range(n)]
    for s, t in block.links:
        z[t - 1, s] = 2.0 if (s, t) in cuts else 1.0
        data[t - 1][s] = link_key((s, t))
        hover[t - 1][s] = ("<b>cut</b>: " if (s, t) in cuts else "click to cut: ") + link_text(block, s, t)
    scale = [[0.0, "rgba(100,116,139,0.55)"], [0.5, "rgba(100,116,139,0.55)"], [0.5, CUT_COLOR], [1.0, CUT_COLOR]]
    fig = go.Figure(go.Heatmap(z=z, x=list(range(n)), y=list(range(1, n + 1)), zmin=1, zmax=2, colorscale=scale,
                               showscale=False, customdata=data, hovertext=hover, hoverinfo="text",
                               xgap=1 if n <= 64 else 0, ygap=1 if n <= 64 else 0, name="links"))
    ticks = max(1, math.ceil(n / 16))
    fig.update_layout(
        **{**_LAYOUT, "margin": dict(l=10, r=10, t=80, b=10)}, height=height, dragmode=False,
        clickmode="event+select",
        title=dict(text=f"{short_name(block.name)}: {len(cuts)} of {block.num_links:,} links cut", font=dict(size=14),
                   y=0.98, yanchor="top"),
        xaxis=dict(title=dict(text="source (in = block input)", standoff=4), side="top", constrain="domain",
                   tickvals=list(range(0, n, ticks)), ticktext=["in"] + [str(j) for j in range(ticks, n, ticks)]),
        yaxis=dict(title="reading layer", dtick=ticks, range=[n + 0.5, 0.5], scaleanchor="x", constrain="domain"))
    return fig


def importance_vs_relevance(block: BlockInfo, importance: object, relevance: object, *,
                            target_name: str, height: int = 380) -> go.Figure:
    """Two source × reader matrices side by side: the logit's drop when each link is cut (left) and its
    first-order relevance R(j → l) (right); one diverging scale each (red: for the class)."""
    n = block.num_layers
    cut = importance.matrix()[:, :n].T  # (reader l, source j)
    rel = relevance.matrix()[:, :n].T
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.14,
                        subplot_titles=("Cut: drop of the logit", "First order: relevance R(j → l)"))
    for col, z, name in ((1, cut, "drop when cut"), (2, rel, "relevance")):
        top = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
        hover = [[("" if not np.isfinite(z[l, j]) else
                   f"{link_label((j, l + 1))}: {name} {z[l, j]:+.3g}") for j in range(n)] for l in range(n)]
        fig.add_trace(go.Heatmap(z=z, x=list(range(n)), y=list(range(1, n + 1)), zmid=0, zmin=-top or -1,
                                 zmax=top or 1, colorscale="RdBu_r", hovertext=hover, hoverinfo="text", name=name,
                                 colorbar=dict(x=0.43 if col == 1 else 1.0, len=0.8, thickness=10)),
                      row=1, col=col)
        ticks = max(1, math.ceil(n / 8))
        fig.update_xaxes(title_text="source (0 = in)", tickvals=list(range(0, n, ticks)), row=1, col=col)
        fig.update_yaxes(title_text="reading layer" if col == 1 else None, autorange="reversed", row=1, col=col)
    fig.update_layout(**{**_LAYOUT, "margin": dict(l=10, r=10, t=60, b=10)}, height=height,
                      title=dict(text=f"Each link of {short_name(block.name)} for “{target_name}”",
                                 font=dict(size=14)))
    return fig


def _ranks(values: dict) -> dict:
    order = sorted(values, key=lambda k: -values[k])
    return {k: i + 1 for i, k in enumerate(order)}


def spearman(a: dict, b: dict) -> float:
    """Rank correlation of two link -> value tables over their common links (NaN under 3 links)."""
    keys = [k for k in a if k in b]
    if len(keys) < 3:
        return float("nan")
    ra, rb = _ranks({k: a[k] for k in keys}), _ranks({k: b[k] for k in keys})
    x = np.array([ra[k] for k in keys], float)
    y = np.array([rb[k] for k in keys], float)
    if x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def disagreement(importance: object, relevance: object) -> str:
    """One or two sentences: how far cutting and first-order relevance rank the links alike, and the link
    where they differ most (by rank), with both values."""
    cut, rel = importance.links, relevance.links
    n = len(cut)
    rho = spearman(cut, rel)
    rc, rr = _ranks(cut), _ranks(rel)
    worst = max(cut, key=lambda k: (abs(rc[k] - rr[k]), abs(cut[k])))
    agree = ("rank the links much alike" if rho >= 0.7 else "rank the links only loosely alike" if rho >= 0.3
             else "rank the links differently")
    text = (f"Cutting and first-order relevance {agree} (Spearman ρ = {rho:.2f} over {n} links)." if math.isfinite(rho)
            else f"Over {n} links the two cannot be ranked against each other.")
    if n >= 2:
        text += (f" They disagree most on {link_label(worst)}: cutting it drops the logit by {cut[worst]:+.3g} "
                 f"(rank {rc[worst]} of {n}), while relevance gives it R = {rel[worst]:+.3g} (rank {rr[worst]}).")
    flipped = [k for k in cut if cut[k] > 0.05 * max(abs(v) for v in cut.values()) and rel.get(k, 0) < 0]
    if flipped:
        counts = "links count" if len(flipped) != 1 else "link counts"
        text += (f" {len(flipped)} {counts} against the class to first order "
                 "but the class loses when they are cut: relevance is a local slope, cutting a whole experiment.")
    return text


__all__ = ["CUT_COLOR", "chain_bars", "clicked_links", "cut_graph", "cut_matrix", "disagreement",
           "importance_vs_relevance", "link_key", "link_label", "spearman"]


def chain_bars(result: object, *, height: int = 320) -> go.Figure:
    """Accuracy of the demo model with every link, with each block cut to a chain, and with all of them
    (``result``: a :class:`densenet.classroom.ChainResult`); the mean probability of the true class as text."""
    rows = result.rows
    colours = ["#334155"] + [CUT_COLOR] * (len(rows) - 1)
    fig = go.Figure(go.Bar(
        x=[r.label for r in rows], y=[r.accuracy * 100 for r in rows], marker_color=colours,
        text=[f"{r.accuracy:.0%}" for r in rows], textposition="outside", cliponaxis=False,
        hovertext=[f"{r.label}: {r.links_cut} links cut<br>accuracy {r.accuracy:.1%}<br>mean P(true class) "
                   f"{r.true_probability:.1%}" for r in rows], hoverinfo="text"))
    fig.update_layout(**{**_LAYOUT, "margin": dict(l=10, r=10, t=50, b=10)}, height=height,
                      title=dict(text=f"Accuracy on {result.n} generated films", font=dict(size=14)),
                      yaxis=dict(title="accuracy (%)", range=[0, 110], ticksuffix=" "), xaxis=dict(title=None))
    return fig
