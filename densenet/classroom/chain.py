"""Does a DenseNet need its dense links? The demo model's accuracy with each block cut down to a plain chain.

Cutting every link ``j -> l`` with ``j < l - 1`` (:func:`densenet.explain.chain_cuts`) leaves each
layer only its predecessor's maps, as in a network without dense connections; the weights stay those
trained with every link, so this measures how much the trained network relies on them, not how well
a chain could learn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..explain import chain_cuts, cut_batch
from ..model import DenseNet
from ..synthetic import generate, normalize
from ..topology import topology
from ._common import Progress, Stepper

__all__ = ["ChainResult", "ChainRow", "chain_experiment"]


@dataclass(frozen=True)
class ChainRow:
    """One condition.

    Attributes:
        label: ``all links``, ``block 2 as a chain``, ``every block as a chain``.
        blocks: the blocks cut down to a chain (empty: none).
        links_cut: how many links were cut.
        accuracy: top-1 accuracy on the films.
        true_probability: mean probability of the true class.
    """

    label: str
    blocks: tuple[int, ...]
    links_cut: int
    accuracy: float
    true_probability: float


@dataclass(frozen=True)
class ChainResult:
    """The experiment's table and how it was measured."""

    rows: list[ChainRow]
    n: int
    seed: int
    measured: str

    def findings(self) -> list[str]:
        """Plain sentences on what the numbers show (measured, not a fixed claim)."""
        base = self.rows[0]
        out = []
        for row in self.rows[1:]:
            drop = (base.accuracy - row.accuracy) * 100
            out.append(f"{row.label.capitalize()} ({row.links_cut} links cut): accuracy {row.accuracy:.0%} "
                       f"({'−' if drop >= 0 else '+'}{abs(drop):.0f} points against {base.accuracy:.0%} "
                       "with every link).")
        worst = min(self.rows[1:-1] or self.rows[1:], key=lambda r: r.accuracy, default=None)
        if worst is not None:
            which = worst.label.removesuffix(" as a chain")
            out.append(f"The trained network leans most on the dense links of {which}.")
        return out


def chain_experiment(model: DenseNet, *, seed: int, n: int = 200, batch_size: int = 50,
                     progress: Progress | None = None) -> ChainResult:
    """Accuracy on ``n`` generated films with every link, with each block a chain, and with all blocks chains.

    Args:
        model: a DenseNet in eval mode trained on the generated films (the app passes the bundled demo model).
        seed: the films' seed: one no training step saw (the app passes the demo's evaluation seed).
        n: films drawn with ``seed``.
        batch_size: films traced together (the block inputs only are kept).
        progress: called with the fraction done; raising from it stops the work.

    Returns:
        A :class:`ChainResult`: rows ``all links``, ``block b as a chain`` for each block, then
        ``every block as a chain``.
    """
    import time

    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    start = time.perf_counter()
    blocks = [i for i, _ in enumerate(model.config.block_config, start=1)]
    conditions = [("all links", ())] + [(f"block {b} as a chain", (b,)) for b in blocks]
    if len(blocks) > 1:
        conditions.append(("every block as a chain", tuple(blocks)))
    sets = [[link for b in bs for link in chain_cuts(model, b)] for _, bs in conditions]
    size = model.preprocessing.size if getattr(model.preprocessing, "size", None) else 128
    images, labels, _ = generate(n, seed, size=size)
    x = normalize(images)
    topo = topology(model, size)
    inputs = [topo.block_input(b) for b in blocks]
    stepper = Stepper(progress, n * len(conditions))
    correct = np.zeros(len(conditions))
    true_p = np.zeros(len(conditions))
    for a in range(0, n, batch_size):
        trace = model.trace(x[a:a + batch_size], inputs)  # once per film; the blocks' inputs kept
        y = labels[a:a + batch_size].long()
        for c, cuts in enumerate(sets):
            logits = cut_batch(model, trace, cuts) if cuts else trace.logits
            probs = torch.sigmoid(logits) if model.config.multilabel else torch.softmax(logits, dim=1)
            correct[c] += float((logits.argmax(1) == y).sum())
            true_p[c] += float(probs.gather(1, y[:, None]).sum())
            stepper.step(len(y))
    rows = [ChainRow(label, bs, len(s), float(c / n), float(p / n))
            for (label, bs), s, c, p in zip(conditions, sets, correct, true_p)]
    took = time.perf_counter() - start
    return ChainResult(rows, n, seed, f"{n} films (seed {seed}), {len(conditions)} conditions, {took:.1f} s "
                                      f"on {torch.get_num_threads()} threads.")
