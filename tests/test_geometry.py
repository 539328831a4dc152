"""The whole film: each geometry puts a known bright square back where it is on the original."""

from __future__ import annotations

import numpy as np
import pytest

from densenet import geometry, render
from densenet.geometry import seen_box
from densenet.preprocess import IMAGENET, XRAY, Preprocessing, to_display

H, W = 2500, 2048  # a portrait chest film, rows x columns
CENTRE_SQUARE = (1000, 1300, 900, 1200)  # rows [r0, r1), columns [c0, c1): seen by every mode
TOP_SQUARE = (60, 200, 300, 500)  # inside the 226 rows a centre crop cuts away at the top


def film() -> np.ndarray:
    image = np.full((H, W), 0.1, np.float32)
    for r0, r1, c0, c1 in (CENTRE_SQUARE, TOP_SQUARE):
        image[r0:r1, c0:c1] = 1.0
    return image


PRESETS = {
    "crop": XRAY,  # largest centred square, resized to 224
    "crop-resize": IMAGENET,  # Resize(256) then CenterCrop(224), 3 channels
    "resize": XRAY.replace(geometry="resize"),
    "letterbox": XRAY.replace(geometry="letterbox"),
}


def bright_box(full: np.ndarray, level: float = 0.5) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(np.nan_to_num(full, nan=0.0) > level)
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


def model_view_map(preset: Preprocessing) -> np.ndarray:
    view = to_display(film(), preset)  # what the model sees, as a map over its input
    return view if view.ndim == 2 else view.mean(axis=2)


@pytest.mark.parametrize("name", list(PRESETS))
def test_the_seen_square_lands_where_it_is_on_the_original(name: str):
    preset = PRESETS[name]
    full = geometry.to_original(model_view_map(preset), H, W, preset)
    assert full.shape == (H, W) and full.dtype == np.float32
    # Bilinear resampling blurs the edges by about one model pixel, which is ~11 original pixels here.
    x0, y0, x1, y1 = geometry.view_box(H, W, preset)
    tolerance = 1.5 * max((x1 - x0), (y1 - y0)) / preset.size
    r0, r1, c0, c1 = CENTRE_SQUARE
    centre = full[r0:r1, c0:c1]
    assert np.nanmin(centre[20:-20, 20:-20]) > 0.9
    # the bright region around the centre square, isolated from the top one
    region = full[r0 - 150:r1 + 150, c0 - 150:c1 + 150]
    br0, br1, bc0, bc1 = bright_box(region)
    assert abs(br0 - 150 - 0) <= tolerance and abs(br1 - 150 - (r1 - r0)) <= tolerance
    assert abs(bc0 - 150 - 0) <= tolerance and abs(bc1 - 150 - (c1 - c0)) <= tolerance


@pytest.mark.parametrize("name", list(PRESETS))
def test_the_top_square_is_seen_unless_centre_cropped(name: str):
    preset = PRESETS[name]
    full = geometry.to_original(model_view_map(preset), H, W, preset)
    r0, r1, c0, c1 = TOP_SQUARE
    patch = full[r0:r1, c0:c1]
    if name.startswith("crop"):
        # Where the square lies, the model saw nothing: the crop removed it, and the map says so.
        assert np.isnan(patch).all()
        x0, y0, x1, y1 = seen_box(H, W, preset)
        assert y0 > r1 and y1 < H
    else:
        assert np.nanmin(patch[15:-15, 25:-25]) > 0.8
        assert not np.isnan(full).any()


def test_seen_box_arithmetic_for_the_film():
    assert seen_box(H, W, XRAY) == (0.0, 226.0, 2048.0, 2274.0)
    assert geometry.view_box(H, W, PRESETS["letterbox"]) == (-226.0, 0.0, 2274.0, 2500.0)
    assert geometry.seen_box(H, W, PRESETS["letterbox"]) == (0.0, 0.0, 2048.0, 2500.0)
    assert geometry.view_box(H, W, PRESETS["resize"]) == (0.0, 0.0, 2048.0, 2500.0)
    # IMAGENET: Resize(256) makes it 312 x 256, CenterCrop(224) starts at row 44, column 16
    x0, y0, x1, y1 = seen_box(H, W, IMAGENET)
    assert (x0, x1) == pytest.approx((16 * 2048 / 256, 240 * 2048 / 256))
    assert (y0, y1) == pytest.approx((44 * 2500 / 312, 268 * 2500 / 312))


@pytest.mark.parametrize("name", list(PRESETS))
def test_a_layer_map_cell_covers_its_rectangle_of_the_original(name: str):
    preset = PRESETS[name]
    cells = np.zeros((7, 7), np.float32)
    cells[3, 2] = 1.0  # one hot cell of a 7x7 (norm5-sized) map
    full = geometry.to_original(cells, H, W, preset)
    x0, y0, x1, y1 = geometry.view_box(H, W, preset)
    cell_w, cell_h = (x1 - x0) / 7, (y1 - y0) / 7
    peak_row, peak_col = np.unravel_index(np.nanargmax(full), full.shape)
    assert abs(peak_col + 0.5 - (x0 + 2.5 * cell_w)) <= 1 and abs(peak_row + 0.5 - (y0 + 3.5 * cell_h)) <= 1
    assert np.nanmax(full) == pytest.approx(1.0, abs=0.01)
    half = bright_box(full, 0.5)  # bilinear: above one half within half a cell of the centre
    assert abs(half[2] - (x0 + 2 * cell_w)) <= 2 and abs(half[3] - (x0 + 3 * cell_w)) <= 2
    assert abs(half[0] - (y0 + 3 * cell_h)) <= 2 and abs(half[1] - (y0 + 4 * cell_h)) <= 2


def test_raw_values_are_not_rescaled():
    signed = np.array([[-2.0, 3.0]], np.float32)
    full = geometry.to_original(signed, 10, 20, XRAY.replace(geometry="resize"))
    assert full.min() == pytest.approx(-2.0) and full.max() == pytest.approx(3.0)


@pytest.mark.parametrize("name", ["crop", "letterbox"])
def test_full_resolution_overlay_tints_the_square_and_leaves_unseen_pixels_plain(name: str):
    preset = PRESETS[name]
    image = film()
    rgb = render.overlay_original(image, model_view_map(preset), preset)
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
    r0, r1, c0, c1 = CENTRE_SQUARE
    red, blue = rgb[(r0 + r1) // 2, (c0 + c1) // 2, 0], rgb[(r0 + r1) // 2, (c0 + c1) // 2, 2]
    assert red > 150 and blue < 150  # jet at 1 is red
    plain = np.rint(image * 255)
    t0, t1, s0, s1 = TOP_SQUARE
    if name == "crop":
        np.testing.assert_array_equal(rgb[t0:t1, s0:s1, 1], plain[t0:t1, s0:s1])  # not seen: not tinted
        assert (rgb[226:230, 1000] == (0, 255, 0)).all()  # the seen region is outlined
    else:
        assert rgb[(t0 + t1) // 2, (s0 + s1) // 2, 0] > 150


def test_for_display_caps_the_longer_side():
    rgb = np.zeros((H, W, 3), np.uint8)
    small = render.for_display(rgb, 1000)
    assert max(small.shape[:2]) == 1000 and small.shape[2] == 3
    assert render.for_display(rgb[:10, :10]).shape == (10, 10, 3)


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="unknown geometry 'stretch'"):
        XRAY.replace(geometry="stretch")
    with pytest.raises(ValueError, match="2-D"):
        geometry.to_original(np.zeros((2, 2, 2)), 10, 10, XRAY)
    with pytest.raises(ValueError, match="finite"):
        geometry.to_original(np.full((2, 2), np.nan), 10, 10, XRAY)


def test_downloads_keep_raw_values_at_both_resolutions():
    import io

    raw = np.arange(49, dtype=np.float32).reshape(7, 7) - 20.0
    files = render.map_downloads(raw, H, W, XRAY)
    layer = np.load(io.BytesIO(files["layer"]))
    full = np.load(io.BytesIO(files["original"]))
    np.testing.assert_array_equal(layer, raw)
    assert full.shape == (H, W) and np.isnan(full[:226]).all() and np.nanmin(full) == pytest.approx(-20.0)
    from PIL import Image

    png = render.png_bytes(np.zeros((5, 6, 3), np.uint8))
    assert Image.open(io.BytesIO(png)).size == (6, 5)


def test_full_resolution_overlay_agrees_with_the_library_overlay():
    from densenet.explain import overlay

    rng = np.random.default_rng(5)
    image = rng.random((60, 80, 3)).astype(np.float32)
    heat = rng.random((60, 80)).astype(np.float32)
    preset = XRAY.replace(geometry="resize")  # the view box is the image: no unseen pixels
    ours = render.overlay_original(image, heat, preset)
    reference = overlay(image, geometry.to_original(heat, 60, 80, preset))
    assert np.abs(ours.astype(int) - reference.astype(int)).max() <= 3  # the colormap read from its 256-entry table


def test_outlined_marks_the_seen_region_of_the_film():
    rgb = render.outlined(film(), XRAY)
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
    assert (rgb[226, 1000] == (0, 255, 0)).all() and (rgb[2273, 1000] == (0, 255, 0)).all()
    assert rgb[100, 1000, 1] == round(0.1 * 255)  # above the crop: the plain film
