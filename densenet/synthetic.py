"""Synthetic radiographs: a procedural, radiograph-like data set whose lesions have known positions.

Library code: the demo model was trained on it, the classroom experiments train on it, the audit's
demo set and the tests are written from it.

Every image is a smooth tissue background with rib-like bands, faint vessels, short bright
segments and specks (distractors, in every class), sensor noise and, except for ``"none"``,
one lesion: a round nodule, an elongated hazy opacity or a ring. Because the generator knows
where it drew the lesion, it returns the lesion's box and mask, which is what lets us check
whether an explanation points at the right place.

Everything is drawn from ``numpy.random.Generator`` streams seeded by ``(seed, chunk)``, so
the same ``(n, seed, size)`` gives identical bytes, and ``generate(n, seed)[0][:k]`` equals
``generate(k, seed)[0]`` (a prefix does not depend on ``n``). Images are rendered with array
operations over blocks of a few images, ``(8, H, W)``; no Python loop runs per image or pixel
(about 0.6-0.9 ms per 128x128 image on one core).
"""

from __future__ import annotations

from collections.abc import Callable

import os
from pathlib import Path

import numpy as np
import torch

from .config import DenseNetConfig

CLASSES: tuple[str, ...] = ("none", "nodule", "opacity", "ring")

# Parameters are drawn for whole chunks so that a prefix of a batch does not depend on its length.
_CHUNK = 256
_REF_SIZE = 128.0  # sizes below are in pixels of a 128x128 image and scale with ``size``
_MAX_SEGMENTS = 4
_MAX_VESSELS = 3
_MAX_SPECKS = 3
_TISSUE_KNOTS = 6
_BLOCK = 8  # images rendered together; small enough for the temporaries to stay in cache


def model_config() -> DenseNetConfig:
    """The small DenseNet these images are made for (the bundled demo model's architecture).

    ~0.1M parameters, blocks at 64, 32 and 16 px on a 128 px input, 1 channel, one output per
    class with "none" as the null class.
    """
    return DenseNetConfig(growth_rate=12, block_config=(4, 4, 4), num_init_features=24, bn_size=4,
                          compression=0.5, in_channels=1, num_classes=len(CLASSES), stem="small",
                          pool="lme", null_class=True)


def generate(n: int, seed: int, size: int = 128, *, masks: bool = False
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw ``n`` labelled images.

    Args:
        n: number of images (>= 0).
        seed: any non-negative integer; equal seeds give identical outputs.
        size: side of the square images in pixels (>= 32); lesion sizes scale with it.
        masks: also return the lesion masks.

    Returns:
        ``(images, labels, boxes)`` or, with ``masks=True``, ``(images, labels, boxes, masks)``:

        - images: ``(N, 1, size, size)`` float32 in [0, 1] (raw pixels, not normalised).
        - labels: ``(N,)`` int64 indices into :data:`CLASSES` (0 is ``"none"``).
        - boxes: ``(N, 4)`` float32 ``x0, y0, x1, y1``: the tight box of the lesion mask in
          pixel indices, both ends inclusive (as ``torchvision.ops.masks_to_boxes``), so the
          pixel at row ``i``, column ``j`` is inside when ``x0 <= j <= x1`` and ``y0 <= i <= y1``.
          All -1 for ``"none"``.
        - masks: ``(N, size, size)`` bool, the pixels where the lesion reaches half its contrast.

    Raises:
        ValueError: if ``n`` or ``seed`` is negative or ``size`` is below 32.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    images = np.empty((n, 1, size, size), np.float32)
    labels = np.empty(n, np.int64)
    boxes = np.empty((n, 4), np.float32)
    lesion_masks = np.empty((n, size, size), bool)
    for chunk, start in enumerate(range(0, n, _CHUNK)):
        stop = min(n, start + _CHUNK)
        rng = np.random.default_rng([seed, chunk])
        img, lab, box, msk = _render_chunk(rng, stop - start, size)
        images[start:stop, 0], labels[start:stop], boxes[start:stop], lesion_masks[start:stop] = img, lab, box, msk
    out = (torch.from_numpy(images), torch.from_numpy(labels), torch.from_numpy(boxes))
    return (*out, torch.from_numpy(lesion_masks)) if masks else out


def normalize(images: torch.Tensor) -> torch.Tensor:
    """Map [0, 1] pixels as the ``densenet.preprocess.DEMO`` preset does: ``(x - 0.5) / 0.25``."""
    return (images - 0.5) / 0.25


def _render_chunk(rng: np.random.Generator, m: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Render the first ``m`` images of a chunk; random draws are made for ``_CHUNK`` images."""
    p = _draw_params(rng, _CHUNK, size)
    img = np.empty((m, size, size), np.float32)
    mask = np.empty((m, size, size), bool)
    # Small blocks keep the temporaries small (in cache, and below glibc's mmap threshold).
    for a in range(0, m, _BLOCK):
        b = min(m, a + _BLOCK)
        img[a:b], mask[a:b] = _render({k: v[a:b] for k, v in p.items()}, size)
    # Uniform noise with the drawn standard deviation: 4-5x cheaper to draw than Gaussian.
    noise = rng.random((m, size, size), dtype=np.float32)  # the last draw, so a prefix is stable
    noise -= 0.5
    noise *= p["noise_std"][:m, None, None] * np.float32(np.sqrt(12))
    img += noise
    np.clip(img, 0.0, 1.0, out=img)
    return img, p["label"][:m].astype(np.int64), _mask_boxes(mask), mask


def _draw_params(rng: np.random.Generator, c: int, size: int) -> dict[str, np.ndarray]:
    """Every random choice of ``c`` images except the pixel noise; arrays are ``(c,)`` or ``(c, K)``."""
    s = size / _REF_SIZE

    def u(lo: float, hi: float, k: int | None = None) -> np.ndarray:
        return rng.uniform(lo, hi, (c,) if k is None else (c, k)).astype(np.float32)

    p: dict[str, np.ndarray] = {}
    p["label"] = rng.permutation(np.arange(c) % len(CLASSES))  # exactly balanced per full chunk
    p["base"], p["tissue_amp"], p["vignette"] = u(0.22, 0.42), u(0.03, 0.09), u(0.05, 0.15)
    p["tissue"] = rng.standard_normal((c, _TISSUE_KNOTS, _TISSUE_KNOTS)).astype(np.float32)
    p["rib_period"], p["rib_phase"] = u(14, 24) * s, u(0, 2 * np.pi)
    p["rib_curve"], p["rib_tilt"], p["rib_amp"] = u(-0.006, 0.006) / s, u(-0.25, 0.25), u(0.04, 0.12)
    p["gain"], p["noise_std"] = u(0.85, 1.15), u(0.012, 0.035)

    # Distractors, in every class: faint bent vessels, short bright segments, tiny specks.
    for name, k, prob in (("ves", _MAX_VESSELS, 0.7), ("seg", _MAX_SEGMENTS, 0.7), ("spk", _MAX_SPECKS, 0.6)):
        p[f"{name}_on"] = (rng.random((c, k)) < prob).astype(np.float32)
    p["ves_x"], p["ves_y"] = u(20, 108, _MAX_VESSELS) * s, u(20, 108, _MAX_VESSELS) * s
    p["ves_ang"], p["ves_bend"] = u(0, np.pi, _MAX_VESSELS), u(-0.02, 0.02, _MAX_VESSELS) / s
    p["ves_half_len"], p["ves_width"] = u(15, 45, _MAX_VESSELS) * s, u(0.8, 1.8, _MAX_VESSELS) * s
    p["ves_contrast"] = u(0.04, 0.15, _MAX_VESSELS)
    p["seg_x"], p["seg_y"] = u(8, 120, _MAX_SEGMENTS) * s, u(8, 120, _MAX_SEGMENTS) * s
    p["seg_ang"], p["seg_len"] = u(0, np.pi, _MAX_SEGMENTS), u(6, 22, _MAX_SEGMENTS) * s
    p["seg_half_w"], p["seg_contrast"] = u(0.5, 1.3, _MAX_SEGMENTS) * s, u(0.10, 0.35, _MAX_SEGMENTS)
    p["spk_x"], p["spk_y"] = u(4, 124, _MAX_SPECKS) * s, u(4, 124, _MAX_SPECKS) * s
    p["spk_r"], p["spk_contrast"] = u(0.8, 2.4, _MAX_SPECKS) * s, u(0.10, 0.35, _MAX_SPECKS)

    # The lesion. Every shape is an ellipse (semi-axes a >= b, angle) seen through its signed
    # distance sd = (r_ell - 1) * b: a filled shape is sd <= 0, a ring is |sd| <= t / 2.
    label = p["label"]
    nod_r, ring_r, ring_t = u(4.0, 10.0) * s, u(6.0, 12.0) * s, u(1.8, 3.2) * s
    opa_a, opa_aspect = u(8.0, 17.0) * s, u(2.4, 4.0)
    a = np.select([label == 1, label == 2, label == 3], [nod_r, opa_a, ring_r], 1.0).astype(np.float32)
    b = np.select([label == 2], [opa_a / opa_aspect], a).astype(np.float32)
    angle = u(0, np.pi)
    filled = label != 3
    # A filled shape is a ring whose inner edge lies far inside: |sd - off| <= half with off = -half.
    p["half"] = np.where(filled, np.float32(4 * size), ring_t / 2).astype(np.float32)
    p["off"] = np.where(filled, -p["half"], 0).astype(np.float32)
    edge = u(0.8, 2.0) * s
    p["edge"] = np.where(label == 2, 1.5 * edge, edge)  # opacities are hazier than nodules
    p["dome"] = np.where(label == 1, 0.3, 0.0).astype(np.float32)  # nodules brighter in the middle
    p["contrast"] = np.where(label == 0, 0.0, u(0.08, 0.25)).astype(np.float32)
    p["a"], p["b"], p["cos"], p["sin"] = a, b, np.cos(angle), np.sin(angle)

    # Place the centre so the whole box lies at least 3 px inside the image.
    outer = np.where(filled, 0, ring_t / 2)
    half_x = np.sqrt((a * p["cos"]) ** 2 + (b * p["sin"]) ** 2) + outer
    half_y = np.sqrt((a * p["sin"]) ** 2 + (b * p["cos"]) ** 2) + outer
    margin = 3 * s
    fx, fy = u(0, 1), u(0, 1)
    p["cx"] = (margin + half_x + fx * (size - 1 - 2 * (margin + half_x))).astype(np.float32)
    p["cy"] = (margin + half_y + fy * (size - 1 - 2 * (margin + half_y))).astype(np.float32)
    return p


def _render(p: dict[str, np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free images ``(n, H, W)`` float32 and lesion masks ``(n, H, W)`` bool.

    Written for speed: per-image constants are folded into ``(n, 1, 1)`` columns, every
    full-size operation counts, and profiles avoid ``exp`` and ``sqrt`` where a polynomial will do.
    """

    def col(v: np.ndarray) -> np.ndarray:  # (n,) -> (n, 1, 1), to broadcast over pixels
        return v[:, None, None]

    def ramp(t: np.ndarray) -> np.ndarray:  # in place: clip to [0, 1]
        return np.clip(t, 0.0, 1.0, out=t)

    half = np.float32(size / 2)
    yy = np.arange(size, dtype=np.float32)[None, :, None] - half  # (1, H, 1), from the centre
    xx = np.arange(size, dtype=np.float32)[None, None, :] - half  # (1, 1, W), from the centre

    # Tissue: a coarse random field, smoothly interpolated (separably: W_h @ field @ W_w^T), and
    # a vignette darkening towards the corners.
    interp = _interp_matrix(_TISSUE_KNOTS, size)
    img = np.matmul(np.matmul(interp, p["tissue"]), interp.T)  # (n, H, W)
    img *= col(p["tissue_amp"])
    img += col(p["base"]) - col(0.5 * p["vignette"]) * ((xx * xx + yy * yy) / half ** 2)

    # Ribs: curved, tilted bands; the squared cosine makes them read as bands, not waves.
    omega = col(2 * np.pi / p["rib_period"])
    phase = yy * omega + ((col(p["rib_tilt"]) + col(p["rib_curve"]) * xx) * xx) * omega + col(p["rib_phase"])
    band = np.cos(phase, out=phase)
    band += 1
    band *= band
    img += band * col(0.25 * p["rib_amp"])

    # Vessels: faint bent curves, a smooth bump across, fading out at both ends.
    for k in range(_MAX_VESSELS):
        ca, sa = col(np.cos(p["ves_ang"][:, k])), col(np.sin(p["ves_ang"][:, k]))
        du, dv = xx - col(p["ves_x"][:, k] - half), yy - col(p["ves_y"][:, k] - half)
        along = du * ca + dv * sa
        across = dv * ca - du * sa  # (n, H, W)
        across -= col(p["ves_bend"][:, k]) * along * along
        bump = ramp(1 - np.abs(across, out=across) * col(1 / p["ves_width"][:, k]))
        bump *= bump
        bump *= ramp((col(p["ves_half_len"][:, k]) - np.abs(along, out=along)) * np.float32(1 / 6))
        img += bump * col(p["ves_on"][:, k] * p["ves_contrast"][:, k])

    # Short bright segments (anti-aliased thin rectangles): what a thin opacity must be told from.
    for k in range(_MAX_SEGMENTS):
        ca, sa = col(np.cos(p["seg_ang"][:, k])), col(np.sin(p["seg_ang"][:, k]))
        du, dv = xx - col(p["seg_x"][:, k] - half), yy - col(p["seg_y"][:, k] - half)
        stroke = ramp(col(p["seg_half_w"][:, k] + 0.5) - np.abs(dv * ca - du * sa))
        stroke *= ramp(col(p["seg_len"][:, k] / 2 + 0.5) - np.abs(du * ca + dv * sa))
        img += stroke * col(p["seg_on"][:, k] * p["seg_contrast"][:, k])

    # Specks: tiny discs; (r^2 - d^2) / 2r ~ r - d near the edge, without a square root.
    for k in range(_MAX_SPECKS):
        du, dv = xx - col(p["spk_x"][:, k] - half), yy - col(p["spk_y"][:, k] - half)
        r = col(p["spk_r"][:, k])
        dot = ramp((r * r - (du * du + dv * dv)) * (0.5 / r) + 0.5)
        img += dot * col(p["spk_on"][:, k] * p["spk_contrast"][:, k])

    # The lesion, through the signed distance to its elliptical outline (see ``_draw_params``).
    du, dv = xx - col(p["cx"] - half), yy - col(p["cy"] - half)
    along = (du * col(p["cos"]) + dv * col(p["sin"])) * col(1 / p["a"])
    across = (dv * col(p["cos"]) - du * col(p["sin"])) * col(1 / p["b"])
    q = along * along + across * across  # squared elliptical radius: 1 on the outline
    sd = np.sqrt(q) * col(p["b"]) - col(p["b"] + p["off"])  # distance to the outline, minus off
    profile = ramp((col(p["half"]) - np.abs(sd, out=sd)) * col(1 / p["edge"]) + 0.5)
    mask = (profile >= 0.5) & col(p["label"] > 0)
    lesion = profile * col(p["contrast"])
    domed = np.flatnonzero(p["dome"])  # nodules are brighter in the middle, as a sphere in projection
    if domed.size:
        lesion[domed] *= 1 - col(p["dome"][domed]) * (1 - np.sqrt(ramp(1 - q[domed])))
    img += lesion
    img *= col(p["gain"])  # contrast about mid-grey: (img - 0.5) * gain + 0.5
    img += col(0.5 - 0.5 * p["gain"])
    return img, mask


def _interp_matrix(n_low: int, size: int) -> np.ndarray:
    """``(size, n_low)`` weights of a smooth (cosine) interpolation from ``n_low`` knots to ``size`` pixels."""
    pos = np.linspace(0, n_low - 1, size)
    left = np.clip(np.floor(pos).astype(int), 0, n_low - 2)
    t = pos - left
    t = 0.5 - 0.5 * np.cos(np.pi * t)  # C1-smooth between knots
    w = np.zeros((size, n_low))
    w[np.arange(size), left] = 1 - t
    w[np.arange(size), left + 1] += t
    return w.astype(np.float32)


def _mask_boxes(mask: np.ndarray) -> np.ndarray:
    """``(N, 4)`` inclusive ``x0, y0, x1, y1`` of each mask's pixels; -1 where a mask is empty."""
    n, h, w = mask.shape
    rows, cols = mask.any(axis=2), mask.any(axis=1)  # (N, H), (N, W)
    y0, y1 = rows.argmax(1), h - 1 - rows[:, ::-1].argmax(1)
    x0, x1 = cols.argmax(1), w - 1 - cols[:, ::-1].argmax(1)
    boxes = np.stack([x0, y0, x1, y1], axis=1).astype(np.float32)
    boxes[~rows.any(1)] = -1.0
    return boxes


# --- a dataset on disk, for the audit ------------------------------------------------------------

DATASET_SEED = 30_000_000  # neither a training, evaluation nor samples seed


def write_dataset(out: str | os.PathLike, n: int = 200, *, seed: int = DATASET_SEED, size: int = 128) -> dict[str, Path]:
    """Write ``n`` generated images with their labels, boxes and masks, as an audit reads them.

    Layout (the audit's input formats)::

        OUT/images/demo_00000.png ...    8-bit grey PNGs
        OUT/labels.csv                   image,label              (class names of CLASSES)
        OUT/boxes.csv                    image,label,x0,y0,x1,y1  (continuous pixel edges)
        OUT/BBox_List_2017.csv           NIH ChestX-ray14's format: Image Index,Finding Label,Bbox [x,y,w,h]
        OUT/masks/demo_00000.png ...     255 inside the lesion (images of "none" have none)

    The generator's boxes are inclusive pixel indices; on disk a box covers whole pixels, so
    ``x1 = x_last + 1`` (and NIH's ``w = x1 - x0``): both CSVs describe the same pixels.

    Args:
        out: folder to write (created).
        n: number of images.
        seed: generator seed (the default is used by no other part of the demo).
        size: image side in pixels.

    Returns:
        ``{"images", "labels", "boxes", "nih_boxes", "masks"}`` -> their paths.
    """
    from PIL import Image

    out = Path(out)
    paths = {"images": out / "images", "labels": out / "labels.csv", "boxes": out / "boxes.csv",
             "nih_boxes": out / "BBox_List_2017.csv", "masks": out / "masks"}
    paths["images"].mkdir(parents=True, exist_ok=True)
    paths["masks"].mkdir(parents=True, exist_ok=True)
    labels_rows, box_rows, nih_rows = [], [], []
    for start in range(0, n, _CHUNK):  # a prefix of the stream does not depend on n (see generate)
        stop = min(n, start + _CHUNK)
        images, labels, boxes, masks = generate(stop, seed, size, masks=True)
        for i in range(start, stop):
            name = f"demo_{i:05d}.png"
            pixels = np.round(images[i, 0].numpy() * 255).astype(np.uint8)
            Image.fromarray(pixels).save(paths["images"] / name)
            label = CLASSES[int(labels[i])]
            labels_rows.append((name, label))
            if int(labels[i]) == 0:
                continue
            Image.fromarray(masks[i].numpy().astype(np.uint8) * 255).save(paths["masks"] / name)
            x0, y0, x1, y1 = (int(v) for v in boxes[i].tolist())
            box_rows.append((name, label, x0, y0, x1 + 1, y1 + 1))
            nih_rows.append((name, label, x0, y0, x1 + 1 - x0, y1 + 1 - y0))
    _write_csv(paths["labels"], ("image", "label"), labels_rows)
    _write_csv(paths["boxes"], ("image", "label", "x0", "y0", "x1", "y1"), box_rows)
    _write_csv(paths["nih_boxes"], ("Image Index", "Finding Label", "Bbox [x", "y", "w", "h]"), nih_rows)
    return paths


def _write_csv(path: Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def dataset_dir(n: int = 200, *, cache: str | os.PathLike | None = None) -> Path:
    """The demo dataset of ``n`` images, generated on first use into a cache folder.

    The folder is ``$DENSENET_CACHE`` (else ``~/.cache/densenet-explorer``) ``/demo_dataset-n{n}``;
    it is written to a temporary sibling and renamed, so a half-written set is never used.
    """
    return cached_dataset(f"demo_dataset-n{n}", "labels.csv", lambda out: write_dataset(out, n), cache=cache)


def cached_dataset(name: str, marker: str, write: Callable[[Path], object], *,
                   cache: str | os.PathLike | None = None) -> Path:
    """The folder ``name`` of the cache (``$DENSENET_CACHE``, else ``~/.cache/densenet-explorer``), written by
    ``write(folder)`` on first use into a temporary sibling and renamed, so a half-written set is never used;
    ``marker`` is the file whose presence says it is complete."""
    import shutil
    import tempfile

    base = Path(cache or os.environ.get("DENSENET_CACHE") or Path.home() / ".cache" / "densenet-explorer")
    target = base / name
    if (target / marker).is_file():
        return target
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=base))
    try:
        write(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process won the race: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
