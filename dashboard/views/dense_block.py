"""A dense block, step by step: the growing concatenation, the shapes, the transition, feature reuse."""

from __future__ import annotations

import time

import streamlit as st

from dashboard import analysis, cut_view, figures, page, results, session, shared
from dashboard.analysis import plural, short_name
from densenet.classroom import feature_reuse

ctx = page.start("Dense block, step by step")
cfg = ctx.config
topo = ctx.topology


def shape(s: tuple[int, int, int]) -> str:
    return f"({s[0]}, {s[1]}, {s[2]})"


c1, c2, c3 = st.columns([2, 1, 1])
b = session.selectbox(c1, "Dense block", [blk.index for blk in topo.blocks], "block", 1,
                      format_func=lambda i: f"block {i} ({plural(topo.blocks[i - 1].num_layers, 'layer')})")
block = topo.blocks[b - 1]
steps = analysis.block_steps(block, cfg.bn_size)
L, k, c0 = block.num_layers, block.growth_rate, block.in_channels
STEP = f"step.{block.name}"
playing = L > 1 and session.toggle(c2, "Play", "db_play", False, help="Advance one layer at a time, "
                                   "looping; the graph lights the links into the current layer.")
pace = session.select_slider(c3, "Seconds per layer", [0.5, 1.0, 1.5, 2.0, 3.0], "db_pace", 1.0)
# Fresh weights need a model built (and run) for nothing but noise: only on request, so that the
# classroom knobs stay instant on this page too.
with_weights = ctx.spec.trained or session.toggle(
    st, "Also show this layer's maps and the weights' feature reuse for these fresh weights", "db_fresh", False,
    help="Builds the model with random weights; for a trained model this is always shown.")
an = results.get_analysis(ctx) if ctx.image is not None and with_weights else None


def advance_if_due() -> None:
    """While playing, one layer on per ``pace`` seconds (timed, so extra reruns do not skip layers)."""
    now = time.monotonic()
    last = session.kept("db_last_step", None)
    if last is None or now - last >= 0.9 * pace:
        if last is not None:
            session.choose(STEP, session.kept(STEP, 1) % L + 1)
        session.keep("db_last_step", now)


@st.fragment(run_every=pace if playing else None)
def walk() -> None:
    """Everything that follows the current layer; while playing, only this reruns, every ``pace`` seconds."""
    if playing:
        advance_if_due()
    else:
        session.keep("db_last_step", None)
    layer = session.slider(st, "Layer l", 1, L, STEP, 1, help="Walk through the block one dense layer at a time.",
                           disabled=playing) if L > 1 else 1
    step = steps[layer - 1]
    # Presenter mode (a 720 px projector): the charts first, so that they are above the fold.
    shown_first = ("charts", "text", "metrics") if page.presenting() else ("text", "metrics", "charts")
    box = {part: st.container() for part in shown_first}
    with box["text"]:
        st.markdown(f"Input of the block: **{shape(steps[0].input_shape)}** (height, width, channels), growth rate "
                    f"**k = {k}**. Each layer concatenates everything before it and adds k maps:")
        chain = [shape(s.input_shape) for s in steps] + [shape(steps[-1].output_shape)]
        chain[layer - 1] = f"**{chain[layer - 1]}**"
        if len(chain) > 9:  # a 64-layer block: the current step with its neighbours, both ends, the count between
            keep = sorted({0, 1, layer - 2, layer - 1, layer, len(chain) - 2, len(chain) - 1} & set(range(len(chain))))
            parts, last = [], -1
            for i in keep:
                if i > last + 1:
                    parts.append(f"… ({plural(i - last - 1, 'step')}) …")
                parts.append(chain[i])
                last = i
            chain = parts
        chain = [c.replace(", ", ",\u00a0") for c in chain]  # a tuple never breaks across lines
        st.markdown(" → ".join(chain) + f"  \n= ({block.size[0]}, {block.size[1]}, {c0} + {L}·{k}) = "
                    f"**{shape(steps[-1].output_shape)}**")
    with box["metrics"]:
        m = st.columns(4)
        m[0].metric(f"Input to layer {layer}", shape(step.input_shape),
                    help=f"c0 + (l−1)·k = {c0} + {layer - 1}·{k}")
        m[1].metric("After the 1×1 bottleneck", shape(step.bottleneck_shape) if step.bottleneck_shape else "none",
                    help="BN-ReLU-1×1 conv to 4k channels (DenseNet-B)." if step.bottleneck_shape else
                    "This model has no bottleneck: BN-ReLU-3×3 conv reads the concatenation directly.")
        m[2].metric("After the 3×3 conv", shape(step.new_shape), help="k new feature maps.")
        m[3].metric("Concatenated output", shape(step.output_shape), help=f"c0 + l·k = {c0} + {layer}·{k}")
    with box["charts"]:
        left, right = st.columns([3, 2], gap="large")
        with left:
            page.chart(figures.step_figure(block, step), key="step_fig")
        with right:
            draw = figures.connectivity_graph if L < figures.MATRIX_FROM else figures.connectivity_matrix
            # A matrix is square: at 300 px a 64-layer block's cells would be 3 px; give it the column's width.
            tall = 300 if draw is figures.connectivity_graph else 460
            page.chart(shared.figure("step-links", f"{cfg.to_json()}|{block.name}|{layer}|{tall}",
                                     lambda: draw(block, layer, height=tall)), key="step_links")
            lit = "the link into layer 1 is lit" if layer == 1 else f"the {layer} links into layer {layer} are lit"
            st.caption(f"Up to layer {layer}: {plural(step.links_so_far, 'link')}; {lit}.")
    if an is not None:
        new = an.trace.activations.get(block.layer_name(layer))
        if new is not None:
            maps = analysis.to_numpy(new)
            order = analysis.channel_order(maps)[:16]
            st.image(list(analysis.upscale(analysis.colorize(maps[order]), 64)), width=64,
                     caption=[f"#{int(i)}" for i in order])
            st.caption(f"Layer {layer}'s new maps for {ctx.image.name} (strongest {len(order)} of {k}).")


walk()

# --- transition -----------------------------------------------------------------------------------------
if block.transition is not None:
    t = topo.row(block.transition)
    st.markdown(f"**Then transition {b}** halves size and, with θ = {cfg.compression:g}, channels: "
                f"{shape(steps[-1].output_shape)} → BN-ReLU-1×1 conv → "
                f"({block.size[0]}, {block.size[1]}, {t.out_channels}) → 2×2 average pool → "
                f"**({t.size[0]}, {t.size[1]}, {t.out_channels})**")
else:
    st.markdown(f"**The last block** feeds BN-ReLU, global pooling and the classifier: "
                f"{shape(steps[-1].output_shape)} → ({block.out_channels},) → {cfg.num_classes} outputs.")

cut_view.render(ctx, block, an)

# --- counting links; concatenation against addition ------------------------------------------------------
left, right = st.columns(2, gap="large")
with left:
    st.subheader("How many connections?")
    st.markdown("Layer l reads the block input and all l − 1 layers before it: l incoming links.")
    st.latex(rf"\sum_{{l=1}}^{{L}} l = \frac{{L(L+1)}}{{2}} = \frac{{{L}\cdot{L + 1}}}{{2}} = {L * (L + 1) // 2}")
    st.caption(f"A plain chain of {plural(L, 'layer')} has {plural(L, 'link')}.")
with right:
    st.subheader("Concatenation, not addition")
    st.latex(r"\text{DenseNet: } x_l = H_l([x_0, x_1, \ldots, x_{l-1}])")
    st.latex(r"\text{ResNet: } x_l = H_l(x_{l-1}) + x_{l-1}")
    st.caption("ResNet sums features, so channels stay fixed and earlier maps are mixed away; DenseNet keeps every "
               "map intact and lets each layer choose what to reuse, so each layer can be narrow (small k).")
page.chart(figures.concat_vs_add(block), key="concat_fig")

# --- feature reuse (Fig. 5) --------------------------------------------------------------------------------
st.subheader("Feature reuse in the loaded weights")
st.caption("As Fig. 5 of the DenseNet paper: for each layer (column), the mean absolute weight of its first "
           "convolution over the channels each earlier layer (row) produced. Bright: that input is used a lot. "
           "Each column is divided by its maximum.")
if not with_weights:
    st.info("This model has fresh random weights, where every source looks alike. Load a trained model (demo, "
            "ImageNet or your checkpoint) to see which earlier layers each layer really uses, or switch the "
            "toggle above.")
else:
    if not ctx.spec.trained:
        st.info("These are fresh random weights, so every source looks alike.")
    model = page.load(ctx)
    reuse = session.memo("reuse", (ctx.spec.key, b), lambda: feature_reuse(model, topo, b - 1),
                         max_entries=8)
    normalise = session.toggle(st, "Divide each column by its maximum", "reuse_norm", True)
    page.chart(figures.feature_reuse_heatmap(reuse, normalise=normalise), key="reuse_fig")
    st.caption(f"{short_name(block.name)}: rows are the block input and layers 1–{L}; the last column is "
               f"{'the classifier' if reuse.targets[-1] == 'classifier' else short_name(reuse.targets[-1])}.")
