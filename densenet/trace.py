"""What one forward pass saw: logits and named activations, and their gradients on demand."""

from __future__ import annotations

import operator
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .config import DenseNetConfig


@dataclass
class Trace:
    """The result of :meth:`DenseNet.trace`.

    Attributes:
        logits: (N, num_classes), float32.
        activations: layer name -> (N, C, h, w), in forward order. With ``keep_graph`` these are
            the very tensors of the autograd graph, so gradients can be taken with respect to them.
        inputs: the (N, C, H, W) batch the model saw (on the model's device).
        multilabel: outputs are independent sigmoids rather than one softmax.
        config: the architecture of the model that made it (its layer names are read off
            ``densenet.topology(config)``); ``None`` for a trace built by hand.
    """

    logits: Tensor
    activations: dict[str, Tensor]
    inputs: Tensor
    multilabel: bool = False
    config: DenseNetConfig | None = field(default=None, repr=False)
    _grad_cache: dict[tuple, dict[str, Tensor]] = field(default_factory=dict, repr=False)

    @property
    def probabilities(self) -> Tensor:
        """Softmax over classes, or one sigmoid per label for multi-label models; (N, num_classes)."""
        logits = self.logits.detach()
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)

    def top_targets(self) -> Tensor:
        """The index of the highest logit of each sample, (N,)."""
        return self.logits.detach().argmax(dim=1)

    def targets(self, target: int | Iterable[int] | Tensor | None) -> Tensor:
        """Normalise a target spec to one class index per sample, (N,) int64."""
        n, k = self.logits.shape
        if isinstance(target, (bool, float, str)):
            raise TypeError(f"target must be an int class index, indices or None, got {target!r}")
        if target is None:
            t = self.top_targets()
        elif isinstance(target, int) or (hasattr(target, "__index__") and not isinstance(target, Tensor)):
            t = torch.full((n,), operator.index(target), dtype=torch.long, device=self.logits.device)
        else:
            t = torch.as_tensor(list(target) if not isinstance(target, Tensor) else target,
                                dtype=torch.long, device=self.logits.device).flatten()
            if t.numel() != n:
                raise ValueError(f"{t.numel()} targets for a batch of {n}")
        if ((t < 0) | (t >= k)).any():
            raise ValueError(f"target {t.tolist()} out of range for {k} classes")
        return t

    def gradients(self, target: int | Iterable[int] | Tensor | None = None,
                  layers: Iterable[str] | None = None) -> dict[str, Tensor]:
        """d(raw logit of ``target``)/d(activation) for each layer, from one backward pass.

        The backward stops at the earliest requested layer and fills no parameter's ``.grad``
        (``torch.autograd.grad``, never ``.backward()``). Results are cached per target, and
        the graph is kept so that other targets can follow.

        Args:
            target: class index for every sample, one index per sample, or ``None`` for each
                sample's top prediction.
            layers: names among :attr:`activations`; ``None`` means all of them.

        Returns:
            layer name -> gradient shaped like the activation, (N, C, h, w).
        """
        t = self.targets(target)
        names = list(self.activations) if layers is None else list(layers)
        missing = [n for n in names if n not in self.activations]
        if missing:
            raise ValueError(f"layer(s) {missing} were not traced; traced: {list(self.activations)}")
        key = (tuple(t.tolist()),)
        cached = self._grad_cache.setdefault(key, {})
        todo = [n for n in names if n not in cached]
        if todo:
            taps = [self.activations[n] for n in todo]
            if not all(a.requires_grad for a in taps):
                raise RuntimeError("this trace has no autograd graph: trace with keep_graph=True")
            score = self.logits.gather(1, t[:, None]).sum()  # samples are independent: sum is fine
            grads = torch.autograd.grad(score, taps, retain_graph=True)
            cached.update({n: g.detach() for n, g in zip(todo, grads)})
        return {n: cached[n] for n in names}
