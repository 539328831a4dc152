"""Link importance by cutting: every link of DenseNet-121's block 3 (24 layers, 300 links) against plain forwards.

Run it on a quiet machine, from the repository root:

    python benchmarks/bench_cuts.py            # final figures (a few minutes on 2 CPU threads)
    python benchmarks/bench_cuts.py --quick    # one round, 112x112: a dry run

It writes benchmarks/RESULTS_cuts.md (``--out``): the median time of ``explain.link_importance``
(block 3) as a multiple of one plain forward of the same image (interleaved rounds, medians,
2 torch threads), and, once, the naive way for scale: ``explain.cut_links`` with the 300 single
cuts as one batch (each resumed from the block input, no sharing). Same model and image as
bench_cam.py: DenseNet-121, fresh weights with BatchNorm randomised, one 224x224 image.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import densenet.explain as E  # noqa: E402
from bench_cam import make_image, make_model  # noqa: E402
from common import git_commit, interleaved, machine, setup  # noqa: E402

TARGET = 30.0  # link importance of a 24-layer block <= 30 plain forwards (issue 21)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round, no warm-up, 112x112 image")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS_cuts.md")
    args = parser.parse_args()
    setup(2)
    size = 112 if args.quick else 224
    repeats, warmup = (1, 0) if args.quick else (args.repeats, 1)
    model, x = make_model(), make_image(0, size)
    load = os.getloadavg()

    def plain() -> None:
        with torch.no_grad():
            model(x)

    def importance() -> None:
        E.link_importance(model, x, block=3)

    t = interleaved({"plain forward": plain, "link importance, block 3": importance}, repeats, warmup)
    ratio = t["link importance, block 3"] / t["plain forward"]

    imp = E.link_importance(model, x, block=3)
    singles = [[(3, j, l)] for (j, l) in imp.links]
    start = time.perf_counter()
    naive = E.cut_links(model, x, singles)[:, imp.target]
    naive_s = time.perf_counter() - start
    worst = max(abs(imp.cut_logits[link] - float(v)) for link, v in zip(imp.links, naive))
    end_load = os.getloadavg()

    lines = [
        "## Cutting dense links: link importance",
        "",
        f"`python benchmarks/bench_cuts.py{' --quick' if args.quick else ''}` — "
        f"{datetime.date.today()}, commit {git_commit()}, {repeats} interleaved round(s)"
        f"{' (**quick**: not final figures)' if args.quick else ''}",
        "",
        f"Machine: {machine()}. Load average at start: {' / '.join(f'{v:.2f}' for v in load)}; "
        f"at the end: {' / '.join(f'{v:.2f}' for v in end_load)}.",
        "",
        f"DenseNet-121 (fresh weights, BatchNorm randomised), one {size}x{size} image, its top class. "
        "`explain.link_importance(model, x, block=3)`: all 300 links of block 3 (24 layers), each cut on its "
        "own, resumed from the block input, sharing the unchanged prefix of every cut (per-source prefix "
        "sums of the 1x1 convolutions). Plain: one `model(x)` under `no_grad`.",
        "",
        "| contender | median |",
        "|---|---:|",
        f"| plain forward | {t['plain forward']:.3f} s |",
        f"| link importance, block 3 (300 links) | {t['link importance, block 3']:.2f} s |",
        f"| naive: `cut_links` with 300 single cuts, one batch (once) | {naive_s:.2f} s |",
        "",
        "| ratio | measured | target | met |",
        "|---|---:|---:|:---:|",
        f"| link importance / plain forward | {ratio:.1f}x | <= {TARGET:g}x | {'yes' if ratio <= TARGET else '**no**'} |",
        f"| naive / plain forward | {naive_s / t['plain forward']:.1f}x | | |",
        "",
        f"Shared against naive: max |logit difference| over the 300 cuts {worst:.1e}.",
        "",
    ]
    text = "\n".join(lines)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
