"""The LRP records of the registry: "lrp" (input relevance) and "lrp-layer" (the relevance reaching a layer).

Importing this module registers them without loading Zennit (which pulls in torchvision); the
runners load :mod:`.lrp_core` on first use.
"""

from __future__ import annotations

from torch import Tensor, nn

from ._common import normalise, resolve_size, to_numpy, upsample
from .attributions import Attribution
from .cam import CamMap
from .lrp_settings import RULES
from .registry import INPUT, Kind, Method, Progress, register


def _shown(raw: Tensor, size: tuple[int, int]) -> Tensor:
    """(1, h, w) signed relevance -> (1, H, W) in [0, 1]: the positive part, upsampled, min-max."""
    return normalise(upsample(raw.clamp(min=0), size))


def _run_lrp(model: nn.Module, x: Tensor, target: int | None, layers: list[str], *, trace: object = None,
             size: object = None, progress: Progress | None = None,
             rule: str = RULES[0]) -> dict[str, Attribution]:
    from .lrp_core import lrp_relevance

    result = lrp_relevance(model, x, target, rule=rule)
    raw = result.relevance.float().sum(dim=1)  # (1, C, H, W) -> (1, H, W)
    shown = _shown(raw, resolve_size(size, tuple(raw.shape[-2:])))
    if progress is not None:
        progress(1.0)
    return {INPUT: Attribution(raw=to_numpy(raw[0]), map=to_numpy(shown[0]), method="lrp",
                               target=int(result.target[0]))}


def _run_lrp_layer(model: nn.Module, x: Tensor, target: int | None, layers: list[str], *, trace: object = None,
                   size: object = None, progress: Progress | None = None,
                   rule: str = RULES[0]) -> dict[str, CamMap]:
    from .lrp_core import propagate

    _, taps, _, t = propagate(model, x, target, rule=rule, taps=layers, input_relevance=False)
    out_size = resolve_size(size, tuple(x.shape[-2:]))
    maps = {}
    for name in layers:
        raw = taps[name].float().sum(dim=1)  # (1, C, h, w) -> (1, h, w)
        maps[name] = CamMap(raw=to_numpy(raw[0]), map=to_numpy(_shown(raw, out_size)[0]), layer=name,
                            method="lrp-layer", target=int(t[0]))
    if progress is not None:
        progress(1.0)
    return maps


register(Method("lrp", "LRP",
                "Layer-wise relevance propagation: the logit shared out layer by layer down to the pixels, on a "
                "canonized copy (BatchNorm folded in); shown: positive relevance (Bach et al. 2015; Zennit).",
                Kind.INPUT_ATTRIBUTION, needs_layer=False, needs_graph=False, slow=False, run=_run_lrp))
register(Method("lrp-layer", "LRP at a layer",
                "The LRP relevance reaching a layer, summed over its channels: a map at the layer's resolution "
                "like a CAM; shown: positive relevance (Montavon et al. 2019; Zennit).",
                Kind.RELEVANCE, needs_layer=True, needs_graph=False, slow=False, run=_run_lrp_layer))


def rule_label(rule: str) -> str:
    """For people: ``"epsilon-plus-flat"`` -> ``"ε + z⁺ + flat"``."""
    return {"epsilon-plus-flat": "ε + z⁺ + flat", "epsilon": "ε", "alpha1-beta0": "α1β0"}.get(rule, rule)


__all__ = ["RULES", "rule_label"]
