"""Fixtures shared by the dashboard tests (kept small on purpose)."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

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
