"""Write a self-describing ``.safetensors`` checkpoint: the next load needs no choices."""

from __future__ import annotations

import os

from torch import Tensor

from ..model import DenseNet
from .metadata import metadata_strings


def file_contents(model: DenseNet) -> tuple[dict[str, Tensor], dict[str, str]]:
    """The tensors and the string metadata a self-describing checkpoint holds."""
    metadata = metadata_strings(model)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    return state, metadata


def save_checkpoint(model: DenseNet, path: str | os.PathLike) -> None:
    """Write a self-describing ``.safetensors`` file: the next load needs no choices.

    The metadata holds the config, the class names, the output kind (``"softmax"`` or
    ``"multilabel"``) with per-finding thresholds (``densenet.outputs``), the preprocessing with
    its geometry, and ``model.metadata`` (which must be JSON-serialisable, e.g.
    ``{"cam_layer": "features.denseblock2"}``; its ``source`` entry is not saved).
    """
    from safetensors.torch import save_file

    state, metadata = file_contents(model)
    save_file(state, os.fspath(path), metadata=metadata)


def checkpoint_bytes(model: DenseNet) -> bytes:
    """The bytes :func:`save_checkpoint` would write (for a download button)."""
    from safetensors.torch import save

    state, metadata = file_contents(model)
    return save(state, metadata=metadata)
