"""Cutting dense links: the logits (and Grad-CAM) with chosen connections j -> l removed.

A link is ``(block, source, target)``: ``block`` 1-based, ``source`` 0 for the block input or the
1-based dense layer whose maps are cut, ``target`` the 1-based dense layer that no longer receives
them. Cutting means those channels are zero in the target layer's concatenated input, *before* its
BatchNorm (so the layer sees ``relu(bn(0))``, its BatchNorm shift, where the maps were); every other
layer, and the block's output, still reads them.

:func:`cut_links` resumes from the input of the earliest block with a cut (the stem runs once, or
not at all when a :class:`~densenet.Trace` holding the block input is given) and runs many cut
sets as one batch; :func:`cut_batch` runs every sample of a batch with one cut set.

:mod:`.importance` cuts every link of a block in turn, sharing the unchanged work. The tests check
:func:`cut_links` against a deep copy of the model with a hook on the target layer's BatchNorm.

The model is used read-only: no hooks, no attributes, no mode change, in the caller's thread.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor

from ..model import DenseNet, _DenseBlock
from ..trace import Trace
from ._common import check_eval, prepare_input, resolve_size, to_numpy
from .cam import CamMap, shown_map

Link = tuple[int, int, int]

__all__ = ["Link", "chain_cuts", "cut_batch", "cut_grad_cam", "cut_links"]


# --- checks ------------------------------------------------------------------------------------------

def _blocks(model: DenseNet) -> list[tuple[str, _DenseBlock]]:
    return [(name, m) for name, m in model.features.named_children() if isinstance(m, _DenseBlock)]


def _as_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an int, got {value!r}")
    return int(value)


def _check_link(model: DenseNet, link: object) -> Link:
    if not isinstance(link, (tuple, list)) or len(link) != 3:
        raise ValueError(f"a link is (block, source, target), got {link!r}")
    block, source, target = (_as_int(v, f"link {tuple(link)!r}") for v in link)
    blocks = _blocks(model)
    if not 1 <= block <= len(blocks):
        raise ValueError(f"link {tuple(link)}: block must be between 1 and {len(blocks)}, got {block}")
    num = len(blocks[block - 1][1])
    if not 1 <= target <= num:
        raise ValueError(f"link {tuple(link)}: target must be a dense layer between 1 and {num}, got {target}")
    if not 0 <= source < target:
        raise ValueError(f"link {tuple(link)}: source must be between 0 (the block input) and {target - 1}, "
                         f"got {source}")
    return block, source, target


def _is_link(item: object) -> bool:
    # A link's parts are scalars; a cut set's items are links.
    return (isinstance(item, (tuple, list)) and len(item) == 3
            and not any(isinstance(v, (tuple, list, set, frozenset)) for v in item))


def _cut_sets(model: DenseNet, cuts: Iterable) -> tuple[list[frozenset[Link]], bool]:
    """Normalise ``cuts`` to a list of cut sets; the flag says whether one bare set was given."""
    cuts = list(cuts)
    single = not cuts or _is_link(cuts[0])
    sets = [cuts] if single else [list(s) for s in cuts]
    return [frozenset(_check_link(model, link) for link in s) for s in sets], single


def _block_input(model: DenseNet, block: int, x: Tensor | Trace, index: int | slice) -> Tensor:
    """The input of dense block ``block`` for sample ``index`` (1, C0, h, w), or for every sample
    (``slice(None)``): read from a trace, else the network run up to it once (no graph)."""
    children = list(model.features.named_children())
    names = [name for name, _ in children]
    pos = names.index(f"denseblock{block}")
    input_name = f"features.{names[pos - 1]}"
    if isinstance(x, Trace):
        n = x.logits.shape[0]
        if isinstance(index, int) and not -n <= index < n:
            raise ValueError(f"index {index} out of range for a batch of {n}")
        if input_name not in x.activations:
            raise ValueError(f"the trace lacks {input_name!r}, the input of block {block}; trace it "
                             "(or pass the image)")
        t = x.activations[input_name]
        return (t[index:index + 1] if isinstance(index, int) else t).detach()
    if isinstance(index, int):
        h = prepare_input(model, x, index)
    else:
        check_eval(model)
        h = model.check_input(x).detach()
    if h.device.type == "cpu":
        h = h.contiguous(memory_format=torch.channels_last)  # as forward_features does
    for _, module in children[:pos]:
        h = module(h)
    return h


# --- cutting -----------------------------------------------------------------------------------------

def _cut_block(block: _DenseBlock, h: Tensor, cuts: dict[tuple[int, int], Tensor]) -> Tensor:
    """A dense block's forward where ``cuts[(j, l)]`` (B, 1, 1, 1) is 0 for samples whose link j -> l
    is cut and 1 otherwise; the layers' own forward reads the masked list."""
    features = [h]
    for l, layer in enumerate(block.values(), start=1):
        inputs = [f * cuts[(j, l)] if (j, l) in cuts else f for j, f in enumerate(features)]
        features.append(layer(inputs))
    return torch.cat(features, 1)  # (B, C0 + L*k, h, w)


def _cut_features(model: DenseNet, x: Tensor | Trace, sets: list[frozenset[Link]], index: int | None) -> Tensor:
    """``norm5``'s output (B, C, h, w) with the links of cut set i removed in row i; no graph.

    ``index`` picks one sample, run once per cut set; ``None`` runs every sample of ``x`` with
    ``sets[0]`` (then B is the batch size).
    """
    blocks = _blocks(model)
    used = sorted({link[0] for s in sets for link in s})
    start = used[0] if used else len(blocks)  # nothing cut: the last block is the cheapest place to resume
    with torch.no_grad():
        if index is None:
            h = _block_input(model, start, x, slice(None))
            sets = sets[:1] * h.shape[0]
        else:
            h = _block_input(model, start, x, index)
        n = len(sets)
        h = h.expand(n, *h.shape[1:])
        children = list(model.features.named_children())
        names = [name for name, _ in children]
        for name, module in children[names.index(f"denseblock{start}"):]:
            if isinstance(module, _DenseBlock):
                b = int(name.removeprefix("denseblock"))
                keep: dict[tuple[int, int], Tensor] = {}
                for i, s in enumerate(sets):
                    for blk, j, l in s:
                        if blk == b:
                            mask = keep.setdefault((j, l), h.new_ones(n, 1, 1, 1))
                            mask[i] = 0
                h = _cut_block(module, h, keep) if keep else module(h)
            else:
                h = module(h)
        return h


def cut_links(model: DenseNet, x: Tensor | Trace, cuts: Iterable, *, index: int = 0) -> Tensor:
    """Logits with every link of a cut set removed; several cut sets run as one batch.

    Args:
        model: a DenseNet in eval mode (used read-only).
        x: an input (C, H, W) or (N, C, H, W), or a :class:`~densenet.Trace` holding the input of
            the earliest block with a cut (then nothing before that block runs again).
        cuts: one cut set, an iterable of links ``(block, source, target)``, or a list of cut
            sets (each an iterable of links; an empty one gives the uncut logits).
        index: which sample of ``x``.

    Returns:
        Logits (B, num_classes), one row per cut set (B = 1 for a single cut set), float32, no graph.

    Raises:
        ValueError: a link outside the model (block, source or target out of range, source >= target),
            a model in train mode, a trace without the block input, a bad index.
        TypeError: a link with non-integer parts, a bad input.
    """
    check_eval(model)
    sets, _ = _cut_sets(model, cuts)
    features = _cut_features(model, x, sets, operator.index(index))
    with torch.no_grad():
        return model.forward_head(features).float()


def cut_batch(model: DenseNet, x: Tensor | Trace, cuts: Iterable) -> Tensor:
    """Logits of every sample of ``x`` with one cut set removed (the batch counterpart of :func:`cut_links`).

    Args:
        model: a DenseNet in eval mode (used read-only).
        x: a batch (N, C, H, W), or a trace of one holding the input of the earliest block with a cut.
        cuts: one cut set (an iterable of links ``(block, source, target)``).

    Returns:
        Logits (N, num_classes), float32, no graph.
    """
    check_eval(model)
    sets, single = _cut_sets(model, cuts)
    if not single:
        raise ValueError("cut_batch takes one cut set (an iterable of links), not a list of them")
    features = _cut_features(model, x, sets, None)
    with torch.no_grad():
        return model.forward_head(features).float()


def cut_grad_cam(model: DenseNet, x: Tensor | Trace, cuts: Iterable, target: int, *, index: int = 0,
                 size: tuple[int, int] | int | None = None) -> CamMap:
    """Grad-CAM at ``features.norm5`` of the network with ``cuts`` (one cut set) removed.

    The cut network runs without a graph up to ``norm5``; only the head is differentiated (one
    ``torch.autograd.grad``, no ``.grad`` on parameters). With no cuts it equals
    ``explain.cam(model, x, "gradcam", target, "features.norm5")``.

    Args:
        model: a DenseNet in eval mode (used read-only).
        x: an input (C, H, W) or (N, C, H, W), or a trace holding the block input (then ``size``
            defaults to the trace's input size).
        cuts: one cut set (an iterable of links).
        target: the class or label index explained.
        index: which sample of ``x``.
        size: (H, W) or side of the map; ``None``: the input's size.

    Returns:
        A :class:`~densenet.explain.CamMap` (raw at ``norm5``'s resolution, map in [0, 1]).
    """
    check_eval(model)
    sets, single = _cut_sets(model, cuts)
    if not single:
        raise ValueError("cut_grad_cam takes one cut set (an iterable of links), not a list of them")
    t = _as_int(target, "target")
    if not 0 <= t < model.config.num_classes:
        raise ValueError(f"target {t} out of range for {model.config.num_classes} classes")
    inputs = x.inputs if isinstance(x, Trace) else (x if x.dim() == 4 else x.unsqueeze(0))
    out_size = resolve_size(size, tuple(inputs.shape[-2:]))
    a = _cut_features(model, x, sets, operator.index(index)).detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model.forward_head(a)
        (g,) = torch.autograd.grad(logits[0, t], a)
    with torch.no_grad():
        raw = (g.mean(dim=(2, 3), keepdim=True) * a.detach()).sum(1)  # (1, h, w)
        shown = shown_map(raw, "gradcam", out_size)
    return CamMap(raw=to_numpy(raw[0]), map=to_numpy(shown[0]), layer="features.norm5", method="gradcam", target=t)


def chain_cuts(model: DenseNet, block: int | None = None) -> list[Link]:
    """Every link but the chain ``l - 1 -> l``: cutting them makes the block(s) a plain chain.

    Args:
        model: a DenseNet.
        block: a block number (1-based); ``None``: every block.

    Returns:
        The links ``(block, j, l)`` with ``j < l - 1``, in block, target, source order.
    """
    blocks = _blocks(model)
    wanted = range(1, len(blocks) + 1) if block is None else [_check_link(model, (block, 0, 1))[0]]
    return [(b, j, l) for b in wanted for l in range(1, len(blocks[b - 1][1]) + 1) for j in range(l - 1)]
