"""What the whole-film features cost, as ratios against what a page already pays.

- maps back to the original: ``geometry.to_original`` (7x7 -> 2500x2048, separable bilinear) vs
  torch's ``F.interpolate`` of the map to the seen region (the usual way; no NaN outside);
- the full-resolution overlay vs the 224x224 one the page drew before;
- the OOD score (stem + first block) vs one forward pass of the same model;
- the DICOM Secondary Capture export vs encoding the same overlay as PNG.

Run on a quiet machine:  python benchmarks/bench_fullres.py [--quick] [--out benchmarks/RESULTS_fullres.md]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import densenet  # noqa: E402
import densenet.demo  # noqa: E402
from common import git_commit, interleaved, machine, setup, versions  # noqa: E402
from densenet import geometry, ood, render  # noqa: E402
from densenet.dicom_export import secondary_capture  # noqa: E402
from densenet.explain import overlay  # noqa: E402
from densenet.preprocess import IMAGENET, XRAY, to_display  # noqa: E402

H, W = 2500, 2048


def maps_back(repeats: int) -> dict[str, float]:
    raw = np.random.default_rng(0).random((7, 7)).astype(np.float32)
    x0, y0, x1, y1 = (int(v) for v in geometry.seen_box(H, W, XRAY))

    def ours():
        geometry.to_original(raw, H, W, XRAY)

    def torch_interpolate():
        full = np.full((H, W), np.nan, np.float32)
        full[y0:y1, x0:x1] = F.interpolate(torch.from_numpy(raw)[None, None], size=(y1 - y0, x1 - x0),
                                           mode="bilinear", align_corners=False)[0, 0].numpy()

    return interleaved({"F.interpolate + paste": torch_interpolate, "geometry.to_original": ours}, repeats)


def overlays(repeats: int) -> dict[str, float]:
    image = np.random.default_rng(1).random((H, W)).astype(np.float32)
    heat = np.random.default_rng(2).random((7, 7)).astype(np.float32)
    view = to_display(image, XRAY)
    return interleaved({"224x224 overlay": lambda: overlay(view, heat),
                        "full-resolution overlay": lambda: render.overlay_original(image, heat, XRAY)}, repeats)


def ood_cost(repeats: int, quick: bool) -> list[tuple[str, dict[str, float]]]:
    out = []
    models = [("demo (128 px)", densenet.demo.load(), densenet.demo.load().preprocessing)]
    if not quick:
        models.append(("densenet121 (224 px)", densenet.create("densenet121").eval(), IMAGENET))
    for label, model, preset in models:
        x = torch.rand(1, preset.channels, preset.size, preset.size)

        def forward(model=model, x=x):
            with torch.no_grad():
                model(x)

        out.append((label, interleaved({"forward": forward, "OOD score": lambda model=model, x=x: ood.score(model, x)},
                                       repeats)))
    return out


def export_cost(repeats: int) -> dict[str, float]:
    rgb = np.random.default_rng(3).integers(0, 256, (H, W, 3), dtype=np.uint8)
    return interleaved({"PNG": lambda: render.png_bytes(rgb), "DICOM Secondary Capture": lambda: secondary_capture(rgb)},
                       repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="3 repeats, demo model only")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS_fullres.md"))
    args = parser.parse_args()
    setup(2)
    repeats = 3 if args.quick else args.repeats
    lines = ["# Whole-film features: cost as ratios", "", f"Machine: {machine()}",
             f"Versions: {versions('torch', 'numpy', 'pydicom', 'pillow')}; commit {git_commit()}",
             f"Median of {repeats} interleaved repeats{' (--quick)' if args.quick else ''}; image {H} x {W}.", "",
             "| what | baseline | ours | ours / baseline |", "|---|---|---|---|"]

    def row(what: str, t: dict[str, float]) -> None:
        (base_name, base), (our_name, ours) = t.items()
        lines.append(f"| {what} | {base_name} {base * 1e3:.1f} ms | {our_name} {ours * 1e3:.1f} ms | {ours / base:.2f}x |")
        print(lines[-1], flush=True)

    row("7x7 map onto the film", maps_back(repeats))
    row("overlay", overlays(repeats))
    for label, t in ood_cost(repeats, args.quick):
        row(f"OOD score, {label}", t)
    row("export 2500x2048 RGB", export_cost(repeats))
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
