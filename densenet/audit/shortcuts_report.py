"""Pictures of shortcut clusters (for the report and the app) and the report's "Shortcuts" section.

:func:`cluster_picture` draws a cluster's mean map over its representative film with the hotspot
(red) and the control region (cyan); :func:`member_thumbnail` a member's film with its hotspot.
Both return ``(H, W, 3)`` uint8 arrays and never import a GUI toolkit.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

HOT = (230, 30, 30)
CONTROL = (0, 200, 230)


def _resized(rgb: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """``rgb`` scaled so that its longer side is ``side`` (bilinear), and the scale."""
    from PIL import Image

    h, w = rgb.shape[:2]
    s = side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR)), s


def _boxed(rgb: np.ndarray, boxes: Sequence[tuple[Sequence[float], tuple[int, int, int]]], scale: float) -> np.ndarray:
    from ..render import draw_box

    for box, colour in boxes:
        rgb = draw_box(rgb, tuple(v * scale for v in box), colour=colour, thickness=2)
    return rgb


def _grey_rgb(image: np.ndarray) -> np.ndarray:
    g = image.mean(axis=2) if image.ndim == 3 else image
    return np.repeat((np.clip(g, 0, 1) * 255).round().astype(np.uint8)[:, :, None], 3, axis=2)


def cluster_picture(cluster: dict[str, Any], image: np.ndarray, model: torch.nn.Module, side: int = 256) -> np.ndarray:
    """The cluster's mean map (min-max) over ``image`` (its representative film), hotspot red, control cyan."""
    from ..render import overlay_original

    mean = np.clip(np.asarray(cluster["mean_map"], np.float32), 0, 1)
    drawn = overlay_original(np.clip(image, 0, 1), mean, model, alpha=0.45, outline=False)
    drawn, s = _resized(drawn, side)
    return _boxed(drawn, [(cluster["control"], CONTROL), (cluster["hotspot"], HOT)], s)


def member_thumbnail(image: np.ndarray, hotspot: Sequence[float], side: int = 100) -> np.ndarray:
    """A member's film with its hotspot outlined (red)."""
    drawn, s = _resized(_grey_rgb(image), side)
    return _boxed(drawn, [(hotspot, HOT)], s)


def _png(rgb: np.ndarray) -> str:
    from ..render import png_data_uri

    return png_data_uri(rgb)


def _pct(v: float | None) -> str:
    return "&ndash;" if v is None else f"{100 * v:.0f}%"


def _num(v: float | None) -> str:
    return "&ndash;" if v is None else f"{v:.2f}"


def ordered(clusters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flagged clusters first, then those erased (border, off the body), then the rest; by class."""
    return sorted(clusters, key=lambda c: (not c["flagged"], c["where"] == "inside", c["target_index"], c["cluster"]))


def _table(c: dict[str, Any]) -> str:
    s = c["shares"]
    head = "".join(f"<th{' class=l' if k in ('target', 'where') else ''}>{k}</th>" for k in (
        "target", "films", "accuracy", "mean p", "where", "hotspot on border", "in corners", "outside body",
        "erasure drop", "control drop"))
    cells = (f"<td class='l'>{html.escape(c['target'])}</td><td>{c['size']} of {c['of_target']}</td>"
             f"<td>{_pct(c['accuracy'])}</td><td>{_num(c['mean_probability'])}</td>"
             f"<td class='l'>{html.escape(c['where'])}</td><td>{_pct(s['border'])}</td><td>{_pct(s['corners'])}</td>"
             f"<td>{_pct(s['outside_body'])}</td><td>{_num(c['erasure_drop'])}</td><td>{_num(c['control_drop'])}</td>")
    return f"<table><tr>{head}</tr><tr>{cells}</tr></table>"


def _cluster(c: dict[str, Any], paths: dict[str, Path], model: torch.nn.Module,
             load: Callable[[Path], np.ndarray], thumbnails: int) -> str:
    try:
        rep = load(paths[c["representative"]])
        pic = f"<img class='sc-main' src='{_png(cluster_picture(c, rep, model))}' alt='mean map'>"
    except Exception:  # a film that moved or cannot be read: the numbers still stand
        pic = "<p class='muted'>film unavailable</p>"
    thumbs = []
    for m in c["members"][:thumbnails]:
        try:
            img = load(paths[m["image"]])
        except Exception:
            continue
        after = "" if m["erased"] is None else f" &rarr; {m['erased']:.2f}"
        thumbs.append(f"<figure><img src='{_png(member_thumbnail(img, m['hotspot']))}' alt=''>"
                      f"<figcaption>{html.escape(m['image'])}<br>p {m['score']:.2f}{after}</figcaption></figure>")
    more = len(c["members"]) - thumbnails
    rest = ", ".join(c["images"][thumbnails:thumbnails + 20]) + (" ..." if more > 20 else "")
    a = c["attention"]
    badge = "<span class=badge>flagged</span> " if c["flagged"] else ""
    return (f"<div class='sc {'flagged' if c['flagged'] else ''}' data-target='{html.escape(c['target'])}'>"
            f"<p class='sc-sentence'>{badge}{html.escape(c['sentence'])}</p><div class='sc-row'>{pic}<div>"
            f"{_table(c)}<p class='muted'>Hotspot {c['hotspot']} on {html.escape(c['representative'])} "
            f"({c['film'][1]}&times;{c['film'][0]} px); erased on {c.get('erased', 0)} members; whole maps: "
            f"{_pct(a['border'])} on the border band, {_pct(a['outside_body'])} outside the body.</p>"
            f"<div class='sc-thumbs'>{''.join(thumbs)}</div>"
            + (f"<p class='muted'>and {more} more: {html.escape(rest)}</p>" if more > 0 else "")
            + "</div></div></div>")


def section(clusters: list[dict[str, Any]], paths: dict[str, Path], model: torch.nn.Module,
            load: Callable[[Path], np.ndarray] | None = None, thumbnails: int = 8) -> str:
    """The report's "Shortcuts" section (HTML, images inline), flagged clusters first.

    Args:
        clusters: ``summary["shortcuts"]``.
        paths: image name -> file (to draw the films; a missing one is left out).
        model: the audited model (its preprocessing places the maps).
        load: reads an image (default :func:`densenet.images.load_image`).
        thumbnails: members shown per cluster.
    """
    from ..images import load_image
    from .shortcuts import BORDER, CONTROL_RATIO, ERASE_AT_MOST, MIN_DROP

    load = load or load_image
    made = html.escape(f"{clusters[0]['method']} at {clusters[0]['layer']}" if clusters else "")
    intro = (f"<p class='muted'>Per target class, the maps ({made}) are clustered (spectral clustering, SpRAy); each "
             "cluster's hotspot (red) is the smallest box holding most of its mean map's energy. Where it lies on "
             f"the border band (outer {100 * BORDER:.0f}% of the film) or outside the body, it is erased on its "
             f"members (at most {ERASE_AT_MOST}, spread over the cluster; filled with the blurred surroundings) and "
             "the model run again, and so is a control region of the same size elsewhere (cyan). Flagged: a drop of "
             f"the target's probability of at least {MIN_DROP:.1f} and {CONTROL_RATIO:.0f}&times; the control's.</p>")
    if not clusters:
        return intro + "<p class='muted'>No rows to cluster.</p>"
    flagged = [c for c in clusters if c["flagged"]]
    head = (f"<p><b>{len(flagged)} shortcut{'s' if len(flagged) != 1 else ''} flagged</b> among {len(clusters)} "
            "clusters.</p>" if flagged else f"<p><b>No shortcut flagged</b> among {len(clusters)} clusters.</p>")
    body = "\n".join(_cluster(c, paths, model, load, thumbnails) for c in ordered(clusters))
    return f"{intro}\n{head}\n<div class='shortcuts'>{body}</div>"


CSS = """
.sc{border:1px solid #ddd;padding:8px;margin:10px 0} .sc.flagged{border-left:6px solid #c0392b}
.sc-sentence{font-size:1.05em;margin:4px 0 8px}
.badge{background:#c0392b;color:#fff;padding:1px 6px;border-radius:3px;font-size:0.8em}
.sc-row{display:flex;gap:14px;align-items:flex-start} .sc-main{width:256px;height:auto;flex:none}
.sc-thumbs{display:flex;flex-wrap:wrap;gap:6px}
.sc-thumbs figure{margin:0;font-size:0.7em;width:100px;overflow-wrap:anywhere}
.sc-thumbs img{width:100px;height:auto}
"""
