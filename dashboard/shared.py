"""What every session shares because it is a pure function of its key: topologies and figures."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import streamlit as st

import densenet


@st.cache_resource(max_entries=64, show_spinner=False)
def _topology(config_json: str, size: int) -> densenet.Topology:
    return densenet.topology(densenet.DenseNetConfig.from_dict(json.loads(config_json)), size)


def topology(config: densenet.DenseNetConfig, size: int) -> densenet.Topology:
    """Topology of a config at an input size, built once for all sessions."""
    return _topology(config.to_json(), int(size))


@st.cache_resource(max_entries=256, show_spinner=False)
def figure(kind: str, key: str, _build: Callable[[], Any]) -> Any:
    """A figure built once per ``(kind, key)`` for all sessions; ``key`` must say everything it shows."""
    return _build()
