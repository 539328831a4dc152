"""How an image becomes the tensor a model expects; the preset travels with the model."""

from __future__ import annotations

from dataclasses import dataclass

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """A preprocessing preset.

    Attributes:
        name: short name shown to the user ("imagenet", "xray", "demo", "custom").
        size: side of the square crop fed to the model.
        resize: shorter side is resized to this before the centre crop (None: crop the
            largest centred square, then resize it to ``size``).
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


def custom(*, size: int, channels: int, mean: tuple[float, ...], std: tuple[float, ...],
           resize: int | None = None) -> Preprocessing:
    """A user-defined preset; mean and std need one value per channel."""
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean and std need {channels} values each, got {mean} and {std}")
    if any(s <= 0 for s in std):
        raise ValueError(f"std must be positive, got {std}")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    return Preprocessing("custom", size=size, resize=resize, channels=channels,
                         mean=tuple(mean), std=tuple(std))
