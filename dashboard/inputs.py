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
    """The chosen image: its name, content hash and pixels (float32 in [0, 1], (H, W[, 3]))."""

    name: str
    digest: str
    pixels: np.ndarray = field(repr=False, compare=False)

    def thumbnail(self) -> np.ndarray:
        """A small uint8 copy for the sidebar (a 40-megapixel upload is not re-encoded on every rerun)."""
        return session.memo("thumbnails", self.digest, lambda: analysis.thumbnail(self.pixels), max_entries=4)


def file_digest(file_id: str, read: Callable[[], bytes]) -> str:
    """Content hash of a file, computed once per upload (reading and hashing 100 MB takes a while)."""
    return session.memo("digests", file_id, lambda: digest(read()), max_entries=8)


def read_image(name: str, file_hash: str, read: Callable[[], bytes]) -> ImageInput:
    """Decode once per content hash; raises :class:`ImageError` for bad files."""
    pixels = session.memo("images", file_hash, lambda: densenet.load_image(read()), max_entries=4)
    return ImageInput(name, file_hash, pixels)
