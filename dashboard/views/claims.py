"""Claims, tested: the lesson's five claims about DenseNet, each an experiment run here on click.

Each section reads its settings, runs one ``densenet.classroom`` function in a long job (progress
bar, a Stop button, other sessions' interactive work first) and draws its result, memoised per
session under the settings (``lesson.memo_name``), so a rerun or a trip to another page shows it
again and the lesson export can include it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

import densenet
import densenet.demo
from dashboard import classroom_figures as cf
from dashboard import chain_section, figures, lesson, page, runtime, session
from densenet import classroom

ctx = page.start("Claims, tested")
cfg = ctx.config

# Quick: tiny settings for a check that the page works (and the tests); classroom: the defaults.
QUICK_NET = densenet.DenseNetConfig(growth_rate=4, block_config=(2, 2), num_init_features=8, bn_size=4,
                                    stem="cifar", in_channels=1, num_classes=4)
SCALES = {"classroom": "classroom (≈ 10–45 s each)", "quick": "quick (seconds, tiny settings)"}
SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "classroom": {"params": {}, "gradients": {}, "memory": {}, "reuse": {}, "learn": {}},
    "quick": {
        "params": {"families": {"DenseNet": ("densenet121", "densenet169"), "ResNet": ("resnet18", "resnet34")}},
        "gradients": {"config": QUICK_NET, "steps": 2, "batch_size": 2},
        "memory": {"depths": (2, 4, 8), "growth_rate": 4, "in_channels": 8, "batch_size": 2, "image_size": 8},
        "reuse": {"steps": 2, "batch_size": 2, "image_size": 32},
        "learn": {"steps": 4, "batch_size": 2, "image_size": 32, "every": 2},
    },
}
#: Wall time at the defaults on this machine, 2 threads, load 3.3-3.9 (other work sharing the 2 cores), 2026-12-01:
#: clicked in the app (demo model) 7.7, 38, 8.8, 30, 43 s; `python -m densenet.classroom.timing` 17.7 + 1.9
#: (first run, imports included), 40, 11, 36, 42 s.
MEASURED_S = {"params": 10, "gradients": 40, "memory": 10, "reuse": 35, "learn": 45}

top = st.columns([3, 2], vertical_alignment="bottom")
top[0].markdown("Every DenseNet lesson makes the same five claims. Each section below tests one **on this "
                "machine**: press *Run*, watch the bar, read what was measured, whatever it shows.")
scale = session.radio(top[1], "Experiment size", list(SCALES), "claims.scale", "classroom",
                      format_func=SCALES.get, horizontal=True,
                      help="Quick runs tiny networks for a few steps: it checks the page, not the claims.")


def duration(claim: str) -> str:
    if scale == "quick":
        return "a few seconds"
    return f"≈ {MEASURED_S[claim]} s on this machine (2 cores)"


def experiment(claim: str, key: Any, compute: Callable[[Callable[[float], None]], Any], *,
               label: str, setup: Callable[[], None] | None = None) -> Any | None:
    """The Run button and the result: memoised under ``key``; ``None`` until run (or when stopped).

    ``setup`` runs right under the buttons, before any work (e.g. to place live-updated slots there).
    """
    name = lesson.memo_name(claim)
    result = session.peek(name, key)
    row = st.columns([1, 4], vertical_alignment="center")
    run = row[0].button("Run again" if result is not None else "Run", key=f"claims.run.{claim}",
                        icon=":material/play_arrow:", type="primary" if result is None else "secondary")
    if st.session_state.get(f"claims.stop.{claim}"):
        row[1].caption(":material/stop_circle: Stopped; " + ("the last complete run is shown. " if result is not None
                                                              else "nothing was kept. ") + duration(claim))
    else:
        row[1].caption(f"{duration(claim)}" + (" · shown from this session's run" if result is not None else ""))
    if run:
        stop = st.empty()
        stop.button("Stop", key=f"claims.stop.{claim}", icon=":material/stop:",
                    help="Stops at the next step; the last complete run stays.")
        if setup is not None:
            setup()
        with runtime.job(label, long=True, bar=True) as job:
            fresh = compute(job.progress)  # "Run again" is a fresh run, not the memo
        session.forget(name)  # the shown result goes only once the new one is complete
        result = session.memo(name, key, lambda: fresh, max_entries=2)
        stop.empty()
        lesson.record(claim, key)
        st.rerun()  # the button now says "Run again"
    elif setup is not None:
        setup()
    if result is not None:
        lesson.record(claim, key)
    return result


def claim_header(claim: str, number: int) -> None:
    heading, words = lesson.CLAIMS[claim]
    st.subheader(f"{number}. {heading}")
    st.markdown(f"> *“{words}”* (the lesson)")


# --- 1. fewer parameters ----------------------------------------------------------------------------------
claim_header("params", 1)
st.caption("Parameters against the ImageNet top-1 accuracy torchvision publishes for its DenseNets and ResNets "
           "(the paper's Fig. 3 in spirit), and the current model beside a ResNet of exactly its depth built from "
           "torchvision's blocks. Parameters are counted here; nothing is downloaded.")
settings = SETTINGS[scale]["params"]


def fewer_parameters(progress: Callable[[float], None]) -> lesson.FewerParameters:
    published = classroom.published_accuracy(progress=progress, **settings)
    try:
        same, note = classroom.same_depth(cfg, input_size=ctx.input_size), ""
    except ValueError as e:
        same, note = None, f"No ResNet of this depth: {e}"
    return lesson.FewerParameters(published, same, ctx.spec.label, note)


params = experiment("params", (scale, repr(settings), cfg.to_json(), ctx.input_size), fewer_parameters,
                    label="Counting parameters")
if params is not None:
    left, right = st.columns([3, 2], gap="large")
    with left:
        page.chart(cf.params_vs_accuracy(params.published), key="claims_params")
    with right:
        if params.same_depth is not None:
            page.chart(cf.same_depth_bars(params.same_depth), key="claims_same_depth")
            sd = params.same_depth
            st.caption(f"{params.config_label[:1].upper() + params.config_label[1:]}, depth {sd.depth}: {sd.densenet_params:,} parameters; ResNet of depth "
                       f"{sd.depth} ({sd.resnet_block} blocks {sd.resnet_layout}, width {sd.resnet_width}): "
                       f"{sd.resnet_params:,}.")
        else:
            st.info(params.note)
    st.caption(params.published.source)

# --- 2. vanishing gradients -------------------------------------------------------------------------------
claim_header("gradients", 2)
settings = SETTINGS[scale]["gradients"]
net = settings.get("config") or classroom.gradients.default_config()
st.caption(f"A plain CNN (no shortcuts), a ResNet and a DenseNet, all of depth {net.depth} and about the same size, "
           "on generated demo images: the gradient of the loss at every unit's output, from the input side to the "
           "output side, at initialisation and after training.")
grads = experiment("gradients", (scale, repr(settings)), lambda p: classroom.gradient_experiment(progress=p, **settings),
                   label="Measuring gradients")
if grads is not None:
    page.chart(cf.gradient_profiles(grads), key="claims_gradients")
    st.markdown("**What it shows** (measured now, not a fixed claim):\n" +
                "\n".join(f"- {line}" for line in grads.findings))
    st.caption(grads.measured)

# --- 3. memory --------------------------------------------------------------------------------------------
claim_header("memory", 3)
settings = SETTINGS[scale]["memory"]
st.caption("The peak memory of one training step (forward and backward) of a dense block of L layers: naive "
           "concatenation, the memory-efficient mode (Pleiss et al. 2017: recompute the concatenation in the "
           "backward pass), and a ResNet stack of about the same parameters. Log-log axes: a slope of 2 is quadratic.")
memory = experiment("memory", (scale, repr(settings)), lambda p: classroom.memory_experiment(progress=p, **settings),
                    label="Measuring memory")
if memory is not None:
    page.chart(cf.memory_curves(memory), key="claims_memory")
    st.markdown("**Fitted exponents** (peak ∝ L^p):\n" + "\n".join(
        f"- {c.label}: p = **{c.exponent:.2f}** overall, {c.tail_exponent:.2f} between the two deepest"
        for c in memory.curves))
    st.caption(memory.measured)

# --- 4. feature reuse -------------------------------------------------------------------------------------
claim_header("reuse", 4)
settings = SETTINGS[scale]["reuse"]
st.caption("The paper's Fig. 5: for each layer (column), the mean absolute weight it gives the maps of each earlier "
           "layer (row). A DenseNet trained here for a few steps beside the bundled demo model (trained longer). "
           "Each column is divided by its maximum.")
reuse = experiment("reuse", (scale, repr(settings)),
                   lambda p: classroom.reuse_experiment(progress=p, reference=densenet.demo.load, **settings),
                   label="Training and mapping feature reuse")
if reuse is not None:
    b = session.selectbox(st, "Block", list(range(len(reuse.live))), "claims.reuse_block", 0,
                          format_func=lambda i: f"block {i + 1}") if len(reuse.live) > 1 else 0
    left, right = st.columns(2, gap="large")
    with left:
        page.chart(figures.feature_reuse_heatmap(reuse.live[b]).update_layout(
            title_text=f"Trained here: {reuse.live_steps} steps, block {b + 1}"), key="claims_reuse_live")
        st.caption(f"Running loss {reuse.live_loss:.3f}, accuracy {reuse.live_accuracy:.0%} at the end of training.")
    with right:
        if reuse.demo is not None and b < len(reuse.demo):
            page.chart(figures.feature_reuse_heatmap(reuse.demo[b]).update_layout(
                title_text=f"Bundled demo model, block {b + 1}"), key="claims_reuse_demo")
        else:
            st.info(f"No demo model to compare with: {reuse.demo_note}")

# --- 5. watch it learn ------------------------------------------------------------------------------------
claim_header("learn", 5)
settings = SETTINGS[scale]["learn"]
st.caption("A small DenseNet and a ResNet of about the same parameter count train side by side on the same "
           "generated images; the curves, the throughput and each network's Grad-CAM of one fixed image refresh "
           "as they learn.")
slots: dict[str, Any] = {}


def place_slots() -> None:
    slots.update(curves=st.empty(), speed=st.empty(), cams=st.empty())


def draw_learning(snap: classroom.LearnSnapshot, phase: str = "live") -> None:
    with slots["curves"].container():  # a key per drawing: one run redraws the slot many times
        page.chart(cf.learning_curves(snap), key=f"claims_learn_{phase}_{snap.step}")
    with slots["speed"].container():
        cols = st.columns(2)
        for col, n in zip(cols, (snap.densenet, snap.resnet)):
            col.metric(f"{n.name}: images/s", f"{n.images_per_second:.0f}",
                       help=f"{n.params:,} parameters; training steps only (forward, backward, update).")
    with slots["cams"].container():
        cols = st.columns(3)
        cols[0].image(cf.cam_overlay(snap.image, None), width=180, caption=f"the image: {snap.class_name}")
        for col, n in zip(cols[1:], (snap.densenet, snap.resnet)):
            col.image(cf.cam_overlay(snap.image, n.cam), width=180,
                      caption=f"{n.name} Grad-CAM, step {snap.step}")


def train(progress: Callable[[float], None]) -> classroom.LearnSnapshot:
    final = None
    for snap in classroom.learn(progress=progress, **settings):
        draw_learning(snap)
        final = snap
    assert final is not None
    return final


learned = experiment("learn", (scale, repr(settings)), train, label="Training both networks", setup=place_slots)
if learned is not None:
    draw_learning(learned, "final")
    dn, rn = learned.densenet, learned.resnet
    # Say what this run shows, measured: a short run on two cores may be only the start of training.
    tail = max(1, min(20, len(dn.accuracy)))
    d_acc = sum(dn.accuracy[-tail:]) / tail if dn.accuracy else 0.0
    r_acc = sum(rn.accuracy[-tail:]) / tail if rn.accuracy else 0.0
    if max(d_acc, r_acc) < 0.6:
        st.caption(f"What this run shows: after {learned.step} steps the running accuracy is {d_acc:.0%} for the "
                   f"DenseNet and {r_acc:.0%} for the ResNet (chance: 25%). That is the start of training, not a "
                   "trained network: the loss falls, the accuracy has barely left chance and the Grad-CAMs stay "
                   "diffuse. The bundled demo model, the same DenseNet trained for about 19 minutes, shows where "
                   "it ends: 99% on films it never saw, its Grad-CAM on the lesion (Attention page).")
    else:
        st.caption(f"What this run shows: after {learned.step} steps the running accuracy is {d_acc:.0%} for the "
                   f"DenseNet and {r_acc:.0%} for the ResNet (chance: 25%); compare the Grad-CAMs at the first "
                   "and the last step.")
    if rn.images_per_second:
        st.caption(f"After {learned.step} steps the DenseNet trained at {dn.images_per_second / rn.images_per_second:.2f}"
                   f"× the ResNet's speed ({dn.images_per_second:.0f} against {rn.images_per_second:.0f} images/s), "
                   "measured in their own training steps, alternated so that both felt the same load.")

# --- 6. cutting the dense links (classroom experiment) ----------------------------------------------------
chain_section.render(6, scale)

# --- the lesson -------------------------------------------------------------------------------------------
st.subheader("Take it home")
ran = lesson.session_claims()
st.caption("One HTML file for students: this model's architecture, a dense block step by step and the "
           f"{len(ran)} claim{'' if len(ran) == 1 else 's'} run in this session"
           f"{' (' + ', '.join(lesson.CLAIMS[c][0] for c in ran) + ')' if ran else ''}. "
           "It opens in any browser with no internet.")
block_index = min(max(int(session.kept("block", 1) or 1), 1), len(ctx.topology.blocks)) - 1
st.download_button("Download the lesson (HTML)", lambda: lesson.build(
    ctx.topology, title=ctx.spec.label, claims=ran, block_index=block_index).encode("utf-8"),
    file_name="densenet-lesson.html", mime="text/html", key="claims.lesson", icon=":material/download:")
