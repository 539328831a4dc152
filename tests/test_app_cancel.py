"""Defect 5: no stale Cancel button above the map once the work it would cancel has finished."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from tests.apptest import ok, widget

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


def cancel_buttons(at: AppTest) -> list[str]:
    return [b.key for b in at.button if (b.key or "").endswith("_cancel")]


def test_no_cancel_button_after_occlusion_finishes():
    at = ok(AppTest.from_file(APP, default_timeout=300).run())  # the demo model: Occlusion waits for a click
    at.switch_page("views/attention.py").run()
    widget(ok(at), "selectbox", "method").set_value("occlusion").run()
    assert at.button(key="run_attr") is not None and not cancel_buttons(ok(at))
    at.button(key="run_attr").click().run()
    ok(at)
    assert not cancel_buttons(at), cancel_buttons(at)
    assert "Occlusion" in " ".join(img.caption for el in at.main.get("image") for img in el.proto.imgs)
