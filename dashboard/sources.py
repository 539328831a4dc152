"""Where the app's models come from: one table of sources, the spec a sidebar choice makes, loading.

Models live in ``st.cache_resource`` (shared by every session, ``max_entries`` bounded), built
once, moved to the device and put in ``eval()`` once. Nothing afterwards mutates them: no hooks,
no ``.train()``, no ``requires_grad_``; traces use ``torch.autograd.grad`` only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

import densenet
import densenet.demo
from densenet.presets import for_fresh_model

from . import runtime, session

CHECKPOINT_EXTENSIONS = ("pt", "pth", "safetensors", "bin")
MAX_CHECKPOINT_MB = 200  # DenseNet-264 is about 130 MB in float32
FALLBACK_VARIANT = "densenet-bc-100-12"


@dataclass(frozen=True)
class Source:
    """A kind of model the sidebar offers.

    Attributes:
        kind: the key (``demo``, ``variant``, ``custom``, ``imagenet``, ``checkpoint``).
        label: the sidebar's option.
        trained: its weights learned something (maps are meaningful).
        describes: how a spec of this kind names itself, ``{name}`` filled in.
        from_config: the architecture is known without loading anything.
    """

    kind: str
    label: str
    trained: bool
    describes: str
    from_config: bool


SOURCES: dict[str, Source] = {s.kind: s for s in (
    Source("demo", "Bundled demo model", True, "bundled demo model", False),
    Source("variant", "Built-in variant (fresh weights)", False, "{name} (fresh weights)", True),
    Source("custom", "Custom: bend the knobs", False, "custom DenseNet (fresh weights)", True),
    Source("imagenet", "ImageNet weights (torchvision)", True, "{name} (ImageNet weights)", False),
    Source("checkpoint", "Upload a checkpoint", True, "checkpoint {name}", False),
)}


@dataclass(frozen=True)
class ModelSpec:
    """What the sidebar asked for; cheap to build, hashable, and enough to load the model.

    Attributes:
        kind: a key of :data:`SOURCES`.
        name: variant name, or the checkpoint's file name.
        config: the architecture when known without loading (variant, custom).
        digest: content hash of an uploaded checkpoint.
    """

    kind: str
    name: str
    config: densenet.DenseNetConfig | None = None
    digest: str | None = None

    @property
    def source(self) -> Source:
        return SOURCES[self.kind]

    @property
    def key(self) -> str:
        return f"{self.kind}|{self.name}|{self.config.to_json() if self.config else ''}|{self.digest or ''}"

    @property
    def label(self) -> str:
        return self.source.describes.format(name=self.name)

    @property
    def trained(self) -> bool:
        return self.source.trained


class ModelError(Exception):
    """A model that cannot be loaded; the message is for the user."""


def digest(data: bytes) -> str:
    """A short content hash: the key under which results of this file are cached."""
    return hashlib.sha256(data).hexdigest()[:16]


def demo_available() -> bool:
    """Cheap check (no loading) that the demo model can be offered."""
    return Path(densenet.demo.WEIGHTS_PATH).is_file()


def default_spec() -> ModelSpec:
    """The model the app opens on: the bundled demo once it exists, else a small built-in variant."""
    if demo_available():
        return ModelSpec("demo", "demo")
    return fallback_spec()


def fallback_spec() -> ModelSpec:
    return ModelSpec("variant", FALLBACK_VARIANT, densenet.VARIANTS[FALLBACK_VARIANT])


def _build(spec: ModelSpec, read: Callable[[], bytes] | None) -> densenet.DenseNet:
    if spec.kind == "demo":
        try:
            return densenet.demo.load()
        except (FileNotFoundError, OSError) as e:
            raise ModelError(f"the bundled demo model cannot be read ({e})") from None
    if spec.source.from_config:
        return densenet.DenseNet(spec.config, preprocessing=for_fresh_model(spec.config))
    if spec.kind == "imagenet":
        return densenet.create(spec.name, weights="imagenet")
    if spec.kind == "checkpoint":
        return densenet.load_checkpoint(read())
    raise ValueError(f"unknown model source {spec.kind!r}")


@st.cache_resource(max_entries=4, show_spinner=False)
def _load(key: str, _spec: ModelSpec, _read: Callable[[], bytes] | None) -> densenet.DenseNet:
    """Build or load a model once per key for all sessions; device and eval() set here only."""
    return _build(_spec, _read).to(runtime.DEVICE).eval()


def load_model(spec: ModelSpec, read: Callable[[], bytes] | None = None) -> densenet.DenseNet:
    """The model for ``spec`` (cached); raises :class:`ModelError` with a plain reason.

    ``read`` returns an uploaded checkpoint's bytes; it is called only when the model is not cached.
    A failure is remembered for this session, so a bad file is not re-read on every rerun.
    """
    failed = session.peek("failed_models", spec.key)
    if failed is not None:
        raise ModelError(failed)
    try:
        with runtime.job(f"Loading the {spec.label}"):
            return _load(spec.key, spec, read)
    except (densenet.CheckpointError, densenet.WeightsUnavailableError, ModelError, ValueError, TypeError) as e:
        session.memo("failed_models", spec.key, lambda: str(e), max_entries=16)
        raise ModelError(str(e)) from None
