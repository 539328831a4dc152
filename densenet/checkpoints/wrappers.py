"""The DenseNet inside whatever wrapper a checkpoint was saved from: any key prefix, a ``Sequential`` head.

People save a DenseNet inside their own module (CheXNet re-implementations hold torchvision's
``densenet121`` as ``self.densenet121``), under ``DataParallel`` (``module.``), in a Lightning
module (``model.``, ``net.``), as an ``encoder.``... Whatever stands before
``features.conv0.weight`` is the prefix; the keys under it are the DenseNet, the others (a loss's
weights, a second network) are left out and counted. A head written as a ``Sequential``
(``classifier.0.weight``: ``Sequential(Linear, Sigmoid)``) is read as the one ``Linear`` it holds.

What the head's activation was: a whole pickled model shows its ``Sigmoid`` (:func:`head_has_sigmoid`);
a state dict does not, so the CheXNet layout (a ``Sequential`` head of 14 outputs) is read as
ChestX-ray14's 14 independent findings, and ``metadata["head"]`` says so.
"""

from __future__ import annotations

import re
from typing import Any

from torch import Tensor

from .errors import CheckpointError

ANCHOR = "features.conv0.weight"
_SEQUENTIAL_HEAD = re.compile(r"^classifier\.(\d+)\.(weight|bias)$")


def densenet_prefix(keys: list[str]) -> str | None:
    """The prefix standing before ``features.conv0.weight`` (``""`` for a bare DenseNet), or ``None``.

    Raises:
        CheckpointError: several DenseNets in one file (a teacher and a student...), naming them.
    """
    found = sorted({k[:-len(ANCHOR)] for k in keys if k.endswith(ANCHOR) and (len(k) == len(ANCHOR) or k[-len(ANCHOR) - 1] == ".")})
    if len(found) > 1:
        raise CheckpointError("this file holds several DenseNets (under " + ", ".join(repr(p) for p in found) +
                              "); save the one to explain alone: torch.save(model.<part>.state_dict(), 'weights.pt')")
    return found[0] if found else None


def tried_message(keys: list[str]) -> str:
    """The sentence for a file with no ``features.conv0.weight`` under any prefix: the prefixes it has."""
    heads = sorted({k.split(".", 1)[0] + "." for k in keys if "." in k})
    shown = ", ".join(heads[:8]) + (", ..." if len(heads) > 8 else "")
    return (f"no key ends with '{ANCHOR}' under any prefix (tried every prefix in the file: {shown or 'none'}; "
            "e.g. module., model., net., encoder., module.densenet121.)")


def inner_densenet(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The DenseNet's own weights, with its prefix removed and a ``Sequential`` head read as one ``Linear``.

    Args:
        state: a state dict whose keys may carry any prefix.

    Returns:
        The state dict (unchanged when no DenseNet is found: the caller's message names what it is)
        and facts: ``prefix``, ``left_out`` (keys outside the DenseNet), ``head`` (``"sequential"``).

    Raises:
        CheckpointError: several DenseNets, or a head of several ``Linear`` layers.
    """
    prefix = densenet_prefix(list(state))
    if prefix is None:
        return state, {}
    facts: dict[str, Any] = {}
    inner = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    left_out = [k for k in state if not k.startswith(prefix) and k != "op_threshs"]
    if "op_threshs" in state:
        inner.setdefault("op_threshs", state["op_threshs"])
    if prefix:
        facts["prefix"] = prefix
    if left_out:
        facts["left_out"] = len(left_out)
    if "classifier.weight" not in inner:
        linears = sorted({int(m.group(1)) for k in inner if (m := _SEQUENTIAL_HEAD.match(k))
                          and m.group(2) == "weight" and inner[k].dim() == 2})
        if len(linears) > 1:
            raise CheckpointError(f"the head is several Linear layers (classifier.{', classifier.'.join(map(str, linears))}); "
                                  "a DenseNet's classifier is one Linear")
        if linears:
            n = linears[0]
            for part in ("weight", "bias"):
                if f"classifier.{n}.{part}" in inner:
                    inner[f"classifier.{part}"] = inner.pop(f"classifier.{n}.{part}")
            facts["head"] = "sequential"
    return inner, facts


def head_has_sigmoid(obj: Any) -> bool:
    """A whole pickled model (records, :class:`~.reading.PickledModule`) whose ``classifier`` holds a ``Sigmoid``."""
    from .reading import PickledModule

    def walk(record: Any, name: str) -> bool:
        if not isinstance(record, PickledModule):
            return False
        children = vars(record).get("_modules") or {}
        if name == "classifier":
            return any(getattr(c, "class_path", "").endswith(".Sigmoid") for c in children.values())
        return any(walk(child, child_name) for child_name, child in children.items())

    return walk(obj, "")
