"""How every page starts: its header, the sidebar's context, and the reasons it cannot go on."""

from __future__ import annotations

import streamlit as st

import densenet

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


def model_failed(ctx: Context, reason: str) -> None:
    st.error(f"Could not load the {ctx.spec.label}: {reason}", icon=":material/error:")
    st.caption("Nothing below is shown until a model loads: choose another file or source in the sidebar.")
    st.stop()


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
        st.stop()
    model = load(ctx)
    return ctx, model, get_analysis(ctx, graph=graph)
