"""Turn an uploaded file into a float image in [0, 1], refusing anything unsafe or unreadable.

``load_image`` is the one entry point. It reads PNG, JPEG, TIFF, BMP and WebP with Pillow and
DICOM with pydicom, detecting the format from the bytes, never from the file name. Sizes are
checked from the header before any pixel is decoded, and every failure a user can cause becomes
an ``ImageError`` with a sentence they can act on.

Conventions of the returned array:

* float32, C-contiguous, finite, in [0, 1];
* ``(H, W)`` for grey sources (Pillow modes 1, L, LA, I, I;16*, F; monochrome DICOM) and
  ``(H, W, 3)`` for colour ones (RGB, RGBA, P, CMYK, YCbCr; colour DICOM). A colour image whose
  channels happen to be equal stays ``(H, W, 3)``;
* transparency is composited onto white, the background most viewers show;
* EXIF orientation is applied, so photos come out upright;
* 8- and 16-bit integers are divided by their type's maximum (255, 65535); float data and
  DICOM without a window are min-max scaled, and a constant image of that kind becomes zeros.

DICOM is read by :mod:`densenet.dicom` (windowing: ``load_image(..., window=Window(centre, width))``
or a preset name from :data:`WINDOW_PRESETS`; :func:`dicom_info` for the controls that choose one);
what both back-ends share is in :mod:`densenet.image_checks`.
"""

from __future__ import annotations

import io
import os
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .dicom import (WINDOW_PRESETS, DicomInfo, Window, WindowSpec, dicom_info, from_dicom, has_dicom_magic,
                    may_be_raw_dicom, resolve_window)
from .image_checks import MAX_BYTES, MAX_PIXELS, ImageError, check_pixel_count, decoding, finish, min_max, read_bytes

__all__ = ["ImageError", "load_image", "MAX_PIXELS", "MAX_BYTES", "SUPPORTED_EXTENSIONS", "Window", "WINDOW_PRESETS",
           "DicomInfo", "dicom_info"]

SUPPORTED_EXTENSIONS = ("png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp", "dcm", "dicom")
"""File name extensions to offer in an upload dialog; the content decides the actual format."""

# Restricting Pillow to these formats keeps rarely used, riskier decoders (EPS via Ghostscript,
# ICNS, ...) out of reach of uploads. Camera MPO files open through the JPEG entry.
_PILLOW_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "WEBP")
_FORMATS_TEXT = "PNG, JPEG, TIFF, BMP, WebP or DICOM"

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO | Image.Image


def load_image(source: ImageSource, *, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_BYTES,
               window: WindowSpec = None) -> np.ndarray:
    """Read an image file into a float32 array in [0, 1].

    Args:
        source: a path, the file's bytes, a binary file object (read from its current
            position), or a ``PIL.Image.Image``.
        max_pixels: refuse images whose width * height exceeds this, checked from the header
            before decoding (for multi-frame DICOM under pydicom 2.4, which decodes every
            frame, times the frame count). Pillow's own hard limit (2 *
            ``Image.MAX_IMAGE_PIXELS``) still applies above it, and between 1 and 2 times that
            limit Pillow emits a ``DecompressionBombWarning`` before our refusal.
        max_bytes: refuse encoded files larger than this, checked before reading them.
        window: for monochrome DICOM, the window to apply instead of the file's own (a
            :class:`Window`, ``(centre, width)`` or a :data:`WINDOW_PRESETS` name); ignored for
            other images, which have no modality values to window.

    Returns:
        ``(H, W)`` for grey images or ``(H, W, 3)`` for colour ones; float32, C-contiguous,
        finite, in [0, 1]. See the module docstring for how each kind of file is scaled.

    Raises:
        ImageError: the file is missing, empty, too large, damaged, not an image, or needs a
            decoder that is not installed.
        TypeError: ``source`` is none of the accepted types, or a text-mode file.
    """
    chosen = resolve_window(window)
    if isinstance(source, Image.Image):
        return _from_pillow(source, max_pixels)
    data = read_bytes(source, max_bytes)
    if not data:
        raise ImageError("the file is empty")
    if has_dicom_magic(data):
        return from_dicom(data, max_pixels, force=False, window=chosen)
    try:
        return _from_encoded(data, max_pixels)
    except _NotAnImage:
        if may_be_raw_dicom(data):
            return from_dicom(data, max_pixels, force=True, window=chosen)
        fmt = _signature(data)
        if fmt == "GIF":
            raise ImageError(f"GIF images are not supported: save it as PNG (supported: {_FORMATS_TEXT})") from None
        if fmt is not None:
            raise ImageError(f"this {fmt} file is damaged: it starts like a {fmt} image, but its contents "
                             "cannot be read (the file is corrupt or was cut short)") from None
        raise ImageError(f"not an image: expected {_FORMATS_TEXT}") from None


# --- Pillow formats ------------------------------------------------------------------------------

class _NotAnImage(Exception):
    """Pillow recognised none of the formats; the caller may still try DICOM."""


_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8", "JPEG"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
               (b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"BM", "BMP"))


def _signature(data: bytes) -> str | None:
    """The format a file's first bytes announce, whether or not the rest is readable."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _SIGNATURES if data.startswith(magic)), None)


def _from_encoded(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode PNG/JPEG/TIFF/BMP/WebP bytes, checking the header's size before the pixels."""
    try:
        image = Image.open(io.BytesIO(data), formats=_PILLOW_FORMATS)  # lazy: reads the header only
    except UnidentifiedImageError:
        raise _NotAnImage from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow checks its own limit inside open(); the warning arrives here when warnings are errors.
        raise ImageError(f"the image is too large for Pillow to open safely ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - a recognised format whose header is broken
        fmt = _signature(data)
        what = f"this {fmt} file is damaged: its header" if fmt else "the image header"
        raise ImageError(f"{what} cannot be read ({exc})") from exc
    with image:
        return _from_pillow(image, max_pixels, what=f"this {image.format} file" if image.format else "the image file")


def _from_pillow(image: Image.Image, max_pixels: int, what: str = "the image file") -> np.ndarray:
    """Size check, decode, EXIF orientation, then mode-specific conversion to [0, 1]."""
    width, height = image.size
    check_pixel_count(width, height, max_pixels)
    with decoding(f"{what} is damaged or truncated"):
        image.load()
        image = ImageOps.exif_transpose(image)
    return finish(_pillow_to_unit(image))


def _pillow_to_unit(image: Image.Image) -> np.ndarray:
    """Convert a decoded Pillow image of any mode to ``(H, W)`` or ``(H, W, 3)`` floats."""
    mode = image.mode
    if mode == "1":
        return np.asarray(image, dtype=np.float32)  # bool pixels: 0 or 1
    if mode in ("L", "RGB"):
        return np.asarray(image, dtype=np.float32) / 255.0
    if mode.startswith("I;16"):  # I;16, I;16B, I;16L, I;16N: unsigned 16-bit, any byte order
        return np.asarray(image).astype(np.float32) / 65535.0
    if mode == "I":
        return _scale_int32(np.asarray(image))
    if mode == "F":
        return min_max(np.asarray(image, dtype=np.float64))
    if mode in ("LA", "La"):
        return _on_white(np.asarray(image.convert("LA"), dtype=np.float32) / 255.0)
    if mode in ("RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in image.info):
        return _on_white(np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0)
    try:  # P, CMYK, YCbCr, LAB, HSV, RGBX, ...
        rgb = image.convert("RGB")
    except ValueError as exc:
        raise ImageError(f"unsupported image mode {mode!r}") from exc
    return np.asarray(rgb, dtype=np.float32) / 255.0


def _scale_int32(values: np.ndarray) -> np.ndarray:
    """Mode I: Pillow uses it for 16-bit data too, so 0..65535 is read as 16-bit, else min-max."""
    if values.size and values.min() >= 0 and values.max() <= 65535:
        return values.astype(np.float32) / 65535.0
    return min_max(values.astype(np.float64))


def _on_white(values: np.ndarray) -> np.ndarray:
    """Composite ``(H, W, C + 1)`` colour-plus-alpha onto white: ``c * a + (1 - a)``."""
    colour, alpha = values[..., :-1], values[..., -1:]
    out = colour * alpha + (1.0 - alpha)
    return out[..., 0] if out.shape[-1] == 1 else out
