"""Ours loaded from torchvision's state dict gives torchvision's logits (current and legacy keys)."""

import io
import re

import pytest
import torch
import torchvision

import densenet
from densenet import pretrained
from densenet.testing import randomise_batchnorm


def legacy_keys(state: dict) -> dict:
    """torchvision's pre-0.3 key form: ``denselayer1.norm.1.weight`` for ``denselayer1.norm1.weight``."""
    pattern = re.compile(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.")
    return {pattern.sub(r"\1.\2.", k): v for k, v in state.items()}


def save(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def image():
    return torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", ["densenet121", "densenet161", "densenet169", "densenet201"])
@pytest.mark.parametrize("keys", ["current", "legacy"])
def test_torchvision_checkpoint_gives_torchvisions_logits(name, keys, image):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)().eval()
    randomise_batchnorm(reference)
    state = reference.state_dict()
    if keys == "legacy":
        state = legacy_keys(state)
        assert any(".norm.1." in k for k in state)
    ours = densenet.load_checkpoint(save(state))
    assert ours.config == densenet.VARIANTS[name]
    assert ours.class_names[0] == "tench"  # 1000 outputs and 3 channels: ImageNet categories
    with torch.no_grad():
        torch.testing.assert_close(ours(image), reference(image), rtol=0, atol=1e-5)


def test_imagenet_weights_are_read_from_the_hub_cache(tmp_path, monkeypatch, image):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    reference = torchvision.models.densenet121().eval()
    path = pretrained.cache_path("densenet121")
    assert str(path).startswith(str(tmp_path))
    path.parent.mkdir(parents=True)
    path.write_bytes(save(legacy_keys(reference.state_dict())))  # torchvision's files use legacy keys
    ours = densenet.create("densenet121", weights="imagenet")
    with torch.no_grad():
        torch.testing.assert_close(ours(image), reference(image), rtol=0, atol=1e-5)


def test_imagenet_weights_offline_give_a_clear_error(tmp_path, monkeypatch):
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(densenet.WeightsUnavailableError) as err:
        densenet.create("densenet169", weights="imagenet")
    message = str(err.value)
    assert "offline" in message and "densenet169" in message
    assert str(pretrained.cache_path("densenet169")) in message  # says where to put the file
    assert not pretrained.cache_path("densenet169").exists()


def test_imagenet_weights_only_for_published_variants():
    with pytest.raises(ValueError, match="ImageNet weights exist for"):
        densenet.create("densenet264", weights="imagenet")
    with pytest.raises(ValueError, match="unchanged architecture"):
        densenet.create("densenet121", weights="imagenet", growth_rate=12)
