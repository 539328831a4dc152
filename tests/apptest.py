"""What every AppTest of the dashboard uses: no exception, no error box, controls found by name."""

from __future__ import annotations

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
