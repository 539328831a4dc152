"""torchvision's published ImageNet weights: from the torch hub cache, a given file, or a download."""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

import torch

IMAGENET_VARIANTS = ("densenet121", "densenet161", "densenet169", "densenet201")
DOWNLOAD_TIMEOUT_S = 20


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are neither on disk nor downloadable; the message says how to get them."""


def weights_url(name: str) -> str:
    """The URL torchvision publishes for a variant's ImageNet weights."""
    if name not in IMAGENET_VARIANTS:
        raise ValueError(f"ImageNet weights exist for {IMAGENET_VARIANTS}, not {name!r}")
    from torchvision.models import get_model_weights

    return get_model_weights(name).IMAGENET1K_V1.url


def cache_path(name: str) -> Path:
    """Where the torch hub cache keeps (or would keep) a variant's weights file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights_url(name))


def _download(url: str, dest: Path) -> None:
    """Stream ``url`` to ``dest`` atomically, checking torchvision's hash prefix in the file name."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(dest.suffix + ".partial")
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(partial, "wb") as out:
        while chunk := response.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
    expected = dest.stem.rsplit("-", 1)[-1]
    if not digest.hexdigest().startswith(expected):
        partial.unlink(missing_ok=True)
        raise WeightsUnavailableError(f"the download of {url} is corrupt (hash mismatch)")
    partial.replace(dest)


def imagenet_weights_file(name: str, *, download: bool = True) -> Path:
    """Path of a variant's ImageNet weights, downloading them into the hub cache if needed.

    Raises:
        WeightsUnavailableError: not cached and the download failed (e.g. offline).
    """
    path = cache_path(name)
    if path.is_file():
        return path
    url = weights_url(name)
    hint = (f"Download {url} on a machine with internet and copy it to {path} "
            f"(the torch hub cache; set TORCH_HOME to move it), or pass weights='path/to/file.pth'.")
    if not download:
        raise WeightsUnavailableError(f"{name} ImageNet weights are not in the cache. {hint}")
    try:
        _download(url, path)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise WeightsUnavailableError(
            f"could not download the {name} ImageNet weights ({getattr(e, 'reason', e)}): "
            f"this machine seems to be offline. {hint}") from None
    return path
