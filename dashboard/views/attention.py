"""Attention: what the model predicts, and where it looks, by several methods and at several layers."""

from __future__ import annotations

import io

import numpy as np
import streamlit as st
from PIL import Image

from dashboard import backend, figures, state
from dashboard.analysis import short_name

ctx, model, an, topo = state.image_page("Attention")
if not ctx.spec.trained:
    st.warning("This model has fresh random weights: the maps below show the mechanics, not what a trained "
               "model looks at. Pick the demo model, ImageNet weights or your checkpoint in the sidebar.")

# --- predictions ------------------------------------------------------------------------------------
top1 = an.predictions[0]
left, right = st.columns([1, 2], gap="large")
with left:
    st.metric("Prediction", top1.name, f"p = {top1.probability:.1%}" + (" (sigmoid)" if an.multilabel else ""),
              delta_color="off", delta_arrow="off")
    st.plotly_chart(figures.topk_bar(an.predictions, multilabel=an.multilabel), key="topk",
                    config={"displayModeBar": False})

# --- settings -------------------------------------------------------------------------------------------
probs = an.trace.probabilities[0].cpu()
classes = list(range(len(model.class_names)))
methods = list(backend.CAM_METHODS) + list(backend.ATTRIBUTION_METHODS)
layer_options = [t for t in model.tap_names if not t.startswith("features.conv0")]
block_outputs = [b.name for b in topo.blocks]
default_layer = backend.default_cam_layer(model)

if st.session_state.get("_target_for") != an.key:  # a new image or model: explain its top prediction
    state.choose("target", top1.index)
    st.session_state["_target_for"] = an.key

with right:
    s1, s2, s3 = st.columns(3)
    state.sticky("target", top1.index, classes)
    # Options are labelled by name only: labels that change with the image would not refresh in the browser.
    target = s1.selectbox("Class to explain", classes, key="target", format_func=lambda i: model.class_names[i],
                          help="The raw logit of this class is explained. Default: the top prediction.")
    state.remember("target")
    s1.caption(f"p = {float(probs[target]):.1%}" + (" (sigmoid)" if an.multilabel else " (softmax)"))
    state.sticky("method", "gradcam", methods)
    method = s2.selectbox("Method", methods, key="method", format_func=backend.method_label,
                          help="Grad-CAM family maps come from one backward pass through the trace; "
                               "Integrated Gradients, SmoothGrad and Occlusion re-run the model (captum).")
    state.remember("method")
    state.sticky("cam_layer", default_layer, layer_options)
    layer = s3.selectbox("Layer", layer_options, key="cam_layer", format_func=short_name,
                         disabled=method in ("integrated-gradients", "smoothgrad", "occlusion"),
                         help="Input-space methods (IG, SmoothGrad, Occlusion) do not use a layer.")
    state.remember("cam_layer")
    o1, o2 = st.columns([2, 1])
    state.sticky("alpha", 0.5)
    alpha = o1.slider("Overlay opacity", 0.0, 1.0, key="alpha", step=0.05)
    state.remember("alpha")
    state.sticky("cam_cmap", "jet", ["jet", "inferno", "viridis", "turbo"])
    cmap = o2.selectbox("Colour map", ["jet", "inferno", "viridis", "turbo"], key="cam_cmap")
    state.remember("cam_cmap")
    st.caption(backend.CAM_METHODS.get(method) or backend.ATTRIBUTION_METHODS.get(method, ""))

if model.config.null_class and target == 0:
    st.info(f"“{model.class_names[0]}” is this model's null class, a fixed zero logit: no pixel changes it, so its "
            "gradient maps are empty by construction. The other classes' logits are evidence against it.")

is_cam = method in backend.CAM_METHODS
small_model = topo.total_macs < 3e8  # the demo model and CIFAR nets: a few seconds at most, so run at once


def get_map(method: str, layer: str) -> backend.Map | None:
    """The map for the current image and class; attribution methods on demand for big models."""
    if method in backend.CAM_METHODS:
        return state.get_cams(an, method, target, [layer])[layer]
    if small_model and method != "occlusion" or state.has_attribution(an, method, target, layer):
        return state.get_attribution(ctx, an, method, target, layer)
    return None


def png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def show_map() -> tuple[backend.Map | None, object]:
    """The chosen map beside the input, with downloads; returns the map and the slot for trust scores."""
    cam = get_map(method, layer)
    if cam is None:
        st.info(f"{backend.method_label(method)} re-runs the model many times; on this model that takes a while.")
        if st.button(f"Compute {backend.method_label(method)}", key="run_attr", type="primary"):
            bar = st.progress(0.0, text=f"{backend.method_label(method)}…")
            cam = state.get_attribution(ctx, an, method, target, layer,
                                        progress=lambda f: bar.progress(f, text=f"{backend.method_label(method)}: {f:.0%}"))
            bar.empty()
    if cam is None:
        return None, None
    where = short_name(layer) if is_cam or method == "guided-gradcam" else "input"
    over = backend.overlay(an.display, cam.map, alpha=alpha, colormap=cmap)
    m1, m2, m3 = st.columns([1, 1, 1], gap="medium")
    m1.image(an.display, caption="what the model sees", width="stretch", clamp=True)
    m2.image(over, caption=f"{backend.method_label(method)} · {where} · {model.class_names[target]}", width="stretch")
    with m3:
        st.markdown("**How far to trust this map**")
        slot = st.container()
        stem = f"{method}_{short_name(layer) if is_cam else 'input'}_{model.class_names[target]}".replace(" ", "_")
        st.download_button("Overlay (PNG)", png(over), file_name=f"{stem}.png", mime="image/png",
                           key="dl_png", icon=":material/download:")
        raw = io.BytesIO()
        np.save(raw, cam.raw)
        st.download_button("Raw map (.npy)", raw.getvalue(), file_name=f"{stem}_raw.npy",
                           mime="application/octet-stream", key="dl_npy", icon=":material/download:")
        st.caption(f"Raw map {tuple(cam.raw.shape)}, range [{float(cam.raw.min()):.3g}, "
                   f"{float(cam.raw.max()):.3g}]; the overlay is min–max scaled.")
    return cam, slot


def show_methods() -> None:
    cam_methods = list(backend.CAM_METHODS)
    state.sticky("cmp_methods", [m for m in ("gradcam", "gradcam++", "layercam", "eigencam") if m in cam_methods]
                 or cam_methods[:2], methods)
    chosen = st.multiselect("Methods", methods, key="cmp_methods", format_func=backend.method_label)
    state.remember("cmp_methods")
    st.caption(f"All at layer {short_name(layer)}, class {model.class_names[target]}.")
    tiles, captions, missing = [], [], []
    for m in chosen:
        result = get_map(m, layer)
        if result is None:
            missing.append(backend.method_label(m))
            continue
        tiles.append(backend.overlay(an.display, result.map, alpha=alpha, colormap=cmap))
        captions.append(backend.method_label(m))
    if tiles:
        st.image(tiles, caption=captions, width=220)
    if missing:
        st.caption(f"Not computed yet (slow on this model; use the Map tab): {', '.join(missing)}.")


def show_layers() -> None:
    layer_method = method if is_cam else "gradcam"
    state.sticky("cmp_layers", block_outputs + ["features.norm5"], layer_options)
    chosen = st.multiselect("Layers", layer_options, key="cmp_layers", format_func=short_name)
    state.remember("cmp_layers")
    st.caption(f"{backend.method_label(layer_method)} for class {model.class_names[target]}: coarse maps come from "
               "deep layers, finer ones from early blocks. One backward pass serves all of them.")
    if chosen:
        maps = state.get_cams(an, layer_method, target, chosen)
        st.image([backend.overlay(an.display, maps[name].map, alpha=alpha, colormap=cmap) for name in chosen],
                 caption=[f"{short_name(name)} ({maps[name].raw.shape[-2]}×{maps[name].raw.shape[-1]})"
                          for name in chosen], width=220)


# Lazy tabs: only the open one runs (each overlay costs a colour map and an image encoding).
TABS = ["Map", "Across methods", "Across layers"]
tab_map, tab_methods, tab_layers = st.tabs(TABS, key="att_tab", on_change="rerun",
                                           default=state.kept("att_tab", TABS[0]))
state.remember("att_tab")
cam, trust_slot = None, None
if tab_map.open:
    with tab_map:
        cam, trust_slot = show_map()
if tab_methods.open:
    with tab_methods:
        show_methods()
if tab_layers.open:
    with tab_layers:
        show_layers()


# The checks re-run the model dozens of times: they come last, so that everything above is already
# on screen while they run, and fill the slot left for them beside the map.
if cam is not None and trust_slot is not None:
    with trust_slot:
        trust = state.peek_trust(an, method, target, layer)
        if trust is None and (small_model or st.button("Run the checks", key="run_trust",
                                                        help="Randomise the model from the head down and "
                                                             "recompute; delete/insert pixels by saliency.")):
            trust = state.get_trust(ctx, an, method, target, layer, cam.map)
        if trust is not None:
            sanity, curves = trust["sanity"], trust["curves"]
            if sanity is not None:
                rho = float(sanity.rank_correlation)
                st.metric("Randomisation rank correlation", f"{rho:.2f}",
                          "passes (< 0.3)" if abs(rho) < 0.3 else "suspicious (≥ 0.3)",
                          delta_color="normal" if abs(rho) < 0.3 else "inverse",
                          help="Spearman correlation between this map and the map of a copy re-initialised from "
                               "the head down to this layer (Adebayo et al. 2018). A map that survives the "
                               "destruction of the weights does not explain the model.")
            elif not is_cam:
                st.caption("The randomisation check applies to layer maps (Grad-CAM family).")
            if curves is not None:
                d1, d2 = st.columns(2)
                d1.metric("Deletion AUC", f"{curves.deletion_auc:.3f}", help="Probability as the most salient "
                          "pixels are set to the dataset mean (zero input); lower is better.")
                d2.metric("Insertion AUC", f"{curves.insertion_auc:.3f}", help="Probability as they are put "
                          "back into a blurred image; higher is better.")
                st.plotly_chart(figures.deletion_insertion_curves(curves), key="curves",
                                config={"displayModeBar": False})
            if sanity is None and curves is None:
                st.caption("Trust scores need densenet.explain.")
