"""Every link of a block cut on its own: the drop of the target's logit and probability (causal link importance).

The causal counterpart of the first-order :func:`~densenet.explain.link_relevance`, on the same
``.links[(source, target)]`` keys; each entry equals :func:`~densenet.explain.cut_links` with that one link
cut (to float rounding; the tests check it).

It shares work across links: cutting ``j -> l`` leaves layers 1..l-1 unchanged, and in every later
1x1 convolution (and the transition's) the channels that did not change contribute what they
contributed without the cut. Convolutions are linear in their input channels, so that part is a
prefix sum of per-source contributions computed once, and only the changed channels are convolved
per link; every group's 3x3 convolution then runs as one batch, and the rest of the network in
channels-last batches. BENCHMARKS.md measures the cost against plain forwards (23–28x for the 300
links of DenseNet-121's block 3, against about 200x for 300 independent resumes).

The model is used read-only: no hooks, no attributes, no mode change, in the caller's thread.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model import DenseNet, _DenseLayer, _Transition
from ..trace import Trace
from ._common import check_eval
from .cuts import _as_int, _block_input, _blocks
from .registry import Progress

__all__ = ["LinkImportance", "link_importance"]


@dataclass(frozen=True)
class LinkImportance:
    """What cutting each link of one block on its own does to the target (:func:`link_importance`).

    Attributes:
        name: ``features.denseblockB``.
        block: B, 1-based.
        num_layers: L.
        target: the class or label explained.
        index: which sample.
        logit: the target's raw logit without cuts.
        probability: its probability (softmax, or sigmoid for a multi-label model) without cuts.
        links: (j, l) -> drop of the logit when ``j -> l`` is cut (positive: the link helped), L(L+1)/2 links.
        links_probability: (j, l) -> drop of the probability.
        cut_logits: (j, l) -> the target's logit with that link cut.
    """

    name: str
    block: int
    num_layers: int
    target: int
    index: int
    logit: float
    probability: float
    links: dict[tuple[int, int], float]
    links_probability: dict[tuple[int, int], float]
    cut_logits: dict[tuple[int, int], float]

    def incoming(self, layer: int, *, probability: bool = False) -> dict[int, float]:
        """j -> drop for every link into dense layer ``layer``."""
        if not 1 <= layer <= self.num_layers:
            raise ValueError(f"layer must be between 1 and {self.num_layers}, got {layer}")
        table = self.links_probability if probability else self.links
        return {j: table[(j, layer)] for j in range(layer)}

    def matrix(self, *, probability: bool = False) -> np.ndarray:
        """(L+1, L+1) array shaped like :meth:`BlockRelevance.matrix`: row j (source), column l - 1 for
        target l; NaN where no link exists and in the last column (the block output is never cut)."""
        n = self.num_layers
        out = np.full((n + 1, n + 1), np.nan)
        for (j, l), v in (self.links_probability if probability else self.links).items():
            out[j, l - 1] = v
        return out

    def ranked(self, *, probability: bool = False) -> list[tuple[tuple[int, int], float]]:
        """Links from the largest drop to the smallest."""
        table = self.links_probability if probability else self.links
        return sorted(table.items(), key=lambda kv: -kv[1])


def _bn_slice(norm: nn.BatchNorm2d, x: Tensor, start: int) -> Tensor:
    """Eval-mode BatchNorm of channels ``start .. start + C`` of the norm's input, given only those."""
    stop = start + x.shape[1]
    scale = norm.weight[start:stop] * torch.rsqrt(norm.running_var[start:stop] + norm.eps)
    shift = norm.bias[start:stop] - norm.running_mean[start:stop] * scale
    return x * scale[None, :, None, None] + shift[None, :, None, None]


def _conv_slice(conv: nn.Conv2d, x: Tensor, start: int) -> Tensor:
    """The conv (no bias) applied to channels ``start .. start + C`` of its input, given only those."""
    weight = conv.weight[:, start:start + x.shape[1]]
    return F.conv2d(x, weight, None, conv.stride, conv.padding, conv.dilation)


def _is_pointwise(conv: nn.Conv2d) -> bool:
    return conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.groups == 1


def _contributions(norm: nn.BatchNorm2d, conv: nn.Conv2d, sources: list[Tensor],
                   pool: nn.Module | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """What each source adds to a BN-ReLU-conv's output (the conv has no bias, so the parts add up).

    Returns:
        per_source (S, O, h', w'): row s is ``conv`` of source s's channels alone;
        prefix (S + 1, O, h', w'): row s sums rows 0..s-1;
        zeroed (S, O, h', w'): row s is what source s adds when its channels are zero before the
        norm (``relu(bn(0))``, the norm's shift, through the conv: not zero).
        ``sources`` are (1, C_s, h, w) in the order of the norm's input; all but the first have
        one width k (a dense block's layers). ``pool``: applied between the ReLU and the conv
        (a transition's average pool, which commutes with its 1x1 conv).
    """
    z = F.relu(norm(torch.cat(sources, 1)))
    z = (pool(z) if pool is not None else z)[0]  # (C, h, w)
    widths = [s.shape[1] for s in sources]
    c0, h, w = widths[0], z.shape[1], z.shape[2]
    shift = F.relu(norm.bias - norm.running_mean * norm.weight * torch.rsqrt(norm.running_var + norm.eps))
    if _is_pointwise(conv) and len(set(widths[1:])) <= 1:
        # 1x1: per-source matrix products in one einsum, no per-source convolution calls.
        weight = conv.weight[:, :, 0, 0]  # (O, C)
        first = (weight[:, :c0] @ z[:c0].flatten(1))[None]  # (1, O, h*w)
        const = [weight[:, :c0] @ shift[:c0]]
        if len(widths) > 1:
            k, n = widths[1], len(widths) - 1
            wk = weight[:, c0:].reshape(-1, n, k)  # (O, S-1, k)
            rest = torch.einsum("osk,skp->sop", wk, z[c0:].reshape(n, k, h * w))
            first = torch.cat([first, rest], 0)
            const.append(torch.einsum("osk,sk->so", wk, shift[c0:].reshape(n, k)))
        per_source = first.reshape(len(widths), -1, h, w)
        zeroed = torch.cat([const[0][None]] + const[1:], 0)[:, :, None, None].expand_as(per_source)
    else:
        parts, zeros, start = [], [], 0
        for src in sources:
            c = src.shape[1]
            parts.append(_conv_slice(conv, z[None, start:start + c], start))
            const = shift[start:start + c, None, None].expand(1, c, h, w)
            zeros.append(_conv_slice(conv, const, start))
            start += c
        per_source, zeroed = torch.cat(parts, 0), torch.cat(zeros, 0)
    return per_source, torch.cat([torch.zeros_like(per_source[:1]), per_source.cumsum(0)], 0), zeroed


def _layer_rest(layer: _DenseLayer, out: Tensor) -> Tensor:
    """A dense layer after its first convolution (``out`` is conv1's output)."""
    if layer.has_bottleneck:
        out = layer.conv2(layer.relu2(layer.norm2(out)))
    return out


def link_importance(model: DenseNet, x: Tensor | Trace, target: int | None = None, *, block: int,
                    index: int = 0, batch_size: int = 64, progress: Progress | None = None) -> LinkImportance:
    """The drop of the target's logit and probability when each link of ``block`` is cut on its own.

    L(L+1)/2 resumed forwards from the block's input, batched, sharing the unchanged part of each
    (see the module docstring); equal to :func:`cut_links` with one link per cut set to float rounding.

    Args:
        model: a DenseNet in eval mode (used read-only).
        x: an input (C, H, W) or (N, C, H, W), or a :class:`~densenet.Trace` holding the block's input.
        target: class or label index; ``None``: the top prediction without cuts.
        block: the dense block, 1-based.
        index: which sample of ``x``.
        batch_size: cut copies run together after the block (memory against speed).
        progress: called with the fraction done after each group of links; raising from it stops the work.

    Returns:
        A :class:`LinkImportance`; ``.links[(j, l)]`` is the logit's drop when ``j -> l`` is cut.

    Raises:
        ValueError: a block or target out of range, a model in train mode, a bad index or batch size.
        TypeError: a non-integer block or target.
    """
    check_eval(model)
    index = operator.index(index)
    blocks = _blocks(model)
    b = _as_int(block, "block")
    if not 1 <= b <= len(blocks):
        raise ValueError(f"block must be between 1 and {len(blocks)}, got {b}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    name, module = blocks[b - 1]
    layers = list(module.values())
    num = len(layers)
    children = list(model.features.named_children())
    names = [n for n, _ in children]
    after = names[names.index(name) + 1]  # transitionB, or norm5 after the last block
    transition = model.features.get_submodule(after) if isinstance(
        model.features.get_submodule(after), _Transition) else None

    with torch.no_grad():
        f0 = _block_input(model, b, x, index)
        feats = [f0]
        for layer in layers:
            feats.append(layer(feats))
        base_logits = model.forward_from(f"features.{name}", torch.cat(feats, 1)).float()
        if target is None:
            t = int(base_logits[0].argmax())
        else:
            t = _as_int(target, "target")
            if not 0 <= t < base_logits.shape[1]:
                raise ValueError(f"target {t} out of range for {base_logits.shape[1]} classes")
        # Layer u's conv1 output without cuts, split by source: per[u][j]; prefix[u][l] sums j < l.
        per, prefix, zeroed = [], [], []
        for u, layer in enumerate(layers, start=1):
            p_s, p_sum, p_zero = _contributions(layer.norm1, layer.conv1, feats[:u])
            per.append(p_s)
            prefix.append(p_sum)
            zeroed.append(p_zero)
        trans_prefix = None
        if transition is not None:
            # The transition's 1x1 conv and its 2x2 average pool commute: pool first, convolve 4x fewer pixels.
            if _is_pointwise(transition.conv):
                trans_prefix = _contributions(transition.norm, transition.conv, feats, transition.pool)[1]
        c = np.cumsum([0] + [f.shape[1] for f in feats])  # channel offsets of the sources
        k = feats[1].shape[1]

        # Group l holds the l links into layer l (sample j: j -> l cut); new[l] its maps of layers l..L.
        new = [None] + [f0.new_empty(l, (num - l + 1) * k, *f0.shape[2:]) for l in range(1, num + 1)]
        done = 0
        for u in range(1, num + 1):
            outs = []
            for l in range(1, u + 1):
                if l == u:
                    # The cut layer: its full conv1 output with source j's part swapped for the zeroed one.
                    outs.append(prefix[u - 1][u] - per[u - 1] + zeroed[u - 1])  # (u, O, h, w)
                else:
                    # Sources 0..l-1 reach layer u as without the cut; only l..u-1 changed.
                    changed = new[l][:, :(u - l) * k]
                    conv, norm = layers[u - 1].conv1, layers[u - 1].norm1
                    outs.append(prefix[u - 1][l] + _conv_slice(conv, F.relu(_bn_slice(norm, changed, int(c[l]))),
                                                               int(c[l])))
            maps = _layer_rest(layers[u - 1], torch.cat(outs, 0))  # every group at once: (u(u+1)/2, k, h, w)
            for l, part in zip(range(1, u + 1), maps.split(list(range(1, u + 1)), 0)):
                new[l][:, (u - l) * k:(u - l + 1) * k] = part
            done += u * (num - u + 1)
            if progress is not None:  # the block is about half the work
                progress(0.5 * done / (num * (num + 1) * (num + 2) / 6))

        pending: list[Tensor] = []  # what the rest of the network reads, one row per link
        order: list[tuple[int, int]] = []
        rows: list[Tensor] = []  # (b, num_classes) logits with one link cut, in ``order``
        rest = f"features.{after}" if transition is not None else f"features.{name}"
        cl = torch.channels_last if f0.device.type == "cpu" else torch.contiguous_format

        def flush(final: bool) -> None:
            while pending and (final or sum(p.shape[0] for p in pending) >= batch_size):
                batch = torch.cat(pending, 0)
                pending.clear()
                head, tail = batch[:batch_size], batch[batch_size:]
                if tail.shape[0]:
                    pending.append(tail)
                rows.append(model.forward_from(rest, head.contiguous(memory_format=cl)).float())
                if progress is not None:
                    progress(0.5 + 0.499 * sum(r.shape[0] for r in rows) / (num * (num + 1) / 2))

        for l in range(1, num + 1):
            changed = new[l]
            if trans_prefix is not None:
                z = transition.pool(F.relu(_bn_slice(transition.norm, changed, int(c[l]))))
                pending.append(trans_prefix[l] + _conv_slice(transition.conv, z, int(c[l])))
            elif transition is not None:
                full = torch.cat([f.expand(l, *f.shape[1:]) for f in feats[:l]] + [changed], 1)
                pending.append(transition(full))
            else:
                pending.append(torch.cat([f.expand(l, *f.shape[1:]) for f in feats[:l]] + [changed], 1))
            new[l] = None
            order += [(j, l) for j in range(l)]
            flush(final=False)
        flush(final=True)

        multilabel = bool(getattr(model.config, "multilabel", False))
        cut = torch.cat(rows, 0)  # (L(L+1)/2, num_classes)
        probs = torch.sigmoid(cut) if multilabel else torch.softmax(cut, dim=1)
        p_base = torch.sigmoid(base_logits) if multilabel else torch.softmax(base_logits, dim=1)
    logit, p0 = float(base_logits[0, t]), float(p_base[0, t])
    cut_logits = dict(zip(order, cut[:, t].tolist()))
    cut_probs = dict(zip(order, probs[:, t].tolist()))
    if progress is not None:
        progress(1.0)
    return LinkImportance(name=f"features.{name}", block=b, num_layers=num, target=t, index=index, logit=logit,
                          probability=p0, links={k: logit - v for k, v in cut_logits.items()},
                          links_probability={k: p0 - v for k, v in cut_probs.items()}, cut_logits=cut_logits)
