"""What the outputs mean: a CheXNet-shaped torchvision checkpoint read as 14 sigmoid findings."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torchvision

import densenet
from densenet import labels
from densenet.convert import apply_choices, convert_bytes
from densenet.labels import CHESTXRAY14, findings, outputs, presets_for, with_outputs
from densenet.preprocess import IMAGENET
import densenet.__main__


def save(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def chexnet_bytes() -> bytes:
    """A torchvision densenet121(num_classes=14) state dict, the CheXNet shape (built once: ~30 MB)."""
    torch.manual_seed(0)
    net = torchvision.models.densenet121(num_classes=14)
    with torch.no_grad():
        net.classifier.bias.copy_(torch.linspace(-3, 2, 14))  # distinct, non-trivial probabilities
    return save(net.state_dict())


@pytest.fixture(scope="module")
def film() -> torch.Tensor:
    rng = np.random.default_rng(1)
    image = np.clip(0.4 + 0.1 * rng.standard_normal((256, 256)), 0, 1).astype(np.float32)
    image[100:140, 60:100] = 1.0
    return image


def test_a_plain_14_output_checkpoint_is_a_guess_with_presets_to_offer(chexnet_bytes: bytes):
    model = densenet.load_checkpoint(chexnet_bytes)
    spec = outputs(model)
    assert not spec.stated and not spec.multilabel and spec.kind == "softmax"
    assert spec.class_names[0] == "class 0"
    assert [p.key for p in presets_for(14)] == ["chexnet", "chexpert"]
    assert [p.key for p in presets_for(18)] == ["xrv"]


def test_chestxray14_preset_gives_sigmoids_per_finding_and_one_map_each(chexnet_bytes: bytes, film):
    shared = densenet.load_checkpoint(chexnet_bytes)
    model = apply_choices(shared, classes="chexnet")
    assert outputs(model).stated and model.config.multilabel and model.class_names == list(CHESTXRAY14)
    assert not shared.config.multilabel and shared.class_names[0] == "class 0"  # the cached model is untouched
    assert model.classifier is shared.classifier  # weights shared, not copied

    x = densenet.preprocess(film, model)
    trace = model.trace(x, ["features.norm5"], keep_graph=True)
    probs = trace.probabilities[0]
    torch.testing.assert_close(probs, torch.sigmoid(trace.logits[0]))
    assert not torch.isclose(probs.sum(), torch.tensor(1.0), atol=1e-3)
    calls = findings(probs, outputs(model))
    assert [f.name for f in calls] == list(CHESTXRAY14)
    assert all(f.threshold == labels.DEFAULT_THRESHOLD and not f.calibrated for f in calls)
    assert [f.positive for f in calls] == [p >= 0.5 for p in probs.tolist()]
    assert any(f.positive for f in calls) and not all(f.positive for f in calls)

    maps = labels.finding_maps(trace, "gradcam")
    assert sorted(maps) == list(range(14))
    for i, m in maps.items():
        assert m.target == i and m.raw.shape == (7, 7) and m.map.shape == (224, 224)
        assert np.isfinite(m.raw).all()
    # each finding's map is its own: Grad-CAM of a different output
    assert not np.allclose(maps[0].raw, maps[13].raw)
    # the shared model still reads as softmax
    assert not shared.trace(x, ["features.norm5"]).multilabel


def test_after_convert_the_checkpoint_loads_with_no_choices(chexnet_bytes: bytes, film, tmp_path):
    data = convert_bytes(chexnet_bytes, classes="chexnet", thresholds=[0.3] * 13 + [None])
    model = densenet.load_checkpoint(data)
    spec = outputs(model)
    assert spec.stated and spec.multilabel and spec.class_names == CHESTXRAY14
    assert spec.thresholds == (0.3,) * 13 + (None,)
    assert model.preprocessing == IMAGENET
    reference = apply_choices(densenet.load_checkpoint(chexnet_bytes), classes="chexnet")
    x = densenet.preprocess(film, model)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))
    calls = findings(model.trace(x, []).probabilities, spec)
    assert calls[0].threshold == 0.3 and calls[0].calibrated
    assert calls[13].threshold == 0.5 and not calls[13].calibrated

    # the command line writes the same thing
    src, out = tmp_path / "chexnet.pth", tmp_path / "chexnet.safetensors"
    src.write_bytes(chexnet_bytes)
    assert densenet.__main__.main(["convert", str(src), str(out), "--classes", "chexnet"]) == 0
    again = densenet.load_checkpoint(out)
    assert outputs(again).stated and again.config.multilabel and again.class_names == list(CHESTXRAY14)


def test_torchxrayvision_thresholds_are_read_with_nan_as_none():
    model = densenet.create("densenet-bc-100-12", in_channels=1, num_classes=18)
    state = model.state_dict()
    op = torch.linspace(0.1, 0.9, 18)
    op[3] = float("nan")
    state["op_threshs"] = op
    loaded = densenet.load_checkpoint(save(state))
    spec = outputs(loaded)
    assert spec.stated and spec.multilabel and spec.class_names == labels.XRV_PATHOLOGIES
    assert spec.thresholds[3] is None and spec.thresholds[0] == pytest.approx(0.1)
    assert spec.threshold(3) == labels.DEFAULT_THRESHOLD
    # and they survive our own format
    again = densenet.load_checkpoint(densenet.checkpoints.checkpoint_bytes(loaded))
    assert outputs(again).thresholds == spec.thresholds and again.config.multilabel


def test_names_files_txt_and_json(tmp_path):
    txt = tmp_path / "names.txt"
    txt.write_text("  Effusion\n\nNodule \nMass\n", encoding="utf-8")
    assert labels.read_names(txt) == ["Effusion", "Nodule", "Mass"]
    assert labels.read_names(b'["a", "b"]', filename="x.json") == ["a", "b"]
    assert labels.read_names(b'{"classes": ["a", "b"]}', filename="x.json") == ["a", "b"]
    assert labels.resolve_names(txt, 3) == ["Effusion", "Nodule", "Mass"]
    with pytest.raises(ValueError, match="3 class names for a model with 4 outputs"):
        labels.resolve_names(txt, 4)
    with pytest.raises(ValueError, match="duplicate class name"):
        labels.read_names(b"a\nb\na\n")
    with pytest.raises(ValueError, match="list of strings"):
        labels.read_names(b"[1, 2]", filename="x.json")
    with pytest.raises(ValueError, match="neither a class-name preset"):
        labels.resolve_names("chexnett", 14)


def test_with_outputs_validates_and_drops_stale_thresholds():
    model = densenet.create("densenet-bc-100-12", num_classes=3, class_names=["a", "b", "c"])
    with pytest.raises(ValueError, match="2 thresholds for a model with 3 outputs"):
        with_outputs(model, thresholds=[0.1, 0.2])
    with pytest.raises(ValueError, match=r"probabilities in \(0, 1\)"):
        with_outputs(model, thresholds=[0.1, 0.2, 1.5])
    a = with_outputs(model, multilabel=True, thresholds=[0.1, 0.2, 0.3])
    assert outputs(a).thresholds == (0.1, 0.2, 0.3)
    b = with_outputs(a, class_names=["x", "y", "z"])
    assert outputs(b).thresholds is None and b.config.multilabel
    assert model.metadata.get("thresholds") is None and not model.config.multilabel


def test_our_own_files_state_their_outputs():
    from densenet import demo

    spec = outputs(demo.load())
    assert spec.stated and not spec.multilabel and spec.class_names[:2] == ("none", "nodule")
