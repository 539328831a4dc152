"""Forward-only CAMs: parity with pytorch-grad-cam and torch-cam, batches, progress, cancellation, top-m.

BatchNorm is randomised so that maps are not trivially positive. Peers hook and rewire the model
they are given, so each gets a private copy.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import densenet
import densenet.explain as E
from densenet.testing import randomise_batchnorm, zeroing_ablation_layer
from tests.conftest import TINY, hook_count

SIZE = 64
METHODS = ["ablationcam", "scorecam", "sscam", "iscam"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomise_batchnorm(densenet.create(TINY)).eval()


@pytest.fixture(scope="module")
def image():
    return torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def target(model, image):
    with torch.no_grad():
        return int(model(image).argmax())


def as_map(cam: torch.Tensor) -> np.ndarray:
    """A peer's raw (1, h, w) map post-processed as ours: ReLU, bilinear (half-pixel), min-max."""
    cam = torch.as_tensor(cam).float().reshape(1, 1, *cam.shape[-2:]).clamp(min=0)
    cam = F.interpolate(cam, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[0, 0]
    lo, hi = cam.min(), cam.max()
    return ((cam - lo) / (hi - lo) if hi > lo else torch.zeros_like(cam)).numpy()


def assert_same_map(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.max() == pytest.approx(1.0), "a blank map proves nothing: pick another layer or target"
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)


# --- parity -----------------------------------------------------------------------------------------

def pgc(cls, model, layer, image, target, **kw):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    private = copy.deepcopy(model)
    with cls(model=private, target_layers=[private.get_submodule(layer)], **kw) as cam:
        return cam(input_tensor=image, targets=[ClassifierOutputTarget(target)])[0]


def test_ablation_cam_equals_pytorch_grad_cam_at_norm5(model, image, target):
    from pytorch_grad_cam import AblationCAM

    ours = E.ablation_cam(model, image, target, ["features.norm5"], batch_size=7)["features.norm5"]
    assert_same_map(ours, pgc(AblationCAM, model, "features.norm5", image, target))


@pytest.mark.parametrize("layer", ["features.denseblock3", "features.denseblock3.denselayer2",
                                   "features.transition2"])
def test_ablation_cam_equals_pytorch_grad_cam_with_zero_ablation(model, image, target, layer):
    from pytorch_grad_cam import AblationCAM

    ours = E.ablation_cam(model, image, target, [layer])[layer]
    theirs = pgc(AblationCAM, model, layer, image, target, ablation_layer=zeroing_ablation_layer())
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)


@pytest.mark.parametrize("layer", ["features.norm5", "features.pool0"])
def test_score_cam_equals_both_peers_each_with_its_masks(model, image, target, layer):
    from pytorch_grad_cam import ScoreCAM as PgcScoreCAM
    from torchcam.methods import ScoreCAM as TcScoreCAM

    ours_tc = E.score_cam(model, image, target, [layer], masks="torch-cam")[layer]
    ours_pgc = E.score_cam(model, image, target, [layer], masks="pytorch-grad-cam", batch_size=5)[layer]
    private = copy.deepcopy(model)
    with TcScoreCAM(private, layer, input_shape=(3, SIZE, SIZE)) as extractor:
        with torch.no_grad():
            scores = private(image)
        theirs_tc = as_map(extractor(class_idx=target, scores=scores)[0])
    assert_same_map(ours_tc, theirs_tc)
    assert_same_map(ours_pgc, pgc(PgcScoreCAM, model, layer, image, target))


@pytest.mark.parametrize("method", ["sscam", "iscam"])
def test_ss_and_is_cam_equal_torch_cam_with_the_same_noise(model, image, target, method):
    from torchcam.methods import ISCAM, SSCAM

    layer = "features.pool0"
    cls = SSCAM if method == "sscam" else ISCAM
    private = copy.deepcopy(model)
    with cls(private, layer, num_samples=3, input_shape=(3, SIZE, SIZE)) as extractor:
        with torch.no_grad():
            scores = private(image)
        torch.manual_seed(7)  # torch-cam draws SS-CAM's noise from the global generator
        theirs = as_map(extractor(class_idx=target, scores=scores)[0])
    if method == "sscam":
        ours = E.ss_cam(model, image, target, [layer], samples=3, seed=7, batch_size=6)[layer]
        other_seed = E.ss_cam(model, image, target, [layer], samples=3, seed=8)[layer]
        assert np.abs(other_seed - ours).max() > 1e-3  # the noise matters, so equality above is no accident
    else:
        ours = E.is_cam(model, image, target, [layer], samples=3, batch_size=6)[layer]
    assert_same_map(ours, theirs)


# --- batches, progress, cancellation -----------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
def test_batch_size_does_not_change_the_map(model, image, method):
    kw = {"samples": 2} if method in ("sscam", "iscam") else {}
    a = E.perturbation_cam_maps(model, image, method, None, "features.transition3", batch_size=3, **kw)
    b = E.perturbation_cam_maps(model, image, method, None, "features.transition3", batch_size=64, **kw)
    np.testing.assert_allclose(a["features.transition3"].raw, b["features.transition3"].raw, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["ablationcam", "scorecam"])
def test_progress_after_every_batch_and_cancellation_within_one_batch(model, image, method, monkeypatch):
    layer = "features.denseblock4"
    channels = model.trace(image, [layer]).activations[layer].shape[1]
    seen = []
    E.perturbation_cam_maps(model, image, method, None, layer, batch_size=5, progress=seen.append)
    assert len(seen) == -(-channels // 5) and seen == sorted(seen) and seen[-1] == 1.0

    calls = []
    name = "forward_from" if method == "ablationcam" else "forward"
    real = getattr(model, name)
    monkeypatch.setattr(model, name, lambda *a, **k: calls.append(1) or real(*a, **k))

    def cancel(fraction: float) -> None:
        if len(calls) >= 2:
            raise E.Cancelled

    with pytest.raises(E.Cancelled):
        E.perturbation_cam_maps(model, image, method, None, layer, batch_size=5, progress=cancel)
    assert len(calls) == 2  # the batch after the raise never ran


# --- top-m, estimate, registry -------------------------------------------------------------------------

def test_top_m_scores_only_m_channels(model, image, monkeypatch):
    layer = "features.norm5"
    full = E.perturbation_cam_maps(model, image, "ablationcam", None, layer)[layer]
    same = E.perturbation_cam_maps(model, image, "ablationcam", None, layer, top=10_000)[layer]
    np.testing.assert_array_equal(full.raw, same.raw)
    seen = []
    top = E.perturbation_cam_maps(model, image, "ablationcam", None, layer, top=8, batch_size=4,
                                  progress=seen.append)[layer]
    assert len(seen) == 2  # 8 channels, 4 per batch
    by_grad = E.perturbation_cam_maps(model, image, "ablationcam", None, layer, top=8, rank_by="gradient")[layer]
    assert not np.array_equal(top.raw, full.raw) and np.isfinite(by_grad.raw).all()
    # Ranked by gradient x activation energy from a trace with a graph: the trace is reused.
    trace = model.trace(image, [layer], keep_graph=True)
    monkeypatch.setattr(model, "trace", lambda *a, **k: pytest.fail("the given trace should be reused"))
    reused = E.perturbation_cam_maps(model, None, "ablationcam", None, layer, top=8, rank_by="gradient",
                                     trace=trace)[layer]
    np.testing.assert_allclose(reused.raw, by_grad.raw, rtol=1e-5, atol=1e-6)


def test_estimate_times_one_batch_and_counts_the_work(model, image):
    est = E.estimate_time(model, image, "ablationcam", ["features.norm5", "features.denseblock3"], batch_size=16)
    c5 = model.num_features
    c3 = model.trace(image, ["features.denseblock3"]).activations["features.denseblock3"].shape[1]
    assert est.forwards == c5 + c3 and est.seconds > 0
    assert est.text.startswith("≈ ") and "on this CPU" in est.text and f"{c5 + c3:,} forwards" in est.text
    ss = E.estimate_time(model, image, "sscam", "features.norm5", samples=4, top=10)
    assert ss.forwards == 40 and "masked inputs" in ss.work


def test_registry_offers_the_new_methods_and_reuses_the_trace(model, image, monkeypatch):
    records = {m.name: m for m in E.methods(kind=E.Kind.PERTURBATION)}
    for name in METHODS:
        r = records[name]
        assert r.needs_layer and r.slow and not r.needs_graph and r.kind is E.Kind.PERTURBATION
        assert r.chunk_option == "batch_size" and r.estimate is not None
    direct = E.perturbation_cam_maps(model, image, "scorecam", None, "features.norm5")
    via = E.compute("scorecam", model, image, None, ["features.norm5"], batch_size=4)
    np.testing.assert_allclose(via["features.norm5"].map, direct["features.norm5"].map, atol=1e-6)
    trace = model.trace(image, E.default_layers(model))
    monkeypatch.setattr(model, "trace", lambda *a, **k: pytest.fail("the given trace should be reused"))
    out = E.compute("ablationcam", model, image, None, None, trace=trace)
    assert list(out) == E.default_layers(model)
    assert all(m.method == "ablationcam" and m.map.shape == (SIZE, SIZE) for m in out.values())


def test_model_is_left_untouched(model, image):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for name in METHODS:
        E.perturbation_cam_maps(model, image, name, None, "features.norm5", top=4,
                                **({"samples": 1} if name in ("sscam", "iscam") else {}))
    assert hook_count(model) == 0 and not model.training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_bad_options_are_named(model, image):
    with pytest.raises(ValueError, match="batch_size"):
        E.ablation_cam(model, image, None, "features.norm5", batch_size=0)
    with pytest.raises(ValueError, match="top"):
        E.ablation_cam(model, image, None, "features.norm5", top=0)
    with pytest.raises(ValueError, match="rank_by"):
        E.ablation_cam(model, image, None, "features.norm5", rank_by="max")
    with pytest.raises(ValueError, match="masks"):
        E.score_cam(model, image, None, "features.norm5", masks="cv2")
    with pytest.raises(ValueError, match="unknown layer"):
        E.score_cam(model, image, None, "features.nope")
    with pytest.raises(TypeError, match="unknown option"):
        E.perturbation_cam_maps(model, image, "ablationcam", None, "features.norm5", steps=3)
    with pytest.raises(ValueError, match="train mode"):
        E.ablation_cam(copy.deepcopy(model).train(), image, None, "features.norm5")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", ["ablationcam", "scorecam", "sscam"])
def test_cuda_equals_cpu(model, image, method):
    kw = {"samples": 2} if method == "sscam" else {}
    cpu = E.perturbation_cam_maps(model, image, method, None, "features.denseblock3", **kw)
    gpu = E.perturbation_cam_maps(copy.deepcopy(model).cuda(), image.cuda(), method, None,
                                  "features.denseblock3", **kw)
    np.testing.assert_allclose(gpu["features.denseblock3"].map, cpu["features.denseblock3"].map, atol=1e-3)
