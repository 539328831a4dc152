"""Explanations: one registry of methods, the CAM family for many layers from one pass, captum
attributions, and trust.

- :mod:`.registry`: :data:`METHODS`, one record per method (what it is, what it needs, how to run
  it), :func:`method`, :func:`methods` and :func:`compute`, the one call shape for all of them.
  Its docstring is the recipe for adding a method.
- :mod:`.cam`: Grad-CAM, HiResCAM, Grad-CAM++, XGrad-CAM, LayerCAM, EigenCAM and raw
  activation maps, from a :class:`~densenet.Trace` (one forward, one backward for all layers).
- :mod:`.attributions`: Integrated Gradients, SmoothGrad, Occlusion, Guided Grad-CAM via captum.
- :mod:`.trust`: model-randomisation sanity check, deletion/insertion curves.
- :mod:`.overlay`: a map over an image.

Every function takes the model read-only: no hook is left on it, no parameter gains a
``.grad``, its mode is not changed, so one cached model can serve concurrent sessions.
"""

from .registry import (INPUT, METHODS, Cancelled, Explanation, Kind, Method, Progress, compute, method, methods,
                       register, unregister)
from .cam import (CamMap, activation_cam, cam, cam_maps, cams_from_trace, default_layers, eigen_cam, grad_cam,
                  grad_cam_pp, gradient_cam, hires_cam, layer_cam, raw_cams, shown_map, top_channels, xgrad_cam)
from .attributions import Attribution, guided_grad_cam, integrated_gradients, occlusion, smoothgrad
from .overlay import overlay
from .trust import DeletionInsertion, SanityResult, cascade_modules, deletion_insertion, sanity_check

__all__ = [
    "INPUT", "METHODS", "Attribution", "CamMap", "Cancelled", "DeletionInsertion", "Explanation", "Kind", "Method",
    "Progress", "SanityResult", "activation_cam", "cam", "cam_maps", "cams_from_trace", "cascade_modules", "compute",
    "default_layers", "deletion_insertion", "eigen_cam", "grad_cam", "grad_cam_pp", "gradient_cam",
    "guided_grad_cam", "hires_cam", "integrated_gradients", "layer_cam", "method", "methods", "occlusion",
    "overlay", "raw_cams", "register", "sanity_check", "shown_map", "smoothgrad", "top_channels", "unregister",
    "xgrad_cam",
]

# Forward-only CAMs (resumed from the explained layer) and relevance on the dense links.
from .perturbation import (TimeEstimate, ablation_cam, default_batch_size, estimate_time, is_cam,
                           perturbation_cam_maps, score_cam, ss_cam)

__all__ += ["TimeEstimate", "ablation_cam", "default_batch_size", "estimate_time", "is_cam",
            "perturbation_cam_maps", "score_cam", "ss_cam"]
from .relevance import BlockRelevance, LinkRelevance, link_relevance, relevance_layers

__all__ += ["BlockRelevance", "LinkRelevance", "link_relevance", "relevance_layers"]
# Cutting dense links (causal link importance).
from .cuts import Link, chain_cuts, cut_batch, cut_grad_cam, cut_links
from .importance import LinkImportance, link_importance

__all__ += ["Link", "LinkImportance", "chain_cuts", "cut_batch", "cut_grad_cam", "cut_links", "link_importance"]

# Layer-wise relevance propagation (Zennit, on a canonized copy). The records register
# here; Zennit (which imports torchvision) loads on first use of the functions below.
from . import lrp_methods as _lrp_methods  # noqa: F401  (registers "lrp" and "lrp-layer")

_LAZY = {"lrp": "lrp_core", "lrp_relevance": "lrp_core", "layer_relevance": "lrp_core", "LRPResult": "lrp_core",
         "DenseNetCanonizer": "canonize", "block_conservation": "lrp_links"}
__all__ += list(_LAZY)


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
