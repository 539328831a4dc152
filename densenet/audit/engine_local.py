"""The local engine: chunks one after another in this process, batched, committed as they finish."""

from __future__ import annotations

from collections.abc import Callable

from .core import Auditor, ChunkResult
from .dataset import Item


def run(auditor: Auditor, chunks: list[tuple[int, list[Item]]], on_chunk: Callable[[int, ChunkResult], None],
        on_images: Callable[[int], None]) -> None:
    """Audit ``chunks`` in order.

    Args:
        auditor: holds the model and settings.
        chunks: ``(chunk id, items)`` still to do.
        on_chunk: called with each finished chunk (it commits it).
        on_images: called after every batch with the number of images it held; raising from
            it (e.g. :class:`~densenet.explain.Cancelled`) stops the run between batches, and
            the unfinished chunk is simply redone on resume.
    """
    for chunk, items in chunks:
        result = auditor.run_chunk(chunk, items, progress=on_images)
        on_chunk(chunk, result)
