"""What the image back-ends share: the error, the size limits, safe reading, and the [0, 1] float contract."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

MAX_PIXELS = 40_000_000
"""Default limit on width * height (per decoded frame): about a 6300 x 6300 image."""

MAX_BYTES = 50 * 1024 * 1024
"""Default limit on the size of the encoded file, checked before it is read."""


class ImageError(ValueError):
    """The input is not an image this library can read; the message says why in plain words."""


def read_bytes(source: str | os.PathLike | bytes | bytearray | memoryview | BinaryIO, max_bytes: int) -> bytes:
    """All bytes of ``source``, refusing more than ``max_bytes`` before reading them."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        check_byte_count(len(data), max_bytes)
        return data
    if isinstance(source, (str, os.PathLike)):
        return read_path(Path(source), max_bytes)
    if hasattr(source, "read"):
        data = source.read(max_bytes + 1)  # one byte more tells "too large" from "exactly the limit"
        if isinstance(data, str):
            raise TypeError("load_image needs a file opened in binary mode ('rb'), got a text-mode file")
        check_byte_count(len(data), max_bytes)
        return bytes(data)
    raise TypeError(f"load_image takes a path, bytes, a binary file or a PIL image, got {type(source).__name__}")


def read_path(path: Path, max_bytes: int) -> bytes:
    """A file's bytes, refusing a missing path, a folder or more than ``max_bytes``."""
    if not path.exists():
        raise ImageError(f"file not found: {path}")
    if not path.is_file():
        raise ImageError(f"not a file: {path}")
    check_byte_count(path.stat().st_size, max_bytes)
    return path.read_bytes()


def check_byte_count(count: int, max_bytes: int) -> None:
    """Refuse a file of more than ``max_bytes``."""
    if count > max_bytes:
        limit = f"{max_bytes / 2**20:.0f} MB" if max_bytes >= 2**20 else f"{max_bytes} bytes"
        raise ImageError(f"the file is too large: the limit is {limit}")


def check_pixel_count(width: int, height: int, max_pixels: int, frames: int = 1) -> None:
    """Refuse an image without pixels or of more than ``max_pixels`` (times ``frames``), from its header."""
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
def decoding(what: str) -> Iterator[None]:
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


def min_max(values: np.ndarray, low: float | None = None, high: float | None = None) -> np.ndarray:
    """Scale ``[low, high]`` (default: the finite min and max) onto [0, 1]; constant gives zeros."""
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape)
    low = float(values[finite].min()) if low is None else low
    high = float(values[finite].max()) if high is None else high
    if high <= low:
        return np.zeros(values.shape)
    return (values - low) / (high - low)


def finish(values: np.ndarray) -> np.ndarray:
    """The library-wide contract: contiguous float32, finite, clipped to [0, 1]."""
    values = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.ascontiguousarray(np.clip(values, 0.0, 1.0))
