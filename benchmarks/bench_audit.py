"""Dataset audit: the local engine against the bare forward + backward floor and pytorch-grad-cam's
loop, the Ray engine against the local one, and peak memory over a growing dataset.

Run it on a quiet machine, from the repository root:

    python benchmarks/bench_audit.py            # the full figures (long: ~30-40 min on 2 cores)
    python benchmarks/bench_audit.py --quick    # a dry run with small counts (a few minutes)

It writes benchmarks/RESULTS_audit.md (``--out``). Everything runs with 2 torch threads.

1. Throughput, DenseNet-121 at 224 px (fresh weights, BatchNorm randomised; 4 classes), Grad-CAM
   at 5 layers (the 4 block outputs and norm5), batch 8, on generated 256 px images with boxes:
   - the audit's local engine, everything included (reading PNGs, preprocessing, maps, scores,
     Parquet and map parts, the summary with its bootstrap intervals);
   - the floor: the same batches, already decoded and preprocessed in memory, one traced
     forward and one backward (``model.trace(x, layers, keep_graph=True).gradients``), nothing else;
   - pytorch-grad-cam's loop: one ``GradCAM`` object over the 5 layers (it averages them into one
     map), its own batching (8 images per call), the same in-memory batches, no scoring.
   Medians of interleaved repeats; figures are images per second and ratios.
2. Ray against local on the same images (startup included: a fresh local Ray, an actor pool
   of 2, each actor one thread), one run each.
3. Peak memory (max RSS of a fresh process) of a whole local audit of N and 10 N images with
   the demo model (128 px), so that growth with the dataset shows.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import densenet  # noqa: E402
from common import git_commit, interleaved, machine, setup, versions  # noqa: E402
from densenet import audit, load_image, preprocess  # noqa: E402
from densenet.synthetic import CLASSES, write_dataset  # noqa: E402
from densenet.testing import randomise_batchnorm  # noqa: E402

THREADS = 2
LAYERS = ("features.denseblock1", "features.denseblock2", "features.denseblock3", "features.denseblock4",
          "features.norm5")
BATCH = 8
TARGETS = {"floor": 0.9, "pytorch-grad-cam": 8.0, "ray": 1.25, "memory": 1.10}


def make_model() -> densenet.DenseNet:
    torch.manual_seed(0)
    model = densenet.create("densenet121", num_classes=len(CLASSES), class_names=list(CLASSES))
    return randomise_batchnorm(model, seed=0).eval()


def load_batches(model, ds) -> list[torch.Tensor]:
    xs = [preprocess(load_image(item.path), model) for item in ds.items]
    return [torch.cat(xs[i:i + BATCH]) for i in range(0, len(xs), BATCH)]


def floor(model, batches) -> None:
    for x in batches:
        trace = model.trace(x, list(LAYERS), keep_graph=True)
        trace.gradients(None, list(LAYERS))


def peer_loop(model, batches) -> None:
    from pytorch_grad_cam import GradCAM

    with GradCAM(model=model, target_layers=[model.get_submodule(n) for n in LAYERS]) as cam:
        for x in batches:
            cam(input_tensor=x, targets=None)  # None: each image's top class, as the audit does


def engine(model, ds, base: Path) -> None:
    out = Path(tempfile.mkdtemp(dir=base))
    audit.run_audit(model, ds, out, audit.Settings(methods=("gradcam",), layers=LAYERS, batch_size=BATCH,
                                                   chunk_size=64), report=False)
    shutil.rmtree(out, ignore_errors=True)


def throughput(n: int, repeats: int, base: Path) -> dict[str, float]:
    model = make_model()
    data = write_dataset(base / f"data{n}", n, size=256)
    ds = audit.load_dataset(data["images"], model.class_names, labels=data["labels"], boxes=data["boxes"])
    batches = load_batches(model, ds)
    peer_model = make_model()  # pytorch-grad-cam hooks and zero_grads the model it is given: its own copy
    seconds = interleaved({"engine": lambda: engine(model, ds, base), "floor": lambda: floor(model, batches),
                           "pytorch-grad-cam": lambda: peer_loop(peer_model, batches)}, repeats=repeats, warmup=1)
    return {k: n / v for k, v in seconds.items()}


def ray_vs_local(n: int, base: Path) -> dict[str, float]:
    model = make_model()
    data = write_dataset(base / f"ray{n}", n, size=256)
    ds = audit.load_dataset(data["images"], model.class_names, labels=data["labels"], boxes=data["boxes"])
    settings = audit.Settings(methods=("gradcam",), layers=LAYERS, batch_size=BATCH, chunk_size=32)
    if "RAY_TMPDIR" not in os.environ:  # short (socket paths), and removed with the run's folder
        short = len(str(base)) < 40
        os.environ["RAY_TMPDIR"] = str(base / "ray") if short else tempfile.mkdtemp(prefix="rt", dir="/tmp")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    times = {}
    for name, options in (("local", {}), ("ray", {"engine": "ray", "actors": 2})):
        out = base / f"out-{name}-{n}"
        start = time.perf_counter()
        audit.run_audit(model, ds, out, settings, report=False, **options)
        times[name] = time.perf_counter() - start
    return times


def memory_child(n: int, data_dir: str) -> None:
    torch.set_num_threads(THREADS)
    from densenet import demo

    model = demo.load()
    ds = audit.load_dataset(Path(data_dir) / "images", model.class_names, labels=Path(data_dir) / "labels.csv",
                            masks=Path(data_dir) / "masks", limit=n)
    out = tempfile.mkdtemp()
    audit.run_audit(model, ds, out, audit.Settings(methods=("gradcam",), batch_size=BATCH, chunk_size=64),
                    report=False)
    shutil.rmtree(out, ignore_errors=True)
    print(json.dumps({"images": len(ds.items), "max_rss_mb": _peak_rss_mb()}))


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). ``getrusage`` would not do: Linux carries ``ru_maxrss``
    over from the forking parent across ``exec``, so a child would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory(n_small: int, base: Path) -> dict[int, float]:
    data = write_dataset(base / "mem", 10 * n_small)
    out = {}
    for n in (n_small, 10 * n_small):
        done = subprocess.run([sys.executable, __file__, "--memory-child", str(n), str(base / "mem")], cwd=ROOT,
                              capture_output=True, text=True, check=True,
                              env={**os.environ, "OMP_NUM_THREADS": str(THREADS)})
        out[n] = json.loads(done.stdout.strip().splitlines()[-1])["max_rss_mb"]
    return out


def report(tp: dict[str, float], n_tp: int, repeats: int, ray: dict[str, float], n_ray: int, mem: dict[int, float],
           command: str) -> str:
    small, large = sorted(mem)
    lines = [
        "## Dataset audit", "",
        f"`{command}` on {machine()}; {versions('torch', 'ray', 'grad-cam', 'pyarrow')}; commit {git_commit()}.", "",
        f"Throughput: DenseNet-121 at 224 px, Grad-CAM at 5 layers, batch {BATCH}, {n_tp} images, median of "
        f"{repeats} interleaved repeats, {THREADS} torch threads.", "",
        "| | images/s | engine / this | target |", "|---|---|---|---|",
        f"| audit, local engine (all included) | {tp['engine']:.2f} | 1.00x | |",
        f"| bare batched forward + backward (floor) | {tp['floor']:.2f} | {tp['engine'] / tp['floor']:.2f}x "
        f"| >= {TARGETS['floor']}x |",
        f"| pytorch-grad-cam loop (one GradCAM, 5 layers) | {tp['pytorch-grad-cam']:.2f} | "
        f"{tp['engine'] / tp['pytorch-grad-cam']:.2f}x | >= {TARGETS['pytorch-grad-cam']}x |", "",
        f"Ray against local, {n_ray} images, startup included (local Ray, 2 actors): local {ray['local']:.1f} s, "
        f"Ray {ray['ray']:.1f} s: **{ray['ray'] / ray['local']:.2f}x** (target <= {TARGETS['ray']}x).", "",
        f"Peak memory of a whole audit (demo model, 128 px, one method, 3 layers): {small} images "
        f"{mem[small]:.0f} MB, {large} images {mem[large]:.0f} MB: **{mem[large] / mem[small]:.2f}x** "
        f"(target <= {TARGETS['memory']:.2f}x).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts: a dry run")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS_audit.md")
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--skip-ray", action="store_true", help="leave out the Ray comparison")
    args = parser.parse_args()
    setup(THREADS)
    if args.memory_child:
        memory_child(int(args.memory_child[0]), args.memory_child[1])
        return
    n_tp, repeats, n_ray, n_mem = (16, 1, 32, 40) if args.quick else (64, 3, 512, 200)
    base = Path(tempfile.mkdtemp(prefix="bench_audit-"))
    try:
        print(f"throughput ({n_tp} images, {repeats} repeats) ...", flush=True)
        tp = throughput(n_tp, repeats, base)
        print(tp, flush=True)
        ray = {"local": float("nan"), "ray": float("nan")}
        if not args.skip_ray:
            print(f"ray vs local ({n_ray} images) ...", flush=True)
            ray = ray_vs_local(n_ray, base)
            print(ray, flush=True)
        print(f"memory ({n_mem} vs {10 * n_mem} images) ...", flush=True)
        mem = memory(n_mem, base)
        print(mem, flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    command = "python benchmarks/bench_audit.py" + (" --quick" if args.quick else "")
    text = report(tp, n_tp, repeats, ray, n_ray, mem, command)
    if args.quick:
        print(text)
        print("(--quick: not written; run without --quick for the figures)")
        return
    args.out.write_text(text)
    print(text)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
