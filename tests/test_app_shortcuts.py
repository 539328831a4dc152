"""The Audit page's Shortcuts tab: look for shortcuts on a finished audit, see the flagged cluster, open a member."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from tests.apptest import ok, widget

from dashboard import audits, navigation
from densenet import audit
from densenet.demo.shortcut import load_shortcut
from densenet.synthetic_shortcut import MARKER_CLASS, read_markers, write_shortcut_dataset

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")
TIMEOUT = 300
SEED = 81_000_003  # fresh films

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def made(tmp_path, monkeypatch):
    """A finished audit (no shortcuts yet) of the shortcut model on 40 marked films, in the app's audits folder."""
    monkeypatch.setenv(audits.CACHE_ENV, str(tmp_path / "cache"))
    torch.set_num_threads(1)
    data = write_shortcut_dataset(tmp_path / "films", 40, seed=SEED)
    model = load_shortcut()
    dataset = audit.load_dataset(data["images"], list(model.class_names), labels=data["labels"])
    out = audits.audits_dir() / "shortcut-run"
    audit.run_audit(model, dataset, out, audit.Settings(layers=("features.denseblock2",)), model_source="shortcut")
    return out, read_markers(data["markers"])


def test_the_shortcuts_tab_finds_the_marker_and_opens_a_member(made):
    out, markers = made
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    widget(at, "selectbox", "model_source").set_value("demo_shortcut").run()
    at.switch_page("views/audit.py").run()
    ok(at)
    assert [t.label for t in at.tabs][-2:] == ["Gallery", "Shortcuts"]
    ok(at.button(key="audit_shortcuts_run").click().run())
    assert audit.read_shortcuts(out) is not None
    warning = " ".join(w.value for w in at.warning)
    assert "1 shortcut flagged" in warning
    flagged = [c for c in audit.read_summary(out)["shortcuts"] if c["flagged"]]
    assert [c["target"] for c in flagged] == [MARKER_CLASS]
    assert any(e.label.startswith(f"⚠ '{MARKER_CLASS}'") and "top-left corner" in e.label for e in at.expander)
    assert any("are explained by the top-left corner" in m.value for m in at.markdown)
    assert len(at.main.get("image")) >= 2  # the mean map and member thumbnails
    opener = next(b for b in at.button if (b.key or "").startswith("shortcut_open.0."))
    image = opener.key.split(".", 2)[2]
    assert markers[image] is not None  # a member of the flagged cluster carries the marker
    ok(opener.click().run())
    assert widget(at, "selectbox", "cam_layer").value == "features.denseblock2"
    assert navigation.image_override(at.session_state).name == image
    assert f"From the audit: {image}" in [c.value for c in at.sidebar.caption]
