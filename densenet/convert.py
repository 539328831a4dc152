"""``python -m densenet convert``: any checkpoint ``load_checkpoint`` reads -> a self-describing .safetensors.

    python -m densenet convert chexnet.pth.tar chexnet.safetensors --classes chexnet
    python -m densenet convert model.pt out.safetensors --classes names.txt --multilabel \\
        --thresholds 0.3,0.5,... --preprocess imagenet --geometry letterbox

The output states the output kind, class names, thresholds and preprocessing (with geometry), so
the next load needs no choices. The same choices are one function call for the app
(:func:`apply_choices`, then :func:`densenet.checkpoints.checkpoint_bytes` for a download).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from .checkpoints import CheckpointError, checkpoint_bytes, load_checkpoint, save_checkpoint
from .presets import GEOMETRIES
from .labels import PRESETS as CLASS_PRESETS
from .labels import outputs, with_outputs
from .model import DenseNet
from .preprocess import PRESETS, Preprocessing, named


def read_thresholds(spec: str | os.PathLike | Sequence[float | None]) -> list[float | None]:
    """Thresholds from a list, a comma/space-separated string, or a file (.json list or text).

    ``none``/``nan`` (any case) or JSON ``null`` mark a finding without a threshold.

    Raises:
        ValueError: a value that is not a number.
    """
    if not isinstance(spec, (str, os.PathLike)):
        return [None if v is None else float(v) for v in spec]
    text = os.fspath(spec)
    path = Path(text)
    if path.suffix.lower() in (".json", ".txt", ".csv") or path.is_file():
        if not path.is_file():
            raise ValueError(f"no thresholds file at {path}")
        text = path.read_text(encoding="utf-8-sig")
    if text.lstrip().startswith("["):
        values = json.loads(text)
        if not isinstance(values, list):
            raise ValueError("a JSON thresholds file must hold a list of numbers")
        return [None if v is None else float(v) for v in values]
    out: list[float | None] = []
    for token in text.replace(",", " ").split():
        if token.lower() in ("none", "nan", "null", "-"):
            out.append(None)
            continue
        try:
            out.append(float(token))
        except ValueError:
            raise ValueError(f"not a threshold: {token!r}") from None
    return out


def apply_choices(model: DenseNet, *, classes: str | os.PathLike | Sequence[str] | None = None,
                  multilabel: bool | None = None, thresholds: str | os.PathLike | Sequence[float | None] | None = None,
                  preprocessing: str | Preprocessing | None = None, geometry: str | None = None) -> DenseNet:
    """A shallow copy of ``model`` (weights shared, ``model`` untouched) with the user's choices.

    Args:
        model: a loaded DenseNet.
        classes: a class-name preset (``"chexnet"``, ``"chexpert"``, ``"xrv"``), a names file
            (.txt one per line, .json list) or a list of names; ``None``: keep.
        multilabel: one sigmoid per finding (``True``) or softmax (``False``); ``None``: keep,
            except that a class-name preset implies its own kind (all three are multi-label).
        thresholds: per-finding operating thresholds (list, ``"0.3,0.5,..."`` or a file); ``None``: keep.
        preprocessing: a preset name (``"imagenet"``, ``"xray"``, ``"demo"``) or a ``Preprocessing``;
            ``None``: keep.
        geometry: ``"crop"``, ``"resize"`` or ``"letterbox"``; ``None``: keep the preset's.

    Returns:
        The copy; ``densenet.labels.outputs(copy).stated`` is True.

    Raises:
        ValueError: names, thresholds or a preset that do not fit the model.
    """
    if multilabel is None and isinstance(classes, str) and classes in CLASS_PRESETS:
        multilabel = CLASS_PRESETS[classes].multilabel
    thresholds = None if thresholds is None else read_thresholds(thresholds)
    result = with_outputs(model, multilabel=multilabel, class_names=classes, thresholds=thresholds)
    preset = result.preprocessing
    if preprocessing is not None:
        preset = named(preprocessing) if isinstance(preprocessing, str) else preprocessing
        if not isinstance(preset, Preprocessing):
            raise TypeError(f"preprocessing must be a preset name or a Preprocessing, got {type(preprocessing).__name__}")
    if geometry is not None:
        preset = preset.replace(geometry=geometry)
    if preset.channels != model.config.in_channels:
        raise ValueError(f"the {preset.name!r} preprocessing gives {preset.channels}-channel input; "
                         f"this model takes {model.config.in_channels}")
    result.preprocessing = preset
    return result


def convert(source: str | os.PathLike | bytes | BinaryIO, **choices: object) -> DenseNet:
    """Load any checkpoint ``load_checkpoint`` reads and apply :func:`apply_choices`."""
    return apply_choices(load_checkpoint(source), **choices)


def convert_bytes(source: str | os.PathLike | bytes | BinaryIO, **choices: object) -> bytes:
    """:func:`convert`, as the bytes of the self-describing .safetensors file."""
    return checkpoint_bytes(convert(source, **choices))


def describe(model: DenseNet) -> str:
    """A few lines saying what a (converted) checkpoint states."""
    spec = outputs(model)
    names = ", ".join(spec.class_names[:4]) + (", ..." if len(spec.class_names) > 4 else "")
    thresholds = "none" if spec.thresholds is None else ", ".join(
        "-" if t is None else f"{t:g}" for t in spec.thresholds[:4]) + (", ..." if len(spec.thresholds) > 4 else "")
    p = model.preprocessing
    return "\n".join([
        f"  outputs:       {model.config.num_classes} ({'one sigmoid per finding' if spec.multilabel else 'softmax'})",
        f"  class names:   {names}",
        f"  thresholds:    {thresholds}",
        f"  preprocessing: {p.name}, {p.size}x{p.size}, {p.channels} channel(s), geometry {p.geometry}",
    ])


# --- command line ----------------------------------------------------------------------------------

def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``convert`` command's arguments."""
    parser.add_argument("input", help="a checkpoint load_checkpoint reads (.pt, .pth, .pth.tar, .safetensors)")
    parser.add_argument("output", help="where to write the .safetensors file")
    parser.add_argument("--classes", metavar="PRESET|FILE",
                        help=f"class names: {', '.join(CLASS_PRESETS)} or a names file (.txt one per line, .json list)")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--multilabel", dest="multilabel", action="store_const", const=True, default=None,
                      help="one sigmoid per finding (implied by a class-name preset)")
    kind.add_argument("--single-label", dest="multilabel", action="store_const", const=False,
                      help="one softmax over the classes")
    parser.add_argument("--thresholds", metavar="LIST|FILE",
                        help="per-finding operating thresholds: '0.3,0.5,...' or a .json/.txt file ('none' for none)")
    parser.add_argument("--preprocess", choices=sorted(PRESETS), help="preprocessing preset")
    parser.add_argument("--geometry", choices=list(GEOMETRIES), help="how a non-square image becomes the input")
    parser.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")


def run(args: argparse.Namespace) -> int:
    """Convert; print what was written. Returns 0, or 2 with a one-line reason on stderr."""
    source, target = Path(args.input), Path(args.output)
    try:
        if target.exists() and target.resolve() == source.resolve():
            raise ValueError("OUTPUT is the input file; choose another name")
        if target.exists() and not args.force:
            raise ValueError(f"{target} exists; pass --force to overwrite it")
        if target.suffix != ".safetensors":
            raise ValueError(f"OUTPUT should end in .safetensors, got {target.name!r}")
        model = convert(source, classes=args.classes, multilabel=args.multilabel, thresholds=args.thresholds,
                        preprocessing=args.preprocess, geometry=args.geometry)
        save_checkpoint(model, target)
    except (CheckpointError, ValueError, TypeError, OSError) as e:
        print(f"convert: {e}", file=sys.stderr)
        return 2
    print(f"wrote {target}\n{describe(model)}")
    return 0
