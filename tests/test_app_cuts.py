"""The Dense-block page's "Cut links" section through AppTest: pick links, the chain button, importance vs relevance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import cut_figures
from densenet.topology import topology
from tests.apptest import ok, widget

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")
NAME = "cut_links.features.denseblock2"


@pytest.fixture(scope="module")
def page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    ok(at.run())
    at.switch_page("views/dense_block.py").run()
    widget(ok(at), "selectbox", "block").set_value(2).run()
    return ok(at)


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_page_offers_cutting_and_shows_before_and_after(page):
    at = page
    assert any("Cut links and watch the prediction move" in h.value for h in at.subheader)
    assert widget(at, "multiselect", NAME).value == []
    shown = metrics(at)
    before = next(v for k, v in shown.items() if k.startswith("Before: P("))
    after = next(v for k, v in shown.items() if k.startswith("After cutting 0 links"))
    assert before == after  # nothing cut yet
    widget(at, "multiselect", NAME).set_value([(0, 1), (0, 2), (1, 3)]).run()
    shown = metrics(ok(at))
    after = next(v for k, v in shown.items() if k.startswith("After cutting 3 links: P("))
    assert after != before
    captions = " ".join(img.caption for el in at.main.get("image") for img in el.proto.imgs)
    assert "Grad-CAM (norm5), all links" in captions and "Grad-CAM (norm5), 3 links cut" in captions
    fig = next(c for c in at.get("plotly_chart") if (c.key or "").startswith("cut_chart"))
    assert "3 of 10 links cut" in fig.proto.spec


def test_chain_button_cuts_every_dense_link(page):
    at = page
    at.button(key="cut_chain.features.denseblock2").click().run()
    chain = [(j, l) for l in range(1, 5) for j in range(l - 1)]
    assert sorted(widget(ok(at), "multiselect", NAME).value) == sorted(chain)
    assert any(k.startswith(f"After cutting {len(chain)} links") for k in metrics(at))
    at.button(key="cut_none.features.denseblock2").click().run()
    assert widget(ok(at), "multiselect", NAME).value == []


def test_importance_beside_relevance(page):
    at = page
    widget(at, "toggle", "cut_importance").set_value(True).run()
    ok(at)
    assert any((c.key or "") == "cut_vs_rel" for c in at.get("plotly_chart"))
    text = " ".join(m.value for m in at.markdown)
    assert "Spearman" in text and "They disagree most on" in text


def test_clicked_links_toggle_from_a_selection_event():
    block = topology("densenet121").blocks[0]
    fig = cut_figures.cut_graph(block, {(0, 2)})
    marker = next(t for t in fig.data if t.name == "link markers")
    assert len(marker.customdata) == block.num_links
    event = {"selection": {"points": [{"customdata": "link:1:3"}, {"customdata": ["link:0:2"]}]}}
    assert cut_figures.clicked_links(event) == [(1, 3), (0, 2)]
    m = cut_figures.cut_matrix(block, {(0, 2)})
    assert m.data[0].z[1][0] == 2.0 and m.data[0].z[2][1] == 1.0


def test_dense_block_page_gives_a_64_layer_matrix_room():
    at = ok(AppTest.from_file(APP, default_timeout=180).run())
    widget(at, "selectbox", "model_source").set_value("variant").run()
    widget(at, "selectbox", "variant").set_value("densenet264").run()
    at.switch_page("views/dense_block.py").run()
    widget(ok(at), "selectbox", "block").set_value(3).run()
    spec = json.loads(next(c for c in ok(at).get("plotly_chart") if c.key == "step_links").proto.spec)
    assert spec["layout"]["height"] >= 450 and spec["layout"]["title"]["text"] == "denseblock3: 64 layers, 2,080 links"


def test_presenter_mode_enlarges_subplot_titles():
    at = ok(AppTest.from_file(APP, default_timeout=180).run())
    at.switch_page("views/dense_block.py").run()
    widget(ok(at), "toggle", "presenter").set_value(True).run()
    widget(ok(at), "toggle", "cut_importance").set_value(True).run()
    ok(at)
    spec = json.loads(next(c for c in at.get("plotly_chart") if c.key == "cut_vs_rel").proto.spec)
    font = spec["layout"]["font"]["size"]
    assert all(a["font"]["size"] > font for a in spec["layout"]["annotations"])  # subplot titles stand out
