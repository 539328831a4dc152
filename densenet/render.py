"""Draw maps on the original image and encode what is drawn: overlays, outlines, PNG and ``.npy`` bytes.

The one rendering module: the dashboard, the audit report and the DICOM export encode through it.
Where the model's view lies on the original comes from :mod:`densenet.geometry`.
"""

from __future__ import annotations

import io

import numpy as np

from .geometry import Box, seen_box, to_original


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
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def png_bytes(rgb: np.ndarray, *, compress_level: int | None = None, optimize: bool = False) -> bytes:
    """A uint8 ``(H, W, 3)`` or ``(H, W)`` image as PNG bytes, at its full size.

    Args:
        rgb: the image.
        compress_level: zlib level, 0-9 (1: fast, for images re-encoded on every page run); ``None``: Pillow's.
        optimize: search for the smallest file (for a report written once).
    """
    from PIL import Image

    options: dict[str, object] = {}
    if compress_level is not None:
        options["compress_level"] = compress_level
    if optimize:
        options["optimize"] = True
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buffer, format="PNG", **options)
    return buffer.getvalue()


def png_data_uri(rgb: np.ndarray) -> str:
    """An image as a ``data:image/png;base64,...`` URI (smallest PNG), for a self-contained HTML file."""
    import base64

    return "data:image/png;base64," + base64.b64encode(png_bytes(rgb, optimize=True)).decode()


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
