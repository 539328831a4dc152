"""Our DenseNet against torchvision's on the same weights, and memory-efficient mode's peak memory.

Run on a quiet machine:  python benchmarks/bench_core.py [--repeats 30] [--out benchmarks/RESULTS_core.md]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import densenet  # noqa: E402
from common import git_commit, interleaved, machine, setup, versions  # noqa: E402


def forward_speed(name: str, batch: int, repeats: int, device: torch.device) -> dict[str, float]:
    theirs = getattr(torchvision.models, name)().eval().to(device)
    ours = densenet.create(name).eval().to(device)
    ours.load_state_dict(theirs.state_dict())
    x = torch.rand(batch, 3, 224, 224, device=device)

    def run(model):
        def call():
            with torch.inference_mode():
                model(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
        return call

    return interleaved({"torchvision": run(theirs), "ours": run(ours)}, repeats)


_PEAK_SCRIPT = """
import json, resource, sys, torch
sys.path.insert(0, {root!r})
import densenet
torch.set_num_threads(2)
cfg = densenet.VARIANTS[{name!r}].replace(memory_efficient={efficient})
model = densenet.create(cfg).train().to({device!r})
x = torch.rand({batch}, 3, 224, 224, device={device!r})
if {device!r} == "cuda":
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
else:
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
model(x).sum().backward()
if {device!r} == "cuda":
    peak = torch.cuda.max_memory_allocated() - base
else:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
print(json.dumps({{"peak_bytes": peak}}))
"""


def training_peak(name: str, batch: int, efficient: bool, device: str) -> int:
    """Peak memory of one training step above the model's own, in a fresh process (CPU: max RSS)."""
    code = _PEAK_SCRIPT.format(root=str(Path(__file__).resolve().parents[1]), name=name,
                               efficient=efficient, batch=batch, device=device)
    env = {"PATH": "/usr/bin:/bin", "MALLOC_MMAP_THRESHOLD_": "65536"}  # return memory: RSS = live memory
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--memory-batch", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS_core.md"))
    args = parser.parse_args()
    setup(2)
    device = densenet.pick_device()

    lines = ["## Core: our forward vs torchvision, memory-efficient mode", "",
             f"Machine: {machine()}  ", f"Versions: {versions('torch', 'torchvision')}; commit {git_commit()}  ",
             f"Method: same weights, eval forward at 224x224, median of {args.repeats} interleaved repeats.", "",
             "| model | batch | torchvision (ms) | ours (ms) | ours / torchvision |", "|---|---|---|---|---|"]
    for name in ("densenet121",):
        for batch in (1, 8):
            t = forward_speed(name, batch, args.repeats, device)
            ratio = t["ours"] / t["torchvision"]
            lines.append(f"| {name} | {batch} | {t['torchvision'] * 1e3:.1f} | {t['ours'] * 1e3:.1f} | {ratio:.3f} |")
            print(lines[-1], flush=True)
    plain = training_peak("densenet121", args.memory_batch, False, device.type)
    efficient = training_peak("densenet121", args.memory_batch, True, device.type)
    lines += ["", f"Peak memory of one training step of DenseNet-121, batch {args.memory_batch}, 224x224 "
              f"({'CUDA max_memory_allocated' if device.type == 'cuda' else 'CPU max RSS above the built model, fresh process'}):", "",
              "| mode | peak (MiB) | vs plain |", "|---|---|---|",
              f"| plain | {plain / 2**20:.0f} | 1.00 |",
              f"| memory_efficient | {efficient / 2**20:.0f} | {efficient / plain:.2f} |"]
    print("\n".join(lines[-4:]))
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
