"""Defect 5: no stale Cancel button above the map once the work it would cancel has finished."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from tests.apptest import ok, widget

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


def cancel_buttons(at: AppTest) -> list[str]:
    return [b.key for b in at.button if (b.key or "").endswith("_cancel")]


def test_no_cancel_button_after_occlusion_finishes(monkeypatch):
    monkeypatch.setenv("DENSENET_AT_ONCE_S", "0")  # whatever this machine measures, Occlusion waits for a click
    at = ok(AppTest.from_file(APP, default_timeout=300).run())
    at.switch_page("views/attention.py").run()
    widget(ok(at), "selectbox", "method").set_value("occlusion").run()
    assert at.button(key="run_attr") is not None and not cancel_buttons(ok(at))
    at.button(key="run_attr").click().run()
    ok(at)
    assert not cancel_buttons(at), cancel_buttons(at)
    assert "Occlusion" in " ".join(img.caption for el in at.main.get("image") for img in el.proto.imgs)


def test_slow_methods_give_an_estimate_and_quick_ones_run_at_once(monkeypatch):
    monkeypatch.setenv("DENSENET_AT_ONCE_S", "0")
    at = ok(AppTest.from_file(APP, default_timeout=300).run())
    at.switch_page("views/attention.py").run()
    widget(ok(at), "selectbox", "method").set_value("occlusion").run()
    note = " ".join(i.value for i in ok(at).main.info)
    assert "takes a while (≈ " in note and "forwards with one" in note, note
    monkeypatch.setenv("DENSENET_AT_ONCE_S", "1000")  # under the bound: no button, the map at once
    at.run()
    assert not [b for b in ok(at).button if b.key == "run_attr"]
    assert "Occlusion" in " ".join(img.caption for el in at.main.get("image") for img in el.proto.imgs)
