"""Listing a dataset from the files the field publishes: NIH's whole Data_Entry_2017 for a folder of 1,000 images.

    python benchmarks/bench_listing.py            # 1,000 images, 5 interleaved repeats
    python benchmarks/bench_listing.py --quick    # 200 images, 3 repeats

Reads torchxrayvision's copies of NIH ChestX-ray14's ``Data_Entry_2017_v2020.csv.gz`` (112,120
rows) and ``BBox_List_2017.csv.gz``; writes 1,000 tiny PNGs named after its first rows (the
listing does not read pixels). Times, medians of interleaved repeats:

- ``load_dataset`` with the labels table (every row parsed, matched to the folder, the
  vocabulary applied), and with the labels and the boxes;
- the floor: walking the folder (``list_images``) plus ``csv.reader`` over the decompressed
  table, nothing matched;
- pandas ``read_csv`` of the same file (a common way to read it), for scale.

Target: under 2 s for the labels listing (issue 18). Writes benchmarks/RESULTS_listing.md.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import importlib.util
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import git_commit, interleaved, machine, setup, versions  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).with_name("RESULTS_listing.md")))
    args = parser.parse_args()
    setup(2)
    from PIL import Image

    from densenet.audit import load_dataset
    from densenet.audit.dataset import list_images
    from densenet.labels import CHESTXRAY14

    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None:
        sys.exit("torchxrayvision is not installed: it ships the NIH tables this benchmark reads")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    entry, bbox = data / "Data_Entry_2017_v2020.csv.gz", data / "BBox_List_2017.csv.gz"
    n_images, repeats = (200, 3) if args.quick else (1000, 5)
    with gzip.open(entry, "rt") as f:
        rows = list(csv.reader(f))
    folder = Path(tempfile.mkdtemp(prefix="bench_listing_")) / "images"
    folder.mkdir()
    blank = Image.new("L", (8, 8))
    for r in rows[1:1 + n_images]:
        blank.save(folder / r[0])
    classes = list(CHESTXRAY14)

    def labels_only() -> object:
        return load_dataset(folder, classes, labels=entry)

    def labels_and_boxes() -> object:
        return load_dataset(folder, classes, labels=entry, boxes=bbox)

    def floor() -> object:
        names = list_images(folder)
        with gzip.open(entry, "rt", newline="") as f:
            return names, sum(1 for _ in csv.reader(f))

    fns = {"load_dataset, labels": labels_only, "load_dataset, labels + boxes": labels_and_boxes,
           "floor: walk + csv.reader": floor}
    try:
        import pandas as pd

        fns["pandas.read_csv (no matching)"] = lambda: pd.read_csv(entry)
    except ImportError:
        pass
    ds = labels_only()
    assert len(ds.items) == n_images, (len(ds.items), ds.problems[:3])
    times = interleaved(fns, repeats, warmup=1)
    base = times["load_dataset, labels"]
    lines = [
        "# Listing NIH's Data_Entry_2017 for a folder of images",
        "",
        f"Machine: {machine()}",
        f"Versions: {versions('numpy', 'pandas')}; commit {git_commit()}",
        f"{len(rows) - 1:,} label rows, {n_images:,} images; median of {repeats} interleaved repeats.",
        "",
        "| | seconds | / load_dataset, labels | target |",
        "|---|---:|---:|---|",
    ]
    for name, t in times.items():
        target = "< 2 s" if name == "load_dataset, labels" else ""
        lines.append(f"| {name} | {t:.3f} | {t / base:.2f}x | {target} |")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
