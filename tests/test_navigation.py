"""'Open on the Attention page' is a typed request: the case opens with its method, layer, target and image.

The page test finds the Attention page's controls by their labels, never by their keys: renaming a
control breaks nothing here, and nothing outside the Attention page writes its keys.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.apptest import ok

from dashboard import navigation
from dashboard.navigation import AttentionRequest, ImageOverride
from densenet import demo, explain, load_image
from densenet.preprocess import prepare

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")
SAMPLE = ROOT / "assets" / "samples" / "demo_nodule_1.png"


def test_a_request_is_taken_once_and_the_image_stays_until_cleared(tmp_path):
    path = tmp_path / "case.png"
    path.write_bytes(b"x")
    state: dict = {}
    request = AttentionRequest(ImageOverride("case.png", path, tmp_path), "gradcam", None, 2)
    assert navigation.take_attention_request(state) is None
    navigation.open_on_attention(request, state)
    assert navigation.image_override(state) == request.image
    assert navigation.take_attention_request(state) == request
    assert navigation.take_attention_request(state) is None  # taken once
    assert navigation.image_override(state) == request.image  # the image stays
    path.unlink()
    assert navigation.image_override(state) is None  # its file is gone
    navigation.clear_image_override(state)
    assert navigation.image_override(state) is None and navigation.take_attention_request(state) is None
    with pytest.raises(ValueError, match="target"):
        AttentionRequest(request.image, "gradcam", None, -1)


def _selectbox(at: AppTest, label: str):
    found = [s for s in at.selectbox if s.label == label]
    assert found, f"no selectbox {label!r}; have {[s.label for s in at.selectbox]}"
    return found[0]


@pytest.mark.timeout(600)
def test_an_opened_case_shows_its_method_layer_target_and_image(tmp_path):
    model = demo.load()
    image = load_image(SAMPLE)
    logits = model(prepare(image, model).x)
    top = int(logits.argmax())
    target = next(i for i in range(len(model.class_names)) if i != top)  # not what the page would pick itself
    method = explain.methods(kind=explain.Kind.GRADIENT_CAM)[1]  # not the page's default method
    layer = "features.denseblock3"  # not the demo model's default layer
    assert layer != model.metadata["cam_layer"]
    case = tmp_path / "images" / "case_7.png"
    case.parent.mkdir()
    shutil.copy(SAMPLE, case)

    at = AppTest.from_file(APP, default_timeout=300)
    ok(at.run())
    navigation.open_on_attention(AttentionRequest(ImageOverride("images/case_7.png", case, tmp_path),
                                                  method.name, layer, target), at.session_state)
    ok(at.switch_page("views/attention.py").run())
    assert _selectbox(at, "Method").value == method.name
    assert _selectbox(at, "Layer").value == layer
    assert _selectbox(at, "Class to explain").value == target
    assert "From the audit: images/case_7.png" in [c.value for c in at.sidebar.caption]
    captions = [img.caption for element in at.main.get("image") for img in element.proto.imgs]
    assert f"{method.label} · denseblock3 · {model.class_names[target]}" in captions, captions
    ok(at.run())  # taken once: a rerun keeps the case's choices, the user's from now on
    assert _selectbox(at, "Class to explain").value == target


def _slider(at: AppTest, label: str):
    found = [s for s in at.slider if s.label == label]
    assert found, f"no slider {label!r}; have {[s.label for s in at.slider]}"
    return found[0]


@pytest.mark.timeout(600)
def test_an_opened_case_stays_over_an_earlier_upload_until_back_to_the_samples(tmp_path, make_png):
    """Issue 21, defect 3: the next click after opening a case must not fall back to the sidebar's upload."""
    model = demo.load()
    target = 2
    case = tmp_path / "images" / "case_3.png"
    case.parent.mkdir()
    shutil.copy(SAMPLE, case)
    at = AppTest.from_file(APP, default_timeout=300)
    ok(at.run())
    at.file_uploader(key="image_upload").set_value(("earlier.png", make_png(5), "image/png"))
    ok(at.run())
    navigation.open_on_attention(AttentionRequest(ImageOverride("images/case_3.png", case, tmp_path),
                                                  "gradcam", "features.denseblock2", target), at.session_state)
    ok(at.switch_page("views/attention.py").run())
    for opacity in (0.7, 0.3):  # nudging any control keeps the case, its class and its image
        _slider(at, "Overlay opacity").set_value(opacity)
        ok(at.run())
        assert "From the audit: images/case_3.png" in [c.value for c in at.sidebar.caption]
        assert at.sidebar.get("image")[0].proto.imgs[0].caption.startswith("images/case_3.png")
        assert _selectbox(at, "Class to explain").value == target
        assert model.class_names[target] in " ".join(img.caption for e in at.main.get("image") for img in e.proto.imgs)
    [back] = [b for b in at.sidebar.button if b.label == "Back to the samples"]
    back.click()
    ok(at.run())
    assert at.sidebar.get("image")[0].proto.imgs[0].caption.startswith("earlier.png")  # the upload again
