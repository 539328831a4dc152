"""The dashboard, page by page, through Streamlit's AppTest: what is shown, not only "no exception".

Models are tiny (the classroom sliders, or a checkpoint built here) so that each run takes
seconds on two shared cores; the default state uses whatever the app opens on.
"""

from __future__ import annotations

import base64
import json
import threading
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from dashboard.selection import selected_layer
from tests.apptest import count_cells, count_links, ok, use_tiny, widget

import densenet
from dashboard import figures, inputs, sources
from densenet import explain
from densenet.classroom import feature_reuse
from densenet.preprocess import custom
from densenet.topology import default_cam_layer

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")
TIMEOUT = 180  # first runs import torch, captum and plotly and build models; two cores are shared


def new_app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=TIMEOUT)




def charts(at: AppTest, key: str) -> dict:
    found = [c for c in at.get("plotly_chart") if c.key == key or (c.key or "").startswith(key)]
    assert found, f"no plotly chart {key!r}; have {[c.key for c in at.get('plotly_chart')]}"
    return json.loads(found[0].proto.spec)


def decode(value) -> np.ndarray:
    """A plotly JSON array: a list, or plotly 6's base64 ``{"bdata", "dtype", "shape"}``."""
    if isinstance(value, dict) and "bdata" in value:
        flat = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        shape = [int(n) for n in str(value.get("shape", len(flat))).split(",")]
        return flat.reshape(shape)
    array = np.asarray(value)
    if array.dtype == object:  # plotly 5 writes lists, a NaN as None
        array = np.asarray(value, dtype=float)
    return array


def metric(at: AppTest, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert values, f"no metric {label!r}; have {[m.label for m in at.metric]}"
    return values[0]


def captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption]


def images(at: AppTest) -> list:
    """The page's ``st.image`` elements (not the sidebar's), each with ``.proto.imgs``."""
    return list(at.main.get("image"))




TINY_CKPT = densenet.DenseNetConfig(growth_rate=4, block_config=(2, 2), num_init_features=8, stem="cifar",
                                    in_channels=1, num_classes=3)
CLASSES = ["alpha", "beta", "gamma"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> bytes:
    """A tiny 1-channel DenseNet with randomised BatchNorm (so predictions vary), saved as safetensors."""
    torch.manual_seed(0)
    model = densenet.DenseNet(TINY_CKPT, class_names=CLASSES,
                              preprocessing=custom(size=32, channels=1, mean=(0.5,), std=(0.25,)))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.randn(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.5)
            elif isinstance(m, torch.nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    densenet.save_checkpoint(model, path)
    return path.read_bytes()


def upload_checkpoint(at: AppTest, data: bytes, name: str = "tiny.safetensors") -> AppTest:
    widget(at, "selectbox", "model_source").set_value("checkpoint").run()
    at.file_uploader(key="ckpt_upload").set_value((name, data, "application/octet-stream"))
    return at.run()


def upload_image(at: AppTest, data: bytes, name: str = "picture.png") -> AppTest:
    at.file_uploader(key="image_upload").set_value((name, data, "image/png"))
    return at.run()


# --- default state --------------------------------------------------------------------------------

def test_opens_on_the_default_model_with_a_sample_and_draws_the_architecture():
    at = ok(new_app().run())
    source = widget(at, "selectbox", "model_source").value
    assert source == ("demo" if sources.demo_available() else "variant")
    # a sample is preselected and shown in the sidebar
    assert widget(at, "selectbox", "sample").value == inputs.samples()[0].name
    assert len(at.sidebar.get("image")) == 1
    assert any(c.startswith("Device: ") for c in captions(at))

    model_cfg = densenet.VARIANTS["densenet-bc-100-12"] if source == "variant" else densenet.demo.load().config
    size = 32 if source == "variant" else densenet.demo.load().preprocessing.size
    topo = densenet.topology(model_cfg, size)
    assert metric(at, "Dense links") == f"{topo.num_links:,}"
    assert metric(at, "Depth L") == str(model_cfg.depth)

    block = topo.blocks[0]
    L = block.num_layers
    assert f"Edges drawn in the graph: {L * (L + 1) // 2}." in " ".join(captions(at))
    assert any(f"L(L+1)/2 = {L}·{L + 1}/2 = {L * (L + 1) // 2} links" in m.value for m in at.markdown)
    spec = charts(at, "conn_graph")
    assert count_links(spec) == L * (L + 1) // 2
    layer_nodes = next(t for t in spec["data"] if t["name"] == "layers")
    assert len(layer_nodes["x"]) == L + 1

    dot = at.get("graphviz_chart")[0].proto.spec
    assert dot.count("dense block") == len(topo.blocks) and "transition 1" in dot

    growth = next(t for t in charts(at, "growth_chart")["data"] if t.get("name") == "channels")
    assert max(growth["y"]) == max(b.out_channels for b in topo.blocks)

    table = at.dataframe[0].value
    assert list(table["Layers"])[-1] == "Total" and table["Params"].iloc[-1] == topo.total_params


@pytest.mark.skipif(not sources.demo_available(), reason="the bundled demo model is not built yet")
def test_opens_on_the_demo_model_which_finds_the_nodule():
    at = ok(new_app().run())
    assert widget(at, "selectbox", "model_source").value == "demo"
    assert widget(at, "selectbox", "sample").value == "demo_nodule_1.png"
    at.switch_page("views/attention.py")
    ok(at.run())
    assert metric(at, "Prediction") == "nodule"
    assert not at.warning  # trained weights
    assert widget(at, "selectbox", "target").options == list(densenet.demo.CLASSES)


def test_highlighting_a_layer_draws_its_inputs():
    at = ok(new_app().run())
    widget(at, "selectbox", "arch_node.features.denseblock1").set_value(3).run()
    ok(at)
    spec = charts(at, "conn_graph")
    inputs = next(t for t in spec["data"] if t["name"] == "inputs of layer 3")
    assert sum(v is None for v in inputs["x"]) == 3  # the block input and layers 1 and 2
    assert count_links(spec) == spec["data"][-1]["x"][-1] * (spec["data"][-1]["x"][-1] + 1) // 2
    assert any("reads **3 inputs**" in m.value for m in at.markdown)


def test_a_graph_click_names_the_layer():
    block = densenet.topology("densenet121").blocks[0]
    event = {"selection": {"points": [{"curve_number": 4, "point_index": 3,
                                        "customdata": "features.denseblock1.denselayer3"}]}}
    assert selected_layer(event, block) == 3
    assert selected_layer({"selection": {"points": []}}, block) is None
    assert selected_layer(None, block) is None


# --- classroom mode and built-in variants ----------------------------------------------------------

def test_classroom_knobs_redraw_everything_without_weights():
    at = use_tiny(ok(new_app().run()), k=5, blocks=(3, 4), c0=10)
    assert metric(at, "Dense links") == str(3 * 4 // 2 + 4 * 5 // 2)
    growth = next(t for t in charts(at, "growth_chart")["data"] if t.get("name") == "channels")
    # c0 + l·k in block 1, then floor(0.5 · 25) = 12 after the transition, then 12 + l·5
    assert growth["y"] == [10, 15, 20, 25, 12, 17, 22, 27, 32]
    widget(at, "slider", "custom.theta").set_value(1.0).run()
    growth = next(t for t in charts(ok(at), "growth_chart")["data"] if t.get("name") == "channels")
    assert growth["y"][4] == 25  # no compression
    widget(at, "toggle", "custom.bottleneck").set_value(False).run()
    table = ok(at).dataframe[0].value
    assert table["Structure"].iloc[1] == "[3 × 3 conv] × 3"


def test_densenet121_block_walkthrough_shows_the_papers_shapes():
    at = ok(new_app().run())
    widget(at, "selectbox", "model_source").set_value("variant").run()
    widget(at, "selectbox", "variant").set_value("densenet121").run()
    ok(at)
    assert metric(at, "Dense links") == "535"
    assert metric(at, "Parameters") == "7.98 M"
    assert "Dense Block (1)" in list(at.dataframe[0].value["Layers"])
    at.switch_page("views/dense_block.py")
    ok(at.run())
    text = " ".join(m.value for m in at.markdown)
    assert "(56, 56, 64)" in text and "**(56, 56, 256)**" in text
    assert "(28, 28, 128)" in text  # transition 1: halve the size, theta = 0.5 halves the channels
    assert metric(at, "After the 1×1 bottleneck") == "(56, 56, 128)"
    widget(at, "slider", "step.features.denseblock1").set_value(6).run()
    assert metric(ok(at), "Input to layer 6") == "(56, 56, 224)"
    assert any("21" in latex.value for latex in at.latex)
    assert not [c for c in at.get("plotly_chart") if c.key == "reuse_fig"]  # fresh weights: only on request
    widget(at, "toggle", "db_fresh").set_value(True).run()
    reuse = decode(charts(at, "reuse_fig")["data"][0]["z"])
    assert reuse.shape == (7, 7)  # sources: input + 6 layers; targets: 6 layers + transition
    assert np.isnan(reuse[6, 0]) and np.isfinite(reuse[:, 6]).all()  # layer 1 cannot see layer 6; the transition sees all


# --- feature maps ----------------------------------------------------------------------------------

def test_feature_maps_page_shows_the_k_new_maps_and_their_provenance():
    at = use_tiny(ok(new_app().run()), k=4, blocks=(3, 2))
    at.switch_page("views/feature_maps.py")
    ok(at.run())
    assert widget(at, "selectbox", "fm_layer").value == "features.denseblock1.denselayer3"
    grid = images(at)[0]
    assert len(grid.proto.imgs) == 4  # k new maps
    assert "adds **k = 4 new maps**" in " ".join(m.value for m in at.markdown)
    bar = charts(at, "fm_bar")
    assert [t["x"][0] for t in bar["data"]] == [8, 4, 4, 4]  # block input, layers 1 and 2, then the 4 new maps

    widget(at, "radio", "fm_scale").set_value("global").run()
    assert any(c.startswith("One colour range for all maps shown") for c in captions(ok(at)))

    widget(at, "toggle", "fm_inputs").set_value(True).run()
    ok(at)
    assert any(img.caption == "16 input channels in concatenation order" for im in images(at) for img in im.proto.imgs)

    widget(at, "selectbox", "fm_layer").set_value("features.transition1").run()
    ok(at)
    assert "outputs **10 channels**" in " ".join(m.value for m in at.markdown)  # floor(0.5 * (8 + 3·4))


# --- attention -------------------------------------------------------------------------------------

def test_attention_page_explains_with_each_method_layer_and_class():
    at = use_tiny(ok(new_app().run()))
    at.switch_page("views/attention.py")
    at.run()
    assert not at.exception
    assert [w.value for w in at.warning][0].startswith("This model has fresh random weights")
    prediction = metric(at, "Prediction")
    assert prediction in [f"class {i}" for i in range(10)]
    assert widget(at, "selectbox", "target").value == int(prediction.split()[-1])  # default: the top class
    over = images(at)
    assert len(over[0].proto.imgs) == 1 and len(over[1].proto.imgs) == 1  # input and overlay
    assert "Grad-CAM · norm5" in over[1].proto.imgs[0].caption
    assert [b.label for b in at.get("download_button")] == [  # the sample is 128 px, the model's view 32 px
        "Overlay (PNG, 128×128)", "Layer map (.npy, 16×16)", "Full-size map (.npy, 128×128)"]
    assert not [m for m in at.metric if m.label == "Deletion AUC"]  # the checks wait until asked for (issue 21)
    widget(at, "toggle", "trust_open").set_value(True).run()
    assert metric(ok(at), "Randomisation rank correlation")
    assert metric(at, "Deletion AUC") and metric(at, "Insertion AUC")
    assert [t.label for t in at.tabs] == ["Map", "Across methods", "Across layers"]

    at.session_state["att_tab"] = "Across layers"  # tabs are lazy: only the open one runs
    at.run()
    grid = images(ok(at))[-1]
    assert [i.caption for i in grid.proto.imgs] == ["denseblock1 (32×32)", "denseblock2 (16×16)", "norm5 (16×16)"]
    at.session_state["att_tab"] = "Across methods"
    at.run()
    assert [i.caption for i in images(ok(at))[-1].proto.imgs] == ["Grad-CAM", "Grad-CAM++", "LayerCAM", "EigenCAM"]
    at.session_state["att_tab"] = "Map"

    widget(at, "selectbox", "method").set_value("layercam").run()
    assert "LayerCAM · norm5" in images(ok(at))[1].proto.imgs[0].caption
    widget(at, "selectbox", "cam_layer").set_value("features.denseblock1").run()
    assert "LayerCAM · denseblock1" in images(ok(at))[1].proto.imgs[0].caption
    other = (widget(at, "selectbox", "target").value + 1) % 10
    widget(at, "selectbox", "target").set_value(other).run()
    assert f"class {other}" in images(ok(at))[1].proto.imgs[0].caption
    widget(at, "selectbox", "method").set_value("integrated-gradients").run()
    assert "Integrated Gradients · input" in images(ok(at))[1].proto.imgs[0].caption


# --- uploads ---------------------------------------------------------------------------------------

def test_uploaded_image_replaces_the_sample(make_png):
    at = use_tiny(ok(new_app().run()))
    upload_image(at, make_png(3, colour=True), "blob.png")
    ok(at)
    assert widget(at, "selectbox", "sample").disabled
    assert at.sidebar.get("image")[0].proto.imgs[0].caption == "blob.png · 64×64"
    at.switch_page("views/attention.py")
    assert metric(ok(at.run()), "Prediction")


def test_bad_image_upload_shows_a_plain_error_and_the_app_keeps_working():
    at = ok(new_app().run())
    upload_image(at, b"this is not an image", "broken.png")
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("Could not read broken.png:")
    assert "Traceback" not in errors[0]
    at.switch_page("views/attention.py")
    at.run()
    assert not at.exception
    assert at.info[0].value.startswith("Could not read broken.png")
    at.switch_page("views/architecture.py")
    assert metric(at.run(), "Dense links")  # pages that need no image still work


def test_uploader_help_states_the_limits():
    at = ok(new_app().run())
    help_text = at.file_uploader(key="image_upload").help
    assert f"{inputs.MAX_BYTES // (1 << 20)} MB" in help_text and "megapixels" in help_text
    widget(at, "selectbox", "model_source").set_value("checkpoint").run()
    assert f"{sources.MAX_CHECKPOINT_MB} MB" in at.file_uploader(key="ckpt_upload").help


def test_uploaded_checkpoint_brings_its_classes_and_preprocessing(checkpoint, make_png):
    at = upload_checkpoint(ok(new_app().run()), checkpoint)
    ok(at)
    assert any("checkpoint tiny.safetensors" in c and "input 1×32×32" in c for c in captions(at))
    assert metric(at, "Dense links") == "6"
    upload_image(at, make_png(1), "one.png")
    at.switch_page("views/attention.py")
    ok(at.run())
    assert metric(at, "Prediction") in CLASSES
    assert not any(w.value.startswith("This model has fresh random weights") for w in at.warning)  # trained


def test_bad_checkpoint_error_stays_in_the_main_area_of_every_page():
    at = upload_checkpoint(ok(new_app().run()), b"\x80\x02garbage that is not a checkpoint", "broken.pt")
    for view in ("views/architecture.py", "views/attention.py", "views/feature_maps.py", "views/dense_block.py"):
        at.switch_page(view).run()
        assert not at.exception
        side = [e.value for e in at.sidebar.error]
        main = [e.value for e in at.main.error]
        assert len(side) == 1 and side[0].startswith("Could not load the checkpoint broken.pt:")
        assert len(main) == 1 and main[0].startswith("Could not load the checkpoint broken.pt:"), view
        assert "Traceback" not in main[0]
        assert not at.main.metric and not at.main.get("plotly_chart")  # no other model's results


def test_multilabel_checkpoint_shows_per_label_sigmoids(tmp_path, make_png):
    cfg = TINY_CKPT.replace(num_classes=4, multilabel=True)
    model = densenet.DenseNet(cfg, class_names=["Effusion", "Nodule", "Mass", "Edema"],
                              preprocessing=custom(size=32, channels=1, mean=(0.5,), std=(0.25,)))
    densenet.save_checkpoint(model, tmp_path / "xray.safetensors")
    at = upload_checkpoint(ok(new_app().run()), (tmp_path / "xray.safetensors").read_bytes(), "xray.safetensors")
    upload_image(ok(at), make_png(2))
    at.switch_page("views/attention.py")
    ok(at.run())
    assert charts(at, "topk")["layout"]["title"]["text"].startswith("per-finding sigmoid: ")
    assert "(sigmoid)" in [m for m in at.metric if m.label == "Prediction"][0].proto.delta
    assert widget(at, "selectbox", "target").options == ["Effusion", "Nodule", "Mass", "Edema"]


def test_dicom_sample_is_read():
    names = [s.name for s in inputs.samples()]
    dicom = [n for n in names if n.endswith(".dcm")]
    if not dicom:
        pytest.skip("no DICOM sample bundled yet (assets/samples/)")
    at = ok(new_app().run())
    widget(at, "selectbox", "sample").set_value(dicom[0]).run()
    ok(at)
    assert at.sidebar.get("image")[0].proto.imgs[0].caption.startswith(dicom[0])


def test_imagenet_weights_offline_say_how_to_get_them(monkeypatch):
    from densenet import pretrained

    name = densenet.IMAGENET_VARIANTS[0]
    if pretrained.cache_path(name).is_file():
        pytest.skip("the ImageNet weights are in the hub cache on this machine")

    def offline(url, dest):
        raise __import__("urllib.error").error.URLError("no route to host")

    monkeypatch.setattr(pretrained, "_download", offline)  # no network in tests
    at = ok(new_app().run())
    widget(at, "selectbox", "model_source").set_value("imagenet").run()
    assert "not on this machine" in at.warning[0].value
    assert any(c.startswith("Showing the ") and c.endswith(" until then.") for c in captions(at))
    assert metric(at, "Dense links")  # still drawing the default model
    at.button(key="imagenet_download").click().run()
    assert not at.exception
    message = at.error[0].value
    assert "offline" in message and pretrained.weights_url(name) in message


# --- sessions at once ------------------------------------------------------------------------------

def expected(checkpoint: bytes, png: bytes) -> tuple[str, str]:
    """The prediction and the raw-map caption for one image, computed without the app."""
    model = densenet.load_checkpoint(checkpoint)
    x = densenet.preprocess(densenet.load_image(png), model)
    trace = model.trace(x, keep_graph=True)
    top = int(trace.logits.argmax())
    layer = default_cam_layer(model)
    raw = explain.cams_from_trace(trace, "gradcam", top, [layer], tuple(x.shape[-2:]))[layer].raw
    return CLASSES[top], (f"Raw map {tuple(raw.shape)}, range [{float(raw.min()):.3g}, {float(raw.max()):.3g}]; "
                          "the overlay is min–max scaled.")


def test_two_sessions_at_once_each_get_their_own_prediction_and_map(checkpoint, make_png, monkeypatch):
    # AppTest compiles the page scripts afresh on every run, and CPython 3.11 before 3.11.8 can fail
    # compiling in two threads at once ("AST constructor recursion depth mismatch"): compile one at a
    # time. Everything else (the model, traces, maps) runs concurrently.
    from streamlit.runtime.scriptrunner.script_cache import ScriptCache

    compile_lock = threading.Lock()
    get_bytecode = ScriptCache.get_bytecode

    def serial_get_bytecode(self, script_path):
        with compile_lock:
            return get_bytecode(self, script_path)

    monkeypatch.setattr(ScriptCache, "get_bytecode", serial_get_bytecode)
    pngs, wanted = [], []
    for seed in range(40):  # two pictures the tiny model classifies differently
        png = make_png(seed)
        exp = expected(checkpoint, png)
        if not wanted or exp[0] != wanted[0][0]:
            pngs.append(png)
            wanted.append(exp)
        if len(pngs) == 2:
            break
    assert len(pngs) == 2

    sessions = []
    for png in pngs:
        at = upload_checkpoint(ok(new_app().run()), checkpoint)
        upload_image(ok(at), png)
        at.switch_page("views/attention.py")
        sessions.append(at)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(at: AppTest) -> None:
        try:
            barrier.wait()
            at.run()
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(at,)) for at in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for at, (cls, caption) in zip(sessions, wanted):
        ok(at)
        assert metric(at, "Prediction") == cls
        assert caption in captions(at)

    # the shared, cached model was never touched
    spec = sources.ModelSpec("checkpoint", "tiny.safetensors", digest=sources.digest(checkpoint))
    model = sources._load(spec.key, spec, lambda: checkpoint)
    assert not model.training
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert not any(m._forward_hooks or m._backward_hooks or m._forward_pre_hooks for m in model.modules())


# --- configuration and pure helpers -----------------------------------------------------------------

def test_streamlit_config_hides_tracebacks_and_limits_uploads():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] == "none"
    assert config["server"]["maxUploadSize"] >= sources.MAX_CHECKPOINT_MB


@pytest.mark.parametrize("name", ["densenet121", "densenet264", "densenet-bc-100-12"])
def test_connectivity_matrix_fills_one_cell_per_link(name):
    for block in densenet.topology(name).blocks:
        fig = figures.connectivity_matrix(block, selected=2)
        assert count_cells(fig) == block.num_links == block.num_layers * (block.num_layers + 1) // 2
        z = np.asarray(fig.data[0].z, dtype=float)
        assert np.isnan(z[0, 1]) and z[1, 0] == 2.0  # layer 1 cannot read layer 1; layer 2's inputs are marked


def test_big_blocks_open_as_a_matrix_and_the_layer_table_shows_its_total():
    at = ok(new_app().run())
    widget(at, "selectbox", "model_source").set_value("variant").run()
    widget(at, "selectbox", "variant").set_value("densenet264").run()
    widget(ok(at), "selectbox", "block").set_value(3).run()
    assert widget(ok(at), "radio", "conn_view.True").value == "matrix"
    assert count_cells(charts(at, "conn_graph")) == 2080
    assert "Cells filled in the matrix: 2,080." in " ".join(captions(at))
    assert list(at.dataframe[0].value["Layers"])[-1] == "Total"
    widget(at, "selectbox", "block").set_value(1).run()
    assert widget(ok(at), "radio", "conn_view.False").value == "graph"  # 6 layers: arcs read well
    at.switch_page("views/dense_block.py").run()
    widget(ok(at), "selectbox", "block").set_value(3).run()
    chain = next(m.value for m in ok(at).markdown if "→" in m.value)
    assert chain.count("→") < 12 and "… (" in chain  # not a wall of 65 shapes


@pytest.mark.parametrize("name", ["densenet121", "densenet-bc-100-12", "densenet-40-12"])
def test_connectivity_figure_draws_one_edge_per_link(name):
    for block in densenet.topology(name).blocks:
        fig = figures.connectivity_graph(block, selected=2)
        L = block.num_layers
        assert count_links(fig) == L * (L + 1) // 2 == block.num_links
        hover = next(t for t in fig.data if t.name == "link info").hovertext
        assert len(hover) == block.num_links
        start, stop = block.node_channels(1)
        assert f"channels {start}–{stop - 1}" in hover[block.links.index((1, 2))]  # layer 1's k maps


def test_feature_reuse_matches_closed_form():
    """Set each layer's first conv to |w| = source index + 1 on each source slice: the heat map reads it back."""
    cfg = densenet.DenseNetConfig(growth_rate=3, block_config=(3, 2), num_init_features=5, stem="cifar", num_classes=2)
    model = densenet.DenseNet(cfg).eval()
    topo = densenet.topology(cfg, 32)
    with torch.no_grad():
        for layer in range(1, 4):
            w = model.get_submodule(f"features.denseblock1.denselayer{layer}").conv1.weight
            for i, piece in enumerate(topo.provenance(f"features.denseblock1.denselayer{layer}")):
                w[:, piece.start:piece.stop] = -(i + 1.0)  # sign must not matter
    reuse = feature_reuse(model, topo, 0)
    assert reuse.targets[-1] == "features.transition1"
    expected_rows = np.array([[1, np.nan, np.nan, np.nan], [1, 2, np.nan, np.nan], [1, 2, 3, np.nan]])
    np.testing.assert_allclose(reuse.matrix[:3], expected_rows)
    assert np.isfinite(reuse.matrix[3]).all()  # the transition reads everything
    last = feature_reuse(model, topo, 1)
    assert last.targets[-1] == "classifier" and last.matrix.shape == (3, 3)


# --- controls always show what is drawn (one mechanism: dashboard/session.py) ---------------------------

def overlay_caption(at: AppTest) -> str:
    return images(at)[1].proto.imgs[0].caption


def test_attention_controls_survive_a_refused_upload(make_png):
    at = use_tiny(ok(new_app().run()))
    at.switch_page("views/attention.py").run()
    widget(at, "selectbox", "cam_layer").set_value("features.denseblock1")
    widget(at, "slider", "alpha").set_value(0.7)
    widget(at, "selectbox", "cam_cmap").set_value("viridis")
    ok(at.run())
    upload_image(at, b"not an image at all", "refused.png")
    assert at.main.info[0].value.startswith("Could not read refused.png")
    upload_image(at, make_png(4), "fine.png")
    ok(at)
    assert widget(at, "selectbox", "cam_layer").value == "features.denseblock1"
    assert widget(at, "slider", "alpha").value == 0.7
    assert widget(at, "selectbox", "cam_cmap").value == "viridis"
    assert " · denseblock1 · " in overlay_caption(at)  # what is drawn is what the controls say
    assert "Overlay: viridis at opacity 0.70." in captions(at)


def test_block_picker_labels_follow_the_model():
    at = ok(new_app().run())
    widget(at, "selectbox", "model_source").set_value("variant").run()
    widget(at, "selectbox", "variant").set_value("densenet264").run()
    at.switch_page("views/dense_block.py").run()
    widget(ok(at), "selectbox", "block").set_value(3).run()
    assert widget(ok(at), "selectbox", "block").options[2] == "block 3 (64 layers)"
    widget(at, "selectbox", "variant").set_value("densenet121").run()
    picker = widget(ok(at), "selectbox", "block")
    assert picker.value == 3 and picker.options[2] == "block 3 (24 layers)"
    assert any("= (14, 14, 256 + 24·32)" in m.value for m in at.markdown)  # the page draws 24 layers too


def test_custom_block_label_is_never_one_change_behind_and_knobs_are_kept():
    at = use_tiny(ok(new_app().run()), k=4, blocks=(3, 2))
    at.switch_page("views/dense_block.py").run()
    assert widget(ok(at), "selectbox", "block").options[0] == "block 1 (3 layers)"
    widget(at, "slider", "custom.L1").set_value(9).run()
    assert widget(ok(at), "selectbox", "block").options[0] == "block 1 (9 layers)"
    widget(at, "slider", "custom.k").set_value(1).run()
    widget(at, "selectbox", "model_source").set_value("variant").run()
    widget(ok(at), "selectbox", "model_source").set_value("custom").run()
    ok(at)
    assert widget(at, "slider", "custom.k").value == 1 and widget(at, "slider", "custom.L1").value == 9
    assert any("k=1 ·" in c and "blocks (9, 2)" in c for c in captions(at))  # and the model uses them


def big_fast_model(at: AppTest) -> AppTest:
    """A custom net past the app's "small model" line (3e8 MACs: slow methods wait for a click) that
    still runs them in seconds: one two-layer block on the ImageNet stem at 224 px."""
    widget(ok(at), "selectbox", "model_source").set_value("custom").run()
    widget(at, "slider", "custom.blocks").set_value(1).run()
    widget(at, "slider", "custom.L1").set_value(2)
    widget(at, "slider", "custom.k").set_value(32)
    widget(at, "slider", "custom.c0").set_value(64)
    widget(at, "selectbox", "custom.stem").set_value("imagenet")
    return ok(at.run())


def test_finished_slow_work_replaces_its_prompt(monkeypatch):
    monkeypatch.setenv("DENSENET_AT_ONCE_S", "0")  # a method estimated under 2 s would otherwise run at once
    at = big_fast_model(new_app().run())
    at.switch_page("views/attention.py").run()
    widget(ok(at), "selectbox", "method").set_value("smoothgrad").run()
    assert [b.label for b in at.button] == ["Compute SmoothGrad"]
    assert any("takes a while" in i.value for i in at.info)
    at.button(key="run_attr").click().run()
    ok(at)
    assert "SmoothGrad · input" in overlay_caption(at)
    assert "Compute SmoothGrad" not in [b.label for b in at.button]
    assert not any("takes a while" in i.value for i in at.info)
    # the trust checks: the same, and their results replace the prompt
    widget(at, "toggle", "trust_open").set_value(True).run()
    assert "Run the checks" in [b.label for b in ok(at).button]
    at.button(key="run_trust").click().run()
    ok(at)
    assert metric(at, "Deletion AUC")
    assert "Run the checks" not in [b.label for b in at.button]
    at.run()  # a rerun shows the kept results without a prompt
    assert "Compute SmoothGrad" not in [b.label for b in ok(at).button] and metric(at, "Deletion AUC")


def test_a_method_registered_in_one_place_is_offered_and_drawn():
    import torch as _torch

    def channel_sum(a: _torch.Tensor, g: _torch.Tensor) -> _torch.Tensor:
        return _torch.ones_like(a[:, :, :1, :1])  # every channel weighs 1: the map is sum_c A_c

    record = explain.gradient_cam("test-channel-sum", "Channel sum (test)", "Every channel weighs one.",
                                  channel_sum)
    explain.register(record)
    try:
        at = use_tiny(ok(new_app().run()))
        at.switch_page("views/attention.py").run()
        method = widget(ok(at), "selectbox", "method")
        assert "Channel sum (test)" in method.options
        method.set_value("test-channel-sum").run()
        ok(at)
        assert "Channel sum (test) · norm5" in overlay_caption(at)
        assert "Channel sum (test): Every channel weighs one." in captions(at)
        an = at.session_state["_cache_analysis"]
        (analysis_,) = an.values()
        raw = analysis_.trace.activations["features.norm5"][0].detach().sum(dim=0)
        assert (f"Raw map {tuple(raw.shape)}, range [{float(raw.min()):.3g}, {float(raw.max()):.3g}]; "
                "the overlay is min–max scaled.") in captions(at)
    finally:
        explain.unregister("test-channel-sum")


def test_a_feature_maps_session_holds_no_autograd_graph():
    at = use_tiny(ok(new_app().run()))
    at.switch_page("views/feature_maps.py").run()
    (an,) = ok(at).session_state["_cache_analysis"].values()
    assert not an.has_graph and not an.trace.logits.requires_grad
    assert all(a.grad_fn is None and not a.requires_grad for a in an.trace.activations.values())
    at.switch_page("views/attention.py").run()  # a gradient map asks for the graph: traced once more, with it
    (an,) = ok(at).session_state["_cache_analysis"].values()
    assert an.has_graph and an.trace.logits.requires_grad


def test_presenter_mode_hides_the_sidebar_and_enlarges_charts():
    at = ok(new_app().run())
    widget(at, "toggle", "presenter").set_value(True).run()
    css = " ".join(h.proto.body for h in ok(at).get("html"))
    assert '[data-testid="stSidebar"]' in css and "display: none" in css and "font-size: 20px" in css
    growth = charts(at, "growth_chart")
    assert growth["layout"]["font"]["size"] >= 17  # chart labels grow with the text
    at.switch_page("views/dense_block.py").run()
    assert widget(ok(at), "toggle", "presenter").value  # kept across pages
    widget(at, "toggle", "presenter").set_value(False).run()
    assert "font-size: 20px" not in " ".join(h.proto.body for h in ok(at).get("html"))


def test_the_play_control_walks_the_block_layer_by_layer():
    import time as _time

    at = use_tiny(ok(new_app().run()), k=4, blocks=(3, 2))
    at.switch_page("views/dense_block.py").run()
    assert widget(ok(at), "slider", "step.features.denseblock1").value == 1
    widget(at, "select_slider", "db_pace").set_value(0.5)
    widget(at, "toggle", "db_play").set_value(True).run()
    seen = [widget(ok(at), "slider", "step.features.denseblock1").value]
    for _ in range(3):  # AppTest runs no timers: each run stands for one tick of the fragment
        _time.sleep(0.5)
        seen.append(widget(ok(at.run()), "slider", "step.features.denseblock1").value)
    assert seen == [1, 2, 3, 1]  # one layer per tick, looping over the block's 3 layers
    assert metric(at, "Input to layer 1") == "(32, 32, 8)"
    lit = next(t for t in charts(at, "step_links")["data"] if t["name"] == "inputs of layer 1")
    assert sum(v is None for v in lit["x"]) == 1  # the link into layer 1 is lit
    widget(at, "toggle", "db_play").set_value(False).run()
    assert not widget(ok(at), "slider", "step.features.denseblock1").disabled


# --- the practitioner's own model, read right -------------------------------------------------------

def test_a_14_output_checkpoint_becomes_14_findings_with_a_names_preset(tmp_path, make_png):
    from densenet import labels

    torch.manual_seed(3)
    model = densenet.DenseNet(TINY_CKPT.replace(num_classes=14))
    path = tmp_path / "chexnet_like.pth"
    torch.save(model.state_dict(), path)  # a bare state dict: the file says nothing about its outputs
    at = upload_checkpoint(ok(new_app().run()), path.read_bytes(), "chexnet_like.pth")
    upload_image(ok(at), make_png(5))
    at.switch_page("views/attention.py").run()
    assert metric(ok(at), "Prediction").startswith("class ") and any("(softmax)" in c for c in captions(at)[:2])
    key = next(w.key for w in at.selectbox if w.key.startswith("outputs.names.")).split(":")[0]
    widget(at, "selectbox", key).set_value("chexnet").run()
    ok(at)
    findings = labels.PRESETS["chexnet"].names
    assert widget(at, "selectbox", "target").options == list(findings)
    assert metric(at, "Findings above threshold").endswith(" of 14")
    bar = charts(at, "topk")
    assert bar["layout"]["title"]["text"].startswith("per-finding sigmoid")
    assert sorted(bar["data"][0]["y"]) == sorted(findings)
    probs = decode(bar["data"][0]["x"])
    assert abs(float(probs.sum()) - 1.0) > 1e-3  # independent sigmoids: they do not sum to one like a softmax
    assert "Across findings" in [t.label for t in at.tabs]
    assert any(b.label == "Converted checkpoint (.safetensors)" for b in at.sidebar.get("download_button"))
    # back to "as in the file": softmax again, the choice was per checkpoint
    widget(at, "selectbox", key).set_value("file").run()
    assert metric(ok(at), "Prediction").startswith("class ")


def test_dicom_window_changes_what_the_model_sees_and_exports():
    names = [s.name for s in inputs.samples()]
    ct = next(n for n in names if "CT" in n)
    at = ok(new_app().run())
    widget(at, "selectbox", "sample").set_value(ct).run()
    at.switch_page("views/attention.py").run()
    (first,) = ok(at).session_state["_cache_analysis"].values()
    window = next(w for w in at.selectbox if w.key.startswith("window."))
    assert "lung" in window.options[1] or any("lung" in o for o in window.options)
    window.set_value("lung").run()
    (second,) = ok(at).session_state["_cache_analysis"].values()
    assert not torch.equal(first.x, second.x)  # the window reaches the model's input
    assert any(b.label == "Export to DICOM (Secondary Capture)" for b in at.get("download_button"))


# --- forward-only CAMs and relevance on the dense links ----------------------------------------------

def test_the_relevance_overlay_draws_every_link_of_the_block():
    at = ok(new_app().run())  # the demo model and its nodule sample
    widget(at, "toggle", "relevance_overlay").set_value(True).run()
    spec = charts(ok(at), "conn_graph")
    block = densenet.topology(densenet.demo.load().config, 128).blocks[0]
    assert count_links(spec) == block.num_links  # every link, drawn by its relevance
    assert "the evidence for “nodule”" in spec["layout"]["title"]["text"]
    caption = next(c for c in captions(at) if c.startswith("For “nodule”, layer "))
    assert "reads mostly" in caption
    at.switch_page("views/feature_maps.py").run()  # the same overlay on the feature maps' graph
    assert count_links(charts(ok(at), "fm_graph")) > 0
    assert any(c.startswith("For “nodule”, layer ") for c in captions(at))


def test_ablation_cam_is_offered_with_a_measured_estimate_and_a_preview(monkeypatch):
    monkeypatch.setenv("DENSENET_AT_ONCE_S", "0")  # else its ≈ 0.1 s on the demo model runs at once (issue 21)
    at = ok(new_app().run())
    at.switch_page("views/attention.py").run()
    label = explain.method("ablationcam").label
    widget(ok(at), "selectbox", "method").set_value("ablationcam").run()
    note = next(i.value for i in ok(at).info if "takes a while" in i.value)
    assert "≈" in note and "on this CPU" in note  # timed on a batch of the real work
    widget(at, "toggle", "preview.ablationcam").set_value(True).run()
    at.button(key="run_attr").click().run()
    assert f"{label} · denseblock2 · nodule" in overlay_caption(ok(at))
