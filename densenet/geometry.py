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

from .presets import GEOMETRIES, Preprocessing, check_mode, resolve_preset  # noqa: F401 - GEOMETRIES re-exported


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


def _preset(preset: object) -> Preprocessing:
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
