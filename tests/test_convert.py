"""``python -m densenet convert``: choices written once, refusals in one line."""

from __future__ import annotations

import io
import json

import pytest
import torch

import densenet
from densenet.__main__ import main
from densenet.convert import apply_choices, read_thresholds
from densenet.labels import CHEXPERT, outputs


def tiny(num_classes: int = 14, in_channels: int = 1) -> densenet.DenseNet:
    cfg = densenet.DenseNetConfig(growth_rate=4, block_config=(1, 1), num_init_features=8, stem="small",
                                  in_channels=in_channels, num_classes=num_classes)
    return densenet.DenseNet(cfg).eval()


@pytest.fixture
def plain_pt(tmp_path):
    path = tmp_path / "plain.pt"
    buf = io.BytesIO()
    torch.save(tiny().state_dict(), buf)
    path.write_bytes(buf.getvalue())
    return path


def test_every_choice_is_written_and_read_back(plain_pt, tmp_path, capsys):
    names = tmp_path / "names.json"
    names.write_text(json.dumps(list(CHEXPERT)))
    out = tmp_path / "out.safetensors"
    code = main(["convert", str(plain_pt), str(out), "--classes", str(names), "--multilabel",
                 "--thresholds", ",".join(["0.4"] * 13 + ["none"]), "--preprocess", "xray", "--geometry", "letterbox"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "one sigmoid per finding" in printed and "letterbox" in printed
    model = densenet.load_checkpoint(out)
    spec = outputs(model)
    assert spec.stated and spec.multilabel and spec.class_names == CHEXPERT
    assert spec.thresholds == (0.4,) * 13 + (None,)
    assert model.preprocessing.name == "xray" and model.preprocessing.geometry == "letterbox"


def test_single_label_and_preset_kind(plain_pt, tmp_path):
    out = tmp_path / "a.safetensors"
    assert main(["convert", str(plain_pt), str(out), "--classes", "chexpert", "--single-label"]) == 0
    assert not densenet.load_checkpoint(out).config.multilabel
    model = apply_choices(densenet.load_checkpoint(plain_pt), classes="chexpert")
    assert model.config.multilabel  # a preset implies its kind


@pytest.mark.parametrize("extra, message", [
    (["--classes", "xrv"], "18 class names for a model with 14 outputs"),
    (["--thresholds", "0.5,0.5"], "2 thresholds for a model with 14 outputs"),
    (["--preprocess", "imagenet"], "3-channel input; this model takes 1"),
    (["--classes", "nosuchfile.txt"], "neither a class-name preset"),
])
def test_refusals_are_one_line_on_stderr(plain_pt, tmp_path, capsys, extra, message):
    assert main(["convert", str(plain_pt), str(tmp_path / "x.safetensors"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "x.safetensors").exists()


def test_existing_output_needs_force(plain_pt, tmp_path, capsys):
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"keep me")
    assert main(["convert", str(plain_pt), str(out)]) == 2
    assert "--force" in capsys.readouterr().err and out.read_bytes() == b"keep me"
    assert main(["convert", str(plain_pt), str(out), "--force"]) == 0
    assert main(["convert", str(plain_pt), str(tmp_path / "out.pt")]) == 2
    assert "should end in .safetensors" in capsys.readouterr().err


def test_a_damaged_input_says_so(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04" + b"\x00" * 50)
    assert main(["convert", str(bad), str(tmp_path / "o.safetensors")]) == 2
    assert "truncated or damaged" in capsys.readouterr().err


def test_read_thresholds_forms(tmp_path):
    assert read_thresholds("0.1, 0.2 none") == [0.1, 0.2, None]
    f = tmp_path / "t.json"
    f.write_text("[0.1, null]")
    assert read_thresholds(f) == [0.1, None]
    with pytest.raises(ValueError, match="not a threshold: 'abc'"):
        read_thresholds("0.1,abc")


def test_apply_choices_leaves_the_model_alone():
    model = tiny()
    before = (model.config, list(model.class_names), dict(model.metadata), model.preprocessing)
    copy = apply_choices(model, classes="chexnet", geometry="resize")
    assert copy.preprocessing.geometry == "resize" and copy.config.multilabel
    assert (model.config, list(model.class_names), dict(model.metadata), model.preprocessing) == before
