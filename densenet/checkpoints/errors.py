"""The one error every checkpoint step raises: a reason a person can act on."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded, with a reason a person can act on."""
