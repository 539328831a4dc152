"""Out-of-distribution score: separates generated demo images from photos, flags a 1x1 image."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import densenet
from densenet import demo, ood
from densenet.preprocess import XRAY

FRESH_SEED = 77_000_000  # not the calibration seed, nor any training, evaluation or sample seed


@pytest.fixture(scope="module")
def model():
    return demo.load()


@pytest.fixture(scope="module")
def photo_scores(model):
    return ood.scores(model, ood.demo_outliers()).numpy()


def test_generated_images_and_photos_are_separated_on_fresh_seeds(model, photo_scores):
    fresh = ood.scores(model, ood.demo_reference(64, FRESH_SEED)).numpy()
    assert ood.auroc(fresh, photo_scores) == 1.0
    threshold, source = ood.threshold_for(model)
    assert source == "demo calibration"
    assert (photo_scores > threshold).all()
    assert (fresh > threshold).mean() <= 2 / 64


def test_the_shipped_calibration_matches_the_shipped_weights():
    stored = json.loads(ood.DEMO_CALIBRATION_PATH.read_text())
    assert stored["weights_sha256"] == ood._weights_digest(demo.WEIGHTS_PATH)
    cal = ood.demo_calibration()
    assert cal.auroc == 1.0 and cal.reference_quantile < cal.threshold < cal.outliers_min


def test_a_one_pixel_image_is_flagged_twice(model):
    x = densenet.preprocess(np.full((1, 1), 0.5, np.float32), model)
    verdict = ood.assess(model, x, image_size=(1, 1))
    assert verdict.unlike_training_data and verdict.too_small and not verdict.trusted
    assert "unlike the model's training data" in verdict.warnings[0]
    assert "1 x 1 pixels, far smaller than the model's 128 x 128 input" in verdict.warnings[1]


def test_a_sample_is_trusted(model):
    image = densenet.load_image(demo.SAMPLES_DIR / "demo_nodule_1.png")
    verdict = ood.assess(model, densenet.preprocess(image, model), image_size=image.shape[:2])
    assert verdict.trusted and verdict.threshold_source == "demo calibration"
    assert ood.assess(model, densenet.preprocess(image, model), threshold=1e-6).threshold_source == "user"


def test_a_trace_gives_the_same_score_and_the_model_is_untouched(model):
    x = ood.demo_reference(2, FRESH_SEED + 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trace = model.trace(x, ["features.conv0", "features.denseblock1"])
    torch.testing.assert_close(ood.scores(model, x, trace=trace), ood.scores(model, x))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before) and not model.training


def test_training_mode_is_refused():
    net = densenet.create("densenet-bc-100-12").train()
    with pytest.raises(ValueError, match="training mode"):
        ood.scores(net, torch.zeros(1, 3, 32, 32))


def test_calibration_travels_with_the_checkpoint(tmp_path):
    cfg = densenet.DenseNetConfig(growth_rate=4, block_config=(2, 2), num_init_features=8, stem="cifar",
                                  in_channels=1, num_classes=2)
    net = densenet.DenseNet(cfg, preprocessing=XRAY).eval()
    assert ood.threshold_for(net) == (ood.DEFAULT_THRESHOLD, "default")
    gen = torch.Generator().manual_seed(0)
    reference = torch.randn(16, 1, 32, 32, generator=gen)
    outliers = torch.full((4, 1, 32, 32), 3.0)  # constant images: no variance at all
    cal = ood.calibrate(net, reference, outliers, description="noise")
    assert cal.auroc == 1.0 and cal.reference_quantile < cal.threshold < cal.outliers_min
    path = tmp_path / "m.safetensors"
    densenet.save_checkpoint(ood.with_calibration(net, cal), path)
    loaded = densenet.load_checkpoint(path)
    assert ood.threshold_for(loaded) == (pytest.approx(cal.threshold), "checkpoint")
    assert "ood" not in net.metadata


@pytest.mark.parametrize("shape, preset, flagged", [
    ((2500, 2048), XRAY, False), ((40, 40), XRAY, True), ((60, 60), XRAY, False),
    ((30, 400), XRAY.replace(geometry="resize"), True), ((30, 400), XRAY.replace(geometry="letterbox"), False),
])
def test_size_warning(shape, preset, flagged):
    assert (ood.size_warning(*shape, preset) is not None) == flagged


def test_auroc_closed_form():
    assert ood.auroc([0, 1], [2, 3]) == 1.0 and ood.auroc([2, 3], [0, 1]) == 0.0
    assert ood.auroc([1], [1]) == 0.5


# --- `python -m densenet.demo evaluate` keeps the calibration in step with the weights ------------

def test_evaluate_command_refreshes_the_calibration_after_stamping(monkeypatch, tmp_path):
    from densenet.demo import __main__ as cli
    from densenet.demo import evaluate as ev_mod

    calls = []
    monkeypatch.setattr(ev_mod, "evaluate", lambda weights, **kw: calls.append(("evaluate", weights)) or
                        {"best_layer": "features.denseblock2"})
    monkeypatch.setattr(ev_mod, "format_report", lambda r: "figures")
    monkeypatch.setattr(ev_mod, "write_model_card", lambda r, card, **kw: calls.append(("card", card)))
    monkeypatch.setattr(ev_mod, "stamp_checkpoint", lambda weights, r: calls.append(("stamp", weights)))
    monkeypatch.setattr(ood, "demo_calibration", lambda **kw: calls.append(("calibration", kw)))
    card = tmp_path / "MODEL_CARD.md"

    assert cli.main(["evaluate", "--card", str(card)]) == 0
    weights = demo.WEIGHTS_PATH
    assert calls == [("evaluate", weights), ("card", str(card)), ("stamp", weights),
                     ("calibration", {"recompute": True})]

    calls.clear()  # other weights: the demo calibration describes only the shipped ones
    other = tmp_path / "other.safetensors"
    assert cli.main(["evaluate", "--weights", str(other), "--card", str(card)]) == 0
    assert [c[0] for c in calls] == ["evaluate", "card", "stamp"]

    calls.clear()  # --no-card leaves the weights, and so their calibration, as they are
    assert cli.main(["evaluate", "--no-card"]) == 0
    assert calls == [("evaluate", weights)]


def test_refresh_rewrites_the_calibration_for_restamped_weights(monkeypatch, tmp_path):
    from densenet.demo.evaluate import refresh_ood_calibration

    weights = tmp_path / "densenet_demo.safetensors"
    model = demo.load()
    model.metadata = {**model.metadata, "eval_seed": -1}  # a stamp: same tensors, new file hash
    densenet.save_checkpoint(model, weights)
    monkeypatch.setattr(demo, "WEIGHTS_PATH", weights)
    monkeypatch.setattr(ood, "DEMO_CALIBRATION_PATH", tmp_path / "ood_calibration.json")
    monkeypatch.setattr(ood, "DEMO_CALIBRATION_IMAGES", 32)  # the wiring, not the figure: keep it cheap

    assert refresh_ood_calibration(tmp_path / "elsewhere.safetensors") is None
    assert not ood.DEMO_CALIBRATION_PATH.exists()
    assert refresh_ood_calibration(weights) == ood.DEMO_CALIBRATION_PATH
    stored = json.loads(ood.DEMO_CALIBRATION_PATH.read_text())
    assert stored["weights_sha256"] == ood._weights_digest(weights)
    monkeypatch.setattr(ood, "_compute_demo_calibration", lambda: pytest.fail("recomputed, not read back"))
    assert ood.demo_calibration().to_dict() == stored["calibration"]
