"""The image the user chose: the built-in samples, uploads, each decoded once per content hash."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import densenet
import densenet.demo
from densenet.images import MAX_BYTES, MAX_PIXELS, SUPPORTED_EXTENSIONS, ImageError

from . import analysis, session
from .sources import digest

__all__ = ["MAX_BYTES", "MAX_PIXELS", "SUPPORTED_EXTENSIONS", "ImageError", "ImageInput", "Sample", "file_digest",
           "read_image", "samples"]


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


@dataclass(frozen=True)
class ImageInput:
    """The chosen image: its name, a hash of its content and window, and pixels (float32 in [0, 1], (H, W[, 3])).

    Attributes:
        read: the file's bytes again (a DICOM export carries the source's identifiers over).
        dicom: what the file says about itself when it is a DICOM (its window, value range), else ``None``.
    """

    name: str
    digest: str
    pixels: np.ndarray = field(repr=False, compare=False)
    read: Callable[[], bytes] | None = field(default=None, repr=False, compare=False)
    dicom: object | None = field(default=None, repr=False, compare=False)

    def thumbnail(self) -> np.ndarray:
        """A small uint8 copy for the sidebar (a 40-megapixel upload is not re-encoded on every rerun)."""
        return session.memo("thumbnails", self.digest, lambda: analysis.thumbnail(self.pixels), max_entries=4)


def file_digest(file_id: str, read: Callable[[], bytes]) -> str:
    """Content hash of a file, computed once per upload (reading and hashing 100 MB takes a while)."""
    return session.memo("digests", file_id, lambda: digest(read()), max_entries=8)


def dicom_info(file_hash: str, read: Callable[[], bytes]) -> object | None:
    """The DICOM facts of a file (``None`` for other formats), read once per content hash."""
    return session.memo("dicom_info", file_hash, lambda: densenet.dicom_info(read()) or False, max_entries=8) or None


def read_image(name: str, file_hash: str, read: Callable[[], bytes], window: object = None) -> ImageInput:
    """Decode once per content hash and DICOM window; raises :class:`ImageError` for bad files."""
    key = file_hash if window is None else f"{file_hash}@{window!r}"
    pixels = session.memo("images", key, lambda: densenet.load_image(read(), window=window), max_entries=4)
    return ImageInput(name, key, pixels, read, dicom_info(file_hash, read))
