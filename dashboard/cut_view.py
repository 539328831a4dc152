"""The "Cut links" section of the Dense-block page: pick links, see the prediction and Grad-CAM before and after.

Also: "Cut every link but the chain", and every link's importance by cutting beside its first-order relevance.
"""

from __future__ import annotations

import streamlit as st

from densenet import explain
from densenet.topology import BlockInfo

from . import cut_figures, cutting, figures, page, results, session
from .analysis import plural, short_name
from .results import Analysis, Context


def _cut_name(block: BlockInfo) -> str:
    return f"cut_links.{block.name}"


def _toggle_clicked(block: BlockInfo, chart_key: str) -> None:
    """A click on a link's marker or cell cuts it, or restores it when it was cut."""
    picked = cut_figures.clicked_links(st.session_state.get(chart_key))
    if not picked:
        return
    now = list(session.kept(_cut_name(block), []) or [])
    for link in picked:
        if link in now:
            now.remove(link)
        elif link in block.links:
            now.append(link)
    session.choose(_cut_name(block), sorted(now, key=lambda jl: (jl[1], jl[0])))


def render(ctx: Context, block: BlockInfo, an: Analysis | None) -> None:
    """Draw the section for ``block`` on the session's image (``an``; ``None``: say what is missing)."""
    st.subheader("Cut links and watch the prediction move")
    st.caption("Cutting j → l: layer l reads zeros where j's maps were (before its BatchNorm); every other layer "
               "still reads them. The network runs again from the block's input with the cut in place; the loaded "
               "model itself is never changed.")
    if an is None:
        st.info("Choose a sample image in the sidebar (and a trained model, such as the demo) to cut links and "
                "see what the network does without them.")
        return
    model = page.load(ctx)
    b = block.index
    name = _cut_name(block)
    chain = [(j, l) for _, j, l in explain.chain_cuts(model, b)]
    c1, c4 = st.columns([3, 1], vertical_alignment="bottom")
    c2, c3, _ = st.columns([3, 2, 3], vertical_alignment="center")
    with c2:
        if st.button("Cut every link but the chain", key=f"cut_chain.{block.name}", icon=":material/link_off:",
                     help=f"Cut every link but the chain l − 1 → l: {plural(block.num_layers, 'link')} instead "
                          f"of {block.num_links:,}, a plain chain like a network without dense connections.",
                     width="stretch", disabled=not chain):
            session.choose(name, chain)
    with c3:
        if st.button("Restore every link", key=f"cut_none.{block.name}", icon=":material/link:", width="stretch"):
            session.choose(name, [])
    with c1:
        cuts = session.multiselect(st, "Cut links", block.links, name, [], format_func=cut_figures.link_label,
                                   placeholder="Pick links, or click them in the graph",
                                   help="source → reading layer; in = the block input.")
    target = session.selectbox(c4, "Class", list(range(len(model.class_names))), "target",
                               an.predictions[0].index, format_func=lambda i: model.class_names[i])

    left, right = st.columns([2, 3], gap="large")
    chart_key = f"cut_chart.{block.name}"
    with left:
        draw = cut_figures.cut_graph if block.num_layers < figures.MATRIX_FROM else cut_figures.cut_matrix
        page.chart(draw(block, set(cuts)), key=chart_key, on_select=lambda: _toggle_clicked(block, chart_key),
                   selection_mode="points")
        st.caption("Click a link's marker (or cell) to cut it; click again to restore it.")
    outcome = cutting.get_outcome(ctx, an, b, tuple(cuts), target)
    with right:
        _before_after(ctx, an, block, outcome, model.class_names)

    st.markdown("**Importance of every link by cutting**")
    L = block.num_layers
    if session.toggle(st, f"Cut each of the {block.num_links:,} links in turn and compare with first-order relevance",
                      "cut_importance", False,
                      help=f"{block.num_links:,} resumed forwards from the block's input ({L}·{L + 1}/2), batched; "
                           "beside them the gradient × activation relevance of each link from one backward pass."):
        importance = cutting.get_importance(ctx, an, b, target)
        relevance = results.get_relevance(ctx, an, target).blocks[b - 1]
        page.chart(cut_figures.importance_vs_relevance(block, importance, relevance,
                                                       target_name=model.class_names[target]), key="cut_vs_rel")
        st.markdown(cut_figures.disagreement(importance, relevance))
        top = importance.ranked()[:3]
        st.caption("Largest drops when cut: " + ", ".join(
            f"{cut_figures.link_label(link)} ({v:+.3g} logit, {importance.links_probability[link]:+.1%})"
            for link, v in top) + ". Red: the class loses when the link is cut (left) or the link carries evidence "
            "for it (right).")


def _before_after(ctx: Context, an: Analysis, block: BlockInfo, outcome: cutting.Outcome,
                  class_names: list[str]) -> None:
    name = class_names[outcome.target]
    n = len(outcome.cuts)
    a, b = st.columns(2)
    a.metric(f"Before: P({name})", f"{outcome.prob_before:.1%}", help=f"logit {outcome.logit_before:+.3f}")
    b.metric(f"After cutting {plural(n, 'link')}: P({name})", f"{outcome.prob_after:.1%}",
             delta=f"{(outcome.prob_after - outcome.prob_before) * 100:+.1f} points", delta_color="normal",
             help=f"logit {outcome.logit_after:+.3f} ({outcome.logit_after - outcome.logit_before:+.3f})")
    overlays = [explain.overlay(an.display, m, alpha=0.45) for m in (outcome.cam_before, outcome.cam_after)]
    a, b = st.columns(2)  # a row of their own: the delta under one metric must not shift one image
    a.image(overlays[0], caption=f"Grad-CAM (norm5), all links: top {outcome.before[0].name} "
                                 f"{outcome.before[0].probability:.0%}", width="stretch")
    b.image(overlays[1], caption=f"Grad-CAM (norm5), {plural(n, 'link')} cut: top {outcome.after[0].name} "
                                 f"{outcome.after[0].probability:.0%}", width="stretch")
    if n == 0:
        st.caption("Nothing is cut yet: both sides are the network as trained.")
    elif outcome.flipped:
        st.markdown(f"**The prediction changes**: {outcome.before[0].name} → **{outcome.after[0].name}** with "
                    f"{plural(n, 'link')} of {short_name(block.name)} cut.")
    else:
        st.caption(f"Still {outcome.after[0].name}; P({name}) moves by "
                   f"{(outcome.prob_after - outcome.prob_before) * 100:+.1f} points.")
