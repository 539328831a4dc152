"""The preprocessing presets as data: what a model's input is, and the geometries that make it.

Data only (and the checks that keep it valid): :mod:`densenet.geometry` and :mod:`densenet.preprocess`
both read it, so neither needs the other's presets.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .config import STEMS, DenseNetConfig

GEOMETRIES: dict[str, str] = {
    "crop": "centre crop (CheXNet, torchvision): the sides of a non-square image are cut away",
    "resize": "resize the whole image to a square: everything seen, aspect ratio not kept",
    "letterbox": "pad to a square with black, then resize: everything seen, aspect ratio kept",
}
"""Geometry mode -> what it does, for a selector's help text."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def check_mode(mode: str) -> str:
    """``mode`` if it is a known geometry; a ValueError naming the choices otherwise."""
    if mode not in GEOMETRIES:
        raise ValueError(f"unknown geometry {mode!r}; choose from {', '.join(GEOMETRIES)}")
    return mode


@dataclass(frozen=True)
class Preprocessing:
    """A preprocessing preset.

    Attributes:
        name: short name shown to the user ("imagenet", "xray", "demo", "custom").
        size: side of the square input fed to the model.
        resize: for ``geometry="crop"``: shorter side is resized to this before the centre
            crop (None: crop the largest centred square, then resize it to ``size``).
        channels: channels the model takes (1 or 3).
        mean, std: per-channel normalisation applied to [0, 1] pixels (len == channels).
        value_range: if set, [0, 1] pixels are mapped linearly onto this range instead of
            mean/std normalisation (torchxrayvision models expect [-1024, 1024]).
    """

    name: str
    size: int
    resize: int | None
    channels: int
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    value_range: tuple[float, float] | None = None
    geometry: str = "crop"

    def replace(self, **changes: object) -> Preprocessing:
        """A copy with some fields changed, checked (e.g. ``preset.replace(geometry="letterbox")``)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown Preprocessing field(s): {sorted(unknown)}")
        return checked(dataclasses.replace(self, **changes))

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields (tuples as lists), as checkpoints store them."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Preprocessing:
        """The inverse of :meth:`to_dict`; unknown keys are refused, missing ones take defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown preprocessing field(s) {sorted(unknown)}")
        return checked(cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}))


IMAGENET = Preprocessing("imagenet", size=224, resize=256, channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD)
XRAY = Preprocessing("xray", size=224, resize=None, channels=1, value_range=(-1024.0, 1024.0))
DEMO = Preprocessing("demo", size=128, resize=None, channels=1, mean=(0.5,), std=(0.25,))
PRESETS = {p.name: p for p in (IMAGENET, XRAY, DEMO)}


def default_for(in_channels: int, size: int = 224) -> Preprocessing:
    """The preset used when a checkpoint says nothing: ImageNet for colour, X-ray for grey."""
    if in_channels == 3:
        return IMAGENET if size == 224 else custom(size=size, channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    if in_channels == 1:
        return XRAY
    return custom(size=size, channels=in_channels, mean=(0.5,) * in_channels, std=(0.25,) * in_channels)


def for_fresh_model(config: DenseNetConfig) -> Preprocessing:
    """The input a freshly built model of this architecture gets, at its stem's input size.

    ImageNet stems get :func:`default_for`; a 3-channel 32 px (CIFAR) stem CIFAR-10's mean and std;
    anything else mean 0.5 and std 0.25 per channel.
    """
    size = STEMS[config.stem].input_size
    if config.stem == "imagenet":
        return default_for(config.in_channels)
    if config.in_channels == 3 and size == 32:
        return custom(size=size, channels=3, mean=CIFAR_MEAN, std=CIFAR_STD)
    channels = config.in_channels
    return custom(size=size, channels=channels, mean=(0.5,) * channels, std=(0.25,) * channels)


def custom(*, size: int, channels: int, mean: tuple[float, ...], std: tuple[float, ...],
           resize: int | None = None, geometry: str = "crop") -> Preprocessing:
    """A user-defined preset; mean and std need one value per channel."""
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean and std need {channels} values each, got {mean} and {std}")
    if any(s <= 0 for s in std):
        raise ValueError(f"std must be positive, got {std}")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    return checked(Preprocessing("custom", size=size, resize=resize, channels=channels,
                                 mean=tuple(mean), std=tuple(std), geometry=geometry))


def named(name: str, *, geometry: str | None = None) -> Preprocessing:
    """A preset by name (``"imagenet"``, ``"xray"``, ``"demo"``), optionally with another geometry.

    Raises:
        ValueError: an unknown name or geometry, naming the choices.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preprocessing preset {name!r}; choose from {', '.join(PRESETS)}")
    preset = PRESETS[name]
    return preset if geometry is None else preset.replace(geometry=geometry)


def resolve_preset(model_or_preset: object) -> Preprocessing:
    """The checked preset of a ``Preprocessing`` or of a model carrying one (``model.preprocessing``).

    Raises:
        TypeError: neither.
    """
    if isinstance(model_or_preset, Preprocessing):
        return checked(model_or_preset)
    preset = getattr(model_or_preset, "preprocessing", None)
    if not isinstance(preset, Preprocessing):
        raise TypeError(
            "expected a Preprocessing or a model with a .preprocessing attribute, "
            f"got {type(model_or_preset).__name__}"
        )
    return checked(preset)


def checked(preset: Preprocessing) -> Preprocessing:
    """``preset`` if its fields are usable; a ValueError naming the bad field otherwise."""
    check_mode(preset.geometry)
    if preset.size < 1:
        raise ValueError(f"preset {preset.name!r}: size must be positive, got {preset.size}")
    if preset.geometry == "crop" and preset.resize is not None and preset.resize < preset.size:
        raise ValueError(f"preset {preset.name!r}: resize ({preset.resize}) is smaller than the crop "
                         f"size ({preset.size})")
    if preset.channels < 1:
        raise ValueError(f"preset {preset.name!r}: channels must be positive, got {preset.channels}")
    if preset.value_range is None:
        for field, values in (("mean", preset.mean), ("std", preset.std)):
            if len(values) not in (1, preset.channels):
                raise ValueError(f"preset {preset.name!r}: {field} needs 1 or {preset.channels} values, "
                                 f"got {values}")
        if any(s <= 0 for s in preset.std):
            raise ValueError(f"preset {preset.name!r}: std must be positive, got {preset.std}")
    return preset
