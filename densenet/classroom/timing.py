"""How long each classroom experiment takes at its defaults on this machine (for the labels beside the buttons).

    python -m densenet.classroom.timing [NAME ...] [--threads 2] [--json]

Runs the experiments one at a time with ``torch.set_num_threads(threads)`` and prints a table of
wall times with the 1-minute load average before and after each, so that a figure taken while
other work shared the cores says so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch


def _experiments() -> dict[str, tuple[str, Callable[[], Any]]]:
    from .. import VARIANTS
    from . import (compare_with_resnet, gradient_experiment, memory_experiment, published_accuracy,
                   reuse_experiment, same_depth, watch_it_learn)

    return {
        "params": ("fewer parameters: published accuracy (9 torchvision models)", published_accuracy),
        "same_depth": ("fewer parameters: DenseNet-121 vs a ResNet-121", lambda: same_depth(VARIANTS["densenet121"])),
        "gradients": ("vanishing gradients (depth 40, 60 steps)", gradient_experiment),
        "memory": ("memory vs depth (L = 4..64)", memory_experiment),
        "reuse": ("feature reuse (100 steps + demo model)", reuse_experiment),
        "learn": ("watch it learn (120 steps each)", watch_it_learn),
        "compare": ("DenseNet-121 beside ResNet-121, memory measured",
                    lambda: compare_with_resnet(VARIANTS["densenet121"])),
    }


@dataclass(frozen=True)
class Timing:
    """One experiment's wall time at its defaults.

    Attributes:
        name, label: the experiment.
        seconds: wall time.
        threads: torch threads it ran with.
        load_before, load_after: 1-minute load average around it (above ``threads``: it shared the cores).
    """

    name: str
    label: str
    seconds: float
    threads: int
    load_before: float
    load_after: float


def time_experiments(names: list[str] | None = None, *, threads: int = 2) -> list[Timing]:
    """Run the named experiments (``None``: all) one after another and time each.

    Raises:
        ValueError: an unknown name.
    """
    table = _experiments()
    names = list(table) if not names else names
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"unknown experiment(s) {unknown}; known: {', '.join(table)}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = []
        for name in names:
            label, run = table[name]
            before = os.getloadavg()[0]
            start = time.perf_counter()
            run()
            out.append(Timing(name, label, time.perf_counter() - start, threads, before, os.getloadavg()[0]))
        return out
    finally:
        torch.set_num_threads(previous)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add this command's arguments (the ``python -m densenet`` dispatcher's convention)."""
    parser.add_argument("names", nargs="*", help="experiments to time (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")


def run(args: argparse.Namespace) -> int:
    """Time the experiments and print the table (or JSON lines); returns the exit status."""
    if not args.json:
        print("| experiment | seconds | load before / after |\n|---|---:|---|")
    for timing in time_experiments(args.names or None, threads=args.threads):
        if args.json:
            print(json.dumps(asdict(timing)), flush=True)
        else:
            print(f"| {timing.label} | {timing.seconds:.1f} | {timing.load_before:.1f} / {timing.load_after:.1f} |",
                  flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m densenet.classroom.timing", description=__doc__.splitlines()[0])
    configure(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
