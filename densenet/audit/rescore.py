"""Re-score a finished audit from its stored maps: another threshold, tolerance or resolution, no map recomputed.

    python -m densenet audit rescore OUT --threshold 0.4
    python -m densenet audit rescore OUT --otsu --resolution input

A run keeps every map at the model's input size (``maps/part-K.npz``, float16), the image
sizes in its rows and the preprocessing in its manifest; with the ground truth listed again from
the manifest's files, :func:`~densenet.audit.protocol.score_map` gives every row's scores as
the run would have with the new settings. The rows, ``manifest.json`` (its settings),
``summary.json`` and ``report.html`` are rewritten in place; the maps are not touched.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .core import Settings
from .dataset import DatasetError, reload_dataset
from .protocol import RESOLUTIONS, empty_scores, score_map
from .results import SCHEMA, RunFolder, RunFolderError, _atomic_write

_SCORE_COLUMNS = ("truth", "scored_at", "lesion_fraction", "hit", "hit_mask", "hit_box", "energy_in", "iou", "dice",
                  "threshold")


def rescore(out: str | os.PathLike, *, binarize: str | float | None = None, pointing_tolerance: float | None = None,
            resolution: str | None = None, report: bool = True) -> dict[str, Any]:
    """Re-score the run in ``out`` with new settings (``None``: keep the run's); returns the new summary.

    Raises:
        RunFolderError: no finished audit there, a run is writing it, or its maps are smaller
            than the model's input (kept with ``map_size``).
        DatasetError: the ground truth files are gone or changed since the run.
        ValueError: a bad setting.
    """
    from ..geometry import view_box
    from ..preprocess import Preprocessing
    from .metrics import binarize as binarize_maps
    from .run import _finite
    from .summary import summarise

    folder = RunFolder(out)
    manifest = folder.read_manifest()
    if manifest is None:
        raise RunFolderError(f"{folder.path} holds no audit (no manifest.json)")
    if "preprocessing_dict" not in manifest.get("model", {}):
        raise RunFolderError(f"{folder.path} was written before runs kept their preprocessing; run the audit again")
    old = Settings.from_json(manifest["settings"])
    changes = {k: v for k, v in (("binarize", binarize), ("pointing_tolerance", pointing_tolerance),
                                 ("resolution", resolution)) if v is not None}
    settings = dataclasses.replace(old, **changes)  # validated by Settings
    preset = Preprocessing.from_dict(manifest["model"]["preprocessing_dict"])
    classes = list(manifest["model"]["classes"])
    dataset = reload_dataset(manifest, classes)
    if dataset.listing_hash() != manifest["dataset_hash"]:
        raise DatasetError(f"the images or ground truth of {folder.path} changed since the run; rescoring would "
                           "mix them: run the audit again")
    items = {item.image: item for item in dataset.items}
    with folder.lock():
        for chunk in sorted(folder.done_chunks()):
            part = folder.results_dir / f"part-{chunk:06d}.parquet"
            rows = pq.read_table(part).to_pydict()
            maps = folder.read_maps(chunk)
            if len(maps) and maps.shape[-1] != preset.size:
                raise RunFolderError(f"{folder.path} kept its maps at {maps.shape[-1]} px (map_size); rescoring needs "
                                     f"them at the model's input size, {preset.size} px")
            for r in range(len(rows["image"])):
                shown = maps[rows["map_index"][r]].astype(np.float32)
                item = items.get(rows["image"][r])
                if item is not None and rows["reader"][r]:
                    item = item.for_reader(rows["target"][r], rows["reader"][r])
                h, w = rows["height"][r], rows["width"][r]
                scores = None
                if item is not None:
                    scores = score_map(shown, item, rows["target"][r], h, w, view_box(h, w, preset), preset,
                                       resolution=settings.resolution, binarize=settings.binarize,
                                       tolerance=settings.pointing_tolerance)
                if scores is None:
                    scores = empty_scores(float(binarize_maps(shown[None], settings.binarize)[1][0]))
                for c in _SCORE_COLUMNS:
                    rows[c][r] = scores[c]
            sink = io.BytesIO()
            pq.write_table(pa.Table.from_pydict(rows, schema=SCHEMA), sink, compression="zstd")
            _atomic_write(part, sink.getvalue())
        manifest["settings"] = settings.to_json()
        manifest["rescored"] = manifest.get("rescored", []) + [{"from": old.to_json(), "changed": sorted(changes)}]
        _atomic_write(folder.manifest_path, json.dumps(manifest, indent=2, sort_keys=True).encode())
        folder.write_skipped_csv()
        summary = summarise(folder.read_rows(), classes, multilabel=bool(manifest["model"]["multilabel"]),
                            labelled=bool(manifest["dataset"].get("has_labels")),
                            skipped=len(folder.read_skipped()), images_total=manifest["dataset"]["images"])
        if manifest["dataset"].get("recognised"):
            summary["dataset"] = manifest["dataset"]["recognised"]
        sanity = folder.path / "sanity.json"
        if sanity.is_file():
            summary["sanity"] = json.loads(sanity.read_text())
        _atomic_write(folder.summary_path, json.dumps(_finite(summary), indent=2).encode())
        if report:
            from .report import write_report

            stand_in = SimpleNamespace(class_names=classes, preprocessing=preset,
                                       config=SimpleNamespace(multilabel=bool(manifest["model"]["multilabel"])),
                                       metadata={"cam_layer": manifest["model"].get("cam_layer")})
            write_report(folder, model=stand_in, dataset=dataset)
    return summary


def configure(parser: argparse.ArgumentParser) -> None:
    """``python -m densenet audit rescore OUT [--threshold T | --otsu] [--pointing-tolerance PX] [--resolution R]``."""
    parser.add_argument("out", help="a finished audit's output folder")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--threshold", type=float, help="binarise at this fixed threshold in (0, 1) (strict >)")
    group.add_argument("--otsu", action="store_true", help="binarise with Otsu's threshold (CheXlocalize)")
    parser.add_argument("--pointing-tolerance", type=float, metavar="PX", help="pointing-game tolerance, model-input px")
    parser.add_argument("--resolution", choices=RESOLUTIONS, help="score at the film's resolution or the model's grid")
    parser.add_argument("--no-report", action="store_true", help="do not rewrite report.html")


def run(args: argparse.Namespace) -> int:
    binarize: str | float | None = "otsu" if args.otsu else args.threshold
    try:
        summary = rescore(args.out, binarize=binarize, pointing_tolerance=args.pointing_tolerance,
                          resolution=args.resolution, report=not args.no_report)
    except (RunFolderError, DatasetError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for e in summary["by_method_layer"]:
        o = e["overall"]
        if o["hit_rate"]["mean"] is not None:
            print(f"  {e['method']:<12} {e['layer']:<28} hit {100 * o['hit_rate']['mean']:5.1f}%  "
                  f"IoU {o['iou']['mean']:.3f}  ({o['with_truth']} rows with truth)")
    print(f"rescored {summary['rows']} rows in {Path(args.out)}")
    return 0
