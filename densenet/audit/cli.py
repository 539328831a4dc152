"""``python -m densenet audit``: explain and score a whole dataset from the command line.

    python -m densenet audit --model demo --data DIR/images --labels DIR/labels.csv \\
        --boxes DIR/boxes.csv --masks DIR/masks --methods gradcam,gradcam++ --out OUT

Every bad argument or file ends in one ``error:`` line (exit status 2), never a traceback; the
exit status is 1 only when nothing at all could be audited. Running the same command again
resumes a stopped run in ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the audit's arguments to ``parser``."""
    parser.add_argument("--model", required=True, help="checkpoint path (anything load_checkpoint reads) or 'demo'")
    parser.add_argument("--data", required=True, help="image folder, searched recursively (class sub-folders give labels)")
    parser.add_argument("--labels", help="labels CSV (.gz/.zip too): NIH Data_Entry_2017 (Finding Labels), "
                        "CheXpert/MIMIC columns (1/0/-1/blank), or an image column plus one label column")
    parser.add_argument("--boxes", help="boxes CSV as published: NIH BBox_List_2017, RSNA stage_2_train_labels, "
                        "VinDr-CXR train.csv, or image,label,x0,y0,x1,y1")
    parser.add_argument("--masks", help="PNG mask folder (<image stem>.png, <image stem>__<label>.png), COCO RLE JSON "
                        "or polygon JSON (CheXlocalize), or SIIM-ACR train-rle.csv")
    parser.add_argument("--format", dest="truth_format", help="force the ground-truth format: nih, rsna, vindr, plain "
                        "(boxes); png, coco-rle, polygons, siim (masks)")
    parser.add_argument("--labels-format", choices=("nih", "columns", "single"), help="force the labels format")
    parser.add_argument("--uncertain", choices=("ignore", "positive", "negative"), default="ignore",
                        help="CheXpert's -1 (uncertain) labels: ignore (default: never a target), positive or negative")
    parser.add_argument("--readers", choices=("union", "majority", "each"), default="union",
                        help="VinDr-CXR's several readers: union of their boxes (default), pixels most of them "
                        "boxed, or each reader's boxes scored on their own (one row per reader)")
    parser.add_argument("--truth-class", help="class of a one-class truth file (RSNA default Pneumonia, SIIM Pneumothorax)")
    parser.add_argument("--classes-map", help="CSV name,class (or JSON) mapping dataset label names to model classes")
    parser.add_argument("--methods", default="gradcam", help="comma-separated registered methods (default gradcam)")
    parser.add_argument("--layers", help="comma-separated layers (default: the model's CAM layer and each block output)")
    parser.add_argument("--out", help="output folder (default: ./audit-<data folder name>); rerun to resume")
    parser.add_argument("--engine", choices=("local", "ray"), default="local", help="local (default) or ray")
    parser.add_argument("--ray-address", help="join this Ray cluster (default: RAY_ADDRESS, else a local Ray)")
    parser.add_argument("--actors", type=int, help="Ray actors (default: the cluster's CPUs, at most 4)")
    parser.add_argument("--limit", type=int, help="audit only the first N images")
    parser.add_argument("--batch-size", type=int, default=8, help="images per batch (default 8)")
    parser.add_argument("--chunk-size", type=int, default=32, help="images per written part (default 32)")
    parser.add_argument("--threshold", type=float, help="binarise at this fixed threshold in (0, 1) instead of Otsu")
    parser.add_argument("--map-size", type=int, help="side of the stored maps (default: the model's input size, "
                        "which 'audit rescore' needs)")
    parser.add_argument("--resolution", choices=("original", "input"), default="original",
                        help="score at the film's resolution (default, CheXlocalize's protocol) or on the model's grid")
    parser.add_argument("--pointing-tolerance", type=float, default=0.0, metavar="PX",
                        help="pointing game: a peak within PX model-input pixels of the truth hits (default 0, as "
                        "CheXlocalize; the published pointing game uses 15 at 224)")
    parser.add_argument("--deletion", action="store_true", help="also compute deletion/insertion AUCs (slow)")
    parser.add_argument("--sanity", type=int, default=0, metavar="N",
                        help="sanity-check (model randomisation) the maps of N images after the run (default 0)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, help="torch compute threads (default: torch's choice)")
    parser.add_argument("--no-report", action="store_true", help="do not write report.html")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _load_model(spec: str, device: str):
    import torch

    from ..checkpoints import CheckpointError, load_checkpoint

    try:
        torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {device!r} is not a device name (cpu, cuda, cuda:1, ...)") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device is available here")
    if spec == "demo":
        from ..demo import load

        model = load()
    else:
        if not Path(spec).is_file():
            raise ValueError(f"--model {spec!r}: no such file (give a checkpoint path or 'demo')")
        try:
            model = load_checkpoint(spec)
        except CheckpointError as e:
            raise ValueError(f"--model {spec!r}: {e}") from None
    return model.eval().to(device)


def _recognised(dataset) -> list[str]:
    """What the listing read, one line per file, then the names mapped and unmatched (before the run)."""
    d = dataset.details
    lines = []
    if d.get("labels"):
        lab = d["labels"]
        lines.append(f"labels: {lab['format']} ({lab['positive']} positive, {lab['negative']} negative, "
                     f"{lab['uncertain']} uncertain ({lab['uncertain_policy']}), {lab['blank']} blank)")
    for what in ("boxes", "masks"):
        if d.get(what):
            counts = ", ".join(f"{k} {v}" for k, v in d[what].items() if k != "format")
            lines.append(f"{what}: {d[what]['format']}" + (f" ({counts})" if counts else ""))
    voc = d.get("vocabulary", {})
    if voc.get("mapped"):
        lines.append("mapped: " + "; ".join(f"{k} -> {', '.join(v['classes'])}" for k, v in voc["mapped"].items()))
    if voc.get("unmatched"):
        lines.append("matched no class (see skipped.csv): " + ", ".join(f"{k} ({n})" for k, n in voc["unmatched"].items()))
    return lines


def run(args: argparse.Namespace) -> int:
    """Run the audit described by ``args``; returns the exit status."""
    from .. import explain
    from .core import Settings
    from .dataset import DatasetError, load_dataset
    from .results import RunFolderError
    from .run import run_audit

    if args.threads is not None:
        if args.threads < 1:
            return _fail(f"--threads must be at least 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)  # once, for the whole run
    if args.sanity < 0:
        return _fail(f"--sanity must be >= 0, got {args.sanity}")
    for name in ("batch_size", "chunk_size", "map_size"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            return _fail(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.limit is not None and args.limit < 1:
        return _fail(f"--limit must be at least 1, got {args.limit}")
    if args.actors is not None and args.actors < 1:
        return _fail(f"--actors must be at least 1, got {args.actors}")
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    unknown = [m for m in methods if m not in explain.METHODS]
    if not methods or unknown:
        return _fail(f"unknown method(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(explain.METHODS)}")
    binarize: str | float = "otsu"
    if args.threshold is not None:
        if not 0 < args.threshold < 1:
            return _fail(f"--threshold must lie in (0, 1), got {args.threshold}")
        binarize = args.threshold
    try:
        model = _load_model(args.model, args.device)
    except (ValueError, FileNotFoundError, OSError) as e:
        return _fail(str(e))
    layers = None
    if args.layers:
        layers = tuple(x.strip() for x in args.layers.split(",") if x.strip())
        bad = [x for x in layers if x not in model.tap_names]
        if bad:
            from ..topology import topology

            return _fail(f"unknown layer(s) {', '.join(bad)}; this model's layers include "
                         f"{', '.join(n for n in model.tap_names if topology(model.config).locate(n) is None)}")
    if args.pointing_tolerance < 0:
        return _fail(f"--pointing-tolerance must be >= 0, got {args.pointing_tolerance}")
    for flag, value, kind in (("--data", args.data, "dir"), ("--masks", args.masks, "any"),
                              ("--labels", args.labels, "file"), ("--boxes", args.boxes, "file"),
                              ("--classes-map", args.classes_map, "file")):
        exists = {"dir": Path.is_dir, "file": Path.is_file, "any": Path.exists}[kind]
        if value is not None and not exists(Path(value)):
            return _fail(f"{flag} {value!r}: no such {dict(dir='folder', file='file', any='folder or file')[kind]}")
    try:
        settings = Settings(methods=methods, layers=layers, batch_size=args.batch_size, chunk_size=args.chunk_size,
                            binarize=binarize, map_size=args.map_size, deletion=args.deletion,
                            resolution=args.resolution, pointing_tolerance=args.pointing_tolerance,
                            sanity_images=args.sanity, device=args.device)
        dataset = load_dataset(args.data, list(model.class_names), labels=args.labels, boxes=args.boxes,
                               masks=args.masks, limit=args.limit, uncertain=args.uncertain, readers=args.readers,
                               truth_format=args.truth_format, labels_format=args.labels_format,
                               truth_class=args.truth_class, classes_map=args.classes_map)
    except (DatasetError, ValueError) as e:
        return _fail(str(e))
    for line in _recognised(dataset):
        print(line, file=sys.stderr)
    out = Path(args.out) if args.out else Path.cwd() / f"audit-{Path(args.data).resolve().name}"
    if not dataset.items:
        for image, reason in dataset.problems[:5]:
            print(f"skipped {image}: {reason}", file=sys.stderr)
        _fail("no image can be audited (see the reasons above)")
        return 1

    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=len(dataset.items) + len(dataset.problems), unit="img", dynamic_ncols=True,
                   desc="audit", file=sys.stderr)

    def on_progress(p) -> None:
        if bar is not None:
            if bar.n == 0 and p.images_resumed:
                bar.update(p.images_resumed)
                bar.set_description("audit (resumed)")
            bar.update(p.images_done - bar.n)
            bar.set_postfix(rows=p.rows, skipped=p.skipped, refresh=False)

    started = time.monotonic()
    try:
        result = run_audit(model, dataset, out, settings, engine=args.engine,
                           ray_address=args.ray_address or os.environ.get("RAY_ADDRESS"), actors=args.actors,
                           model_source=args.model, progress=on_progress, report=not args.no_report)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        print(f"\nstopped; finished parts are kept in {out}: run the same command again to resume", file=sys.stderr)
        return 130
    except (RunFolderError, DatasetError, ValueError, RuntimeError, ImportError) as e:
        if bar is not None:
            bar.close()
        return _fail(str(e))
    finally:
        if bar is not None:
            bar.close()
    p = result.progress
    fresh = p.images_done - p.images_resumed
    audited = result.summary["images"] if result.summary else 0
    print(f"audited {audited} of {p.images_total} images ({p.rows} rows, {p.skipped} skipped"
          f"{f', {p.images_resumed} from an earlier run' if p.images_resumed else ''}) in "
          f"{time.monotonic() - started:.1f} s ({fresh / max(result.seconds, 1e-9):.1f} images/s)")
    if result.summary:
        for e in result.summary["by_method_layer"]:
            o = e["overall"]
            hit, iou = o["hit_rate"]["mean"], o["iou"]["mean"]
            if hit is not None:
                print(f"  {e['method']:<12} {e['layer']:<28} hit {100 * hit:5.1f}%  IoU {iou:.3f}  "
                      f"({o['with_truth']} rows with truth)")
    print(f"results: {result.out / 'results'}  skipped: {result.out / 'skipped.csv'}"
          + (f"  report: {result.report}" if result.report else ""))
    return 0 if p.rows > 0 else 1
