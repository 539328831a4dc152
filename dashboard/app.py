"""DenseNet Explorer: ``streamlit run dashboard/app.py``.

The entrypoint owns what every page shares: page config, the sidebar (model, device, image) and
the navigation over ``dashboard/views/``. Pages read the choices through ``page.context()``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

# Before torch loads OpenMP: threads that spin at barriers starve each other on a busy machine
# (the demo's training measured 3-10x slower steps); sleeping threads cost little here.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run dashboard/app.py` puts only dashboard/ on the path
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

st.set_page_config(page_title="DenseNet Explorer", page_icon=":material/hub:", layout="wide",
                   initial_sidebar_state="expanded")

import densenet  # noqa: E402
from dashboard import inputs, navigation, page, runtime, session, sources  # noqa: E402
from dashboard.results import Choices, Context, context_for  # noqa: E402
from densenet import geometry, labels  # noqa: E402
from densenet.config import STEMS  # noqa: E402
from densenet.images import Window  # noqa: E402
from densenet.versions import versions  # noqa: E402

log = logging.getLogger("dashboard")
runtime.use_threads()  # torch's threads for this server process, before any session's model work

DEFAULT_BLOCKS = (6, 12, 24, 16, 16)


def custom_config() -> densenet.DenseNetConfig:
    """The classroom knobs: growth rate, blocks, bottleneck, compression, stem; no weights needed."""
    k = session.slider(st, "Growth rate k", 1, 64, "custom.k", 32, help="Feature maps each dense layer adds.")
    n_blocks = session.slider(st, "Dense blocks", 1, 5, "custom.blocks", 4)
    layers = tuple(session.slider(st, f"Layers in block {b + 1}", 1, 64, f"custom.L{b + 1}", DEFAULT_BLOCKS[b])
                   for b in range(n_blocks))
    bottleneck = session.toggle(st, "Bottleneck (DenseNet-B): 1×1 conv to 4k first", "custom.bottleneck", True)
    theta = session.slider(st, "Compression θ (DenseNet-C)", 0.1, 1.0, "custom.theta", 0.5, 0.05,
                           help="A transition keeps ⌊θ·c⌋ of its c channels.")
    c0 = session.slider(st, "Stem channels c0", 8, 128, "custom.c0", 64, 8)
    stem = session.selectbox(st, "Stem", list(STEMS), "custom.stem", "imagenet",
                             format_func=lambda name: f"{STEMS[name].label} · {STEMS[name].input_size} px",
                             help=" · ".join(s.describe for s in STEMS.values()))
    return densenet.DenseNetConfig(growth_rate=k, block_config=layers, num_init_features=c0,
                                   bn_size=4 if bottleneck else None, compression=theta, stem=stem,
                                   num_classes=10)


def model_sidebar() -> Context:
    """Model source widgets -> the context; a model that fails to load is reported, never replaced."""
    st.subheader("Model")
    options = [kind for kind in sources.SOURCES if kind != "demo" or sources.demo_available()]
    source = session.selectbox(st, "Source", options, "model_source", sources.default_spec().kind,
                               format_func=lambda kind: sources.SOURCES[kind].label)
    spec, read = None, None
    if source == "demo":
        spec = sources.ModelSpec("demo", "demo")
    elif source == "variant":
        spec = variant_spec()
    elif source == "custom":
        with st.container(border=True):
            try:
                config = custom_config()
                spec = sources.ModelSpec("custom", "custom", config)
            except ValueError as e:
                st.error(f"That architecture is not possible: {e}")
    elif source == "imagenet":
        name = session.selectbox(st, "Architecture", list(densenet.IMAGENET_VARIANTS), "imagenet_variant")
        spec = imagenet_spec(name)
    elif source == "checkpoint":
        upload = st.file_uploader(
            "DenseNet checkpoint", type=list(sources.CHECKPOINT_EXTENSIONS), key="ckpt_upload",
            max_upload_size=sources.MAX_CHECKPOINT_MB,
            help=(f".pt / .pth (a state dict, torchvision, timm or torchxrayvision DenseNet) or .safetensors, "
                  f"up to {sources.MAX_CHECKPOINT_MB} MB. Only weights are read: no code in the file is run."))
        if upload is None:
            st.info("Drop a checkpoint here; until then the default model is used.")
        else:
            read = upload.getvalue
            spec = sources.ModelSpec("checkpoint", upload.name, digest=inputs.file_digest(upload.file_id, read))

    if spec is None:
        spec = sources.default_spec()
        st.caption(f"Showing the {spec.label} until then.")
    ctx = context_for(spec, read)
    if ctx.model_error is not None:
        st.error(f"Could not load the {spec.label}: {ctx.model_error}")
    elif spec.trained:
        outputs_sidebar(ctx)
    return ctx


def outputs_sidebar(ctx: Context) -> None:
    """What a trained model's outputs and inputs mean: asked when the file does not say, kept per model."""
    base = ctx.base()
    stated = labels.outputs(base)
    per = ctx.spec.key  # choices are remembered per checkpoint (its content hash is in the key)
    n = base.config.num_classes
    presets = labels.presets_for(n)
    with st.expander("What the outputs mean", expanded=not stated.stated and ctx.spec.kind == "checkpoint"):
        if not stated.stated:
            st.caption("The file does not say: choose below (a names preset implies independent findings).")
        kinds = {False: "one class (softmax)", True: "independent findings (sigmoid each)"}
        name_options = ["file"] + [p.key for p in presets] + ["upload"]
        name_labels = {"file": "as in the file" if stated.stated else f"as in the file ({stated.class_names[0]}, …)",
                       "upload": "a names file (.txt, .json)", **{p.key: p.label for p in presets}}
        names = session.selectbox(st, "Class names", name_options, f"outputs.names.{per}", "file",
                                  format_func=name_labels.get,
                                  help=f"Presets offered for {n} outputs; a names file has one name per line "
                                       "(.txt) or is a JSON list.")
        preset_kind = labels.PRESETS[names].multilabel if names in labels.PRESETS else None
        if session.kept(f"outputs.names_seen.{per}") != names:  # a new names choice brings its own kind
            session.keep(f"outputs.names_seen.{per}", names)
            session.choose(f"outputs.multilabel.{per}", stated.multilabel if preset_kind is None else preset_kind)
        multilabel = session.radio(st, "Outputs are", [False, True], f"outputs.multilabel.{per}",
                                   stated.multilabel if preset_kind is None else preset_kind,
                                   format_func=kinds.get)
        classes: str | tuple[str, ...] | None = names if names in labels.PRESETS else None
        if names == "upload":
            upload = st.file_uploader("Names file", type=["txt", "json"], key=f"names_upload.{per}")
            if upload is not None:
                try:
                    classes = tuple(labels.read_names(upload.getvalue(), filename=upload.name))
                    labels.check_names(classes, n)
                except ValueError as e:
                    st.error(f"Could not use {upload.name}: {e}")
                    classes = None
        geometries = list(geometry.GEOMETRIES)
        shape = session.selectbox(st, "Fit the image by", geometries, f"outputs.geometry.{per}",
                                  base.preprocessing.geometry, format_func=geometry.short_label,
                                  help=" · ".join(geometry.GEOMETRIES.values()))
        explicit = multilabel != stated.multilabel or preset_kind is not None  # a preset must not override the radio
        choices = Choices(multilabel=multilabel if explicit else None,
                          classes=classes,
                          geometry=None if shape == base.preprocessing.geometry else shape)
        try:
            ctx.with_choices(choices)
        except ValueError as e:
            st.error(f"Those choices do not fit this model: {e}")
            ctx.with_choices(Choices())
        if ctx.spec.kind == "checkpoint" and not ctx.choices.empty:
            model = ctx.load()
            stem = Path(ctx.spec.name).stem
            st.download_button("Converted checkpoint (.safetensors)", lambda: densenet.checkpoint_bytes(model),
                               file_name=f"{stem}.safetensors", mime="application/octet-stream", key="dl_converted",
                               icon=":material/download:",
                               help="Weights plus these choices in its metadata: it loads with no questions next "
                                    "time (same as `python -m densenet convert`).")


def variant_spec() -> sources.ModelSpec:
    names = list(densenet.VARIANTS)
    name = session.selectbox(st, "Variant", names, "variant", sources.FALLBACK_VARIANT)
    st.caption("Fresh random weights: the structure is real, predictions and maps are not meaningful.")
    return sources.ModelSpec("variant", name, densenet.VARIANTS[name])


def imagenet_spec(name: str) -> sources.ModelSpec | None:
    """torchvision weights from the hub cache; offering a download (with a clear offline message)."""
    from densenet.pretrained import cache_path, imagenet_weights_file

    try:
        path = cache_path(name)
    except Exception as e:  # torchvision missing or changed
        st.error(f"ImageNet weights are unavailable: {e}")
        return None
    if path.is_file():
        return sources.ModelSpec("imagenet", name)
    st.warning(f"The {name} ImageNet weights are not on this machine (expected at `{path}`).")
    if st.button("Download them now (needs internet)", key="imagenet_download"):
        try:
            with st.spinner(f"Downloading {name} weights…"):
                imagenet_weights_file(name)
            return sources.ModelSpec("imagenet", name)
        except densenet.WeightsUnavailableError as e:
            st.error(str(e))
    return None


def image_sidebar(ctx: Context) -> None:
    """Sample or upload -> ``ctx.image`` (decoded once per content hash) or ``ctx.image_error``."""
    st.subheader("Image")
    samples = inputs.samples()
    names = [s.name for s in samples]
    uploaded = st.session_state.get("image_upload")
    override = navigation.image_override()  # a case opened from the Audit page
    sample_name = session.selectbox(st, "Sample", names, "sample", names[0] if names else None,
                                    disabled=uploaded is not None or override is not None,
                                    on_change=navigation.clear_image_override,
                                    help="Built-in images; an upload below takes their place.")
    upload = st.file_uploader(
        "…or upload your own", type=list(inputs.SUPPORTED_EXTENSIONS), key="image_upload",
        on_change=navigation.clear_image_override,  # a new upload takes over from an opened case
        max_upload_size=max(1, inputs.MAX_BYTES // (1 << 20)),
        help=(f"PNG, JPEG, TIFF, BMP, WebP or DICOM (.dcm), up to {inputs.MAX_BYTES // (1 << 20)} MB and "
              f"{inputs.MAX_PIXELS / 1e6:.0f} megapixels. Colour images feed grey models as luminance, "
              "grey images feed colour models replicated."))
    if override is not None:  # an opened case stays until "Back to the samples", even over an earlier upload
        st.caption(f"From the audit: {override.name}")
        st.button("Back to the samples", key="clear_override", on_click=navigation.clear_image_override)
    try:
        if override is not None:
            name, read = override.name, override.path.read_bytes
            file_hash = inputs.file_digest(str(override.path), read)
        elif upload is not None:
            name, read, file_hash = upload.name, upload.getvalue, inputs.file_digest(upload.file_id, upload.getvalue)
        elif sample_name is not None:
            sample = samples[names.index(sample_name)]
            name, read, file_hash = sample.name, sample.read, inputs.file_digest(str(sample.path), sample.read)
        else:
            name = read = file_hash = None
        if read is not None:
            info = inputs.dicom_info(file_hash, read)
            window = window_controls(info, file_hash) if info is not None and info.monochrome else None
            ctx.image = inputs.read_image(name, file_hash, read, window)
    except inputs.ImageError as e:
        ctx.image_error = f"Could not read {name}: {e}"
        st.error(ctx.image_error)
    if ctx.image is not None:
        st.image(ctx.image.thumbnail(), caption=f"{ctx.image.name} · {ctx.image.pixels.shape[1]}×"
                 f"{ctx.image.pixels.shape[0]}", width=180)
        if ctx.spec.kind == "demo" and upload is None and override is None:
            from densenet.demo import KNOWN_ERRORS

            if ctx.image.name in KNOWN_ERRORS:
                st.caption(f":material/info: {KNOWN_ERRORS[ctx.image.name]}")


def window_controls(info: object, file_hash: str) -> Window | None:
    """DICOM window centre and width: the file's own window, a CT preset, or the user's; kept per file."""
    options = ["file"] + list(info.presets) + ["custom"]
    default = info.window
    label = {"file": f"the file's ({default.centre:g} / {default.width:g})" if default else "the file's (VOI LUT or "
             "full range)", "custom": "custom", **{k: f"{k} ({w.centre:g} / {w.width:g})" for k, w in info.presets.items()}}
    choice = session.selectbox(st, "DICOM window (centre / width)", options, f"window.{file_hash}", "file",
                               format_func=label.get, help="Applied to what the model sees, not only to the display.")
    if choice == "file":
        return None
    if choice != "custom":
        return info.presets[choice]
    lo, hi = info.value_range or (-1024.0, 3071.0)
    start = default or Window((lo + hi) / 2, max(1.0, hi - lo))
    c1, c2 = st.columns(2)
    centre = session.number(c1, f"Centre{' (' + info.units + ')' if info.units else ''}", f"window.c.{file_hash}",
                            float(start.centre), min_value=float(lo) - (hi - lo), max_value=float(hi) + (hi - lo))
    width = session.number(c2, "Width", f"window.w.{file_hash}", float(start.width), min_value=1.0,
                           max_value=float(max(2.0, 4 * (hi - lo))))
    return Window(centre, width)


def model_summary(ctx: Context) -> None:
    if ctx.config is None:
        return
    cfg = ctx.config
    st.caption(f"**{ctx.spec.label}** · k={cfg.growth_rate} · blocks {tuple(cfg.block_config)} · "
               f"{'bottleneck' if cfg.bn_size else 'no bottleneck'} · θ={cfg.compression:g} · "
               f"{ctx.topology.total_params / 1e6:.2f} M params · input {cfg.in_channels}×{ctx.input_size}×"
               f"{ctx.input_size}")


STYLE = """<style>
  /* less empty space under the top navigation */
  [data-testid="stMainBlockContainer"] { padding-top: 3.5rem; }
  [data-testid="stSidebarUserContent"] { padding-top: 0.5rem; }
  /* an offline teaching tool: no "Deploy" button */
  [data-testid="stAppDeployButton"] { display: none; }
</style>"""


def main() -> None:
    runtime.start_timer()
    st.html(STYLE)
    with st.sidebar:
        st.markdown("### :material/hub: DenseNet Explorer")
        ctx = model_sidebar()
        model_summary(ctx)
        st.caption(f"Device: {runtime.device_label()}")
        st.divider()
        image_sidebar(ctx)
    page.set_context(ctx)

    current = st.navigation([
        st.Page("views/architecture.py", title="Architecture", icon=":material/account_tree:", default=True),
        st.Page("views/feature_maps.py", title="Feature maps", icon=":material/grid_view:"),
        st.Page("views/attention.py", title="Attention", icon=":material/visibility:"),
        st.Page("views/audit.py", title="Audit", icon=":material/fact_check:"),
        st.Page("views/dense_block.py", title="Dense block", icon=":material/stairs:"),
        st.Page("views/claims.py", title="Claims, tested", icon=":material/science:"),
        st.Page("views/compare.py", title="vs ResNet", icon=":material/compare:"),
    ], position="top")
    page.presenter_toggle(st.container(horizontal_alignment="right"))
    try:
        current.run()
    except Exception as e:  # an unforeseen failure: a plain sentence, the traceback goes to the log
        log.exception("page %s failed", current.title)
        st.error(f"This page hit a problem it could not handle ({type(e).__name__}: {e}). "
                 "The rest of the app still works; try another model, image or setting.")
    page.server_time()  # a page that stops early (page.stop) writes it itself
    with st.sidebar:
        about_server()


def about_server() -> None:
    """What this server runs on, for a bug report: the versions that change maps, and the device."""
    with st.expander("About this server"):
        listed = " · ".join(f"{name} {v}" for name, v in versions().items())
        st.caption(f"{listed} · device: {runtime.device_label()}")


main()
