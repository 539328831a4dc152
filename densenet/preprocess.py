"""How an image becomes the tensor a model expects; the preset (:mod:`densenet.presets`) travels with the model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .geometry import Plan, plan
from .images import load_image
from .presets import (  # noqa: F401 - the presets are part of this module's API
    CIFAR_MEAN, CIFAR_STD, DEMO, GEOMETRIES, IMAGENET, IMAGENET_MEAN, IMAGENET_STD, PRESETS, XRAY, Preprocessing,
    custom, default_for, for_fresh_model, named, resolve_preset)

# --- applying a preset ---------------------------------------------------------------------------
#
# Resampling is bilinear with antialiasing, like torchvision's Resize on tensors with
# antialias=True; output sizes and crop offsets follow torchvision's Resize and CenterCrop, so a
# preset reproduces the evaluation transform its checkpoint was trained with.

LUMA_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 weights used to turn RGB into the single channel of grey models."""


PresetSource = Preprocessing | torch.nn.Module
"""A preset, or a model that carries one as ``model.preprocessing``."""


@dataclass(frozen=True)
class Prepared:
    """One image made ready for a model: its input tensor and what to draw a map over.

    Both come from one pass of the geometry and resampling, so they line up pixel for pixel.

    Attributes:
        x: float32 ``(1, C, size, size)`` model input on the chosen device, exactly what
            :func:`preprocess` returns.
        display: float32 ``(size, size)`` for 1-channel presets, ``(size, size, C)`` otherwise,
            in [0, 1]: the pixels the model sees before normalisation, exactly what
            :func:`to_display` returns.
    """

    x: torch.Tensor
    display: np.ndarray


def prepare(image: np.ndarray | Image.Image, model_or_preset: PresetSource, *,
            device: torch.device | str | None = None) -> Prepared:
    """The model input and the display image of ``image``, from one pass.

    Use it where both are needed (a page that traces an image and draws a map over it):
    ``preprocess`` and ``to_display`` called one after the other would crop and resample twice.

    Args:
        image: ``(H, W)`` or ``(H, W, 3)`` float array in [0, 1] as returned by
            ``load_image``, or a PIL image (read with ``load_image``).
        model_or_preset: a ``Preprocessing``, or a model carrying one as ``model.preprocessing``.
        device: where to put ``x``; default: the model's device when a model is given,
            else the CPU. ``display`` is always a numpy array.

    Returns:
        A :class:`Prepared` with ``x`` and ``display``.

    Raises:
        TypeError: ``image`` or ``model_or_preset`` has an unsupported type.
        ValueError: the image's shape or values, or the preset, are unusable.
    """
    preset, model_device, view = _view(image, model_or_preset)
    return Prepared(x=_input(view, preset, device if device is not None else model_device),
                    display=_display(view, preset))


def preprocess(image: np.ndarray | Image.Image, model_or_preset: PresetSource, *,
               device: torch.device | str | None = None) -> torch.Tensor:
    """Turn an image into the input tensor a model expects.

    Channels are matched (grey replicated, colour to 1 channel by BT.601 luminance), the
    preset's geometry applied (centre crop, whole-image resize or letterbox), then its
    value_range or mean/std. Needing the display image too? :func:`prepare` gives both.

    Args:
        image: ``(H, W)`` or ``(H, W, 3)`` float array in [0, 1] as returned by
            ``load_image``, or a PIL image (read with ``load_image``).
        model_or_preset: a ``Preprocessing``, or a model carrying one as ``model.preprocessing``.
        device: where to put the result; default: the model's device when a model is given,
            else the CPU.

    Returns:
        float32 tensor ``(1, C, size, size)`` with ``C = preset.channels``.

    Raises:
        TypeError: ``image`` or ``model_or_preset`` has an unsupported type.
        ValueError: the image's shape or values, or the preset, are unusable.
    """
    preset, model_device, view = _view(image, model_or_preset)
    return _input(view, preset, device if device is not None else model_device)


def to_display(image: np.ndarray | Image.Image, preset: PresetSource) -> np.ndarray:
    """The pixels the model sees, before normalisation: what to draw a CAM over.

    Equals ``preprocess(image, preset)`` with the normalisation undone: same crop, same
    resampling, same channels, so a ``size x size`` map lines up pixel for pixel. Needing the
    model input too? :func:`prepare` gives both.

    Args:
        image: as for ``preprocess``.
        preset: a ``Preprocessing``, or a model carrying one.

    Returns:
        float32 ``(size, size)`` for 1-channel presets, ``(size, size, C)`` otherwise, in [0, 1].
    """
    checked, _, view = _view(image, preset)
    return _display(view, checked)


def _resolve(model_or_preset: object) -> tuple[Preprocessing, torch.device | None]:
    """The preset to apply and, for a model, the device of its parameters."""
    preset = resolve_preset(model_or_preset)
    device = None
    if isinstance(model_or_preset, torch.nn.Module):
        tensor = next(model_or_preset.parameters(), None)
        if tensor is None:
            tensor = next(model_or_preset.buffers(), None)
        device = None if tensor is None else tensor.device
    return preset, device


def _as_array(image: np.ndarray | Image.Image) -> np.ndarray:
    """Validate a ``load_image``-style array; PIL images are read with ``load_image``."""
    if isinstance(image, Image.Image):
        return load_image(image)
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array or a PIL image, got {type(image).__name__}")
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"image must hold floats in [0, 1] (see load_image), got dtype {image.dtype}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))):
        raise ValueError(f"image must be (H, W) or (H, W, 3), got shape {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image has no pixels, shape {image.shape}")
    if not np.isfinite(image).all():
        raise ValueError(f"image values must be finite, got {np.count_nonzero(~np.isfinite(image))} "
                         "NaN or infinite values")
    if image.min() < 0.0 or image.max() > 1.0:
        raise ValueError(f"image values must be in [0, 1], got range [{image.min()}, {image.max()}]")
    return image


def _view(image: np.ndarray | Image.Image,
          model_or_preset: object) -> tuple[Preprocessing, torch.device | None, torch.Tensor]:
    """The one pass behind ``prepare``, ``preprocess`` and ``to_display``: the checked preset,
    the model's device and the model's view ``(1, C, size, size)`` in [0, 1]."""
    preset, device = _resolve(model_or_preset)
    return preset, device, _model_view(_as_array(image), preset)


def _input(view: torch.Tensor, preset: Preprocessing, device: torch.device | str | None) -> torch.Tensor:
    """The model input from the view: normalised (a new tensor, never the view), then moved."""
    x = _normalise(view, preset)
    return x if device is None else x.to(device)


def _display(view: torch.Tensor, preset: Preprocessing) -> np.ndarray:
    """The display image from the view: ``(size, size)`` or ``(size, size, C)`` float32 numpy."""
    pixels = view[0, 0] if preset.channels == 1 else view[0].permute(1, 2, 0)  # (s, s) or (s, s, C)
    return np.ascontiguousarray(pixels.numpy())


def _model_view(image: np.ndarray, preset: Preprocessing) -> torch.Tensor:
    """Channel-matched, cropped and resampled image, ``(1, C, size, size)`` in [0, 1]."""
    pixels = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    pixels = pixels[None, None] if pixels.ndim == 2 else pixels.permute(2, 0, 1)[None]  # (1, c, H, W)
    if preset.channels < pixels.shape[1]:
        pixels = _match_channels(pixels, preset.channels)  # both orders agree; resample fewer channels
    p = _plan(pixels.shape[-2], pixels.shape[-1], preset)
    if p.resized is not None:
        pixels = _resample(pixels, p.resized)
    pixels = _window(pixels, p)
    pixels = _resample(pixels, (p.size, p.size))
    pixels = _match_channels(pixels, preset.channels)
    return pixels.clamp(0.0, 1.0)  # antialiased bilinear is a convex mix; this only trims rounding


def _match_channels(pixels: torch.Tensor, channels: int) -> torch.Tensor:
    """``(1, c, H, W)`` -> ``(1, channels, H, W)``: replicate grey, or BT.601 luminance of colour."""
    have = pixels.shape[1]
    if have == channels:
        return pixels
    if have == 1:
        return pixels.expand(-1, channels, -1, -1)
    if channels == 1:
        weights = torch.tensor(LUMA_WEIGHTS, dtype=pixels.dtype).view(1, 3, 1, 1)
        return (pixels * weights).sum(dim=1, keepdim=True)
    raise ValueError(f"cannot turn a {have}-channel image into {channels} channels")


def _plan(height: int, width: int, preset: Preprocessing) -> Plan:
    return plan(height, width, size=preset.size, resize=preset.resize, mode=preset.geometry)


def _window(pixels: torch.Tensor, p: Plan) -> torch.Tensor:
    """Take the plan's window: a crop, or zero padding (letterbox) where it reaches past the image."""
    height, width = pixels.shape[-2:]
    if p.top >= 0 and p.left >= 0:
        return pixels[..., p.top:p.top + p.height, p.left:p.left + p.width]
    pad_top, pad_left = -p.top, -p.left
    return F.pad(pixels, (pad_left, p.width - width - pad_left, pad_top, p.height - height - pad_top))


def _resample(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(pixels.shape[-2:]) == size:
        return pixels
    return F.interpolate(pixels, size=size, mode="bilinear", align_corners=False, antialias=True)


def _normalise(view: torch.Tensor, preset: Preprocessing) -> torch.Tensor:
    """[0, 1] pixels -> model input: linear map onto value_range, else (x - mean) / std."""
    if preset.value_range is not None:
        low, high = preset.value_range
        return view * (high - low) + low
    mean = torch.tensor(preset.mean, dtype=view.dtype).view(1, -1, 1, 1)
    std = torch.tensor(preset.std, dtype=view.dtype).view(1, -1, 1, 1)
    return (view - mean) / std
