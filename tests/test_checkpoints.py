"""Checkpoints a user actually has: formats, inferred configs, safety, clear errors."""

import io
import json
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


# --- other architectures are named, not misread --------------------------------------------------

def _meta_state(builder, **kwargs) -> dict:
    with torch.device("meta"):  # shapes without memory: VGG's 130M parameters cost nothing here
        return builder(**kwargs).state_dict()


@pytest.mark.parametrize("builder, family, detail", [
    (torchvision.models.resnet50, "ResNet", "ResNet-50: stages of 3, 4, 6, 3 bottleneck blocks, 2048 features into 1000"),
    (torchvision.models.resnet34, "ResNet", "ResNet-34"),
    (torchvision.models.vgg16_bn, "VGG", "VGG-16 with batch norm"),
    (torchvision.models.vgg11, "VGG", "VGG-11"),
    (torchvision.models.alexnet, "AlexNet", "5 convolutions"),
    (torchvision.models.vit_b_16, "Vision Transformer (ViT)", "12 encoder layers, width 768, 16x16 patches"),
    (torchvision.models.swin_t, "Swin Transformer", "relative position"),
    (torchvision.models.convnext_tiny, "ConvNeXt", "layer-scaled"),
    (torchvision.models.efficientnet_b0, "EfficientNet", "MBConv"),
    (torchvision.models.mobilenet_v2, "MobileNetV2", "inverted residual"),
    (torchvision.models.mobilenet_v3_small, "MobileNetV3", "inverted residual"),
    (torchvision.models.inception_v3, "Inception v3", "Mixed_5b"),
    (torchvision.models.googlenet, "GoogLeNet", "inception3a"),
    (torchvision.models.shufflenet_v2_x0_5, "ShuffleNetV2", "stage2"),
    (torchvision.models.squeezenet1_0, "SqueezeNet", "Fire"),
])
def test_torchvision_architectures_are_recognised(builder, family, detail):
    from densenet.recognise import recognise

    kwargs = {"init_weights": False} if builder in (torchvision.models.inception_v3, torchvision.models.googlenet) else {}
    found = recognise(_meta_state(builder, **kwargs))
    assert found is not None and found[0] == family and detail in found[1]


@pytest.mark.parametrize("name, family", [
    ("resnet18", "ResNet"), ("vit_tiny_patch16_224", "Vision Transformer (ViT)"), ("efficientnet_b0", "EfficientNet"),
    ("convnext_atto", "ConvNeXt"),
])
def test_timm_architectures_are_recognised(name, family):
    timm = pytest.importorskip("timm")
    from densenet.recognise import recognise

    state = timm.create_model(name, pretrained=False).state_dict()  # small nets; older timm cannot build on "meta"
    assert recognise(state)[0].startswith(family)


def test_regnet_is_recognised():
    from densenet.recognise import recognise

    state = torchvision.models.regnet_y_400mf().state_dict()  # its builder computes widths, so not on meta
    assert recognise(state)[0] == "RegNet"


def test_a_resnet_upload_says_what_it_is_and_what_the_app_explains():
    state = torchvision.models.resnet18(num_classes=14).state_dict()
    with pytest.raises(CheckpointError) as err:
        densenet.load_checkpoint(save({"state_dict": {"module." + k: v for k, v in state.items()}}))
    text = str(err.value)
    assert text.startswith("this is a ResNet checkpoint (ResNet-18: stages of 2, 2, 2, 2 basic blocks, 512 features into 14")
    assert "this app explains DenseNets" in text


def test_monai_2d_densenet_keys_load():
    reference = densenet.create("densenet121", in_channels=1, num_classes=3)
    monai = {}
    for key, value in reference.state_dict().items():
        key = key.replace("classifier.", "class_layers.out.")
        parts = key.split(".")
        if len(parts) > 3 and parts[2].startswith("denselayer"):
            key = ".".join(parts[:3] + ["layers"] + parts[3:])
        monai[key] = value
    loaded = densenet.load_checkpoint(save(monai))
    assert loaded.config == reference.config
    assert same_outputs(loaded, reference, channels=1)


def test_3d_densenet_is_refused_by_name():
    state = densenet.create("densenet-bc-100-12").state_dict()
    state["features.conv0.weight"] = torch.zeros(24, 3, 3, 3, 3)
    with pytest.raises(CheckpointError, match="3-D DenseNet checkpoint"):
        densenet.load_checkpoint(save(state))


def test_saved_file_states_outputs_and_geometry(tmp_path):
    from densenet.labels import outputs, with_outputs
    from densenet.preprocess import XRAY

    model = with_outputs(densenet.DenseNet(small_config(in_channels=1), preprocessing=XRAY.replace(geometry="letterbox")),
                         multilabel=True, class_names=list("abcd"), thresholds=[0.2, None, 0.4, 0.6])
    path = tmp_path / "m.safetensors"
    densenet.save_checkpoint(model, path)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["densenet.outputs"]) == {"kind": "multilabel", "thresholds": [0.2, None, 0.4, 0.6]}
    assert json.loads(meta["densenet.preprocessing"])["geometry"] == "letterbox"
    loaded = densenet.load_checkpoint(path)
    assert outputs(loaded) == outputs(model)
    assert loaded.preprocessing.geometry == "letterbox"
    from_bytes = densenet.load_checkpoint(densenet.checkpoints.checkpoint_bytes(model))
    assert outputs(from_bytes) == outputs(model) and from_bytes.preprocessing == loaded.preprocessing


def test_old_preprocessing_metadata_without_geometry_still_loads(tmp_path):
    from densenet.checkpoints.writing import file_contents as _file_contents
    from safetensors.torch import save as save_st

    model = densenet.DenseNet(small_config())
    state, meta = _file_contents(model)
    prep = json.loads(meta["densenet.preprocessing"])
    del prep["geometry"]
    meta["densenet.preprocessing"] = json.dumps(prep)
    del meta["densenet.outputs"]
    loaded = densenet.load_checkpoint(save_st(state, metadata=meta))
    assert loaded.preprocessing.geometry == "crop"
    meta["densenet.outputs"] = json.dumps({"kind": "sigmoid"})
    with pytest.raises(CheckpointError, match="output kind must be 'multilabel' or 'softmax'"):
        densenet.load_checkpoint(save_st(state, metadata=meta))


def test_a_whole_pickled_resnet_is_named_without_being_unpickled():
    with pytest.raises(CheckpointError) as err:
        densenet.load_checkpoint(save(torchvision.models.resnet18(num_classes=2)))
    assert str(err.value).startswith("this is a ResNet checkpoint (a whole pickled model of class torchvision.models.resnet")
    assert "this app explains DenseNets" in str(err.value)


def test_a_pt_file_is_never_unpickled_on_a_torch_with_a_known_loader_flaw(tmp_path, monkeypatch):
    from densenet.checkpoints import reading

    assert reading.torch_is_safe("2.10.0+cu128") and reading.torch_is_safe("2.14.1")
    assert not reading.torch_is_safe("2.9.1") and not reading.torch_is_safe("2.5.0+cpu")
    path = tmp_path / "w.pth"
    torch.save(densenet.create("densenet-bc-100-12", num_classes=3).state_dict(), path)
    assert densenet.load_checkpoint(path) is not None  # this torch is safe
    monkeypatch.setattr(reading.torch, "__version__", "2.9.1")
    with pytest.raises(CheckpointError, match="CVE-2026-24747.*safetensors"):
        densenet.load_checkpoint(path)
