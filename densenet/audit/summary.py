"""The scorecard of an audit's rows: per method x layer, overall and per class, with intervals; the gallery."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa

from . import metrics

RESAMPLES = 1000


def _ci(values: np.ndarray, seed: int) -> dict[str, float | None]:
    mean, low, high = metrics.bootstrap_ci(values, resamples=RESAMPLES, seed=seed)
    clean = (lambda v: None if math.isnan(v) else round(v, 6))
    return {"mean": clean(mean), "low": clean(low), "high": clean(high)}


def _localisation(rows: dict[str, np.ndarray], mask: np.ndarray, seed: int) -> dict[str, Any]:
    has = mask & rows["has_truth"]
    return {
        "rows": int(mask.sum()), "with_truth": int(has.sum()),
        "hit_rate": _ci(rows["hit"][has].astype(np.float64), seed),
        # the pointing game by each kind of truth, where the row has it (both: a mask and boxes)
        "hit_rate_mask": _ci(rows["hit_mask"][mask & rows["has_mask"]].astype(np.float64), seed + 6),
        "hit_rate_box": _ci(rows["hit_box"][mask & rows["has_box"]].astype(np.float64), seed + 7),
        "energy_in": _ci(rows["energy_in"][has], seed + 1),
        "iou": _ci(rows["iou"][has], seed + 2),
        "dice": _ci(rows["dice"][has], seed + 3),
        "deletion_auc": _ci(rows["deletion_auc"][mask], seed + 4),
        "insertion_auc": _ci(rows["insertion_auc"][mask], seed + 5),
    }


def _columns(table: pa.Table) -> dict[str, np.ndarray]:
    out = {}
    for name in ("image", "target", "method", "layer", "predicted", "target_source"):
        out[name] = np.asarray(table.column(name).to_pylist(), dtype=object)
    for name in ("score", "energy_in", "iou", "dice", "deletion_auc", "insertion_auc", "lesion_fraction"):
        out[name] = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
    hit = table.column("hit").to_pylist()
    out["has_truth"] = np.array([h is not None for h in hit], bool)
    out["hit"] = np.array([bool(h) for h in hit], bool)
    for kind in ("mask", "box"):  # runs written before these columns existed have neither
        values = table.column(f"hit_{kind}").to_pylist() if f"hit_{kind}" in table.column_names else [None] * len(hit)
        out[f"has_{kind}"] = np.array([h is not None for h in values], bool)
        out[f"hit_{kind}"] = np.array([bool(h) for h in values], bool)
    return out


def classification(table: pa.Table, class_names: list[str], multilabel: bool, *,
                   labelled: bool = False) -> dict[str, Any]:
    """Accuracy (single-label) or AUROC per class (multi-label), one entry per labelled image.

    With ``labelled`` (the dataset had labels), a multi-label image with no positive label (NIH's
    ``No Finding``) is a negative for every class; a class marked uncertain on an image (and not
    made a target) leaves that image out of that class's AUROC rather than counting it negative.
    """
    columns = ["image", "labels", "probabilities", "predicted", "target_source"]
    has_uncertain = "uncertain" in table.column_names
    t = table.select(columns + (["uncertain"] if has_uncertain else []))
    seen: dict[str, tuple[list[str], list[float], str]] = {}
    unsure: dict[str, list[str]] = {}
    values = [t.column(c).to_pylist() for c in t.column_names]
    for image, labels, probs, pred, source, *rest in zip(*values):
        if (labels or (labelled and multilabel)) and image not in seen:  # one entry per labelled image
            seen[image] = (labels, probs, pred)
            unsure[image] = (rest[0] or []) if rest else []
    if not seen:
        return {"images": 0}
    if not multilabel:
        correct = np.array([pred in labels for labels, _, pred in seen.values()], np.float64)
        per_class = {}
        for k, cls in enumerate(class_names):
            sel = np.array([cls in labels for labels, _, _ in seen.values()])
            if sel.any():
                per_class[cls] = {"images": int(sel.sum()), "accuracy": _ci(correct[sel], 100 + k)}
        return {"images": len(seen), "metric": "accuracy", "accuracy": _ci(correct, 99), "per_class": per_class}
    probs = np.array([p for _, p, _ in seen.values()], np.float64)
    per_class = {}
    aucs = []
    for k, cls in enumerate(class_names):
        positive = np.array([cls in labels for labels, _, _ in seen.values()])
        known = np.array([cls not in unsure[image] for image in seen])
        auc = metrics.auroc(probs[known, k], positive[known])
        per_class[cls] = {"images": int(positive.sum()), "auroc": None if math.isnan(auc) else round(auc, 6)}
        if (~known).any():
            per_class[cls]["uncertain_left_out"] = int((~known).sum())
        if not math.isnan(auc):
            aucs.append(auc)
    return {"images": len(seen), "metric": "auroc", "mean_auroc": round(float(np.mean(aucs)), 6) if aucs else None,
            "per_class": per_class}


def summarise(table: pa.Table, class_names: list[str], *, multilabel: bool = False,
              skipped: int = 0, images_total: int | None = None, labelled: bool = False) -> dict[str, Any]:
    """The scorecard of ``table`` (all rows so far).

    Returns:
        ``{"rows", "images", "skipped", "classification", "by_method_layer": [{"method", "layer",
        "overall": {...}, "per_class": {class: {...}}}]}``; each metric is ``{"mean", "low", "high"}``
        (95% percentile bootstrap, 1,000 resamples; ``None`` where no row has a value).
    """
    rows = _columns(table)
    pairs = list(dict.fromkeys(zip(rows["method"].tolist(), rows["layer"].tolist())))
    by = []
    for j, (method, layer) in enumerate(pairs):
        sel = (rows["method"] == method) & (rows["layer"] == layer)
        entry = {"method": method, "layer": layer, "overall": _localisation(rows, sel, 1000 * j), "per_class": {}}
        for k, cls in enumerate(class_names):
            csel = sel & (rows["target"] == cls)
            if csel.any():
                entry["per_class"][cls] = _localisation(rows, csel, 1000 * j + 10 * (k + 1))
        by.append(entry)
    return {
        "rows": int(table.num_rows), "images": int(len(set(rows["image"].tolist()))),
        "images_total": images_total, "skipped": skipped,
        "classification": classification(table, class_names, multilabel, labelled=labelled),
        "by_method_layer": by,
    }


def default_pair(table: pa.Table, prefer_layer: str | None = None) -> tuple[str, str] | None:
    """The (method, layer) a gallery shows by default: the first method at ``prefer_layer``
    (the model's recommended CAM layer) when the rows have it, else the first pair."""
    if table.num_rows == 0:
        return None
    pairs = list(dict.fromkeys(zip(table.column("method").to_pylist(), table.column("layer").to_pylist())))
    first_method = pairs[0][0]
    if prefer_layer is not None and (first_method, prefer_layer) in pairs:
        return first_method, prefer_layer
    return pairs[0]


def gallery_cases(table: pa.Table, *, method: str | None = None, layer: str | None = None,
                  per_class: int = 3, prefer_layer: str | None = None) -> list[dict[str, Any]]:
    """The best and worst rows by IoU (ties: energy) per target class, for one method and layer.

    Args:
        table: the rows.
        method, layer: which maps; default: :func:`default_pair`.
        per_class: how many best and how many worst per class.
        prefer_layer: the layer :func:`default_pair` prefers (the model's ``cam_layer``).

    Returns:
        Row dicts (every column) plus ``"rank"``: ``"best"`` or ``"worst"``; best first per class.
    """
    pair = default_pair(table, prefer_layer)
    if pair is None:
        return []
    method, layer = method or pair[0], layer or pair[1]
    records = [r for r in table.to_pylist() if r["method"] == method and r["layer"] == layer and r["hit"] is not None]
    out = []
    for cls in dict.fromkeys(r["target"] for r in records):
        mine = [r for r in records if r["target"] == cls and not math.isnan(r["iou"])]
        mine.sort(key=lambda r: (-r["iou"], -_nz(r["energy_in"]), r["image"]))
        best = mine[:per_class]
        worst = [r for r in reversed(mine[-per_class:]) if r not in best]
        out += [{**r, "rank": "best"} for r in best] + [{**r, "rank": "worst"} for r in worst]
    return out


def _nz(v: float) -> float:
    return 0.0 if v is None or math.isnan(v) else v
