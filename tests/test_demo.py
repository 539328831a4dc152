"""The bundled demo: the generator, the shipped weights, their attention, training, samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import densenet
from densenet import demo
from densenet.demo import CLASSES, generate
from densenet.demo.evaluate import grad_cam_maps, in_box, peaks, predict
from densenet.demo.train import EVAL_SEED, SMOKE, Recipe, crop_around_lesions, demo_config, log_path_for, train

TEST_SEED = 30_000_000  # neither a training seed (0 .. steps - 1) nor the evaluation seed


# --- generator ---------------------------------------------------------------------------------

def test_generator_is_deterministic_per_seed():
    a, b = generate(12, seed=7), generate(12, seed=7)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    other = generate(12, seed=8)
    assert not torch.equal(a[0], other[0])


def test_a_prefix_does_not_depend_on_the_batch_size():
    small, large = generate(5, seed=3), generate(300, seed=3)  # 300 spans two chunks
    for x, y in zip(small, large):
        assert torch.equal(x, y[:5])


def test_shapes_dtypes_and_ranges():
    images, labels, boxes, masks = generate(40, seed=1, masks=True)
    assert images.shape == (40, 1, 128, 128) and images.dtype == torch.float32
    assert labels.shape == (40,) and labels.dtype == torch.int64
    assert boxes.shape == (40, 4) and boxes.dtype == torch.float32
    assert masks.shape == (40, 128, 128) and masks.dtype == torch.bool
    assert images.min() >= 0 and images.max() <= 1 and torch.isfinite(images).all()
    assert set(labels.tolist()) <= set(range(len(CLASSES)))
    assert generate(3, seed=1, size=64)[0].shape == (3, 1, 64, 64)
    assert generate(0, seed=1)[0].shape == (0, 1, 128, 128)


def test_boxes_are_the_tight_boxes_of_the_lesion_masks():
    images, labels, boxes, masks = generate(64, seed=2, masks=True)
    for label, box, mask in zip(labels, boxes, masks):
        if label == 0:
            assert torch.equal(box, torch.full((4,), -1.0)) and not mask.any()
            continue
        rows, cols = mask.nonzero(as_tuple=True)
        assert rows.numel() >= 20  # even the smallest nodule covers ~50 px
        assert box.tolist() == [cols.min().item(), rows.min().item(), cols.max().item(), rows.max().item()]
        assert 0 <= box[0] <= box[2] < 128 and 0 <= box[1] <= box[3] < 128


def test_lesions_are_brighter_than_their_surroundings():
    images, labels, boxes, masks = generate(64, seed=4, masks=True)
    lesion = labels > 0
    inside = (images[:, 0] * masks).sum((1, 2)) / masks.sum((1, 2)).clamp(min=1)
    assert (inside[lesion] > images[lesion].mean((1, 2, 3))).float().mean() > 0.9


def test_classes_are_balanced():
    counts = np.bincount(generate(512, seed=5)[1].numpy(), minlength=len(CLASSES))
    assert counts.min() >= 100 and counts.max() <= 156  # 128 each expected


def test_generator_rejects_bad_arguments():
    for kwargs in ({"n": -1, "seed": 0}, {"n": 1, "seed": -1}, {"n": 1, "seed": 0, "size": 16}):
        with pytest.raises(ValueError):
            generate(**kwargs)


def test_crops_keep_the_whole_lesion():
    _, labels, boxes, masks = generate(64, seed=6, masks=True)
    crops = crop_around_lesions(masks[:, None].float(), boxes, 64, np.random.default_rng(0))
    assert crops.shape == (64, 1, 64, 64)
    assert torch.equal(crops.sum((1, 2, 3)), masks.sum((1, 2)).float())


# --- the shipped model ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model():
    if not demo.WEIGHTS_PATH.is_file():
        pytest.fail(f"the demo weights are missing: {demo.WEIGHTS_PATH} (python -m densenet.demo train)")
    return densenet.load_checkpoint(demo.WEIGHTS_PATH).eval()


@pytest.fixture(scope="module")
def fresh():
    return generate(64, seed=TEST_SEED)


def test_shipped_weights_carry_config_classes_and_preprocessing(model):
    assert demo.WEIGHTS_PATH.stat().st_size <= 10 * 2**20
    assert model.config == demo_config()
    assert model.class_names == list(CLASSES)
    assert model.preprocessing.name == "demo"
    assert model.preprocessing.size == 128 and model.preprocessing.channels == 1
    assert model.preprocessing.mean == (0.5,) and model.preprocessing.std == (0.25,)
    assert model.metadata["cam_layer"] in model.tap_names  # measured best layer, read by the dashboard
    loaded = demo.load()
    assert not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_shipped_model_classifies_fresh_images(model, fresh):
    images, labels, _ = fresh
    accuracy = (predict(model, images) == labels).float().mean().item()
    assert accuracy >= 0.8, accuracy  # chance is 0.25; 1,000 held-out images: see MODEL_CARD.md


def test_grad_cam_points_at_the_lesion(model, fresh):
    images, labels, boxes = fresh
    lesion = labels > 0
    layer = model.metadata["cam_layer"]  # features.denseblock2: 89% on 1,000 held-out images
    maps = grad_cam_maps(model, images[lesion], labels[lesion], (layer,))
    hits = in_box(peaks(maps[layer]), boxes[lesion]).float().mean().item()
    assert hits >= 0.6, hits  # the blurred-brightest-spot baseline: ~50%


def test_grad_cam_maps_match_the_per_image_explainer(model, fresh):
    from densenet.explain import grad_cam

    images, labels, _ = fresh
    i = int((labels > 0).nonzero()[0])
    batched = grad_cam_maps(model, images[i:i + 3], labels[i:i + 3].clone().fill_(int(labels[i])),
                            ("features.denseblock2",))["features.denseblock2"][0]
    single = grad_cam(model, demo.normalize(images[i:i + 1]), int(labels[i]), ["features.denseblock2"])
    np.testing.assert_allclose(batched.numpy(), single["features.denseblock2"], atol=1e-4)


def test_evaluation_seed_is_not_a_training_seed():
    steps = Recipe().steps  # training seeds are 0 .. steps - 1
    assert min(EVAL_SEED, TEST_SEED, demo.SAMPLES_SEED) >= steps
    assert len({EVAL_SEED, TEST_SEED, demo.SAMPLES_SEED}) == 3


# --- training ----------------------------------------------------------------------------------

def test_one_step_training_smoke(tmp_path):
    out = tmp_path / "smoke.safetensors"
    summary = train(SMOKE, out, progress=False, threads=None)
    assert summary["steps"] == 2 and summary["images_seen"] == 2 * SMOKE.batch_size
    model = densenet.load_checkpoint(out)
    assert model.config == demo_config() and model.class_names == list(CLASSES)
    with torch.no_grad():
        assert torch.isfinite(model.eval()(demo.normalize(generate(2, seed=0)[0]))).all()
    assert log_path_for(out) == tmp_path / "train_log.json"


def test_training_is_reproducible(tmp_path):
    from safetensors.torch import load_file

    for run in ("a", "b"):
        train(SMOKE, tmp_path / run / "w.safetensors", progress=False, threads=None)
    a, b = load_file(tmp_path / "a" / "w.safetensors"), load_file(tmp_path / "b" / "w.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_model_card_quotes_the_measured_figures():
    card = (demo.WEIGHTS_PATH.parent / "MODEL_CARD.md").read_text()
    for heading in ("## Classes", "## Input", "## Architecture", "## How it was made", "## Evaluation", "## Limitations"):
        assert heading in card
    assert "features.denseblock2" in card and "sanity" in card


# --- samples -----------------------------------------------------------------------------------

def test_samples_cover_every_class_and_are_licensed():
    paths = demo.sample_paths()
    names = [p.name for p in paths]
    assert names[0] == "demo_nodule_1.png"
    for c in CLASSES:
        assert f"demo_{c}_1.png" in names
    assert any(n.endswith(".dcm") for n in names) and any(n.startswith("skimage_") for n in names)
    licences = (demo.SAMPLES_DIR / "LICENSES.md").read_text()
    for p in paths:
        assert p.stat().st_size < 2**20, p
        if not p.name.startswith("demo_"):
            assert p.name in licences, f"{p.name} has no licence entry"


def test_generated_samples_load_as_the_dashboard_loads_them():
    from densenet.images import load_image

    pixels = load_image(demo.SAMPLES_DIR / "demo_ring_1.png")
    assert pixels.shape[:2] == (128, 128)
