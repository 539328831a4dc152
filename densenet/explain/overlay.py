"""Draw a map over an image with a matplotlib colormap."""

from __future__ import annotations

import numpy as np
import torch

from ._common import upsample


def overlay(image: np.ndarray, cam_map: np.ndarray, alpha: float = 0.5, colormap: str = "jet") -> np.ndarray:
    """Blend a coloured map onto an image: ``(1 - alpha) * image + alpha * colormap(map)``.

    Args:
        image: (H, W) grey, (H, W, 1) or (H, W, 3) in [0, 1] (float), or uint8 in [0, 255].
        cam_map: (h, w) in [0, 1], or anything with a ``.map`` (a ``CamMap``, an ``Attribution``);
            resized (bilinear) to the image if its size differs.
        alpha: weight of the map, 0 (image only) to 1 (map only).
        colormap: a matplotlib colormap name ("jet", "viridis", "inferno", ...).

    Returns:
        (H, W, 3) uint8 RGB.

    Raises:
        ValueError: bad shapes, values outside [0, 1], alpha outside [0, 1], unknown colormap.
    """
    from matplotlib import colormaps  # imported here so that the library loads without it

    if hasattr(cam_map, "map"):
        cam_map = cam_map.map
    img = np.asarray(image)
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255
    img = img.astype(np.float32, copy=False)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be (H, W), (H, W, 1) or (H, W, 3), got shape {np.shape(image)}")
    m = np.asarray(cam_map, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"cam_map must be (H, W), got shape {m.shape}")
    for name, a in (("image", img), ("cam_map", m)):
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            raise ValueError(f"{name} values must be finite and in [0, 1], got [{a.min():.3g}, {a.max():.3g}]")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if colormap not in colormaps:
        raise ValueError(f"unknown colormap {colormap!r}; try 'jet', 'viridis', 'inferno', 'magma' or 'turbo'")
    if m.shape != img.shape[:2]:
        m = upsample(torch.from_numpy(m)[None], img.shape[:2])[0].clamp(0, 1).numpy()
    heat = colormaps[colormap](m)[:, :, :3].astype(np.float32)  # (H, W, 3) RGB in [0, 1]
    blended = (1 - alpha) * img + alpha * heat
    return np.clip(np.rint(blended * 255), 0, 255).astype(np.uint8)
