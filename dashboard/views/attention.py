"""Attention: what the model predicts, and where it looks, by several methods and at several layers.

Every method, label, caption and help text comes from the registry (``densenet.explain.METHODS``).
"""

from __future__ import annotations

import streamlit as st

from dashboard import figures, page, results, session
from dashboard.analysis import plural, short_name
from dashboard.sources import default_cam_layer
from densenet import dicom_export, explain, geometry, labels

ctx, model, an = page.with_image("Attention")
topo = ctx.topology
if not ctx.spec.trained:
    st.warning("This model has fresh random weights: the maps below show the mechanics, not what a trained "
               "model looks at. Pick the demo model, ImageNet weights or your checkpoint in the sidebar.")

# --- predictions ------------------------------------------------------------------------------------
top1 = an.predictions[0]
kind = "sigmoid" if an.multilabel else "softmax"
findings = labels.findings(an.trace.probabilities[0], labels.outputs(model)) if an.multilabel else []
left, right = st.columns([1, 2], gap="large")
with left:
    if an.multilabel:
        positive = [f for f in findings if f.positive]
        st.metric("Findings above threshold", f"{len(positive)} of {len(findings)}",
                  ", ".join(f.name for f in positive[:3]) + (" …" if len(positive) > 3 else "") or "none",
                  delta_color="off", delta_arrow="off", help="One sigmoid per finding; each has its own threshold "
                  "(the checkpoint's, else 0.5).")
        st.metric("Prediction", top1.name, f"p = {top1.probability:.1%} ({kind})", delta_color="off",
                  delta_arrow="off")
        page.chart(figures.findings_bar(findings), key="topk")
    else:
        st.metric("Prediction", top1.name, f"p = {top1.probability:.1%} ({kind})", delta_color="off",
                  delta_arrow="off")
        page.chart(figures.topk_bar(an.predictions, multilabel=an.multilabel), key="topk")
    with st.expander("Is this image like the training data?"):
        user_threshold = session.number(st, "Out-of-distribution threshold", f"ood.{ctx.key}", 0.0, min_value=0.0,
                                        max_value=100.0, step=0.05,
                                        help="0 uses the model's own (its calibration, else the default).")
    ood = results.get_ood(ctx, an, user_threshold or None)
    for warning in ood.warnings:
        st.warning(warning[0].upper() + warning[1:] + ".", icon=":material/report:")
    st.caption(f"Out-of-distribution score {ood.score:.2f} (threshold {ood.threshold:.2f}, "
               f"{ood.threshold_source}): early-layer statistics against the BatchNorm statistics of training.")

# --- settings -------------------------------------------------------------------------------------------
probs = an.trace.probabilities[0].cpu()
classes = list(range(len(model.class_names)))
methods = [m.name for m in explain.methods()]
layer_options = [t for t in model.tap_names if not t.startswith("features.conv0")]
block_outputs = [b.name for b in topo.blocks]
small_model = topo.total_macs < 3e8  # the demo model and CIFAR nets: a few seconds at most, so run at once

if session.kept("_target_for") != an.key:  # a new image or model: explain its top prediction
    session.choose("target", top1.index)
    session.keep("_target_for", an.key)

with right:
    s1, s2, s3 = st.columns(3)
    target = session.selectbox(s1, "Class to explain", classes, "target", top1.index,
                               format_func=lambda i: model.class_names[i],
                               help="The raw logit of this class is explained. Default: the top prediction.")
    s1.caption(f"p = {float(probs[target]):.1%} ({kind})")
    method = session.selectbox(s2, "Method", methods, "method", methods[0],
                               format_func=lambda name: explain.method(name).label,
                               help="Layer CAMs come from the page's one trace (one backward pass for every "
                                    "layer); the others re-run the model.")
    record = explain.method(method)
    layer = session.selectbox(s3, "Layer", layer_options, "cam_layer", default_cam_layer(model),
                              format_func=short_name, disabled=not record.needs_layer,
                              help="Methods in input space do not use a layer.")
    preview = bool(record.preview_top) and session.toggle(
        st, f"Fast preview: score only the {record.preview_top} most active channels", f"preview.{method}", False,
        help="Close to the full map at a fraction of the time (its measured error is in BENCHMARKS.md).")
    options = {"top": record.preview_top} if preview else {}
    o1, o2 = st.columns([2, 1])
    alpha = session.slider(o1, "Overlay opacity", 0.0, 1.0, "alpha", 0.5, 0.05)
    cmap = session.selectbox(o2, "Colour map", ["jet", "inferno", "viridis", "turbo"], "cam_cmap", "jet")
    st.caption(f"{record.label}: {record.description}")

if model.config.null_class and target == 0:
    st.info(f"“{model.class_names[0]}” is this model's null class, a fixed zero logit: no pixel changes it, so its "
            "gradient maps are empty by construction. The other classes' logits are evidence against it.")


def runs_at_once(name: str) -> bool:
    """Fast methods always; slow ones at once only on a small model, and never a perturbation scan."""
    r = explain.method(name)
    return not r.slow or (small_model and r.kind is not explain.Kind.PERTURBATION)


def map_for(name: str, at: str, opts: dict | None = None) -> explain.Explanation:
    key = results.map_layers(name, [at])[0]
    return results.get_maps(ctx, an, name, target, [at], opts)[key]


def peek_map(name: str, at: str, opts: dict | None = None) -> explain.Explanation | None:
    return results.peek_map(an, name, target, results.map_layers(name, [at])[0], opts)


def on_demand(label: str, button_key: str, note: str) -> bool:
    """A note and a button in one slot; True (and the slot emptied) once clicked."""
    slot = st.empty()
    with slot.container():
        st.info(note)
        clicked = st.button(label, key=button_key, type="primary")
        if st.session_state.get(f"{button_key}_cancel"):
            st.caption("Cancelled: nothing was kept. Press the button to start again.")
    if clicked:
        slot.empty()
        st.button("Cancel", key=f"{button_key}_cancel", icon=":material/stop_circle:",
                  help="Stops after the current step; nothing is kept.")
    return clicked


def show_map() -> tuple[explain.Explanation | None, object]:
    """The chosen map beside the input, with downloads; returns the map and the slot for trust scores."""
    cam = peek_map(method, layer, options)
    if cam is None and runs_at_once(method):
        cam = map_for(method, layer, options)
    if cam is None:
        estimate = results.get_estimate(ctx, an, method, layer, options)
        note = f"{record.label} re-runs the model many times; on this model that takes a while" + (
            f" ({estimate})." if estimate else ".")
        if on_demand(f"Compute {record.label}", "run_attr", note):
            cam = map_for(method, layer, options)
    if cam is None:
        return None, None
    where = short_name(layer) if record.needs_layer else "input"
    full = results.full_overlay(ctx, an, cam, alpha, cmap)  # on the original image, at its resolution
    h, w = ctx.image.pixels.shape[:2]
    m1, m2, m3 = st.columns([1, 1, 1], gap="medium")
    m1.image(geometry.for_display(geometry.outlined(ctx.image.pixels, model), 1200), width="stretch",
             caption=f"what the model sees: {model.preprocessing.geometry} of the {w}×{h} original (outlined)")
    m2.image(geometry.for_display(full, 1600), caption=f"{record.label} · {where} · {model.class_names[target]}",
             width="stretch")
    with m3:
        st.markdown("**How far to trust this map**")
        slot = st.container()
        stem = f"{method}_{where}_{model.class_names[target]}".replace(" ", "_")
        st.download_button(f"Overlay (PNG, {w}×{h})", lambda: geometry.png_bytes(full), file_name=f"{stem}.png",
                           mime="image/png", key="dl_png", icon=":material/download:")
        downloads = geometry.map_downloads(cam.raw, h, w, model)
        st.download_button(f"Layer map (.npy, {cam.raw.shape[1]}×{cam.raw.shape[0]})", downloads["layer"],
                           file_name=f"{stem}_raw.npy", mime="application/octet-stream", key="dl_npy",
                           icon=":material/download:")
        st.download_button(f"Full-size map (.npy, {w}×{h})", downloads["original"],
                           file_name=f"{stem}_raw_{w}x{h}.npy", mime="application/octet-stream", key="dl_npy_full",
                           icon=":material/download:", help="The raw map carried back onto the original image; NaN where the model saw nothing "
                                "(a crop's sides).")
        if ctx.image.dicom is not None:
            note = dicom_export.explanation_note(record.label, layer=where if record.needs_layer else None,
                                                 target=model.class_names[target], model=ctx.spec.label)
            st.download_button("Export to DICOM (Secondary Capture)",
                               lambda: dicom_export.secondary_capture(full, ctx.image.read(), note=note),
                               file_name=f"{stem}.dcm", mime="application/dicom", key="dl_dicom",
                               icon=":material/download:", help="A new series in the same study: the overlay "
                               "burned in, marked as derived, for a PACS viewer.")
        st.caption(f"Raw map {tuple(cam.raw.shape)}, range [{float(cam.raw.min()):.3g}, "
                   f"{float(cam.raw.max()):.3g}]; the overlay is min–max scaled.")
        st.caption(f"Overlay: {cmap} at opacity {alpha:.2f}.")
    return cam, slot


def show_methods() -> None:
    featured = [m.name for m in explain.methods() if m.featured]
    chosen = session.multiselect(st, "Methods", methods, "cmp_methods", featured,
                                 format_func=lambda name: explain.method(name).label)
    st.caption(f"All at layer {short_name(layer)}, for “{model.class_names[target]}”.")
    tiles, captions, missing = [], [], []
    for name in chosen:
        result = peek_map(name, layer) or (map_for(name, layer) if runs_at_once(name) else None)
        if result is None:
            missing.append(explain.method(name).label)
            continue
        tiles.append(explain.overlay(an.display, result.map, alpha=alpha, colormap=cmap))
        captions.append(explain.method(name).label)
    if tiles:
        st.image(tiles, caption=captions, width=220)
    if missing:
        st.caption(f"Not computed yet (slow on this model; use the Map tab): {', '.join(missing)}.")


def show_layers() -> None:
    layer_method = method if record.uses_trace else explain.methods(kind=explain.Kind.GRADIENT_CAM)[0].name
    chosen = session.multiselect(st, "Layers", layer_options, "cmp_layers", block_outputs + ["features.norm5"],
                                 format_func=short_name)
    st.caption(f"{explain.method(layer_method).label} for “{model.class_names[target]}”: coarse maps come from "
               "deep layers, finer ones from early blocks. One backward pass serves all of them.")
    if chosen:
        maps = results.get_maps(ctx, an, layer_method, target, chosen)
        st.image([explain.overlay(an.display, maps[name].map, alpha=alpha, colormap=cmap) for name in chosen],
                 caption=[f"{short_name(name)} ({maps[name].raw.shape[-2]}×{maps[name].raw.shape[-1]})"
                          for name in chosen], width=220)


def show_findings() -> None:
    """One map per finding (multi-label models): the positive ones, else the most probable."""
    layer_method = method if record.uses_trace else explain.methods(kind=explain.Kind.GRADIENT_CAM)[0].name
    order = sorted(findings, key=lambda f: -f.probability)
    shown = [f for f in order if f.positive] or order[:4]
    st.caption(f"{explain.method(layer_method).label} at {short_name(layer)}, one map per finding "
               f"({plural(len(shown), 'finding')}: {'positive' if any(f.positive for f in order) else 'most probable'}"
               "); each is a backward pass through the page's one trace.")
    tiles = []
    for f in shown:
        m = results.get_maps(ctx, an, layer_method, f.index, [layer])[layer]
        tiles.append(explain.overlay(an.display, m.map, alpha=alpha, colormap=cmap))
    st.image(tiles, caption=[f"{f.name} · p = {f.probability:.0%}" for f in shown], width=220)


def show_trust(cam: explain.Explanation) -> None:
    trust = results.peek_trust(an, method, target, layer)
    if trust is None and (small_model or on_demand("Run the checks", "run_trust",
                                                   "Randomise the model from the head down and recompute; "
                                                   "delete/insert pixels by saliency.")):
        trust = results.get_trust(ctx, an, method, target, layer, cam)
    if trust is None:
        return
    if trust.sanity is not None:
        rho = float(trust.sanity.rank_correlation)
        st.metric("Randomisation rank correlation", f"{rho:.2f}",
                  "passes (< 0.3)" if abs(rho) < 0.3 else "suspicious (≥ 0.3)",
                  delta_color="normal" if abs(rho) < 0.3 else "inverse",
                  help="Spearman correlation between this map and the map of a copy re-initialised from "
                       "the head down to this layer (Adebayo et al. 2018). A map that survives the "
                       "destruction of the weights does not explain the model.")
    else:
        st.caption("The randomisation check applies to layer CAMs read from the trace and to the fast methods.")
    d1, d2 = st.columns(2)
    d1.metric("Deletion AUC", f"{trust.curves.deletion_auc:.3f}", help="Probability as the most salient "
              "pixels are set to the dataset mean (zero input); lower is better.")
    d2.metric("Insertion AUC", f"{trust.curves.insertion_auc:.3f}", help="Probability as they are put "
              "back into a blurred image; higher is better.")
    page.chart(figures.deletion_insertion_curves(trust.curves), key="curves")


# Lazy tabs: only the open one runs (each overlay costs a colour map and an image encoding).
TABS = ["Map", "Across methods", "Across layers"] + (["Across findings"] if an.multilabel else [])
if "att_tab" not in st.session_state:  # not drawn in the last run (another page): reopen the tab in use
    st.session_state["att_tab"] = session.kept("att_tab", TABS[0])
if st.session_state["att_tab"] not in TABS:
    st.session_state["att_tab"] = TABS[0]
tab_map, tab_methods, tab_layers, *tab_findings = st.tabs(TABS, key="att_tab", on_change="rerun")
session.keep("att_tab", st.session_state["att_tab"])
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
if tab_findings and tab_findings[0].open:
    with tab_findings[0]:
        show_findings()

# The checks re-run the model dozens of times: they come last, so that everything above is already
# on screen while they run, and fill the slot left for them beside the map.
if cam is not None and trust_slot is not None:
    with trust_slot:
        show_trust(cam)
