"""Fixtures and helpers shared by the tests: a PNG maker, the tiny test networks, a hook counter, a blob image."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

import densenet

# AppTest reads .streamlit/config.toml, which hides error details from users; tests want them.
os.environ.setdefault("STREAMLIT_CLIENT_SHOW_ERROR_DETAILS", "full")


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.clip(pixels * 255, 0, 255).round().astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def make_png():
    """``make_png(seed, size=64, colour=False)`` -> PNG bytes of a smooth random picture with a bright blob."""

    def make(seed: int, size: int = 64, colour: bool = False) -> bytes:
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:size, 0:size] / size
        cy, cx = rng.uniform(0.2, 0.8, 2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.01)
        base = 0.3 * rng.random() + 0.2 * np.sin(6 * xx * rng.random())
        img = np.clip(base + 0.6 * blob + 0.05 * rng.standard_normal((size, size)), 0, 1)
        if colour:
            img = np.stack([img, np.roll(img, 3, axis=1), 1 - img], axis=2)
        return _png(img)

    return make


# --- helpers shared by the library tests (import them: ``from tests.conftest import TINY, hook_count``) ---

#: A small colour DenseNet with four blocks: layers at 16, 8, 4 and 2 px on a 64 px input, 10 classes.
TINY = densenet.DenseNetConfig(growth_rate=8, block_config=(2, 2, 3, 2), num_init_features=16, num_classes=10)

#: The classroom's shape: one channel and 4 classes (the synthetic images), a CIFAR stem, two blocks.
TINY_GREY = densenet.DenseNetConfig(growth_rate=4, block_config=(2, 2), num_init_features=8, bn_size=4,
                                    stem="cifar", in_channels=1, num_classes=4)


def hook_count(model: torch.nn.Module) -> int:
    """Hooks registered on any module of ``model`` (forward, pre-forward, backward, pre-backward)."""
    return sum(len(getattr(m, d, {})) for m in model.modules()
               for d in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"))


def blob_image(seed: int, channels: int = 3, size: int = 64) -> torch.Tensor:
    """Three coloured Gaussian blobs on noise, (1, channels, size, size): structure for the maps to follow."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    x = 0.3 * torch.randn(1, channels, size, size, generator=g)
    for _ in range(3):
        cy, cx = torch.rand(2, generator=g)
        amplitude = 2 * torch.randn(channels, generator=g)
        x += amplitude.view(1, -1, 1, 1) * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.02)
    return x
