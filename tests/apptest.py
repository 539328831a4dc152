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
