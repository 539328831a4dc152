"""How every page starts: its header, the sidebar's context, and the reasons it cannot go on."""

from __future__ import annotations

from typing import Any, NoReturn

import plotly.graph_objects as go
import streamlit as st

import densenet

from . import session

from .results import Analysis, Context, get_analysis
from .sources import ModelError

_CONTEXT = "_context"


def set_context(ctx: Context) -> None:
    st.session_state[_CONTEXT] = ctx


def context() -> Context:
    return st.session_state[_CONTEXT]


def start(title: str) -> Context:
    """The page's header; a model that could not be loaded stops the page here, saying why."""
    ctx = context()
    st.header(title, divider="gray")
    if ctx.model_error is not None:
        model_failed(ctx, ctx.model_error)
    return ctx


def server_time() -> None:
    """The sidebar's last line: how long the server worked on this view."""
    from . import runtime

    st.sidebar.caption(f"Server time for this view: {runtime.elapsed_ms():.0f} ms")


def stop() -> NoReturn:
    """``st.stop()`` after the sidebar's server time (nothing can be drawn once a stop is requested)."""
    server_time()
    st.stop()
    raise AssertionError("not reached: st.stop() raises")


def model_failed(ctx: Context, reason: str) -> None:
    st.error(f"Could not load the {ctx.spec.label}: {reason}", icon=":material/error:")
    st.caption("Nothing below is shown until a model loads: choose another file or source in the sidebar.")
    stop()


def load(ctx: Context) -> densenet.DenseNet:
    """The context's model; a failure stops the page with the reason."""
    try:
        return ctx.load()
    except ModelError as e:
        model_failed(ctx, str(e))
        raise  # not reached: st.stop() raises


def with_image(title: str, *, graph: bool = False) -> tuple[Context, densenet.DenseNet, Analysis]:
    """The top of a page that reads the image: without one the page says why and stops."""
    ctx = start(title)
    if ctx.image is None:
        st.info(ctx.image_error or "Choose a sample or upload an image in the sidebar.")
        stop()
    model = load(ctx)
    return ctx, model, get_analysis(ctx, graph=graph)


# --- presenter mode ----------------------------------------------------------------------------

PRESENTER = "presenter"
#: For a projector at 1280×720: bigger text everywhere, no sidebar (the page's toggle brings it back).
PRESENTER_CSS = """<style>
  [data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"] { display: none; }
  html { font-size: 20px; }
  [data-testid="stMainBlockContainer"] { padding-left: 1.5rem; padding-right: 1.5rem; max-width: 100%; }
  [data-testid="stMetricValue"] { font-size: 2.1rem; }
  [data-testid="stCaptionContainer"] { font-size: 0.95rem; }
</style>"""


def presenting() -> bool:
    return bool(session.kept(PRESENTER, False))


def presenter_toggle(where: Any) -> bool:
    """The "Presenter mode" switch (in the main area, so it is there when the sidebar is not)."""
    on = session.toggle(where, "Presenter mode", PRESENTER, False,
                        help="For a projector: hides the sidebar and enlarges text and chart labels. "
                             "Choose the model and image first.")
    if on:
        st.html(PRESENTER_CSS)
    return on


def chart(fig: go.Figure, **kwargs: Any) -> Any:
    """``st.plotly_chart`` without the mode bar; in presenter mode with larger fonts (on a copy:
    figures may be shared by every session)."""
    if presenting():
        fig = go.Figure(fig)
        size = (fig.layout.font.size or 12) + 5
        fig.update_layout(font=dict(size=size), title_font_size=size + 3, hoverlabel_font_size=size,
                          height=int((fig.layout.height or 400) * 1.15))
        fig.update_annotations(font_size=size + 1)  # subplot titles: above the tick labels, below the title
    kwargs.setdefault("config", {"displayModeBar": False})
    return st.plotly_chart(fig, **kwargs)
