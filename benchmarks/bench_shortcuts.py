"""Shortcut audit: what ``--shortcuts`` adds to a dataset audit (clusters, hotspots, erasure).

Run it on a quiet machine, from the repository root:

    python benchmarks/bench_shortcuts.py            # 400 images, 3 interleaved repeats (~15 min on 2 cores)
    python benchmarks/bench_shortcuts.py --quick    # 80 images, one repeat

It writes benchmarks/RESULTS_shortcuts.md (``--out``). Everything runs with 2 torch threads.

Two cases, each the same audit with and without ``shortcuts=True`` (Grad-CAM at the model's
default layers: its CAM layer and every block output, batch 8, summary included, no report):

- the bundled demo model on clean demo films: no hotspot on the border, so nothing is erased;
- the shortcut demo model on films with the planted marker: the marked nodules' cluster is
  erased (two forward passes per member: hotspot and control).

Medians of interleaved repeats; the figure is the ratio shortcut audit / plain audit (target <= 1.4).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import git_commit, interleaved, machine, setup, versions  # noqa: E402
from densenet import audit, demo  # noqa: E402
from densenet.demo.shortcut import load_shortcut  # noqa: E402
from densenet.synthetic import write_dataset  # noqa: E402
from densenet.synthetic_shortcut import write_shortcut_dataset  # noqa: E402

THREADS = 2
TARGET = 1.4
SEED = 90_000_000  # fresh films


def run(model, ds, base: Path, shortcuts: bool) -> dict:
    out = Path(tempfile.mkdtemp(dir=base))
    result = audit.run_audit(model, ds, out, audit.Settings(methods=("gradcam",), batch_size=8), report=False,
                             shortcuts=shortcuts)
    shutil.rmtree(out, ignore_errors=True)
    return result.summary


def case(name: str, model, data: dict, base: Path, repeats: int) -> dict:
    ds = audit.load_dataset(data["images"], model.class_names, labels=data["labels"])
    found = run(model, ds, base, True).get("shortcuts", [])
    seconds = interleaved({"plain": lambda: run(model, ds, base, False),
                           "shortcuts": lambda: run(model, ds, base, True)}, repeats=repeats, warmup=1)
    erased = sum(c["erased"] for c in found)
    return {"name": name, "images": len(ds.items), "plain": seconds["plain"], "shortcuts": seconds["shortcuts"],
            "ratio": seconds["shortcuts"] / seconds["plain"], "clusters": len(found), "erased": erased,
            "flagged": [c["sentence"] for c in found if c["flagged"]]}


def report(cases: list[dict], repeats: int, command: str) -> str:
    lines = ["## Shortcut audit", "",
             f"`{command}` on {machine()}; {versions('torch', 'scikit-learn', 'scipy')}; commit {git_commit()}.", "",
             f"The same audit with and without `--shortcuts` (Grad-CAM at the default layers, batch 8, summary "
             f"included, no report), median of {repeats} interleaved repeats, {THREADS} torch threads.", "",
             "| case | images | plain audit | shortcut audit | ratio | target | films erased | flagged |",
             "|---|---|---|---|---|---|---|---|"]
    for c in cases:
        lines.append(f"| {c['name']} | {c['images']} | {c['plain']:.1f} s | {c['shortcuts']:.1f} s | "
                     f"**{c['ratio']:.2f}x** | <= {TARGET}x | {c['erased']} | {len(c['flagged'])} |")
    lines.append("")
    for c in cases:
        for sentence in c["flagged"]:
            lines.append(f"- {c['name']}: {sentence}")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="80 images, one repeat: a dry run")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS_shortcuts.md")
    args = parser.parse_args()
    setup(THREADS)
    n, repeats = (80, 1) if args.quick else (400, 3)
    base = Path(tempfile.mkdtemp(prefix="bench_shortcuts-"))
    try:
        cases = []
        for name, model, writer in (("demo model, clean films", demo.load(), write_dataset),
                                    ("shortcut model, marked films", load_shortcut(), write_shortcut_dataset)):
            data = writer(base / name.replace(" ", "_").replace(",", ""), n, seed=SEED)
            print(f"{name}: {n} images, {repeats} repeats ...", flush=True)
            cases.append(case(name, model, data, base, repeats))
            print(cases[-1], flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    command = "python benchmarks/bench_shortcuts.py" + (" --quick" if args.quick else "")
    text = report(cases, repeats, command)
    print(text)
    if not args.quick:
        args.out.write_text(text)
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
