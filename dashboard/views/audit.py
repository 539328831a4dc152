"""Audit: does the model look at the right place across a whole dataset, per class, layer and method.

The audit runs in its own thread (``dashboard/audits.py``), taking turns on the compute gate, so
this session and others stay usable; leaving the page (or the browser) does not stop it, and
any session can open it again from the list of audits. Methods come from the registry.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import audit_figures as af
from dashboard import audits, navigation, page, session
from dashboard.analysis import plural
from densenet import audit, explain

ctx = page.start("Audit")
model = page.load(ctx)
owner = session.kept("audit.token") or session.keep("audit.token", audits.new_token())
classes = list(model.class_names)

st.caption("For every image of a dataset, every target (its true label, else the top prediction), method and "
           "layer: the map, whether its maximum falls inside the ground truth (pointing game), how much of its "
           "mass lies inside, and IoU and Dice after binarising it. Then the scorecard per class with 95% "
           "intervals, and the best and worst cases.")
if not ctx.spec.trained:
    st.warning("This model has fresh random weights: an audit shows the mechanics, not what a trained model looks "
               "at. Pick the demo model, ImageNet weights or your checkpoint in the sidebar.")


def demo_folder() -> Path | None:
    try:
        with st.spinner("Preparing the demo dataset (once per machine, about 10 s)…"):
            return audit.demo_dataset(audits.DEMO_IMAGES)
    except OSError as e:
        st.error(f"The demo dataset could not be written to {audits.cache_dir()}: {e}")
        return None


def listing(folder: Path, limit: int | None, options: dict) -> audit.Dataset | None:
    """The dataset in ``folder`` (listed once per folder state, limit and options), or ``None`` with the reason shown."""
    try:
        stamp = folder.stat().st_mtime
        key = (str(folder), tuple(classes), limit, stamp, tuple(sorted(options.items())))
        return session.memo("audit_listing", key, lambda: audit.load_folder(folder, classes, limit=limit, **options),
                            max_entries=4)
    except (audit.DatasetError, OSError, UnicodeError, ValueError) as e:
        st.error(f"That dataset cannot be used: {e}")
        return None


SOURCES = {"demo": "Demo set", "folder": "Folder on this server", "zip": "Upload a zip"}


def choose_dataset(limit: int | None) -> audit.Dataset | None:
    source = session.radio(st, "Dataset", list(SOURCES), "audit.source", "demo", format_func=SOURCES.get,
                           horizontal=True)
    folder = None
    if source == "demo":
        folder = demo_folder()
        st.caption(f"{audits.DEMO_IMAGES} generated radiograph-like images with labels, boxes and masks: the demo "
                   "model's classes.")
    elif source == "folder":
        configured = audits.data_roots()
        if not configured.roots:
            st.warning(audits.no_roots_message(configured), icon=":material/folder_off:")
        roots = audits.data_roots(demo_folder())
        typed = session.text(st, "Dataset folder", "audit.path", "",
                         placeholder=f"relative to {roots.roots[0]}" if roots.roots else "no data folder",
                         help="Images in images/ (else the folder itself, searched recursively), labels.csv, "
                              "boxes.csv, masks/, or the published files under their own names (NIH Data_Entry and "
                              "BBox_List, CheXpert valid.csv, RSNA, VinDr, SIIM, CheXlocalize JSON), recognised by "
                              "their headers. Only folders under: "
                              + ", ".join(str(r) for r in roots.roots))
        if typed.strip():
            try:
                folder = audits.resolve_folder(roots, typed)
            except (audit.UnsafePathError, audit.DatasetError) as e:
                st.error(f"That folder cannot be used: {e}")
        else:
            st.caption("Readable folders: " + (", ".join(f"`{r}`" for r in roots.roots) or "none"))
    else:
        upload = st.file_uploader(
            "Zip of images plus CSVs", type=["zip"], key="audit_zip", max_upload_size=200,
            help=f"The same layout as a folder (images/, labels.csv, boxes.csv, masks/), or one folder holding it. "
                 f"Checked before unpacking: at most {audits.MAX_ZIP_FILES:,} files and "
                 f"{audits.MAX_ZIP_BYTES // 1024 ** 3} GB unpacked, no names that leave the folder.")
        if upload is not None:
            try:
                with st.spinner(f"Checking and unpacking {upload.name}…"):  # once per upload (a refusal: each time)
                    folder = session.memo("audit_zip", upload.file_id,
                                          lambda: audits.unpack_upload(upload.getvalue(), owner), max_entries=4)
            except audit.ZipRefused as e:
                st.error(f"{upload.name} was refused: {e}")
            except OSError as e:
                st.error(f"{upload.name} could not be unpacked on the server: {e}")
    if folder is None:
        return None
    c1, c2 = st.columns(2)
    options = {
        "uncertain": session.radio(c1, "Uncertain labels (-1)", ["ignore", "positive", "negative"], "audit.uncertain",
                                   "ignore", horizontal=True,
                                   help="CheXpert/MIMIC-style tables mark uncertain findings -1. Ignore (default): "
                                        "never a target. Positive or negative: counted as that."),
        "readers": session.radio(c2, "Several readers' boxes", ["union", "majority", "each"], "audit.readers",
                                 "union", horizontal=True,
                                 help="VinDr-CXR: every reader's boxes, the pixels most of an image's readers "
                                      "boxed, or each reader's boxes on their own (one row per reader)."),
    }
    dataset = listing(folder, limit, options)
    if dataset is not None:
        st.caption(af.dataset_line(dataset))
        for line in af.recognised_lines(dataset):
            st.caption(line)
        if dataset.problems:
            with st.expander(f"Why {plural(len(dataset.problems), 'image')} cannot be audited as listed"):
                st.dataframe({"image": [p[0] for p in dataset.problems[:200]],
                              "reason": [p[1] for p in dataset.problems[:200]]}, hide_index=True)
    return dataset


BINARIZE = {"otsu": "Otsu (CheXlocalize)", "fixed": "a fixed threshold"}


def choose_settings() -> tuple[audit.Settings | None, int | None]:
    records = explain.methods()
    names = [m.name for m in records]
    first_cam = explain.methods(kind=explain.Kind.GRADIENT_CAM)[0].name
    chosen = session.multiselect(st, "Methods", names, "audit.methods", [first_cam],
                                 format_func=lambda n: explain.method(n).label + (" (slow)" if explain.method(n).slow
                                                                                  else ""),
                                 help="Layer CAMs share one trace and one backward per target: fast. Slow methods "
                                      "re-run the model many times per image.")
    layer_options = [t for t in model.tap_names if not t.startswith("features.conv0")]
    if session.kept("_audit_layers_for") != ctx.key:  # another model: its own default layers
        session.choose("audit.layers", audit.default_layers(model))
        session.keep("_audit_layers_for", ctx.key)
    layers = session.multiselect(st, "Layers", layer_options, "audit.layers", audit.default_layers(model),
                                 format_func=af.layer_label,
                                 help="Default: the model's recommended CAM layer and every dense block's output.")
    c1, c2 = st.columns(2)
    batch = session.select_slider(c1, "Batch size", [1, 2, 4, 8, 16, 32], "audit.batch", 8,
                                  help="Images per traced batch.")
    limit = int(session.number(c2, "Images (0: all)", "audit.limit", 0, min_value=0, max_value=1_000_000, step=1,
                               help="Audit only the first N images of the listing."))
    c3, c4 = st.columns(2)
    how = session.radio(c3, "Binarise maps by", list(BINARIZE), "audit.binarize", "otsu", format_func=BINARIZE.get,
                        help="For IoU and Dice: min–max, then Otsu's threshold per map (as CheXlocalize), or one "
                             "fixed threshold.")
    threshold = None
    if how == "fixed":
        threshold = session.slider(c4, "Threshold", 0.05, 0.95, "audit.threshold", 0.5, 0.05)
    if not chosen:
        st.warning("Choose at least one method.")
        return None, limit or None
    if not layers and any(explain.method(n).needs_layer for n in chosen):
        st.warning("Choose at least one layer for the layer methods.")
        return None, limit or None
    try:
        settings = audit.Settings(methods=tuple(chosen), layers=tuple(layers) or None, batch_size=batch,
                                  binarize="otsu" if threshold is None else threshold, sanity_images=0,
                                  device=str(next(model.parameters()).device))
    except ValueError as e:
        st.error(f"Those settings cannot be used: {e}")
        return None, limit or None
    return settings, limit or None


# --- choose and start ----------------------------------------------------------------------------

data_col, settings_col = st.columns(2, gap="large")
with settings_col:
    st.markdown("**Settings**")
    settings, limit = choose_settings()
with data_col:
    st.markdown("**Data**")
    dataset = choose_dataset(limit)
    mine = audits.running(owner)
    # discover() lists images/ inside the chosen folder: the folder above names the dataset
    data_name = "" if dataset is None else (dataset.root.parent.name if dataset.root.name == "images"
                                            else dataset.root.name)
    label = f"{ctx.spec.label} on {data_name}"
    clicked = st.button("Start the audit", type="primary", icon=":material/play_arrow:", key="audit_start",
                        disabled=dataset is None or settings is None or bool(mine),
                        help="Runs in the background: you may leave this page, or open it from another browser.")
    if clicked and not mine and dataset is not None and settings is not None:
        try:
            run = audits.start(model, dataset, settings, owner=owner, model_key=ctx.key, label=label,
                               model_source=ctx.spec.label, name=f"{data_name}-{ctx.spec.kind}")
        except (audit.RunFolderError, OSError, ValueError) as e:
            st.error(f"The audit could not start: {e}")
        else:
            session.choose("audit.out", str(run.out))
            st.rerun()  # the page again, with Start disabled and the run shown
    if mine:
        st.caption("Your audit is running (below): stop it to start another.")


# --- the audit shown -------------------------------------------------------------------------------

def live(out: str, drawn_phase: str | None) -> None:
    """Progress, Stop and the latest rows; refreshed while the run can change (:meth:`audits.Status.watch_every`).

    ``drawn_phase`` is the phase the rest of the page was drawn for: when the run leaves it (it ends, or its owner
    stops or resumes it, perhaps from another browser) the whole page is drawn again, so that Resume, the
    scorecard and the downloads follow without a click.
    """
    state = audits.status(out)
    if state is None:
        st.info("This audit is starting…")
        return
    if state.phase != drawn_phase:
        st.rerun()  # the whole page, for the new phase
    p = state.progress
    st.progress(p.fraction, text=af.progress_text(p))
    if state.running:
        if state.owner == owner:
            st.button("Stop", key="audit_stop", icon=":material/stop_circle:", on_click=audits.stop, args=(out, owner),
                      help="Stops after the current batch. Finished chunks are kept: Resume goes on from there.")
        else:
            st.caption("Started by another session: you are watching it (only that session can stop it).")
    if p.state == "failed":
        st.error(f"The audit failed: {p.message or 'no reason given'}. Rows committed before are kept.")
    rows = audit.read_rows(out, af.ROW_COLUMNS)
    if rows.num_rows:
        note = (f"Latest of {plural(rows.num_rows, 'row')} (hit and IoU are empty where an image has no ground truth "
                "for its target)")
        where = st.container() if state.running else st.expander(note)
        if state.running:
            where.caption(note + ":")
        where.dataframe(af.latest_rows(rows, 8), hide_index=True, height=250)


def summary_of(out: str) -> dict | None:
    path = Path(out) / "summary.json"
    try:
        stamp = path.stat().st_mtime
    except OSError:
        return None
    return session.memo("audit_summary", (out, stamp), lambda: audit.read_summary(out), max_entries=4)


def show_scorecard(out: str, summary: dict) -> tuple[str, str]:
    """Classification, the scorecard, per class for one pair, the heat map; returns the chosen pair."""
    st.markdown("#### Scorecard")
    st.markdown(af.classification_line(summary))
    st.dataframe(af.scorecard(summary), hide_index=True)
    manifest = audit.read_manifest(out) or {}
    binarize = manifest.get("settings", {}).get("binarize", "otsu")
    st.caption(f"{summary['images']:,} images, {summary['rows']:,} rows, {summary['skipped']:,} skipped. Means with "
               "95% bootstrap intervals (1,000 resamples). Hit: the map's maximum lies inside the ground truth. "
               "Energy: the share of the map's mass inside. IoU and Dice: the map binarised by "
               + ("Otsu's threshold (CheXlocalize)" if binarize == "otsu" else f"a fixed threshold of {binarize}")
               + ", on the model's input grid.")
    pairs = [(e["method"], e["layer"]) for e in summary["by_method_layer"]]
    cam_layer = manifest.get("model", {}).get("cam_layer")
    default = next((pr for pr in pairs if pr[1] == cam_layer), pairs[0])
    pair = session.selectbox(st, "Per class and gallery for", pairs, "audit.pair", default,
                             format_func=lambda pr: f"{af.method_label(pr[0])} at {af.layer_label(pr[1])}")
    st.dataframe(af.per_class(summary, *pair), hide_index=True)
    if len(pairs) > 1:
        page.chart(af.heatmap(summary), key="audit_heatmap")
    return pair


def show_gallery(out: str, pair: tuple[str, str], summary_stamp: float) -> None:
    st.markdown("#### Gallery")
    cases = session.memo("audit_gallery", (out, pair, summary_stamp),
                         lambda: audit.gallery(out, method=pair[0], layer=pair[1], per_class=3), max_entries=2)
    if not cases:
        st.caption("No row has ground truth to rank.")
        return
    dataset = session.memo("audit_dataset", (out, tuple(classes)), lambda: audits.dataset_of(out, classes),
                           max_entries=2)
    same = session.memo("audit_same_model", (out, ctx.key), lambda: audits.same_model(out, ctx.key, model),
                        max_entries=8)
    st.caption(f"{af.method_label(pair[0])} at {af.layer_label(pair[1])}: the three best and worst cases of each "
               "class by IoU. Left: what the model sees, the ground truth outlined in green. Right: the stored map "
               "(min–max) with the outline in white.")
    if not same:
        st.info("This audit was made with another model than the sidebar's: choose that model to open its cases "
                "on the Attention page.")
    found = {c["target"] for c in cases}
    targets = [c for c in classes if c in found] + sorted(found - set(classes))
    for tab, target in zip(st.tabs(targets), targets):
        with tab:
            for rank in ("best", "worst"):
                mine = [c for c in cases if c["target"] == target and c["rank"] == rank]
                if not mine:
                    continue
                st.markdown(f"**{rank.capitalize()}**")
                for col, case in zip(st.columns(3), mine):
                    with col:
                        key = (out, case["image"], case["target"], case["method"], case["layer"])
                        picture = session.memo("audit_pictures", key, lambda case=case: (
                            audits.case_picture(case, dataset, model) if dataset is not None else None),
                            max_entries=64)
                        if picture is None:
                            st.caption("The image is no longer readable.")
                        else:
                            st.image(picture, width="stretch")
                        st.caption(af.case_caption(case))
                        if st.button("Open on the Attention page", key=f"open.{case['image']}.{target}.{rank}",
                                     icon=":material/visibility:", disabled=not same or picture is None):
                            try:
                                navigation.open_on_attention(audits.case_request(case, dataset))
                            except (ValueError, OSError) as e:
                                st.error(f"That case cannot be opened: {e}")
                            else:
                                st.switch_page("views/attention.py")


def downloads(out: str) -> None:
    name = Path(out).name
    d1, d2, d3 = st.columns(3)
    report = audit.report_path(out)
    if report.is_file():
        d1.download_button("Report (HTML)", lambda: report.read_bytes(), file_name=f"{name}-report.html",
                           mime="text/html", key="audit_dl_report", icon=":material/download:",
                           help="One self-contained file: scorecard, heat maps, gallery, skipped files, manifest.")
    d2.download_button("Rows (Parquet)", lambda: audits.parquet_bytes(out), file_name=f"{name}.parquet",
                       mime="application/vnd.apache.parquet", key="audit_dl_parquet", icon=":material/download:",
                       help="One row per image × target × method × layer (pyarrow / pandas read it).")
    d3.download_button("Skipped (CSV)", lambda: audits.skipped_csv(out), file_name=f"{name}-skipped.csv",
                       mime="text/csv", key="audit_dl_skipped", icon=":material/download:")
    st.caption(f"On the server: `{out}`")


def show_audit() -> None:
    folders = [str(p) for p in audits.known()]
    if not folders:
        st.info("No audit yet: choose a dataset and press Start.")
        return
    out = session.selectbox(st, "Audit", folders, "audit.out", folders[0],
                            format_func=lambda f: audits.describe(Path(f)),
                            help="Every audit of this server, newest first: yours, other sessions' (to watch) and "
                                 "earlier ones.")
    state = audits.status(out)
    running = state is not None and state.running
    st.fragment(live, run_every=None if state is None else state.watch_every())(out, None if state is None
                                                                               else state.phase)
    if state is None or running:
        return
    run = audits.lookup(out)
    if state.progress.state in ("stopped", "failed") and run is not None and run.owner == owner:
        if st.button("Resume", key="audit_resume", icon=":material/play_arrow:",
                     help="Goes on where it stopped: finished chunks are not redone."):
            try:
                audits.resume(out, owner)
            except (audit.RunFolderError, ValueError) as e:
                st.error(f"The audit could not resume: {e}")
            else:
                st.rerun()
    summary = summary_of(out)
    if summary is None or not summary.get("rows"):
        st.info("No row was committed: nothing to score yet.")
        return
    downloads(out)
    pair = show_scorecard(out, summary)
    show_gallery(out, pair, (Path(out) / "summary.json").stat().st_mtime)
    skipped = audit.read_skipped(out)
    if skipped:
        with st.expander(f"Skipped ({len(skipped):,})"):
            st.dataframe([{"image": i, "reason": r} for i, r in skipped], hide_index=True)


st.divider()
show_audit()
