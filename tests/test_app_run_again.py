"""Claims and vs ResNet: a finished run relabels its button ("Run again", "Measure again") and a second run
keeps the shown result until the new one is complete; the Claims page's chain experiment."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.apptest import ok, use_tiny, widget

pytestmark = pytest.mark.timeout(600)

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


def label(at: AppTest, key: str) -> str:
    return at.button(key=key).label


def chart_keys(at: AppTest) -> list[str]:
    return [c.key or "" for c in at.get("plotly_chart")]


@pytest.fixture(scope="module")
def claims() -> AppTest:
    at = use_tiny(ok(AppTest.from_file(APP, default_timeout=300).run()))
    at.switch_page("views/claims.py")
    ok(at.run())
    widget(at, "radio", "claims.scale").set_value("quick").run()
    return ok(at)


def test_run_button_says_run_again_and_keeps_the_result(claims):
    at = claims
    assert label(at, "claims.run.params") == "Run"
    at.button(key="claims.run.params").click().run()
    assert label(ok(at), "claims.run.params") == "Run again"
    assert "claims_params" in chart_keys(at)
    at.button(key="claims.run.params").click().run()
    assert label(ok(at), "claims.run.params") == "Run again" and "claims_params" in chart_keys(at)


def test_chain_experiment_on_the_claims_page(claims):
    at = claims
    assert any("Does it need its dense links?" in h.value for h in at.subheader)
    at.button(key="claims.run.chain").click().run()
    ok(at)
    assert label(at, "claims.run.chain") == "Run again"
    assert "claims_chain" in chart_keys(at)
    text = " ".join(m.value for m in at.markdown)
    assert "as a chain" in text and "accuracy" in text


def test_measure_memory_says_measure_again():
    at = use_tiny(ok(AppTest.from_file(APP, default_timeout=300).run()))
    at.switch_page("views/compare.py")
    ok(at.run())
    assert label(at, "compare.resnet.measure") == "Measure memory"
    at.button(key="compare.resnet.measure").click().run()
    assert label(ok(at), "compare.resnet.measure") == "Measure again"
    tables = [m.value for m in at.markdown if m.value.startswith("| |")]
    row = next(line for line in tables[0].splitlines() if line.startswith("| Activation memory"))
    assert row.count(" MB") >= 2


def test_watch_it_learn_says_what_the_run_shows(claims):
    at = claims
    at.button(key="claims.run.learn").click().run()
    text = " ".join(c.value for c in ok(at).caption)
    assert "What this run shows: after 4 steps the running accuracy is" in text and "(chance: 25%)" in text
