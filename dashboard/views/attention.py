"""Attention: what the model predicts, and where it looks, by several methods and at several layers.

Every method, label, caption and help text comes from the registry (``densenet.explain.METHODS``).
"""

from __future__ import annotations

import os

import streamlit as st

from dashboard import analysis, figures, navigation, page, results, session
from dashboard.analysis import plural, short_name
from densenet import dicom_export, explain, labels, render
from densenet.topology import default_cam_layer

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

# --- settings -------------------------------------------------------------------------------------------
probs = an.trace.probabilities[0].cpu()
classes = list(range(len(model.class_names)))
methods = [m.name for m in explain.methods()]
layer_options = [t for t in model.tap_names if not t.startswith("features.conv0")]
small_model = topo.total_macs < 3e8  # the demo model and CIFAR nets: a few seconds at most, so run at once

# This page's controls, named once: the widgets below and a request from another page both use these.
METHOD, LAYER, TARGET, TARGET_FOR = "method", "cam_layer", "target", "_target_for"
request = navigation.take_attention_request()  # "Open on the Attention page" from another page
if request is not None:
    session.choose(METHOD, request.method)
    if request.layer is not None:
        session.choose(LAYER, request.layer)
        session.keep("_cam_layer_for", ctx.key)  # chosen for this model: kept below, not reset to its default
    if ctx.image.name == request.image.name:  # the sidebar shows the request's image (no upload took its place)
        session.choose(TARGET, request.target)
        session.keep(TARGET_FOR, an.key)
if session.kept(TARGET_FOR) != an.key:  # a new image or model: explain its top prediction
    session.choose(TARGET, top1.index)
    session.keep(TARGET_FOR, an.key)

with right:
    s1, s2, s3 = st.columns(3)
    target = session.selectbox(s1, "Class to explain", classes, TARGET, top1.index,
                               format_func=lambda i: model.class_names[i],
                               help="The raw logit of this class is explained. Default: the top prediction.")
    s1.caption(f"p = {float(probs[target]):.1%} ({kind})")
    method = session.selectbox(s2, "Method", methods, METHOD, methods[0],
                               format_func=lambda name: explain.method(name).label,
                               help="Layer CAMs come from the page's one trace (one backward pass for every "
                                    "layer); the others re-run the model.")
    record = explain.method(method)
    if session.kept("_cam_layer_for") != ctx.key:  # another model: its own CAM layer, not the last model's choice
        session.choose(LAYER, default_cam_layer(model))
        session.keep("_cam_layer_for", ctx.key)
    layer = session.selectbox(s3, "Layer", layer_options, LAYER, default_cam_layer(model),
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
    # Here, under the settings, not under the prediction: that column then ends early enough for the map to
    # show above the fold at 1280x720 (issue 21).
    ood_box = st.expander("Is this image like the training data?")
    with ood_box:
        user_threshold = session.number(st, "Out-of-distribution threshold", f"ood.{ctx.key}", 0.0, min_value=0.0,
                                        max_value=100.0, step=0.05,
                                        help="0 uses the model's own (its calibration, else the default).")
    ood = results.get_ood(ctx, an, user_threshold or None)
    for warning in ood.warnings:
        st.warning(warning[0].upper() + warning[1:] + ".", icon=":material/report:")
    ood_box.caption(f"Out-of-distribution score {ood.score:.2f} (threshold {ood.threshold:.2f}, "
                    f"{ood.threshold_source}): early-layer statistics against the BatchNorm statistics of training.")

if model.config.null_class and target == 0:
    st.info(f"“{model.class_names[0]}” is this model's null class, a fixed zero logit: no pixel changes it, so its "
            "gradient maps are empty by construction. The other classes' logits are evidence against it.")


# A slow method measured to finish within this runs without a Compute button (an environment variable
# lets a test or a very slow machine choose another bound).
AT_ONCE_S = float(os.environ.get("DENSENET_AT_ONCE_S", "2.0"))


def runs_at_once(name: str, at: str | None = None, *, measure: bool = True) -> bool:
    """Fast methods always; slow ones on a small model (not a perturbation scan), or when one timed batch says
    they finish within :data:`AT_ONCE_S` here (Ablation-CAM at norm5: ≈ 0.1 s). ``measure=False``: only an
    estimate already taken counts (the comparison tab does not time every slow method it lists)."""
    r = explain.method(name)
    if not r.slow or (small_model and r.kind is not explain.Kind.PERTURBATION):
        return True
    opts = options if name == method else None
    estimate = (results.get_time_estimate(ctx, an, name, at or layer, opts) if measure
                else results.peek_time_estimate(an, name, at or layer, opts))
    return estimate is not None and estimate.seconds <= AT_ONCE_S


def map_for(name: str, at: str, opts: dict | None = None) -> explain.Explanation:
    key = results.map_layers(name, [at])[0]
    return results.get_maps(ctx, an, name, target, [at], opts)[key]


def peek_map(name: str, at: str, opts: dict | None = None) -> explain.Explanation | None:
    return results.peek_map(an, name, target, results.map_layers(name, [at])[0], opts)


cancel_slots: list = []  # the Cancel buttons of work started in this run, removed by finished()


def on_demand(label: str, button_key: str, note: str) -> bool:
    """A note and a button in one slot; once clicked, True and the slot holds a Cancel button until
    :func:`finished` (or the next run)."""
    slot = st.empty()
    with slot.container():
        st.info(note)
        clicked = st.button(label, key=button_key, type="primary")
        if st.session_state.get(f"{button_key}_cancel"):
            st.caption("Cancelled: nothing was kept. Press the button to start again.")
    if clicked:
        slot.empty()
        slot.button("Cancel", key=f"{button_key}_cancel", icon=":material/stop_circle:",
                    help="Stops after the current step; nothing is kept.")
        cancel_slots.append(slot)
    return clicked


def finished() -> None:
    """The work started by :func:`on_demand` is done: no stale Cancel button above its result."""
    while cancel_slots:
        cancel_slots.pop().empty()


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
            finished()
    if cam is None:
        return None, None
    where = short_name(layer) if record.needs_layer else "input"
    full = results.full_overlay(ctx, an, cam, alpha, cmap)  # on the original image, at its resolution
    h, w = ctx.image.pixels.shape[:2]
    m1, m2, m3 = st.columns([1, 1, 1], gap="medium")
    m1.image(render.for_display(render.outlined(ctx.image.pixels, model), 1200), width="stretch",
             caption=f"what the model sees: {model.preprocessing.geometry} of the {w}×{h} original (outlined)")
    m2.image(render.for_display(full, 1600), caption=f"{record.label} · {where} · {model.class_names[target]}",
             width="stretch")
    with m3:
        st.markdown("**How far to trust this map**")
        # The checks re-run the model dozens of times (~2 s on the demo model): only while asked for, so a
        # sample or method switch stays quick.
        checking = session.toggle(st, "Check this map", "trust_open", False,
                                  help="Randomise the model from the head down and recompute the map; delete and "
                                       "insert pixels by its ranking. Stays on until you switch it off.")
        slot = st.container() if checking else None
        stem = f"{method}_{where}_{model.class_names[target]}".replace(" ", "_")
        st.download_button(f"Overlay (PNG, {w}×{h})", lambda: render.png_bytes(full), file_name=f"{stem}.png",
                           mime="image/png", key="dl_png", icon=":material/download:")
        downloads = render.map_downloads(cam.raw, h, w, model)
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
        result = peek_map(name, layer) or (map_for(name, layer) if runs_at_once(name, layer, measure=False) else None)
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
    chosen = session.multiselect(st, "Layers", layer_options, "cmp_layers", topo.cam_layers,
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
    st.image(tiles, caption=[f"{f.name} · p = {analysis.percent(f.probability, f.threshold)}" for f in shown], width=220)


def show_trust(cam: explain.Explanation) -> None:
    trust = results.peek_trust(an, method, target, layer)
    if trust is None and (small_model or on_demand("Run the checks", "run_trust",
                                                   "Randomise the model from the head down and recompute; "
                                                   "delete/insert pixels by saliency.")):
        trust = results.get_trust(ctx, an, method, target, layer, cam)
        finished()
    if trust is None:
        return
    if trust.sanity is not None:
        rho = float(trust.sanity.rank_correlation)
        st.metric("Randomisation rank correlation", f"{rho:.2f}",
                  "passes (< 0.3)" if abs(rho) < 0.3 else "suspicious (≥ 0.3)",
                  delta_color="normal" if abs(rho) < 0.3 else "inverse", delta_arrow="off",
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
