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

DICOM windowing: by default the file's own VOI LUT or window (centre/width) maps its values to
[0, 1]; ``load_image(..., window=Window(centre, width))`` (or a preset name from
:data:`WINDOW_PRESETS`: ``"lung"``, ``"mediastinum"``, ``"bone"``) applies another one, so what the
model sees changes with it. :func:`dicom_info` reads a file's default window and value range
(for the controls that choose one).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

try:  # pydicom >= 3
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, convert_color_space
    from pydicom.pixels import pixel_array as _pixel_array_v3
except ImportError:  # pydicom 2.4
    from pydicom.pixel_data_handlers.util import (
        apply_color_lut, apply_modality_lut, apply_voi_lut, convert_color_space,
    )
    _pixel_array_v3 = None
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

__all__ = ["ImageError", "load_image", "MAX_PIXELS", "MAX_BYTES", "SUPPORTED_EXTENSIONS", "Window", "WINDOW_PRESETS",
           "DicomInfo", "dicom_info"]

MAX_PIXELS = 40_000_000
"""Default limit on width * height (per decoded frame): about a 6300 x 6300 image."""

MAX_BYTES = 50 * 1024 * 1024
"""Default limit on the size of the encoded file, checked before it is read."""

SUPPORTED_EXTENSIONS = ("png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp", "dcm", "dicom")
"""File name extensions to offer in an upload dialog; the content decides the actual format."""

# Restricting Pillow to these formats keeps rarely used, riskier decoders (EPS via Ghostscript,
# ICNS, ...) out of reach of uploads. Camera MPO files open through the JPEG entry.
_PILLOW_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "WEBP")
_FORMATS_TEXT = "PNG, JPEG, TIFF, BMP, WebP or DICOM"

_DICOM_MAGIC_OFFSET = 128
_PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

# What to install when pydicom has no decoder for a compressed transfer syntax.
_DECODER_PACKAGES = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg and pylibjpeg-libjpeg (or pillow, or python-gdcm)",
    "1.2.840.10008.1.2.4.51": "pylibjpeg and pylibjpeg-libjpeg, or python-gdcm",
    "1.2.840.10008.1.2.4.57": "pylibjpeg and pylibjpeg-libjpeg, or python-gdcm",
    "1.2.840.10008.1.2.4.70": "pylibjpeg and pylibjpeg-libjpeg, or python-gdcm",
    "1.2.840.10008.1.2.4.80": "pylibjpeg and pylibjpeg-libjpeg, or python-gdcm (or pyjpegls)",
    "1.2.840.10008.1.2.4.81": "pylibjpeg and pylibjpeg-libjpeg, or python-gdcm (or pyjpegls)",
    "1.2.840.10008.1.2.4.90": "pylibjpeg and pylibjpeg-openjpeg, or python-gdcm",
    "1.2.840.10008.1.2.4.91": "pylibjpeg and pylibjpeg-openjpeg, or python-gdcm",
    "1.2.840.10008.1.2.4.201": "pylibjpeg and pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.202": "pylibjpeg and pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.203": "pylibjpeg and pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.5": "pylibjpeg and pylibjpeg-rle (pydicom >= 3 decodes RLE itself)",
}
_ANY_DECODER = "pylibjpeg with pylibjpeg-libjpeg and pylibjpeg-openjpeg, or python-gdcm"


class ImageError(ValueError):
    """The input is not an image this library can read; the message says why in plain words."""


@dataclass(frozen=True)
class Window:
    """A DICOM VOI window: values from ``centre - width / 2`` to ``centre + width / 2`` span black to white.

    Applied as DICOM's linear window function (PS3.3 C.11.2.1.2.1) to the modality values
    (Hounsfield units for CT, after the rescale).

    Attributes:
        centre: the window centre (level).
        width: the window width, at least 1.
        name: a label ("lung", the file's explanation, ...).
    """

    centre: float
    width: float
    name: str = ""

    def __post_init__(self) -> None:
        if not (np.isfinite(self.centre) and np.isfinite(self.width)):
            raise ValueError(f"window centre and width must be finite, got {self.centre}, {self.width}")
        if self.width < 1:
            raise ValueError(f"window width must be at least 1, got {self.width}")


WINDOW_PRESETS: dict[str, Window] = {
    "lung": Window(-600.0, 1500.0, "lung"),
    "mediastinum": Window(40.0, 400.0, "mediastinum"),
    "bone": Window(400.0, 1800.0, "bone"),
}
"""CT windows in Hounsfield units, as radiology viewers offer them."""

WindowSpec = Window | tuple[float, float] | str | None


def _window(spec: WindowSpec) -> Window | None:
    if spec is None or isinstance(spec, Window):
        return spec
    if isinstance(spec, str):
        if spec not in WINDOW_PRESETS:
            raise ValueError(f"unknown window preset {spec!r}; choose from {', '.join(WINDOW_PRESETS)}")
        return WINDOW_PRESETS[spec]
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        return Window(float(spec[0]), float(spec[1]))
    raise TypeError(f"window must be a Window, (centre, width), a preset name or None, got {spec!r}")


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
    chosen = _window(window)
    if isinstance(source, Image.Image):
        return _from_pillow(source, max_pixels)
    data = _read_bytes(source, max_bytes)
    if not data:
        raise ImageError("the file is empty")
    if _has_dicom_magic(data):
        return _from_dicom(data, max_pixels, force=False, window=chosen)
    try:
        return _from_encoded(data, max_pixels)
    except _NotAnImage:
        if _may_be_raw_dicom(data):
            return _from_dicom(data, max_pixels, force=True, window=chosen)
        fmt = _signature(data)
        if fmt == "GIF":
            raise ImageError(f"GIF images are not supported: save it as PNG (supported: {_FORMATS_TEXT})") from None
        if fmt is not None:
            raise ImageError(f"this {fmt} file is damaged: it starts like a {fmt} image, but its contents "
                             "cannot be read (the file is corrupt or was cut short)") from None
        raise ImageError(f"not an image: expected {_FORMATS_TEXT}") from None


# --- reading the source --------------------------------------------------------------------------

def _read_bytes(source: str | os.PathLike | bytes | bytearray | memoryview | BinaryIO, max_bytes: int) -> bytes:
    """All bytes of ``source``, refusing more than ``max_bytes`` before reading them."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        _check_byte_count(len(data), max_bytes)
        return data
    if isinstance(source, (str, os.PathLike)):
        return _read_path(Path(source), max_bytes)
    if hasattr(source, "read"):
        data = source.read(max_bytes + 1)  # one byte more tells "too large" from "exactly the limit"
        if isinstance(data, str):
            raise TypeError("load_image needs a file opened in binary mode ('rb'), got a text-mode file")
        _check_byte_count(len(data), max_bytes)
        return bytes(data)
    raise TypeError(f"load_image takes a path, bytes, a binary file or a PIL image, got {type(source).__name__}")


def _read_path(path: Path, max_bytes: int) -> bytes:
    if not path.exists():
        raise ImageError(f"file not found: {path}")
    if not path.is_file():
        raise ImageError(f"not a file: {path}")
    _check_byte_count(path.stat().st_size, max_bytes)
    return path.read_bytes()


def _check_byte_count(count: int, max_bytes: int) -> None:
    if count > max_bytes:
        limit = f"{max_bytes / 2**20:.0f} MB" if max_bytes >= 2**20 else f"{max_bytes} bytes"
        raise ImageError(f"the file is too large: the limit is {limit}")


def _check_pixel_count(width: int, height: int, max_pixels: int, frames: int = 1) -> None:
    if width <= 0 or height <= 0:
        raise ImageError(f"the image has no pixels ({width} x {height})")
    pixels = width * height * frames
    if pixels > max_pixels:
        what = f"{width} x {height}" + (f" x {frames} frames" if frames > 1 else "")
        raise ImageError(
            f"the image is too large: {what} = {pixels / 1e6:.1f} megapixels, "
            f"the limit is {max_pixels / 1e6:.1f} megapixels"
        )


@contextmanager
def _decoding(what: str) -> Iterator[None]:
    """Turn a decoder's failure into an ImageError.

    Pillow and pydicom raise many exception types on malformed bytes (OSError, SyntaxError,
    ValueError, struct.error, zlib.error, AttributeError, ...), so blocks using this context
    must hold only library calls on untrusted data.
    """
    try:
        yield
    except (ImageError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - see docstring
        raise ImageError(f"{what} ({exc})") from exc


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
    _check_pixel_count(width, height, max_pixels)
    with _decoding(f"{what} is damaged or truncated"):
        image.load()
        image = ImageOps.exif_transpose(image)
    return _finish(_pillow_to_unit(image))


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
        return _min_max(np.asarray(image, dtype=np.float64))
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
    return _min_max(values.astype(np.float64))


def _on_white(values: np.ndarray) -> np.ndarray:
    """Composite ``(H, W, C + 1)`` colour-plus-alpha onto white: ``c * a + (1 - a)``."""
    colour, alpha = values[..., :-1], values[..., -1:]
    out = colour * alpha + (1.0 - alpha)
    return out[..., 0] if out.shape[-1] == 1 else out


# --- DICOM ---------------------------------------------------------------------------------------

def _has_dicom_magic(data: bytes) -> bool:
    return data[_DICOM_MAGIC_OFFSET:_DICOM_MAGIC_OFFSET + 4] == b"DICM"


def _may_be_raw_dicom(data: bytes) -> bool:
    """A DICOM data set without preamble starts with a group 0x0002 or 0x0008 tag (little endian)."""
    return len(data) >= 8 and data[:2] in (b"\x02\x00", b"\x08\x00") and data[3:4] == b"\x00"


def _from_dicom(data: bytes, max_pixels: int, *, force: bool, window: Window | None = None) -> np.ndarray:
    """Decode the first frame of a DICOM file and map it to display values in [0, 1]."""
    with _decoding("not a readable DICOM file"):
        ds = pydicom.dcmread(io.BytesIO(data), force=force)
    if not any(keyword in ds for keyword in _PIXEL_DATA_KEYWORDS):
        raise ImageError("this DICOM file has no image (no pixel data)")
    with _decoding("the DICOM header is damaged"):  # pydicom parses element values lazily, on access
        _ensure_transfer_syntax(ds)
        width, height = int(ds.get("Columns", 0) or 0), int(ds.get("Rows", 0) or 0)
        frames = 1 if _pixel_array_v3 is not None else _frame_count(ds)  # pydicom 2.4 decodes every frame
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    _check_pixel_count(width, height, max_pixels, frames=frames)
    pixels = _decode_first_frame(ds)
    if photometric.startswith("MONOCHROME"):
        return _finish(_monochrome_to_unit(pixels, ds, invert=photometric == "MONOCHROME1", window=window))
    return _finish(_colour_to_unit(pixels, ds, photometric))


def _frame_count(ds: Dataset) -> int:
    return max(int(ds.get("NumberOfFrames", 1) or 1), 1)


def _ensure_transfer_syntax(ds: Dataset) -> None:
    """Files without a meta header (read with force) get the syntax their data set was read in."""
    meta = ds.file_meta
    if "TransferSyntaxUID" in meta:
        return
    encoding = getattr(ds, "original_encoding", None)  # pydicom >= 3
    implicit = encoding[0] if encoding else getattr(ds, "is_implicit_VR", True)
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian


def _decode_first_frame(ds: Dataset) -> np.ndarray:
    """Pixel values of frame 0: ``(rows, cols)`` or ``(rows, cols, samples)``."""
    syntax = UID(str(ds.file_meta.TransferSyntaxUID))
    _check_decoder(syntax)
    with _decoding(f"the DICOM pixel data could not be decoded ({syntax.name})"):
        if _pixel_array_v3 is not None:
            return _pixel_array_v3(ds, index=0)  # decodes one frame, converts YBR to RGB
        pixels = ds.pixel_array  # pydicom 2.4: every frame
    if _frame_count(ds) > 1:
        pixels = pixels[0]
    photometric = str(ds.get("PhotometricInterpretation", ""))
    if photometric in ("YBR_FULL", "YBR_FULL_422"):  # pydicom 2.4 handlers keep YCbCr; JPEG 2000 gives RGB
        pixels = convert_color_space(pixels, photometric, "RGB")
    return pixels


def _check_decoder(syntax: UID) -> None:
    """Refuse, naming the package to install, when no decoder for ``syntax`` is available."""
    if not syntax.is_compressed:
        return
    hint = _DECODER_PACKAGES.get(str(syntax), _ANY_DECODER)
    try:
        available = _decoder_available(syntax)
    except NotImplementedError:
        raise ImageError(f"DICOM files with transfer syntax '{syntax.name}' ({syntax}) are not supported") from None
    if not available:
        raise ImageError(
            f"cannot decode this DICOM file: no decoder for its transfer syntax '{syntax.name}' "
            f"is installed; install {hint}"
        )


def _decoder_available(syntax: UID) -> bool:
    """Whether pydicom can decode ``syntax`` with what is installed; NotImplementedError if never."""
    try:
        from pydicom.pixels import get_decoder
    except ImportError:  # pydicom 2.4: a list of handler modules
        handlers = pydicom.config.pixel_data_handlers
        return any(h.supports_transfer_syntax(syntax) and h.is_available() for h in handlers)
    return get_decoder(syntax).is_available


def _monochrome_to_unit(pixels: np.ndarray, ds: Dataset, *, invert: bool, window: Window | None = None) -> np.ndarray:
    """Modality LUT (rescale), then the chosen window or the file's VOI LUT/window, then MONOCHROME1 inversion."""
    with _decoding("the DICOM rescale or window values are invalid"):
        values = apply_modality_lut(pixels, ds)
        unit = _linear_window(values, window) if window is not None else _apply_voi(values, ds)
    # MONOCHROME1 stores dense tissue as low values; inverting after the window keeps bright = dense.
    return 1.0 - unit if invert else unit


def _apply_voi(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """Window ``values`` with the file's VOI LUT or centre/width; min-max when it has neither."""
    has_lut = bool(ds.get("VOILUTSequence"))
    has_window = "WindowCenter" in ds and "WindowWidth" in ds
    if not (has_lut or has_window):
        return _min_max(values.astype(np.float64))
    windowed = np.asarray(apply_voi_lut(values, ds, index=0), dtype=np.float64)
    low, high = _voi_output_range(ds)
    return _min_max(windowed, low, high)


def _linear_window(values: np.ndarray, window: Window) -> np.ndarray:
    """DICOM's LINEAR window function (PS3.3 C.11.2.1.2.1) onto [0, 1]."""
    c, w = window.centre, window.width
    if w <= 1:  # the standard's width-1 window is a threshold at c - 0.5
        return (np.asarray(values, dtype=np.float64) > c - 0.5).astype(np.float64)
    return np.clip((np.asarray(values, dtype=np.float64) - (c - 0.5)) / (w - 1) + 0.5, 0.0, 1.0)


def _voi_output_range(ds: Dataset) -> tuple[float, float]:
    """The darkest and brightest values the file's VOI transform can output.

    pydicom maps a window onto a range derived from BitsStored, the rescale and the modality
    LUT, and a VOI LUT onto its table's values. Rather than re-derive those rules, push a probe
    through the same function: the LUT's whole domain, or inputs far outside the window
    (far enough that even the SIGMOID function reaches its limits).
    """
    if ds.get("VOILUTSequence"):
        entries, first, _ = (int(v) for v in ds.VOILUTSequence[0].LUTDescriptor)
        probe = np.arange(first, first + (entries or 2**16))
    else:
        centre, width = _first_value(ds.WindowCenter), abs(_first_value(ds.WindowWidth))
        probe = np.array([centre - 100 * width - 1, centre + 100 * width + 1], dtype=np.float64)
    out = np.asarray(apply_voi_lut(probe, ds, index=0), dtype=np.float64)
    return float(out.min()), float(out.max())


def _first_value(value: object) -> float:
    """Window centre/width may be multi-valued (one per alternative window); use the first."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0]
    return float(value)


def _colour_to_unit(pixels: np.ndarray, ds: Dataset, photometric: str) -> np.ndarray:
    """RGB (YBR already converted) or palette colour, divided by its bit depth's maximum."""
    if photometric == "PALETTE COLOR":
        with _decoding("the DICOM colour palette is invalid"):
            rgb = apply_color_lut(pixels, ds)  # uint8 or uint16, per the palette's bit depth
        return rgb.astype(np.float64) / float(np.iinfo(rgb.dtype).max)
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ImageError(f"unsupported DICOM photometric interpretation {photometric!r}")
    if np.issubdtype(pixels.dtype, np.floating):
        return _min_max(pixels.astype(np.float64))
    bits = int(ds.get("BitsStored", pixels.dtype.itemsize * 8))
    return pixels.astype(np.float64) / float(2**bits - 1)


@dataclass(frozen=True)
class DicomInfo:
    """What a window control needs to know about a DICOM file.

    Attributes:
        modality: ``"CT"``, ``"CR"``, ``"DX"``, ``"MR"``, ... (``""`` if absent).
        monochrome: windowing applies (colour DICOM is shown as stored).
        window: the file's default window (its first centre/width), or ``None``.
        windows: every window the file offers, labelled by its explanations where given.
        has_voi_lut: the file's default is a VOI LUT table (used when no window is chosen).
        value_range: lowest and highest modality value in the image (after the rescale), for
            slider bounds; ``None`` for colour images.
        units: ``"HU"`` for CT, else ``""``.
        presets: the windows to offer as presets (:data:`WINDOW_PRESETS` for CT, else none).
    """

    modality: str
    monochrome: bool
    window: Window | None
    windows: tuple[Window, ...]
    has_voi_lut: bool
    value_range: tuple[float, float] | None
    units: str
    presets: dict[str, Window]


def _values(value: object) -> list[float]:
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [float(v) for v in value]
    return [float(value)]


def dicom_info(source: str | os.PathLike | bytes | bytearray | memoryview | BinaryIO, *,
               max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_BYTES) -> DicomInfo | None:
    """The default window and value range of a DICOM file; ``None`` for any other image.

    Raises:
        ImageError: as :func:`load_image`, for a DICOM file that cannot be read.
    """
    data = _read_bytes(source, max_bytes)
    if not _has_dicom_magic(data) and not _may_be_raw_dicom(data):
        return None
    with _decoding("not a readable DICOM file"):
        ds = pydicom.dcmread(io.BytesIO(data), force=not _has_dicom_magic(data))
    if not any(keyword in ds for keyword in _PIXEL_DATA_KEYWORDS):
        raise ImageError("this DICOM file has no image (no pixel data)")
    with _decoding("the DICOM header is damaged"):
        _ensure_transfer_syntax(ds)
        modality = str(ds.get("Modality", "") or "").upper()
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
        width, height = int(ds.get("Columns", 0) or 0), int(ds.get("Rows", 0) or 0)
        windows: list[Window] = []
        if "WindowCenter" in ds and "WindowWidth" in ds:
            centres, widths = _values(ds.WindowCenter), _values(ds.WindowWidth)
            labels = _values_text(ds.get("WindowCenterWidthExplanation"))
            for i, (c, w) in enumerate(zip(centres, widths)):
                if np.isfinite(c) and np.isfinite(w) and w >= 1:
                    windows.append(Window(c, w, labels[i] if i < len(labels) else f"file window {i + 1}"))
    monochrome = photometric.startswith("MONOCHROME")
    value_range = None
    if monochrome:
        _check_pixel_count(width, height, max_pixels, frames=1 if _pixel_array_v3 is not None else _frame_count(ds))
        with _decoding("the DICOM rescale values are invalid"):
            values = np.asarray(apply_modality_lut(_decode_first_frame(ds), ds), dtype=np.float64)
        finite = values[np.isfinite(values)]
        value_range = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    return DicomInfo(modality=modality, monochrome=monochrome, window=windows[0] if windows else None,
                     windows=tuple(windows), has_voi_lut=bool(ds.get("VOILUTSequence")), value_range=value_range,
                     units="HU" if modality == "CT" else "", presets=dict(WINDOW_PRESETS) if modality == "CT" else {})


def _values_text(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [str(v) for v in value]
    return [str(value)]


# --- shared --------------------------------------------------------------------------------------

def _min_max(values: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    """Scale ``[low, high]`` (default: the finite min and max) onto [0, 1]; constant gives zeros."""
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape)
    low = float(values[finite].min()) if low is None else low
    high = float(values[finite].max()) if high is None else high
    if high <= low:
        return np.zeros(values.shape)
    return (values - low) / (high - low)


def _finish(values: np.ndarray) -> np.ndarray:
    """The library-wide contract: contiguous float32, finite, clipped to [0, 1]."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.ascontiguousarray(np.clip(values, 0.0, 1.0))
