"""Shortcut audit without boxes: clusters of attention (SpRAy), their hotspots, confirmed by erasure.

Lapuschkin et al. (2019) cluster a dataset's explanation maps by spectral clustering ("SpRAy")
to find groups of images the model decides for the same, possibly wrong, reason. Here, per
target class:

1. :func:`.spray.cluster_maps`: every map downsampled and normalised, a k-nearest-neighbours
   affinity, the number of clusters by the eigengap of its normalised Laplacian
   (:func:`.spray.eigengap`), then scikit-learn's ``SpectralClustering`` on that same affinity;
   clusters whose hotspots coincide are merged.
2. Per cluster, the mean map and its hotspot (:func:`.spray.mean_hotspot`): the smallest box
   holding most of the mean map's energy, the sum of its squared values above its median (a
   faint floor spread over the whole film must not outweigh a sharp peak), one map cell wider on
   each side, carried onto each member's original film.
3. Where it lies: the share of the attention inside the hotspot that falls in the film's border
   band, its corners, and outside the body (:func:`foreground`: threshold and largest component,
   from the image itself).
4. :func:`erase`: where the hotspot lies on the border or off the body, it is filled with its
   blurred surroundings on the cluster's members (at most :data:`ERASE_AT_MOST`, spread over it)
   and the model run again; the mean drop of the target's probability, against a control region
   of the same size and shape elsewhere on the film (:func:`control_box`).

A cluster is **flagged** when its hotspot lies mostly outside the body or on the border band
and erasing it drops the probability by at least :data:`MIN_DROP` and by at least
:data:`CONTROL_RATIO` times the control's drop. :func:`find_shortcuts` does it all for a list of
:class:`Member`; :func:`shortcuts_of_run` reads them from an audit's folder.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .spray import above_floor, cluster_maps, features, mean_hotspot, merge_by_hotspot

BORDER = 0.12  #: width of the border band, as a share of the film's shorter side
CORNER = 0.24  #: side of each corner square, as a share of the shorter side
WHERE_SHARE = 0.5  #: "mostly": the share of the hotspot's attention that decides ``where``
MIN_DROP = 0.2  #: erasure drop a flagged cluster needs
CONTROL_RATIO = 2.0  #: ... and how many times the control's drop it must be
MIN_MEMBERS = 3  #: smaller clusters are reported but never flagged
ERASE_AT_MOST = 24  #: members erased per cluster (the standard error of a mean drop in [0, 1] stays <= 0.1)
WORK_SIDE = 256  #: films are examined at most this large (longest side)


@dataclass(frozen=True)
class Member:
    """One image under one target, with its map.

    Attributes:
        image: the image's name as in the audit's rows.
        path: where to read it.
        target, target_index: the class explained (label, else prediction).
        score: the target's probability on the untouched image.
        correct: the prediction was right (``None`` without a label).
        map: ``(m, m)`` map over the model's view, >= 0.
    """

    image: str
    path: Path
    target: str
    target_index: int
    score: float
    correct: bool | None
    map: np.ndarray


# --- where it lies --------------------------------------------------------------------------------

def foreground(image: np.ndarray, *, dark: float = 0.5) -> np.ndarray:
    """The body on a film, from the film alone: ``(H, W)`` bool.

    The film is smoothed, split at Otsu's threshold, and the largest bright component, holes
    filled, is the body. When the dark side is not clearly darker (its mean above ``dark`` times
    the bright side's: no air around the body, as on the demo's films) the whole film is body.

    Args:
        image: ``(H, W)`` or ``(H, W, 3)`` in [0, 1].
    """
    from scipy import ndimage

    g = np.asarray(image, np.float32)
    if g.ndim == 3:
        g = g.mean(axis=2)
    if g.ndim != 2:
        raise ValueError(f"image must be (H, W) or (H, W, 3), got shape {np.shape(image)}")
    from .metrics import otsu_thresholds

    smooth = ndimage.gaussian_filter(g, sigma=max(1.0, 0.01 * max(g.shape)))
    u8 = np.clip(np.round(smooth * 255), 0, 255).astype(np.uint8)
    t = int(otsu_thresholds(u8[None])[0])
    bright = u8 > t
    whole = np.ones(g.shape, bool)
    if not bright.any() or bright.all():
        return whole
    labels, count = ndimage.label(bright)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    body = ndimage.binary_fill_holes(labels == int(sizes.argmax()))
    if body.sum() < 0.2 * body.size or smooth[~body].mean() > dark * smooth[body].mean():
        return whole
    return body


def bands(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The border band and the corner squares of an ``height x width`` film: two ``(H, W)`` bool masks."""
    side = min(height, width)
    b, c = max(1, int(round(BORDER * side))), max(1, int(round(CORNER * side)))
    yy, xx = np.arange(height)[:, None], np.arange(width)[None, :]
    border = (yy < b) | (yy >= height - b) | (xx < b) | (xx >= width - b)
    corners = ((yy < c) | (yy >= height - c)) & ((xx < c) | (xx >= width - c))
    return border, corners


def shares(energy: np.ndarray, body: np.ndarray) -> dict[str, float]:
    """The shares of a map's energy ``(H, W)`` in the border band, the corners and outside ``body``."""
    e = np.clip(np.nan_to_num(np.asarray(energy, np.float64)), 0, None)
    total = e.sum()
    if total <= 0:
        e, total = np.ones_like(e), float(e.size)
    border, corners = bands(*e.shape)
    return {"border": float(e[border].sum() / total), "corners": float(e[corners].sum() / total),
            "outside_body": float(e[~body].sum() / total)}


def where(hotspot_shares: dict[str, float]) -> str:
    """``"outside body"``, ``"border"`` or ``"inside"``: where most of a hotspot's attention lies."""
    if hotspot_shares["outside_body"] >= WHERE_SHARE:
        return "outside body"
    if hotspot_shares["border"] >= WHERE_SHARE:
        return "border"
    return "inside"


def location(box: Sequence[float], height: int, width: int) -> str:
    """A box's place in words: "the top-left corner", "the left border", "the centre of the film"..."""
    cx, cy = (box[0] + box[2]) / 2 / width, (box[1] + box[3]) / 2 / height
    h = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else ""
    v = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else ""
    if h and v:
        return f"the {v}-{h} corner"
    if h or v:
        return f"the {h or v} border"
    return "the centre of the film"


# --- erasure -------------------------------------------------------------------------------------

def erase(image: np.ndarray, box: Sequence[int]) -> np.ndarray:
    """A copy of ``image`` with ``box`` (``x0, y0, x1, y1``, pixels) filled by its blurred surroundings.

    The fill is a normalised convolution: a Gaussian (sigma half the box's longer side) of the
    pixels around the box, divided by the Gaussian of where they are, so the box takes the
    smooth tone of its neighbourhood, not a value of our choosing. The blur is computed on the
    neighbourhood shrunk to a few pixels per sigma (it is smooth at that scale anyway), then
    resampled back: the cost does not grow with the box.
    """
    from scipy import ndimage

    out = np.array(image, np.float32, copy=True)
    h, w = out.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 <= x0 or y1 <= y0:
        return out
    sigma = max(1.0, 0.5 * max(x1 - x0, y1 - y0))
    pad = int(math.ceil(2 * sigma))
    a0, b0, a1, b1 = max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)
    crop = out[b0:b1, a0:a1]
    known = np.ones(crop.shape[:2], np.float32)
    known[y0 - b0:y1 - b0, x0 - a0:x1 - a0] = 0
    if not known.any():  # the box is the whole film: a flat mean grey
        crop[...] = float(crop.mean())
        return out
    pixels = torch.from_numpy(np.ascontiguousarray(crop)).reshape(crop.shape[0], crop.shape[1], -1).permute(2, 0, 1)
    k = torch.from_numpy(known)[None]
    factor = max(1.0, sigma / 3)
    small = (max(1, int(round(crop.shape[0] / factor))), max(1, int(round(crop.shape[1] / factor))))
    num = torch.nn.functional.interpolate((pixels * k)[None], size=small, mode="area")[0].numpy()
    den = torch.nn.functional.interpolate(k[None], size=small, mode="area")[0].numpy()
    s = sigma * small[0] / crop.shape[0]
    num = np.stack([ndimage.gaussian_filter(c, s, mode="constant") for c in num])
    den = ndimage.gaussian_filter(den[0], s, mode="constant")[None]
    fill = torch.nn.functional.interpolate(torch.from_numpy(num / np.maximum(den, 1e-6))[None], size=crop.shape[:2],
                                           mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
    fill = fill.reshape(crop.shape)
    crop[y0 - b0:y1 - b0, x0 - a0:x1 - a0] = fill[y0 - b0:y1 - b0, x0 - a0:x1 - a0]
    return out


def control_box(box: Sequence[int], height: int, width: int) -> tuple[int, int, int, int]:
    """A region of the same size and shape elsewhere: the box reflected through the film's centre
    (same distance from the border), else across one axis, whichever overlaps it least."""
    x0, y0, x1, y1 = (int(v) for v in box)
    candidates = [(width - x1, height - y1, width - x0, height - y0), (width - x1, y0, width - x0, y1),
                  (x0, height - y1, x1, height - y0)]

    def overlap(c: tuple[int, int, int, int]) -> int:
        return max(0, min(c[2], x1) - max(c[0], x0)) * max(0, min(c[3], y1) - max(c[1], y0))

    return min(candidates, key=overlap)


# --- the audit -----------------------------------------------------------------------------------

def _on_work_grid(image: np.ndarray, cam: np.ndarray,
                  view: Sequence[float]) -> tuple[np.ndarray, np.ndarray, float, float]:
    """The film (grey) and the map on a grid of at most :data:`WORK_SIDE` a side; the two scales."""
    from ..geometry import _axis_weights

    h, w = image.shape[:2]
    s = min(1.0, WORK_SIDE / max(h, w))
    hw, ww = max(1, int(round(h * s))), max(1, int(round(w * s)))
    grey = image.mean(axis=2) if image.ndim == 3 else image
    if (hw, ww) != (h, w):
        grey = torch.nn.functional.interpolate(torch.from_numpy(np.ascontiguousarray(grey, np.float32))[None, None],
                                               size=(hw, ww), mode="area")[0, 0].numpy()
    sy, sx = hw / h, ww / w
    wy, _ = _axis_weights(hw, view[1] * sy, view[3] * sy, cam.shape[0])
    wx, _ = _axis_weights(ww, view[0] * sx, view[2] * sx, cam.shape[1])
    # torch, not numpy's matmul: right after the model ran, OpenBLAS's threads wake up against
    # torch's and a (128 x 32) product took 30 ms instead of 0.3 (measured on 2 cores).
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32))  # noqa: E731
    cam_work = (t(wy) @ t(np.clip(cam, 0, None)) @ t(wx.T)).numpy().astype(np.float64)
    return np.asarray(grey, np.float32), cam_work, sy, sx


def _box_on_film(fraction: Sequence[float], view: Sequence[float], height: int,
                 width: int) -> tuple[int, int, int, int]:
    """A box given as fractions of the model's view, in the film's pixels (outward-rounded, clipped)."""
    vx0, vy0, vx1, vy1 = view
    x0 = math.floor(vx0 + fraction[0] * (vx1 - vx0))
    y0 = math.floor(vy0 + fraction[1] * (vy1 - vy0))
    x1 = math.ceil(vx0 + fraction[2] * (vx1 - vx0))
    y1 = math.ceil(vy0 + fraction[3] * (vy1 - vy0))
    return max(0, x0), max(0, y0), min(width, x1), min(height, y1)


def _probabilities(model: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        logits = model(x)
    multilabel = bool(getattr(getattr(model, "config", None), "multilabel", False))
    return (torch.sigmoid(logits) if multilabel else torch.softmax(logits, dim=1)).cpu().numpy()


def find_shortcuts(model: torch.nn.Module, members: list[Member], *, method: str = "", layer: str = "",
                   load: Callable[[Path], np.ndarray] | None = None, batch_size: int = 16,
                   erase_inside: bool = False, erase_at_most: int | None = ERASE_AT_MOST,
                   progress: Callable[[float], None] | None = None) -> list[dict[str, Any]]:
    """Cluster the members' maps per target, find each cluster's hotspot, confirm it by erasure.

    Args:
        model: the audited model, in eval mode (read-only).
        members: one per image and target (:class:`Member`).
        method, layer: what made the maps (recorded in each cluster).
        load: reads an image file (default :func:`densenet.images.load_image`).
        batch_size: members per forward pass (each gives two films: hotspot and control erased).
        erase_inside: erase the hotspots of clusters that look inside the body too (by default
            only a hotspot on the border or off the body, which could be a shortcut, is erased:
            ``erasure_drop`` and ``control_drop`` are ``None`` for the others).
        erase_at_most: members erased per cluster, spread evenly over it (``None``: all); the
            drops are their means. Bounds the cost: a border cluster may hold a third of a dataset.
        progress: called with the fraction of members done.

    Returns:
        One dict per cluster, biggest first within each target: ``target``, ``target_index``,
        ``cluster``, ``images``, ``size``, ``of_target``, ``accuracy``, ``mean_probability``,
        ``hotspot`` (``[x0, y0, x1, y1]`` on the representative film, pixels, ``x1``/``y1``
        exclusive), ``hotspot_view`` (the same as fractions of the model's view), ``control``,
        ``representative``, ``film`` (its ``[height, width]``), ``shares`` (of the hotspot's
        attention: ``border``, ``corners``, ``outside_body``), ``attention`` (the same for whole
        maps), ``where``, ``location``, ``erasure_drop``, ``control_drop``, ``flagged``,
        ``erased`` (how many members were), ``sentence``, ``mean_map`` (rows of the min-max mean
        map), ``method``, ``layer`` and
        ``members`` (per image: ``image``, ``score``, ``erased``, ``control`` (``None`` where not
        erased), ``hotspot``, whole-map shares).
    """
    from ..geometry import view_box
    from ..images import load_image
    from ..preprocess import preprocess

    load = load or load_image
    clusters: list[dict[str, Any]] = []
    jobs: list[tuple[int, Member]] = []  # (cluster index, member)
    targets = sorted({(m.target_index, m.target) for m in members})
    for target_index, target in targets:
        mine = [m for m in members if m.target_index == target_index]
        maps = above_floor(np.stack([np.asarray(m.map, np.float64) for m in mine]))
        sums = maps.sum(axis=(1, 2), keepdims=True)
        norm = np.where(sums > 0, maps / np.where(sums > 0, sums, 1), 1.0 / maps[0].size)
        labels = merge_by_hotspot(cluster_maps(maps), norm)
        feats = features(maps)
        for c in range(int(labels.max()) + 1):
            idx = np.flatnonzero(labels == c)
            mean = norm[idx].mean(axis=0)
            m_side_y, m_side_x = mean.shape
            x0, y0, x1, y1 = mean_hotspot(mean)
            rep = int(idx[np.argmin(np.linalg.norm(feats[idx] - feats[idx].mean(axis=0), axis=1))])
            span = mean.max() - mean.min()
            clusters.append({
                "target": target, "target_index": int(target_index), "cluster": c,
                "images": [mine[i].image for i in idx], "size": int(len(idx)), "of_target": len(mine),
                "accuracy": (None if all(mine[i].correct is None for i in idx) else
                             float(np.mean([bool(mine[i].correct) for i in idx if mine[i].correct is not None]))),
                "mean_probability": float(np.mean([mine[i].score for i in idx])),
                "hotspot_view": [x0 / m_side_x, y0 / m_side_y, x1 / m_side_x, y1 / m_side_y],
                "representative": mine[rep].image,
                "mean_map": np.round((mean - mean.min()) / span if span > 0 else 0 * mean, 4).tolist(),
                "method": method, "layer": layer, "members": [],
            })
            jobs += [(len(clusters) - 1, mine[i]) for i in idx]

    # Pass 1: where each member's hotspot lies on its own film.
    for done, (ci, m) in enumerate(jobs, start=1):
        cl = clusters[ci]
        image = load(m.path)
        h, w = image.shape[:2]
        view = view_box(h, w, model)
        box = _box_on_film(cl["hotspot_view"], view, h, w)
        grey, cam, sy, sx = _on_work_grid(image, above_floor(m.map), view)
        body = foreground(grey)
        hot = np.zeros(cam.shape, bool)
        hot[int(box[1] * sy):max(int(box[1] * sy) + 1, math.ceil(box[3] * sy)),
            int(box[0] * sx):max(int(box[0] * sx) + 1, math.ceil(box[2] * sx))] = True
        inside = np.where(hot, cam, 0.0)
        cl["members"].append({"image": m.image, "path": m.path, "score": float(m.score), "hotspot": list(box),
                              "control": None, "erased": None, "film": [h, w], "body": round(float(body.mean()), 4),
                              "hot": shares(inside if inside.sum() > 0 else hot.astype(float), body),
                              **{k: round(v, 4) for k, v in shares(cam, body).items()}})
        if progress is not None:
            progress(0.5 * done / len(jobs))
    for cl in clusters:
        cl["shares"] = {k: round(float(np.mean([m["hot"][k] for m in cl["members"]])), 4)
                        for k in ("border", "corners", "outside_body")}
        cl["where"] = where(cl["shares"])

    # Pass 2: erase the hotspot and the control region; only where a hotspot could be a shortcut
    # (the cost is two forward passes per member), unless asked for every cluster, and on at most
    # ``erase_at_most`` members spread evenly over the cluster: the mean drop is an estimate.
    tested = [(ci, int(slot)) for ci, cl in enumerate(clusters) if erase_inside or cl["where"] != "inside"
              for slot in np.unique(np.linspace(0, len(cl["members"]) - 1,
                                                min(len(cl["members"]), erase_at_most)).round().astype(int))]
    pending: list[tuple[int, int, torch.Tensor]] = []  # (cluster, member slot, [erased; control] input)

    def flush() -> None:
        if not pending:
            return
        p = _probabilities(model, torch.cat([x for _, _, x in pending]))  # (2B, K): erased, control, ...
        for k, (ci, slot, _) in enumerate(pending):
            t = clusters[ci]["target_index"]
            clusters[ci]["members"][slot].update(erased=float(p[2 * k, t]), control=float(p[2 * k + 1, t]))
        pending.clear()

    for done, (ci, slot) in enumerate(tested, start=1):
        row = clusters[ci]["members"][slot]
        image = load(row["path"])
        h, w = image.shape[:2]
        box = row["hotspot"]
        pending.append((ci, slot, torch.cat([preprocess(erase(image, box), model),
                                             preprocess(erase(image, control_box(box, h, w)), model)])))
        if len(pending) >= batch_size:
            flush()
        if progress is not None:
            progress(0.5 + 0.5 * done / len(tested))
    flush()
    for cl in clusters:
        _conclude(cl)
    if progress is not None:
        progress(1.0)
    return clusters


def _conclude(cl: dict[str, Any]) -> None:
    """Means over members, ``where``, ``flagged`` and the sentence of one cluster."""
    ms = cl["members"]
    rep = next(m for m in ms if m["image"] == cl["representative"])
    h, w = rep["film"]
    cl["hotspot"], cl["film"] = rep["hotspot"], rep["film"]
    x0, y0, x1, y1 = rep["hotspot"]
    cl["control"] = list(control_box(rep["hotspot"], h, w))
    cl["attention"] = {k: round(float(np.mean([m[k] for m in ms])), 4) for k in ("border", "corners", "outside_body")}
    tried = [m for m in ms if m["erased"] is not None]
    erased = bool(tried)
    cl["erased"] = len(tried)
    cl["erasure_drop"] = round(float(np.mean([m["score"] - m["erased"] for m in tried])), 4) if erased else None
    cl["control_drop"] = round(float(np.mean([m["score"] - m["control"] for m in tried])), 4) if erased else None
    for m in ms:
        m.pop("hot")
        m.pop("path")
        for k in ("erased", "control"):
            m[k] = None if m[k] is None else round(m[k], 4)
    cl["flagged"] = bool(erased and cl["where"] != "inside" and cl["size"] >= MIN_MEMBERS
                         and cl["erasure_drop"] >= MIN_DROP
                         and cl["erasure_drop"] >= CONTROL_RATIO * max(cl["control_drop"], 0.0))
    place = location((x0, y0, x1, y1), h, w) + (", outside the body" if cl["where"] == "outside body" else "")
    cl["location"] = place
    films = f"{cl['size']} of {cl['of_target']} '{cl['target']}' films"
    if not erased:
        cl["sentence"] = f"{films} look mostly at {place}, inside the body (not erased: no shortcut suspected)."
    else:
        verb = "are explained by" if cl["flagged"] else "look mostly at"
        cl["sentence"] = (f"{films} {verb} {place}; erasing it drops the probability by {cl['erasure_drop']:.2f} "
                          f"(control {cl['control_drop']:.2f}).")


def shortcuts_of_run(model: torch.nn.Module, dataset: Any, folder: Any, *, method: str | None = None,
                     layer: str | None = None, progress: Callable[[float], None] | None = None) -> list[dict[str, Any]]:
    """:func:`find_shortcuts` on an audit's rows and stored maps (by default the first method at
    the model's recommended CAM layer, as the gallery), the images read from ``dataset``."""
    from .summary import default_pair

    table = folder.read_rows(["image", "target", "target_index", "method", "layer", "score", "correct",
                              "chunk", "map_index"])
    pair = default_pair(table, getattr(model, "metadata", {}).get("cam_layer"))
    if pair is None:
        return []
    method, layer = method or pair[0], layer or pair[1]
    paths = {item.image: item.path for item in dataset.items}
    cache: dict[int, np.ndarray] = {}
    members = []
    for r in table.to_pylist():
        if r["method"] != method or r["layer"] != layer or r["image"] not in paths:
            continue
        maps = cache.setdefault(r["chunk"], folder.read_maps(r["chunk"]))
        members.append(Member(r["image"], Path(paths[r["image"]]), r["target"], int(r["target_index"]),
                              float(r["score"]), r["correct"], maps[r["map_index"]].astype(np.float32)))
    return find_shortcuts(model, members, method=method, layer=layer, progress=progress)


def shortcuts_path(folder: Any) -> Path:
    """Where a run folder (a :class:`~densenet.audit.results.RunFolder` or its path) keeps its clusters."""
    return Path(getattr(folder, "path", folder)) / "shortcuts.json"


def shortcuts_of_folder(model: torch.nn.Module, dataset: Any, folder: Any,
                        progress: Callable[[float], None] | None = None) -> list[dict[str, Any]]:
    """:func:`shortcuts_of_run`, kept in ``shortcuts.json`` so that a rerun of a finished audit
    does not redo it (as the sanity check); returns the clusters."""
    from .results import _atomic_write

    path = shortcuts_path(folder)
    if path.is_file():
        return json.loads(path.read_text())
    found = shortcuts_of_run(model, dataset, folder, progress=progress)
    _atomic_write(path, json.dumps(found).encode())
    return found


def read_shortcuts(folder: Any) -> list[dict[str, Any]] | None:
    """The clusters a run found (``None`` when it did not look); ``folder``: a run folder or its path."""
    path = shortcuts_path(folder)
    return json.loads(path.read_text()) if path.is_file() else None
