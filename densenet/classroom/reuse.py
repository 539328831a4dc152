"""Claim "reuses features": the paper's Fig. 5 map, for a DenseNet trained live and for the bundled demo model.

The map (Huang et al. 2017, Fig. 5) reads one dense block's weights: for target layer ``l``
(a dense layer, or the transition / classifier the block feeds) and source ``s`` (the block
input or an earlier dense layer), the value is the mean absolute weight of ``l``'s first
convolution over the input channels that ``s`` produced, found with
:meth:`Topology.provenance`. A bright cell far from the diagonal means a layer reads maps made
many layers earlier: features reused. Fresh weights give a nearly flat picture, which is why
the experiment trains a model first.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..config import DenseNetConfig
from ..model import DenseNet
from ..synthetic import model_config
from ..topology import Topology, topology
from ._common import Progress, Stepper, demo_batch, seeded, train_step


@dataclass(frozen=True)
class FeatureReuse:
    """Mean absolute weight from each source (columns) to each target layer (rows) of one block.

    Attributes:
        sources: node names: the block input, then dense layers 1..L.
        targets: dense layers 1..L, then the layer after the block (transition, or the classifier).
        matrix: (len(targets), len(sources)); NaN where the target cannot see the source.
    """

    sources: list[str]
    targets: list[str]
    matrix: np.ndarray


def _reading_weight(model: DenseNet, name: str) -> torch.Tensor:
    """The weight that reads a layer's concatenated input, kernel averaged away: (out, in)."""
    module = model.get_submodule(name)
    if name == "classifier":
        w = module.weight  # (K, C)
    elif hasattr(module, "conv1"):
        w = module.conv1.weight  # dense layer: (out, in, kh, kw)
    else:
        w = module.conv.weight  # transition: (out, in, 1, 1)
    w = w.detach().abs().float()
    return w.flatten(2).mean(2) if w.dim() == 4 else w


def feature_reuse(model: DenseNet, topo: Topology | None = None, block_index: int = 0) -> FeatureReuse:
    """The Fig. 5 heat map of one dense block, from the model's weights (read-only).

    Args:
        model: a DenseNet (trained, for a telling picture).
        topo: its topology; ``None``: worked out from ``model``.
        block_index: 0-based index into ``topo.blocks``.

    Raises:
        IndexError: no such block.
    """
    topo = topo or topology(model)
    if not 0 <= block_index < len(topo.blocks):
        raise IndexError(f"block_index {block_index} out of range for {len(topo.blocks)} block(s)")
    block = topo.blocks[block_index]
    last = block_index == len(topo.blocks) - 1
    targets = block.dense_layers + ["classifier" if last else block.transition]
    sources = [block.input_name] + block.dense_layers
    matrix = np.full((len(targets), len(sources)), np.nan)
    with torch.no_grad():
        for row, target in enumerate(targets):
            weight = _reading_weight(model, target)
            for col, piece in enumerate(topo.provenance(block.output_name if target == "classifier" else target)):
                matrix[row, col] = float(weight[:, piece.start:piece.stop].mean())
    return FeatureReuse(sources=sources, targets=targets, matrix=matrix)


def all_blocks(model: DenseNet) -> list[FeatureReuse]:
    """:func:`feature_reuse` of every dense block of ``model``."""
    topo = topology(model)
    return [feature_reuse(model, topo, b) for b in range(len(topo.blocks))]


def reach(reuse: FeatureReuse) -> float:
    """How far back a block's layers read, one number: the weight-averaged distance (in layers)
    between target and source, over the dense layers' rows, each row normalised to sum 1.

    0 would mean every layer reads only its immediate predecessor; larger means more reuse of early maps.
    """
    total, rows = 0.0, 0
    for t in range(len(reuse.targets) - 1):  # dense layer t+1 sees sources 0..t
        w = reuse.matrix[t, :t + 1]
        if not np.isfinite(w).all() or w.sum() <= 0:
            continue
        w = w / w.sum()
        total += float((w * (t - np.arange(t + 1))).sum())
        rows += 1
    return total / rows if rows else math.nan


@dataclass(frozen=True)
class ReuseResult:
    """Feature-reuse maps of a model trained here and of the demo model, every block.

    Attributes:
        live: one :class:`FeatureReuse` per block of the live-trained model.
        live_config: its architecture.
        live_steps: training steps it had.
        live_loss, live_accuracy: running (exponential average) loss and accuracy at the end of training.
        demo: the same maps for the trained reference model (the app passes the bundled demo model);
            ``None`` when none was asked for or its weights are missing.
        demo_note: why ``demo`` is missing, else ``""``.
    """

    live: list[FeatureReuse]
    live_config: DenseNetConfig
    live_steps: int
    live_loss: float
    live_accuracy: float
    demo: list[FeatureReuse] | None
    demo_note: str


def reuse_experiment(config: DenseNetConfig | None = None, *, steps: int = 100, batch_size: int = 16,
                     image_size: int = 64, lr: float = 3e-3, seed: int = 0,
                     reference: Callable[[], DenseNet] | None = None,
                     progress: Progress | None = None) -> ReuseResult:
    """Train a small DenseNet on synthetic images for ``steps`` steps, then map its feature reuse beside a
    trained model's.

    Args:
        config: the live model; ``None``: the architecture the synthetic images are made for
            (:func:`densenet.synthetic.model_config`, the demo model's), so the two maps line up cell for cell.
            It must take 1-channel images and have 4 classes (with ``null_class``, "none" is the null class).
        steps: AdamW steps (weight decay 5e-4) on fresh demo batches (seeds 0, 1, ...).
        batch_size, image_size: demo images per step and their side (>= 32).
        lr: learning rate.
        seed: the live model's initial weights.
        reference: loads the trained model to map beside the live one (``densenet.demo.load`` for the
            bundled demo model; a ``FileNotFoundError`` from it is reported in ``demo_note``); ``None``: none.
        progress: called between steps with the fraction done; raise from it to stop.

    Returns:
        A :class:`ReuseResult`.
    """
    config = config or model_config()
    if config.in_channels != 1 or config.num_classes != 4:
        raise ValueError(f"the demo images have 1 channel and 4 classes; config has in_channels={config.in_channels},"
                         f" num_classes={config.num_classes}, null_class={config.null_class}")
    if steps < 0 or batch_size < 1:
        raise ValueError(f"steps must be >= 0 and batch_size >= 1, got {steps}, {batch_size}")
    stepper = Stepper(progress, steps + 1)
    with seeded(seed):
        model = DenseNet(config).train()
    decay = [p for p in model.parameters() if p.dim() > 1]
    rest = [p for p in model.parameters() if p.dim() <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 5e-4}, {"params": rest, "weight_decay": 0.0}], lr=lr)
    ema_loss = ema_acc = math.nan
    for step in range(steps):
        x, y = demo_batch(batch_size, step, image_size)
        loss, acc = train_step(model, opt, x, y)
        ema_loss = loss if math.isnan(ema_loss) else 0.95 * ema_loss + 0.05 * loss
        ema_acc = acc if math.isnan(ema_acc) else 0.95 * ema_acc + 0.05 * acc
        stepper.step()
    model.eval()
    live = all_blocks(model)
    demo, note = None, ""
    if reference is not None:
        try:
            demo = all_blocks(reference())
        except FileNotFoundError as exc:
            note = str(exc)
    else:
        note = "not asked for"
    stepper.step()
    return ReuseResult(live=live, live_config=config, live_steps=steps, live_loss=ema_loss, live_accuracy=ema_acc,
                       demo=demo, demo_note=note)
