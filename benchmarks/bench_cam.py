"""Grad-CAM at five layers of DenseNet-121: our one-pass call against captum, pytorch-grad-cam
and torch-cam; each peer's norm5 map beside ours; each peer with two threads on one model.

Run it on a quiet machine (nothing else training), from the repository root:

    python benchmarks/bench_cam.py                  # about 5 minutes on 2 CPU threads
    python benchmarks/bench_cam.py --repeats 3      # a dry run

It writes the "Grad-CAM" section to benchmarks/RESULTS_cam.md (``--out``). Timings are
medians of interleaved repeats (every contender once per round, the order rotating), with
2 CPU threads, fresh DenseNet-121 weights with BatchNorm statistics randomised (so that maps
are not trivially positive), one 224x224 image, one target class. Figures are ratios:
ours / theirs.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import io
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import densenet  # noqa: E402
import densenet.explain as E  # noqa: E402
from densenet.testing import randomise_batchnorm  # noqa: E402

THREADS = 2
LAYERS = ["features.denseblock1", "features.denseblock2", "features.denseblock3", "features.denseblock4",
          "features.norm5"]
TARGETS = {"captum": 0.35, "pytorch-grad-cam": 0.15, "torch-cam": 0.95, "plain forward + backward": 0.85}
PEERS = ("ours", "captum", "pytorch-grad-cam", "torch-cam")


# --- setup ------------------------------------------------------------------------------------

def make_model() -> densenet.DenseNet:
    """DenseNet-121, fresh weights, BatchNorm affine parameters and running statistics randomised."""
    torch.manual_seed(0)
    return randomise_batchnorm(densenet.create("densenet121"), seed=0).eval()


def make_image(seed: int = 0, size: int = 224) -> torch.Tensor:
    """A few coloured Gaussian blobs on noise, roughly unit scale like a normalised photo."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    x = 0.3 * torch.randn(1, 3, size, size, generator=g)
    for _ in range(4):
        cy, cx = torch.rand(2, generator=g)
        x += 2 * torch.randn(3, generator=g).view(1, 3, 1, 1) * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.01)
    return x


def to_map(cam: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """A peer's (h, w) or (1, h, w) result post-processed as ours: ReLU, bilinear, min-max."""
    cam = cam.detach().float().reshape(1, *cam.shape[-2:]).clamp(min=0)
    cam = F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    lo, hi = cam.min(), cam.max()
    return ((cam - lo) / (hi - lo) if hi > lo else torch.zeros_like(cam))[0].numpy()


# --- one Grad-CAM per peer: layer name -> (H, W) map ---------------------------------------

def ours(model: nn.Module, x: torch.Tensor, target: int, layers: list[str]) -> dict[str, np.ndarray]:
    return E.grad_cam(model, x, target, layers)


def captum(model: nn.Module, x: torch.Tensor, target: int, layers: list[str]) -> dict[str, np.ndarray]:
    from captum.attr import LayerGradCam

    out = {}
    for layer in layers:
        cam = LayerGradCam(model, model.get_submodule(layer)).attribute(x, target, relu_attributions=True)
        out[layer] = to_map(cam, x.shape[-2:])
    return out


def pytorch_grad_cam(model: nn.Module, x: torch.Tensor, target: int, layers: list[str]) -> dict[str, np.ndarray]:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    out = {}
    for layer in layers:  # one object per layer: several layers in one object are averaged into one map
        with GradCAM(model=model, target_layers=[model.get_submodule(layer)]) as cam:
            out[layer] = cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])[0]
    return out


def torch_cam(model: nn.Module, x: torch.Tensor, target: int, layers: list[str]) -> dict[str, np.ndarray]:
    from torchcam.methods import GradCAM

    with GradCAM(model, target_layer=list(layers)) as extractor:
        scores = model(x)
        cams = extractor(class_idx=target, scores=scores)
    return {layer: to_map(cam, x.shape[-2:]) for layer, cam in zip(layers, cams)}


def plain(model: nn.Module, x: torch.Tensor, target: int) -> None:
    x = x.detach().clone().requires_grad_(True)
    torch.autograd.grad(model(x)[0, target], x)


EXPLAINERS: dict[str, Callable[..., dict[str, np.ndarray]]] = {
    "ours": ours, "captum": captum, "pytorch-grad-cam": pytorch_grad_cam, "torch-cam": torch_cam}


# --- timings ----------------------------------------------------------------------------------

def time_all(repeats: int) -> tuple[dict[str, float], int]:
    model = make_model()
    x = make_image()
    with torch.no_grad():
        target = int(model(x).argmax())
    # Peers hook the model, and pytorch-grad-cam also fills .grad: each gets its own copy.
    copies = {name: copy.deepcopy(model) for name in PEERS[1:]}
    runs: dict[str, Callable[[], object]] = {
        "ours": lambda: ours(model, x, target, LAYERS),
        "captum": lambda: captum(copies["captum"], x, target, LAYERS),
        "pytorch-grad-cam": lambda: pytorch_grad_cam(copies["pytorch-grad-cam"], x, target, LAYERS),
        "torch-cam": lambda: torch_cam(copies["torch-cam"], x, target, LAYERS),
        "plain forward + backward": lambda: plain(model, x, target),
    }
    names = list(runs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm-up
        runs[name]()
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
        print(f"  round {r + 1}/{repeats}: " + ", ".join(f"{n} {times[n][-1] * 1e3:.0f} ms" for n in names),
              flush=True)
    return {name: statistics.median(t) for name, t in times.items()}, target


# --- norm5 maps on torchvision's densenet121 (in-place ReLU) and on ours ---------------------

MAPS_PNG = ROOT / "benchmarks" / "norm5_maps.png"


def parity() -> dict[str, dict[str, object]]:
    import torchvision

    model = make_model()
    tv = torchvision.models.densenet121(weights=None)
    tv.load_state_dict(model.state_dict())
    tv.eval()
    x = make_image(1)
    with torch.no_grad():
        logits_ours, logits_tv = model(x), tv(x)
    target = int(logits_ours.argmax())
    assert torch.allclose(logits_ours, logits_tv, rtol=1e-4, atol=1e-4), "torchvision disagrees with our model"
    reference = ours(model, x, target, ["features.norm5"])["features.norm5"]
    result: dict[str, dict[str, object]] = {}
    on_torchvision: dict[str, np.ndarray] = {"ours": reference}
    for peer in PEERS:
        row: dict[str, object] = {}
        for where, net in (("ours", model), ("torchvision", tv)):
            if peer == "ours" and where == "torchvision":
                row[where] = "n/a (same weights load into ours unchanged)"
                continue
            try:
                with contextlib.redirect_stdout(io.StringIO()):  # pytorch-grad-cam prints swallowed errors
                    m = EXPLAINERS[peer](copy.deepcopy(net), x, target, ["features.norm5"])["features.norm5"]
                row[where] = float(np.abs(m - reference).max())
                if where == "torchvision":
                    on_torchvision[peer] = m
            except Exception as exc:  # noqa: BLE001 - reported in the table
                row[where] = f"raised {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
        result[peer] = row
    save_maps(on_torchvision, MAPS_PNG)
    return result


def save_maps(maps: dict[str, np.ndarray], path: Path) -> None:
    """Each peer's norm5 map on torchvision's densenet121 beside ours, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(maps), figsize=(3 * len(maps), 3.3))
    for ax, (name, m) in zip(axes, maps.items()):
        ax.imshow(m, cmap="jet", vmin=0, vmax=1)
        diff = "" if name == "ours" else f"\nmax |diff| {np.abs(m - maps['ours']).max():.2f}"
        ax.set_title(("ours (our DenseNet)" if name == "ours" else f"{name} (torchvision)") + diff, fontsize=9)
        ax.axis("off")
    fig.suptitle("Grad-CAM at features.norm5, same weights, same image and class", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# --- two threads on one shared model ----------------------------------------------------------

def thread_test(peer: str, calls: int) -> dict[str, object]:
    """Runs in a subprocess: two threads, each explaining its own image ``calls`` times."""
    torch.set_num_threads(THREADS)
    model = make_model()
    images = [make_image(10), make_image(11)]
    layers = LAYERS  # an early layer keeps a peer's hook registered for most of the forward
    explain = EXPLAINERS[peer]
    with torch.no_grad():
        targets = [int(model(x).argmax()) for x in images]
    reference = [explain(copy.deepcopy(model), x, t, layers) for x, t in zip(images, targets)]
    shared = copy.deepcopy(model)
    outcome = {"ok": 0, "wrong": 0, "raised": 0, "errors": []}
    lock = threading.Lock()
    barrier = threading.Barrier(2)

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(calls):
            try:  # (no redirect_stdout here: it swaps sys.stdout for every thread)
                maps = explain(shared, images[i], targets[i], layers)
                good = all(np.abs(maps[k] - reference[i][k]).max() < 1e-3 for k in layers)
                with lock:
                    outcome["ok" if good else "wrong"] += 1
            except Exception as exc:  # noqa: BLE001 - that is what we measure
                with lock:
                    outcome["raised"] += 1
                    outcome["errors"].append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
                for m in shared.modules())
    outcome["hooks_left"] = hooks
    outcome["grads_filled"] = sum(p.grad is not None for p in shared.parameters())
    outcome["errors"] = sorted(set(outcome["errors"]))[:2]
    return outcome


def run_thread_test(peer: str, calls: int, timeout: float) -> str:
    cmd = [sys.executable, __file__, "--thread-test", peer, "--calls", str(calls)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return f"hung (killed after {timeout:.0f} s)"
    if proc.returncode < 0:
        return f"aborted by {signal.Signals(-proc.returncode).name}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return f"process failed (exit {proc.returncode}): {tail[:120]}"
    o = json.loads(lines[-1])
    total = 2 * calls
    parts = [f"{o['ok']}/{total} right"]
    if o["wrong"]:
        parts.append(f"{o['wrong']} wrong maps")
    if o["raised"]:
        parts.append(f"{o['raised']} raised ({'; '.join(o['errors'])})")
    if o["hooks_left"]:
        parts.append(f"{o['hooks_left']} hooks left on the model")
    if o["grads_filled"]:
        parts.append(f".grad filled on {o['grads_filled']} parameters")
    return ", ".join(parts)


# --- report -----------------------------------------------------------------------------------

def version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} logical CPUs, torch threads {THREADS}"


def report(medians: dict[str, float], parity_rows: dict[str, dict[str, object]], threads: dict[str, str],
           repeats: int, calls: int, load: str, command: str) -> str:
    ours_s = medians["ours"]
    lines = [
        "## Grad-CAM",
        "",
        f"`{command}` — {datetime.date.today().isoformat()}, {repeats} interleaved repeats"
        + (" (**dry run**: too few repeats for final figures)" if repeats < 10 else ""),
        "",
        f"Machine: {machine()}. {load}",
        "",
        "Versions: " + ", ".join(f"{n} {version(p)}" for n, p in [
            ("python", "python"), ("torch", "torch"), ("torchvision", "torchvision"), ("numpy", "numpy"),
            ("captum", "captum"), ("grad-cam", "grad-cam"), ("torchcam", "torchcam")]).replace(
            "python not installed", f"python {platform.python_version()}"),
        "",
        "DenseNet-121 (fresh weights, BatchNorm weights, biases and running statistics randomised), one "
        "224x224 image, one target class, Grad-CAM at denseblock1-4 and norm5. Ours: one call "
        "(one forward that records autograd history only from denseblock1's output on, one backward "
        "stopping there, maps upsampled to 224 and normalised). "
        "captum: 5 `LayerGradCam.attribute` calls (no upsampling). pytorch-grad-cam: 5 `GradCAM` objects, "
        "each in a `with` block. torch-cam: one `GradCAM` extractor over the 5 layers (maps at layer "
        "resolution). Plain: one forward and `torch.autograd.grad` of the logit to the input.",
        "",
        "| contender | median | ours / this | target | met |",
        "|---|---:|---:|---:|:---:|",
        f"| ours (5 layers, 1 call) | {ours_s * 1e3:.0f} ms | 1.00 | | |",
    ]
    for name, goal in TARGETS.items():
        ratio = ours_s / medians[name]
        lines.append(f"| {name} | {medians[name] * 1e3:.0f} ms | {ratio:.2f}x | <= {goal:.2f}x | "
                     f"{'yes' if ratio <= goal else '**no**'} |")
    lines += [
        "",
        "Each peer's Grad-CAM at `features.norm5` against ours: max |difference| of the [0, 1] maps "
        "(ReLU, bilinear to 224, min-max), same weights. torchvision's densenet121 has in-place ReLUs "
        "(and an in-place `F.relu` after `features`), ours has none.",
        "",
        "| peer | on our DenseNet | on torchvision's densenet121 |",
        "|---|---:|---:|",
    ]
    for peer, row in parity_rows.items():
        cells = [f"{v:.2g}" if isinstance(v, float) else str(v) for v in (row["ours"], row["torchvision"])]
        lines.append(f"| {peer} | {cells[0]} | {cells[1]} |")
    lines += [
        "",
        f"The maps on torchvision's model, side by side: `benchmarks/{MAPS_PNG.name}`.",
        "",
        f"Two threads on one shared model, each explaining its own image {calls} times at the 5 layers "
        "(the calls above), compared with the single-threaded maps; each peer in a subprocess.",
        "",
        "| peer | outcome |",
        "|---|---|",
    ]
    lines += [f"| {peer} | {outcome} |" for peer, outcome in threads.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds (default 15)")
    parser.add_argument("--calls", type=int, default=4, help="explanations per thread in the thread test")
    parser.add_argument("--timeout", type=float, default=900, help="seconds before a thread test counts as hung")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS_cam.md")
    parser.add_argument("--thread-test", choices=PEERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(THREADS)

    if args.thread_test:
        outcome = thread_test(args.thread_test, args.calls)
        sys.__stdout__.write(json.dumps(outcome) + "\n")
        sys.__stdout__.flush()
        return

    load = "Load average at start: " + " / ".join(f"{v:.2f}" for v in os.getloadavg()) + " (1/5/15 min)."
    command = "python benchmarks/bench_cam.py" + (f" --repeats {args.repeats}" if args.repeats != 15 else "") + (
        f" --calls {args.calls}" if args.calls != 4 else "")
    print(f"timing ({args.repeats} rounds) ...", flush=True)
    medians, _ = time_all(args.repeats)
    print("norm5 maps ...", flush=True)
    parity_rows = parity()
    threads = {}
    for peer in PEERS:
        print(f"2 threads: {peer} ...", flush=True)
        threads[peer] = run_thread_test(peer, args.calls, args.timeout)
    load += " At the end: " + " / ".join(f"{v:.2f}" for v in os.getloadavg()) + " (this script itself adds about 2)."
    text = report(medians, parity_rows, threads, args.repeats, args.calls, load, command)
    args.out.write_text(text)
    print()
    print(text)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
