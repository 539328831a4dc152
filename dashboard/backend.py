"""Everything the dashboard takes from ``densenet/``, in one place, without Streamlit.

Pages import library functions from here rather than from ``densenet`` directly, so that the few
parts of the library still being written (``densenet.explain``, ``densenet.demo.load``, the sample
images) are guarded once: until they land, small stand-ins keep the app running, and each
stand-in steps aside by itself as soon as the real thing is importable.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

import densenet
import densenet.demo
from densenet.images import MAX_BYTES, MAX_PIXELS, SUPPORTED_EXTENSIONS, ImageError, load_image
from densenet.preprocess import Preprocessing, custom, default_for, preprocess, to_display

try:  # issue 4: the explanation methods
    from densenet import explain as _explain
except ImportError:  # pragma: no cover - until densenet/explain.py lands
    _explain = None

__all__ = [
    "ASSETS", "CAM_METHODS", "ATTRIBUTION_METHODS", "CHECKPOINT_EXTENSIONS", "MAX_BYTES", "MAX_PIXELS",
    "SUPPORTED_EXTENSIONS", "ImageError", "Preprocessing", "Sample", "cams", "attribution", "demo_model",
    "digest", "has_explain", "load_image", "overlay", "preprocess", "samples", "to_display",
]

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "assets"
SAMPLES_DIR = ASSETS / "samples"
CHECKPOINT_EXTENSIONS = ("pt", "pth", "safetensors", "bin")
MAX_CHECKPOINT_MB = 200  # DenseNet-264 is about 130 MB in float32

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def has_explain() -> bool:
    """Whether the full explanation library (``densenet.explain``) is available."""
    return _explain is not None


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
    """The bundled demo model, or ``None`` while it (or its weights) is not there yet."""
    load = getattr(densenet.demo, "load", None)
    if load is None:
        return None
    try:
        return load()
    except (FileNotFoundError, OSError, densenet.CheckpointError):
        return None


def demo_available() -> bool:
    """Cheap check (no loading) that the demo model can be offered."""
    weights = getattr(densenet.demo, "WEIGHTS_PATH", None)
    return getattr(densenet.demo, "load", None) is not None and weights is not None and Path(weights).is_file()


def default_cam_layer(model: densenet.DenseNet) -> str:
    """The layer to explain first: the checkpoint's recommendation, else the last feature map."""
    layer = model.metadata.get("cam_layer")
    return layer if layer in model.tap_names else "features.norm5"


# --- images ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sample:
    """A built-in image: a file in ``assets/samples/`` or, until those exist, a generated one."""

    name: str
    path: Path | None = None
    seed_index: int | None = None

    def read(self) -> bytes:
        if self.path is not None:
            return self.path.read_bytes()
        return _generated_png(self.seed_index or 0)


def samples() -> list[Sample]:
    """The built-in images, demo radiographs first (the demo model's preselected input)."""
    listed = getattr(densenet.demo, "sample_paths", None)
    if listed is not None:
        files = list(listed())
    else:
        exts = {f".{e}" for e in SUPPORTED_EXTENSIONS}
        files = sorted(p for p in SAMPLES_DIR.glob("*") if p.suffix.lower() in exts) if SAMPLES_DIR.is_dir() else []
    if files:
        return [Sample(p.name, path=p) for p in files]
    # Stand-in until assets/samples/ exists: one generated radiograph per class.
    _, labels = _generated_batch()
    classes = densenet.demo.CLASSES
    picks: list[Sample] = []
    for wanted in (1, 2, 3, 0):  # nodule first
        idx = int((labels == wanted).nonzero()[0][0]) if (labels == wanted).any() else None
        if idx is not None:
            picks.append(Sample(f"generated_{classes[wanted]}.png", seed_index=idx))
    return picks


_GENERATED: dict[str, Any] = {}


def _generated_batch() -> tuple[np.ndarray, np.ndarray]:
    if "batch" not in _GENERATED:
        images, labels, _ = densenet.demo.generate(16, seed=2024)
        _GENERATED["batch"] = (images[:, 0].numpy(), labels.numpy())
    return _GENERATED["batch"]


def _generated_png(index: int) -> bytes:
    from PIL import Image

    images, _ = _generated_batch()
    buf = io.BytesIO()
    Image.fromarray((images[index] * 255).round().astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


# --- explanations ------------------------------------------------------------------------------

@dataclass
class Map:
    """A saliency map: ``map`` (H, W) in [0, 1] at input resolution, ``raw`` as computed."""

    map: np.ndarray
    raw: np.ndarray
    layer: str | None
    method: str


_FALLBACK_METHODS = {
    "gradcam": "Grad-CAM: activations weighted by their spatially averaged gradients, then ReLU.",
    "activation-mean": "Mean activation over channels (no gradient).",
}
CAM_METHODS: dict[str, str] = dict(_explain.CAM_METHODS) if _explain is not None else _FALLBACK_METHODS

ATTRIBUTION_METHODS: dict[str, str] = {
    "integrated-gradients": "Integrated Gradients (captum): path integral of input gradients from a black image.",
    "smoothgrad": "SmoothGrad (captum NoiseTunnel over Saliency): input gradients averaged over noisy copies.",
    "occlusion": "Occlusion (captum): how much the score drops when a patch is greyed out. Slow.",
    "guided-gradcam": "Guided Grad-CAM (captum): guided backprop times the Grad-CAM map.",
} if _explain is not None else {}

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
    if _explain is not None:
        out = _explain.cams_from_trace(trace, method, target=target, layers=layers, size=size)
        return {name: _normalised(m) for name, m in out.items()}
    return _fallback_cams(trace, method, target, layers, size)


def _fallback_cams(trace: densenet.Trace, method: str, target: int, layers: list[str],
                   size: tuple[int, int]) -> dict[str, Map]:
    if method not in _FALLBACK_METHODS:
        raise ValueError(f"unknown method {method!r}; available: {', '.join(_FALLBACK_METHODS)}")
    grads = trace.gradients(target, layers) if method == "gradcam" else {}
    out = {}
    for name in layers:
        act = trace.activations[name].detach()[:1]  # (1, C, h, w)
        if method == "gradcam":
            weights = grads[name][:1].mean(dim=(2, 3), keepdim=True)  # (1, C, 1, 1)
            raw = F.relu((weights * act).sum(dim=1, keepdim=True))
        else:
            raw = act.mean(dim=1, keepdim=True)
        up = F.interpolate(raw, size=size, mode="bilinear", align_corners=False)[0, 0]
        lo, hi = up.min(), up.max()
        norm = (up - lo) / (hi - lo) if hi > lo else torch.zeros_like(up)
        out[name] = Map(map=_as_numpy(norm), raw=_as_numpy(raw[0, 0]), layer=name, method=method)
    return out


def attribution(method: str, model: densenet.DenseNet, x: torch.Tensor, target: int, layer: str,
                progress: Callable[[float], None] | None = None) -> Map:
    """Input-space attributions through captum (``densenet.explain``)."""
    if _explain is None:
        raise RuntimeError("this method needs densenet.explain, which is not installed yet")
    if method == "integrated-gradients":
        result = _explain.integrated_gradients(model, x, target)
    elif method == "smoothgrad":
        result = _explain.smoothgrad(model, x, target)
    elif method == "occlusion":
        result = _explain.occlusion(model, x, target, progress=_progress_adapter(progress))
    elif method == "guided-gradcam":
        result = _explain.guided_grad_cam(model, x, target, layer)
    else:
        raise ValueError(f"unknown attribution method {method!r}")
    return _normalised(result)


def _progress_adapter(progress: Callable[[float], None] | None) -> Callable[..., None] | None:
    """Accept ``progress(fraction)`` or ``progress(done, total)`` from the library."""
    if progress is None:
        return None

    def call(*args: Any) -> None:
        if len(args) >= 2 and args[1]:
            progress(min(1.0, float(args[0]) / float(args[1])))
        elif args:
            progress(min(1.0, float(args[0])))

    return call


def sanity_check(model: densenet.DenseNet, x: torch.Tensor, target: int, layer: str, method: str) -> Any:
    if _explain is None or not hasattr(_explain, "sanity_check"):
        return None
    return _explain.sanity_check(model, x, target, layer, method)


def deletion_insertion(model: densenet.DenseNet, x: torch.Tensor, cam_map: np.ndarray, target: int) -> Any:
    if _explain is None or not hasattr(_explain, "deletion_insertion"):
        return None
    return _explain.deletion_insertion(model, x, cam_map, target)


def overlay(image: np.ndarray, cam_map: np.ndarray, alpha: float = 0.5, colormap: str = "jet") -> np.ndarray:
    """The map drawn over the image, uint8 (H, W, 3)."""
    if _explain is not None and hasattr(_explain, "overlay"):
        return np.asarray(_explain.overlay(image, cam_map, alpha=alpha, colormap=colormap))
    from matplotlib import colormaps

    rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
    heat = colormaps[colormap](np.clip(cam_map, 0, 1))[..., :3]
    return (np.clip((1 - alpha) * rgb + alpha * heat, 0, 1) * 255).round().astype(np.uint8)
