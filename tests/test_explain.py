"""The CAM family, captum attributions and overlays (densenet.explain).

Parity needs BatchNorm weights, biases and running statistics randomised first: with fresh
weights every activation is positive, no ReLU acts, and two implementations agree by accident.
"""

from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
import torch
from torch import nn

import densenet
import densenet.explain as E
from densenet import DenseNetConfig, Trace
from densenet.testing import randomise_batchnorm
from tests.conftest import TINY
from tests.conftest import blob_image as image

# An ImageNet-stem DenseNet (stem, 4 blocks, 3 transitions, norm5) small enough for 64 px.
# A CIFAR-stem DenseNet-BC: layers at 32, 16 and 8 px.
TINY_BC = densenet.cifar_bc(depth=22, growth_rate=8)
GRADIENT_METHODS = ["gradcam", "hirescam", "gradcam++", "xgradcam", "layercam"]
# captum says so on every Guided Grad-CAM; its hooks are on our private copy (attributions.py
# filters this warning too, but pytest resets the filters for every test).
pytestmark = pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU activations")


def make(config: DenseNetConfig = TINY, seed: int = 0) -> densenet.DenseNet:
    torch.manual_seed(seed)
    return randomise_batchnorm(densenet.create(config), seed).eval()


def hooks_left(model: nn.Module) -> list[str]:
    """Every hook on any module or parameter of ``model``, and any global module hook."""
    found = []
    for name, m in model.named_modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
                     "_full_backward_hooks"):
            if getattr(m, attr, None):
                found.append(f"{name or '<root>'}.{attr}")
    for name, p in model.named_parameters():
        if p._backward_hooks:
            found.append(f"{name}._backward_hooks")
    mod = torch.nn.modules.module
    for attr in ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks"):
        if getattr(mod, attr, None):
            found.append(attr)
    return found


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_untouched(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    assert not hooks_left(model)
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())
    assert not any(m.training for m in model.modules())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # The test machine is shared: intra-op threads fighting over busy cores slow these tiny
    # models down tenfold.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model(one_thread) -> densenet.DenseNet:
    return make()


# --- parity with captum -----------------------------------------------------------------------

@pytest.mark.parametrize("layer", ["features.norm5", "features.denseblock3", "features.transition2",
                                   "features.denseblock2.denselayer1"])
def test_gradcam_equals_captum_layergradcam(model: densenet.DenseNet, layer: str) -> None:
    from captum.attr import LayerGradCam

    x = image(1, size=128)  # norm5 at 4x4
    trace = model.trace(x, [layer], keep_graph=True)
    # The first class whose map has both signs: there the ReLU convention matters.
    maps = [E.cams_from_trace(trace, "gradcam", t)[layer] for t in range(10)]
    target = next(t for t, m in enumerate(maps) if m.raw.min() < 0 < m.raw.max())
    ours = maps[target]
    captum = LayerGradCam(model, model.get_submodule(layer))
    plain = captum.attribute(x, target, relu_attributions=False)[0, 0].detach().numpy()
    relu = captum.attribute(x, target, relu_attributions=True)[0, 0].detach().numpy()

    scale = np.abs(plain).max()
    np.testing.assert_allclose(ours.raw, plain, rtol=0, atol=1e-5 * scale)  # ours.raw: before ReLU
    np.testing.assert_allclose(np.maximum(ours.raw, 0), relu, rtol=0, atol=1e-5 * scale)
    assert ours.target == target
    assert not hooks_left(model)


def test_trace_activations_equal_module_outputs(model: densenet.DenseNet) -> None:
    # What captum hooks (the module's output) is what we trace, for every tap.
    x = image(2)
    trace = model.trace(x)
    seen = {}
    handles = [model.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, o.detach()))
               for n in model.tap_names]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    for name, act in trace.activations.items():
        torch.testing.assert_close(act, seen[name], rtol=0, atol=0)


# --- one pass ---------------------------------------------------------------------------------

@pytest.mark.parametrize("method", [m.name for m in E.methods(uses_trace=True)])
def test_multi_layer_call_equals_single_layer_calls(model: densenet.DenseNet, method: str) -> None:
    x = image(3)
    layers = ["features.denseblock1", "features.transition1", "features.denseblock3.denselayer2", "features.norm5"]
    together = E.cam_maps(model, x, method, target=5, layers=layers)
    assert list(together) == layers
    for layer in layers:
        alone = E.cam_maps(model, x, method, target=5, layers=[layer])[layer]
        np.testing.assert_allclose(together[layer].raw, alone.raw, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(together[layer].map, alone.map, rtol=1e-5, atol=1e-6)


def test_one_backward_for_all_layers(model: densenet.DenseNet, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    grad = torch.autograd.grad

    def counting(outputs, inputs, *args, **kwargs):
        calls.append(len(inputs))
        return grad(outputs, inputs, *args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", counting)
    maps = E.grad_cam(model, image(4))
    assert list(maps) == E.default_layers(model) == [
        "features.denseblock1", "features.denseblock2", "features.denseblock3", "features.denseblock4",
        "features.norm5"]
    assert calls == [5]


def test_cams_from_trace_reuses_the_trace(model: densenet.DenseNet) -> None:
    trace = model.trace(image(5), keep_graph=True)
    a = E.cams_from_trace(trace, "gradcam", 2, ["features.norm5", "features.transition3"])
    b = E.cams_from_trace(trace, "layercam", 2, ["features.norm5"])  # cached gradients, no new pass
    c = E.cams_from_trace(trace, "eigencam", layers="features.norm5", size=(20, 30))
    assert a["features.norm5"].map.shape == (64, 64) and a["features.norm5"].raw.shape == (2, 2)
    assert b["features.norm5"].method == "layercam"
    assert c["features.norm5"].map.shape == (20, 30) and c["features.norm5"].target is None
    top = E.cams_from_trace(trace, "gradcam", layers="features.norm5")["features.norm5"]
    assert top.target == int(trace.logits.argmax())


def test_batched_trace_explains_the_chosen_sample(model: densenet.DenseNet) -> None:
    x = torch.cat([image(6), image(7)])
    trace = model.trace(x, ["features.norm5", "features.denseblock2"], keep_graph=True)
    second = E.cams_from_trace(trace, "gradcam", 1, index=1)
    alone = E.cam_maps(model, image(7), "gradcam", 1, ["features.norm5", "features.denseblock2"])
    for layer in alone:
        np.testing.assert_allclose(second[layer].raw, alone[layer].raw, rtol=1e-4, atol=1e-6)


# --- the model stays untouched ----------------------------------------------------------------

def test_no_grad_no_hook_no_change(model: densenet.DenseNet) -> None:
    before = snapshot(model)
    x = image(8)
    x_before = x.clone()
    for method in [m.name for m in E.methods(uses_trace=True)]:
        E.cam(model, x, method, layers=model.tap_names)
    E.integrated_gradients(model, x, steps=2)
    E.smoothgrad(model, x, samples=2)
    E.occlusion(model, x, window=32, stride=32)
    E.guided_grad_cam(model, x)
    assert not x.requires_grad and torch.equal(x, x_before)
    assert_untouched(model, before)


def test_no_hook_left_after_an_exception(model: densenet.DenseNet, monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(model)

    def broken(*args, **kwargs):
        raise RuntimeError("backward failed")

    monkeypatch.setattr(torch.autograd, "grad", broken)  # fails after the forward, mid-call
    with pytest.raises(RuntimeError, match="backward failed"):
        E.grad_cam(model, image(9))
    with pytest.raises(RuntimeError, match="backward failed"):
        E.guided_grad_cam(model, image(9))
    with pytest.raises(RuntimeError, match="backward failed"):
        E.integrated_gradients(model, image(9), steps=2)
    monkeypatch.undo()
    assert_untouched(model, before)


def test_concurrent_calls_on_one_model(model: densenet.DenseNet) -> None:
    images = [image(100 + i) for i in range(8)]
    expected = [(E.grad_cam(model, x, layers=model.tap_names), E.guided_grad_cam(model, x).raw,
                 E.integrated_gradients(model, x, steps=4).raw) for x in images]
    results: list = [None] * 8
    errors: list = []
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        try:
            barrier.wait()
            results[i] = (E.grad_cam(model, images[i], layers=model.tap_names),
                          E.guided_grad_cam(model, images[i]).raw,
                          E.integrated_gradients(model, images[i], steps=4).raw)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for (maps, guided, ig), (exp_maps, exp_guided, exp_ig) in zip(results, expected):
        for layer in exp_maps:
            np.testing.assert_allclose(maps[layer], exp_maps[layer], atol=1e-5)
        np.testing.assert_allclose(guided, exp_guided, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(ig, exp_ig, rtol=1e-4, atol=1e-6)
    # and they are different images, so their maps differ
    assert not all(np.allclose(results[0][0][layer], results[1][0][layer]) for layer in model.tap_names)
    assert not hooks_left(model)


# --- targets ----------------------------------------------------------------------------------

def test_multilabel_one_channel_eighteen_labels() -> None:
    xray = make(TINY.replace(in_channels=1, num_classes=18, multilabel=True), seed=1)
    x = image(10, channels=1)
    per_label = {label: E.cam_maps(xray, x, "gradcam", label, ["features.norm5", "features.denseblock3"])
                 for label in (0, 5, 17)}
    for label, maps in per_label.items():
        assert all(m.target == label and m.map.shape == (64, 64) for m in maps.values())
    raws = [per_label[label]["features.denseblock3"].raw for label in (0, 5, 17)]
    assert not np.allclose(raws[0], raws[1]) and not np.allclose(raws[1], raws[2])
    default = E.cam_maps(xray, x, "gradcam", layers="features.norm5")["features.norm5"]
    assert default.target == int(xray(x).argmax())
    with pytest.raises(ValueError, match="out of range"):
        E.grad_cam(xray, x, target=18)


def test_bad_arguments(model: densenet.DenseNet) -> None:
    x = image(11)
    with pytest.raises(ValueError, match="unknown explanation method"):
        E.cam(model, x, "no-such-cam")
    with pytest.raises(ValueError, match="unknown layer"):
        E.grad_cam(model, x, layers=["features.nope"])
    with pytest.raises(TypeError, match="target"):
        E.grad_cam(model, x, target=1.5)
    with pytest.raises(ValueError, match="keep_graph=True"):
        E.cams_from_trace(model.trace(x), "gradcam")
    with pytest.raises(ValueError, match="were not traced"):
        E.cams_from_trace(model.trace(x, ["features.norm5"]), "eigencam", layers=["features.denseblock1"])
    with pytest.raises(ValueError, match="input channel"):
        E.grad_cam(model, torch.randn(1, 1, 64, 64))
    fresh = densenet.create(TINY)  # fresh models are in train mode
    with pytest.raises(ValueError, match="train mode"):
        E.grad_cam(fresh, x)
    assert fresh.training


# --- closed forms -----------------------------------------------------------------------------

def hand_trace() -> Trace:
    """Two 2x2 channels A0, A1 and logit 0 = sum_c v_c * sum_ij A_cij^2 / 2 with v = (1, -2),
    so the gradient is G_c = v_c * A_c."""
    a = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [-1.0, 2.0]]]], requires_grad=True)
    v = torch.tensor([1.0, -2.0])
    logit0 = (v[:, None, None] * a[0] ** 2).sum() / 2
    logits = torch.stack([logit0, a.sum() * 0]).unsqueeze(0)
    return Trace(logits=logits, activations={"a": a}, inputs=torch.zeros(1, 1, 2, 2))


@pytest.mark.parametrize(("method", "raw"), [
    ("gradcam", [[2.5, 4.0], [8.5, 8.0]]),     # mean G = (2.5, -1): 2.5 A0 - A1
    ("hirescam", [[1.0, 2.0], [7.0, 8.0]]),    # A0^2 - 2 A1^2
    ("layercam", [[1.0, 4.0], [7.0, 16.0]]),   # relu(G) A: only G1 at (1, 0) is positive
    ("xgradcam", [[3.0, 0.0], [15.0, 0.0]]),   # w = (30 / 10, -12 / 2) = (3, -6)
    ("activation-mean", [[0.5, 1.5], [1.0, 3.0]]),
    ("activation-max", [[1.0, 2.0], [3.0, 4.0]]),
])
def test_closed_form(method: str, raw: list) -> None:
    m = E.cams_from_trace(hand_trace(), method, target=0)["a"]
    np.testing.assert_allclose(m.raw, raw, rtol=1e-6)
    r = np.maximum(np.array(raw), 0) if method in GRADIENT_METHODS else np.array(raw)
    np.testing.assert_allclose(m.map, (r - r.min()) / (r.max() - r.min()), rtol=1e-6)


def test_closed_form_gradcampp() -> None:
    a = hand_trace().activations["a"].detach().numpy()[0]
    g = a * np.array([1.0, -2.0])[:, None, None]
    alpha = g ** 2 / (2 * g ** 2 + a.sum(axis=(1, 2))[:, None, None] * g ** 3 + 1e-6)
    alpha[g == 0] = 0
    w = (np.maximum(g, 0) * alpha).sum(axis=(1, 2))
    m = E.cams_from_trace(hand_trace(), "gradcam++", target=0)["a"]
    np.testing.assert_allclose(m.raw, (w[:, None, None] * a).sum(0), rtol=1e-5)


def test_closed_form_eigencam() -> None:
    # Rank one: A_c = u_c * s, so the first component is s - mean(s), scaled by |u|, sign +.
    s = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    a = torch.stack([s, 2 * s])[None]
    trace = Trace(logits=torch.zeros(1, 2), activations={"a": a}, inputs=torch.zeros(1, 1, 4, 4))
    m = E.cams_from_trace(trace, "eigencam")["a"]
    np.testing.assert_allclose(m.raw, (s - 2.5).numpy() * np.sqrt(5), rtol=1e-5)
    assert m.map.shape == (4, 4) and m.map.max() == 1 and m.map.min() == 0
    flipped = E.cams_from_trace(Trace(logits=torch.zeros(1, 2), activations={"a": -a},
                                      inputs=torch.zeros(1, 1, 4, 4)), "eigencam")["a"]
    assert np.corrcoef(flipped.raw.ravel(), (-a).mean(1).flatten().numpy())[0, 1] > 0.99


def test_constant_map_stays_zero() -> None:
    a = torch.ones(1, 3, 2, 2, requires_grad=True)
    trace = Trace(logits=(a.sum() * torch.ones(1, 2)).clone(), activations={"a": a}, inputs=torch.zeros(1, 1, 8, 8))
    for method in ("gradcam", "activation-mean"):
        m = E.cams_from_trace(trace, method, target=0)["a"]
        assert m.map.shape == (8, 8) and not m.map.any() and np.isfinite(m.map).all()


# --- parity with pytorch-grad-cam -------------------------------------------------------------

@pytest.mark.parametrize("method", GRADIENT_METHODS)
@pytest.mark.parametrize("layer", ["features.norm5", "features.denseblock2"])
def test_matches_pytorch_grad_cam(model: densenet.DenseNet, method: str, layer: str) -> None:
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = {"gradcam": pgc.GradCAM, "hirescam": pgc.HiResCAM, "gradcam++": pgc.GradCAMPlusPlus,
           "xgradcam": pgc.XGradCAM, "layercam": pgc.LayerCAM}[method]
    x, target = image(12), 4
    theirs_model = copy.deepcopy(model)  # pytorch-grad-cam fills .grad and calls .eval()
    with cls(model=theirs_model, target_layers=[theirs_model.get_submodule(layer)]) as explainer:
        theirs = explainer(input_tensor=x, targets=[ClassifierOutputTarget(target)])[0]
    ours = E.cam(model, x, method, target, [layer])[layer]
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


# --- captum attributions ----------------------------------------------------------------------

def test_captum_attributions_are_finite_maps(model: densenet.DenseNet) -> None:
    x = image(13)
    fractions: list[float] = []
    results = [E.integrated_gradients(model, x, target=2, steps=4),
               E.smoothgrad(model, x, target=2, samples=4),
               E.occlusion(model, x, target=2, window=16, stride=8, progress=fractions.append),
               E.guided_grad_cam(model, x, target=2, layer="features.denseblock3")]
    for r in results:
        assert r.raw.shape == r.map.shape == (64, 64)
        assert r.raw.dtype == r.map.dtype == np.float32
        assert np.isfinite(r.raw).all() and r.map.min() >= 0 and r.map.max() == 1
        assert r.target == 2 and r.raw.min() < 0 < r.raw.max()
        assert r.clipped(95).max() == 1
    assert [r.method for r in results] == ["integrated-gradients", "smoothgrad", "occlusion", "guided-gradcam"]
    assert fractions[-1] == 1.0 and fractions == sorted(fractions) and len(fractions) > 2
    assert E.integrated_gradients(model, x, steps=2).target == int(model(x).argmax())


def test_integrated_gradients_completeness(model: densenet.DenseNet) -> None:
    # The attributions sum to f(x) - f(0) (up to the quadrature error).
    x = image(14)
    r = E.integrated_gradients(model, x, target=1, steps=64)
    with torch.no_grad():
        gap = float(model(x)[0, 1] - model(torch.zeros_like(x))[0, 1])
    assert abs(r.raw.sum() - gap) < 0.05 * abs(gap) + 1e-3


# --- overlay ----------------------------------------------------------------------------------

def test_overlay_shapes_and_dtypes() -> None:
    rng = np.random.default_rng(0)
    heat = rng.random((16, 24), dtype=np.float32)
    for img in (rng.random((16, 24)), rng.random((16, 24, 1)), rng.random((16, 24, 3)),
                (rng.random((16, 24, 3)) * 255).astype(np.uint8)):
        out = E.overlay(img, heat, alpha=0.4, colormap="viridis")
        assert out.shape == (16, 24, 3) and out.dtype == np.uint8
    grey = rng.random((16, 24))
    np.testing.assert_array_equal(E.overlay(grey, heat, alpha=0.0)[:, :, 0], np.rint(grey * 255))
    assert E.overlay(grey, np.zeros((4, 6)), alpha=1.0).shape == (16, 24, 3)  # map resized
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        E.overlay(grey * 2, heat)
    with pytest.raises(ValueError, match="colormap"):
        E.overlay(grey, heat, colormap="nope")
    with pytest.raises(ValueError, match="alpha"):
        E.overlay(grey, heat, alpha=1.5)


def test_top_channels(model: densenet.DenseNet) -> None:
    trace = model.trace(image(15), ["features.transition1"])
    top = E.top_channels(trace, "features.transition1", k=3)
    act = trace.activations["features.transition1"][0]
    means = act.mean(dim=(1, 2))
    assert list(top) == means.argsort(descending=True)[:3].tolist()
    c = next(iter(top))
    np.testing.assert_array_equal(top[c], act[c].numpy())
    top[c][:] = 0  # a copy, not a view of the trace
    assert act[c].abs().sum() > 0


# --- sizes and devices ------------------------------------------------------------------------

@pytest.mark.slow
def test_densenet121_default_layers_at_224() -> None:
    model = make(densenet.VARIANTS["densenet121"])
    maps = E.grad_cam(model, image(16, size=224))
    assert list(maps) == E.default_layers(model)
    assert all(m.shape == (224, 224) and m.dtype == np.float32 and m.max() == 1 for m in maps.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(model: densenet.DenseNet) -> None:
    gpu = copy.deepcopy(model).cuda()
    x = image(17)  # a CPU input follows the model to the GPU
    for method in [m.name for m in E.methods(uses_trace=True)]:
        a = E.cam_maps(model, x, method, 3, ["features.norm5", "features.denseblock2"])
        b = E.cam_maps(gpu, x, method, 3, ["features.norm5", "features.denseblock2"])
        for layer in a:
            assert isinstance(b[layer].map, np.ndarray)
            np.testing.assert_allclose(a[layer].raw, b[layer].raw, rtol=1e-3, atol=1e-3 * np.abs(a[layer].raw).max())
    r = E.guided_grad_cam(gpu, x, 3)
    assert isinstance(r.raw, np.ndarray) and np.isfinite(r.raw).all()


# --- each piece of work once ------------------------------------------------------------------

def count_forwards(model: densenet.DenseNet) -> tuple[list[int], object]:
    """Count passes through the classifier: every forward and every trace ends there."""
    calls = [0]

    def hook(module, args):
        calls[0] += 1

    return calls, model.classifier.register_forward_pre_hook(hook)


def test_sanity_check_reuses_the_map_it_is_given(model: densenet.DenseNet) -> None:
    x = image(21)
    layer = "features.denseblock2"
    shown = E.cam_maps(model, x, "gradcam", 4, [layer])[layer]
    calls, handle = count_forwards(model)  # the check's randomised copy is a deepcopy: its hook counts too
    try:
        fresh = E.sanity_check(model, x, 4, layer, "gradcam")
        without = calls[0]
        calls[0] = 0
        reused = E.sanity_check(model, x, 4, layer, "gradcam", original=shown)
        with_map = calls[0]
    finally:
        handle.remove()
    assert with_map == without - 1
    assert reused.rank_correlation == pytest.approx(fresh.rank_correlation, abs=1e-6)
    np.testing.assert_array_equal(reused.original, shown.map)
    with pytest.raises(ValueError, match="not gradcam at features.norm5"):
        E.sanity_check(model, x, 4, "features.norm5", "gradcam", original=shown)


def test_a_graph_trace_builds_history_only_from_its_earliest_layer(model: densenet.DenseNet) -> None:
    layers = ["features.denseblock2", "features.norm5"]
    trace = model.trace(image(22), layers, keep_graph=True)
    first = trace.activations["features.denseblock2"]
    assert first.requires_grad and first.grad_fn is None  # a leaf: nothing below it was recorded
    assert trace.activations["features.norm5"].grad_fn is not None
    full = model.trace(image(22), keep_graph=True)
    for layer in layers:  # the same gradients as a trace that recorded everything
        torch.testing.assert_close(trace.gradients(3, [layer])[layer], full.gradients(3, [layer])[layer])
    assert not torch.is_grad_enabled() or torch.is_grad_enabled()  # grad mode restored (either way)
    with torch.no_grad():
        model.trace(image(22), layers, keep_graph=True)
        assert not torch.is_grad_enabled()


def test_registry_lists_every_method_once_with_a_runner() -> None:
    names = [m.name for m in E.methods()]
    assert len(names) == len(set(names)) and names == list(E.METHODS)
    for record in E.methods():
        assert record.label and record.description.endswith((".", ")")) and callable(record.run)
        assert record.needs_graph == (record.kind is E.Kind.GRADIENT_CAM)
    with pytest.raises(ValueError, match="already registered"):
        E.register(E.method("gradcam"))
    with pytest.raises(ValueError, match="unknown explanation method"):
        E.method("no-such-method")


@pytest.mark.parametrize("name", [m.name for m in E.methods()])
def test_compute_runs_every_registered_method(model: densenet.DenseNet, name: str) -> None:
    record = E.method(name)
    out = E.compute(name, model, image(23), 2, ["features.denseblock2"], **(
        {"steps": 2} if name == "integrated-gradients" else {"samples": 2} if name == "smoothgrad" else
        {"window": 16, "stride": 16} if name == "occlusion" else {}))
    assert list(out) == (["features.denseblock2"] if record.needs_layer else [E.INPUT])
    (m,) = out.values()
    assert m.map.shape == tuple(image(23).shape[-2:]) and np.isfinite(m.raw).all() and m.method == name
