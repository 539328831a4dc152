"""Everything the dashboard takes from ``densenet/``, in one place, without Streamlit.

Pages import library functions from here rather than from ``densenet`` directly, so that the
adaptations a page needs (labels, numpy maps, the fresh-model preprocessing) live in one module.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import densenet
import densenet.demo
from densenet import explain as _explain
from densenet.images import MAX_BYTES, MAX_PIXELS, SUPPORTED_EXTENSIONS, ImageError, load_image
from densenet.preprocess import Preprocessing, custom, default_for, preprocess, to_display

__all__ = [
    "ASSETS", "CAM_METHODS", "ATTRIBUTION_METHODS", "CHECKPOINT_EXTENSIONS", "MAX_BYTES", "MAX_PIXELS",
    "SUPPORTED_EXTENSIONS", "ImageError", "Preprocessing", "Sample", "cams", "attribution", "demo_model",
    "digest", "load_image", "overlay", "preprocess", "samples", "to_display",
]

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
CHECKPOINT_EXTENSIONS = ("pt", "pth", "safetensors", "bin")
MAX_CHECKPOINT_MB = 200  # DenseNet-264 is about 130 MB in float32

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def digest(data: bytes) -> str:
    """A short content hash: the key under which results of this file are cached."""
    return hashlib.sha256(data).hexdigest()[:16]


# --- models ------------------------------------------------------------------------------------

def fresh_preprocessing(config: densenet.DenseNetConfig) -> Preprocessing:
    """The input a freshly built model of this architecture gets: 32 px for CIFAR stems, else 224."""
    if config.stem == "cifar" and config.in_channels == 3:
        return custom(size=32, channels=3, mean=CIFAR_MEAN, std=CIFAR_STD)
    if config.stem == "small":
        channels = config.in_channels
        return custom(size=128, channels=channels, mean=(0.5,) * channels, std=(0.25,) * channels)
    return default_for(config.in_channels)


def build_fresh(config: densenet.DenseNetConfig) -> densenet.DenseNet:
    """A model with fresh (random) weights, with the preprocessing its stem expects."""
    return densenet.DenseNet(config, preprocessing=fresh_preprocessing(config))


def demo_model() -> densenet.DenseNet | None:
    """The bundled demo model, or ``None`` when its weights file is missing or unreadable."""
    try:
        return densenet.demo.load()
    except (FileNotFoundError, OSError, densenet.CheckpointError):
        return None


def demo_available() -> bool:
    """Cheap check (no loading) that the demo model can be offered."""
    return Path(densenet.demo.WEIGHTS_PATH).is_file()


def default_cam_layer(model: densenet.DenseNet) -> str:
    """The layer to explain first: the checkpoint's recommendation, else the last feature map."""
    layer = model.metadata.get("cam_layer")
    return layer if layer in model.tap_names else "features.norm5"


# --- images ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    """A built-in image: a file in ``assets/samples/``."""

    name: str
    path: Path

    def read(self) -> bytes:
        return self.path.read_bytes()


def samples() -> list[Sample]:
    """The built-in images, demo radiographs first (the demo model's preselected input)."""
    return [Sample(p.name, p) for p in densenet.demo.sample_paths()]


# --- explanations ------------------------------------------------------------------------------

@dataclass
class Map:
    """A saliency map: ``map`` (H, W) in [0, 1] at input resolution, ``raw`` as computed."""

    map: np.ndarray
    raw: np.ndarray
    layer: str | None
    method: str


CAM_METHODS: dict[str, str] = dict(_explain.CAM_METHODS)

ATTRIBUTION_METHODS: dict[str, str] = {
    "integrated-gradients": "Integrated Gradients (captum): input gradients integrated along the path from an all-zero (dataset-mean) input.",
    "smoothgrad": "SmoothGrad (captum NoiseTunnel over Saliency): input gradients averaged over noisy copies.",
    "occlusion": "Occlusion (captum): how much the score drops when a patch is greyed out. Slow.",
    "guided-gradcam": "Guided Grad-CAM (captum): guided backprop times the Grad-CAM map.",
}

METHOD_LABELS = {
    "gradcam": "Grad-CAM", "hirescam": "HiResCAM", "gradcam++": "Grad-CAM++", "xgradcam": "XGrad-CAM",
    "layercam": "LayerCAM", "eigencam": "EigenCAM", "activation-mean": "Activation (mean)",
    "activation-max": "Activation (max)", "integrated-gradients": "Integrated Gradients",
    "smoothgrad": "SmoothGrad", "occlusion": "Occlusion", "guided-gradcam": "Guided Grad-CAM",
}


def method_label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def _as_numpy(a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().float().cpu().numpy()
    a = np.asarray(a, dtype=np.float32)
    return a[0] if a.ndim == 3 and a.shape[0] == 1 else a


def _normalised(m: Any) -> Map:
    layer = getattr(m, "layer", None)
    return Map(map=_as_numpy(m.map), raw=_as_numpy(m.raw), layer=layer, method=getattr(m, "method", ""))


def cams(trace: densenet.Trace, method: str, target: int, layers: list[str], size: tuple[int, int]) -> dict[str, Map]:
    """CAM-family maps of ``target`` at ``layers`` from one trace (one backward for all layers)."""
    out = _explain.cams_from_trace(trace, method, target=target, layers=layers, size=size)
    return {name: _normalised(m) for name, m in out.items()}


def attribution(method: str, model: densenet.DenseNet, x: torch.Tensor, target: int, layer: str,
                progress: Callable[[float], None] | None = None) -> Map:
    """Input-space attributions through captum (``densenet.explain``)."""
    if method == "integrated-gradients":
        result = _explain.integrated_gradients(model, x, target)
    elif method == "smoothgrad":
        result = _explain.smoothgrad(model, x, target)
    elif method == "occlusion":
        result = _explain.occlusion(model, x, target, progress=progress)
    elif method == "guided-gradcam":
        result = _explain.guided_grad_cam(model, x, target, layer)
    else:
        raise ValueError(f"unknown attribution method {method!r}")
    return _normalised(result)


def sanity_check(model: densenet.DenseNet, x: torch.Tensor, target: int, layer: str, method: str) -> Any:
    return _explain.sanity_check(model, x, target, layer, method)


def deletion_insertion(model: densenet.DenseNet, x: torch.Tensor, cam_map: np.ndarray, target: int) -> Any:
    return _explain.deletion_insertion(model, x, cam_map, target)


def overlay(image: np.ndarray, cam_map: np.ndarray, alpha: float = 0.5, colormap: str = "jet") -> np.ndarray:
    """The map drawn over the image, uint8 (H, W, 3)."""
    return np.asarray(_explain.overlay(image, cam_map, alpha=alpha, colormap=colormap))
