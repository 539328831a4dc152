"""The bundled demo: a small DenseNet trained on generated radiograph-like images.

``generate`` draws labelled images with known lesion boxes, ``load`` returns the shipped
model and ``sample_paths`` lists the sample images bundled for the dashboard.
"""

from __future__ import annotations

from densenet.demo.data import CLASSES, generate, normalize

__all__ = ["CLASSES", "generate", "normalize"]
