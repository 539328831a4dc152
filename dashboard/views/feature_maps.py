"""Feature maps: the maps a layer adds, its whole input coloured by provenance, one map enlarged."""

from __future__ import annotations

import numpy as np
import streamlit as st

from dashboard import analysis, figures, page, results, selection, session, shared
from dashboard.analysis import short_name
from densenet import render

ctx, model, an = page.with_image("Feature maps")
topo = ctx.topology
taps = model.tap_names
first_block = topo.blocks[0]

top = st.columns([2, 1, 1, 1])
layer = session.selectbox(top[0], "Layer", taps, "fm_layer", first_block.layer_name(first_block.num_layers),
                          format_func=short_name,
                          help="Any traced layer; a click on the connectivity graph (Architecture) picks one too.")
scale = session.radio(top[1], "Colour scale", ["local", "global"], "fm_scale", "local", horizontal=True,
                      format_func={"local": "each map", "global": "shared"}.get,
                      help="Each map stretched to its own min–max, or one range for all maps shown.")
cmap = session.selectbox(top[2], "Colours", ["viridis", "magma", "gray", "RdBu_r"], "fm_cmap", "viridis")
show_inputs = session.toggle(top[3], "All inputs", "fm_inputs", False,
                             help="Every channel this layer reads, framed in the colour of the layer that made it.")

maps = analysis.to_numpy(an.trace.activations[layer])  # (C, h, w), raw values
order = analysis.channel_order(maps)
is_dense_layer = topo.locate(layer) is not None
try:
    block = topo.block_of(layer)
except KeyError:
    block = None

c, h, w = maps.shape
if is_dense_layer:
    st.markdown(f"**{short_name(layer)}** adds **k = {c} new maps** of {h}×{w}, shown strongest first "
                f"(by mean activation).")
else:
    st.markdown(f"**{short_name(layer)}** outputs **{c} channels** of {h}×{w}; "
                f"{'the first 64, ' if c > 64 else ''}strongest first (by mean activation).")
shown = order[:64]
lo, hi = float(maps[shown].min()), float(maps[shown].max())
tiles = session.memo("fm_tiles", (an.key, layer, scale, cmap), lambda: [
    render.png_bytes(t, compress_level=1) for t in analysis.upscale(analysis.colorize(maps[shown], scale=scale, colormap=cmap), 72)])
st.caption(("Each map stretched to its own min–max." if scale == "local" else
            f"One colour range for all maps shown: [{lo:.3g}, {hi:.3g}].") +
           " Captions: channel index · mean activation (raw values, not normalised).")
means = maps.reshape(c, -1).mean(1)
st.image(tiles, caption=[f"#{int(i)} · {means[i]:.2g}" for i in shown], width=96)

# --- one map enlarged, and where the input comes from ------------------------------------------------
left, right = st.columns([1, 1], gap="large")
with left:
    channel = session.selectbox(st, "Enlarge channel", [int(i) for i in order], f"fm_channel.{an.key}.{layer}",
                                int(order[0]), format_func=lambda i: f"#{i} (mean {means[i]:.3g})")
    zmin, zmax = (lo, hi) if scale == "global" else (None, None)
    colorscale = {"viridis": "Viridis", "magma": "Magma", "gray": "Greys_r", "RdBu_r": "RdBu_r"}[cmap]
    page.chart(figures.heatmap(maps[channel], title=f"{short_name(layer)} · channel {channel} (raw values)",
                                    colorscale=colorscale, zmin=zmin, zmax=zmax),
                    key="fm_enlarged")
with right:
    try:
        slices = topo.provenance(layer)
    except KeyError:
        slices = None
    if slices is None:
        st.caption("This layer is part of the stem: it reads the image, not a concatenation.")
    else:
        page.chart(figures.provenance_bar(slices, c if is_dense_layer else None), key="fm_bar")
        located = topo.locate(layer)
        if located is not None:
            node = located[1]

            def _on_click() -> None:
                picked = selection.selected_layer(st.session_state.get("fm_graph"), block)
                if picked is not None and picked > 0:
                    session.choose("fm_layer", block.layer_name(picked))

            if ctx.spec.trained and session.toggle(st, "Relevance for this image", "relevance_overlay", False,
                                                   help="The links drawn by the evidence they carried for the "
                                                        "Attention page's class (first order, one backward)."):
                target = session.kept("target", an.predictions[0].index)
                rel = results.get_relevance(ctx, an, target).blocks[block.index - 1]
                fig = figures.relevance_graph(block, rel, target_name=model.class_names[target], height=300)
                st.caption(figures.relevance_caption(block, rel, node, model.class_names[target]))
            else:
                fig = shared.figure("connectivity-small", f"{model.config.to_json()}@{ctx.input_size}|"
                                    f"{block.name}|{node}", lambda: figures.connectivity_graph(block, node, height=300))
            page.chart(fig, key="fm_graph", on_select=_on_click, selection_mode="points")
            st.caption("Click a layer on the graph to show its maps.")

if show_inputs:
    if slices is None:
        st.info("A stem layer has no concatenated input to show.")
    else:
        st.subheader("Every input channel, framed by the layer that produced it")
        n_inputs = sum(s.channels for s in slices)

        def build_mosaic() -> bytes:
            inputs = np.concatenate([analysis.to_numpy(an.trace.activations[s.source]) for s in slices], axis=0)
            return render.png_bytes(analysis.provenance_mosaic(
                analysis.colorize(inputs, scale=scale, colormap=cmap), analysis.owners_of(slices),
                columns=32 if n_inputs > 64 else 16, tile_side=28))

        mosaic = session.memo("fm_mosaic", (an.key, layer, scale, cmap), build_mosaic, max_entries=4)
        legend = " ".join(
            f"<span style='display:inline-block;width:0.8em;height:0.8em;background:{analysis.source_color(i)};"
            f"margin-right:0.25em'></span>{'block input' if i == 0 else f'layer {i}'} ({s.channels})"
            for i, s in enumerate(slices))
        st.markdown(legend, unsafe_allow_html=True)
        st.image(mosaic, caption=f"{n_inputs} input channels in concatenation order", width="stretch")
