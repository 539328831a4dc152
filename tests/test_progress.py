"""Progress everywhere it takes more than a second: IG, SmoothGrad, the sanity check, deletion/insertion."""

from __future__ import annotations

import pytest
import torch

import densenet
from densenet import explain
from densenet.explain import Cancelled


@pytest.fixture(scope="module")
def model() -> densenet.DenseNet:
    torch.manual_seed(0)
    cfg = densenet.DenseNetConfig(growth_rate=4, block_config=(2, 2), num_init_features=8, stem="cifar",
                                  in_channels=1, num_classes=3)
    return densenet.DenseNet(cfg).eval()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(1, 1, 24, 24, generator=torch.Generator().manual_seed(1))


def run(name: str, model, x, progress):
    if name == "integrated-gradients":
        return explain.integrated_gradients(model, x, 0, steps=8, internal_batch_size=2, progress=progress)
    if name == "smoothgrad":
        return explain.smoothgrad(model, x, 0, samples=8, batch_size=2, progress=progress)
    if name == "sanity":
        return explain.sanity_check(model, x, 0, layer="features.norm5", progress=progress)
    cam = explain.cam_maps(model, x, "gradcam", 0, ["features.norm5"])["features.norm5"]
    return explain.deletion_insertion(model, x, cam, 0, steps=8, batch_size=4, progress=progress)


NAMES = ["integrated-gradients", "smoothgrad", "sanity", "deletion-insertion"]


@pytest.mark.parametrize("name", NAMES)
def test_progress_fires_between_chunks_and_ends_at_one(model, x, name: str):
    heard: list[float] = []
    run(name, model, x, heard.append)
    assert len(heard) >= 3, heard
    assert heard == sorted(heard) and all(0.0 < f <= 1.0 for f in heard)
    assert heard[-1] == 1.0 and heard[0] < 1.0


@pytest.mark.parametrize("name", NAMES)
def test_raising_from_progress_cancels(model, x, name: str):
    calls = []

    def stop(fraction: float) -> None:
        calls.append(fraction)
        raise Cancelled

    with pytest.raises(Cancelled):
        run(name, model, x, stop)
    assert len(calls) == 1  # stopped at the first report, not after the work


@pytest.mark.parametrize("name", ["integrated-gradients", "smoothgrad"])
def test_the_registry_passes_progress_through(model, x, name: str):
    heard: list[float] = []
    explain.compute(name, model, x, 0, progress=heard.append)
    assert heard and heard[-1] == 1.0
