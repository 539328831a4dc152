"""Forward-only CAMs and link relevance on DenseNet-121: ours against pytorch-grad-cam and torch-cam.

Run it on a quiet machine, from the repository root:

    python benchmarks/bench_perturbation.py              # final figures (about 40 minutes on 2 CPU threads)
    python benchmarks/bench_perturbation.py --quick      # one round, no warm-up: a dry run
    python benchmarks/bench_perturbation.py --batch-sizes  # the sweep behind the default batch sizes

It writes benchmarks/RESULTS_perturbation.md (``--out``): timings as ratios ours / theirs from
interleaved rounds (order rotating, medians, 2 torch threads), the maps' max |difference| against
each peer, the top-m error table and the time estimate against the measured time. Same model and
image as bench_cam.py: DenseNet-121, fresh weights with BatchNorm randomised, one 224x224 image.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import densenet.explain as E  # noqa: E402
from densenet.testing import zeroing_ablation_layer  # noqa: E402
from bench_cam import make_image, make_model, to_map  # noqa: E402
from common import git_commit, machine, versions  # noqa: E402

THREADS = 2
NORM5, BLOCK3 = "features.norm5", "features.denseblock3"
TARGETS = {  # ours / peer
    "Ablation-CAM at norm5 vs pytorch-grad-cam": 0.05,
    "Ablation-CAM at denseblock3 vs pytorch-grad-cam": 0.35,
    "Score-CAM at norm5 vs the faster peer": 0.80,
    "link relevance vs plain forward + backward": 1.20,
}


def quiet() -> contextlib.AbstractContextManager:
    """pytorch-grad-cam draws tqdm bars on stderr for every map."""
    return contextlib.redirect_stderr(io.StringIO())


# --- peers ------------------------------------------------------------------------------------------

def pgc_map(cls, model, layer: str, x: torch.Tensor, target: int, **kw) -> np.ndarray:
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with quiet(), cls(model=model, target_layers=[model.get_submodule(layer)], **kw) as cam:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(target)])[0]


def torchcam_score(model, layer: str, x: torch.Tensor, target: int) -> np.ndarray:
    from torchcam.methods import ScoreCAM

    with ScoreCAM(model, layer, input_shape=tuple(x.shape[1:])) as extractor:
        with torch.no_grad():
            scores = model(x)
        cam = extractor(class_idx=target, scores=scores)[0]
    return to_map(cam, x.shape[-2:])


def relevance(model, x: torch.Tensor, target: int) -> None:
    trace = model.trace(x, E.relevance_layers(model), keep_graph=True)
    E.link_relevance(trace, target)


def plain(model, x: torch.Tensor, target: int) -> None:
    x = x.detach().clone().requires_grad_(True)
    torch.autograd.grad(model(x)[0, target], x)


# --- timing -------------------------------------------------------------------------------------------

def interleave(runs: dict[str, Callable[[], object]], rounds: int, warmup: bool) -> dict[str, float]:
    names = list(runs)
    if warmup:
        for name in names:
            runs[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
        print(f"  round {r + 1}/{rounds}: " + ", ".join(f"{n} {times[n][-1]:.2f} s" for n in names), flush=True)
    return {n: statistics.median(t) for n, t in times.items()}


def time_all(model, x, target: int, rounds: int, warmup: bool) -> tuple[dict[str, float], dict[str, float]]:
    from pytorch_grad_cam import AblationCAM, ScoreCAM

    peers = {name: copy.deepcopy(model) for name in ("pgc-ablation", "pgc-score", "torchcam")}
    runs = {
        "ours Ablation-CAM norm5": lambda: E.ablation_cam(model, x, target, NORM5),
        "pgc AblationCAM norm5": lambda: pgc_map(AblationCAM, peers["pgc-ablation"], NORM5, x, target),
        "ours Ablation-CAM denseblock3": lambda: E.ablation_cam(model, x, target, BLOCK3),
        "pgc AblationCAM denseblock3": lambda: pgc_map(AblationCAM, peers["pgc-ablation"], BLOCK3, x, target,
                                                       ablation_layer=zeroing_ablation_layer()),
        "ours Score-CAM norm5": lambda: E.score_cam(model, x, target, NORM5),
        "pgc ScoreCAM norm5": lambda: pgc_map(ScoreCAM, peers["pgc-score"], NORM5, x, target),
        "torch-cam ScoreCAM norm5": lambda: torchcam_score(peers["torchcam"], NORM5, x, target),
        "ours link relevance": lambda: relevance(model, x, target),
        "plain forward + backward": lambda: plain(model, x, target),
    }
    medians = interleave(runs, rounds, warmup)
    m = medians
    ratios = {
        "Ablation-CAM at norm5 vs pytorch-grad-cam": m["ours Ablation-CAM norm5"] / m["pgc AblationCAM norm5"],
        "Ablation-CAM at denseblock3 vs pytorch-grad-cam":
            m["ours Ablation-CAM denseblock3"] / m["pgc AblationCAM denseblock3"],
        "Score-CAM at norm5 vs the faster peer":
            m["ours Score-CAM norm5"] / min(m["pgc ScoreCAM norm5"], m["torch-cam ScoreCAM norm5"]),
        "link relevance vs plain forward + backward": m["ours link relevance"] / m["plain forward + backward"],
    }
    return medians, ratios


# --- maps -----------------------------------------------------------------------------------------------

def map_parity(model, x, target: int) -> dict[str, str]:
    from pytorch_grad_cam import AblationCAM, ScoreCAM

    def diff(a: np.ndarray, b: np.ndarray) -> str:
        blank = " (both blank: proves nothing)" if a.max() == 0 and b.max() == 0 else ""
        return f"{float(np.abs(a - b).max()):.1e}{blank}"

    return {
        "Ablation-CAM norm5 vs pytorch-grad-cam AblationCAM (default ablation layer)": diff(
            E.ablation_cam(model, x, target, NORM5)[NORM5], pgc_map(AblationCAM, copy.deepcopy(model), NORM5, x,
                                                                   target)),
        "Ablation-CAM denseblock3 vs pytorch-grad-cam AblationCAM (zeroing ablation layer)": diff(
            E.ablation_cam(model, x, target, BLOCK3)[BLOCK3],
            pgc_map(AblationCAM, copy.deepcopy(model), BLOCK3, x, target, ablation_layer=zeroing_ablation_layer())),
        "Score-CAM norm5 (masks='torch-cam') vs torch-cam ScoreCAM": diff(
            E.score_cam(model, x, target, NORM5)[NORM5], torchcam_score(copy.deepcopy(model), NORM5, x, target)),
        "Score-CAM norm5 (masks='pytorch-grad-cam') vs pytorch-grad-cam ScoreCAM": diff(
            E.score_cam(model, x, target, NORM5, masks="pytorch-grad-cam")[NORM5],
            pgc_map(ScoreCAM, copy.deepcopy(model), NORM5, x, target)),
    }


def top_m_errors(model, x, target: int, ms: tuple[int, ...]) -> list[tuple[str, str, int, float, float, float]]:
    """(method, rank_by, m, max |diff|, mean |diff|, seconds) of the [0, 1] map against all channels."""
    trace = model.trace(x, [NORM5, BLOCK3] + model.resume_inputs(BLOCK3), keep_graph=True)
    rows = []
    for method, layer in (("ablationcam", NORM5), ("ablationcam", BLOCK3), ("scorecam", NORM5)):
        start = time.perf_counter()
        full = E.perturbation_cam_maps(model, None, method, target, layer, trace=trace)[layer].map
        blank = " (blank map)" if full.max() == 0 else ""
        rows.append((f"{method} {layer.removeprefix('features.')}{blank}", "all", 1024, 0.0, 0.0,
                     time.perf_counter() - start))
        for rank in ("activation", "gradient"):
            for m in ms:
                start = time.perf_counter()
                part = E.perturbation_cam_maps(model, None, method, target, layer, trace=trace, top=m,
                                               rank_by=rank)[layer].map
                d = np.abs(part - full)
                rows.append((f"{method} {layer.removeprefix('features.')}{blank}", rank, m, float(d.max()),
                             float(d.mean()), time.perf_counter() - start))
            print(f"  top-m {method} {layer} by {rank}: done", flush=True)
    return rows


def estimates(model, x, target: int, medians: dict[str, float]) -> list[tuple[str, str, float]]:
    out = []
    for label, method, layer, key in (("Ablation-CAM norm5", "ablationcam", NORM5, "ours Ablation-CAM norm5"),
                                      ("Ablation-CAM denseblock3", "ablationcam", BLOCK3,
                                       "ours Ablation-CAM denseblock3"),
                                      ("Score-CAM norm5", "scorecam", NORM5, "ours Score-CAM norm5")):
        start = time.perf_counter()
        est = E.estimate_time(model, x, method, layer)
        cost = time.perf_counter() - start
        out.append((label, f"{est.text} (estimating took {cost:.2f} s)", medians[key]))
    return out


# --- batch-size sweep -------------------------------------------------------------------------------

def batch_sweep(model, x, rounds: int) -> str:
    """Seconds per perturbed forward at each batch size: resumed (Ablation-CAM) and masked (Score-CAM)."""
    trace = model.trace(x, [NORM5, BLOCK3])
    lines = ["| work | batch | ms per forward |", "|---|---:|---:|"]
    runs: dict[str, Callable[[], object]] = {}
    per: dict[str, int] = {}
    for layer in (NORM5, BLOCK3):
        a = trace.activations[layer]
        for b in (16, 32, 64, 128):
            batch = a.expand(b, -1, -1, -1).clone()
            runs[f"resumed from {layer.removeprefix('features.')}|{b}"] = (
                lambda batch=batch, layer=layer: torch.inference_mode()(model.forward_from)(layer, batch, trace))
            per[f"resumed from {layer.removeprefix('features.')}|{b}"] = b
    for b in (4, 8, 16, 32):
        for fmt in ("NCHW", "channels_last"):
            batch = x.expand(b, -1, -1, -1).clone()
            if fmt == "channels_last":
                batch = batch.contiguous(memory_format=torch.channels_last)
            runs[f"full forward {fmt}|{b}"] = lambda batch=batch: torch.inference_mode()(model)(batch)
            per[f"full forward {fmt}|{b}"] = b
    medians = interleave(runs, rounds, warmup=True)
    for key, sec in medians.items():
        work, b = key.split("|")
        lines.append(f"| {work} | {b} | {sec / per[key] * 1e3:.2f} |")
    return "\n".join(lines)


# --- report -----------------------------------------------------------------------------------------------

def report(medians, ratios, parity, topm, est, rounds: int, quick: bool, load: str, command: str, size: int) -> str:
    lines = [
        "## Forward-only CAMs and link relevance",
        "",
        f"`{command}` — {datetime.date.today().isoformat()}, commit {git_commit()}, {rounds} interleaved round(s)"
        + (" (**quick**: one round, no warm-up, 112x112 image; not final figures)" if quick else ""),
        "",
        f"Machine: {machine()}. {load}",
        "",
        "Versions: " + versions("torch", "torchvision", "numpy", "grad-cam", "torchcam"),
        "",
        f"DenseNet-121 (fresh weights, BatchNorm randomised), one {size}x{size} image, its top class. Ours: default "
        "batch sizes (Ablation-CAM 64 resumed forwards, Score-CAM 16 masked inputs, channels-last on CPU). "
        "pytorch-grad-cam: `AblationCAM` (batch 32; at denseblock3 with a zeroing ablation layer, see below) and "
        "`ScoreCAM` (batch 16); torch-cam: `ScoreCAM` (batch 32). Link relevance: one trace with a graph of "
        "the relevance layers and `link_relevance` (every link of the 4 blocks); plain: one forward and "
        "`torch.autograd.grad` of the logit to the input.",
        "",
        "| contender | median |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {sec:.2f} s |" for name, sec in medians.items()]
    lines += ["", "| ratio (ours / theirs) | measured | target | met |", "|---|---:|---:|:---:|"]
    for name, goal in TARGETS.items():
        r = ratios[name]
        lines.append(f"| {name} | {r:.3f}x | <= {goal:.2f}x | {'yes' if r <= goal else '**no**'} |")
    lines += ["", f"Maps against the peers (max |difference| of the [0, 1] maps, {size}x{size}):", "",
              "| comparison | max abs diff |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in parity.items()]
    lines += ["", "Top-m preview: the [0, 1] map from the m highest-ranked channels (weight 0 for the rest) "
              "against all 1,024 channels.", "",
              "| method, layer | ranked by | m | max abs diff | mean abs diff | time |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {a} | {b} | {m} | {mx:.3f} | {mean:.4f} | {sec:.2f} s |" for a, b, m, mx, mean, sec in topm]
    lines += ["", "Time estimate before starting (`explain.estimate_time`: one timed batch, extrapolated) "
              "against the measured median:", "", "| run | estimate | measured |", "|---|---|---:|"]
    lines += [f"| {a} | {b} | {c:.2f} s |" for a, b, c in est]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--quick", action="store_true", help="one round, no warm-up")
    parser.add_argument("--size", type=int, default=None, help="image side (default 224; 112 with --quick)")
    parser.add_argument("--batch-sizes", action="store_true", help="only the batch-size sweep")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS_perturbation.md")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    model = make_model()
    size = args.size or (112 if args.quick else 224)
    x = make_image(size=size)
    with torch.no_grad():
        target = int(model(x).argmax())
    if args.batch_sizes:
        print(batch_sweep(model, x, 1 if args.quick else 3))
        return
    rounds = 1 if args.quick else args.rounds
    load = "Load average at start: " + " / ".join(f"{v:.2f}" for v in os.getloadavg()) + " (1/5/15 min)."
    command = "python benchmarks/bench_perturbation.py" + (" --quick" if args.quick else "") + (
        f" --rounds {args.rounds}" if args.rounds != 5 and not args.quick else "") + (
        f" --size {args.size}" if args.size else "")
    print(f"timing ({rounds} round(s)) ...", flush=True)
    medians, ratios = time_all(model, x, target, rounds, warmup=not args.quick)
    print("maps against the peers ...", flush=True)
    parity = map_parity(model, x, target)
    print("top-m errors ...", flush=True)
    topm = top_m_errors(model, x, target, (64, 128, 256))
    print("time estimates ...", flush=True)
    est = estimates(model, x, target, medians)
    load += " At the end: " + " / ".join(f"{v:.2f}" for v in os.getloadavg()) + "."
    text = report(medians, ratios, parity, topm, est, rounds, args.quick, load, command, size)
    args.out.write_text(text)
    print()
    print(text)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
