"""Small computations behind the views, as pure functions of library objects (no Streamlit).

Channel ordering, colour mapping and tiling of feature maps,
top-k predictions and the shapes of a dense block walked step by step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from densenet.topology import BlockInfo, ChannelSlice

# Qualitative palette for "which layer produced these channels" (Plotly's D3 + Dark24 start).
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#2E91E5", "#E15F99", "#1CA71C", "#FB0D0D", "#DA16FF", "#B68100",
    "#750D86", "#EB663B", "#511CFB", "#00A08B", "#FB00D1", "#FC0080", "#B2828D", "#6C7C32",
)


def source_color(index: int) -> str:
    """Colour of the ``index``-th source of a provenance list (block input is 0)."""
    return PALETTE[index % len(PALETTE)]


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``1 layer``, ``6 layers``; ``nouns`` for irregular plurals."""
    return f"{n:,} {noun if n == 1 else (nouns or noun + 's')}"


def duration(seconds: float) -> str:
    """A wait in words a reader takes in: ``45 s``, ``4 min``, ``1 h 5 min`` (never ``3924 s``)."""
    s = max(0.0, float(seconds))
    if s < 90:
        return f"{s:.0f} s"
    minutes = round(s / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h" + (f" {minutes % 60} min" if minutes % 60 else "")


def percent(p: float, threshold: float | None = None) -> str:
    """``p`` as a percentage with no decimals, or with as many (up to 3) as it takes not to print the
    threshold's own value for a probability on one side of it (49.94% against 50% reads "49.9%", not "50%")."""
    for digits in range(4):
        text = f"{p:.{digits}%}"
        if threshold is None or p == threshold:
            return text
        shown = float(text.rstrip("%")) / 100
        if (shown >= threshold) == (p >= threshold) and text != f"{threshold:.{digits}%}":
            return text
    return text


def short_name(layer: str) -> str:
    """``features.denseblock2.denselayer5`` -> ``denseblock2.denselayer5``."""
    return layer.removeprefix("features.")


# --- feature maps --------------------------------------------------------------------------------

def to_numpy(t: torch.Tensor) -> np.ndarray:
    """First sample of an activation as float32 numpy, (C, h, w); a copy, never a view."""
    return t.detach()[0].float().cpu().numpy().copy()


def channel_order(maps: np.ndarray) -> np.ndarray:
    """Channel indices sorted by mean activation, strongest first; maps (C, h, w)."""
    return np.argsort(-maps.reshape(maps.shape[0], -1).mean(1), kind="stable")


def colorize(maps: np.ndarray, *, scale: str = "local", colormap: str = "viridis",
             vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """Feature maps (C, h, w) to RGB uint8 (C, h, w, 3).

    Args:
        scale: ``"local"``: each map stretched to its own min-max; ``"global"``: one range
            for all (``vmin``/``vmax`` if given, else the maps' overall min and max).
    """
    from matplotlib import colormaps

    maps = np.asarray(maps, dtype=np.float32)
    if scale == "local":
        lo = maps.reshape(len(maps), -1).min(1)[:, None, None]
        hi = maps.reshape(len(maps), -1).max(1)[:, None, None]
    elif scale == "global":
        lo = np.float32(maps.min() if vmin is None else vmin)
        hi = np.float32(maps.max() if vmax is None else vmax)
    else:
        raise ValueError(f"scale must be 'local' or 'global', got {scale!r}")
    span = np.where(hi > lo, hi - lo, 1.0)
    unit = np.clip((maps - lo) / span, 0.0, 1.0)
    return (colormaps[colormap](unit)[..., :3] * 255).round().astype(np.uint8)


def upscale(rgb: np.ndarray, min_side: int) -> np.ndarray:
    """Nearest-neighbour enlarge (..., h, w, 3) so the shorter side is at least ``min_side``."""
    h, w = rgb.shape[-3:-1]
    factor = max(1, int(np.ceil(min_side / max(1, min(h, w)))))
    return rgb.repeat(factor, axis=-3).repeat(factor, axis=-2) if factor > 1 else rgb


def _hex_rgb(color: str) -> np.ndarray:
    color = color.lstrip("#")
    return np.array([int(color[i:i + 2], 16) for i in (0, 2, 4)], dtype=np.uint8)


def provenance_mosaic(tiles: np.ndarray, owners: list[int], *, columns: int = 32, border: int = 2,
                      tile_side: int = 24) -> np.ndarray:
    """All input channels of a layer in one image, each framed in the colour of its source.

    Args:
        tiles: (C, h, w, 3) uint8 coloured maps, in input-channel order.
        owners: for each channel, the index of its source in the provenance list.
        columns: tiles per row.
        border: frame width in pixels.
        tile_side: tiles are enlarged (nearest) to at least this many pixels.

    Returns:
        uint8 (H, W, 3) mosaic on a white background.
    """
    tiles = upscale(tiles, tile_side)
    n, h, w, _ = tiles.shape
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    cell_h, cell_w = h + 2 * border + 2, w + 2 * border + 2
    out = np.full((rows * cell_h, columns * cell_w, 3), 255, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, columns)
        y, x = r * cell_h + 1, c * cell_w + 1
        out[y:y + h + 2 * border, x:x + w + 2 * border] = _hex_rgb(source_color(owners[i]))
        out[y + border:y + border + h, x + border:x + border + w] = tiles[i]
    return out


def owners_of(slices: list[ChannelSlice]) -> list[int]:
    """For each input channel, the index of the slice (source) it came from."""
    owners: list[int] = []
    for i, piece in enumerate(slices):
        owners += [i] * piece.channels
    return owners


def thumbnail(pixels: np.ndarray, side: int = 360) -> np.ndarray:
    """A small uint8 copy of an image for display (shrunk so its longer side is at most ``side``)."""
    from PIL import Image

    rgb = (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)
    h, w = rgb.shape[:2]
    if max(h, w) <= side:
        return rgb
    scale = side / max(h, w)
    img = Image.fromarray(rgb).resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    return np.asarray(img)


# --- predictions ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Prediction:
    index: int
    name: str
    probability: float
    logit: float


def top_k(probabilities: torch.Tensor, logits: torch.Tensor, class_names: list[str], k: int = 5) -> list[Prediction]:
    """The ``k`` most probable classes of the first sample, most probable first."""
    probs = probabilities.detach()[0].float().cpu()
    raw = logits.detach()[0].float().cpu()
    k = min(k, probs.numel())
    values, indices = probs.topk(k)
    return [Prediction(int(i), class_names[int(i)], float(v), float(raw[int(i)])) for v, i in zip(values, indices)]


# --- a dense block, step by step -----------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """Shapes around dense layer ``layer`` of a block, channels last like the paper's text."""

    layer: int
    input_shape: tuple[int, int, int]
    bottleneck_shape: tuple[int, int, int] | None
    new_shape: tuple[int, int, int]
    output_shape: tuple[int, int, int]
    links_so_far: int


def block_steps(block: BlockInfo, bn_size: int | None) -> list[Step]:
    """For each layer l of the block: (h, w, c0 + (l-1)k) in, bottleneck, (h, w, k) new, concat out."""
    h, w = block.size
    k = block.growth_rate
    steps = []
    for layer in range(1, block.num_layers + 1):
        cin = block.in_channels_of(layer)
        steps.append(Step(
            layer=layer,
            input_shape=(h, w, cin),
            bottleneck_shape=(h, w, bn_size * k) if bn_size is not None else None,
            new_shape=(h, w, k),
            output_shape=(h, w, cin + k),
            links_so_far=layer * (layer + 1) // 2,
        ))
    return steps
