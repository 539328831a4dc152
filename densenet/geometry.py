"""Where the model's square view lies on the original image, and maps carried back onto it.

Three geometries turn an ``H x W`` image into the model's ``size x size`` input:

* ``"crop"`` (CheXNet, torchvision): resize the shorter side to ``resize`` (or take the largest
  centred square when ``resize`` is ``None``), then centre-crop. The sides of a tall or wide
  image are cut away.
* ``"resize"``: the whole image resampled to ``size x size``; the aspect ratio is not kept.
* ``"letterbox"``: the image padded with black to a centred square (aspect kept), then resampled.

Every mode is an axis-aligned map between the model's view and a rectangle of the original, the
*view box*, ``(x0, y0, x1, y1)`` in original pixel coordinates (x right, y down, pixel ``j``
spanning ``[j, j + 1)``). For ``"crop"`` it lies inside the image, for ``"resize"`` it is the
image, for ``"letterbox"`` it reaches past it (the padding). :func:`to_original` uses that
rectangle to carry any map, at any resolution, back to one value per original pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GEOMETRIES: dict[str, str] = {
    "crop": "centre crop (CheXNet, torchvision): the sides of a non-square image are cut away",
    "resize": "resize the whole image to a square: everything seen, aspect ratio not kept",
    "letterbox": "pad to a square with black, then resize: everything seen, aspect ratio kept",
}
"""Geometry mode -> what it does, for a selector's help text."""


def short_label(mode: str) -> str:
    """A selector's label for a geometry mode: ``centre crop``, ``squash``, ``letterbox`` (the sidebar is narrow;
    :data:`GEOMETRIES` holds the full sentence for the help text)."""
    if mode not in GEOMETRIES:
        raise ValueError(f"unknown geometry {mode!r}; known: {', '.join(GEOMETRIES)}")
    return {"crop": "centre crop", "resize": "squash", "letterbox": "letterbox"}.get(mode, mode)

Box = tuple[float, float, float, float]
"""``(x0, y0, x1, y1)`` in original-image pixel coordinates; ``x1``/``y1`` exclusive."""


@dataclass(frozen=True)
class Plan:
    """The integer arithmetic of one geometry on one image size, as :mod:`densenet.preprocess` applies it.

    Attributes:
        mode: ``"crop"``, ``"resize"`` or ``"letterbox"``.
        resized: ``(H, W)`` after the first resize (``"crop"`` with a ``resize``), else ``None``.
        top, left, height, width: the window taken from the (possibly resized) image before the
            final resample to ``size x size``; for ``"letterbox"`` ``top``/``left`` are negative
            (rows/columns of padding) and the window is the padded square.
        size: side of the model input.
    """

    mode: str
    resized: tuple[int, int] | None
    top: int
    left: int
    height: int
    width: int
    size: int


def check_mode(mode: str) -> str:
    """``mode`` if it is a known geometry; a ValueError naming the choices otherwise."""
    if mode not in GEOMETRIES:
        raise ValueError(f"unknown geometry {mode!r}; choose from {', '.join(GEOMETRIES)}")
    return mode


def plan(height: int, width: int, *, size: int, resize: int | None = None, mode: str = "crop") -> Plan:
    """How an ``height x width`` image becomes the ``size x size`` input.

    ``"crop"`` follows torchvision's ``Resize(resize)`` then ``CenterCrop(size)`` (output sizes
    and offsets rounded as torchvision rounds them); ``resize`` is used by ``"crop"`` only.
    """
    check_mode(mode)
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height} x {width}")
    if mode == "resize":
        return Plan(mode, None, 0, 0, height, width, size)
    if mode == "letterbox":
        side = max(height, width)
        return Plan(mode, None, -((side - height) // 2), -((side - width) // 2), side, side, size)
    if resize is None:
        side = min(height, width)
        return Plan(mode, None, _centre(height, side), _centre(width, side), side, side, size)
    short, long = sorted((height, width))
    new_long = int(resize * long / short)
    resized = (resize, new_long) if height <= width else (new_long, resize)
    return Plan(mode, resized, _centre(resized[0], size), _centre(resized[1], size), size, size, size)


def _centre(length: int, crop: int) -> int:
    return int(round((length - crop) / 2.0))


def box_of(p: Plan, height: int, width: int) -> Box:
    """The view box of a plan on an ``height x width`` original (see the module docstring)."""
    sy, sx = (1.0, 1.0) if p.resized is None else (height / p.resized[0], width / p.resized[1])
    return (p.left * sx, p.top * sy, (p.left + p.width) * sx, (p.top + p.height) * sy)


def view_box(height: int, width: int, preset: object) -> Box:
    """The rectangle of an ``height x width`` image that the model's view spans.

    Args:
        height, width: the original image's size in pixels.
        preset: a :class:`~densenet.preprocess.Preprocessing`, or a model carrying one.

    Returns:
        ``(x0, y0, x1, y1)``; clip it to the image (:func:`seen_box`) to outline what is seen.
    """
    preset = _preset(preset)
    return box_of(plan(height, width, size=preset.size, resize=preset.resize, mode=preset.geometry), height, width)


def seen_box(height: int, width: int, preset: object) -> Box:
    """The part of the original the model sees: :func:`view_box` clipped to the image."""
    x0, y0, x1, y1 = view_box(height, width, preset)
    return (max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height)))


def _preset(preset: object) -> object:
    from .preprocess import resolve_preset

    return resolve_preset(preset)


def _axis_weights(n_out: int, start: float, stop: float, n_map: int) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear weights ``(n_out, n_map)`` taking a map axis spanning ``[start, stop)`` of the
    original to its ``n_out`` pixels, and which of those pixels lie inside that span.

    Sampling follows ``F.interpolate(align_corners=False)``: map cell ``i`` has its centre at
    ``start + (i + 0.5) * (stop - start) / n_map``; beyond the outermost centres the edge value holds.
    """
    centres = np.arange(n_out, dtype=np.float64) + 0.5
    u = (centres - start) / (stop - start)  # position in the view, 0..1 where seen
    seen = (u >= 0.0) & (u < 1.0)
    src = np.clip(u * n_map - 0.5, 0.0, n_map - 1.0)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_map - 1)
    frac = src - i0
    weights = np.zeros((n_out, n_map), dtype=np.float64)
    rows = np.arange(n_out)
    np.add.at(weights, (rows, i0), 1.0 - frac)
    np.add.at(weights, (rows, i1), frac)
    weights[~seen] = 0.0
    return weights, seen


def to_original(cam_map: np.ndarray, height: int, width: int, preset: object, *,
                fill: float = float("nan")) -> np.ndarray:
    """Carry a map over the model's view back onto the original image, one value per pixel.

    Works for a map at any resolution (a 7x7 layer map, a 224x224 attribution): the map is
    taken to cover the model's whole view, and each original pixel reads it bilinearly at its
    centre. Values are not rescaled, so a raw map stays raw.

    Args:
        cam_map: ``(h, w)`` array (or anything with ``.raw``/``.map``; pass ``.raw`` yourself to keep
            signed raw values).
        height, width: the original image's size.
        preset: a :class:`~densenet.preprocess.Preprocessing`, or a model carrying one.
        fill: value of original pixels the model did not see (cropped away); NaN by default.

    Returns:
        float32 ``(height, width)``.

    Raises:
        ValueError: the map is not 2-D or not finite.
    """
    if hasattr(cam_map, "map") and not isinstance(cam_map, np.ndarray):
        cam_map = cam_map.map
    m = np.asarray(cam_map, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] < 1 or m.shape[1] < 1:
        raise ValueError(f"cam_map must be a 2-D (h, w) array, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError("cam_map must be finite")
    x0, y0, x1, y1 = view_box(height, width, preset)
    wy, seen_y = _axis_weights(height, y0, y1, m.shape[0])
    wx, seen_x = _axis_weights(width, x0, x1, m.shape[1])
    rows = (wy @ m).astype(np.float32)  # (H, h) @ (h, w) -> (H, w)
    out = rows @ wx.T.astype(np.float32)  # (H, w) @ (w, W) -> (H, W)
    unseen = ~(seen_y[:, None] & seen_x[None, :])
    if unseen.any():
        out[unseen] = fill
    return out


def overlay_original(image: np.ndarray, cam_map: np.ndarray, preset: object, *, alpha: float = 0.5,
                     colormap: str = "jet", outline: bool = True) -> np.ndarray:
    """The map drawn over the original image at its full resolution.

    The same blend as :func:`densenet.explain.overlay` (``(1 - alpha) * image + alpha * colormap(map)``,
    the colormap read from its 256-entry table), done in one pass so that a 2500 x 2048 film stays
    quick. Pixels the model did not see keep the plain image; the seen region is outlined.

    Args:
        image: the original ``(H, W)`` or ``(H, W, 3)`` image in [0, 1] (``load_image``'s array), or uint8.
        cam_map: ``(h, w)`` map over the model's view, in [0, 1] (a ``CamMap.map``, an
            ``Attribution.map``), at any resolution.
        preset: a :class:`~densenet.preprocess.Preprocessing`, or a model carrying one.
        alpha, colormap: as for :func:`densenet.explain.overlay`.
        outline: draw the seen region's border (only drawn when it is not the whole image).

    Returns:
        ``(H, W, 3)`` uint8 RGB.

    Raises:
        ValueError: bad shapes, values outside [0, 1], alpha outside [0, 1], unknown colormap.
    """
    from matplotlib import colormaps

    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise ValueError(f"image must be (H, W) or (H, W, 3), got shape {np.shape(image)}")
    img = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32, copy=False)
    if not np.isfinite(img).all() or img.min() < 0 or img.max() > 1:
        raise ValueError(f"image values must be finite and in [0, 1], got [{img.min():.3g}, {img.max():.3g}]")
    m = np.asarray(getattr(cam_map, "map", cam_map), dtype=np.float32)
    if m.ndim == 2 and m.size and (m.min() < 0 or m.max() > 1):
        raise ValueError(f"cam_map values must be in [0, 1], got [{m.min():.3g}, {m.max():.3g}]")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if colormap not in colormaps:
        raise ValueError(f"unknown colormap {colormap!r}; try 'jet', 'viridis', 'inferno', 'magma' or 'turbo'")
    height, width = img.shape[:2]
    full = to_original(m, height, width, preset)  # (H, W), NaN where not seen
    unseen = np.isnan(full)
    lut = colormaps[colormap](np.linspace(0.0, 1.0, 256))[:, :3].astype(np.float32) * (255.0 * alpha)  # (256, 3)
    index = np.rint(np.nan_to_num(full, nan=0.0) * 255.0).astype(np.uint8)
    plain = np.rint(img * 255.0).astype(np.uint8)  # what is shown anyway: 8 bits per channel
    if plain.ndim == 2:
        # Grey film: one lookup per pixel in a (map level, grey level) -> RGB table, with a 257th
        # "map level" for unseen pixels that gives the plain grey; no float maths per pixel.
        grey = np.arange(256, dtype=np.float32)
        table = np.empty((257, 256, 3), np.uint8)
        table[:256] = np.clip(np.rint(lut[:, None, :] + grey[None, :, None] * (1.0 - alpha)), 0, 255)
        table[256] = grey[:, None]
        code = index.astype(np.int32)
        code[unseen] = 256
        code <<= 8
        code |= plain
        drawn = np.take(table.reshape(-1, 3), code, axis=0)  # (H, W, 3)
    else:
        drawn = np.clip(np.rint(lut[index] + plain.astype(np.float32) * (1.0 - alpha)), 0, 255).astype(np.uint8)
        drawn[unseen] = plain[unseen]
    if outline and unseen.any():
        drawn = draw_box(drawn, seen_box(height, width, preset))
    return drawn


def draw_box(rgb: np.ndarray, box: Box, *, colour: tuple[int, int, int] = (0, 255, 0),
             thickness: int | None = None) -> np.ndarray:
    """A copy of a uint8 ``(H, W, 3)`` image with a rectangle outline (e.g. the seen region)."""
    out = np.array(rgb, dtype=np.uint8, copy=True)
    if out.ndim != 3 or out.shape[2] != 3:
        raise ValueError(f"rgb must be (H, W, 3) uint8, got shape {out.shape}")
    height, width = out.shape[:2]
    t = thickness or max(1, round(max(height, width) / 300))
    x0, y0 = max(0, int(round(box[0]))), max(0, int(round(box[1])))
    x1, y1 = min(width, int(round(box[2]))), min(height, int(round(box[3])))
    if x1 <= x0 or y1 <= y0:
        return out
    out[y0:min(y0 + t, y1), x0:x1] = colour
    out[max(y1 - t, y0):y1, x0:x1] = colour
    out[y0:y1, x0:min(x0 + t, x1)] = colour
    out[y0:y1, max(x1 - t, x0):x1] = colour
    return out


def for_display(rgb: np.ndarray, max_side: int = 1600) -> np.ndarray:
    """A copy no larger than ``max_side`` on its longer side (for the browser; downloads stay full size)."""
    from PIL import Image

    height, width = rgb.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1:
        return np.asarray(rgb)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(np.asarray(rgb, dtype=np.uint8)).resize(size, Image.Resampling.LANCZOS))


def npy_bytes(array: np.ndarray) -> bytes:
    """An array as the bytes of a ``.npy`` file (``numpy.load`` reads it; raw maps keep their values and NaNs)."""
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def png_bytes(rgb: np.ndarray) -> bytes:
    """A uint8 ``(H, W, 3)`` or ``(H, W)`` image as PNG bytes, at its full size (for a download)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def map_downloads(raw: np.ndarray, height: int, width: int, preset: object) -> dict[str, bytes]:
    """A raw layer map as two ``.npy`` downloads: at the layer's resolution and on the original image.

    Args:
        raw: the ``(h, w)`` raw map (``CamMap.raw``: signed, before ReLU and normalisation).
        height, width: the original image's size.
        preset: a :class:`~densenet.preprocess.Preprocessing`, or a model carrying one.

    Returns:
        ``{"layer": ..., "original": ...}``; pixels the model did not see are NaN in the second.
    """
    layer = np.asarray(raw, dtype=np.float32)
    return {"layer": npy_bytes(layer), "original": npy_bytes(to_original(layer, height, width, preset))}


def outlined(image: np.ndarray, preset: object, *, colour: tuple[int, int, int] = (0, 255, 0)) -> np.ndarray:
    """The original image as uint8 RGB with the region the model sees outlined (for a preview).

    Args:
        image: ``(H, W)`` or ``(H, W, 3)`` in [0, 1] (``load_image``'s array), or uint8.
        preset: a :class:`~densenet.preprocess.Preprocessing`, or a model carrying one.
    """
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    rgb = img if img.dtype == np.uint8 else np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"image must be (H, W) or (H, W, 3), got shape {np.shape(image)}")
    height, width = rgb.shape[:2]
    return draw_box(rgb, seen_box(height, width, preset), colour=colour)
