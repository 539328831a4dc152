"""Per-session state: the memo of results, and controls whose value is always the one in use.

Controls. Streamlit forgets a widget's value when a run does not draw it (another page, a
refused upload that stops a page early), and a keyed widget keeps its first labels in the
browser when its options are relabelled. So every control goes through one mechanism here:

* the value in use lives in this session's store under the control's ``name``, never only in
  the widget;
* the widget is drawn with that value as its default and a key made of the name and its
  *identity* (the option labels, the range): relabelled options (another model, another block)
  make a new widget that shows the new labels and the kept value at once;
* the value the widget returns is stored back at once, so the page and the control agree in
  this very run;
* :func:`choose` sets a value from elsewhere (a click on a graph) by storing it and renewing
  the widget's key, so the browser shows it too.

A value no longer among the options falls back to the given default. Names are per purpose,
so the classroom knobs are kept per source (``custom.k``) and survive a trip to another source.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

import streamlit as st

T = TypeVar("T")

_STORE = "_controls"
_VERSIONS = "_control_versions"


# --- the memo ---------------------------------------------------------------------------------

def _cache(name: str) -> OrderedDict:
    key = f"_cache_{name}"
    if key not in st.session_state:
        st.session_state[key] = OrderedDict()
    return st.session_state[key]


def memo(name: str, key: Hashable, compute: Callable[[], T], *, max_entries: int = 8) -> T:
    """Per-session LRU cache: ``compute()`` once per ``key``; at most ``max_entries`` kept.

    An exception (a cancelled or failed computation) stores nothing.
    """
    cache = _cache(name)
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = compute()
    cache[key] = value
    while len(cache) > max_entries:
        try:
            cache.popitem(last=False)
        except KeyError:  # an overlapping (stopping) run of this session emptied it first
            break
    return value


def peek(name: str, key: Hashable) -> Any | None:
    """A memoised value if present, without computing it."""
    return _cache(name).get(key)


def forget(name: str) -> None:
    _cache(name).clear()


# --- controls ------------------------------------------------------------------------------------

def _store() -> dict[str, Any]:
    return st.session_state.setdefault(_STORE, {})


def kept(name: str, default: Any = None) -> Any:
    """The value in use for control ``name`` (``default`` if it was never set)."""
    return _store().get(name, default)


def choose(name: str, value: Any) -> None:
    """Set a control's value from elsewhere (a click, a new image); safe inside callbacks."""
    _store()[name] = value
    versions = st.session_state.setdefault(_VERSIONS, {})
    versions[name] = versions.get(name, 0) + 1


def key_of(name: str, identity: Any = ()) -> str:
    """The widget key: the control's name, then a digest of what it shows and its version."""
    version = st.session_state.get(_VERSIONS, {}).get(name, 0)
    digest = hashlib.blake2s(repr((identity, version)).encode(), digest_size=4).hexdigest()
    return f"{name}:{digest}"


def _valid(value: Any, options: Sequence | None) -> bool:
    if options is None:
        return True
    if isinstance(value, list):
        return all(v in options for v in value)
    return value in options


def _current(name: str, default: Any, options: Sequence | None) -> Any:
    value = kept(name, default)
    if not _valid(value, options):
        value = default if _valid(default, options) else (options[0] if options else None)
    return value


def keep(name: str, value: Any) -> Any:
    """Store the value in use for ``name`` (a widget of its own key, a page's bookkeeping)."""
    _store()[name] = value
    return value


def selectbox(where: Any, label: str, options: Sequence, name: str, default: Any = None,
              format_func: Callable[[Any], str] = str, **kwargs: Any) -> Any:
    """``st.selectbox`` whose value is kept (see the module docstring); returns the value in use."""
    options = list(options)
    value = _current(name, default if default is not None else (options[0] if options else None), options)
    labels = tuple(format_func(o) for o in options)
    key = key_of(name, (label, labels, kwargs.get("disabled", False)))
    index = options.index(value) if value in options else None
    return keep(name, where.selectbox(label, options, index=index, format_func=format_func, key=key, **kwargs))


def radio(where: Any, label: str, options: Sequence, name: str, default: Any = None,
          format_func: Callable[[Any], str] = str, **kwargs: Any) -> Any:
    options = list(options)
    value = _current(name, default if default is not None else options[0], options)
    key = key_of(name, (label, tuple(format_func(o) for o in options)))
    return keep(name, where.radio(label, options, index=options.index(value), format_func=format_func, key=key,
                                   **kwargs))


def multiselect(where: Any, label: str, options: Sequence, name: str, default: list,
                format_func: Callable[[Any], str] = str, **kwargs: Any) -> list:
    options = list(options)
    previous = kept(name)
    value = [v for v in (previous if isinstance(previous, list) else default) if v in options]
    if not value and previous:  # none of the kept choices exists any more (another model)
        value = [v for v in default if v in options]
    key = key_of(name, (label, tuple(format_func(o) for o in options)))
    return keep(name, where.multiselect(label, options, default=value, format_func=format_func, key=key, **kwargs))


def slider(where: Any, label: str, min_value: Any, max_value: Any, name: str, default: Any,
           step: Any = None, **kwargs: Any) -> Any:
    value = kept(name, default)
    if not (isinstance(value, type(default)) and min_value <= value <= max_value):
        value = min(max(default, min_value), max_value)
    key = key_of(name, (label, min_value, max_value, step))
    return keep(name, where.slider(label, min_value, max_value, value=value, step=step, key=key, **kwargs))


def select_slider(where: Any, label: str, options: Sequence, name: str, default: Any,
                  format_func: Callable[[Any], str] = str, **kwargs: Any) -> Any:
    options = list(options)
    value = _current(name, default, options)
    key = key_of(name, (label, tuple(format_func(o) for o in options)))
    return keep(name, where.select_slider(label, options, value=value, format_func=format_func, key=key, **kwargs))


def number(where: Any, label: str, name: str, default: float, *, min_value: float | None = None,
           max_value: float | None = None, **kwargs: Any) -> float:
    value = kept(name, default)
    if not isinstance(value, (int, float)) or (min_value is not None and value < min_value) or (
            max_value is not None and value > max_value):
        value = default
    key = key_of(name, (label, min_value, max_value))
    return keep(name, where.number_input(label, min_value=min_value, max_value=max_value, value=value, key=key,
                                         **kwargs))


def text(where: Any, label: str, name: str, default: str = "", **kwargs: Any) -> str:
    value = kept(name, default)
    return keep(name, where.text_input(label, value=value if isinstance(value, str) else default,
                                       key=key_of(name, (label,)), **kwargs))


def toggle(where: Any, label: str, name: str, default: bool = False, **kwargs: Any) -> bool:
    value = bool(kept(name, default))
    return keep(name, where.toggle(label, value=value, key=key_of(name, (label,)), **kwargs))
