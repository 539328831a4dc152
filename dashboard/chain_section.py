"""The Claims page's classroom experiment on dense links: the demo model's accuracy with blocks cut to a chain."""

from __future__ import annotations

import streamlit as st

from densenet import classroom, demo
from densenet.demo import train as demo_train

from . import cut_figures, page, runtime, session

SIZES = {"classroom": 200, "quick": 20}
MEMO = "claims.chain"


def render(number: int, scale: str) -> None:
    """Draw the section; ``scale`` is the page's experiment size (``classroom`` or ``quick``)."""
    n = SIZES.get(scale, SIZES["classroom"])
    st.subheader(f"{number}. Does it need its dense links?")
    st.markdown("> *Cut every link but the chain* (an experiment, not a claim of the lesson)")
    st.caption(f"The bundled demo model classifies {n} generated films it never saw: with every link, with each "
               "block's dense links cut so that each layer reads only the layer before it (a plain chain), and "
               "with every block a chain. The weights stay those trained with every link: this measures how much "
               "the trained network relies on its dense links, not how well a chain could learn. On the Dense block "
               "page the same button cuts one block for the sidebar's image.")
    key = (n,)
    result = session.peek(MEMO, key)
    row = st.columns([1, 4], vertical_alignment="center")
    run = row[0].button("Run again" if result is not None else "Run", key="claims.run.chain",
                        icon=":material/play_arrow:", type="primary" if result is None else "secondary")
    row[1].caption("a few seconds" if scale == "quick" else "≈ 15–30 s on this machine (2 cores)")
    if run:
        with runtime.job("Cutting the dense links of the demo model", long=True, bar=True) as job:
            fresh = classroom.chain_experiment(demo.load(), seed=demo_train.EVAL_SEED, n=n, progress=job.progress)
        session.forget(MEMO)  # only once the new result is complete
        result = session.memo(MEMO, key, lambda: fresh, max_entries=1)
        st.rerun()  # the button's label follows ("Run again")
    if result is None:
        return
    left, right = st.columns([3, 2], gap="large")
    with left:
        page.chart(cut_figures.chain_bars(result), key="claims_chain")
    with right:
        st.markdown("**What it shows** (measured now):\n" + "\n".join(f"- {line}" for line in result.findings()))
        st.caption(result.measured)
