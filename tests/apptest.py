"""What the dashboard tests use: no exception, no error box, controls found by name, what a figure draws."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from streamlit.testing.v1 import AppTest


def ok(at: AppTest) -> AppTest:
    """No exception and no error box; returns ``at`` for chaining."""
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def widget(at: AppTest, kind: str, name: str):
    """The widget of control ``name``: its key is ``name:digest`` (see ``dashboard/session.py``)."""
    found = [w for w in at.get(kind) if (w.key or "").split(":")[0] == name]
    assert found, f"no {kind} {name!r}; have {[w.key for w in at.get(kind)]}"
    return found[0]


def use_tiny(at: AppTest, k: int = 4, blocks: tuple[int, ...] = (3, 2), c0: int = 8) -> AppTest:
    """The classroom model: a few layers on a CIFAR stem (32 px), fresh weights."""
    widget(at, "selectbox", "model_source").set_value("custom").run()
    widget(at, "slider", "custom.blocks").set_value(len(blocks)).run()
    widget(at, "slider", "custom.k").set_value(k)
    for i, n in enumerate(blocks, start=1):
        widget(at, "slider", f"custom.L{i}").set_value(n)
    widget(at, "slider", "custom.c0").set_value(c0)
    widget(at, "selectbox", "custom.stem").set_value("cifar")
    return ok(at.run())


def count_cells(fig: go.Figure | dict) -> int:
    """The number of links a connectivity matrix draws (its filled cells)."""
    z = fig.data[0].z if isinstance(fig, go.Figure) else fig["data"][0]["z"]
    if isinstance(z, dict) and "bdata" in z:  # plotly 6's JSON: base64, dtype and shape
        import base64

        shape = [int(n) for n in str(z.get("shape", "")).split(",") if n]
        z = np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]).reshape(shape or -1)
    return int(np.isfinite(np.asarray(z, dtype=float)).sum())


def count_links(fig: go.Figure | dict) -> int:
    """The number of links a connectivity figure draws (arcs in its line traces)."""
    data = fig["data"] if isinstance(fig, dict) else fig.to_plotly_json()["data"]
    return sum(sum(1 for v in trace["x"] if v is None)
               for trace in data if trace.get("mode") == "lines")
