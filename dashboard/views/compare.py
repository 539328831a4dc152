"""DenseNet vs ResNet: the current model beside the ResNet of its depth, and two configurations side by side.

Parameters, MACs, links and the channels each unit reads are counted on ``meta`` (no weights,
instant); activation memory is measured by one real training step of each, on request.
"""

from __future__ import annotations

import hashlib

import plotly.graph_objects as go
import streamlit as st

from dashboard import classroom_figures as cf
from dashboard import figures, page, runtime, session, shared
from dashboard.numbers import big
from densenet import classroom
from densenet.config import DenseNetConfig

ctx = page.start("DenseNet vs ResNet")
cfg = ctx.config
size = ctx.input_size
#: One measured training step of DenseNet-121 and its depth-121 ResNet at 224 px, 2 cores
#: (`python -m densenet.classroom.timing compare`, load 3.6): the figure shown beside the buttons.
MEASURED_121_S = 4.4

ROWS = [  # (metric label, what it reads from an Architecture, how it is shown)
    ("Depth", lambda a: a.depth, str),
    ("Units H_l", lambda a: a.units, str),
    ("Links", lambda a: a.links, lambda v: f"{v:,}"),
    ("Widest input", lambda a: max(a.reads), lambda v: f"{v:,} ch"),
    ("Parameters", lambda a: a.params, big),
    ("MACs", lambda a: a.macs, big),
    ("Activation memory", lambda a: a.memory and a.memory.forward_bytes, lambda v: f"{v / 1e6:.1f} MB"),
    ("Training-step peak", lambda a: a.memory and a.memory.step_bytes, lambda v: f"{v / 1e6:.1f} MB"),
]


def _ratio(a: float | None, b: float | None) -> str:
    return f"×{b / a:.2f}" if a and b is not None else "–"


def aligned(left: classroom.Architecture, right: classroom.Architecture, titles: tuple[str, str]) -> None:
    """Both networks side by side: the headline numbers in two columns, then every row in one aligned table."""
    heads = st.columns(2, gap="large")
    for where, title in zip(heads, titles):
        where.markdown(f"#### {title}")
    numbers = st.columns(2, gap="large")  # a row of its own: aligned even when one title wraps
    for where, arch in ((numbers[0], left), (numbers[1], right)):
        links, params = where.columns(2)
        other = None if arch is left else left
        links.metric("Links", f"{arch.links:,}", help="Inputs read by all units together: Σ L(L+1)/2 over the blocks, or one per unit.", delta_color="off", delta_arrow="off",
                     delta=None if other is None else f"{_ratio(other.links, arch.links)} of {other.name}")
        params.metric("Parameters", big(arch.params), delta_color="off", delta_arrow="off",
                      delta=None if other is None else f"{_ratio(other.params, arch.params)} of {other.name}")
    lines = [f"| | {left.name} | {right.name} | {right.name} − {left.name} | {right.name} ÷ {left.name} |",
             "|---|---:|---:|---:|---:|"]
    for label, get, fmt in ROWS:
        a, b = get(left), get(right)
        shown = [("–" if v is None else fmt(v)) for v in (a, b)]
        diff = "–" if a is None or b is None else ("+" if b >= a else "−") + fmt(abs(b - a))
        lines.append(f"| {label} | {shown[0]} | {shown[1]} | {diff} | {_ratio(a, b)} |")
    st.markdown("\n".join(lines))


def measure_button(name: str, key: tuple, run: object, label: str, note: str) -> object | None:
    """The measured comparison, if this session has it or the button asks for it now."""
    measured = session.peek(name, key)
    row = st.columns([1, 3], vertical_alignment="center")
    clicked = row[0].button("Measure memory" if measured is None else "Measure again", key=f"{name}.measure",
                            icon=":material/memory:", type="primary" if measured is None else "secondary")
    row[1].caption(note)
    if clicked:
        with runtime.job(label, long=True, bar=True) as job:
            fresh = run(job.progress)
        session.forget(name)  # the shown result goes only once the new one is complete
        session.memo(name, key, lambda: fresh, max_entries=4)
        st.rerun()  # the button now says "Measure again"
    return measured


def describe(c: DenseNetConfig) -> str:
    return (f"k={c.growth_rate}, blocks {'·'.join(map(str, c.block_config))}, "
            f"{'bottleneck' if c.bn_size else 'no bottleneck'}, θ={c.compression:g}")


# --- the current model beside the ResNet of its depth ----------------------------------------------
st.caption(f"**{ctx.spec.label[:1].upper() + ctx.spec.label[1:]}** ({describe(cfg)}) beside a ResNet of exactly its depth, built from torchvision's "
           f"residual blocks, at {size}×{size} input. Change the model in the sidebar (Custom bends every knob).")
# one row per kind of text, so that the formulas line up even when a sentence wraps
words = st.columns(2, gap="large")
words[0].markdown("**DenseNet: concatenate.** Layer l reads every earlier map of its block.")
words[1].markdown("**ResNet: add.** Unit l reads one tensor, its predecessor's output plus the shortcut.")
formulas = st.columns(2, gap="large")
formulas[0].latex(r"x_l = H_l([x_0, x_1, \ldots, x_{l-1}])")
formulas[1].latex(r"x_l = H_l(x_{l-1}) + x_{l-1}")
notes = st.columns(2, gap="large")
notes[0].caption("A block of L layers has 1 + 2 + … + L = L(L+1)/2 links.")
notes[1].caption("L units have L links; the widths stay fixed within a stage.")

key = (cfg.to_json(), size)
try:
    counted = session.memo("compare.resnet", key + (False,), lambda: classroom.compare_with_resnet(
        cfg, input_size=size, measure_memory=False))
except ValueError as e:
    counted = None
    st.info(f"No ResNet of this depth: {e}")
if counted is not None:
    seconds = MEASURED_121_S * (counted.left.macs + counted.right.macs) / 25e9  # the DenseNet-121 pair: ~25 G MACs
    measured = measure_button("compare.resnet", key + (True,), lambda p: classroom.compare_with_resnet(
        cfg, input_size=size, measure_memory=True, progress=p), "Measuring memory",
        f"One training step of each on one image: ≈ {max(1, round(seconds))} s on this machine "
        f"(DenseNet-121 with its ResNet-121: {MEASURED_121_S:g} s).")
    comp = measured or counted
    aligned(comp.left, comp.right, (f"DenseNet · depth {comp.left.depth}",
                                    f"ResNet · depth {comp.right.depth}, {comp.right.units} residual blocks"))
    page.chart(cf.reads_bars(comp), key="cmp_reads")
    if measured is not None:
        st.caption("Activation memory: the peak of tensor storage during the forward pass (what the backward pass "
                   "keeps); training-step peak: forward and backward. Measured operation by operation on this "
                   "machine; weights and input excluded.")

# --- two configurations ------------------------------------------------------------------------------
st.subheader("Two configurations side by side")
st.caption("A is the current model; set B below (it starts as A with another growth rate). Both are drawn "
           "the same way, so the differences line up.")
digest = hashlib.blake2s(cfg.to_json().encode(), digest_size=4).hexdigest()  # B starts over when A changes
presets = [tuple(cfg.block_config), (6, 12, 24, 16), (6, 12, 32, 32), (6, 12, 48, 32), (6, 12, 64, 48),
           (16, 16, 16), (12, 12, 12), (4, 4, 4), (3, 3), (6,)]
presets = list(dict.fromkeys(presets))
knobs = st.columns(4)
b_k = session.slider(knobs[0], "B: growth rate k", 1, 64, f"compare.k.{digest}",
                     12 if cfg.growth_rate != 12 else 32)
b_blocks = session.selectbox(knobs[1], "B: layers per block", presets, f"compare.blocks.{digest}",
                             tuple(cfg.block_config), format_func=lambda t: " · ".join(map(str, t)))
b_theta = session.slider(knobs[2], "B: compression θ", 0.1, 1.0, f"compare.theta.{digest}", float(cfg.compression),
                         0.05)
b_bottleneck = session.toggle(knobs[3], "B: bottleneck", f"compare.bn.{digest}", cfg.bn_size is not None)
try:
    cfg_b = cfg.replace(growth_rate=b_k, block_config=b_blocks, compression=b_theta,
                        bn_size=(cfg.bn_size or 4) if b_bottleneck else None)
except ValueError as e:
    st.error(f"That configuration is not possible: {e}")
    page.stop()

labels = (f"A: {describe(cfg)}", f"B: {describe(cfg_b)}")
pair_key = (cfg.to_json(), cfg_b.to_json(), size)
counted_ab = session.memo("compare.configs", pair_key + (False,), lambda: classroom.compare_configs(
    cfg, cfg_b, input_size=size, measure_memory=False, labels=("A", "B")))
seconds = MEASURED_121_S * (counted_ab.left.macs + counted_ab.right.macs) / 25e9
measured_ab = measure_button("compare.configs", pair_key + (True,), lambda p: classroom.compare_configs(
    cfg, cfg_b, input_size=size, measure_memory=True, labels=("A", "B"), progress=p), "Measuring memory",
    f"One training step of each on one image: ≈ {max(1, round(seconds))} s on this machine.")
ab = measured_ab or counted_ab
topo_a, topo_b = ctx.topology, shared.topology(cfg_b, size)
aligned(ab.left, ab.right, labels)
top_channels = max(b.out_channels for t in (topo_a, topo_b) for b in t.blocks)
for name, draw in (("growth", lambda t: figures.channel_growth(t).update_layout(
                        title_text="Channel growth: c0 + l·k, ×θ at each transition")),
                   ("conn", lambda t: (figures.connectivity_graph if t.blocks[0].num_layers < figures.MATRIX_FROM
                                       else figures.connectivity_matrix)(t.blocks[0], None, height=360))):
    left, right = st.columns(2, gap="large")
    for where, t, tag in ((left, topo_a, "a"), (right, topo_b, "b")):
        with where:
            fig = shared.figure(f"compare-{name}", f"{t.config.to_json()}@{size}", lambda t=t: draw(t))
            if name == "growth":  # one channel scale for both, so that the heights compare (on a copy: shared)
                fig = go.Figure(fig).update_yaxes(range=[0, 1.08 * top_channels])
            page.chart(fig, key=f"cmp_{name}_{tag}")
page.chart(cf.reads_bars(ab), key="cmp_reads_ab")
left, right = st.columns(2, gap="large")
number = st.column_config.NumberColumn(format="compact")
for where, t in ((left, topo_a), (right, topo_b)):
    table = figures.paper_table(t)
    where.dataframe(table, hide_index=True, width="stretch", height=35 * (len(table) + 1) + 3,
                    column_order=("Layers", "Channels", "Params", "MACs"),
                    column_config={"Params": number, "MACs": number})
