"""Explanations: the CAM family for many layers from one pass, captum attributions, and trust.

- :mod:`.cam`: Grad-CAM, HiResCAM, Grad-CAM++, XGrad-CAM, LayerCAM, EigenCAM and raw
  activation maps, from a :class:`~densenet.Trace` (one forward, one backward for all layers).
- :mod:`.attributions`: Integrated Gradients, SmoothGrad, Occlusion, Guided Grad-CAM via captum.
- :mod:`.trust`: model-randomisation sanity check, deletion/insertion curves.
- :mod:`.overlay`: a map over an image.

Every function takes the model read-only: no hook is left on it, no parameter gains a
``.grad``, its mode is not changed, so one cached model can serve concurrent sessions.
"""

from .attributions import Attribution, guided_grad_cam, integrated_gradients, occlusion, smoothgrad
from .cam import (CAM_METHODS, CamMap, cam, cam_maps, cams_from_trace, default_layers, eigen_cam, grad_cam,
                  grad_cam_pp, hires_cam, layer_cam, needs_gradient, top_channels, xgrad_cam)
from .overlay import overlay
from .trust import DeletionInsertion, SanityResult, cascade_modules, deletion_insertion, sanity_check

__all__ = [
    "CAM_METHODS", "Attribution", "CamMap", "DeletionInsertion", "SanityResult", "cam", "cam_maps",
    "cams_from_trace", "cascade_modules", "default_layers", "deletion_insertion", "eigen_cam", "grad_cam",
    "grad_cam_pp", "guided_grad_cam", "hires_cam", "integrated_gradients", "layer_cam", "needs_gradient",
    "occlusion", "overlay", "sanity_check", "smoothgrad", "top_channels", "xgrad_cam",
]
