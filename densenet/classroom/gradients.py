"""Claim "eases the vanishing-gradient problem": the gradient at every depth of three networks of equal depth.

For a plain deep CNN (conv-BN-ReLU units, no shortcut), a ResNet (torchvision's blocks) and a
DenseNet, all of the same depth (:mod:`densenet.classroom.nets` says how depth is counted) and about the
same number of parameters, the
experiment measures ``||dL/dh_l||_2``: the L2 norm of the gradient of the mean cross-entropy
loss of a fixed batch of demo images with respect to the output ``h_l`` of each unit (the stem,
every plain conv unit / residual block / dense layer, and DenseNet's transitions), from the
input side to the output side. It does so at initialisation and again after a number of SGD
steps on fresh demo batches. All three networks are measured in training mode (BatchNorm uses
the batch's statistics, as in the training steps themselves), with ``torch.autograd.grad`` on
the taps of one forward pass: no hooks.

Whatever it shows is reported: with batch normalisation a plain network's gradients often do
not vanish at all, and may instead grow towards the input (:attr:`GradientProfile.trend`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import DenseNetConfig, cifar_bc
from ..model import DenseNet
from ..topology import topology
from ._common import Progress, Stepper, demo_batch, seeded, train_step
from .nets import PeerNet, matched_plain_cnn, matched_resnet, param_count

#: Demo-image seeds of the fixed measurement batch; training batches use seeds 0, 1, 2, ...
MEASURE_SEED = 30_000_000
#: A ratio (input end / output end) beyond this factor counts as vanishing or exploding.
TREND_FACTOR = 10.0


def default_config() -> DenseNetConfig:
    """DenseNet-BC-40 (k=12) for one-channel 32x32 demo images and 4 classes: depth 40, 0.17M parameters."""
    return cifar_bc(40, 12, num_classes=4, in_channels=1)


@dataclass(frozen=True)
class GradientProfile:
    """Gradient norms along one network.

    Attributes:
        network: ``"plain CNN"``, ``"ResNet"`` or ``"DenseNet"``.
        layers: the tapped units, input side first.
        depths: weighted layers from the input up to and including each unit (increasing).
        init: (n,) ``||dL/dh_l||`` at initialisation.
        trained: (n,) the same after the training steps.
        init_loss, trained_loss: the measurement batch's loss at those two moments.
        params: parameters of the network.
    """

    network: str
    layers: list[str]
    depths: list[int]
    init: np.ndarray
    trained: np.ndarray
    init_loss: float
    trained_loss: float
    params: int

    @staticmethod
    def _trend(norms: np.ndarray) -> tuple[str, float]:
        ratio = float(norms[0] / norms[-1]) if norms[-1] > 0 else float("inf")
        if ratio < 1 / TREND_FACTOR:
            return "vanishes towards the input", ratio
        if ratio > TREND_FACTOR:
            return "grows towards the input (explodes)", ratio
        return f"stays within {TREND_FACTOR:g}x from output to input", ratio

    def trend(self, phase: str = "init") -> tuple[str, float]:
        """``(words, ratio)``: how the input end's gradient norm compares with the output end's.

        Args:
            phase: ``"init"`` or ``"trained"``.
        """
        if phase not in ("init", "trained"):
            raise ValueError(f"phase must be 'init' or 'trained', got {phase!r}")
        return self._trend(self.init if phase == "init" else self.trained)


@dataclass(frozen=True)
class GradientResult:
    """The vanishing-gradient experiment.

    Attributes:
        depth: the depth of all three networks.
        steps: training steps between the two measurements.
        batch_size, image_size: of the measurement and training batches.
        profiles: plain CNN, ResNet, DenseNet.
        findings: one plain sentence per network and phase saying what the numbers show.
        measured: a sentence saying what was measured.
    """

    depth: int
    steps: int
    batch_size: int
    image_size: int
    profiles: list[GradientProfile]
    findings: list[str]
    measured: str

    def profile(self, network: str) -> GradientProfile:
        for p in self.profiles:
            if p.network == network:
                return p
        raise KeyError(f"no network {network!r}; have {[p.network for p in self.profiles]}")


def _dense_taps(model: DenseNet) -> tuple[list[str], list[int]]:
    """DenseNet taps (stem conv, every dense layer, every transition) and their depths."""
    per_layer = 2 if model.config.bn_size is not None else 1
    topo = topology(model.config)
    names, depths, depth = [topo.stem_rows[0].name], [1], 1  # block outputs, stem BN/pool and norm5: no weights
    for block in topo.blocks:
        for name in block.dense_layers:
            depth += per_layer
            names.append(name)
            depths.append(depth)
        if block.transition is not None:
            depth += 1
            names.append(block.transition)
            depths.append(depth)
    return names, depths


def _norms(grads: tuple[Tensor, ...]) -> np.ndarray:
    return np.array([float(g.detach().double().norm()) for g in grads])


def _measure_dense(model: DenseNet, names: list[str], x: Tensor, y: Tensor) -> tuple[np.ndarray, float]:
    trace = model.trace(x, names, keep_graph=True)
    loss = F.cross_entropy(trace.logits, y)
    return _norms(torch.autograd.grad(loss, list(trace.activations.values()))), float(loss.detach())


def _measure_peer(model: PeerNet, x: Tensor, y: Tensor) -> tuple[np.ndarray, float]:
    with torch.enable_grad():
        logits, taps = model.forward_taps(x)
        loss = F.cross_entropy(logits, y)
        return _norms(torch.autograd.grad(loss, taps)), float(loss.detach())


def _optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=1e-4)


def gradient_experiment(config: DenseNetConfig | None = None, *, steps: int = 60, batch_size: int = 8,
                        image_size: int = 32, lr: float = 0.05, seed: int = 0,
                        progress: Progress | None = None) -> GradientResult:
    """Gradient norm at every depth of a plain CNN, a ResNet and a DenseNet of ``config``'s depth.

    Args:
        config: the DenseNet; ``None``: :func:`default_config`. The two peers have its depth, stem
            and block count, and widths chosen for about its parameter count
            (:func:`~densenet.classroom.nets.matched_resnet`, ``matched_plain_cnn``). It must take
            one-channel images with 4 outputs (the demo data), i.e. ``in_channels=1, num_classes=4``.
        steps: SGD steps (Nesterov momentum 0.9, weight decay 1e-4) between the two measurements;
            0 measures at initialisation only (``trained`` then equals ``init``).
        batch_size, image_size: demo images per batch and their side (>= 32).
        lr: learning rate, the same for all three.
        seed: weights (each network built from this seed).
        progress: called between steps with the fraction done; raise from it to stop.

    Returns:
        A :class:`GradientResult`.

    Raises:
        ValueError: a config that does not take the demo images, or bad sizes.
    """
    config = config or default_config()
    if config.in_channels != 1 or config.num_classes != 4 or config.null_class:
        raise ValueError("the demo images have 1 channel and 4 classes: use a config with in_channels=1, "
                         f"num_classes=4, null_class=False (got in_channels={config.in_channels}, "
                         f"num_classes={config.num_classes}, null_class={config.null_class})")
    if steps < 0 or batch_size < 1:
        raise ValueError(f"steps must be >= 0 and batch_size >= 1, got {steps}, {batch_size}")
    config = config.replace(memory_efficient=False, drop_rate=0.0)
    with seeded(seed):
        dense = DenseNet(config).train()
    with seeded(seed):
        res = matched_resnet(config).train()
    with seeded(seed):
        plain = matched_plain_cnn(config).train()
    names, dense_depths = _dense_taps(dense)
    x_m, y_m = demo_batch(batch_size, MEASURE_SEED, image_size)
    stepper = Stepper(progress, (2 if steps else 1) + 3 * steps)

    def measure_all() -> dict[str, tuple[np.ndarray, float]]:
        out = {"plain CNN": _measure_peer(plain, x_m, y_m), "ResNet": _measure_peer(res, x_m, y_m),
               "DenseNet": _measure_dense(dense, names, x_m, y_m)}
        stepper.step()
        return out

    init = measure_all()
    opts = {"plain CNN": _optimizer(plain, lr), "ResNet": _optimizer(res, lr), "DenseNet": _optimizer(dense, lr)}
    nets: dict[str, nn.Module] = {"plain CNN": plain, "ResNet": res, "DenseNet": dense}
    for step in range(steps):
        x, y = demo_batch(batch_size, step, image_size)
        for key, net in nets.items():
            train_step(net, opts[key], x, y)
            stepper.step()
    trained = measure_all() if steps else init

    profiles = []
    for key, net in nets.items():
        if key == "DenseNet":
            layers, depths = names, dense_depths
        else:
            layers, depths = list(net.tap_names), list(net.tap_depths)
        profiles.append(GradientProfile(key, layers, depths, init[key][0], trained[key][0], init[key][1],
                                        trained[key][1], param_count(net)))
    findings = []
    for p in profiles:
        for phase, label in (("init", "at initialisation"), ("trained", f"after {steps} steps")):
            if phase == "trained" and not steps:
                continue
            words, ratio = p.trend(phase)
            findings.append(f"{p.network}, {label}: the gradient {words} "
                            f"(input end / output end = {ratio:.3g}).")
    for phase, label in (("init", "at initialisation"), ("trained", f"after {steps} steps")):
        if phase == "trained" and not steps:
            continue
        flattest = min(profiles, key=lambda p: abs(np.log(p.trend(phase)[1])))
        findings.append(f"Flattest profile {label}: {flattest.network}.")
    measured = (f"||dL/dh||, the L2 norm of the gradient of the loss L (mean cross-entropy of {batch_size} fixed "
                f"demo images, {image_size}x{image_size}) with respect to each unit's output h, BatchNorm in training "
                f"mode; depth {config.depth} for all three networks. Outputs shrink with depth (pooling) and differ in "
                "channels, so the norm also reflects tensor size.")
    return GradientResult(depth=config.depth, steps=steps, batch_size=batch_size, image_size=image_size,
                          profiles=profiles, findings=findings, measured=measured)
