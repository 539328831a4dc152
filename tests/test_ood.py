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
