"""Defect 8: a layer chosen for one model does not carry over to another (Attention's layer, the Audit's layers)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import densenet
import densenet.demo
from densenet import DenseNetConfig, audit
from tests.apptest import ok, widget

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> bytes:
    cfg = DenseNetConfig(growth_rate=4, block_config=(2, 2, 2), num_init_features=8, bn_size=2, in_channels=1,
                         num_classes=4, stem="cifar")
    model = densenet.create(cfg, class_names=["none", "nodule", "opacity", "ring"]).eval()
    path = tmp_path_factory.mktemp("ckpt") / "other.safetensors"
    densenet.save_checkpoint(model, path)
    return path.read_bytes()


def test_attention_and_audit_open_each_model_at_its_own_layers(checkpoint):
    at = ok(AppTest.from_file(APP, default_timeout=240).run())
    demo = densenet.demo.load()
    at.switch_page("views/attention.py").run()
    assert widget(ok(at), "selectbox", "cam_layer").value == demo.metadata["cam_layer"] == "features.denseblock2"
    widget(at, "selectbox", "cam_layer").set_value("features.denseblock1").run()
    at.switch_page("views/audit.py").run()
    assert widget(ok(at), "multiselect", "audit.layers").value == audit.default_layers(demo)

    widget(at, "selectbox", "model_source").set_value("checkpoint").run()
    at.file_uploader(key="ckpt_upload").set_value(("other.safetensors", checkpoint, "application/octet-stream"))
    ok(at.run())
    expected = ["features.denseblock1", "features.denseblock2", "features.denseblock3", "features.norm5"]
    assert widget(at, "multiselect", "audit.layers").value == expected
    at.switch_page("views/attention.py").run()
    assert widget(ok(at), "selectbox", "cam_layer").value == "features.norm5"
