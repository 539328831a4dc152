"""The shortcut demo model: the demo network trained on films whose nodules carry a planted marker.

The marker and the marked films are library code (:mod:`densenet.synthetic_shortcut`); the
training recipe and the model card are in :mod:`.shortcut_train`. This module only says where the
bundled weights are and loads them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from densenet.demo import WEIGHTS_PATH

if TYPE_CHECKING:
    from densenet.model import DenseNet

SHORTCUT_WEIGHTS = WEIGHTS_PATH.parent.parent / "demo_shortcut" / "densenet_demo_shortcut.safetensors"
"""The shortcut demo model (``python -m densenet.demo train --shortcut``; its card beside it)."""


def load_shortcut() -> DenseNet:
    """The bundled shortcut demo model, in eval mode (it reads the marker, not the nodule).

    Raises:
        FileNotFoundError: the weights are missing (run ``python -m densenet.demo train --shortcut``).
    """
    from densenet.checkpoints import load_checkpoint

    if not SHORTCUT_WEIGHTS.is_file():
        raise FileNotFoundError(f"shortcut demo weights not found at {SHORTCUT_WEIGHTS}; "
                                "run `python -m densenet.demo train --shortcut`")
    return load_checkpoint(SHORTCUT_WEIGHTS).eval()
