"""The Audit page's figures and tables, as pure functions of an audit's summary, rows and maps.

Nothing here imports Streamlit: every figure and table is built and checked in a plain test.
Inputs are what :mod:`densenet.audit` returns: the summary dict of ``read_summary`` /
``summary_now``, a ``pyarrow.Table`` of rows, a :class:`densenet.audit.Progress`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from densenet import explain
from densenet.audit.report import outline

from .analysis import short_name

#: The two localisation scores the heat map shows, with their titles.
HEAT_METRICS = (("hit_rate", "hit rate (pointing game)"), ("iou", "mean IoU"))
TRUTH_COLOUR = (0, 220, 0)
OUTLINE_ON_MAP = (255, 255, 255)


def method_label(name: str) -> str:
    """A method's label from the registry; a name it does not know (an older audit) as it is."""
    try:
        return explain.method(name).label
    except ValueError:
        return name


def layer_label(layer: str) -> str:
    return "input" if layer == explain.INPUT else short_name(layer)


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def interval(ci: dict[str, Any] | None, *, percent: bool = False) -> str:
    """``{"mean", "low", "high"}`` as ``"53.0% (45.0–60.9%)"`` or ``"0.249 (0.221–0.280)"``; ``–`` when empty."""
    if not ci or ci.get("mean") is None:
        return "–"
    f = _pct if percent else _num
    if ci.get("low") is None or ci.get("high") is None:
        return f(ci["mean"])
    return f"{f(ci['mean'])} ({f(ci['low']).rstrip('%')}–{f(ci['high'])})"


# --- the scorecard -------------------------------------------------------------------------------

def _score_row(entry: dict[str, Any]) -> dict[str, Any]:
    return {"rows with truth": entry["with_truth"],
            "hit rate": interval(entry["hit_rate"], percent=True),
            "energy inside": interval(entry["energy_in"]),
            "IoU": interval(entry["iou"]),
            "Dice": interval(entry["dice"])}


def scorecard(summary: dict[str, Any]) -> pd.DataFrame:
    """One row per method x layer: rows with truth, hit rate, energy inside, IoU and Dice with 95% intervals."""
    rows = [{"method": method_label(e["method"]), "layer": layer_label(e["layer"]), **_score_row(e["overall"])}
            for e in summary.get("by_method_layer", [])]
    return pd.DataFrame(rows, columns=["method", "layer", "rows with truth", "hit rate", "energy inside", "IoU",
                                       "Dice"])


def per_class(summary: dict[str, Any], method: str, layer: str) -> pd.DataFrame:
    """The scorecard of one method and layer, one row per target class (classes without truth included),
    with the classification accuracy of each class where the audit has it."""
    entry = next((e for e in summary.get("by_method_layer", []) if e["method"] == method and e["layer"] == layer),
                 None)
    if entry is None:
        raise ValueError(f"the summary has no rows for method {method!r} at layer {layer!r}")
    classes = summary.get("classification", {}).get("per_class", {})
    # Where images have a mask and boxes, "hit rate" is by mask (CheXlocalize); the box's answer beside it
    # (a ring's peak sits in its hole: inside the box, outside the mask).
    both = any((s.get("hit_rate_mask") or {}).get("mean") is not None
               and (s.get("hit_rate_box") or {}).get("mean") is not None for s in entry["per_class"].values())
    out = []
    for cls, scores in entry["per_class"].items():
        accuracy = classes.get(cls, {}).get("accuracy")
        row = _score_row(scores)
        del row["energy inside"]  # in the overall scorecard; here the table must fit beside the class names
        if both:
            row["hit by box"] = interval(scores.get("hit_rate_box") or {"mean": None}, percent=True)
        out.append({"class": cls, "rows": scores["rows"], **row,
                    "accuracy": interval(accuracy, percent=True) if accuracy else "–"})
    columns = ["class", "rows", "rows with truth", "hit rate"] + (["hit by box"] if both else []) + \
        ["IoU", "Dice", "accuracy"]
    return pd.DataFrame(out, columns=columns)


def classification_line(summary: dict[str, Any]) -> str:
    """The classification result in one sentence (accuracy, or mean AUROC for multi-label models)."""
    c = summary.get("classification", {})
    n = c.get("images", 0)
    if not n:
        return "No labelled images: targets are the model's top predictions, so there is no accuracy to report."
    if c.get("metric") == "accuracy":
        return f"Classification accuracy {interval(c['accuracy'], percent=True)} over {n:,} labelled images."
    auc = c.get("mean_auroc")
    return f"Mean AUROC {_num(auc)} over {n:,} labelled images (one sigmoid per finding)."


def heatmap(summary: dict[str, Any], *, label: Callable[[str], str] = method_label,
            layer_name: Callable[[str], str] = layer_label) -> go.Figure:
    """Hit rate and mean IoU by method (rows) x layer (columns), side by side, on one 0–1 colour scale.

    Empty cells (a pair not audited, or no row with ground truth) stay blank; hovering a cell
    gives its 95% interval and how many rows it rests on.
    """
    entries = summary.get("by_method_layer", [])
    methods = list(dict.fromkeys(e["method"] for e in entries))
    layers = list(dict.fromkeys(e["layer"] for e in entries))
    fig = make_subplots(rows=1, cols=len(HEAT_METRICS), subplot_titles=[t for _, t in HEAT_METRICS],
                        horizontal_spacing=0.12)
    for col, (metric, title) in enumerate(HEAT_METRICS, start=1):
        z: list[list[float | None]] = [[None] * len(layers) for _ in methods]
        hover = [[""] * len(layers) for _ in methods]
        for e in entries:
            i, j = methods.index(e["method"]), layers.index(e["layer"])
            ci = e["overall"][metric]
            z[i][j] = ci["mean"]
            hover[i][j] = (f"{label(e['method'])} at {layer_name(e['layer'])}<br>{title}: "
                           f"{interval(ci, percent=metric == 'hit_rate')}<br>"
                           f"{e['overall']['with_truth']} rows with truth")
        text = [["" if v is None else (f"{v:.0%}" if metric == "hit_rate" else f"{v:.2f}") for v in r] for r in z]
        fig.add_trace(go.Heatmap(z=z, x=[layer_name(x) for x in layers], y=[label(m) for m in methods],
                                 zmin=0, zmax=1, colorscale="Viridis", text=text, texttemplate="%{text}",
                                 hovertext=hover, hoverinfo="text", showscale=col == len(HEAT_METRICS),
                                 colorbar=dict(thickness=12, len=0.9), xgap=2, ygap=2), row=1, col=col)
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_xaxes(automargin=True, tickangle=0 if len(layers) <= 4 else -30)
    fig.update_layout(height=150 + 48 * max(1, len(methods)), margin=dict(l=10, r=10, t=40, b=10),
                      plot_bgcolor="white", paper_bgcolor="white")
    return fig


# --- progress and rows ---------------------------------------------------------------------------

def duration(seconds: float) -> str:
    """``42 s``, ``3 min 5 s``, ``1 h 02 min``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


STATES = {"starting": "Starting", "running": "Auditing", "finishing": "Writing the scorecard and report",
          "done": "Done", "stopped": "Stopped", "failed": "Failed"}


def progress_text(p: Any) -> str:
    """A :class:`densenet.audit.Progress` in one line: state, images done of total, pace, time left."""
    parts = [f"{STATES.get(p.state, p.state)}: {p.images_done:,} of {p.images_total:,} images"]
    if p.images_resumed:
        parts.append(f"{p.images_resumed:,} from an earlier run")
    if p.images_per_s > 0:
        parts.append(f"{p.images_per_s:.1f} images/s")
    if p.state == "running" and p.eta_s is not None and math.isfinite(p.eta_s):
        parts.append(f"about {duration(p.eta_s)} left")
    parts.append(f"{p.rows:,} rows")
    if p.skipped:
        parts.append(f"{p.skipped:,} skipped")
    return " · ".join(parts)


ROW_COLUMNS = ["image", "target", "method", "layer", "predicted", "score", "hit", "iou", "dice"]


def latest_rows(table: Any, n: int = 10) -> pd.DataFrame:
    """The last ``n`` committed rows (a ``pyarrow.Table`` with at least :data:`ROW_COLUMNS`), newest first,
    with method and layer labels; ``hit`` is empty where the image has no ground truth."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    start = max(0, table.num_rows - n)
    rows = table.select(ROW_COLUMNS).slice(start).to_pylist()[::-1]
    frame = pd.DataFrame(rows, columns=ROW_COLUMNS)
    frame["method"] = [method_label(m) for m in frame["method"]]
    frame["layer"] = [layer_label(x) for x in frame["layer"]]
    return frame.rename(columns={"score": "p(target)", "iou": "IoU", "dice": "Dice"})


# --- gallery -------------------------------------------------------------------------------------

def case_picture(display: np.ndarray, truth: np.ndarray | None, cam: np.ndarray, *, alpha: float = 0.5,
                 gap: int = 4) -> np.ndarray:
    """One gallery case as one picture: the model's view with the ground truth outlined (green), then
    the stored map over it (min–max, as stored) with the outline in white.

    Args:
        display: the image as the model sees it, (S, S) or (S, S, 3) in [0, 1].
        truth: (S, S) bool ground truth on the model's grid, or ``None``.
        cam: the stored (m, m) map in [0, 1] (resized to the view, bilinear).
        alpha: weight of the map's colours.
        gap: white pixels between the two halves.

    Returns:
        (S, 2 S + gap, 3) uint8 RGB.
    """
    display = np.asarray(display, np.float64)
    if display.ndim == 3:
        grey = display.mean(axis=2)
    elif display.ndim == 2:
        grey = display
    else:
        raise ValueError(f"display must be (S, S) or (S, S, 3), got shape {display.shape}")
    size = grey.shape[0]
    if grey.shape != (size, size):
        raise ValueError(f"display must be square, got shape {display.shape}")
    if truth is not None and np.shape(truth) != (size, size):
        raise ValueError(f"truth must be {(size, size)}, got {np.shape(truth)}")
    rgb = np.repeat((np.clip(grey, 0, 1) * 255).round().astype(np.uint8)[:, :, None], 3, axis=2)
    # overlay() resizes the small map to the view (bilinear)
    over = explain.overlay(np.clip(grey, 0, 1), np.clip(np.asarray(cam, np.float32), 0, 1), alpha=alpha)
    if truth is not None:
        edge = outline(truth)
        rgb[edge] = TRUTH_COLOUR
        over[edge] = OUTLINE_ON_MAP
    spacer = np.full((size, gap, 3), 255, np.uint8)
    return np.concatenate([rgb, spacer, over], axis=1)


def case_caption(case: dict[str, Any]) -> str:
    """A gallery case in one line: rank, IoU, hit or miss, confidence, what was predicted."""
    iou = case.get("iou")
    hit = case.get("hit")
    parts = [f"{case['rank']}", f"IoU {iou:.2f}" if iou is not None and not math.isnan(iou) else "IoU –",
             "hit" if hit else ("miss" if hit is not None else "no truth"), f"p = {case['score']:.2f}"]
    if case.get("predicted") and case["predicted"] != case["target"]:
        parts.append(f"predicted {case['predicted']}")
    return f"{case['image']} · " + " · ".join(parts)


def dataset_line(dataset: Any) -> str:
    """A listed :class:`densenet.audit.Dataset` in one line: images, labels, ground truth, problems."""
    items = dataset.items
    boxes = sum(1 for it in items if it.boxes)
    masks = sum(1 for it in items if it.masks)
    parts = [f"{len(items):,} images"]
    parts.append(f"labels from {Path(dataset.sources['labels']).name}" if "labels" in dataset.sources
                 else ("labels from class folders" if dataset.has_labels else "no labels (targets: top prediction)"))
    if boxes:
        parts.append(f"{boxes:,} with boxes ({Path(dataset.sources['boxes']).name})" if "boxes" in dataset.sources
                     else f"{boxes:,} with boxes")
    if masks:
        parts.append(f"{masks:,} with masks")
    if not boxes and not masks:
        parts.append("no ground truth: only predictions and maps, no localisation scores")
    if dataset.problems:
        parts.append(f"{len(dataset.problems):,} not auditable as listed (why: below)")
    return " · ".join(parts)


def recognised_lines(dataset: Any) -> list[str]:
    """What the listing read, before a run: each file's format, the label counts, the names mapped and unmatched."""
    d = getattr(dataset, "details", {}) or {}
    lines = []
    lab = d.get("labels")
    if lab:
        name = Path(dataset.sources.get("labels", "")).name
        lines.append(f"Labels `{name}` read as **{lab['format']}**: {lab.get('positive', 0):,} positive, "
                     f"{lab.get('negative', 0):,} negative, {lab.get('uncertain', 0):,} uncertain "
                     f"(policy: {lab.get('uncertain_policy')}), {lab.get('blank', 0):,} blank.")
    for what in ("boxes", "masks"):
        if d.get(what):
            name = Path(dataset.sources.get(what, "")).name
            counts = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in d[what].items()
                               if k != "format" and isinstance(v, int))
            lines.append(f"{what.capitalize()} `{name}` read as **{d[what]['format']}**" + (f" ({counts})." if counts else "."))
    voc = d.get("vocabulary", {})
    if voc.get("mapped"):
        lines.append("Mapped to the model's classes: " + "; ".join(
            f"{k} → {', '.join(v['classes'])} ({v['by']})" for k, v in voc["mapped"].items()) + ".")
    if voc.get("unmatched"):
        lines.append("Matched none of the model's classes (counted in skipped.csv): " + ", ".join(
            f"{k} ({n:,})" for k, n in voc["unmatched"].items()) + ".")
    return lines
