"""``report.html``: one self-contained file (plotly inline once, images as data URIs, no network).

Sections: the scorecard (overall and per class, with 95% bootstrap intervals), hit rate and IoU
by method x layer as heat maps, IoU against confidence and against lesion size, a gallery of
the best and worst cases per class, the skipped files and the run manifest.

CheXlocalize's published figures are not drawn as reference lines: we could not confirm the
per-finding numbers from the paper or its repository, so none are shown (see the issue).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..render import png_data_uri
from .dataset import Dataset, reload_dataset, truth_in_view
from .results import RunFolder, _atomic_write
from .summary import default_pair, gallery_cases, summarise

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1b1b1b;max-width:1200px}
h1{font-size:1.6em;margin-bottom:0} h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:0.9em;margin:8px 0} th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3} td.l,th.l{text-align:left} .ci{color:#666;font-size:0.85em}
.gallery{display:flex;flex-wrap:wrap;gap:12px} .case{width:300px;border:1px solid #ddd;padding:6px;font-size:0.8em}
.case img{width:145px;height:145px;image-rendering:pixelated} .best{border-top:4px solid #2a9d4a}
.worst{border-top:4px solid #c0392b} .muted{color:#666} pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:0.8em}
"""


def _fmt(ci: dict[str, Any] | None, pct: bool = False) -> str:
    if not ci or ci.get("mean") is None:
        return "&ndash;"
    f = (lambda v: f"{100 * v:.1f}%") if pct else (lambda v: f"{v:.3f}")
    return f"{f(ci['mean'])} <span class='ci'>[{f(ci['low'])}, {f(ci['high'])}]</span>"


def _tolerance(manifest: dict[str, Any]) -> str:
    tol = manifest.get("settings", {}).get("pointing_tolerance") or 0
    return f" or within {tol:g} px (model input) of it" if tol else " (no tolerance)"


def _binarisation(manifest: dict[str, Any]) -> str:
    b = manifest.get("settings", {}).get("binarize", "otsu")
    if b == "otsu":
        return "Otsu's threshold on the 8-bit map, contours filled (CheXlocalize's cam_to_segmentation)"
    return f"a fixed threshold, map &gt; {html.escape(str(b))} (strict, as CheXlocalize)"


def _where(manifest: dict[str, Any]) -> str:
    s = manifest.get("settings", {})
    size = manifest.get("model", {}).get("preprocessing_dict", {}).get("size", "")
    if s.get("resolution", "input") == "original":
        return ("Scored at each film's resolution, the map carried back through the preprocessing's geometry "
                "(CheXlocalize's protocol).")
    return f"Scored on the model's {size} px input grid."


def _recognised(manifest: dict[str, Any]) -> str:
    """What the label and truth files were read as: formats, label counts, the vocabulary mapping."""
    rec = manifest.get("dataset", {}).get("recognised", {})
    if not rec:
        return ""
    parts = []
    lab = rec.get("labels")
    if lab:
        parts.append(f"Labels read as <b>{html.escape(lab['format'])}</b>: {lab.get('positive', 0)} positive, "
                     f"{lab.get('negative', 0)} negative, {lab.get('uncertain', 0)} uncertain (policy "
                     f"<b>{html.escape(str(lab.get('uncertain_policy')))}</b>), {lab.get('blank', 0)} blank.")
    for what in ("boxes", "masks"):
        if rec.get(what):
            counts = ", ".join(f"{k} {v}" for k, v in rec[what].items() if k != "format")
            counted = f" ({html.escape(counts)})" if counts else ""
            parts.append(f"{what.capitalize()} read as <b>{html.escape(rec[what]['format'])}</b>{counted}.")
    voc = rec.get("vocabulary", {})
    if voc.get("mapped"):
        parts.append("Names mapped: " + "; ".join(f"{html.escape(k)} &rarr; {html.escape(', '.join(v['classes']))} "
                                                   f"({html.escape(v['by'])})" for k, v in voc["mapped"].items()) + ".")
    if voc.get("unmatched"):
        parts.append("Matched no class: " + ", ".join(f"{html.escape(k)} ({n})" for k, n in voc["unmatched"].items()) + ".")
    return "<p class='muted'>" + " ".join(parts) + "</p>" if parts else ""


def _num(v: float | None) -> str:
    return "&ndash;" if v is None or math.isnan(v) else f"{v:.3f}"


def _scorecard(summary: dict[str, Any]) -> str:
    parts = ["<table><tr><th class='l'>method</th><th class='l'>layer</th><th>rows with truth</th>"
             "<th>hit rate (pointing game)</th><th>by mask</th><th>by box</th><th>energy inside</th><th>IoU</th>"
             "<th>Dice</th></tr>"]
    for e in summary["by_method_layer"]:
        o = e["overall"]
        parts.append(f"<tr><td class='l'>{html.escape(e['method'])}</td><td class='l'>{html.escape(e['layer'])}</td>"
                     f"<td>{o['with_truth']}</td><td>{_fmt(o['hit_rate'], True)}</td>"
                     f"<td>{_fmt(o.get('hit_rate_mask'), True)}</td><td>{_fmt(o.get('hit_rate_box'), True)}</td>"
                     f"<td>{_fmt(o['energy_in'])}</td>"
                     f"<td>{_fmt(o['iou'])}</td><td>{_fmt(o['dice'])}</td></tr>")
    parts.append("</table>")
    for e in summary["by_method_layer"]:
        parts.append(f"<details><summary>per class: {html.escape(e['method'])} at {html.escape(e['layer'])}</summary>"
                     "<table><tr><th class='l'>class</th><th>rows with truth</th><th>hit rate</th><th>IoU</th>"
                     "<th>Dice</th></tr>")
        for cls, o in e["per_class"].items():
            parts.append(f"<tr><td class='l'>{html.escape(cls)}</td><td>{o['with_truth']}</td>"
                         f"<td>{_fmt(o['hit_rate'], True)}</td><td>{_fmt(o['iou'])}</td><td>{_fmt(o['dice'])}</td></tr>")
        parts.append("</table></details>")
    c = summary["classification"]
    if c.get("images"):
        if c["metric"] == "accuracy":
            parts.append(f"<p>Classification: accuracy {_fmt(c['accuracy'], True)} over {c['images']} labelled images.</p>")
            rows = "".join(f"<tr><td class='l'>{html.escape(k)}</td><td>{v['images']}</td><td>{_fmt(v['accuracy'], True)}</td></tr>"
                           for k, v in c["per_class"].items())
            parts.append(f"<table><tr><th class='l'>class</th><th>images</th><th>accuracy</th></tr>{rows}</table>")
        else:
            parts.append(f"<p>Classification: mean AUROC {_num(c.get('mean_auroc'))} "
                         f"over {c['images']} labelled images.</p>")
            rows = "".join(f"<tr><td class='l'>{html.escape(k)}</td><td>{v['images']}</td>"
                           f"<td>{_num(v['auroc'])}</td></tr>" for k, v in c["per_class"].items())
            parts.append(f"<table><tr><th class='l'>class</th><th>positives</th><th>AUROC</th></tr>{rows}</table>")
    return "\n".join(parts)


def _short(layer: str) -> str:
    return layer.removeprefix("features.")


def heatmap_figure(summary: dict[str, Any]):
    """Hit rate and mean IoU by method (rows) and layer (columns), both axes labelled and titled."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    entries = summary["by_method_layer"]
    methods = list(dict.fromkeys(e["method"] for e in entries))
    layers = list(dict.fromkeys(e["layer"] for e in entries))

    def grid(metric: str) -> list[list[float | None]]:
        g = [[None] * len(layers) for _ in methods]
        for e in entries:
            g[methods.index(e["method"])][layers.index(e["layer"])] = e["overall"][metric]["mean"]
        return g

    heat = make_subplots(rows=1, cols=2, subplot_titles=("hit rate (pointing game)", "mean IoU (Otsu)"),
                         horizontal_spacing=0.12)
    for col, metric in ((1, "hit_rate"), (2, "iou")):
        z = grid(metric)
        heat.add_trace(go.Heatmap(z=z, x=[_short(la) for la in layers], y=methods, colorscale="Viridis", zmin=0,
                                  zmax=1, text=[[("" if v is None else f"{v:.2f}") for v in r] for r in z],
                                  texttemplate="%{text}", showscale=col == 2, colorbar=dict(thickness=12)),
                       row=1, col=col)
        heat.update_xaxes(title_text="layer", type="category", automargin=True, row=1, col=col)
        heat.update_yaxes(title_text="method" if col == 1 else None, type="category", automargin=True, row=1, col=col)
    heat.update_layout(height=260 + 40 * len(methods), margin=dict(l=10, r=10, t=40, b=10))
    return heat


def scatter_figure(table, pair: tuple[str, str]):
    """IoU against confidence and against lesion size for one method and layer, one colour per class."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    method, layer = pair
    rows = [r for r in table.select(["method", "layer", "target", "score", "iou", "lesion_fraction", "image"]).to_pylist()
            if r["method"] == method and r["layer"] == layer and r["iou"] is not None and not math.isnan(r["iou"])]
    scatter = make_subplots(rows=1, cols=2, subplot_titles=("IoU against model confidence", "IoU against lesion size"),
                            horizontal_spacing=0.1)
    palette = qualitative.Plotly  # fixed colours: a plain browser draws them as Streamlit's theme would
    for k, cls in enumerate(dict.fromkeys(r["target"] for r in rows)):
        mine = [r for r in rows if r["target"] == cls]
        for col, key in ((1, "score"), (2, "lesion_fraction")):
            scatter.add_trace(go.Scatter(x=[r[key] for r in mine], y=[r["iou"] for r in mine], mode="markers",
                                         name=cls, legendgroup=cls, showlegend=col == 1,
                                         text=[r["image"] for r in mine],
                                         marker=dict(size=6, opacity=0.75, color=palette[k % len(palette)])),
                              row=1, col=col)
    scatter.update_xaxes(title_text="target probability", title_standoff=6, automargin=True, row=1, col=1)
    scatter.update_xaxes(title_text="lesion area (fraction of the image where scored)", title_standoff=6,
                         automargin=True, row=1, col=2)
    scatter.update_yaxes(title_text="IoU", range=[0, 1], title_standoff=6, automargin=True)
    scatter.update_layout(height=420, margin=dict(l=10, r=10, t=80, b=10),
                          title=dict(text=f"{method} at {_short(layer)}", y=0.97, yanchor="top"),
                          legend=dict(title_text="class"))
    return scatter


def _figures(summary: dict[str, Any], table, pair: tuple[str, str] | None) -> list[str]:
    figs = [heatmap_figure(summary)]
    if pair is not None:
        figs.append(scatter_figure(table, pair))
    return [fig.to_html(full_html=False, include_plotlyjs="inline" if k == 0 else False,
                        config={"displaylogo": False}) for k, fig in enumerate(figs)]


def outline(mask: np.ndarray) -> np.ndarray:
    """The boundary pixels of a boolean mask (inside pixels with a 4-neighbour outside it)."""
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def _case_pictures(case: dict[str, Any], dataset: Dataset, model: torch.nn.Module) -> tuple[str, str] | None:
    """(image with the truth outlined, map over the image) as PNG data URIs; ``None`` if unreadable."""
    from ..explain import overlay
    from ..geometry import view_box
    from ..images import load_image
    from ..preprocess import to_display

    item = next((it for it in dataset.items if it.image == case["image"]), None)
    if item is None:
        return None
    try:
        image = load_image(item.path)
        shown = to_display(image, model)
    except Exception:
        return None
    grey = shown if shown.ndim == 2 else shown.mean(axis=2)
    rgb = np.repeat((np.clip(grey, 0, 1) * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    h, w = image.shape[:2]
    size = rgb.shape[0]
    try:
        truth = truth_in_view(item, case["target"], h, w, view_box(h, w, model), size)
    except ValueError:
        truth = None
    if truth is not None:
        edge = outline(truth)
        rgb[edge] = (0, 230, 0)
    cam = torch.nn.functional.interpolate(torch.from_numpy(np.asarray(case["map"], np.float32))[None, None],
                                          size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()
    over = overlay(grey, np.clip(cam, 0, 1), alpha=0.5)
    if truth is not None:
        over[outline(truth)] = (255, 255, 255)
    return png_data_uri(rgb), png_data_uri(over)


def _gallery(folder: RunFolder, table, dataset: Dataset | None, model: torch.nn.Module, per_class: int,
             pair: tuple[str, str] | None) -> str:
    entries = []
    cases = gallery_cases(table, per_class=per_class, method=pair and pair[0], layer=pair and pair[1])
    if not cases:
        return "<p class='muted'>No case has ground truth to rank.</p>"
    cache: dict[int, np.ndarray] = {}
    for case in cases:
        maps = cache.setdefault(case["chunk"], folder.read_maps(case["chunk"]))
        case["map"] = maps[case["map_index"]].astype(np.float32)
        pics = _case_pictures(case, dataset, model) if dataset is not None else None
        imgs = "".join(f"<img src='{p}' alt=''>" for p in pics) if pics else "<p class='muted'>image unavailable</p>"
        entries.append(
            f"<div class='case {case['rank']}' data-image='{html.escape(case['image'])}'>{imgs}"
            f"<div><b>{html.escape(case['target'])}</b> &middot; {case['rank']} &middot; {html.escape(case['image'])}<br>"
            f"IoU {case['iou']:.3f} &middot; {'hit' if case['hit'] else 'miss'} &middot; energy {_num(case['energy_in'])}"
            f" &middot; p={case['score']:.2f} (predicted {html.escape(case['predicted'])})</div></div>")
    first = cases[0]
    return (f"<p class='muted'>{html.escape(first['method'])} at {html.escape(first['layer'])}: the {per_class} best "
            "and worst cases of each class by IoU; left the model's view with the ground truth outlined (green), "
            "right the map (min-max) with the outline in white.</p><div class='gallery'>" + "".join(entries) + "</div>")


def write_report(folder: RunFolder | str | Path, *, model: torch.nn.Module, dataset: Dataset | None = None,
                 per_class: int = 3) -> Path:
    """Write ``report.html`` in the run folder from what it holds now; returns its path.

    Args:
        folder: the run folder.
        model: the audited model (for class names and the preprocessing of the gallery images).
        dataset: the audited dataset (default: listed again from the manifest's paths).
        per_class: best and worst cases per class in the gallery.
    """
    folder = folder if isinstance(folder, RunFolder) else RunFolder(folder)
    manifest = folder.read_manifest() or {}
    if dataset is None and manifest.get("dataset"):
        try:
            dataset = reload_dataset(manifest, list(model.class_names))
        except ValueError:
            dataset = None
    table = folder.read_rows()
    skipped = folder.read_skipped() + folder.read_unmatched()
    summary = summarise(table, list(model.class_names), multilabel=bool(model.config.multilabel), skipped=len(skipped),
                        labelled=bool(manifest.get("dataset", {}).get("has_labels")))
    pair = default_pair(table, getattr(model, "metadata", {}).get("cam_layer"))
    figures = _figures(summary, table, pair)
    sanity_path = folder.path / "sanity.json"
    sanity_html = ""
    if sanity_path.is_file():
        sanity = json.loads(sanity_path.read_text())
        sanity_html = (f"<p>Sanity check (model randomisation, Adebayo et al. 2018), {html.escape(sanity['method'])} at "
                       f"{html.escape(sanity['layer'])} on {sanity['images']} images: Spearman rank correlation "
                       f"{_fmt(sanity['rank_correlation'])} between the maps of the model and of its randomised copy "
                       "(near 0: the maps depend on what the model learned).</p>")
    skipped_rows = "".join(f"<tr><td class='l'>{html.escape(i)}</td><td class='l'>{html.escape(r)}</td></tr>"
                           for i, r in skipped[:500])
    more = f"<p class='muted'>and {len(skipped) - 500} more (skipped.csv)</p>" if len(skipped) > 500 else ""
    model_info = manifest.get("model", {})
    body = f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Dataset audit</title>
<style>{_CSS}</style></head><body>
<h1>Dataset audit</h1>
<p class="muted">Model {html.escape(str(model_info.get('source', '')))} &middot; {summary['images']} images,
{summary['rows']} rows, {len(skipped)} skipped &middot; data {html.escape(str(manifest.get('dataset', {}).get('root', '')))}</p>
<h2 id="scorecard">Scorecard</h2>
<p class="muted">Means with 95% bootstrap intervals (1,000 resamples). Hit: the map's maximum lies inside the ground
truth{_tolerance(manifest)} (the pointing game by CheXlocalize's definition: by mask where the image has a mask,
else by box; rows carry both where both exist). Energy: share of the map's mass inside. IoU and Dice: the map
min-max normalised, then {_binarisation(manifest)}. {_where(manifest)}</p>
{_recognised(manifest)}
{_scorecard(summary)}
{sanity_html}
<h2 id="heatmap">By method and layer</h2>
{figures[0]}
<h2 id="confidence">IoU against confidence and lesion size</h2>
{figures[1] if len(figures) > 1 else "<p class='muted'>No rows.</p>"}
<h2 id="gallery">Gallery</h2>
{_gallery(folder, table, dataset, model, per_class, pair)}
<h2 id="skipped">Skipped ({len(skipped)})</h2>
<table><tr><th class='l'>image</th><th class='l'>reason</th></tr>{skipped_rows}</table>{more}
<h2 id="manifest">Run manifest</h2>
<pre>{html.escape(json.dumps(manifest, indent=2))}</pre>
</body></html>"""
    _atomic_write(folder.report_path, body.encode())
    return folder.report_path
