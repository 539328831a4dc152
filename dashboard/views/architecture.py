"""Architecture: dense connectivity of a block, the whole network, channel growth, the layer table.

Everything here is computed from the config alone, so the classroom knobs redraw it instantly.
"""

from __future__ import annotations

import streamlit as st

from dashboard import figures, lesson, numbers, page, results, selection, session, shared
from dashboard.analysis import plural, short_name

ctx = page.start("Architecture")
cfg = ctx.config
topo = ctx.topology
cfg_key = f"{cfg.to_json()}@{ctx.input_size}"

if ctx.spec.kind == "custom":
    st.caption(":material/school: Classroom mode: drag the knobs in the sidebar, everything below is redrawn "
               "from the configuration alone (no weights).")
else:
    st.caption("Choose **Custom** as the model source in the sidebar to bend growth rate, blocks, bottleneck and "
               "compression and watch everything below change.")

c1, c2, c3, c4 = st.columns(4)
c1.metric("Depth L", cfg.depth, help="Convolutions in blocks and transitions, plus stem conv and classifier.")
c2.metric("Dense links", f"{topo.num_links:,}", help="Σ L_b(L_b+1)/2 over the blocks.")
c3.metric("Parameters", numbers.big(topo.total_params))
c4.metric("MACs per image", numbers.big(topo.total_macs), help=f"At {ctx.input_size}×{ctx.input_size} input.")

# --- connectivity of one block ------------------------------------------------------------------
left, right = st.columns([3, 2], gap="large")
with right:
    b = session.selectbox(st, "Dense block", [blk.index for blk in topo.blocks], "block", 1,
                          format_func=lambda i: f"block {i}: {plural(topo.blocks[i - 1].num_layers, 'layer')}, "
                                                f"{topo.blocks[i - 1].size[0]}×{topo.blocks[i - 1].size[1]}")
    block = topo.blocks[b - 1]
    views = {"graph": "Graph (arcs)", "matrix": "Matrix (one cell per link)"}
    view = session.radio(st, "Draw the links as", list(views), f"conn_view.{block.num_layers >= figures.MATRIX_FROM}",
                         "matrix" if block.num_layers >= figures.MATRIX_FROM else "graph", format_func=views.get,
                         horizontal=True, help=f"Past {figures.MATRIX_FROM - 1} layers the arcs merge into a grey "
                                               "mass; the matrix shows the same links, one cell each.")
    node = session.selectbox(st, "Highlight the inputs of", list(range(block.num_layers + 1)), f"arch_node.{block.name}",
                             min(4, block.num_layers), format_func=lambda n: "no layer" if n == 0 else f"layer {n}",
                             help="Or click a layer on the graph.") or None

    L, k = block.num_layers, block.growth_rate
    st.markdown(f"**{plural(L, 'layer')} → L(L+1)/2 = {L}·{L + 1}/2 = {plural(L * (L + 1) // 2, 'link')}**")
    st.caption(f"{'Edges drawn in the graph' if view == 'graph' else 'Cells filled in the matrix'}: "
               f"{block.num_links:,}. Layer l reads the block input and the "
               f"{k} maps of each earlier layer: c0 + (l−1)·k = {block.in_channels} + (l−1)·{k} channels.")
    if node is not None:
        slices = topo.provenance(block.layer_name(node))
        earlier = ("" if node == 1 else f" and layer 1 ({k} ch)" if node == 2 else
                   f" and layers 1–{node - 1} ({node - 1}·{k} ch)")
        st.markdown(f"**Layer {node}** (`{short_name(block.layer_name(node))}`) reads **{plural(node, 'input')}**: "
                    f"the block input ({block.in_channels} ch){earlier}, **{block.in_channels_of(node)} channels** "
                    f"in all, and adds {k} new maps.")
        st.caption(" · ".join(f"ch {s.start}–{s.stop - 1} ← {short_name(s.source)}" for s in slices[:8]) +
                   (" · …" if len(slices) > 8 else ""))
        st.page_link("views/feature_maps.py", label="See its feature maps", icon=":material/grid_view:")


def _on_click() -> None:
    picked = selection.selected_layer(st.session_state.get("conn_graph"), block)
    if picked is not None and picked > 0:
        session.choose(f"arch_node.{block.name}", picked)
        session.choose("fm_layer", block.layer_name(picked))


with left:
    can_explain = ctx.image is not None and ctx.spec.trained and view == "graph"
    overlay = can_explain and session.toggle(
        st, "Relevance for this image", "relevance_overlay", False,
        help="Each link drawn by how much of the evidence for the class it carried for the sidebar's image "
             "(first order: gradient × activation on the link's channels, one backward pass; or LRP).")
    if overlay:
        model = page.load(ctx)
        how = session.radio(st, "Relevance by", list(figures.RELEVANCE_METHODS), "relevance_method", "gradient",
                            format_func=figures.RELEVANCE_METHODS.get, horizontal=True,
                            help="LRP shares the class's logit out layer by layer (ε + z⁺ rules, on a canonized "
                                 "copy of the model) and shows how much of it each block passes on.")
        an = results.get_analysis(ctx, graph=how == "gradient")
        target = session.selectbox(st, "Class", list(range(len(model.class_names))), "target",
                                   an.predictions[0].index, format_func=lambda i: model.class_names[i])
        rel = results.get_relevance(ctx, an, target, how).blocks[b - 1]
        page.chart(figures.relevance_graph(block, rel, target_name=model.class_names[target]), key="conn_graph")
        st.caption(figures.relevance_caption(block, rel, node or block.num_layers, model.class_names[target]) +
                   (figures.lrp_block_caption(rel) if how == "lrp" else "") +
                   " Red links carry evidence for the class, blue against it; a node's size is the total of its "
                   "maps. Beside the weights' feature reuse (Dense block page): what it used here, not what it can.")
        st.page_link("views/dense_block.py", label="Cut these links and watch the prediction move (Dense block)",
                     icon=":material/content_cut:")
    else:
        draw = figures.connectivity_graph if view == "graph" else figures.connectivity_matrix
        fig = shared.figure(f"connectivity-{view}", f"{cfg_key}|{block.name}|{node}",
                            lambda: draw(block, node, height=440))
        page.chart(fig, key="conn_graph", on_select=_on_click, selection_mode="points")

# --- whole network ------------------------------------------------------------------------------
st.subheader("The whole network")
g1, g2 = st.columns([2, 5], gap="large")
with g1:
    st.graphviz_chart(figures.overview_dot(topo, highlight=block.name), width="stretch")
with g2:
    page.chart(shared.figure("growth", cfg_key, lambda: figures.channel_growth(topo)), key="growth_chart")
    st.caption(f"Inside block b the concatenation grows by k = {cfg.growth_rate} channels per layer "
               f"(c0 + l·k); each transition keeps ⌊θ·c⌋ with θ = {cfg.compression:g} and halves the size. "
               "Hover a point for its arithmetic.")

st.subheader("Layer table")
st.caption("Laid out like Table 1 of Huang et al. (2017); parameters and multiply-accumulates counted from the config.")
number = st.column_config.NumberColumn(format="compact")
table = figures.paper_table(topo)
st.dataframe(table, hide_index=True, width="stretch", height=35 * (len(table) + 1) + 3,
             column_config={"Params": number, "MACs": number, "Structure": st.column_config.TextColumn(width="large")})
ran = lesson.session_claims()
st.download_button("Download the lesson (HTML)", lambda: lesson.build(
    topo, title=ctx.spec.label, claims=ran, block_index=b - 1).encode("utf-8"),
    file_name="densenet-lesson.html", mime="text/html", key="arch.lesson", icon=":material/download:",
    help="One file that opens offline: this architecture, a block step by step, and the claims run on the "
         "Claims page in this session.")
with st.expander("Every layer"):
    st.dataframe(figures.layer_table(topo), hide_index=True, width="stretch",
                 column_config={"Params": number, "MACs": number})
