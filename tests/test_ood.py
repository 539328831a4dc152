"""Out-of-distribution score: separates generated demo images from photos, flags a 1x1 image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import densenet
from densenet import demo, ood
from densenet.demo import calibration
from densenet.preprocess import XRAY

FRESH_SEED = 77_000_000  # not the calibration seed, nor any training, evaluation or sample seed


@pytest.fixture(scope="module")
def model():
    return demo.load()


@pytest.fixture(scope="module")
def photo_scores(model):
    return ood.scores(model, calibration.outliers(model)).numpy()


def test_generated_images_and_photos_are_separated_on_fresh_seeds(model, photo_scores):
    fresh = ood.scores(model, calibration.reference(64, FRESH_SEED)).numpy()
    assert ood.auroc(fresh, photo_scores) == 1.0
    threshold, source = ood.threshold_for(model)
    assert source == "checkpoint"  # the demo checkpoint carries its calibration
    assert (photo_scores > threshold).all()
    assert (fresh > threshold).mean() <= 2 / 64


def test_the_shipped_calibration_is_the_shipped_weights_own(model):
    stored = ood.Calibration.from_dict(model.metadata["ood"])
    assert stored.auroc == 1.0 and stored.reference_quantile < stored.threshold < stored.outliers_min
    assert calibration.calibration(model) == stored  # recomputed from the weights, the same figures


def test_a_one_pixel_image_is_flagged_twice(model):
    x = densenet.preprocess(np.full((1, 1), 0.5, np.float32), model)
    verdict = ood.assess(model, x, image_size=(1, 1))
    assert verdict.unlike_training_data and verdict.too_small and not verdict.trusted
    assert "unlike the model's training data" in verdict.warnings[0]
    assert "1 x 1 pixels, far smaller than the model's 128 x 128 input" in verdict.warnings[1]


def test_a_sample_is_trusted(model):
    image = densenet.load_image(demo.SAMPLES_DIR / "demo_nodule_1.png")
    verdict = ood.assess(model, densenet.preprocess(image, model), image_size=image.shape[:2])
    assert verdict.trusted and verdict.threshold_source == "checkpoint"
    assert ood.assess(model, densenet.preprocess(image, model), threshold=1e-6).threshold_source == "user"


def test_a_trace_gives_the_same_score_and_the_model_is_untouched(model):
    x = calibration.reference(2, FRESH_SEED + 1)
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

def test_evaluate_command_calibrates_after_stamping(monkeypatch, tmp_path):
    from densenet.demo import __main__ as cli
    from densenet.demo import evaluate as ev_mod

    calls = []
    monkeypatch.setattr(ev_mod, "evaluate", lambda weights, **kw: calls.append(("evaluate", weights)) or
                        {"best_layer": "features.denseblock2"})
    monkeypatch.setattr(ev_mod, "format_report", lambda r: "figures")
    monkeypatch.setattr(ev_mod, "write_model_card", lambda r, card, **kw: calls.append(("card", card)))
    monkeypatch.setattr(ev_mod, "stamp_checkpoint", lambda weights, r: calls.append(("stamp", weights)))
    monkeypatch.setattr(calibration, "write_calibration", lambda weights: calls.append(("calibration", weights)))
    card = tmp_path / "MODEL_CARD.md"

    assert cli.main(["evaluate", "--card", str(card)]) == 0
    weights = demo.WEIGHTS_PATH
    assert calls == [("evaluate", weights), ("card", str(card)), ("stamp", weights), ("calibration", weights)]

    calls.clear()  # --no-card leaves the weights, and so their calibration, as they are
    assert cli.main(["evaluate", "--no-card"]) == 0
    assert calls == [("evaluate", weights)]


def test_write_calibration_puts_it_in_the_checkpoint(tmp_path):
    weights = tmp_path / "restamped.safetensors"
    model = demo.load()
    model.metadata = {k: v for k, v in model.metadata.items() if k != "ood"}  # a stamp writes metadata afresh
    densenet.save_checkpoint(model, weights)
    assert ood.threshold_for(densenet.load_checkpoint(weights))[1] == "default"
    found = calibration.write_calibration(weights, images=32)  # the wiring, not the figure: keep it cheap
    loaded = densenet.load_checkpoint(weights)
    assert ood.threshold_for(loaded) == (pytest.approx(found.threshold), "checkpoint")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
