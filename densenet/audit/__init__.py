"""Dataset audit: does the model look at the right place, across a whole dataset, per class, layer and method.

    from densenet import audit, demo
    model = demo.load()
    data = audit.load_dataset("DIR", model.class_names, labels="DIR/labels.csv", boxes="DIR/boxes.csv")
    result = audit.run_audit(model, data, "OUT", audit.Settings(methods=("gradcam",)))
    result.summary["by_method_layer"][0]["overall"]["iou"]     # {"mean", "low", "high"}

For a page: ``run = audit.start(model, data, audit.new_output_dir(base))``; read ``run.progress``,
``audit.read_rows(run.out)`` (rows appear as chunks finish), ``run.stop()``; afterwards
``audit.read_summary(out)``, ``audit.gallery(out)``, ``audit.report_path(out)``,
``audit.parquet_path(out)``. Typed paths and uploaded zips go through :mod:`.safety` first.

Modules: :mod:`.dataset` (listing, truth on a grid), :mod:`.formats` (the published label, box
and mask files, names and vocabularies), :mod:`.metrics` (pointing game, energy, IoU/Dice with
CheXlocalize's binarisation, bootstrap), :mod:`.protocol` (one map scored at the film's resolution
or on the model's grid), :mod:`.rescore` (a finished run re-scored from its maps), :mod:`.core` (one chunk's work),
:mod:`.results` (the output folder), :mod:`.run` (plan, resume, threads), :mod:`.engine_local`,
:mod:`.engine_ray` (the only module that imports ray), :mod:`.summary`, :mod:`.report`,
:mod:`.cli`, :mod:`.safety`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa

from .core import COLUMNS, Settings, default_layers
from .dataset import (Dataset, DatasetError, Item, discover, load_dataset, load_folder, reload_dataset, truth_in_view,
                      truth_on_original)
from .formats.vocabulary import read_classes_map as formats_read_classes_map
from .results import RunFolder, RunFolderError, new_output_dir
from .run import AuditRun, Progress, RunResult, run_audit, start
from .safety import UnsafePathError, ZipRefused, check_zip, extract_zip, resolve_under
from .summary import gallery_cases

__all__ = [
    "COLUMNS", "AuditRun", "Dataset", "DatasetError", "Item", "Progress", "RunFolder", "RunFolderError", "RunResult",
    "Settings", "UnsafePathError", "ZipRefused", "check_zip", "default_layers", "extract_zip", "gallery",
    "demo_dataset", "discover", "load_dataset", "load_folder", "new_output_dir", "progress_of", "parquet_path", "read_manifest", "read_rows", "read_skipped", "read_summary",
    "report_path", "reload_dataset", "resolve_under", "run_audit", "start", "summary_now", "truth_in_view",
    "truth_on_original", "formats_read_classes_map",
]


def demo_dataset(n: int = 200) -> Path:
    """The bundled demo dataset (generated on first use into a cache folder; see
    :func:`densenet.synthetic.dataset_dir`): pass it to :func:`load_folder`."""
    from ..synthetic import dataset_dir

    return dataset_dir(n)


def progress_of(out: str | os.PathLike) -> Progress | None:
    """Where the run in ``out`` stands, read from the folder alone (for a second session
    watching a run another session started); ``None`` before a run wrote its manifest."""
    folder = RunFolder(out)
    manifest = folder.read_manifest()
    if manifest is None:
        return None
    images = len(set(folder.read_rows(["image"]).column("image").to_pylist()))
    skipped = folder.read_skipped()
    total = manifest["dataset"]["images"] + manifest["dataset"]["problems"]
    done = images + len({i for i, r in skipped if not r.startswith("audited")})
    state = "running" if folder.is_running() else ("done" if folder.summary_path.is_file() and done >= total
                                                   else "stopped")
    return Progress(state=state, images_total=total, images_done=min(done, total), rows=read_rows(out, ["image"]).num_rows,
                    skipped=len(skipped))


def read_rows(out: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    """Every row committed so far in ``out`` (also while a run is adding more)."""
    return RunFolder(out).read_rows(columns)


def read_skipped(out: str | os.PathLike) -> list[tuple[str, str]]:
    """``(image, reason)`` of every image skipped so far."""
    return RunFolder(out).read_skipped()


def read_manifest(out: str | os.PathLike) -> dict[str, Any] | None:
    return RunFolder(out).read_manifest()


def read_summary(out: str | os.PathLike) -> dict[str, Any] | None:
    """The scorecard written at the end of a run (``None`` before); for a live view of a run in
    progress use :func:`densenet.audit.summary.summarise` on :func:`read_rows`."""
    path = RunFolder(out).summary_path
    return json.loads(path.read_text()) if path.is_file() else None


def summary_now(out: str | os.PathLike) -> dict[str, Any] | None:
    """The scorecard of the rows committed so far (for a page watching a run); ``None`` before
    a run has written its manifest. Costs a bootstrap per metric: call it on demand, not per frame."""
    from .summary import summarise

    folder = RunFolder(out)
    manifest = folder.read_manifest()
    if manifest is None:
        return None
    return summarise(folder.read_rows(), manifest["model"]["classes"], multilabel=manifest["model"]["multilabel"],
                     labelled=bool(manifest["dataset"].get("has_labels")),
                     skipped=len(folder.read_skipped()), images_total=manifest["dataset"]["images"])


def gallery(out: str | os.PathLike, *, method: str | None = None, layer: str | None = None,
            per_class: int = 3, with_maps: bool = True) -> list[dict[str, Any]]:
    """Best and worst cases per class (:func:`~densenet.audit.summary.gallery_cases`; by default
    the first method at the model's recommended CAM layer), each with its stored map (``"map"``:
    (m, m) float32 in [0, 1], the model's input grid downsampled) when ``with_maps``. A case's
    ``image`` (relative to the manifest's ``dataset.root``), ``method``, ``layer`` and
    ``target_index`` are what the Attention page needs to open it."""
    folder = RunFolder(out)
    manifest = folder.read_manifest() or {}
    cam_layer = manifest.get("model", {}).get("cam_layer")
    cases = gallery_cases(folder.read_rows(), method=method, layer=layer, per_class=per_class, prefer_layer=cam_layer)
    if with_maps:
        cache: dict[int, Any] = {}
        for case in cases:
            maps = cache.setdefault(case["chunk"], folder.read_maps(case["chunk"]))
            case["map"] = maps[case["map_index"]].astype("float32")
    return cases


def report_path(out: str | os.PathLike) -> Path:
    return RunFolder(out).report_path


def parquet_path(out: str | os.PathLike) -> Path:
    """The Parquet dataset folder (``pyarrow.parquet.read_table`` reads it whole)."""
    return RunFolder(out).results_dir
