"""Read DICOM files: the first frame as a float image in [0, 1], windowed as a viewer would, and the facts a
window control needs (:func:`dicom_info`). The DICOM back-end of :func:`densenet.images.load_image`.

By default the file's own VOI LUT or window (centre/width) maps its values to [0, 1]; a :class:`Window`
(or a preset name from :data:`WINDOW_PRESETS`: ``"lung"``, ``"mediastinum"``, ``"bone"``) applies another
one, so what the model sees changes with it. MONOCHROME1 is inverted after the window; colour DICOM is
divided by its bit depth's maximum.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

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

from .image_checks import MAX_BYTES, MAX_PIXELS, ImageError, check_pixel_count, decoding, finish, min_max, read_bytes

__all__ = ["DicomInfo", "WINDOW_PRESETS", "Window", "WindowSpec", "dicom_info", "from_dicom", "has_dicom_magic",
           "may_be_raw_dicom", "resolve_window"]

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


def resolve_window(spec: WindowSpec) -> Window | None:
    """A :class:`Window` from a window, ``(centre, width)``, a preset name, or ``None``."""
    if spec is None or isinstance(spec, Window):
        return spec
    if isinstance(spec, str):
        if spec not in WINDOW_PRESETS:
            raise ValueError(f"unknown window preset {spec!r}; choose from {', '.join(WINDOW_PRESETS)}")
        return WINDOW_PRESETS[spec]
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        return Window(float(spec[0]), float(spec[1]))
    raise TypeError(f"window must be a Window, (centre, width), a preset name or None, got {spec!r}")


def has_dicom_magic(data: bytes) -> bool:
    """The file has DICOM's 128-byte preamble and ``DICM``."""
    return data[_DICOM_MAGIC_OFFSET:_DICOM_MAGIC_OFFSET + 4] == b"DICM"


def may_be_raw_dicom(data: bytes) -> bool:
    """A DICOM data set without preamble starts with a group 0x0002 or 0x0008 tag (little endian)."""
    return len(data) >= 8 and data[:2] in (b"\x02\x00", b"\x08\x00") and data[3:4] == b"\x00"


def from_dicom(data: bytes, max_pixels: int, *, force: bool, window: Window | None = None) -> np.ndarray:
    """Decode the first frame of a DICOM file and map it to display values in [0, 1].

    Args:
        data: the file's bytes.
        max_pixels: refuse frames larger than this (checked from the header).
        force: read a data set without the DICM preamble.
        window: the window to apply instead of the file's own.

    Raises:
        ImageError: unreadable, no pixel data, too large, or no decoder installed.
    """
    with decoding("not a readable DICOM file"):
        ds = pydicom.dcmread(io.BytesIO(data), force=force)
    if not any(keyword in ds for keyword in _PIXEL_DATA_KEYWORDS):
        raise ImageError("this DICOM file has no image (no pixel data)")
    with decoding("the DICOM header is damaged"):  # pydicom parses element values lazily, on access
        _ensure_transfer_syntax(ds)
        width, height = int(ds.get("Columns", 0) or 0), int(ds.get("Rows", 0) or 0)
        frames = 1 if _pixel_array_v3 is not None else _frame_count(ds)  # pydicom 2.4 decodes every frame
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    check_pixel_count(width, height, max_pixels, frames=frames)
    pixels = _decode_first_frame(ds)
    if photometric.startswith("MONOCHROME"):
        return finish(_monochrome_to_unit(pixels, ds, invert=photometric == "MONOCHROME1", window=window))
    return finish(_colour_to_unit(pixels, ds, photometric))


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
    with decoding(f"the DICOM pixel data could not be decoded ({syntax.name})"):
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
    with decoding("the DICOM rescale or window values are invalid"):
        values = apply_modality_lut(pixels, ds)
        unit = _linear_window(values, window) if window is not None else _apply_voi(values, ds)
    # MONOCHROME1 stores dense tissue as low values; inverting after the window keeps bright = dense.
    return 1.0 - unit if invert else unit


def _apply_voi(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """Window ``values`` with the file's VOI LUT or centre/width; min-max when it has neither."""
    has_lut = bool(ds.get("VOILUTSequence"))
    has_window = "WindowCenter" in ds and "WindowWidth" in ds
    if not (has_lut or has_window):
        return min_max(values.astype(np.float64))
    windowed = np.asarray(apply_voi_lut(values, ds, index=0), dtype=np.float64)
    low, high = _voi_output_range(ds)
    return min_max(windowed, low, high)


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
        with decoding("the DICOM colour palette is invalid"):
            rgb = apply_color_lut(pixels, ds)  # uint8 or uint16, per the palette's bit depth
        return rgb.astype(np.float64) / float(np.iinfo(rgb.dtype).max)
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ImageError(f"unsupported DICOM photometric interpretation {photometric!r}")
    if np.issubdtype(pixels.dtype, np.floating):
        return min_max(pixels.astype(np.float64))
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
    data = read_bytes(source, max_bytes)
    if not has_dicom_magic(data) and not may_be_raw_dicom(data):
        return None
    with decoding("not a readable DICOM file"):
        ds = pydicom.dcmread(io.BytesIO(data), force=not has_dicom_magic(data))
    if not any(keyword in ds for keyword in _PIXEL_DATA_KEYWORDS):
        raise ImageError("this DICOM file has no image (no pixel data)")
    with decoding("the DICOM header is damaged"):
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
        check_pixel_count(width, height, max_pixels, frames=1 if _pixel_array_v3 is not None else _frame_count(ds))
        with decoding("the DICOM rescale values are invalid"):
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
