"""What a finished audit shows: its dataset, whether the sidebar's model made it, gallery pictures, downloads,
and the request that opens a gallery case on the Attention page."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

import densenet
from densenet import audit
from densenet.explain import INPUT

from ..navigation import AttentionRequest, ImageOverride
from .runs import lookup


def dataset_of(out: str | os.PathLike, class_names: list[str]) -> audit.Dataset | None:
    """The audited dataset: the run's own, else listed again from the manifest (``None`` if it is gone)."""
    run = lookup(out)
    if run is not None:
        return run.dataset
    manifest = audit.read_manifest(out) or {}
    d = manifest.get("dataset")
    if not d:
        return None
    src = d.get("sources", {})
    try:
        return audit.load_dataset(d["root"], class_names, labels=src.get("labels"), boxes=src.get("boxes"),
                                  masks=src.get("masks"))
    except (ValueError, OSError):
        return None


def same_model(out: str | os.PathLike, model_key: str, model: densenet.DenseNet) -> bool:
    """The audit in ``out`` was made with this model (as the user reads it): same key, or same weights hash."""
    run = lookup(out)
    if run is not None:
        return run.model_key == model_key
    manifest = audit.read_manifest(out) or {}
    from densenet.audit.run import model_hash

    return manifest.get("model_hash") == model_hash(model)


def case_picture(case: dict[str, Any], dataset: audit.Dataset, model: densenet.DenseNet) -> np.ndarray | None:
    """A gallery case's picture (:func:`dashboard.audit_figures.case_picture`); ``None`` if its image is gone."""
    from densenet.geometry import view_box
    from densenet.images import ImageError, load_image
    from densenet.preprocess import to_display

    from ..audit_figures import case_picture as draw

    item = next((it for it in dataset.items if it.image == case["image"]), None)
    if item is None:
        return None
    try:
        image = load_image(item.path)
    except (ImageError, OSError, ValueError):
        return None
    shown = to_display(image, model)
    h, w = image.shape[:2]
    try:
        truth = audit.truth_in_view(item, case["target"], h, w, view_box(h, w, model), shown.shape[0])
    except ValueError:  # an unreadable mask: the picture without the outline
        truth = None
    return draw(shown, truth, case["map"])


def parquet_bytes(out: str | os.PathLike) -> bytes:
    """Every row of the audit as one Parquet file (the ``results/`` dataset joined)."""
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(audit.read_rows(out), buf, compression="zstd")
    return buf.getvalue()


def skipped_csv(out: str | os.PathLike) -> bytes:
    import csv

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image", "reason"])
    writer.writerows(audit.read_skipped(out))
    return buf.getvalue().encode()


def case_request(case: dict[str, Any], dataset: audit.Dataset) -> AttentionRequest:
    """The request that opens a gallery case on the Attention page: its image, method, layer and target.

    Raises:
        ValueError: the case's image is not in ``dataset``.
    """
    item = next((it for it in dataset.items if it.image == case["image"]), None)
    if item is None:
        raise ValueError(f"{case['image']!r} is not in the audited dataset any more")
    return AttentionRequest(image=ImageOverride(case["image"], item.path, Path(dataset.root)),
                            method=case["method"], layer=None if case["layer"] == INPUT else case["layer"],
                            target=int(case["target_index"]))
