"""LRP on the dense links: the relevance arriving at every dense layer's concatenated input, split by source.

Layer l of a block reads ``I_l = [f_0, f_1, ..., f_{l-1}]``; LRP assigns each value of ``I_l`` a
relevance, and the channels that came from node j (their range is Topology's provenance) carry
``R(j -> l)``. The block's output concatenation gives ``R(j -> out)`` likewise. Every copy of ``f_j``
is one of these concatenations, so ``sum_l R(j -> l) + R(j -> out)`` is exactly the relevance of
``f_j`` (``nodes[j]``), as for the gradient × activation links (:mod:`.relevance`), whose
:class:`LinkRelevance` this returns. Conservation per block: the relevance entering at the block's
output (``sum_j R(j -> out)``) against what reaches its input (``nodes[0]``); the difference is what
the block's biases absorbed (:func:`block_conservation`).

One forward and one LRP backward through the canonized copy (:mod:`.lrp_core`) serve every block.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from ..model import DenseNet
from ..topology import topology
from ..trace import Trace
from .lrp_core import DEFAULT_RULE, propagate
from .link_results import BlockRelevance, LinkRelevance


def block_conservation(block: BlockRelevance) -> tuple[float, float]:
    """(relevance entering the block at its output, relevance reaching its input): equal when nothing is absorbed."""
    return float(sum(block.to_output.values())), float(block.nodes[0])


def lrp_link_relevance(model: DenseNet, x: torch.Tensor | Trace, target: int | None = None, *, index: int = 0,
                       blocks: Iterable[int] | None = None, rule: str = DEFAULT_RULE) -> LinkRelevance:
    """LRP relevance on every dense link of the model.

    Args:
        model: a DenseNet in eval mode (only read).
        x: the input (N, C, H, W) or (C, H, W), or a trace of it (its ``inputs`` are used).
        target: the class whose raw logit is explained; ``None``: the top prediction of sample ``index``.
        index: which sample.
        blocks: block numbers (1-based); ``None``: all.
        rule: an LRP rule (:data:`~densenet.explain.lrp_core.RULES`).

    Returns:
        A :class:`LinkRelevance` (``links``, ``to_output``, ``nodes`` and their absolute versions).

    Raises:
        ValueError: an unknown block, rule or target; an index out of range.
    """
    inputs = x.inputs if isinstance(x, Trace) else model.check_input(x)
    n = inputs.shape[0]
    if not -n <= index < n:
        raise ValueError(f"index {index} out of range for a batch of {n}")
    index %= n
    if target is not None and (isinstance(target, bool) or not isinstance(target, (int, np.integer))):
        raise TypeError(f"target must be an int class index or None, got {target!r}")
    topo = topology(model)
    numbers = [b.index for b in topo.blocks]
    wanted = numbers if blocks is None else sorted(set(blocks))
    unknown = [b for b in wanted if b not in numbers]
    if unknown or not wanted:
        raise ValueError(f"no dense block(s) {unknown or wanted}; this model has blocks {numbers}")
    infos = [topo.blocks[b - 1] for b in wanted]
    taps: list[str] = []
    for info in infos:
        layers = [info.layer_name(l) for l in range(1, info.num_layers + 1)]
        taps += [info.input_name, *layers, *(f"{name}.input" for name in layers), info.name]
    _, rel, logits, t = propagate(model, inputs[index:index + 1], None if target is None else int(target),
                                  rule=rule, taps=taps, input_relevance=False)
    target_index = int(t[0])

    results = []
    for info in infos:
        num = info.num_layers
        feats = [rel[info.layer_name(j)][0].float() for j in range(num + 1)]  # node j's maps
        bounds = [info.node_channels(j) for j in range(num + 1)]

        def split(r: torch.Tensor, sources: int) -> tuple[list[float], list[float]]:
            parts = [r[bounds[j][0]:bounds[j][1]] for j in range(sources)]
            return [float(p.sum()) for p in parts], [float(p.abs().sum()) for p in parts]

        links, links_abs = {}, {}
        for l in range(1, num + 1):
            signed, absolute = split(rel[f"{info.layer_name(l)}.input"][0].float(), l)
            for j in range(l):
                links[(j, l)], links_abs[(j, l)] = signed[j], absolute[j]
        signed, absolute = split(rel[info.name][0].float(), num + 1)
        results.append(BlockRelevance(
            name=info.name, input_name=info.input_name, num_layers=num, links=links, links_abs=links_abs,
            to_output=dict(enumerate(signed)), to_output_abs=dict(enumerate(absolute)),
            nodes={j: float(f.sum()) for j, f in enumerate(feats)},
            nodes_abs={j: float(f.abs().sum()) for j, f in enumerate(feats)}))
    return LinkRelevance(target=target_index, index=index, logit=float(logits[0, target_index]), blocks=results)


__all__ = ["block_conservation", "lrp_link_relevance"]
