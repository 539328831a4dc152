"""Figures and tables as pure functions of library objects (one module: the architecture, block and
attention pages share its layout, colours and arcs): plotly figures, DOT text, DataFrames.

Nothing here imports Streamlit, so every figure can be built and checked in a plain test.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from densenet.explain import DeletionInsertion
from densenet.topology import FINAL_NORM, BlockInfo, ChannelSlice, Topology

if TYPE_CHECKING:  # densenet.classroom imports torchvision's model zoo: only the pages that use it pay
    from densenet.classroom import FeatureReuse

from .analysis import Prediction, Step, percent, plural, short_name, source_color

ARC_POINTS = 13  # points per drawn link; few enough that DenseNet-264's 2,080-link block stays light
LINK_COLOR = "rgba(100, 116, 139, 0.45)"
INPUT_COLOR = "#f97316"
OUTPUT_COLOR = "rgba(37, 99, 235, 0.55)"
NODE_COLOR = "#334155"
_LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), plot_bgcolor="white", paper_bgcolor="white")


# --- dense connectivity ------------------------------------------------------------------------

def _arc(s: int, t: int) -> tuple[list[float], list[float]]:
    """A half circle from node s to node t above the axis (height (t - s) / 2)."""
    u = np.linspace(0.0, 1.0, ARC_POINTS)
    x = s + (t - s) * u
    y = (t - s) / 2.0 * np.sin(np.pi * u)
    return x.tolist(), y.tolist()


def _segments(links: list[tuple[int, int]]) -> tuple[list[float | None], list[float | None]]:
    xs: list[float | None] = []
    ys: list[float | None] = []
    for s, t in links:
        x, y = _arc(s, t)
        xs += x + [None]
        ys += y + [None]
    return xs, ys


def link_text(block: BlockInfo, s: int, t: int) -> str:
    """Hover text of link s -> t: which channels of the concatenation flow on it."""
    start, stop = block.node_channels(s)
    source = "block input" if s == 0 else f"layer {s}"
    return (f"{source} → layer {t}<br>channels {start}–{stop - 1} of the concatenation "
            f"({stop - start} maps, {short_name(block.layer_name(s))})")


def node_text(block: BlockInfo, node: int) -> str:
    h, w = block.size
    if node == 0:
        return (f"<b>block input</b> ({short_name(block.input_name)})<br>{block.in_channels} channels, {h}×{w}"
                f"<br>feeds all {block.num_layers} layers")
    cin = block.in_channels_of(node)
    return (f"<b>layer {node}</b> ({short_name(block.layer_name(node))})<br>"
            f"in: {cin} = {block.in_channels} + {node - 1}·{block.growth_rate} channels from {node} inputs<br>"
            f"out: {block.growth_rate} new maps, {h}×{w}<br>feeds {block.num_layers - node} later layers")


def connectivity_graph(block: BlockInfo, selected: int | None = None, *, height: int = 420) -> go.Figure:
    """The dense connectivity of one block: a node per layer, a half-circle arc per link.

    Node 0 is the block input, node l is dense layer l; link (s, t) means layer t reads the maps
    of s. All L(L+1)/2 links are drawn (one trace per colour, links separated by ``None``), and
    a marker at each arc's apex carries the hover text (the channel range on that link).
    With ``selected`` = l, the links into l (its inputs) are drawn in orange and those out of it
    in blue.

    Traces, in order: ``links`` (the rest), ``inputs of layer l``, ``outputs of layer l`` (both
    only with a selection), ``link info`` (apex markers, hover only), ``layers`` (nodes; their
    ``customdata`` is the layer name, so a click event names the layer).
    """
    n = block.num_layers
    inputs = [(s, t) for s, t in block.links if selected is not None and t == selected]
    outputs = [(s, t) for s, t in block.links if selected is not None and s == selected]
    rest = [(s, t) for s, t in block.links if (s, t) not in set(inputs) | set(outputs)]

    fig = go.Figure()
    for name, links, color, width in (("links", rest, LINK_COLOR, 1.0),
                                      (f"inputs of layer {selected}", inputs, INPUT_COLOR, 2.2),
                                      (f"outputs of layer {selected}", outputs, OUTPUT_COLOR, 1.6)):
        if not links and name != "links":
            continue
        xs, ys = _segments(links)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=name, hoverinfo="skip",
                                 line=dict(color=color, width=width), meta={"links": len(links)}))

    apex_x = [(s + t) / 2.0 for s, t in block.links]
    apex_y = [(t - s) / 2.0 for s, t in block.links]
    fig.add_trace(go.Scatter(
        x=apex_x, y=apex_y, mode="markers", name="link info", showlegend=False,
        marker=dict(size=5, color="rgba(100,116,139,0.25)"),
        hovertext=[link_text(block, s, t) for s, t in block.links], hoverinfo="text",
    ))

    colors = []
    for node in range(n + 1):
        if selected is not None and node == selected:
            colors.append(INPUT_COLOR)
        elif selected is not None and node < selected:
            colors.append("#fdba74")
        else:
            colors.append(NODE_COLOR if node else "#0f766e")
    labels = ["in"] + [str(i) for i in range(1, n + 1)]
    size = 18 if n <= 24 else (12 if n <= 48 else 9)
    fig.add_trace(go.Scatter(
        x=list(range(n + 1)), y=[0.0] * (n + 1), mode="markers+text" if n <= 48 else "markers",
        name="layers", showlegend=False,
        marker=dict(size=size, color=colors, line=dict(color="white", width=1)),
        text=labels, textposition="bottom center", textfont=dict(size=11 if n <= 24 else 9),
        customdata=[block.layer_name(i) for i in range(n + 1)],
        hovertext=[node_text(block, i) for i in range(n + 1)], hoverinfo="text",
    ))
    top = max(1.0, n / 2.0)
    fig.update_layout(
        **_LAYOUT, height=height, dragmode=False, clickmode="event+select", hovermode="closest",
        title=dict(text=f"{short_name(block.name)}: {plural(n, 'layer')}, {plural(block.num_links, 'link')} = {n}·{n + 1}/2",
                   font=dict(size=15)),
        legend=dict(orientation="h", yanchor="top", y=0.0, xanchor="center", x=0.5, font=dict(size=11)),
        xaxis=dict(visible=False, range=[-0.8, n + 0.8]),
        yaxis=dict(visible=False, range=[-0.22 * top - 0.6, top * 1.06], scaleanchor="x", scaleratio=1),
    )
    return fig


#: Past this many layers the arc graph turns into a grey mass: the matrix view is the default.
MATRIX_FROM = 25
#: Room above a connectivity matrix for its title and its top (source) axis with that axis's title.
MATRIX_TOP_MARGIN = 96


def connectivity_matrix(block: BlockInfo, selected: int | None = None, *, height: int = 440) -> go.Figure:
    """The same L(L+1)/2 links as a source × target matrix: one cell per link, legible at any L.

    Row l is dense layer l (the reader), column j the block input (0) or layer j (the source);
    a cell is filled where layer l reads j (j < l). With ``selected`` = l, its inputs (row l) are
    orange and its outputs (column l) blue. A cell's ``customdata`` names its reading layer, so a
    click selects it as on the graph.
    """
    n = block.num_layers
    z = np.full((n, n), np.nan)
    hover = [["" for _ in range(n)] for _ in range(n)]
    names = [[block.layer_name(t + 1) for _ in range(n)] for t in range(n)]
    for s, t in block.links:
        z[t - 1, s] = 1.0
        if selected is not None and t == selected:
            z[t - 1, s] = 2.0
        elif selected is not None and s == selected:
            z[t - 1, s] = 3.0
        hover[t - 1][s] = link_text(block, s, t)
    scale = [[0.0, "rgba(100,116,139,0.55)"], [0.33, "rgba(100,116,139,0.55)"], [0.34, INPUT_COLOR],
             [0.66, INPUT_COLOR], [0.67, "rgba(37,99,235,0.75)"], [1.0, "rgba(37,99,235,0.75)"]]
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(n)), y=list(range(1, n + 1)), zmin=1, zmax=3, colorscale=scale, showscale=False,
        hovertext=hover, hoverinfo="text", customdata=names, xgap=1 if n <= 64 else 0, ygap=1 if n <= 64 else 0,
        name="links", meta={"links": block.num_links}))
    ticks = max(1, math.ceil(n / 16))
    # The source axis sits on top, under the chart title: the title goes to the very top of a taller
    # margin so the two never overlap, and it is short enough for a narrow column (one cell per link
    # is said by the axis titles).
    fig.update_layout(
        **{**_LAYOUT, "margin": dict(l=10, r=10, t=MATRIX_TOP_MARGIN, b=10)}, height=height, dragmode=False,
        clickmode="event+select",
        title=dict(text=f"{short_name(block.name)}: {plural(n, 'layer')}, {plural(block.num_links, 'link')}",
                   font=dict(size=15), y=0.99, yanchor="top", x=0.0, xanchor="left", xref="paper"),
        xaxis=dict(title=dict(text="source: block input (in) or layer j", standoff=6), dtick=ticks, side="top",
                   constrain="domain", tickvals=list(range(0, n, ticks)),
                   ticktext=["in"] + [str(j) for j in range(ticks, n, ticks)]),
        yaxis=dict(title="layer l reads", dtick=ticks, range=[n + 0.5, 0.5], scaleanchor="x", constrain="domain"),
    )
    return fig


RELEVANCE_BINS = 5  # widths an edge can take: enough to rank, few enough traces for a 2,080-link block


def relevance_graph(block: BlockInfo, relevance: object, *, target_name: str, height: int = 440) -> go.Figure:
    """The block's links drawn by the evidence they carried for one image and class.

    ``relevance``: a :class:`densenet.explain.BlockRelevance`. Edge width follows |R(j → l)|
    (in :data:`RELEVANCE_BINS` steps of the block's largest), colour its sign (red: for the
    class, blue: against); node size follows the total |relevance| of that layer's new maps.
    Hover gives each link's value and its share of what layer l received. Every link is drawn,
    so the number of arcs drawn equals L(L+1)/2.
    """
    n = block.num_layers
    links = relevance.links
    top = max((abs(v) for v in links.values()), default=0.0) or 1.0
    fig = go.Figure()
    groups: dict[tuple[int, bool], list[tuple[int, int]]] = {}
    for (s, t), v in links.items():
        b = min(RELEVANCE_BINS - 1, int(abs(v) / top * RELEVANCE_BINS))
        groups.setdefault((b, v >= 0), []).append((s, t))
    for (b, positive), members in sorted(groups.items()):
        xs, ys = _segments(members)
        alpha = 0.25 + 0.7 * (b + 1) / RELEVANCE_BINS
        colour = f"rgba(220, 38, 38, {alpha:.2f})" if positive else f"rgba(37, 99, 235, {alpha:.2f})"
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", hoverinfo="skip", showlegend=False,
                                 line=dict(color=colour, width=0.6 + 3.2 * (b + 1) / RELEVANCE_BINS),
                                 name=f"links {'for' if positive else 'against'} ({b + 1}/{RELEVANCE_BINS})",
                                 meta={"links": len(members)}))
    hover = []
    for s, t in block.links:
        share = relevance.shares(t)[s]
        src = "block input" if s == 0 else f"layer {s}"
        hover.append(f"{src} → layer {t}: R = {links[(s, t)]:+.3g}<br>{share:.0%} of what layer {t} received")
    fig.add_trace(go.Scatter(x=[(s + t) / 2.0 for s, t in block.links], y=[(t - s) / 2.0 for s, t in block.links],
                             mode="markers", name="link info", showlegend=False, hovertext=hover, hoverinfo="text",
                             marker=dict(size=5, color="rgba(100,116,139,0.2)")))
    totals = [abs(relevance.input)] + [relevance.nodes_abs[j] for j in range(1, n + 1)]
    biggest = max(totals) or 1.0
    fig.add_trace(go.Scatter(
        x=list(range(n + 1)), y=[0.0] * (n + 1), mode="markers+text" if n <= 48 else "markers", name="layers",
        showlegend=False, text=["in"] + [str(i) for i in range(1, n + 1)], textposition="bottom center",
        marker=dict(size=[8 + 18 * v / biggest for v in totals], color="#334155", line=dict(color="white", width=1)),
        customdata=[block.layer_name(i) for i in range(n + 1)],
        hovertext=[f"{'block input' if j == 0 else f'layer {j}'}: its maps carry |R| = {totals[j]:.3g}"
                   for j in range(n + 1)], hoverinfo="text"))
    peak = max(1.0, n / 2.0)
    fig.update_layout(
        **_LAYOUT, height=height, dragmode=False, hovermode="closest",
        title=dict(text=f"{short_name(block.name)}: the evidence for “{target_name}” on each link",
                   font=dict(size=14)),
        xaxis=dict(visible=False, range=[-0.8, n + 0.8]),
        yaxis=dict(visible=False, range=[-0.22 * peak - 0.6, peak * 1.06], scaleanchor="x", scaleratio=1))
    return fig


#: How the Architecture page's overlay can measure relevance on the links.
RELEVANCE_METHODS = {"gradient": "Gradient × activation", "lrp": "LRP"}


def lrp_block_caption(relevance: object) -> str:
    """Conservation in one block under LRP: what enters at its output against what reaches its input."""
    from densenet.explain import block_conservation

    at_output, at_input = block_conservation(relevance)
    share = f" ({at_input / at_output:.0%})" if at_output else ""
    return (f" LRP: of the relevance entering this block at its output (R = {at_output:.3g}), {at_input:.3g}"
            f"{share} reaches the block's input; the difference went into (or, if negative, came from) its biases "
            "(the BatchNorm shifts).")


def relevance_caption(block: BlockInfo, relevance: object, layer: int, target_name: str) -> str:
    """In plain words: which inputs layer ``layer`` read the evidence for the class from."""
    shares = sorted(relevance.shares(layer).items(), key=lambda kv: -kv[1])
    named = [f"{'the block input' if j == 0 else f'layer {j}'} ({v:.0%})" for j, v in shares[:2] if v > 0]
    if not named:
        return f"For “{target_name}”, layer {layer} received no first-order evidence (its inputs' ReLUs are off)."
    return f"For “{target_name}”, layer {layer} reads mostly " + " and ".join(named) + "."


# --- whole network -----------------------------------------------------------------------------

def _dot_escape(text: str) -> str:
    """Quotes escaped for a DOT string; ``\\n`` (DOT's line break) is kept."""
    return text.replace('"', '\\"')


def overview_dot(topo: Topology, highlight: str | None = None) -> str:
    """The whole network as a graphviz DOT graph: input, stem, blocks, transitions, head."""
    cfg = topo.config
    rows = {r.name: r for r in topo.layers}
    h, w = topo.input_size
    lines = [
        "digraph DenseNet {",
        '  rankdir=TB; bgcolor="transparent"; nodesep=0.25; ranksep=0.22;',
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11, '
        'fillcolor="#f1f5f9", color="#94a3b8"];',
        '  edge [color="#64748b", arrowsize=0.7, fontname="Helvetica", fontsize=9];',
        f'  input [label="input\\n{cfg.in_channels}×{h}×{w}", shape=oval, fillcolor="#e2e8f0"];',
    ]
    conv0 = rows["features.conv0"]
    last_stem = topo.stem_rows[-1]
    lines.append(f'  stem [label="stem\\n{_dot_escape(topo.stem.structure)}\\n{conv0.out_channels} ch, '
                 f'{last_stem.size[0]}×{last_stem.size[1]}", fillcolor="#ccfbf1"];')
    prev = "input"
    lines.append("  input -> stem;")
    prev = "stem"
    for b, block in enumerate(topo.blocks, start=1):
        node = f"block{b}"
        fill = "#fed7aa" if highlight == block.name else "#fef3c7"
        bottleneck = "1×1 conv→3×3 conv" if cfg.bn_size else "3×3 conv"
        label = (f"dense block {b}\\n{block.num_layers} × [{bottleneck}], k={block.growth_rate}\\n"
                 f"{block.in_channels} → {block.out_channels} ch, {block.size[0]}×{block.size[1]}\\n"
                 f"{block.num_links} links")
        penwidth = ", penwidth=2.5" if highlight == block.name else ""
        lines.append(f'  {node} [label="{_dot_escape(label)}", fillcolor="{fill}"{penwidth}];')
        lines.append(f'  {prev} -> {node} [label="{block.in_channels}"];')
        prev = node
        if block.transition is not None:
            t = rows[block.transition]
            lines.append(f'  trans{b} [label="transition {b}\\n1×1 conv (θ={cfg.compression:g}), 2×2 avg-pool\\n'
                         f'{t.in_channels} → {t.out_channels} ch, {t.size[0]}×{t.size[1]}", fillcolor="#e0e7ff"];')
            lines.append(f'  {prev} -> trans{b} [label="{t.in_channels}"];')
            prev = f"trans{b}"
    norm5, head = rows[FINAL_NORM], rows["classifier"]
    pool = "global avg-pool" if cfg.pool == "avg" else f"per-location scores, log-mean-exp (r={cfg.lme_r:g})"
    lines.append(f'  head [label="BN, ReLU, {pool}\\nlinear {norm5.out_channels} → {head.out_channels}'
                 f'{" (+ null class)" if cfg.null_class else ""}\\n'
                 f'{"sigmoid per label" if cfg.multilabel else "softmax"}", fillcolor="#dcfce7"];')
    lines.append(f'  {prev} -> head [label="{norm5.in_channels}"];')
    lines.append("}")
    return "\n".join(lines)


def channel_growth(topo: Topology) -> go.Figure:
    """Channels of the running concatenation through the whole net.

    Inside block b the count climbs c0 + l·k, one step per dense layer; each transition drops
    it to floor(θ·c). One point per dense layer and per transition; the customdata names the layer.
    """
    xs: list[int] = []
    ys: list[int] = []
    names: list[str] = []
    hover: list[str] = []
    fig = go.Figure()
    step = 0
    first = topo.blocks[0]
    xs.append(step)
    ys.append(first.in_channels)
    names.append(first.input_name)
    hover.append(f"stem output: {first.in_channels} channels (c0)")
    rows = topo.rows
    total = sum(blk.num_layers for blk in topo.blocks) + len(topo.blocks) - 1
    for b, block in enumerate(topo.blocks, start=1):
        start_x = step
        for layer in range(1, block.num_layers + 1):
            step += 1
            c = block.channels_after(layer)
            xs.append(step)
            ys.append(c)
            names.append(block.layer_name(layer))
            hover.append(f"{short_name(block.layer_name(layer))}<br>{block.in_channels} + {layer}·{block.growth_rate}"
                         f" = {c} channels, {block.size[0]}×{block.size[1]}")
        narrow = block.num_layers < 0.08 * total  # a short block's label would run into the next one's
        fig.add_vrect(x0=start_x + 0.5, x1=step + 0.5, fillcolor=source_color(b - 1), opacity=0.08,
                      line_width=0, annotation_text=f"b{b}" if narrow else f"block {b}",
                      annotation_position="top left", annotation_font_size=11)
        if block.transition is not None:
            t = rows[block.transition]
            step += 1
            xs.append(step)
            ys.append(t.out_channels)
            names.append(block.transition)
            hover.append(f"transition {b}: ⌊{topo.config.compression:g}·{t.in_channels}⌋ = {t.out_channels} channels,"
                         f" {t.size[0]}×{t.size[1]}")
            fig.add_annotation(x=step, y=t.out_channels, text=f"×{topo.config.compression:g}", xanchor="left",
                               showarrow=False, xshift=4, yshift=-10, font=dict(size=10, color="#4338ca"))
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", line_shape="hv", name="channels",
                             marker=dict(size=4), line=dict(color="#0f766e", width=2),
                             customdata=names, hovertext=hover, hoverinfo="text"))
    fig.update_layout(**_LAYOUT, height=320, showlegend=False,
                      title=dict(text="Channel growth: c0 + l·k inside a block, ×θ at each transition",
                                 font=dict(size=15)),
                      xaxis=dict(title="dense layers and transitions, in order", gridcolor="#eef2f7"),
                      yaxis=dict(title="channels", gridcolor="#eef2f7", rangemode="tozero"))
    return fig


def paper_table(topo: Topology) -> pd.DataFrame:
    """The architecture table laid out like Table 1 of the DenseNet paper, plus counts.

    Columns: Layers, Output size, Structure, Channels (in → out), Params, MACs.
    """
    cfg = topo.config
    rows = {r.name: r for r in topo.layers}
    out = []

    def add(layer: str, size: tuple[int, int], structure: str, cin: int, cout: int, params: int, macs: int) -> None:
        out.append({"Layers": layer, "Output size": f"{size[0]} × {size[1]}", "Structure": structure,
                    "Channels": f"{cin} → {cout}", "Params": params, "MACs": macs})

    conv0 = rows["features.conv0"]
    stem = topo.stem
    kernel = f"{stem.kernel} × {stem.kernel} conv" + (f", stride {stem.stride}" if stem.stride > 1 else "")
    if stem.pool:  # the stem's batch norm sits between its conv and the pool: its parameters go with the conv
        norm0, pool = rows["features.norm0"], rows["features.pool0"]
        add("Convolution", conv0.size, kernel + ", BN, ReLU", conv0.in_channels, conv0.out_channels,
            conv0.params + norm0.params, conv0.macs + norm0.macs)
        add("Pooling", pool.size, "3 × 3 max pool, stride 2", pool.in_channels, pool.out_channels,
            pool.params, pool.macs)
    else:
        add("Convolution", conv0.size, kernel, conv0.in_channels, conv0.out_channels, conv0.params, conv0.macs)
    unit = "[1 × 1 conv, 3 × 3 conv]" if cfg.bn_size else "[3 × 3 conv]"
    for b, block in enumerate(topo.blocks, start=1):
        r = rows[block.name]
        add(f"Dense Block ({b})", block.size, f"{unit} × {block.num_layers}", block.in_channels,
            block.out_channels, r.params, r.macs)
        if block.transition is not None:
            t = rows[block.transition]
            add(f"Transition Layer ({b})", t.size, "1 × 1 conv, 2 × 2 average pool, stride 2",
                t.in_channels, t.out_channels, t.params, t.macs)
    norm5, head = rows[FINAL_NORM], rows["classifier"]
    pool = f"{norm5.size[0]} × {norm5.size[1]} global average pool" if cfg.pool == "avg" else "log-mean-exp pool"
    act = "sigmoid" if cfg.multilabel else "softmax"
    add("Classification Layer", (1, 1), f"{pool}, {head.out_channels}D fully-connected, {act}",
        norm5.in_channels, head.out_channels, norm5.params + head.params, head.macs)
    df = pd.DataFrame(out)
    total = pd.DataFrame([{"Layers": "Total", "Output size": "", "Structure": f"depth L = {cfg.depth}",
                           "Channels": "", "Params": topo.total_params, "MACs": topo.total_macs}])
    return pd.concat([df, total], ignore_index=True)


def layer_table(topo: Topology) -> pd.DataFrame:
    """Every module row of the topology: name, kind, channels, size, params, MACs."""
    return pd.DataFrame([{
        "Layer": short_name(r.name), "Kind": r.kind.replace("_", " "), "In": r.in_channels, "Out": r.out_channels,
        "Size": f"{r.size[0]} × {r.size[1]}", "Params": r.params, "MACs": r.macs,
    } for r in topo.layers])


# --- predictions and maps ----------------------------------------------------------------------

def topk_bar(preds: list[Prediction], *, multilabel: bool) -> go.Figure:
    """Horizontal bars of the top predictions, most probable on top."""
    preds = list(reversed(preds))
    fig = go.Figure(go.Bar(
        x=[p.probability for p in preds], y=[p.name for p in preds], orientation="h",
        text=[f"{p.probability:.1%}" for p in preds], textposition="auto",
        marker_color=["#0f766e" if i == len(preds) - 1 else "#94a3b8" for i in range(len(preds))],
        hovertext=[f"{p.name}: p = {p.probability:.4f}, logit = {p.logit:.3f}" for p in preds], hoverinfo="text",
    ))
    fig.update_layout(**_LAYOUT, height=60 + 28 * len(preds),
                      title=dict(text="per-label sigmoid" if multilabel else "softmax", font=dict(size=13)),
                      xaxis=dict(range=[0, 1], tickformat=".0%", gridcolor="#eef2f7"),
                      yaxis=dict(automargin=True))
    return fig


def findings_bar(findings: list, *, height_per: int = 26) -> go.Figure:
    """Every finding of a multi-label model: its sigmoid probability, its threshold, the call.

    ``findings``: :class:`densenet.labels.Finding` objects; drawn most probable on top.
    """
    ordered = sorted(findings, key=lambda f: f.probability)
    fig = go.Figure(go.Bar(
        x=[f.probability for f in ordered], y=[f.name for f in ordered], orientation="h", name="probability",
        marker_color=["#0f766e" if f.positive else "#94a3b8" for f in ordered],
        text=[percent(f.probability, f.threshold) for f in ordered], textposition="outside", cliponaxis=False,
        hovertext=[f"{f.name}: p = {f.probability:.3f}, threshold {f.threshold:.2f}"
                   f"{'' if f.calibrated else ' (default)'} → {'positive' if f.positive else 'negative'}"
                   for f in ordered], hoverinfo="text"))
    fig.add_trace(go.Scatter(x=[f.threshold for f in ordered], y=[f.name for f in ordered], mode="markers",
                             name="threshold", marker=dict(symbol="line-ns-open", size=16, color="#dc2626",
                                                           line=dict(width=2)), hoverinfo="skip"))
    positives = sum(f.positive for f in findings)
    fig.update_layout(**_LAYOUT, height=70 + height_per * len(findings), showlegend=False,
                      title=dict(text=f"per-finding sigmoid: {positives} of {len(findings)} positive",
                                 font=dict(size=13)),
                      xaxis=dict(range=[0, 1.12], tickformat=".0%", gridcolor="#eef2f7"), yaxis=dict(automargin=True))
    return fig


def provenance_bar(slices: list[ChannelSlice], new_channels: int | None = None) -> go.Figure:
    """One stacked bar: how many input channels each earlier layer contributes (plus the new maps)."""
    fig = go.Figure()
    for i, piece in enumerate(slices):
        label = "block input" if i == 0 else f"layer {i}"
        fig.add_trace(go.Bar(x=[piece.channels], y=["input"], orientation="h", name=label,
                             marker_color=source_color(i), hovertext=f"{label} ({short_name(piece.source)}): "
                             f"channels {piece.start}–{piece.stop - 1}", hoverinfo="text"))
    if new_channels:
        fig.add_trace(go.Bar(x=[new_channels], y=["output"], orientation="h", name="new maps",
                             marker_color="#111827", hovertext=f"{new_channels} new maps", hoverinfo="text"))
    fig.update_layout(**_LAYOUT, barmode="stack", height=(150 if new_channels else 120) + (40 if len(slices) <= 8 else 0),
                      showlegend=len(slices) <= 8,
                      legend=dict(orientation="h", y=-0.4, font=dict(size=10), traceorder="normal"),
                      title=dict(text=f"{sum(p.channels for p in slices)} input channels by source",
                                 font=dict(size=13)),
                      xaxis=dict(title=None, gridcolor="#eef2f7"))
    return fig


def heatmap(values: np.ndarray, *, title: str, colorscale: str = "Viridis", zmin: float | None = None,
            zmax: float | None = None, height: int = 380) -> go.Figure:
    """One map, large, with its raw values on hover and a colour bar."""
    fig = go.Figure(go.Heatmap(z=values, colorscale=colorscale, zmin=zmin, zmax=zmax,
                               hovertemplate="row %{y}, col %{x}: %{z:.4g}<extra></extra>"))
    fig.update_layout(**_LAYOUT, height=height, title=dict(text=title, font=dict(size=13)),
                      xaxis=dict(visible=False, constrain="domain"),
                      yaxis=dict(visible=False, autorange="reversed", scaleanchor="x"))
    return fig


def feature_reuse_heatmap(reuse: FeatureReuse, *, normalise: bool = True) -> go.Figure:
    """The paper's Fig. 5 for one block: target layer (x) against source layer (y)."""
    m = reuse.matrix.copy()
    if normalise:
        m = m / np.nanmax(m, axis=1, keepdims=True)
    z = m.T  # rows: sources, columns: targets, as in the paper
    targets = [str(i) for i in range(1, len(reuse.targets))] + [
        "classifier" if reuse.targets[-1] == "classifier" else "transition"]
    sources = ["input"] + [str(i) for i in range(1, len(reuse.sources))]
    hover = [[("" if np.isnan(z[s, t]) else
               f"{reuse.sources[s].removeprefix('features.')} → {reuse.targets[t].removeprefix('features.')}"
               f"<br>mean |w| = {reuse.matrix[t, s]:.4g}" + (f" ({z[s, t]:.0%} of the row's max)" if normalise else ""))
              for t in range(z.shape[1])] for s in range(z.shape[0])]
    fig = go.Figure(go.Heatmap(z=z, x=targets, y=sources, colorscale="Inferno", hovertext=hover, hoverinfo="text",
                               zmin=0.0, zmax=1.0 if normalise else None,
                               colorbar=dict(title="÷ max" if normalise else "mean |w|")))
    fig.update_layout(**_LAYOUT, height=420,
                      title=dict(text="Feature reuse: mean |weight| from source (rows) to target layer (columns)",
                                 font=dict(size=14)),
                      xaxis=dict(title="target layer", type="category"),
                      yaxis=dict(title="source layer", type="category", autorange="reversed"))
    return fig


def deletion_insertion_curves(result: DeletionInsertion) -> go.Figure:
    """Deletion and insertion curves: the class score as the most salient pixels go or come."""
    fractions = np.asarray(result.fractions)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=fractions, y=np.asarray(result.deletion_scores), name=
                             f"deletion (AUC {result.deletion_auc:.3f}, lower is better)",
                             line=dict(color="#dc2626")))
    fig.add_trace(go.Scatter(x=fractions, y=np.asarray(result.insertion_scores), name=
                             f"insertion (AUC {result.insertion_auc:.3f}, higher is better)",
                             line=dict(color="#16a34a")))
    fig.update_layout(**{**_LAYOUT, "margin": dict(l=10, r=10, t=60, b=10)}, height=280,
                      legend=dict(orientation="h", yanchor="bottom", y=1.02, x=0, font=dict(size=10)),
                      xaxis=dict(title="fraction of pixels", tickformat=".0%"), yaxis=dict(title="score"))
    return fig


# --- a dense block, step by step -----------------------------------------------------------------

def step_figure(block: BlockInfo, step: Step) -> go.Figure:
    """Layer l of a block as stacked channel bars: its concatenated input, bottleneck, new maps."""
    fig = go.Figure()
    k = block.growth_rate
    rows = ["input [x0, …, x(l-1)]", "1×1 conv (bottleneck)", "3×3 conv → new maps", "concatenated output"]
    pieces = [(0, block.in_channels, "block input")] + [
        (i, k, f"layer {i}") for i in range(1, step.layer)]
    for i, width, label in pieces:
        fig.add_trace(go.Bar(x=[width], y=[rows[0]], orientation="h", marker_color=source_color(i), name=label,
                             hovertext=f"{label}: {width} ch", hoverinfo="text", showlegend=False))
    if step.bottleneck_shape is not None:
        fig.add_trace(go.Bar(x=[step.bottleneck_shape[2]], y=[rows[1]], orientation="h", marker_color="#64748b",
                             hovertext=f"bottleneck: {step.bottleneck_shape[2]} ch", hoverinfo="text",
                             showlegend=False))
    fig.add_trace(go.Bar(x=[k], y=[rows[2]], orientation="h", marker_color=source_color(step.layer),
                         hovertext=f"layer {step.layer}: {k} new maps", hoverinfo="text", showlegend=False))
    for i, width, label in pieces + [(step.layer, k, f"layer {step.layer}")]:
        fig.add_trace(go.Bar(x=[width], y=[rows[3]], orientation="h", marker_color=source_color(i),
                             hovertext=f"{label}: {width} ch", hoverinfo="text", showlegend=False))
    fig.update_layout(**_LAYOUT, barmode="stack", height=230,
                      xaxis=dict(title="channels", range=[0, block.out_channels * 1.02], gridcolor="#eef2f7"),
                      yaxis=dict(categoryorder="array", categoryarray=list(reversed(rows)), automargin=True,
                                 ticklabelstandoff=8),  # labels clear of the bars' axis line
                      title=dict(text=f"layer {step.layer}: {step.input_shape[2]} channels in, {k} out",
                                 font=dict(size=14)))
    return fig


def concat_vs_add(block: BlockInfo) -> go.Figure:
    """Channels entering each layer: DenseNet's concatenation against ResNet's addition."""
    layers = list(range(1, block.num_layers + 1))
    dense = [block.in_channels_of(l) for l in layers]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=layers, y=dense, mode="lines+markers", name="DenseNet: concatenate, c0 + (l−1)·k",
                             line=dict(color="#0f766e")))
    fig.add_trace(go.Scatter(x=layers, y=[block.in_channels] * len(layers), mode="lines+markers",
                             name="ResNet: add, c stays c0", line=dict(color="#9333ea", dash="dash")))
    fig.update_layout(**_LAYOUT, height=260, legend=dict(orientation="h", y=-0.35),
                      xaxis=dict(title="layer l", dtick=max(1, math.ceil(len(layers) / 12))),
                      yaxis=dict(title="channels into layer l", rangemode="tozero", gridcolor="#eef2f7"),
                      title=dict(text="What layer l receives", font=dict(size=14)))
    return fig
