"""What link relevance returns, whatever the method (gradient x activation or LRP): per block, the relevance each
dense link carried, the totals per node, and the checks on them. Data only, so both methods' modules import it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BlockRelevance:
    """Relevance on one dense block's links; node 0 is the block input, node l is dense layer l.

    Attributes:
        name: ``features.denseblockB``.
        input_name: the tap that feeds the block (``features.pool0``, ``features.transition1``, ...).
        num_layers: L.
        links: (j, l) -> signed relevance ``R(j -> l)`` for 0 <= j < l <= L: the L(L+1)/2 links.
        links_abs: (j, l) -> ``sum |dy/dI_l * f_j|`` over the link's channels.
        to_output: j -> ``R(j -> out)``, carried on through the block's output concatenation.
        to_output_abs: j -> its absolute counterpart.
        nodes: j -> ``sum dy/df_j * f_j``, the relevance of node j's maps overall (0: block input).
        nodes_abs: j -> ``sum |dy/df_j * f_j|``.
    """

    name: str
    input_name: str
    num_layers: int
    links: dict[tuple[int, int], float]
    links_abs: dict[tuple[int, int], float]
    to_output: dict[int, float]
    to_output_abs: dict[int, float]
    nodes: dict[int, float]
    nodes_abs: dict[int, float]

    @property
    def input(self) -> float:
        """Signed relevance of the block input's maps (node 0)."""
        return self.nodes[0]

    def incoming(self, layer: int, *, absolute: bool = False) -> dict[int, float]:
        """j -> relevance of the link ``j -> layer`` for every source j of dense layer ``layer``."""
        if not 1 <= layer <= self.num_layers:
            raise ValueError(f"layer must be between 1 and {self.num_layers}, got {layer}")
        table = self.links_abs if absolute else self.links
        return {j: table[(j, layer)] for j in range(layer)}

    def shares(self, layer: int) -> dict[int, float]:
        """j -> share of dense layer ``layer``'s incoming absolute relevance that came over ``j -> layer``."""
        inc = self.incoming(layer, absolute=True)
        total = sum(inc.values())
        return {j: (v / total if total > 0 else 0.0) for j, v in inc.items()}

    def matrix(self, *, absolute: bool = False) -> np.ndarray:
        """(L+1, L+1) array: row j (source), column l - 1 for target l = 1..L, last column the block
        output; NaN where no link exists (l <= j)."""
        n = self.num_layers
        out = np.full((n + 1, n + 1), np.nan)
        links = self.links_abs if absolute else self.links
        to_out = self.to_output_abs if absolute else self.to_output
        for (j, l), v in links.items():
            out[j, l - 1] = v
        for j, v in to_out.items():
            out[j, n] = v
        return out

    def completeness_error(self) -> float:
        """max_j |sum_l R(j -> l) + R(j -> out) - nodes[j]|, relative to max_j |nodes[j]| (0 when all are 0)."""
        scale = max((abs(v) for v in self.nodes.values()), default=0.0)
        worst = 0.0
        for j, total in self.nodes.items():
            parts = sum(v for (src, _), v in self.links.items() if src == j) + self.to_output[j]
            worst = max(worst, abs(parts - total))
        return worst / scale if scale > 0 else worst


@dataclass(frozen=True)
class LinkRelevance:
    """The result of :func:`link_relevance`.

    Attributes:
        target: the class or label whose raw logit was explained.
        index: which sample of the trace.
        logit: that raw logit.
        blocks: one :class:`BlockRelevance` per traced dense block, in forward order.
    """

    target: int
    index: int
    logit: float
    blocks: list[BlockRelevance]

    def completeness_error(self) -> float:
        """The worst :meth:`BlockRelevance.completeness_error` over the blocks."""
        return max((b.completeness_error() for b in self.blocks), default=0.0)

    def check(self, rtol: float = 1e-4) -> None:
        """Raise ``ValueError`` unless the per-link sums add up to the per-node totals within ``rtol``."""
        err = self.completeness_error()
        if not err <= rtol:
            raise ValueError(f"link relevance is not complete: relative error {err:.3g} > {rtol:g}")
