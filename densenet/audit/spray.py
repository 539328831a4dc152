"""Spectral relevance analysis (SpRAy, Lapuschkin et al. 2019): clusters of maps, and their hotspots.

Maps are taken above their own median (:func:`above_floor`), downsampled and normalised
(:func:`features`); a k-nearest-neighbours affinity (scikit-learn's ``nearest_neighbors``),
the number of clusters by the eigengap of its normalised Laplacian (:func:`eigengap`), then
``SpectralClustering`` on that same affinity (:func:`cluster_maps`). A cluster's hotspot is the
smallest box holding a fixed share of its mean map's energy (:func:`hotspot`,
:func:`mean_hotspot`); clusters whose hotspots coincide are merged (:func:`merge_by_hotspot`).
Used by :mod:`.shortcuts`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch

HOTSPOT_SHARE = 0.9  #: share of a mean map's energy (sum of squares above its median) its hotspot holds
HOTSPOT_PAD = 1  #: cells of the map grid added around the hotspot box
MERGE_IOU = 0.5  #: clusters whose hotspots overlap this much are merged
MAX_CLUSTERS = 8
FEATURE_SIDE = 16  #: maps are clustered at this resolution
MIN_SIZE = 3  #: fewer than twice this many maps make one cluster

# --- clustering ----------------------------------------------------------------------------------

def above_floor(maps: np.ndarray) -> np.ndarray:
    """Each map minus its own median, clipped at 0: ``(..., m, m)``.

    A min-max Grad-CAM often sits on a faint floor over the whole film; summed over hundreds of
    cells the floor outweighs the peak and would decide the clusters and the hotspot boxes.
    """
    m = np.clip(np.nan_to_num(np.asarray(maps, np.float64)), 0, None)
    return np.clip(m - np.median(m, axis=(-2, -1), keepdims=True), 0, None)


def features(maps: np.ndarray, side: int = FEATURE_SIDE) -> np.ndarray:
    """``(N, side * side)`` unit vectors of the maps ``(N, m, m)``, area-downsampled (a flat map: uniform)."""
    if maps.ndim != 3:
        raise ValueError(f"maps must be (N, m, m), got shape {maps.shape}")
    t = torch.from_numpy(np.clip(np.nan_to_num(maps.astype(np.float32)), 0, None))[:, None]
    f = torch.nn.functional.adaptive_avg_pool2d(t, min(side, maps.shape[-1])).flatten(1).numpy().astype(np.float64)
    norm = np.linalg.norm(f, axis=1, keepdims=True)
    flat = norm[:, 0] <= 1e-12
    f[flat] = 1.0
    norm[flat] = math.sqrt(f.shape[1])
    return f / norm


def knn_affinity(x: np.ndarray, n_neighbors: int) -> np.ndarray:
    """scikit-learn's ``nearest_neighbors`` affinity, dense: ``(A + A.T) / 2`` of the kNN connectivity
    (each point its own neighbour too)."""
    from sklearn.neighbors import kneighbors_graph

    a = kneighbors_graph(x, n_neighbors=n_neighbors, include_self=True).toarray()
    return 0.5 * (a + a.T)


def eigengap(affinity: np.ndarray, max_clusters: int = MAX_CLUSTERS) -> int:
    """The number of clusters the eigengap heuristic reads from an affinity matrix.

    The eigenvalues ``l_1 <= l_2 <= ...`` of the normalised Laplacian ``I - D^-1/2 A D^-1/2``;
    the answer is the ``k <= max_clusters`` with the largest gap ``l_{k+1} - l_k`` (a graph of
    ``c`` separate components has ``c`` zero eigenvalues, then a jump: ``c``).

    Raises:
        ValueError: a matrix that is not square and symmetric, or ``max_clusters < 1``.
    """
    a = np.asarray(affinity, np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or not np.allclose(a, a.T):
        raise ValueError(f"affinity must be a square symmetric matrix, got shape {a.shape}")
    if max_clusters < 1:
        raise ValueError(f"max_clusters must be at least 1, got {max_clusters}")
    n = a.shape[0]
    if n <= 2:
        return 1
    d = a.sum(axis=1)
    inv = np.where(d > 0, 1.0 / np.sqrt(np.where(d > 0, d, 1.0)), 0.0)
    lap = np.eye(n) - inv[:, None] * a * inv[None, :]
    values = np.linalg.eigvalsh(lap)
    kmax = min(max_clusters, n - 1)
    gaps = np.diff(values[:kmax + 1])
    return int(np.argmax(gaps)) + 1


def cluster_maps(maps: np.ndarray, *, max_clusters: int = MAX_CLUSTERS, seed: int = 0) -> np.ndarray:
    """SpRAy: spectral clusters of maps ``(N, m, m)``; ``(N,)`` int labels 0..k-1, biggest cluster first."""
    n = len(maps)
    if n < 2 * MIN_SIZE:
        return np.zeros(n, int)
    x = features(maps)
    affinity = knn_affinity(x, n_neighbors=max(3, min(10, int(round(math.sqrt(n))))))
    k = eigengap(affinity, max_clusters)
    if k == 1:
        return np.zeros(n, int)
    from sklearn.cluster import SpectralClustering

    with warnings.catch_warnings():  # separate components are what clusters are
        warnings.filterwarnings("ignore", message="Graph is not fully connected")
        labels = SpectralClustering(n_clusters=k, affinity="precomputed", random_state=seed).fit_predict(affinity)
    order = sorted(set(labels.tolist()), key=lambda c: (-(labels == c).sum(), c))
    return np.array([order.index(c) for c in labels.tolist()])


# --- hotspots --------------------------------------------------------------------------------------

def hotspot(energy: np.ndarray, share: float = HOTSPOT_SHARE) -> tuple[int, int, int, int]:
    """The smallest box ``(x0, y0, x1, y1)`` (cells, ``x1``/``y1`` exclusive) holding ``share`` of a map's energy.

    Ties of area go to the box holding more energy. Exhaustive over all boxes (summed-area table):
    meant for maps of a few dozen cells a side.

    Raises:
        ValueError: not a 2-D non-negative map, or ``share`` outside (0, 1].
    """
    e = np.asarray(energy, np.float64)
    if e.ndim != 2 or not np.isfinite(e).all() or (e < 0).any():
        raise ValueError(f"energy must be a finite, non-negative 2-D map, got shape {e.shape}")
    if not 0 < share <= 1:
        raise ValueError(f"share must lie in (0, 1], got {share}")
    h, w = e.shape
    total = e.sum()
    if total <= 0:
        return 0, 0, w, h
    s = np.zeros((h + 1, w + 1))
    s[1:, 1:] = e.cumsum(0).cumsum(1)
    need = share * total * (1 - 1e-9)
    x0, x1 = np.triu_indices(w + 1, 1)  # every column span x0 < x1
    best: tuple[float, float, tuple[int, int, int, int]] | None = None
    for y0 in range(h):
        for y1 in range(y0 + 1, h + 1):
            inside = s[y1, x1] - s[y0, x1] - s[y1, x0] + s[y0, x0]
            ok = inside >= need
            if not ok.any():
                continue
            area = (x1 - x0) * (y1 - y0)
            cand = np.where(ok, area, np.inf)
            j = int(np.lexsort((-inside, cand))[0])
            key = (float(cand[j]), -float(inside[j]))
            if best is None or key < best[:2]:
                best = (*key, (int(x0[j]), y0, int(x1[j]), y1))
    assert best is not None  # the whole map holds everything
    return best[2]


def mean_hotspot(mean: np.ndarray) -> tuple[int, int, int, int]:
    """A cluster's hotspot in cells of its mean map: :func:`hotspot` of the squared values above
    the median, one cell wider on each side (a map is only as sharp as its grid)."""
    h, w = mean.shape
    x0, y0, x1, y1 = hotspot(above_floor(mean) ** 2)
    return max(0, x0 - HOTSPOT_PAD), max(0, y0 - HOTSPOT_PAD), min(w, x1 + HOTSPOT_PAD), min(h, y1 + HOTSPOT_PAD)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes."""
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def merge_by_hotspot(labels: np.ndarray, maps: np.ndarray, min_iou: float = MERGE_IOU) -> np.ndarray:
    """Clusters whose hotspots coincide (IoU >= ``min_iou``) are one strategy: merge them, until none do.

    Spectral clusters also split on what lies outside the hotspot (a faint texture here or
    there); for "what does the model look at" those are the same answer.

    Args:
        labels: ``(N,)`` cluster of each map.
        maps: ``(N, m, m)`` maps (each summing to 1).

    Returns:
        ``(N,)`` labels 0..k-1, biggest cluster first.
    """
    labels = np.asarray(labels).copy()
    while True:
        ids = sorted(set(labels.tolist()))
        boxes = {c: mean_hotspot(maps[labels == c].mean(axis=0)) for c in ids}
        pair = next(((a, b) for i, a in enumerate(ids) for b in ids[i + 1:] if box_iou(boxes[a], boxes[b]) >= min_iou),
                    None)
        if pair is None:
            break
        labels[labels == pair[1]] = pair[0]
    order = sorted(set(labels.tolist()), key=lambda c: (-(labels == c).sum(), c))
    return np.array([order.index(c) for c in labels.tolist()], int)
