"""DenseNet Explorer: ``streamlit run dashboard/app.py``.

The entrypoint owns what every page shares: page config, the sidebar (model, device, image) and
the navigation over ``dashboard/views/``. Pages read the choices through ``state.context()``.
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
from dashboard import backend, state  # noqa: E402

log = logging.getLogger("dashboard")

SOURCES = {
    "demo": "Bundled demo model",
    "variant": "Built-in variant (fresh weights)",
    "custom": "Custom: bend the knobs (classroom)",
    "imagenet": "ImageNet weights (torchvision)",
    "checkpoint": "Upload a checkpoint",
}
FALLBACK_VARIANT = "densenet-bc-100-12"
DEFAULT_BLOCKS = (6, 12, 24, 16, 16)


def default_spec() -> state.ModelSpec:
    """The model the app opens on: the bundled demo once it exists, else a small built-in variant."""
    if backend.demo_available():
        return state.ModelSpec("demo", "demo")
    return state.ModelSpec("variant", FALLBACK_VARIANT, densenet.VARIANTS[FALLBACK_VARIANT])


def custom_config() -> densenet.DenseNetConfig:
    """The classroom knobs: growth rate, blocks, bottleneck, compression, stem; no weights needed."""
    k = st.slider("Growth rate k", 1, 64, 32, key="c_k", help="Feature maps each dense layer adds.")
    n_blocks = st.slider("Dense blocks", 1, 5, 4, key="c_blocks")
    layers = tuple(st.slider(f"Layers in block {b + 1}", 1, 64, DEFAULT_BLOCKS[b], key=f"c_L{b + 1}")
                   for b in range(n_blocks))
    bottleneck = st.toggle("Bottleneck (DenseNet-B): 1×1 conv to 4k first", True, key="c_bn")
    theta = st.slider("Compression θ (DenseNet-C)", 0.1, 1.0, 0.5, 0.05, key="c_theta",
                      help="A transition keeps ⌊θ·c⌋ of its c channels.")
    c0 = st.slider("Stem channels c0", 8, 128, 64, 8, key="c_c0")
    stem = st.selectbox("Stem", ["imagenet", "small", "cifar"], key="c_stem",
                        format_func={"imagenet": "ImageNet: 7×7/2 conv + max-pool (224 px)",
                                     "small": "small: 3×3 conv + max-pool (128 px)",
                                     "cifar": "CIFAR: one 3×3 conv (32 px)"}.get)
    return densenet.DenseNetConfig(growth_rate=k, block_config=layers, num_init_features=c0,
                                   bn_size=4 if bottleneck else None, compression=theta, stem=stem,
                                   num_classes=10)


def model_sidebar() -> state.Context:
    """Model source widgets -> a loaded (or loadable) model, falling back to the default with a reason."""
    st.subheader("Model")
    options = [s for s in SOURCES if s != "demo" or backend.demo_available()]
    source = st.selectbox("Source", options, format_func=SOURCES.get, key="model_source")
    spec, read = None, None
    if source == "demo":
        spec = state.ModelSpec("demo", "demo")
    elif source == "variant":
        names = list(densenet.VARIANTS)
        name = st.selectbox("Variant", names, index=names.index(FALLBACK_VARIANT), key="variant")
        spec = state.ModelSpec("variant", name, densenet.VARIANTS[name])
        st.caption("Fresh random weights: the structure is real, predictions and maps are not meaningful.")
    elif source == "custom":
        with st.container(border=True):
            try:
                config = custom_config()
                spec = state.ModelSpec("custom", "custom", config)
            except ValueError as e:
                st.error(f"That architecture is not possible: {e}")
    elif source == "imagenet":
        name = st.selectbox("Architecture", list(densenet.IMAGENET_VARIANTS), key="imagenet_variant")
        spec = imagenet_spec(name)
    elif source == "checkpoint":
        upload = st.file_uploader(
            "DenseNet checkpoint", type=list(backend.CHECKPOINT_EXTENSIONS), key="ckpt_upload",
            max_upload_size=backend.MAX_CHECKPOINT_MB,
            help=(f".pt / .pth (a state dict, torchvision, timm or torchxrayvision DenseNet) or .safetensors, "
                  f"up to {backend.MAX_CHECKPOINT_MB} MB. Only weights are read: no code in the file is run."))
        if upload is None:
            st.info("Drop a checkpoint here; until then the default model is used.")
        else:
            read = upload.getvalue
            spec = state.ModelSpec("checkpoint", upload.name, digest=state.file_digest(upload.file_id, read))

    ctx = state.Context(spec=spec or default_spec(), read=read)
    if spec is not None and not spec.config:  # needs loading to be known: load now, report failure here
        try:
            ctx.model()
        except state.ModelError as e:
            st.error(f"Could not load {spec.label}: {e}")
            fallback = default_spec()
            if fallback.key == spec.key:  # the demo itself failed: a built-in variant never does
                fallback = state.ModelSpec("variant", FALLBACK_VARIANT, densenet.VARIANTS[FALLBACK_VARIANT])
            ctx = state.Context(spec=fallback)
            st.caption(f"Showing the {ctx.spec.label} instead.")
    return ctx


def imagenet_spec(name: str) -> state.ModelSpec | None:
    """torchvision weights from the hub cache; offering a download (with a clear offline message)."""
    from densenet.pretrained import cache_path, imagenet_weights_file

    try:
        path = cache_path(name)
    except Exception as e:  # torchvision missing or changed
        st.error(f"ImageNet weights are unavailable: {e}")
        return None
    if path.is_file():
        return state.ModelSpec("imagenet", name)
    st.warning(f"The {name} ImageNet weights are not on this machine (expected at `{path}`).")
    if st.button("Download them now (needs internet)", key="imagenet_download"):
        try:
            with st.spinner(f"Downloading {name} weights…"):
                imagenet_weights_file(name)
            return state.ModelSpec("imagenet", name)
        except densenet.WeightsUnavailableError as e:
            st.error(str(e))
    st.caption("Until then the default model is used.")
    return None


def image_sidebar(ctx: state.Context) -> None:
    """Sample or upload -> ``ctx.image`` (decoded once per content hash) or ``ctx.image_error``."""
    st.subheader("Image")
    samples = backend.samples()
    names = [s.name for s in samples]
    uploaded = st.session_state.get("image_upload")
    sample_name = st.selectbox("Sample", names, key="sample", disabled=uploaded is not None,
                               help="Built-in images; an upload below takes their place.")
    upload = st.file_uploader(
        "…or upload your own", type=list(backend.SUPPORTED_EXTENSIONS), key="image_upload",
        max_upload_size=max(1, backend.MAX_BYTES // (1 << 20)),
        help=(f"PNG, JPEG, TIFF, BMP, WebP or DICOM (.dcm), up to {backend.MAX_BYTES // (1 << 20)} MB and "
              f"{backend.MAX_PIXELS / 1e6:.0f} megapixels. Colour images feed grey models as luminance, "
              "grey images feed colour models replicated."))
    try:
        if upload is not None:
            digest = state.file_digest(upload.file_id, upload.getvalue)
            ctx.image = state.read_image(upload.name, digest, upload.getvalue)
        elif sample_name is not None:
            sample = samples[names.index(sample_name)]
            ctx.image = state.read_image(sample.name, state.file_digest(str(sample), sample.read), sample.read)
    except backend.ImageError as e:
        ctx.image_error = f"Could not read {upload.name if upload is not None else sample_name}: {e}"
        st.error(ctx.image_error)
    if ctx.image is not None:
        st.image(ctx.image.thumbnail(), caption=f"{ctx.image.name} · {ctx.image.pixels.shape[1]}×"
                 f"{ctx.image.pixels.shape[0]}", width=180)


def model_summary(ctx: state.Context) -> None:
    cfg = ctx.config
    params = state.topology(cfg, ctx.input_size).total_params
    st.caption(f"**{ctx.spec.label}** · k={cfg.growth_rate} · blocks {tuple(cfg.block_config)} · "
               f"{'bottleneck' if cfg.bn_size else 'no bottleneck'} · θ={cfg.compression:g} · "
               f"{params / 1e6:.2f} M params · input {cfg.in_channels}×{ctx.input_size}×{ctx.input_size}")


STYLE = """<style>
  /* less empty space under the top navigation */
  [data-testid="stMainBlockContainer"] { padding-top: 3.5rem; }
  [data-testid="stSidebarUserContent"] { padding-top: 0.5rem; }
  /* an offline teaching tool: no "Deploy" button */
  [data-testid="stAppDeployButton"] { display: none; }
</style>"""


def main() -> None:
    state.start_timer()
    st.html(STYLE)
    with st.sidebar:
        st.markdown("### :material/hub: DenseNet Explorer")
        ctx = model_sidebar()
        model_summary(ctx)
        st.caption(f"Device: {state.device_label()}")
        st.divider()
        image_sidebar(ctx)
    state.set_context(ctx)

    page = st.navigation([
        st.Page("views/architecture.py", title="Architecture", icon=":material/account_tree:", default=True),
        st.Page("views/feature_maps.py", title="Feature maps", icon=":material/grid_view:"),
        st.Page("views/attention.py", title="Attention", icon=":material/visibility:"),
        st.Page("views/dense_block.py", title="Dense block step by step", icon=":material/stairs:"),
    ], position="top")
    try:
        page.run()
    except Exception as e:  # an unforeseen failure: a plain sentence, the traceback goes to the log
        log.exception("page %s failed", page.title)
        st.error(f"This page hit a problem it could not handle ({type(e).__name__}: {e}). "
                 "The rest of the app still works; try another model, image or setting.")
    with st.sidebar:
        st.caption(f"Server time for this view: {state.elapsed_ms():.0f} ms")


main()
