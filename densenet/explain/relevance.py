"""Relevance on the dense links: how much of the target's logit each connection j -> l carried, from one backward.

In a dense block, layer l reads a fresh concatenation ``I_l = [f_0, f_1, ..., f_{l-1}]`` of the block
input ``f_0`` and the earlier layers' new maps. The first-order relevance carried by the link
``j -> l`` is the gradient of the target's raw logit ``y`` with respect to layer l's input, sliced by
the channels that came from j, times j's maps::

    R(j -> l) = sum_{c in slice_j, u, v} (dy / dI_l)[c, u, v] * f_j[c, u, v]

and ``R(j -> out)`` likewise for the block's output concatenation (what the transition or
``norm5`` reads). Every copy of ``f_j`` is one of these concatenations, so by the chain rule

    sum_{l > j} R(j -> l) + R(j -> out) = sum (dy / df_j) * f_j        (completeness)

the gradient x activation total of j's maps (``BlockRelevance.nodes[j]``). "Absolute" relevance
sums ``|dy/dI * f|`` elementwise instead, so evidence that cancels within a link still shows.

Limits: this is first order (a Taylor term, not a perturbation): a link into a ReLU that is off
everywhere gets zero even where removing it would change the output, and the totals need not add
up to ``y`` itself (biases, BatchNorm shifts and the nonlinearity are not apportioned). The
gradients are read from the trace's own autograd graph: ``dy/dI_l`` is the gradient at the output
of layer l's concatenation node, found by walking back from ``f_l`` and named to
``torch.autograd.grad`` as a ``GradientEdge``, so there are no hooks, no re-run of the model and
one backward pass for every link of every block.
"""

from __future__ import annotations

import operator
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.autograd.graph import GradientEdge

from ..model import DenseNet
from ..topology import Topology, topology
from ..trace import Trace
from .link_results import BlockRelevance, LinkRelevance


def relevance_layers(model: DenseNet) -> list[str]:
    """The taps :func:`link_relevance` reads: every block input, dense layer and block output.

    Trace them with ``model.trace(x, relevance_layers(model), keep_graph=True)`` (or trace every
    layer, ``layers=None``).
    """
    wanted = []
    for block in topology(model.config).blocks:
        wanted += [block.input_name] + block.dense_layers + [block.name]
    return list(dict.fromkeys(wanted))


def _find_cat(start: Tensor, inputs: int, what: str) -> torch.autograd.graph.Node:
    """The concatenation node feeding ``start``: the nearest ``CatBackward`` with ``inputs`` inputs."""
    if start.grad_fn is None:
        raise ValueError(f"{what} has no autograd history: trace with keep_graph=True")
    # Visited nodes are kept alive: torch < 2.11 makes a new Python object per visit, so a freed one's id() can be
    # reused by another node, which would then be skipped as seen.
    seen: dict[int, torch.autograd.graph.Node] = {}
    queue = deque([(start.grad_fn, 0)])
    while queue:
        node, depth = queue.popleft()
        if node is None or id(node) in seen or depth > 40:
            continue
        seen[id(node)] = node
        if node.name().startswith("CatBackward") and len(node.next_functions) == inputs:
            return node
        queue.extend((nxt, depth + 1) for nxt, _ in node.next_functions)
    raise ValueError(f"could not find the concatenation feeding {what} in the trace's graph")


def _topology_of(trace: Trace) -> Topology:
    if trace.config is None:
        raise ValueError("this trace does not say which DenseNet made it (trace.config is None): "
                         "trace with model.trace")
    return topology(trace.config)


def link_relevance(trace: Trace, target: int | None = None, *, index: int = 0,
                   blocks: Iterable[int] | None = None, method: str = "gradient",
                   model: DenseNet | None = None, rule: str | None = None) -> LinkRelevance:
    """First-order relevance of every dense link of every traced block, from one backward pass.

    With ``method="lrp"`` the links carry layer-wise relevance instead (:mod:`.lrp_links`): pass
    the ``model`` (its canonized copy re-runs ``trace.inputs``; the trace needs no graph) and
    optionally an LRP ``rule``.

    Args:
        trace: from ``model.trace(x, relevance_layers(model), keep_graph=True)`` (or all layers);
            it is left usable (its graph is kept).
        target: class or label index whose raw logit is explained; ``None``: the top prediction
            of sample ``index``.
        index: which sample of the trace.
        blocks: block numbers (1-based) to report; ``None``: every block the trace holds.

    Returns:
        A :class:`LinkRelevance`; ``.blocks[b].links[(j, l)]`` is ``R(j -> l)``.

    Raises:
        ValueError: a trace without a graph or without a block's taps, a bad target or index, an
            unknown method, ``method="lrp"`` without a model.
        TypeError: a non-integer target.
    """
    if method == "lrp":
        if model is None:
            raise ValueError("link_relevance(method='lrp') needs the model: link_relevance(trace, model=model, ...)")
        from .lrp_links import lrp_link_relevance
        from .lrp_settings import DEFAULT_RULE

        return lrp_link_relevance(model, trace, target, index=index, blocks=blocks, rule=rule or DEFAULT_RULE)
    if method != "gradient":
        raise ValueError(f"unknown link relevance method {method!r}; choose 'gradient' or 'lrp'")
    n = trace.logits.shape[0]
    index = operator.index(index)
    if not -n <= index < n:
        raise ValueError(f"index {index} out of range for a batch of {n}")
    index %= n
    if target is not None and (isinstance(target, bool) or not isinstance(target, (int, np.integer))):
        raise TypeError(f"target must be an int class index or None, got {target!r}")
    t = int(trace.targets(None if target is None else int(target))[index])

    topo = _topology_of(trace)
    layers: dict[int, int] = {}  # block -> the last of its dense layers in the trace
    for block in topo.blocks:
        traced = [l for l, name in enumerate(block.dense_layers, start=1) if name in trace.activations]
        if traced:
            layers[block.index] = max(traced)
    wanted = sorted(layers) if blocks is None else sorted(set(blocks))
    missing_blocks = [b for b in wanted if b not in layers]
    if not wanted or missing_blocks:
        raise ValueError(f"the trace holds no dense layers of block(s) {missing_blocks or 'any'}; trace "
                         "relevance_layers(model) with keep_graph=True")
    if not trace.logits.requires_grad:
        raise ValueError("link relevance needs gradients: trace with keep_graph=True")

    plan = []  # (block name, input name, [f_0..f_L], [cat edges of layers 1..L], output edge)
    for b in wanted:
        num = layers[b]
        block = topo.block(b)
        names = [block.input_name] + block.dense_layers[:num]
        out_name = block.name
        absent = [nm for nm in names + [out_name] if nm not in trace.activations]
        if absent:
            raise ValueError(f"link relevance needs {absent} in the trace; trace relevance_layers(model)")
        feats = [trace.activations[nm] for nm in names]
        cats = [GradientEdge(_find_cat(feats[l], l, names[l]), 0) for l in range(1, num + 1)]
        out = trace.activations[out_name]
        out_cat = out.grad_fn
        if out_cat is None or not out_cat.name().startswith("CatBackward"):
            out_cat = _find_cat(out, num + 1, out_name)
        plan.append((out_name, names[0], feats, cats, GradientEdge(out_cat, 0)))

    score = trace.logits[index, t]
    edges: list[Tensor | GradientEdge] = []
    for _, _, feats, cats, out_edge in plan:
        edges += cats + [out_edge] + feats
    grads = torch.autograd.grad(score, edges, retain_graph=True, allow_unused=True)

    results, pos = [], 0
    with torch.no_grad():
        for block_name, input_name, feats, cats, _ in plan:
            num = len(cats)
            g_cats = grads[pos:pos + num]
            g_out = grads[pos + num]
            g_feats = grads[pos + num + 1:pos + num + 1 + len(feats)]
            pos += num + 1 + len(feats)
            f = [t_.detach()[index].float() for t_ in feats]
            bounds = np.cumsum([0] + [x.shape[0] for x in f])

            def parts(g: Tensor | None, sources: int) -> tuple[list[float], list[float]]:
                signed, absolute = [], []
                for j in range(sources):
                    if g is None:
                        signed.append(0.0)
                        absolute.append(0.0)
                        continue
                    prod = g[index, bounds[j]:bounds[j + 1]].float() * f[j]
                    signed.append(float(prod.sum()))
                    absolute.append(float(prod.abs().sum()))
                return signed, absolute

            links, links_abs = {}, {}
            for l in range(1, num + 1):
                s, a = parts(g_cats[l - 1], l)
                for j in range(l):
                    links[(j, l)], links_abs[(j, l)] = s[j], a[j]
            s, a = parts(g_out, num + 1)
            to_output, to_output_abs = dict(enumerate(s)), dict(enumerate(a))
            nodes, nodes_abs = {}, {}
            for j, g in enumerate(g_feats):
                prod = g[index].float() * f[j] if g is not None else torch.zeros(())
                nodes[j], nodes_abs[j] = float(prod.sum()), float(prod.abs().sum())
            results.append(BlockRelevance(name=block_name, input_name=input_name, num_layers=num,
                                          links=links, links_abs=links_abs, to_output=to_output,
                                          to_output_abs=to_output_abs, nodes=nodes, nodes_abs=nodes_abs))
    return LinkRelevance(target=t, index=index, logit=float(trace.logits[index, t].detach()), blocks=results)


__all__ = ["BlockRelevance", "LinkRelevance", "link_relevance", "relevance_layers"]
