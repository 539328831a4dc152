"""The Audit page's Shortcuts tab: attention clusters, their hotspots and erasure, members to open.

Layout only: the clusters come from ``densenet.audit`` (``summary.json["shortcuts"]``, or
:func:`densenet.audit.add_shortcuts` on a finished audit when the user asks), pictures from
``densenet.audit.shortcuts_report``; a member opens on the Attention page as a gallery case does
(:func:`dashboard.navigation.open_on_attention` with ``audits.case_request``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

import densenet
from densenet import audit
from densenet.audit.shortcuts_report import cluster_picture, member_thumbnail, ordered
from densenet.images import load_image

from . import audits, navigation, runtime, session

THUMBNAILS = 8


def _picture(key: tuple, draw) -> Any:
    try:
        return session.memo("shortcut_pictures", key, draw, max_entries=96)
    except (OSError, ValueError):
        return None


def _metrics(c: dict[str, Any]) -> None:
    cols = st.columns(5)
    cols[0].metric(f"Films (of {c['of_target']})", c["size"])
    cols[1].metric("Mean probability", f"{c['mean_probability']:.2f}")
    cols[2].metric("Where", c["where"])
    drop = "–" if c["erasure_drop"] is None else f"{c['erasure_drop']:.2f}"
    control = "–" if c["control_drop"] is None else f"{c['control_drop']:.2f}"
    cols[3].metric("Erasure drop", drop)
    cols[4].metric("Control drop", control)


def show(out: str, model: densenet.DenseNet, classes: list[str], same: bool) -> None:
    """Draw the tab for the audit in ``out`` (``same``: it was made with the sidebar's model)."""
    clusters = audit.read_shortcuts(out)
    dataset = session.memo("audit_dataset", (out, tuple(classes)), lambda: audits.dataset_of(out, classes),
                           max_entries=2)
    if clusters is None:
        st.caption("Shortcuts: does the model decide from a corner, the film's border or a marker outside the body "
                   "instead of the lesion? The maps of each class are clustered (spectral clustering, SpRAy); each "
                   "cluster's hotspot, when it lies on the border or off the body, is erased on every member and the "
                   "model run again, against a control region of the same size elsewhere. No boxes are needed.")
        if st.button("Look for shortcuts", key="audit_shortcuts_run", icon=":material/search:",
                     disabled=not same or dataset is None,
                     help="Costs about two forward passes per film whose hotspot is on the border or off the body."):
            try:
                with runtime.job("Looking for shortcuts", long=True, bar=True) as job:
                    audit.add_shortcuts(out, model, dataset, progress=getattr(job, "progress", None))
            except (audit.RunFolderError, OSError, ValueError) as e:
                st.error(f"The shortcut audit could not run: {e}")
            else:
                st.rerun()
        if not same:
            st.info("This audit was made with another model than the sidebar's: choose that model to look for its "
                    "shortcuts.")
        return
    if not clusters:
        st.caption("No rows to cluster.")
        return
    flagged = [c for c in clusters if c["flagged"]]
    if flagged:
        st.warning(f"{len(flagged)} shortcut{'s' if len(flagged) != 1 else ''} flagged among {len(clusters)} clusters.",
                 icon=":material/warning:")
    else:
        st.success(f"No shortcut flagged among {len(clusters)} clusters.", icon=":material/check_circle:")
    st.caption(f"{clusters[0]['method']} at {clusters[0]['layer']}. Red: the cluster's hotspot (the smallest box "
               "holding most of its mean map's energy); cyan: the control region erased for comparison. Flagged: the "
               "hotspot lies on the border band or off the body, and erasing it drops the target's probability by at "
               "least 0.2 and twice the control's drop.")
    paths = {item.image: item.path for item in dataset.items} if dataset is not None else {}
    for k, c in enumerate(ordered(clusters)):
        title = f"{'⚠ ' if c['flagged'] else ''}'{c['target']}': {c['size']} films, {c['location']}"
        with st.expander(title, expanded=c["flagged"]):
            st.markdown(c["sentence"])
            left, right = st.columns([1, 2])
            rep = paths.get(c["representative"])
            pic = None if rep is None else _picture(
                (out, "cluster", k), lambda rep=rep, c=c: cluster_picture(c, load_image(rep), model))
            if pic is not None:
                left.image(pic, caption=f"Mean map over {c['representative']}", width="stretch")
            with right:
                _metrics(c)
            _members(out, c, k, paths, dataset, same)


def _members(out: str, c: dict[str, Any], k: int, paths: dict[str, Path], dataset: Any, same: bool) -> None:
    members = c["members"][:THUMBNAILS]
    cols = st.columns(4)
    for j, m in enumerate(members):
        with cols[j % 4]:
            path = paths.get(m["image"])
            thumb = None if path is None else _picture(
                (out, "member", k, m["image"]), lambda path=path, m=m: member_thumbnail(load_image(path), m["hotspot"]))
            if thumb is not None:
                st.image(thumb, width=150)
            erased = "" if m["erased"] is None else f" → {m['erased']:.2f} erased"
            st.caption(f"{m['image']} · p {m['score']:.2f}{erased}")
            if st.button("Open on the Attention page", key=f"shortcut_open.{k}.{m['image']}",
                         icon=":material/visibility:", disabled=not same or dataset is None):
                case = {"image": m["image"], "method": c["method"], "layer": c["layer"],
                        "target_index": c["target_index"]}
                try:
                    navigation.open_on_attention(audits.case_request(case, dataset))
                except (ValueError, OSError) as e:
                    st.error(f"That film cannot be opened: {e}")
                else:
                    st.switch_page("views/attention.py")
    if len(c["members"]) > THUMBNAILS:
        st.caption(f"and {len(c['members']) - THUMBNAILS} more: " + ", ".join(c["images"][THUMBNAILS:THUMBNAILS + 30])
                   + (" …" if len(c["members"]) > THUMBNAILS + 30 else ""))
