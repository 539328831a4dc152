"""Layer-wise relevance propagation (Zennit) on a canonized private copy of a DenseNet.

:func:`lrp` returns the input relevance; :func:`lrp_relevance` also says how much of the target's
logit reached the input and how much the biases absorbed; :func:`layer_relevance` reads the
relevance reaching any traced layer (an "LRP map at a layer", comparable to a CAM).

The rules are Zennit's composites (Montavon et al. 2019, "Layer-wise relevance propagation: an overview"):

- ``"epsilon"``: LRP-ε everywhere (ε = 1e-6, a stabiliser only). With no biases it conserves
  relevance exactly, and for a ReLU network it equals gradient × input. Where a threshold ReLU is
  off, its constant output takes no relevance (see :func:`composite` for why).
- ``"epsilon-plus-flat"`` (default): ε for the classifier, z⁺ for every convolution, the flat rule
  for the first convolution (Zennit's ``EpsilonPlusFlat``).
- ``"alpha1-beta0"``: α1β0 for every convolution, ε for the classifier.

Pooling: average pools share relevance in proportion to their inputs (Zennit's ``Norm``), max pools
give it to the maximum (the gradient), and a log-mean-exp head shares each class's relevance over
locations in proportion to ``a_p·s_p`` (``a`` the softmax weights of the scores ``s``), which
conserves it exactly.

The shared model is never touched: the first call canonizes a ``copy.deepcopy``
(:class:`~densenet.explain.canonize.DenseNetCanonizer`) and caches it, weakly keyed by the model and
keyed by its parameters' identities and versions (so an in-place change, a ``load_state_dict`` or a
move to another device canonizes again). The rules are hooks registered on the copy for one call
and removed after it; two calls' hooks would both fire, so calls on one copy take turns (a lock).
"""

from __future__ import annotations

import copy
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..model import DenseNet
from ._common import check_eval
from .canonize import ClassifierConv, DenseNetCanonizer, LogMeanExp, ThreshReLU
from .lrp_settings import DEFAULT_RULE, RULES



@dataclass(frozen=True)
class LRPResult:
    """Input relevance and where the target's logit went.

    Attributes:
        relevance: shaped like the input, (N, C, H, W): each input value's share of the logit.
        logit: (N,) the explained raw logit of each sample.
        total: (N,) the relevance that reached the input, ``relevance.sum((1, 2, 3))``.
        absorbed: (N,) ``logit - total``: what biases (merged BatchNorm shifts, the classifier's
            bias), the stabiliser and, after zero padding, the borders took. Zero, up to rounding,
            for the ε rule on a network without biases.
        target: (N,) the class explained per sample.
        rule: the rule used.
    """

    relevance: Tensor
    logit: Tensor
    total: Tensor
    absorbed: Tensor
    target: Tensor
    rule: str

    @property
    def absorbed_share(self) -> Tensor:
        """(N,) ``absorbed / |logit|`` (0 where the logit is 0)."""
        scale = self.logit.abs()
        return torch.where(scale > 0, self.absorbed / torch.where(scale > 0, scale, torch.ones_like(scale)),
                           torch.zeros_like(scale))


# --- the rules -----------------------------------------------------------------------------------

def composite(rule: str = DEFAULT_RULE, *, fast: bool = True) -> object:
    """A fresh Zennit composite for a canonized DenseNet (no canonizer in it: the copy already is).

    Args:
        rule: one of :data:`RULES`.
        fast: our one-transposed-convolution rules (:mod:`.lrp_rules`); ``False``: Zennit's own
            ``Epsilon``/``ZPlus``/``AlphaBeta`` (the same relevance, slower; the tests compare them).
    """
    from zennit.composites import EpsilonPlusFlat, LayerMapComposite, layer_map_base
    from zennit.rules import AlphaBeta, Epsilon, Pass, ZPlus
    from zennit.types import Convolution

    from .lrp_rules import FastAlphaBeta, FastEpsilon, FastPass, LogMeanExpRule

    if rule not in RULES:
        raise ValueError(f"unknown LRP rule {rule!r}; choose from {', '.join(RULES)}")
    epsilon = FastEpsilon() if fast else Epsilon()
    ours = [(LogMeanExp, LogMeanExpRule()), (ClassifierConv, epsilon)]
    if rule != "epsilon":
        # Pahde et al.: relevance passes through ThreshReLU unchanged, also where it outputs the
        # constant -b/s. Under the ε rule that constant's share is an artefact (the BN maps it to 0,
        # the merged bias cancels it) and not proportional to x, so the ε rule of the layer below
        # divides it by a near-zero x and explodes (measured on the demo model: |R| up to 4e10).
        # For ε it is left to the gradient (zero where off): absorbed, like a bias's share.
        ours.insert(0, (ThreshReLU, FastPass() if fast else Pass()))
    if rule == "epsilon":
        convs = epsilon
    elif fast:
        convs = FastAlphaBeta()
    else:
        convs = ZPlus() if rule == "epsilon-plus-flat" else AlphaBeta(alpha=1.0, beta=0.0)
    layers = ours + [(Convolution, convs), (nn.Linear, epsilon)]
    if rule == "epsilon-plus-flat":
        return EpsilonPlusFlat(layer_map=layers)
    return LayerMapComposite(layers + layer_map_base())


# --- the canonized copy, once per model ----------------------------------------------------------

@dataclass
class _Canonical:
    key: tuple
    model: DenseNet
    lock: threading.Lock


_CACHE: weakref.WeakKeyDictionary[nn.Module, _Canonical] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def _version(model: nn.Module) -> tuple:
    """Changes when any parameter or buffer is replaced, moved or modified in place."""
    return tuple((t.data_ptr(), t._version, t.dtype) for t in (*model.parameters(), *model.buffers()))


def canonical(model: DenseNet) -> tuple[DenseNet, threading.Lock]:
    """The canonized private copy of ``model`` and the lock its users take turns with (cached)."""
    if not isinstance(model, DenseNet):
        raise TypeError(f"LRP needs a densenet.DenseNet, got {type(model).__name__}")
    check_eval(model)
    key = _version(model)
    with _CACHE_LOCK:
        entry = _CACHE.get(model)
        if entry is None or entry.key != key:
            private = copy.deepcopy(model)
            for p in private.parameters():
                p.requires_grad_(False)
            DenseNetCanonizer().apply(private)
            entry = _Canonical(key, private, threading.Lock())
            _CACHE[model] = entry
    return entry.model, entry.lock


# --- propagation ---------------------------------------------------------------------------------

def _targets(logits: Tensor, target: int | Iterable[int] | Tensor | None) -> Tensor:
    n, k = logits.shape
    if target is None:
        return logits.detach().argmax(dim=1)
    if isinstance(target, (bool, float, str)):
        raise TypeError(f"target must be an int class index, indices or None, got {target!r}")
    if isinstance(target, int) or (hasattr(target, "__index__") and not isinstance(target, Tensor)):
        t = torch.full((n,), int(target), dtype=torch.long, device=logits.device)
    else:
        t = torch.as_tensor(list(target) if not isinstance(target, Tensor) else target, dtype=torch.long,
                            device=logits.device).flatten()
        if t.numel() != n:
            raise ValueError(f"{t.numel()} targets for a batch of {n}")
    if ((t < 0) | (t >= k)).any():
        raise ValueError(f"target {t.tolist()} out of range for {k} classes")
    return t


def propagate(model: DenseNet, x: Tensor, target: int | Iterable[int] | Tensor | None = None, *,
              rule: str = DEFAULT_RULE, taps: Iterable[str] = (), input_relevance: bool = True,
              fast: bool = True) -> tuple[Tensor | None, dict[str, Tensor], Tensor, Tensor]:
    """One forward and one modified backward through the canonized copy.

    Args:
        model: a DenseNet in eval mode (only read).
        x: (N, C, H, W) or (C, H, W).
        target: class per sample, one for all, or ``None`` (each sample's top class).
        rule: one of :data:`RULES`.
        taps: names whose relevance to return: ``model.tap_names``, and ``<dense layer>.input`` for
            the concatenation a dense layer reads.
        input_relevance: also return the input's.
        fast: see :func:`composite`.

    Returns:
        ``(input relevance or None, {tap: relevance shaped like it}, logits (N, K), targets (N,))``.
    """
    from zennit.core import Composite

    private, lock = canonical(model)
    x = model.check_input(x)
    wanted = list(dict.fromkeys(taps))
    kept: dict[str, Tensor] = {}

    def record(name: str, tensor: Tensor) -> Tensor:
        if name in wanted:
            kept[name] = tensor
        return tensor

    with lock:
        rules: Composite = composite(rule, fast=fast)
        # The rules hook only modules whose input needs a gradient: the input always does.
        leaf = x.detach().clone().requires_grad_(True)
        with rules.context(private) as m, torch.enable_grad():
            logits = m.forward_head(m.forward_features(leaf, record))
            missing = [name for name in wanted if name not in kept]
            if missing:
                raise ValueError(f"unknown layer(s) {missing}; relevance can be read at model.tap_names "
                                 "and at '<dense layer>.input'")
            t = _targets(logits, target)
            # Relevance starts as the target's logit on the target's output, zero elsewhere.
            start = torch.zeros_like(logits).scatter(1, t[:, None], logits.detach().gather(1, t[:, None]))
            inputs = ([leaf] if input_relevance else []) + [kept[name] for name in wanted]
            grads = torch.autograd.grad(logits, inputs, grad_outputs=start, allow_unused=True)
        grads = [torch.zeros_like(i) if g is None else g.detach().clone() for i, g in zip(inputs, grads)]
    rel_in = grads[0] if input_relevance else None
    taps_rel = dict(zip(wanted, grads[1:] if input_relevance else grads))
    return rel_in, taps_rel, logits.detach().clone(), t


def lrp_relevance(model: DenseNet, x: Tensor, target: int | Iterable[int] | Tensor | None = None, *,
                  rule: str = DEFAULT_RULE) -> LRPResult:
    """Input relevance of the target's raw logit, with the conservation budget.

    Args:
        model: a DenseNet in eval mode; only read (a canonized private copy does the work).
        x: (N, C, H, W) or one (C, H, W) image.
        target: class per sample, one class for all, or ``None`` (each sample's top class).
        rule: ``"epsilon-plus-flat"``, ``"epsilon"`` or ``"alpha1-beta0"``.

    Returns:
        An :class:`LRPResult`; ``.relevance`` is shaped like ``x`` (batched if ``x`` was).

    Raises:
        ValueError: an unknown rule, a bad target, a model in train mode, a bad input shape.
        TypeError: not a DenseNet, not a tensor.
    """
    if rule not in RULES:
        raise ValueError(f"unknown LRP rule {rule!r}; choose from {', '.join(RULES)}")
    rel, _, logits, t = propagate(model, x, target, rule=rule)
    logit = logits.gather(1, t[:, None])[:, 0]
    total = rel.flatten(1).sum(dim=1).to(logit.dtype)
    if isinstance(x, Tensor) and x.dim() == 3:
        rel = rel[0]
    return LRPResult(relevance=rel, logit=logit, total=total, absorbed=logit - total, target=t, rule=rule)


def lrp(model: DenseNet, x: Tensor, target: int | Iterable[int] | Tensor | None = None, *,
        rule: str = DEFAULT_RULE) -> Tensor:
    """Layer-wise relevance propagation of the target's raw logit to the input, shaped like ``x``.

    Same arguments as :func:`lrp_relevance`, which also reports what the biases absorbed.
    """
    return lrp_relevance(model, x, target, rule=rule).relevance


def layer_relevance(model: DenseNet, x: Tensor, target: int | Iterable[int] | Tensor | None = None,
                    layers: Iterable[str] | str = "features.norm5", *, rule: str = DEFAULT_RULE
                    ) -> dict[str, Tensor]:
    """The relevance reaching each layer's output (summed over everything that reads it), shaped like it.

    Args:
        model, x, target, rule: as :func:`lrp_relevance`.
        layers: names from ``model.tap_names``.

    Returns:
        layer -> (N, C, h, w) relevance; ``.sum(1)`` is the LRP map at that layer.
    """
    names = model.resolve_layers(layers)
    _, taps, _, _ = propagate(model, x, target, rule=rule, taps=names, input_relevance=False)
    return taps


__all__ = ["DEFAULT_RULE", "LRPResult", "RULES", "canonical", "composite", "layer_relevance", "lrp",
           "lrp_relevance", "propagate"]
