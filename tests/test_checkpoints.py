"""Checkpoints a user actually has: formats, inferred configs, safety, clear errors."""

import io
import sys
import types

import pytest
import torch
import torchvision
from safetensors.torch import save as save_safetensors

import densenet
from densenet import CheckpointError, DenseNetConfig


def save(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def small_config(**changes) -> DenseNetConfig:
    base = dict(growth_rate=6, block_config=(2, 3), num_init_features=12, stem="cifar", num_classes=4)
    base.update(changes)
    return DenseNetConfig(**base)


def same_outputs(a: torch.nn.Module, b: torch.nn.Module, channels: int = 3) -> bool:
    x = torch.randn(2, channels, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.allclose(a.eval()(x), b.eval()(x), atol=1e-6)


def test_config_is_inferred_for_densenet_bc_100_12():
    reference = densenet.create("densenet-bc-100-12")
    loaded = densenet.load_checkpoint(save(reference.state_dict()))
    assert loaded.config == reference.config
    assert loaded.class_names == [f"class {i}" for i in range(10)]
    assert same_outputs(loaded, reference)


def test_config_is_inferred_for_a_one_channel_18_output_xray_model():
    reference = densenet.create("densenet121", in_channels=1, num_classes=18)
    state = reference.state_dict()
    state["op_threshs"] = torch.linspace(0.1, 0.9, 18)  # torchxrayvision's calibration buffer
    loaded = densenet.load_checkpoint(save(state))
    assert loaded.config.in_channels == 1 and loaded.config.num_classes == 18
    assert loaded.config.block_config == (6, 12, 24, 16) and loaded.config.growth_rate == 32
    assert loaded.config.multilabel
    assert loaded.metadata["op_threshs"][0] == pytest.approx(0.1)
    assert "Cardiomegaly" in loaded.class_names
    assert loaded.preprocessing.name == "xray"


@pytest.mark.parametrize("wrap", [
    lambda s: {"state_dict": s},
    lambda s: {"model": s, "epoch": 3, "optimizer": {"lr": torch.tensor(0.1)}},
    lambda s: {"module." + k: v for k, v in s.items()},
    lambda s: {"state_dict": {"module." + k: v for k, v in s.items()}, "classes": ["a", "b", "c", "d"]},
])
def test_wrapped_and_prefixed_state_dicts_load(wrap):
    reference = densenet.create(small_config())
    loaded = densenet.load_checkpoint(save(wrap(reference.state_dict())))
    assert loaded.config == reference.config
    assert same_outputs(loaded, reference)


def test_class_names_travel_with_a_wrapped_checkpoint():
    reference = densenet.create(small_config())
    loaded = densenet.load_checkpoint(save({"state_dict": reference.state_dict(), "classes": list("wxyz")}))
    assert loaded.class_names == list("wxyz")


def test_safetensors_round_trip_keeps_weights_config_names_and_preprocessing(tmp_path):
    from densenet.preprocess import DEMO

    cfg = small_config(in_channels=1, stem="small", pool="lme", null_class=True, multilabel=False)
    reference = densenet.DenseNet(cfg, class_names=["none", "a", "b", "c"], preprocessing=DEMO,
                                  metadata={"cam_layer": "features.denseblock2"})
    path = tmp_path / "model.safetensors"
    densenet.save_checkpoint(reference, path)
    loaded = densenet.load_checkpoint(path)
    assert loaded.metadata == {"cam_layer": "features.denseblock2", "source": "model.safetensors", "outputs_stated": True}
    assert loaded.config == cfg
    assert loaded.class_names == ["none", "a", "b", "c"]
    assert loaded.preprocessing == DEMO
    assert same_outputs(loaded, reference, channels=1)
    # bytes work as well as paths (an upload arrives as bytes)
    assert densenet.load_checkpoint(path.read_bytes()).config == cfg


def test_plain_safetensors_without_metadata_is_inferred():
    reference = densenet.create("densenet-40-12")
    data = save_safetensors({k: v.contiguous() for k, v in reference.state_dict().items()})
    loaded = densenet.load_checkpoint(data)
    assert loaded.config.bn_size is None and loaded.config.compression == 1.0
    assert loaded.config.block_config == (12, 12, 12)
    assert same_outputs(loaded, reference)


def test_whole_pickled_torchvision_model_loads_without_running_its_code():
    reference = torchvision.models.densenet121(num_classes=3).eval()
    loaded = densenet.load_checkpoint(save(reference))
    assert type(loaded) is densenet.DenseNet
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), reference(x), rtol=0, atol=1e-5)


def test_whole_pickled_torchxrayvision_model_loads_with_its_pathologies(monkeypatch):
    # A stand-in for torchxrayvision's class, importable only while the file is written.
    fake = types.ModuleType("torchxrayvision.models")

    class DenseNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            tv = torchvision.models.densenet121(num_classes=18)
            tv.features.conv0 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
            self.features, self.classifier = tv.features, tv.classifier
            self.register_buffer("op_threshs", torch.full((18,), 0.5))
            self.pathologies = [f"finding {i}" for i in range(18)]

    DenseNet.__module__ = "torchxrayvision.models"
    DenseNet.__qualname__ = "DenseNet"
    fake.DenseNet = DenseNet
    monkeypatch.setitem(sys.modules, "torchxrayvision", types.ModuleType("torchxrayvision"))
    monkeypatch.setitem(sys.modules, "torchxrayvision.models", fake)
    data = save(DenseNet())
    monkeypatch.delitem(sys.modules, "torchxrayvision.models")
    monkeypatch.delitem(sys.modules, "torchxrayvision")

    loaded = densenet.load_checkpoint(data)
    assert loaded.config.in_channels == 1 and loaded.config.num_classes == 18
    assert loaded.class_names[3] == "finding 3"
    assert loaded.metadata["op_threshs"] == [0.5] * 18


class _Payload:
    def __reduce__(self):
        import os
        return (os.system, (f"touch {_Payload.marker}",))


def test_a_pickle_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "payload-ran"
    _Payload.marker = marker
    state = densenet.create(small_config()).state_dict()
    for evil in ({"state_dict": state, "extra": _Payload()}, _Payload()):
        with pytest.raises(CheckpointError, match="state dict"):
            densenet.load_checkpoint(save(evil))
    assert not marker.exists()


def test_truncated_file_gives_a_clear_error(tmp_path):
    data = save(densenet.create(small_config()).state_dict())
    for cut in (data[:100], data[: len(data) // 2]):
        with pytest.raises(CheckpointError, match="truncated or damaged"):
            densenet.load_checkpoint(cut)
    path = tmp_path / "cut.safetensors"
    path.write_bytes(save_safetensors({"a": torch.zeros(100)})[:-50])
    with pytest.raises(CheckpointError, match="damaged or truncated"):
        densenet.load_checkpoint(path)


def test_not_a_checkpoint_and_empty_files(tmp_path):
    with pytest.raises(CheckpointError, match="not a PyTorch"):
        densenet.load_checkpoint(b"hello, I am a text file")
    with pytest.raises(CheckpointError, match="empty"):
        densenet.load_checkpoint(b"")
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        densenet.load_checkpoint(tmp_path / "missing.pt")


def test_resnet_checkpoint_is_named_as_not_a_densenet():
    with pytest.raises(CheckpointError, match="this is a ResNet checkpoint") as err:
        densenet.load_checkpoint(save(torchvision.models.resnet18().state_dict()))
    assert "ResNet-18" in str(err.value) and "this app explains DenseNets" in str(err.value)


def test_unrecognised_checkpoint_still_lists_its_first_keys():
    with pytest.raises(CheckpointError, match="does not look like a DenseNet") as err:
        densenet.load_checkpoint(save({"encoder.weight": torch.zeros(2, 2)}))
    assert "encoder.weight" in str(err.value)


def test_partial_checkpoint_lists_missing_keys_and_loads_nothing():
    state = densenet.create(small_config()).state_dict()
    del state["features.denseblock2.denselayer3.conv2.weight"]
    del state["features.norm5.running_mean"]
    with pytest.raises(CheckpointError) as err:
        densenet.load_checkpoint(save(state))
    message = str(err.value)
    assert "2 missing keys" in message
    assert "features.denseblock2.denselayer3.conv2.weight" in message


def test_shape_mismatch_is_listed():
    state = densenet.create(small_config()).state_dict()
    state["features.transition1.conv.weight"] = torch.zeros(5, 24, 1, 1)  # 0.2 of 24 < 1x1 norm width
    state["features.denseblock2.denselayer1.norm1.weight"] = torch.zeros(7)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        densenet.load_checkpoint(save(state))


def test_create_with_a_checkpoint_path_checks_the_architecture(tmp_path):
    path = tmp_path / "bc.pt"
    path.write_bytes(save(densenet.create("densenet-bc-100-12").state_dict()))
    assert densenet.create("densenet-bc-100-12", weights=path).config.growth_rate == 12
    with pytest.raises(CheckpointError, match="different DenseNet"):
        densenet.create("densenet-40-12", weights=path)


def test_timm_densenet_state_dict_loads_and_matches_timm():
    timm = pytest.importorskip("timm")
    reference = timm.create_model("densenet121", pretrained=False, num_classes=7).eval()
    loaded = densenet.load_checkpoint(save(reference.state_dict()))
    assert loaded.config == densenet.VARIANTS["densenet121"].replace(num_classes=7)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), reference(x), rtol=0, atol=1e-5)


def test_timm_deep_stem_variant_is_refused_clearly():
    timm = pytest.importorskip("timm")
    state = timm.create_model("densenet264d", pretrained=False, num_classes=2).state_dict()
    with pytest.raises(CheckpointError, match="DenseNet"):
        densenet.load_checkpoint(save(state))
