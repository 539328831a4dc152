"""The lesson export: one self-contained HTML file of the architecture, a dense block step by step and the claims run.

:func:`build` is pure (library objects in, HTML text out): plotly's library is embedded once,
inline, with the first figure, every later figure refers to it, and pictures are data URIs,
so the file opens offline on any student's laptop. The claims experiments record here which
run a session last saw (:func:`record`), and :func:`session_claims` reads those results back
from the session's memo for the export.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

import pandas as pd
import plotly.graph_objects as go

from typing import TYPE_CHECKING

from densenet import render
from densenet.topology import Topology

from . import analysis, figures, numbers, session

if TYPE_CHECKING:  # densenet.classroom loads torchvision's model zoo: only a lesson with claims pays
    from densenet.classroom import ParamsVsAccuracy, SameDepth

#: The claims, in the page's order: memo name suffix -> (heading, the lesson's own words).
CLAIMS: dict[str, tuple[str, str]] = {
    "params": ("Fewer parameters", "Requires fewer parameters compared to traditional CNNs"),
    "gradients": ("Vanishing gradients", "Reduces vanishing gradient problem"),
    "memory": ("Memory", "High memory usage due to feature concatenation"),
    "reuse": ("Feature reuse", "Improves feature reuse across layers"),
    "learn": ("Watch it learn", "Slower training compared to simpler models"),
}


@dataclass(frozen=True)
class FewerParameters:
    """The "fewer parameters" claim's result: the published families and the current config's same-depth ResNet.

    Attributes:
        published: torchvision's DenseNets and ResNets (parameters against published top-1).
        same_depth: the current DenseNet beside the ResNet of its depth; ``None`` with ``note`` saying why.
        config_label: what the current DenseNet is.
        note: why ``same_depth`` is missing, else ``""``.
    """

    published: ParamsVsAccuracy
    same_depth: SameDepth | None
    config_label: str
    note: str = ""


# --- what this session ran (Streamlit session state) ------------------------------------------------

def memo_name(claim: str) -> str:
    """The session memo a claim's results live in."""
    if claim not in CLAIMS:
        raise ValueError(f"unknown claim {claim!r}; known: {', '.join(CLAIMS)}")
    return f"claims.{claim}"


def record(claim: str, key: Hashable) -> None:
    """Remember that the session's latest run of ``claim`` is memoised under ``key``."""
    session.keep(f"{memo_name(claim)}.last", key)


def last(claim: str) -> object | None:
    """The session's latest result of ``claim`` (``None`` if it never ran or was stopped)."""
    key = session.kept(f"{memo_name(claim)}.last")
    return None if key is None else session.peek(memo_name(claim), key)


def session_claims() -> dict[str, object]:
    """Every claim this session ran, by name, in the page's order."""
    return {claim: result for claim in CLAIMS if (result := last(claim)) is not None}


# --- the HTML ------------------------------------------------------------------------------------------

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #0f172a;
       max-width: 1200px; margin: 0 auto; padding: 1.5rem; line-height: 1.45; }
h1 { border-bottom: 2px solid #cbd5e1; padding-bottom: .3rem; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid #e2e8f0; padding-bottom: .2rem; }
/* a fixed column count: a plot is drawn as soon as it is parsed, so its cell's width must not depend on later cells */
.grid { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 1rem; align-items: start; }
@media (max-width: 900px) { .grid { grid-template-columns: minmax(0, 1fr); } }
.facts { display: flex; flex-wrap: wrap; gap: 1.5rem; margin: .5rem 0 1rem; }
.facts div { background: #f1f5f9; border-radius: .5rem; padding: .5rem .9rem; }
.facts b { display: block; font-size: 1.4rem; }
table.data { border-collapse: collapse; font-size: .92rem; margin: .5rem 0; }
table.data th, table.data td { border: 1px solid #e2e8f0; padding: .25rem .55rem; text-align: left; }
table.data th { background: #f8fafc; }
blockquote { margin: .4rem 0; padding: .3rem .8rem; border-left: 4px solid #0f766e; background: #f0fdfa; }
.note { color: #475569; font-size: .92rem; }
figure { margin: 0; } figure img { image-rendering: pixelated; width: 192px; height: 192px; }
code { background: #f1f5f9; padding: 0 .25rem; border-radius: .2rem; }
"""


class _Figures:
    """Figure -> HTML fragment: the plotly library inline with the first figure only (document order)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, fig: go.Figure) -> str:
        # Outside Streamlit's theme the tight margins cut tick labels off: room for them, on a copy.
        fig = go.Figure(fig)
        m = fig.layout.margin
        fig.update_layout(margin=dict(l=max(m.l or 0, 70), r=max(m.r or 0, 20), t=max(m.t or 0, 60),
                                      b=max(m.b or 0, 60)))
        fig.update_xaxes(automargin=True)
        fig.update_yaxes(automargin=True)
        out = fig.to_html(full_html=False, include_plotlyjs="inline" if self.count == 0 else False,
                          config={"displayModeBar": False, "responsive": True}, default_width="100%")
        self.count += 1
        return f'<div class="fig">{out}</div>'


def _e(text: object) -> str:
    return html.escape(str(text))


#: Counts shown in short form (7.98 M, 2.87 G): raw integers of ten digits do not read in a lesson.
_BIG_COLUMNS = ("Params", "MACs")


def _table(df: pd.DataFrame) -> str:
    formatters = {c: (lambda v: "" if pd.isna(v) else numbers.big(v)) for c in _BIG_COLUMNS if c in df.columns}
    return df.to_html(index=False, classes="data", border=0, na_rep="", float_format=lambda v: f"{v:,.3g}",
                      formatters=formatters)


def _data_uri(rgb) -> str:
    return "data:image/png;base64," + base64.b64encode(render.png_bytes(rgb, compress_level=1)).decode("ascii")


def _shape(s: tuple[int, int, int] | None) -> str:
    return "none" if s is None else f"({s[0]}, {s[1]}, {s[2]})"


def _architecture(topo: Topology, fig: _Figures) -> list[str]:
    cfg = topo.config
    out = ["<h2>The architecture</h2>",
           '<div class="facts">'
           f"<div>Depth L<b>{cfg.depth}</b></div><div>Dense links<b>{topo.num_links:,}</b></div>"
           f"<div>Parameters<b>{numbers.big(topo.total_params)}</b></div>"
           f"<div>MACs per image<b>{numbers.big(topo.total_macs)}</b></div>"
           f"<div>Growth rate k<b>{cfg.growth_rate}</b></div></div>",
           f"<p>Input {cfg.in_channels}×{topo.input_size[0]}×{topo.input_size[1]}; blocks "
           f"{_e(tuple(cfg.block_config))}; {'bottleneck 1×1 conv to ' + str(cfg.bn_size) + 'k first' if cfg.bn_size else 'no bottleneck'}; "
           f"compression θ = {cfg.compression:g}.</p>",
           "<h3>Dense connectivity of each block</h3>",
           '<p class="note">In a block of L layers, layer l reads the block input and every earlier layer: '
           "L(L+1)/2 links. Hover a link for the channels that flow on it.</p>", '<div class="grid">']
    for block in topo.blocks:
        draw = figures.connectivity_graph if block.num_layers < figures.MATRIX_FROM else figures.connectivity_matrix
        out.append(fig(draw(block, None, height=380)))
    out += ["</div>", "<h3>Channel growth</h3>", fig(figures.channel_growth(topo)),
            f'<p class="note">Inside a block the concatenation grows by k = {cfg.growth_rate} channels per layer '
            f"(c0 + l·k); each transition keeps ⌊θ·c⌋ with θ = {cfg.compression:g} and halves the size.</p>",
            "<h3>Layer table (as Table 1 of Huang et al. 2017)</h3>", _table(figures.paper_table(topo))]
    return out


def _block(topo: Topology, block_index: int, fig: _Figures) -> list[str]:
    block = topo.blocks[block_index]
    steps = analysis.block_steps(block, topo.config.bn_size)
    k = block.growth_rate
    rows = pd.DataFrame([{"Layer l": s.layer, "Input (h, w, c0 + (l−1)k)": _shape(s.input_shape),
                          "After the 1×1 bottleneck": _shape(s.bottleneck_shape), "New maps": _shape(s.new_shape),
                          "Concatenated output": _shape(s.output_shape), "Links so far": s.links_so_far}
                         for s in steps])
    shown = sorted({1, (block.num_layers + 1) // 2, block.num_layers})
    out = [f"<h2>Dense block {block.index}, step by step</h2>",
           f"<p>{block.num_layers} layers at {block.size[0]}×{block.size[1]}, growth rate k = {k}: each layer "
           f"concatenates everything before it and adds k maps, so the block goes from {block.in_channels} to "
           f"{block.out_channels} channels (c0 + L·k = {block.in_channels} + {block.num_layers}·{k}).</p>",
           "<p><b>DenseNet:</b> x<sub>l</sub> = H<sub>l</sub>([x<sub>0</sub>, x<sub>1</sub>, …, x<sub>l−1</sub>]) "
           "&nbsp;·&nbsp; <b>ResNet:</b> x<sub>l</sub> = H<sub>l</sub>(x<sub>l−1</sub>) + x<sub>l−1</sub></p>",
           _table(rows), '<div class="grid">']
    out += [fig(figures.step_figure(block, steps[layer - 1])) for layer in shown]
    out += ["</div>", fig(figures.concat_vs_add(block))]
    return out


def _findings(lines: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{_e(line)}</li>" for line in lines) + "</ul>"


def _claim(name: str, result: object, fig: _Figures) -> list[str]:
    from densenet.classroom import GradientResult, LearnSnapshot, MemoryResult, ReuseResult

    from . import classroom_figures

    heading, words = CLAIMS[name]
    out = [f"<h2>Claim: {_e(heading)}</h2>", f"<blockquote>“{_e(words)}” (the lesson)</blockquote>"]
    if isinstance(result, FewerParameters):
        out += ['<div class="grid">', fig(classroom_figures.params_vs_accuracy(result.published))]
        if result.same_depth is not None:
            out.append(fig(classroom_figures.same_depth_bars(result.same_depth)))
        out += ["</div>", f'<p class="note">{_e(result.published.source)}</p>']
        if result.same_depth is not None:
            sd = result.same_depth
            out.append(f"<p>{_e(result.config_label)} (depth {sd.depth}): {sd.densenet_params:,} parameters; "
                       f"the ResNet of the same depth ({sd.resnet_block} blocks {sd.resnet_layout}, width "
                       f"{sd.resnet_width}): {sd.resnet_params:,} ({sd.ratio:.2f}×).</p>")
        elif result.note:
            out.append(f'<p class="note">{_e(result.note)}</p>')
    elif isinstance(result, GradientResult):
        out += [fig(classroom_figures.gradient_profiles(result)), "<p><b>What it shows:</b></p>",
                _findings(result.findings), f'<p class="note">{_e(result.measured)}</p>']
    elif isinstance(result, MemoryResult):
        out += [fig(classroom_figures.memory_curves(result)),
                f"<p>{_e(classroom_figures.memory_exponents(result))}</p>", f'<p class="note">{_e(result.measured)}</p>']
    elif isinstance(result, ReuseResult):
        out.append(f"<p>A DenseNet trained here for {result.live_steps} steps (running loss {result.live_loss:.3f}, "
                   f"accuracy {result.live_accuracy:.0%}) beside the bundled demo model.</p>")
        for b, live in enumerate(result.live):
            demo = result.demo[b] if result.demo is not None and b < len(result.demo) else None
            out += [f"<h3>Block {b + 1}</h3>", '<div class="grid">',
                    fig(figures.feature_reuse_heatmap(live).update_layout(title_text=f"trained here, block {b + 1}"))]
            if demo is not None:
                out.append(fig(figures.feature_reuse_heatmap(demo).update_layout(
                    title_text=f"bundled demo model, block {b + 1}")))
            out.append("</div>")
        if result.demo is None and result.demo_note:
            out.append(f'<p class="note">Demo model: {_e(result.demo_note)}</p>')
    elif isinstance(result, LearnSnapshot):
        nets = (result.densenet, result.resnet)
        out += [fig(classroom_figures.learning_curves(result)),
                "<p>" + " · ".join(f"<b>{n.name}</b>: {n.params:,} parameters, {n.images_per_second:.0f} images/s"
                                   for n in nets) + "</p>",
                '<div class="facts">']
        for n in nets:
            out.append(f'<figure><img alt="{_e(n.name)} Grad-CAM" src="{_data_uri(classroom_figures.cam_overlay(result.image, n.cam))}">'
                       f"<figcaption>{_e(n.name)}: Grad-CAM at <code>{_e(n.cam_layer)}</code>, step {result.step}"
                       "</figcaption></figure>")
        out.append(f'<figure><img alt="the image" src="{_data_uri(classroom_figures.cam_overlay(result.image, None))}">'
                   f"<figcaption>the image: {_e(result.class_name)}</figcaption></figure></div>")
    else:
        raise TypeError(f"no lesson section for a {type(result).__name__} (claim {name!r})")
    return out


def build(topo: Topology, *, title: str, claims: Mapping[str, object] | None = None,
          block_index: int = 0, when: datetime | None = None) -> str:
    """The lesson as one HTML document (plotly embedded once; opens with no internet).

    Args:
        topo: the model's topology at the input size shown.
        title: what the model is ("Custom DenseNet", "DenseNet-121").
        claims: results by claim name (:data:`CLAIMS`), e.g. :func:`session_claims`; the rest are listed as not run.
        block_index: the dense block walked step by step (0-based).
        when: the export's time stamp (``None``: now).

    Raises:
        ValueError: a ``block_index`` the model does not have, or an unknown claim.
        TypeError: a claim result of the wrong kind.
    """
    if not 0 <= block_index < len(topo.blocks):
        raise ValueError(f"block_index {block_index} out of range for {len(topo.blocks)} block(s)")
    claims = dict(claims or {})
    unknown = [c for c in claims if c not in CLAIMS]
    if unknown:
        raise ValueError(f"unknown claim(s) {unknown}; known: {', '.join(CLAIMS)}")
    stamp = (when or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    fig = _Figures()
    body = [f"<h1>DenseNet lesson: {_e(title)}</h1>",
            f'<p class="note">Exported from DenseNet Explorer on {stamp}. Everything in this file works offline: '
            "hover the charts for details.</p>"]
    body += _architecture(topo, fig)
    body += _block(topo, block_index, fig)
    for name in CLAIMS:
        if name in claims:
            body += _claim(name, claims[name], fig)
    missing = [CLAIMS[c][0] for c in CLAIMS if c not in claims]
    if missing:
        body.append("<h2>Claims not run in this session</h2>"
                    f'<p class="note">{_e(", ".join(missing))}: run them on the “Claims, tested” page before '
                    "exporting to include them.</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>DenseNet lesson: "
            f"{_e(title)}</title><style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
