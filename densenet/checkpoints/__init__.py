"""Load the DenseNet checkpoint a user actually has, safely, and infer its architecture; write our own.

Accepted: torchvision state dicts (current and legacy ``norm.1`` keys), state dicts wrapped in
``{"state_dict": ...}`` / ``{"model": ...}`` or prefixed with ``module.``, ``.safetensors`` files,
timm DenseNet state dicts, MONAI 2-D DenseNets, torchxrayvision DenseNet-121 checkpoints, and whole
pickled models whose every class is a known layer (read as plain records; no constructor of theirs
ever runs). Nothing is unpickled outside ``torch.load(weights_only=True)``.

What the outputs mean travels too: our own files state the output kind (softmax or one sigmoid per
finding), class names, operating thresholds and preprocessing (with its geometry) in their
safetensors metadata (:func:`save_checkpoint`); torchxrayvision's ``op_threshs`` make a model
multi-label with those thresholds. ``model.metadata["outputs_stated"]`` says whether the file said
so (see :func:`densenet.labels.outputs`); otherwise the app offers the choice.

One module per job: :mod:`.reading` (safe reading), :mod:`.keys` (unwrapping, key remapping),
:mod:`.architecture` (inferring the config, strict loading), :mod:`.metadata` (what the file says about
its outputs), :mod:`.loading` (the whole load), :mod:`.writing` (self-describing files).
"""

from __future__ import annotations

from .architecture import infer_config, load_state_strict
from .errors import CheckpointError
from .keys import normalise_keys
from .loading import load_checkpoint, model_from_state
from .metadata import Stated
from .reading import MAX_CHECKPOINT_BYTES
from .writing import checkpoint_bytes, save_checkpoint

__all__ = [
    "MAX_CHECKPOINT_BYTES", "CheckpointError", "Stated", "checkpoint_bytes", "infer_config", "load_checkpoint",
    "load_state_strict", "model_from_state", "normalise_keys", "save_checkpoint",
]
