"""The Claims and DenseNet-vs-ResNet pages under AppTest, their figures, and the lesson export in a real browser."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.apptest import ok, use_tiny, widget
from tests.conftest import TINY_GREY as TINY

import densenet
from dashboard import classroom_figures as cf
from dashboard import lesson
from densenet import classroom

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")
TIMEOUT = 300  # first runs import torch and torchvision; two cores are shared





def chart(at: AppTest, key: str) -> dict:
    found = [c for c in at.get("plotly_chart") if (c.key or "").startswith(key)]
    assert found, f"no plotly chart {key!r}; have {[c.key for c in at.get('plotly_chart')]}"
    return json.loads(found[-1].proto.spec)


def metrics(at: AppTest, label: str) -> list[str]:
    return [m.value for m in at.metric if m.label == label]




# --- the pages under AppTest ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def claims_app() -> AppTest:
    """The Claims page in quick mode with every experiment run once (a tiny custom model in the sidebar)."""
    at = use_tiny(ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run()))
    at.switch_page("views/claims.py")
    ok(at.run())
    assert widget(at, "radio", "claims.scale").value == "classroom"
    widget(at, "radio", "claims.scale").set_value("quick").run()
    for claim in lesson.CLAIMS:
        at.button(key=f"claims.run.{claim}").click().run()
        ok(at)
    return at


def test_each_claim_runs_in_quick_mode_and_shows_its_chart(claims_app):
    at = claims_app
    published = chart(at, "claims_params")
    assert {t["name"] for t in published["data"]} == {"DenseNet", "ResNet"}
    assert published["layout"]["xaxis"]["type"] == "log"
    bars = chart(at, "claims_same_depth")["data"][0]
    assert len(bars["x"]) == 2  # DenseNet and the ResNet of its depth

    grads = chart(at, "claims_gradients")
    assert [t["name"] for t in grads["data"] if t.get("showlegend") is not False] == ["plain CNN", "ResNet", "DenseNet"]
    assert len(grads["data"]) == 6  # three networks, two panels
    assert any("Flattest profile" in m.value for m in at.markdown)

    memory = chart(at, "claims_memory")
    assert len(memory["data"]) == 3 and all("∝ L<sup>" in t["name"] for t in memory["data"])
    assert any(m.value.startswith("**Fitted exponents**") for m in at.markdown)

    assert chart(at, "claims_reuse_live")["data"][0]["type"] == "heatmap"
    assert chart(at, "claims_reuse_demo")["data"][0]["type"] == "heatmap"

    curves = chart(at, "claims_learn_final")
    assert {t["legendgroup"] for t in curves["data"]} == {"DenseNet", "ResNet"}
    assert len(metrics(at, "DenseNet: images/s")) == 1 and len(metrics(at, "ResNet: images/s")) == 1
    assert len(at.main.get("image")) == 3  # the image and both Grad-CAMs

    # a rerun shows every result from the memo, with the buttons saying so
    ok(at.run())
    assert all(at.button(key=f"claims.run.{c}").label == "Run again" for c in lesson.CLAIMS)
    assert chart(at, "claims_memory")


def test_durations_are_stated_beside_the_buttons():
    at = ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    at.switch_page("views/claims.py")
    ok(at.run())
    said = [c.value for c in at.caption if "on this machine" in c.value]
    assert len(said) == len(lesson.CLAIMS) + 1  # and the dense-links experiment (issue 21)
    assert not at.get("plotly_chart")  # nothing runs before a click


def test_the_lesson_holds_every_claim_run_and_opens_in_chromium(claims_app, tmp_path):
    state = claims_app.session_state
    ran = {}
    for claim in lesson.CLAIMS:
        key = state["_controls"][f"claims.{claim}.last"]
        ran[claim] = state[f"_cache_claims.{claim}"][key]
    topo = densenet.topology(TINY.replace(in_channels=3, num_classes=10, block_config=(3, 2)), 32)  # the sidebar's
    text = lesson.build(topo, title="Custom DenseNet", claims=ran)
    assert "Claims not run" not in text
    path = tmp_path / "lesson.html"
    path.write_text(text, encoding="utf-8")
    assert _rendered_plots(path) == text.count('class="plotly-graph-div"')


# --- the compare page ---------------------------------------------------------------------------------

def test_compare_page_shows_both_columns_with_their_link_counts():
    at = use_tiny(ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run()), k=4, blocks=(3, 2))
    at.switch_page("views/compare.py")
    ok(at.run())
    cfg = densenet.DenseNetConfig(growth_rate=4, block_config=(3, 2), num_init_features=8, stem="cifar",
                                  num_classes=10)
    resnet_units = len(classroom.compare_with_resnet(cfg, measure_memory=False).right.unit_names)
    # DenseNet | ResNet, then A | B (B: the same blocks, another k: the same links)
    assert metrics(at, "Links") == ["9", str(resnet_units), "9", "9"]
    tables = [m.value for m in at.markdown if m.value.startswith("| |")]
    assert len(tables) == 2 and all("| Activation memory | – | – |" in t for t in tables)
    assert f"| Links | 9 | {resnet_units} |" in tables[0] and "| Links | 9 | 9 | +0 | ×1.00 |" in tables[1]
    assert any(r"H_l([x_0, x_1, \ldots, x_{l-1}])" in e.value for e in at.get("latex"))
    assert any(r"H_l(x_{l-1}) + x_{l-1}" in e.value for e in at.get("latex"))
    assert len(chart(at, "cmp_reads")["data"]) == 2  # channels read: a panel per network

    at.button(key="compare.resnet.measure").click().run()
    ok(at)
    tables = [m.value for m in at.markdown if m.value.startswith("| |")]
    row = next(line for line in tables[0].splitlines() if line.startswith("| Activation memory"))
    assert row.count(" MB") >= 2 and "| Activation memory | – |" in tables[1]

    widget(at, "slider", f"compare.k.{_digest(cfg)}").set_value(8).run()
    ok(at)
    tables = [m.value for m in at.markdown if m.value.startswith("| |")]
    params = next(line for line in tables[1].splitlines() if line.startswith("| Parameters"))
    ratio = float(params.rstrip(" |").rsplit("×", 1)[1])
    assert params.split("|")[4].strip().startswith("+") and ratio > 1


def _digest(cfg: densenet.DenseNetConfig) -> str:
    import hashlib

    return hashlib.blake2s(cfg.to_json().encode(), digest_size=4).hexdigest()


# --- pure figures and the lesson --------------------------------------------------------------------

@pytest.fixture(scope="module")
def results() -> dict:
    """Every experiment at tiny settings (seconds)."""
    published = classroom.published_accuracy(families={"DenseNet": ("densenet121",), "ResNet": ("resnet18", "resnet34")})
    return {
        "params": lesson.FewerParameters(published, classroom.same_depth(TINY), "tiny"),
        "gradients": classroom.gradient_experiment(TINY, steps=1, batch_size=2),
        "memory": classroom.memory_experiment((2, 4, 8), growth_rate=4, in_channels=8, batch_size=2, image_size=8),
        "reuse": classroom.reuse_experiment(TINY, steps=1, batch_size=2, image_size=32),
        "learn": classroom.watch_it_learn(TINY, steps=2, batch_size=2, image_size=32, every=1),
    }


def test_figures_draw_what_the_results_hold(results):
    fig = cf.params_vs_accuracy(results["params"].published)
    resnets = next(t for t in fig.data if t.name == "ResNet")
    assert list(resnets.y) == [m.top1 for m in results["params"].published.family("ResNet")]
    assert fig.layout.xaxis.type == "log"

    same = results["params"].same_depth
    assert list(cf.same_depth_bars(same).data[0].y) == [same.densenet_params, same.resnet_params]

    grads = results["gradients"]
    fig = cf.gradient_profiles(grads)
    assert fig.layout.yaxis.type == "log" and len(fig.data) == 2 * len(grads.profiles)
    dense = grads.profile("DenseNet")
    assert list(fig.data[4].x) == dense.depths and np.allclose(fig.data[4].y, dense.init)

    mem = results["memory"]
    fig = cf.memory_curves(mem)
    assert fig.layout.xaxis.type == fig.layout.yaxis.type == "log"
    assert [list(t.y) for t in fig.data] == [c.peak_bytes for c in mem.curves]
    assert f"{mem.naive.exponent:.2f}" in fig.data[0].name and f"{mem.naive.exponent:.2f}" in cf.memory_exponents(mem)

    snap = results["learn"]
    fig = cf.learning_curves(snap)
    assert len(fig.data) == 4 and list(fig.data[0].x) == snap.densenet.steps
    rgb = cf.cam_overlay(snap.image, snap.densenet.cam)
    assert rgb.shape == snap.image.shape + (3,) and rgb.dtype == np.uint8
    with pytest.raises(ValueError, match="cam shape"):
        cf.cam_overlay(snap.image, np.zeros((3, 3)))


def test_comparison_table_and_reads_bars():
    comp = classroom.compare_configs(TINY, TINY.replace(growth_rate=8), measure_memory=False)
    table = cf.comparison_table(comp)
    links = table[table["Quantity"].str.startswith("links")].iloc[0]
    assert links["A"] == links["B"] == 3 + 3  # two blocks of 2 layers: 2·3/2 each
    params = table[table["Quantity"] == "parameters"].iloc[0]
    assert params["Difference"] == params["B"] - params["A"] and params["Ratio"] > 1
    assert table[table["Quantity"].str.contains("MB")]["A"].isna().all()  # memory not measured
    fig = cf.reads_bars(comp)
    assert list(fig.data[0].y) == comp.left.reads and list(fig.data[1].y) == comp.right.reads
    assert cf.ratio_text(None) == "–" and cf.ratio_text(2.0) == "×2.00"


def test_log_ticks_read_at_a_glance():
    ticks = cf.log_ticks(7.9e6, 60e6, cf._tick(("G", "M", "k", "")))
    assert ticks["ticktext"] == ["5 M", "10 M", "20 M", "30 M", "50 M"]
    wide = cf.log_ticks(1.6e6, 250e6, cf._tick(("GB", "MB", "kB", "B")))
    assert wide["ticktext"][:3] == ["1 MB", "2 MB", "5 MB"] and "200 MB" in wide["ticktext"]
    with pytest.raises(ValueError, match="log axis"):
        cf.log_ticks(0, 1, str)


def test_lesson_embeds_plotly_once_and_lists_what_was_not_run(results):
    topo = densenet.topology(densenet.VARIANTS["densenet121"])
    text = lesson.build(topo, title="DenseNet-121", claims={"memory": results["memory"]}, block_index=1)
    assert text.count("* plotly.js v") == 1  # the library itself, inline, once
    assert "<script src=" not in text and "<link " not in text  # nothing fetched
    # 4 connectivity figures, channel growth, 3 step figures, concat vs add, the memory curves
    assert text.count('class="plotly-graph-div"') == 4 + 1 + 3 + 1 + 1
    assert "Dense block 2, step by step" in text and "Claims not run in this session" in text
    assert "Fewer parameters, Vanishing gradients, Feature reuse, Watch it learn" in text
    assert "Total" in text and "depth L = 121" in text  # the paper table
    with pytest.raises(ValueError, match="block_index"):
        lesson.build(topo, title="x", block_index=4)
    with pytest.raises(ValueError, match="unknown claim"):
        lesson.build(topo, title="x", claims={"speed": 1})
    with pytest.raises(TypeError, match="no lesson section"):
        lesson.build(topo, title="x", claims={"memory": object()})


def test_lesson_with_every_claim_renders_offline_in_chromium(results, tmp_path):
    topo = densenet.topology(densenet.VARIANTS["densenet-bc-100-12"])
    text = lesson.build(topo, title="DenseNet-BC-100", claims=results)
    pictures = re.findall(r'<figure><img alt="[^"]*" src="([^"]{0,40})', text)
    assert len(pictures) == 3 and all(p.startswith("data:image/png;base64,") for p in pictures)  # image, 2 CAMs
    path = tmp_path / "lesson.html"
    path.write_text(text, encoding="utf-8")
    assert _rendered_plots(path) == text.count('class="plotly-graph-div"') > 10


# --- headless Chromium ----------------------------------------------------------------------------------

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]


def _rendered_plots(path: Path) -> int:
    """Open ``path`` in headless Chromium with the network blocked; the plotly divs drawn after load."""
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip(f"no Chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
                                    args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 720})
            requests: list[str] = []
            page.route("**/*", lambda route: (requests.append(route.request.url), route.continue_()
                                              if route.request.url.startswith(("file:", "data:")) else route.abort()))
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.as_uri(), wait_until="load")
            page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length > 0",
                                   timeout=60_000)
            page.wait_for_timeout(500)
            drawn = page.evaluate("() => document.querySelectorAll('div.js-plotly-plot').length")
        finally:
            browser.close()
    assert not errors, errors
    assert all(u.startswith(("file:", "data:")) for u in requests), requests  # nothing from the internet
    return drawn


def test_a_net_too_shallow_for_a_resnet_says_so_and_still_compares_configs():
    at = ok(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    at = use_tiny(at, k=4, blocks=(1,))
    widget(at, "toggle", "custom.bottleneck").set_value(False).run()  # depth 1 + 1 + 1 = 3
    at.switch_page("views/compare.py")
    ok(at.run())
    assert any("No ResNet of this depth" in i.value for i in at.info)
    assert metrics(at, "Links") == ["1", "1"]  # A and B: one layer, one link
    at.switch_page("views/claims.py")
    ok(at.run())
    widget(at, "radio", "claims.scale").set_value("quick").run()
    at.button(key="claims.run.params").click().run()
    ok(at)
    assert any("No ResNet of this depth" in i.value for i in at.info) and chart(at, "claims_params")
