"""Claim "trains more slowly" / "watch it learn": a DenseNet and a ResNet of about its size train side by side.

Both networks see the same freshly generated demo batches (step ``s`` uses seed ``s``), with the
same optimiser (AdamW), and are stepped alternately, so that both feel the same machine load.
Every ``every`` steps the generator :func:`learn` yields a :class:`LearnSnapshot`: the loss and
accuracy curves so far, each network's training throughput (images per second of its own
training steps), and each network's Grad-CAM of one fixed image (the DenseNet's from
:func:`densenet.explain.grad_cam` at ``features.norm5``; the ResNet's computed the same way at
its last stage), so a class can watch the maps sharpen as the networks learn.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..config import DenseNetConfig
from ..model import DenseNet
from ..synthetic import model_config
from ..topology import FINAL_NORM
from ._common import Progress, demo_batch, report, seeded, train_step
from .nets import PeerNet, matched_resnet, param_count

#: Seed of the demo batch the fixed Grad-CAM image is taken from (never a training seed).
CAM_SEED = 40_000_000
DENSE_CAM_LAYER = FINAL_NORM


@dataclass
class NetProgress:
    """One network's training so far.

    Attributes:
        name: ``"DenseNet"`` or ``"ResNet"``.
        params: its parameters.
        steps: the steps at which ``loss`` and ``accuracy`` were recorded (1-based, every step).
        loss, accuracy: training-batch loss and accuracy of each step (before its update).
        seconds: time spent in its own training steps.
        images_per_second: training throughput so far.
        cam: (H, W) float32 Grad-CAM of the fixed image in [0, 1], from the latest snapshot.
        cam_layer: where the CAM is read.
        batch_size: images per step.
    """

    name: str
    params: int
    cam_layer: str
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0
    cam: np.ndarray | None = None
    batch_size: int = 1

    @property
    def images_per_second(self) -> float:
        return 0.0 if not self.seconds else len(self.steps) * self.batch_size / self.seconds


@dataclass(frozen=True)
class LearnSnapshot:
    """What :func:`learn` yields every few steps (copies: later steps do not change it).

    Attributes:
        step: steps done so far (0 before the first).
        total_steps: steps asked for.
        densenet, resnet: each network's progress.
        image: (H, W) the fixed image the CAMs explain, pixels in [0, 1].
        label: its class index; ``class_name``: its name.
        done: this is the last snapshot.
    """

    step: int
    total_steps: int
    densenet: NetProgress
    resnet: NetProgress
    image: np.ndarray
    label: int
    class_name: str
    done: bool


def default_config() -> DenseNetConfig:
    """The demo model's architecture with average pooling and no null class: 0.1M parameters, depth 28."""
    return model_config().replace(pool="avg", null_class=False)


def _normalised_upsampled(cam: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    cam = F.interpolate(cam[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    lo, hi = cam.min(), cam.max()
    cam = (cam - lo) / (hi - lo) if hi > lo else torch.zeros_like(cam)
    return cam.numpy().astype(np.float32)


def _resnet_cam(model: PeerNet, x: torch.Tensor, target: int) -> np.ndarray:
    """Grad-CAM of a :class:`PeerNet` at its last stage: ReLU(sum_c mean(dy/dA_c) A_c), upsampled, min-max."""
    with torch.enable_grad():
        features = model.forward_features(x)  # (1, C, h, w)
        score = model.head(features)[0, target]
        (grad,) = torch.autograd.grad(score, features)
    cam = F.relu((grad.mean(dim=(2, 3), keepdim=True) * features).sum(1))[0].detach()
    return _normalised_upsampled(cam, tuple(x.shape[2:]))


def _dense_cam(model: DenseNet, x: torch.Tensor, target: int) -> np.ndarray:
    from ..explain import grad_cam

    return grad_cam(model, x, target, layers=DENSE_CAM_LAYER)[DENSE_CAM_LAYER]


def _with_eval(model: torch.nn.Module, fn: Callable[[], np.ndarray]) -> np.ndarray:
    """Run ``fn`` with ``model`` in eval mode (it is private to the experiment), then back to train."""
    model.eval()
    try:
        return fn()
    finally:
        model.train()


def _copy(p: NetProgress) -> NetProgress:
    return NetProgress(p.name, p.params, p.cam_layer, list(p.steps), list(p.loss), list(p.accuracy), p.seconds,
                       None if p.cam is None else p.cam.copy(), p.batch_size)


def learn(config: DenseNetConfig | None = None, *, steps: int = 120, batch_size: int = 16, image_size: int = 48,
          every: int = 10, lr: float = 3e-3, seed: int = 0, progress: Progress | None = None) -> Iterator[LearnSnapshot]:
    """Train a DenseNet and a ResNet of about its parameter count side by side, yielding every ``every`` steps.

    Args:
        config: the DenseNet; ``None``: :func:`default_config`. It must take 1-channel images and
            have 4 classes (the demo data). The ResNet is
            :func:`~densenet.classroom.nets.matched_resnet` of it (same depth, width for about its parameters).
        steps: training steps for each network.
        batch_size, image_size: demo images per step, and their side (>= 32).
        every: snapshot (and Grad-CAM) interval in steps; a snapshot also comes before the first
            step and after the last.
        lr: AdamW learning rate, both networks.
        seed: initial weights.
        progress: called after every step with the fraction done; raise from it to stop.

    Yields:
        :class:`LearnSnapshot` objects; stop iterating (or close the generator) to stop training.
    """
    from ..synthetic import CLASSES, generate, normalize

    config = (config or default_config()).replace(memory_efficient=False)
    if config.in_channels != 1 or config.num_classes != 4:
        raise ValueError(f"the demo images have 1 channel and 4 classes; config has in_channels={config.in_channels},"
                         f" num_classes={config.num_classes}")
    if steps < 0 or batch_size < 1 or every < 1:
        raise ValueError(f"need steps >= 0, batch_size >= 1, every >= 1; got {steps}, {batch_size}, {every}")
    with seeded(seed):
        dense = DenseNet(config).train()
    with seeded(seed):
        res = matched_resnet(config).train()
    nets = {"DenseNet": dense, "ResNet": res}
    opts = {k: torch.optim.AdamW(n.parameters(), lr=lr, weight_decay=5e-4) for k, n in nets.items()}
    log = {"DenseNet": NetProgress("DenseNet", param_count(dense), DENSE_CAM_LAYER, batch_size=batch_size),
           "ResNet": NetProgress("ResNet", param_count(res), res.tap_names[-1].split(".")[0], batch_size=batch_size)}

    images, labels, _ = generate(16, CAM_SEED, image_size)
    pick = int(torch.nonzero(labels != 0)[0, 0])  # an image with a lesion, so the CAM has something to find
    image, label = images[pick, 0].numpy().copy(), int(labels[pick])
    x_cam = normalize(images[pick:pick + 1])

    def snapshot(step: int) -> LearnSnapshot:
        log["DenseNet"].cam = _with_eval(dense, lambda: _dense_cam(dense, x_cam, label))
        log["ResNet"].cam = _with_eval(res, lambda: _resnet_cam(res, x_cam, label))
        return LearnSnapshot(step, steps, _copy(log["DenseNet"]), _copy(log["ResNet"]), image, label,
                             CLASSES[label], step == steps)

    yield snapshot(0)
    for step in range(1, steps + 1):
        x, y = demo_batch(batch_size, step - 1, image_size)
        for key, net in nets.items():
            start = time.perf_counter()
            loss, acc = train_step(net, opts[key], x, y)
            log[key].seconds += time.perf_counter() - start
            log[key].steps.append(step)
            log[key].loss.append(loss if math.isfinite(loss) else math.nan)
            log[key].accuracy.append(acc)
        report(progress, step / max(1, steps))
        if step % every == 0 or step == steps:
            yield snapshot(step)


def watch_it_learn(config: DenseNetConfig | None = None, *, on_snapshot: Callable[[LearnSnapshot], None] | None = None,
                   progress: Progress | None = None, **options: int | float) -> LearnSnapshot:
    """Run :func:`learn` to the end and return its last snapshot; ``on_snapshot`` sees every one.

    ``options`` are :func:`learn`'s keyword arguments (``steps``, ``batch_size``, ``image_size``,
    ``every``, ``lr``, ``seed``). Raise from ``progress`` or ``on_snapshot`` to stop early.
    """
    last = None
    for snap in learn(config, progress=progress, **options):
        if on_snapshot is not None:
            on_snapshot(snap)
        last = snap
    assert last is not None
    return last
