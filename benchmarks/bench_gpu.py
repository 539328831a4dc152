"""GPU figures: Grad-CAM at five layers of DenseNet-121 at batch 64 against captum, pytorch-grad-cam and a bare
forward + backward; LRP and link importance against plain passes; the audit's images per second.

Run it on a CUDA machine, from the repository root (a few minutes on one GPU):

    python benchmarks/bench_gpu.py [--repeats 10] [--images 512] [--out benchmarks/RESULTS_gpu.md]

Timings are medians of interleaved repeats, each call closed by ``torch.cuda.synchronize()``; fresh
DenseNet-121 weights with BatchNorm statistics randomised, 224 px, each image's top class. Peers that are not
installed are reported as such. Without CUDA it says so and exits.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import densenet  # noqa: E402
from common import git_commit, interleaved, machine, versions  # noqa: E402
from densenet import audit, explain  # noqa: E402
from densenet.synthetic import CLASSES, write_dataset  # noqa: E402
from densenet.testing import randomise_batchnorm  # noqa: E402

LAYERS = ["features.denseblock1", "features.denseblock2", "features.denseblock3", "features.denseblock4",
          "features.norm5"]
BATCH = 64


def synced(fn: Callable[[], object]) -> Callable[[], None]:
    def call() -> None:
        fn()
        torch.cuda.synchronize()
    return call


def make_model(num_classes: int = 1000) -> densenet.DenseNet:
    torch.manual_seed(0)
    model = densenet.create("densenet121", num_classes=num_classes)
    return randomise_batchnorm(model, seed=0).eval().cuda()


def cams(repeats: int) -> dict[str, float]:
    model = make_model()
    x = torch.randn(BATCH, 3, 224, 224, device="cuda")
    with torch.no_grad():
        top = model(x).argmax(1)

    def ours() -> None:
        trace = model.trace(x, LAYERS, keep_graph=True)
        explain.raw_cams(trace, "gradcam", top, LAYERS)

    def floor() -> None:
        trace = model.trace(x, LAYERS, keep_graph=True)
        trace.gradients(trace.targets(top), LAYERS)

    def forward() -> None:
        with torch.no_grad():
            model(x)

    fns = {"ours (5 layers, 1 call)": ours, "forward + backward (floor)": floor, "eval forward": forward}
    try:
        from captum.attr import LayerGradCam

        def captum() -> None:
            for name in LAYERS:
                LayerGradCam(model, model.get_submodule(name)).attribute(x, target=top)

        fns["captum LayerGradCam (5 calls)"] = captum
    except ImportError:
        pass
    try:
        from pytorch_grad_cam import GradCAM

        peer = make_model()  # it hooks the model it is given

        def pgc() -> None:
            with GradCAM(model=peer, target_layers=[peer.get_submodule(n) for n in LAYERS]) as cam:
                cam(input_tensor=x, targets=None)

        fns["pytorch-grad-cam GradCAM (5 layers)"] = pgc
    except ImportError:
        pass
    return interleaved({k: synced(v) for k, v in fns.items()}, repeats=repeats, warmup=2)


def relevance(repeats: int) -> dict[str, float]:
    model = make_model()
    x = torch.randn(1, 3, 224, 224, device="cuda")
    target = int(model(x).argmax())

    def fwd_bwd() -> None:
        trace = model.trace(x, ["features.norm5"], keep_graph=True)
        trace.gradients(target, ["features.norm5"])

    def forward() -> None:
        with torch.no_grad():
            model(x)

    fns: dict[str, Callable[[], object]] = {"forward + backward, batch 1": fwd_bwd, "eval forward, batch 1": forward}
    if hasattr(explain, "lrp"):
        fns["LRP (epsilon-plus-flat), batch 1"] = lambda: explain.lrp(model, x, target)
    if hasattr(explain, "link_importance"):
        fns["link importance, block 3 (300 links)"] = lambda: explain.link_importance(model, x, target, block=3)
    return interleaved({k: synced(v) for k, v in fns.items()}, repeats=repeats, warmup=2)


def audit_rate(n: int) -> dict[str, float]:
    base = Path(tempfile.mkdtemp(prefix="gpu-audit-"))
    try:
        model = densenet.create("densenet121", num_classes=len(CLASSES), class_names=list(CLASSES))
        model = randomise_batchnorm(model, seed=0).eval().cuda()
        data = write_dataset(base / "data", n, size=256)
        ds = audit.load_dataset(data["images"], model.class_names, labels=data["labels"], boxes=data["boxes"])
        rates = {}
        for batch in (8, BATCH):
            settings = audit.Settings(methods=("gradcam",), layers=tuple(LAYERS), batch_size=batch, chunk_size=256,
                                      device="cuda")
            audit.run_audit(model, ds, base / f"warm{batch}", settings, report=False)  # cuDNN autotune, caches
            start = time.perf_counter()
            audit.run_audit(model, ds, base / f"out{batch}", settings, report=False)
            rates[f"audit, Grad-CAM at 5 layers, batch {batch} (images/s)"] = n / (time.perf_counter() - start)
        return rates
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS_gpu.md")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure")
        return
    torch.backends.cudnn.benchmark = True
    lines = [f"# GPU ({time.strftime('%Y-%m-%d')}, commit {git_commit()})", "",
             f"Machine: {machine()}. Versions: {versions('torch', 'captum', 'grad-cam', 'zennit')}.", ""]
    cam_times = cams(args.repeats)
    lines += [f"## Grad-CAM at 5 layers, DenseNet-121, batch {BATCH}, 224 px (median of {args.repeats})", "",
              "| what | ms per batch | images/s | / ours |", "|---|---:|---:|---:|"]
    ours = cam_times["ours (5 layers, 1 call)"]
    for name, s in cam_times.items():
        lines.append(f"| {name} | {1000 * s:.1f} | {BATCH / s:,.0f} | {s / ours:.2f}× |")
    rel = relevance(args.repeats)
    base = rel["forward + backward, batch 1"]
    lines += ["", "## LRP and link importance, batch 1 (median)", "", "| what | ms | / forward + backward |",
              "|---|---:|---:|"]
    for name, s in rel.items():
        lines.append(f"| {name} | {1000 * s:.1f} | {s / base:.2f}× |")
    rates = audit_rate(args.images)
    lines += ["", f"## Audit, {args.images} generated 256 px images, local engine, everything included", "",
              "| what | images/s |", "|---|---:|"]
    lines += [f"| {name} | {r:,.0f} |" for name, r in rates.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
