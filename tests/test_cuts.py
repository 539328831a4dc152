"""Cutting dense links: against a deep copy with a hook, single cuts against link importance, the model untouched."""

from __future__ import annotations

import copy

import pytest
import torch

import densenet
import densenet.demo
import densenet.explain as E
from densenet import DenseNetConfig
from densenet.testing import randomise_batchnorm


def reference(model: densenet.DenseNet, x: torch.Tensor, cuts: list[tuple[int, int, int]]) -> torch.Tensor:
    """Independent: a deep copy whose target layers' BatchNorm inputs have the source's channels zeroed by a
    forward pre-hook, run in full from the image."""
    twin = copy.deepcopy(model)
    blocks = [m for n, m in twin.features.named_children() if n.startswith("denseblock")]
    by_target: dict[tuple[int, int], list[int]] = {}
    for b, j, l in cuts:
        by_target.setdefault((b, l), []).append(j)
    for (b, l), sources in by_target.items():
        block = blocks[b - 1]
        c0, k = block.denselayer1.norm1.num_features, twin.config.growth_rate

        def zero(module, args, sources=sources, c0=c0, k=k):
            (inp,) = args
            inp = inp.clone()
            for j in sources:
                lo, hi = (0, c0) if j == 0 else (c0 + (j - 1) * k, c0 + j * k)
                inp[:, lo:hi] = 0
            return (inp,)

        block[f"denselayer{l}"].norm1.register_forward_pre_hook(zero)
    with torch.no_grad():
        return twin(x)


def fingerprint(model: torch.nn.Module) -> tuple:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    return state, hooks, model.training, sorted(vars(model))


def assert_unchanged(model: torch.nn.Module, before: tuple) -> None:
    state, hooks, training, attrs = fingerprint(model)
    assert hooks == before[1] and training == before[2] and attrs == before[3]
    for k, v in state.items():
        assert torch.equal(v, before[0][k]), k
    assert all(p.grad is None for p in model.parameters())


@pytest.fixture(scope="module")
def demo():
    model = densenet.demo.load()
    images, labels = densenet.demo.generate(2, seed=5, size=128)[:2]
    return model, densenet.demo.normalize(images)


@pytest.fixture(scope="module")
def small():
    cfg = DenseNetConfig(growth_rate=4, block_config=(3, 4), num_init_features=6, bn_size=2, in_channels=1,
                         num_classes=3, stem="cifar")
    model = randomise_batchnorm(densenet.create(cfg), seed=3).eval()
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    return model, x


def test_demo_cut_sets_equal_the_hooked_copy(demo):
    model, x = demo
    before = fingerprint(model)
    sets = [[], [(1, 0, 1)], [(2, 2, 4), (2, 0, 2)], E.chain_cuts(model), [(1, 2, 3), (3, 1, 2)]]
    got = E.cut_links(model, x, sets, index=1)
    assert got.shape == (len(sets), model.config.num_classes)
    for row, cuts in zip(got, sets):
        torch.testing.assert_close(row, reference(model, x[1:2], cuts)[0], rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(got[0], model(x[1:2])[0], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got[3], got[0], atol=1e-3)  # cutting every dense link changes something
    assert_unchanged(model, before)


def test_single_cut_set_and_trace_input(demo):
    model, x = demo
    trace = model.trace(x, None)
    one = E.cut_links(model, x, [(2, 1, 4)])
    assert one.shape == (1, model.config.num_classes)
    torch.testing.assert_close(E.cut_links(model, trace, [(2, 1, 4)]), one, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(one[0], reference(model, x[:1], [(2, 1, 4)])[0], rtol=1e-4, atol=1e-4)


def test_densenet121_cut_equals_the_hooked_copy():
    model = randomise_batchnorm(densenet.create("densenet121", num_classes=4), seed=1).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    before = fingerprint(model)
    sets = [[(3, 0, 24)], [(3, 5, 6), (3, 23, 24), (1, 0, 1)], [(4, 15, 16)]]
    got = E.cut_links(model, x, sets)
    for row, cuts in zip(got, sets):
        torch.testing.assert_close(row, reference(model, x, cuts)[0], rtol=1e-3, atol=1e-3)
    assert_unchanged(model, before)


@pytest.mark.parametrize("block", [1, 2])
def test_link_importance_agrees_with_single_cuts(small, block):
    model, x = small
    before = fingerprint(model)
    imp = E.link_importance(model, x, 1, block=block, index=1)
    L = model.config.block_config[block - 1]
    links = [(j, l) for l in range(1, L + 1) for j in range(l)]
    assert sorted(imp.links) == sorted(links) and len(imp.links) == L * (L + 1) // 2
    cut = E.cut_links(model, x, [[(block, j, l)] for j, l in links], index=1)
    base = E.cut_links(model, x, [], index=1)[0]
    assert imp.logit == pytest.approx(float(base[1]), rel=1e-5, abs=1e-5)
    probs, p0 = torch.softmax(cut, 1)[:, 1], float(torch.softmax(base, 0)[1])
    for i, link in enumerate(links):
        assert imp.links[link] == pytest.approx(float(base[1] - cut[i, 1]), rel=1e-4, abs=1e-5)
        assert imp.links_probability[link] == pytest.approx(p0 - float(probs[i]), rel=1e-4, abs=1e-5)
    assert any(abs(v) > 1e-3 for v in imp.links.values())
    assert_unchanged(model, before)


def test_link_importance_on_densenet121_block3_small_batches():
    model = randomise_batchnorm(densenet.create("densenet121", num_classes=3), seed=4).eval()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    imp = E.link_importance(model, x, block=3, batch_size=7)
    assert len(imp.links) == 300
    picked = [(0, 1), (0, 24), (11, 12), (3, 17), (22, 24)]
    cut = E.cut_links(model, x, [[(3, j, l)] for j, l in picked])[:, imp.target]
    for link, value in zip(picked, cut.tolist()):
        assert imp.cut_logits[link] == pytest.approx(value, rel=1e-3, abs=1e-3)
    m = imp.matrix()
    assert m.shape == (25, 25) and m[0, 0] == pytest.approx(imp.links[(0, 1)])


def test_bad_links_are_refused(small):
    model, x = small
    for bad, word in [((3, 0, 1), "block"), ((1, 0, 4), "target"), ((1, 2, 2), "source"), ((1, -1, 1), "source")]:
        with pytest.raises(ValueError, match=word):
            E.cut_links(model, x, [bad])
    with pytest.raises(TypeError):
        E.cut_links(model, x, [(1, 0.5, 1)])
    with pytest.raises(ValueError, match="block"):
        E.link_importance(model, x, block=0)
    model.train()
    try:
        with pytest.raises(ValueError, match="train mode"):
            E.cut_links(model, x, [(1, 0, 1)])
    finally:
        model.eval()


def test_chain_cuts_leave_the_chain():
    model = densenet.create(DenseNetConfig(growth_rate=2, block_config=(4, 2), num_init_features=4, stem="cifar"))
    links = E.chain_cuts(model)
    assert links == [(1, 0, 2), (1, 0, 3), (1, 1, 3), (1, 0, 4), (1, 1, 4), (1, 2, 4), (2, 0, 2)]
    assert E.chain_cuts(model, 2) == [(2, 0, 2)]


def test_cut_grad_cam_without_cuts_is_grad_cam_and_moves_with_them(demo):
    model, x = demo
    before = fingerprint(model)
    plain = E.cut_grad_cam(model, x, [], 1, index=1)
    expected = E.cam_maps(model, x, "gradcam", 1, "features.norm5", index=1)["features.norm5"]
    assert plain.map.shape == (128, 128)
    assert abs(plain.raw - expected.raw).max() < 1e-4 * max(1.0, abs(expected.raw).max())
    assert abs(plain.map - expected.map).max() < 1e-3
    cut = E.cut_grad_cam(model, x, E.chain_cuts(model), 1, index=1)
    assert abs(cut.raw - plain.raw).max() > 1e-4
    assert_unchanged(model, before)


def test_link_importance_without_bottleneck_and_last_block():
    """3x3 first convolutions (no bottleneck) take the general path; the last block has no transition."""
    cfg = DenseNetConfig(growth_rate=3, block_config=(3, 3), num_init_features=4, bn_size=None, in_channels=1,
                         num_classes=2, stem="cifar")
    model = randomise_batchnorm(densenet.create(cfg), seed=7).eval()
    x = torch.randn(1, 1, 12, 12, generator=torch.Generator().manual_seed(3))
    for block in (1, 2):
        imp = E.link_importance(model, x, 0, block=block, batch_size=4)
        cut = E.cut_links(model, x, [[(block, j, l)] for j, l in imp.links])[:, 0]
        for (link, value), expected in zip(imp.cut_logits.items(), cut.tolist()):
            assert value == pytest.approx(expected, rel=1e-4, abs=1e-5), link
