"""How counts and sizes are written for people, on every page and in the lesson: 7.98 M, 1.20 GB."""

from __future__ import annotations


def big(n: float) -> str:
    """A large count with a unit prefix: ``7.98 M``, ``1.20 k``, ``512``."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f}"


def byte_size(n: float) -> str:
    """A number of bytes with a unit: ``1.20 GB``, ``3.40 MB``, ``512 B``."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} B"
