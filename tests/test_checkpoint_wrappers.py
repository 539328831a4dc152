"""Checkpoints as people save them: the DenseNet inside any wrapper, a Sequential head, CheXNet's layout (issue 18)."""

from __future__ import annotations

import re

import pytest
import torch
import torchvision
from torch import nn

from densenet.checkpoints import CheckpointError, load_checkpoint
from densenet.labels import CHESTXRAY14
from densenet.testing import randomise_batchnorm

pytestmark = pytest.mark.timeout(240)


class DenseNet121(nn.Module):
    """The most-used CheXNet re-implementation's model: torchvision's densenet121 inside, a Sigmoid head."""

    def __init__(self, out_size: int) -> None:
        super().__init__()
        self.densenet121 = torchvision.models.densenet121(weights=None)
        features = self.densenet121.classifier.in_features
        self.densenet121.classifier = nn.Sequential(nn.Linear(features, out_size), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.densenet121(x)


class Net(nn.Module):
    """A wrapper whose name says nothing: its whole pickle is refused, with the export line."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torchvision.models.densenet121(weights=None)


def _legacy(key: str) -> str:
    """torchvision's pre-0.3 names, which CheXNet checkpoints keep: ``norm.1`` for ``norm1``."""
    return re.sub(r"(denselayer\d+\.(?:norm|relu|conv))(\d)", r"\1.\2", key)


@pytest.fixture(scope="module")
def chexnet():
    torch.manual_seed(0)
    return randomise_batchnorm(DenseNet121(len(CHESTXRAY14)).eval())


def test_chexnet_checkpoint_loads_with_14_sigmoid_findings_and_torchvision_logits(chexnet, tmp_path):
    state = nn.DataParallel(chexnet).state_dict()  # module.densenet121.features.conv0.weight ...
    state = {_legacy(k): v for k, v in state.items()}
    assert "module.densenet121.features.denseblock1.denselayer1.norm.1.weight" in state
    optimizer = torch.optim.Adam(chexnet.parameters(), lr=1e-4)
    path = tmp_path / "m-25012018-123527.pth.tar"
    torch.save({"epoch": 7, "state_dict": state, "best_loss": 0.15, "optimizer": optimizer.state_dict()}, path)

    model = load_checkpoint(path)
    assert model.class_names == list(CHESTXRAY14) and model.config.multilabel
    assert model.metadata["prefix"] == "module.densenet121." and model.metadata["outputs_stated"]
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        inner = chexnet.densenet121
        expected = inner.classifier[0](torch.flatten(nn.functional.adaptive_avg_pool2d(
            nn.functional.relu(inner.features(x)), 1), 1))
        got = model(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.sigmoid(got), chexnet(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("prefix", ["model.", "net.", "encoder.", "model.backbone.", "student."])
def test_any_prefix_before_features_conv0(prefix, tmp_path):
    torch.manual_seed(1)
    tv = torchvision.models.densenet121(weights=None, num_classes=3).eval()
    state = {prefix + k: v for k, v in tv.state_dict().items()}
    state["criterion.pos_weight"] = torch.ones(3)  # a Lightning module's loss: not the DenseNet's, left out
    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": state, "epoch": 1}, path)
    model = load_checkpoint(path)
    assert model.metadata["prefix"] == prefix and model.metadata["left_out"] == 1
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), tv(x), atol=1e-5, rtol=1e-5)


def test_whole_pickled_wrapper_is_read_as_records_with_its_sigmoid(chexnet, tmp_path):
    path = tmp_path / "whole.pth"
    torch.save(chexnet, path)
    model = load_checkpoint(path)
    assert model.config.multilabel and model.metadata["head"] == "Sequential(Linear, Sigmoid)"
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(torch.sigmoid(model(x)), chexnet(x), atol=1e-5, rtol=1e-5)


def test_unknown_layouts_name_the_prefixes_tried_and_the_export_line(tmp_path):
    path = tmp_path / "net.pth"
    torch.save(Net(), path)
    with pytest.raises(CheckpointError, match=r"torch\.save\(model\.state_dict\(\), 'weights\.pt'\)"):
        load_checkpoint(path)
    odd = tmp_path / "odd.pt"
    torch.save({"encoder.stem.weight": torch.zeros(8, 3, 3, 3), "decoder.out.weight": torch.zeros(2, 8)}, odd)
    with pytest.raises(CheckpointError, match=r"under any prefix \(tried every prefix in the file: decoder\., encoder\."):
        load_checkpoint(odd)
    two = tmp_path / "two.pt"
    tv = torchvision.models.densenet121(weights=None).state_dict()
    torch.save({**{f"teacher.{k}": v for k, v in tv.items()}, **{f"student.{k}": v for k, v in tv.items()}}, two)
    with pytest.raises(CheckpointError, match="several DenseNets"):
        load_checkpoint(two)
