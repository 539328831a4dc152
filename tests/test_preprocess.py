"""preprocess, to_display, prepare and the seen box: closed-form values, torchvision as a reference, devices."""

from __future__ import annotations

import dataclasses
import importlib

import numpy as np
import pytest
import torch
from PIL import Image

from densenet.geometry import seen_box
from densenet.preprocess import (
    DEMO, GEOMETRIES, IMAGENET, IMAGENET_MEAN, IMAGENET_STD, XRAY, Prepared, Preprocessing, custom,
    prepare, preprocess, to_display,
)

# The module itself: the package attribute ``densenet.preprocess`` is the function of that name.
pp = importlib.import_module("densenet.preprocess")
RNG = np.random.default_rng(0)
PRESETS = [IMAGENET, XRAY, DEMO, custom(size=32, channels=3, mean=(0.5,) * 3, std=(0.2,) * 3, resize=40)]


class Tiny(torch.nn.Module):
    """The smallest model that carries a preset."""

    def __init__(self, preprocessing: Preprocessing, device: str = "cpu"):
        super().__init__()
        self.preprocessing = preprocessing
        self.linear = torch.nn.Linear(1, 1, device=device)


def grey(h: int = 300, w: int = 400) -> np.ndarray:
    return RNG.random((h, w), dtype=np.float32)


def colour(h: int = 300, w: int = 400) -> np.ndarray:
    return RNG.random((h, w, 3), dtype=np.float32)


def denormalise(x: torch.Tensor, preset: Preprocessing) -> torch.Tensor:
    if preset.value_range is not None:
        low, high = preset.value_range
        return (x - low) / (high - low)
    mean = torch.tensor(preset.mean).view(1, -1, 1, 1)
    std = torch.tensor(preset.std).view(1, -1, 1, 1)
    return x * std + mean


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
@pytest.mark.parametrize("make", [grey, colour])
@pytest.mark.parametrize("shape", [(300, 400), (400, 300), (50, 50)])
def test_shape_dtype_finite(preset: Preprocessing, make, shape: tuple[int, int]):
    x = preprocess(make(*shape), preset)
    assert x.shape == (1, preset.channels, preset.size, preset.size)
    assert x.dtype == torch.float32
    assert torch.isfinite(x).all()


def test_grey_is_replicated_for_colour_models():
    x = denormalise(preprocess(grey(), IMAGENET), IMAGENET)
    torch.testing.assert_close(x[:, 0], x[:, 1], rtol=0, atol=1e-6)
    torch.testing.assert_close(x[:, 0], x[:, 2], rtol=0, atol=1e-6)


def test_colour_becomes_bt601_luminance_for_grey_models():
    image = np.empty((60, 80, 3), dtype=np.float32)
    image[...] = (0.2, 0.6, 1.0)
    luminance = 0.299 * 0.2 + 0.587 * 0.6 + 0.114 * 1.0
    x = preprocess(image, DEMO)
    torch.testing.assert_close(x, torch.full_like(x, (luminance - 0.5) / 0.25))


def test_imagenet_normalisation_of_constant_image():
    x = preprocess(np.full((256, 300, 3), 0.7, dtype=np.float32), IMAGENET)
    for channel, (mean, std) in enumerate(zip(IMAGENET_MEAN, IMAGENET_STD)):
        torch.testing.assert_close(x[0, channel], torch.full((224, 224), (0.7 - mean) / std))


@pytest.mark.parametrize("value, expected", [(0.0, -1024.0), (1.0, 1024.0), (0.5, 0.0)])
def test_xray_value_range(value: float, expected: float):
    x = preprocess(np.full((100, 120), value, dtype=np.float32), XRAY)
    torch.testing.assert_close(x, torch.full((1, 1, 224, 224), expected))


def test_matches_torchvision_resize_then_centre_crop():
    from torchvision.transforms.v2 import functional as TF
    image = colour(333, 500)
    reference = torch.from_numpy(image).permute(2, 0, 1)
    reference = TF.resize(reference, [256], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    reference = TF.center_crop(reference, [224, 224])
    reference = TF.normalize(reference, list(IMAGENET_MEAN), list(IMAGENET_STD))
    torch.testing.assert_close(preprocess(image, IMAGENET)[0], reference, rtol=0, atol=1e-5)


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
@pytest.mark.parametrize("make", [grey, colour])
def test_to_display_is_the_model_input_before_normalisation(preset: Preprocessing, make):
    image = make(301, 457)
    shown = to_display(image, preset)
    expected_shape = (preset.size, preset.size) if preset.channels == 1 else (preset.size, preset.size, 3)
    assert shown.shape == expected_shape and shown.dtype == np.float32
    assert shown.min() >= 0.0 and shown.max() <= 1.0
    model_input = denormalise(preprocess(image, preset), preset)[0]  # (C, size, size)
    as_image = model_input[0] if preset.channels == 1 else model_input.permute(1, 2, 0)
    np.testing.assert_allclose(shown, as_image.numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("h, w", [(300, 400), (400, 300), (301, 457), (64, 64)])
def test_seen_box_without_resize_is_the_largest_centred_square(h: int, w: int):
    x0, y0, x1, y1 = seen_box(h, w, XRAY)
    side = min(h, w)
    assert (x1 - x0, y1 - y0) == (side, side)
    assert (x0, y0) == (round((w - side) / 2), round((h - side) / 2))
    # Ones outside the box, zeros inside: the model must see only zeros.
    image = np.ones((h, w), dtype=np.float32)
    image[int(y0):int(y1), int(x0):int(x1)] = 0.0
    assert to_display(image, XRAY).max() == 0.0


def test_seen_box_with_resize_maps_back_to_original_pixels():
    # 300 x 400 -> shorter side 256 -> 256 x 341 -> crop 224 at top 16, left round(58.5) = 58.
    x0, y0, x1, y1 = seen_box(300, 400, IMAGENET)
    sx, sy = 400 / 341, 300 / 256
    assert (x0, y0, x1, y1) == pytest.approx((58 * sx, 16 * sy, 282 * sx, 240 * sy))


def test_seen_box_with_resize_sees_a_centred_marker():
    # A bright square at the box's centre lands at the display's centre.
    h, w = 300, 400
    x0, y0, x1, y1 = seen_box(h, w, IMAGENET)
    image = np.zeros((h, w, 3), dtype=np.float32)
    cy, cx = int((y0 + y1) / 2), int((x0 + x1) / 2)
    image[cy - 10:cy + 10, cx - 10:cx + 10] = 1.0
    shown = to_display(image, IMAGENET)[..., 0]
    ys, xs = np.nonzero(shown > 0.5)
    assert abs(ys.mean() - 111.5) < 1.5 and abs(xs.mean() - 111.5) < 1.5


def test_pil_images_are_read_with_load_image():
    pixels = RNG.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    from_pil = preprocess(Image.fromarray(pixels), IMAGENET)
    torch.testing.assert_close(from_pil, preprocess(pixels.astype(np.float32) / 255, IMAGENET))


def test_device_follows_the_model():
    assert preprocess(grey(), Tiny(XRAY)).device.type == "cpu"
    assert preprocess(grey(), Tiny(XRAY, device="meta")).device.type == "meta"
    assert preprocess(grey(), Tiny(XRAY, device="meta"), device="cpu").device.type == "cpu"
    assert preprocess(grey(), XRAY).device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_follows_a_cuda_model():
    assert preprocess(grey(), Tiny(XRAY, device="cuda")).device.type == "cuda"


def test_model_without_parameters_stays_on_cpu():
    model = torch.nn.Identity()
    model.preprocessing = DEMO
    assert preprocess(grey(), model).device.type == "cpu"


@pytest.mark.parametrize("image, error, message", [
    (np.zeros((10, 10), dtype=np.uint8), TypeError, "uint8"),
    ([[0.0, 1.0]], TypeError, "list"),
    (np.zeros((10, 10, 4), dtype=np.float32), ValueError, r"\(10, 10, 4\)"),
    (np.zeros((2, 10, 10, 3), dtype=np.float32), ValueError, "shape"),
    (np.full((10, 10), 2.0, dtype=np.float32), ValueError, "2.0"),
    (np.full((10, 10), np.nan, dtype=np.float32), ValueError, "finite"),
])
def test_bad_images_are_refused(image, error: type[Exception], message: str):
    with pytest.raises(error, match=message):
        preprocess(image, DEMO)


def test_bad_presets_are_refused():
    with pytest.raises(TypeError, match="Linear"):
        preprocess(grey(), torch.nn.Linear(1, 1))
    with pytest.raises(ValueError, match="resize"):
        preprocess(grey(), dataclasses.replace(IMAGENET, resize=100))
    with pytest.raises(ValueError, match="mean"):
        preprocess(grey(), dataclasses.replace(IMAGENET, mean=(0.5, 0.5)))
    with pytest.raises(ValueError, match="3-channel image into 2 channels"):
        preprocess(colour(), dataclasses.replace(IMAGENET, channels=2, mean=(0.5,), std=(0.5,)))


# --- geometry: crop, resize, letterbox ---------------------------------------------------------

def test_letterbox_pads_with_black_and_keeps_the_aspect():
    preset = XRAY.replace(geometry="letterbox")
    image = np.ones((100, 200), np.float32)
    view = to_display(image, preset)  # 224 x 224: the 200-wide image fills it, 56 rows of black above and below
    assert view.shape == (224, 224)
    assert view[:50].max() == 0.0 and view[-50:].max() == 0.0
    np.testing.assert_allclose(view[62:162], 1.0, atol=1e-6)
    assert seen_box(100, 200, preset) == (0.0, 0.0, 200.0, 100.0)


def test_resize_sees_the_whole_image_without_keeping_the_aspect():
    preset = XRAY.replace(geometry="resize")
    image = np.zeros((100, 300), np.float32)
    image[:, :100] = 1.0  # the left third
    view = to_display(image, preset)
    assert view[:, :70].min() > 0.99 and view[:, 80:].max() < 0.01
    assert seen_box(100, 300, preset) == (0.0, 0.0, 300.0, 100.0)


def test_crop_is_the_default_and_unchanged():
    assert XRAY.geometry == "crop" and IMAGENET.geometry == "crop"
    image = grey(300, 400)
    torch.testing.assert_close(preprocess(image, XRAY), preprocess(image, XRAY.replace(geometry="crop")))


def test_presets_round_trip_through_dicts_and_names():
    from densenet.preprocess import named

    for preset in (IMAGENET, XRAY.replace(geometry="letterbox"), DEMO):
        assert Preprocessing.from_dict(preset.to_dict()) == preset
    assert named("imagenet", geometry="resize") == IMAGENET.replace(geometry="resize")
    with pytest.raises(ValueError, match="unknown preprocessing preset 'imagenett'"):
        named("imagenett")
    with pytest.raises(ValueError, match="unknown preprocessing field"):
        Preprocessing.from_dict({**XRAY.to_dict(), "colour": "blue"})
    with pytest.raises(TypeError, match="unknown Preprocessing field"):
        XRAY.replace(colour="blue")
    # resize below the crop size only matters for the crop geometry
    assert IMAGENET.replace(resize=100, geometry="letterbox").resize == 100
    with pytest.raises(ValueError, match="smaller than the crop"):
        IMAGENET.replace(resize=100)


# --- prepare: the input and the display image from one pass ---------------------------------------

@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
@pytest.mark.parametrize("make", [grey, colour])
def test_prepare_equals_preprocess_and_to_display_exactly(geometry: str, preset: Preprocessing, make):
    preset = preset.replace(geometry=geometry)
    image = make(301, 457)
    prepared = prepare(image, preset)
    assert isinstance(prepared, Prepared)
    assert torch.equal(prepared.x, preprocess(image, preset))
    shown = to_display(image, preset)
    assert prepared.display.dtype == shown.dtype and prepared.display.shape == shown.shape
    assert np.array_equal(prepared.display, shown)
    assert prepared.display.flags.c_contiguous


def test_prepare_takes_a_model_and_follows_its_device():
    image = grey(120, 90)
    on_cpu = prepare(image, Tiny(DEMO))
    assert torch.equal(on_cpu.x, preprocess(image, Tiny(DEMO)))
    assert np.array_equal(on_cpu.display, to_display(image, Tiny(DEMO)))
    on_meta = prepare(image, Tiny(DEMO, device="meta"))
    assert on_meta.x.device.type == "meta" and isinstance(on_meta.display, np.ndarray)
    assert prepare(image, Tiny(DEMO, device="meta"), device="cpu").x.device.type == "cpu"
    with pytest.raises(dataclasses.FrozenInstanceError):
        on_cpu.x = on_meta.x  # type: ignore[misc]


def test_prepare_display_shares_no_memory_with_the_input():
    prepared = prepare(grey(64, 64), DEMO.replace(geometry="resize"))
    before = prepared.x.clone()
    prepared.display[:] = 0.0
    assert torch.equal(prepared.x, before)


def test_prepare_resamples_once(monkeypatch: pytest.MonkeyPatch):
    calls = {"view": 0, "resample": 0}
    model_view, resample = pp._model_view, pp._resample

    def counted_view(*args, **kwargs):
        calls["view"] += 1
        return model_view(*args, **kwargs)

    def counted_resample(*args, **kwargs):
        calls["resample"] += 1
        return resample(*args, **kwargs)

    monkeypatch.setattr(pp, "_model_view", counted_view)
    monkeypatch.setattr(pp, "_resample", counted_resample)
    image = colour(333, 500)  # IMAGENET: resize the shorter side to 256, then crop 224 (two resamplings)

    preprocess(image, IMAGENET)
    one_pass = dict(calls)
    assert one_pass == {"view": 1, "resample": 2}
    calls.update(view=0, resample=0)
    to_display(image, IMAGENET)
    assert calls == one_pass
    calls.update(view=0, resample=0)
    prepare(image, IMAGENET)
    assert calls == one_pass  # both results, the work of one
