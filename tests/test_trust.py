"""Trust: the model-randomisation sanity check and deletion/insertion (densenet.explain.trust)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import densenet
import densenet.explain as E
from densenet import DenseNetConfig
from tests.conftest import hook_count

SIZE, SIDE = 16, 4
TINY = DenseNetConfig(growth_rate=6, block_config=(2, 2), num_init_features=8, stem="cifar", in_channels=1,
                      num_classes=4)


def squares(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images with one bright square; the label is the quadrant that holds it."""
    x = 0.3 * torch.randn(n, 1, SIZE, SIZE, generator=generator)
    label = torch.randint(0, 4, (n,), generator=generator)
    offset = torch.randint(0, SIZE // 2 - SIDE + 1, (n, 2), generator=generator)
    for i in range(n):
        r = int(offset[i, 0]) + SIZE // 2 * int(label[i] // 2)
        c = int(offset[i, 1]) + SIZE // 2 * int(label[i] % 2)
        x[i, 0, r:r + SIDE, c:c + SIDE] += 2.0
    return x, label


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared machine: tiny models crawl when threads fight for cores
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(one_thread) -> densenet.DenseNet:
    """A tiny DenseNet that learned where the square is (40 Adam steps, a second or two)."""
    torch.manual_seed(0)
    model = densenet.create(TINY)
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(40):
        x, y = squares(32, g)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    for p in model.parameters():
        p.grad = None
    x, y = squares(64, torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() > 0.6, "training failed: the checks below would mean little"
    return model


# --- sanity check -----------------------------------------------------------------------------

@pytest.mark.parametrize("layer", ["features.norm5", "features.transition1", "features.denseblock1"])
def test_gradcam_decorrelates_when_the_model_is_randomised(trained: densenet.DenseNet, layer: str) -> None:
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    x, _ = squares(4, torch.Generator().manual_seed(2))
    for i in range(4):
        result = E.sanity_check(trained, x[i], layer=layer)
        assert result.rank_correlation < 0.3
        assert result.original.shape == result.randomized.shape == (SIZE, SIZE)
        assert not np.array_equal(result.original, result.randomized)
    after = trained.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in trained.parameters()) and hook_count(trained) == 0
    assert not trained.training


def test_cascade_or_only_the_layer(trained: densenet.DenseNet) -> None:
    x, _ = squares(1, torch.Generator().manual_seed(3))
    result = E.sanity_check(trained, x, layer="features.norm5", method="activation-mean", cascade=True)
    assert result.reinitialised == ["classifier", "features.norm5"]
    alone = E.sanity_check(trained, x, layer="features.denseblock1", method="activation-mean", cascade=False)
    assert alone.reinitialised == ["features.denseblock1"]
    assert alone.rank_correlation < 1.0  # the block itself was re-initialised ...
    head = E.cam_maps(trained, x, "activation-mean", layers="features.denseblock1")["features.denseblock1"]
    np.testing.assert_array_equal(alone.original, head.map)  # ... and the original map is the model's own


def test_cascade_order() -> None:
    model = densenet.create(DenseNetConfig(growth_rate=4, block_config=(2, 3, 2), num_init_features=8)).eval()
    assert E.cascade_modules(model, "features.norm5") == ["classifier", "features.norm5"]
    assert E.cascade_modules(model, "features.transition2") == [
        "classifier", "features.norm5", "features.denseblock3", "features.transition2"]
    assert E.cascade_modules(model, "features.denseblock2.denselayer2") == [
        "classifier", "features.norm5", "features.denseblock3", "features.transition2",
        "features.denseblock2.denselayer3", "features.denseblock2.denselayer2"]
    result = E.sanity_check(model, torch.randn(3, 32, 32), target=1, layer="features.pool0", seed=3)
    # pool0 and relu0 hold no weights, so they are walked through but not listed
    assert result.reinitialised == [
        "classifier", "features.norm5", "features.denseblock3", "features.transition2", "features.denseblock2",
        "features.transition1", "features.denseblock1"]
    with pytest.raises(ValueError, match="unknown layer"):
        E.sanity_check(model, torch.randn(3, 32, 32), layer="features.nope")


def test_sanity_check_is_seeded(trained: densenet.DenseNet) -> None:
    x, _ = squares(1, torch.Generator().manual_seed(4))
    a = E.sanity_check(trained, x, layer="features.transition1", seed=5)
    b = E.sanity_check(trained, x, layer="features.transition1", seed=5)
    c = E.sanity_check(trained, x, layer="features.transition1", seed=6)
    np.testing.assert_array_equal(a.randomized, b.randomized)
    assert not np.array_equal(a.randomized, c.randomized)


# --- deletion / insertion ---------------------------------------------------------------------

class Spot(nn.Module):
    """Class 1 wins exactly when the top-left 4x4 patch is bright: logit_1 = 8 * (mean(patch) - 0.5)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(8.0))
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        patch = x[:, 0, :4, :4].mean(dim=(1, 2))
        return torch.stack([torch.zeros_like(patch), self.scale * (patch - 0.5)], dim=1)


def test_insertion_beats_deletion_for_the_right_map() -> None:
    model = Spot().eval()
    x = torch.zeros(1, 1, 16, 16)
    x[0, 0, :4, :4] = 1.0
    right = np.zeros((16, 16), dtype=np.float32)
    right[:4, :4] = 1.0
    right += np.linspace(0, 0.1, 256, dtype=np.float32).reshape(16, 16)  # no ties elsewhere
    good = E.deletion_insertion(model, x, right, target=1, steps=16, baseline="zero")
    bad = E.deletion_insertion(model, x, 1 - right, target=1, steps=16, baseline="zero")
    for r in (good, bad):
        assert 0 <= r.deletion_auc <= 1 and 0 <= r.insertion_auc <= 1
        assert r.fractions.shape == r.deletion_scores.shape == r.insertion_scores.shape == (17,)
        assert r.fractions[0] == 0 and r.fractions[-1] == 1
        assert r.deletion_scores[0] == pytest.approx(r.insertion_scores[-1])  # both are the image itself
    assert good.insertion_auc > 0.8 > 0.3 > good.deletion_auc
    assert good.insertion_auc > bad.insertion_auc and good.deletion_auc < bad.deletion_auc


def test_deletion_insertion_batches_and_leaves_the_model_alone(trained: densenet.DenseNet) -> None:
    model = Spot().eval()
    x = torch.rand(1, 1, 16, 16)
    E.deletion_insertion(model, x, np.random.default_rng(0).random((16, 16)), target=1, steps=32, batch_size=16)
    assert model.calls == 5  # 66 images in batches of 16
    assert model.scale.grad is None

    x, _ = squares(1, torch.Generator().manual_seed(5))
    cam = E.cam_maps(trained, x, "gradcam", layers="features.transition1")["features.transition1"]
    for baseline in ("blur", "zero", "mean", 0.5, torch.zeros(1, 1, 1, 1)):
        r = E.deletion_insertion(trained, x, cam, steps=8, baseline=baseline)
        assert 0 <= r.deletion_auc <= 1 and 0 <= r.insertion_auc <= 1
        assert np.isfinite(r.deletion_scores).all() and np.isfinite(r.insertion_scores).all()
    coarse = E.deletion_insertion(trained, x, cam.raw, steps=8)  # a layer-resolution map is resized
    assert 0 <= coarse.insertion_auc <= 1
    assert all(p.grad is None for p in trained.parameters()) and hook_count(trained) == 0


def test_deletion_insertion_multilabel_uses_sigmoid() -> None:
    torch.manual_seed(0)
    model = densenet.create(TINY.replace(num_classes=18, multilabel=True)).eval()
    x = torch.randn(1, 1, SIZE, SIZE)
    r = E.deletion_insertion(model, x, np.ones((SIZE, SIZE)), target=7, steps=4, baseline="zero")
    with torch.no_grad():
        assert r.deletion_scores[0] == pytest.approx(float(torch.sigmoid(model(x))[0, 7]), rel=1e-5)


def test_deletion_insertion_bad_arguments() -> None:
    model = Spot().eval()
    x = torch.rand(1, 1, 16, 16)
    with pytest.raises(ValueError, match="baseline"):
        E.deletion_insertion(model, x, np.ones((16, 16)), baseline="noise")
    with pytest.raises(ValueError, match="one \\(H, W\\) map"):
        E.deletion_insertion(model, x, np.ones((2, 16, 16)))
    with pytest.raises(ValueError, match="NaN"):
        E.deletion_insertion(model, x, np.full((16, 16), np.nan))
    with pytest.raises(ValueError, match="train mode"):
        E.deletion_insertion(Spot(), x, np.ones((16, 16)))


def test_default_baselines_follow_the_paper(trained: densenet.DenseNet) -> None:
    """Deletion ends on an all-zero input; insertion starts from the blurred image."""
    x, _ = squares(1, torch.Generator().manual_seed(7))
    cam = E.cam_maps(trained, x, "gradcam", layers="features.transition1")["features.transition1"]
    r = E.deletion_insertion(trained, x, cam, target=1, steps=4)
    with torch.no_grad():
        p_zero = torch.softmax(trained(torch.zeros_like(x)), 1)[0, 1]
        blurred = E.deletion_insertion(trained, x, cam, target=1, steps=4, baseline="blur")
    assert r.deletion_scores[-1] == pytest.approx(float(p_zero), abs=1e-5)
    assert r.insertion_scores[0] == pytest.approx(float(blurred.insertion_scores[0]), abs=1e-5)
    assert r.deletion_scores[-1] != pytest.approx(float(blurred.deletion_scores[-1]), abs=1e-4)
