"""Requests one page hands another, typed: "open this case on the Attention page".

A page never writes another page's widget keys. The Audit page builds an :class:`AttentionRequest`
and calls :func:`open_on_attention`; the sidebar shows the request's image in place of its sample
(:func:`image_override`) until the user goes back; the Attention page takes the request once
(:func:`take_attention_request`) and sets its own controls from it. Renaming a control of the
Attention page therefore breaks nothing here.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Where the two facts live in the session: the image shown (until cleared) and the pending request (taken once).
IMAGE = "navigation.image"
ATTENTION = "navigation.attention"


@dataclass(frozen=True)
class ImageOverride:
    """An image the sidebar shows in place of its sample.

    Attributes:
        name: its name (the audit's relative path).
        path: the file (inside an audited dataset: a data root, the demo set or this session's upload).
        source: the folder it came from.
    """

    name: str
    path: Path
    source: Path

    def read(self) -> bytes:
        return self.path.read_bytes()


@dataclass(frozen=True)
class AttentionRequest:
    """Explain ``image`` on the Attention page with ``method`` at ``layer`` for class ``target``.

    Attributes:
        image: the image to explain.
        method: a registered method's name (``densenet.explain.METHODS``).
        layer: the layer to explain at; ``None`` for a method in input space (the layer is left as it was).
        target: the index of the class to explain.
    """

    image: ImageOverride
    method: str
    layer: str | None
    target: int

    def __post_init__(self) -> None:
        if not isinstance(self.target, int) or self.target < 0:
            raise ValueError(f"target must be a class index >= 0, got {self.target!r}")


def _state(state: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
    if state is not None:
        return state
    import streamlit as st

    return st.session_state


def open_on_attention(request: AttentionRequest, state: MutableMapping[str, Any] | None = None) -> None:
    """Show ``request.image`` in the sidebar and leave the request for the Attention page.

    Args:
        request: what to explain.
        state: the session state (default ``st.session_state``; a test passes ``AppTest.session_state``).
    """
    state = _state(state)
    state[IMAGE] = request.image
    state[ATTENTION] = request


def take_attention_request(state: MutableMapping[str, Any] | None = None) -> AttentionRequest | None:
    """The pending request, once (the next call returns ``None``); ``None`` when there is none.

    Args:
        state: the session state (default ``st.session_state``).
    """
    state = _state(state)
    request = state[ATTENTION] if ATTENTION in state else None
    if request is not None:
        state[ATTENTION] = None
    return request if isinstance(request, AttentionRequest) else None


def image_override(state: MutableMapping[str, Any] | None = None) -> ImageOverride | None:
    """The image the sidebar should show instead of its sample (``None``: none, or its file is gone)."""
    state = _state(state)
    found = state[IMAGE] if IMAGE in state else None
    return found if isinstance(found, ImageOverride) and found.path.is_file() else None


def clear_image_override(state: MutableMapping[str, Any] | None = None) -> None:
    """Back to the sidebar's samples (an ``on_click``/``on_change`` callback)."""
    state = _state(state)
    state[IMAGE] = None
    state[ATTENTION] = None
