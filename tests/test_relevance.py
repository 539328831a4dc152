"""Relevance on the dense links: hand-computed values on a tiny block, completeness on DenseNet-121."""

from __future__ import annotations

import pytest
import torch

import densenet
import densenet.explain as E
from densenet import DenseNetConfig
from densenet.testing import randomise_batchnorm


def hand_built(w1: float, u0: float, u1: float, v: tuple[float, float, float]) -> densenet.DenseNet:
    """One block of two plain layers, k = 1, on a 1x1 image: every conv is a scalar multiply.

    conv0: f0 = 2 x; layer 1: f1 = w1 relu(f0); layer 2: f2 = u0 relu(f0) + u1 relu(f1);
    head: y = v0 relu(f0) + v1 relu(f1) + v2 relu(f2) (BatchNorm is the identity, eps 0).
    """
    cfg = DenseNetConfig(growth_rate=1, block_config=(2,), num_init_features=1, bn_size=None, in_channels=1,
                         num_classes=1, stem="cifar")
    model = densenet.create(cfg).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eps = 1e-12  # test-only: an identity in float32 (torch < 2.11 refuses eps = 0)
                m.reset_parameters()
                m.reset_running_stats()
            if isinstance(m, torch.nn.Conv2d):
                m.weight.zero_()
        model.features.conv0.weight[0, 0, 1, 1] = 2.0
        block = model.features.denseblock1
        block.denselayer1.conv1.weight[0, 0, 1, 1] = w1
        block.denselayer2.conv1.weight[0, :, 1, 1] = torch.tensor([u0, u1])
        model.classifier.weight.copy_(torch.tensor([v]))
        model.classifier.bias.fill_(0.5)
    return model


def test_links_equal_hand_computed_values():
    w1, u0, u1, (v0, v1, v2) = 1.5, 0.7, -0.4, (0.3, -0.8, 1.2)
    model = hand_built(w1, u0, u1, (v0, v1, v2))
    x = torch.full((1, 1, 1, 1), 0.5)
    f0 = 2 * 0.5
    f1 = w1 * f0
    f2 = u0 * f0 + u1 * f1
    assert f2 > 0  # every ReLU passes: the derivatives below hold
    trace = model.trace(x, E.relevance_layers(model), keep_graph=True)
    torch.testing.assert_close(trace.logits[0, 0].detach(), torch.tensor(v0 * f0 + v1 * f1 + v2 * f2 + 0.5))
    block = E.link_relevance(trace, 0).blocks[0]
    expected = {(0, 1): (v1 + v2 * u1) * w1 * f0, (0, 2): v2 * u0 * f0, (1, 2): v2 * u1 * f1}
    assert set(block.links) == set(expected)
    for link, value in expected.items():
        assert block.links[link] == pytest.approx(value, rel=1e-6)
        assert block.links_abs[link] == pytest.approx(abs(value), rel=1e-6)
    assert block.to_output == pytest.approx({0: v0 * f0, 1: v1 * f1, 2: v2 * f2}, rel=1e-6)
    assert block.nodes[0] == pytest.approx(f0 * (v0 + v2 * u0 + (v1 + v2 * u1) * w1), rel=1e-6)
    assert block.nodes[2] == pytest.approx(v2 * f2, rel=1e-6)
    assert block.input == block.nodes[0]
    assert block.completeness_error() < 1e-6
    assert block.incoming(2) == {0: block.links[(0, 2)], 1: block.links[(1, 2)]}
    shares = block.shares(2)
    assert shares[0] == pytest.approx(abs(u0 * f0) / (abs(u0 * f0) + abs(u1 * f1)), rel=1e-6)
    mat = block.matrix()
    assert mat.shape == (3, 3) and mat[0, 0] == pytest.approx(expected[(0, 1)]) and mat[1, 2] == pytest.approx(v1 * f1)


def test_a_link_into_a_closed_relu_carries_nothing():
    # f1 < 0: relu(f1) = 0, so the link 1 -> 2 and 1 -> out are zero to first order.
    model = hand_built(-1.0, 0.7, 2.0, (0.3, 0.8, 1.2))
    trace = model.trace(torch.full((1, 1, 1, 1), 0.5), E.relevance_layers(model), keep_graph=True)
    block = E.link_relevance(trace, 0).blocks[0]
    assert block.links[(1, 2)] == 0 and block.to_output[1] == 0 and block.links[(0, 1)] == 0


def test_completeness_on_densenet121_and_one_backward_covers_every_link():
    torch.manual_seed(0)
    model = randomise_batchnorm(densenet.create("densenet121")).eval()
    trace = model.trace(torch.randn(1, 3, 64, 64), E.relevance_layers(model), keep_graph=True)
    result = E.link_relevance(trace)
    assert [len(b.links) for b in result.blocks] == [21, 78, 300, 136]
    assert [len(b.links) for b in result.blocks] == [b.num_links for b in densenet.topology(model).blocks]
    result.check(rtol=1e-4)
    # The per-node totals are the trace's own gradient x activation.
    grads = trace.gradients(result.target, ["features.denseblock3.denselayer5"])
    a = trace.activations["features.denseblock3.denselayer5"].detach()
    assert result.blocks[2].nodes[5] == pytest.approx(float((grads["features.denseblock3.denselayer5"] * a).sum()),
                                                      rel=1e-4, abs=1e-6)
    assert result.target == int(trace.logits.argmax())


def test_memory_efficient_model_gives_the_same_relevance():
    torch.manual_seed(0)
    cfg = DenseNetConfig(growth_rate=8, block_config=(3, 4), num_init_features=16, num_classes=5, stem="small")
    plain = randomise_batchnorm(densenet.create(cfg)).eval()
    efficient = densenet.create(cfg.replace(memory_efficient=True)).eval()
    efficient.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 32, 32)
    a, b = (E.link_relevance(m.trace(x, keep_graph=True), 2) for m in (plain, efficient))
    for ba, bb in zip(a.blocks, b.blocks):
        assert ba.links == pytest.approx(bb.links, rel=1e-4, abs=1e-6)


def test_bad_traces_are_refused():
    torch.manual_seed(0)
    model = densenet.create(DenseNetConfig(growth_rate=4, block_config=(2, 2), num_init_features=8,
                                           num_classes=3, stem="cifar")).eval()
    x = torch.randn(1, 3, 16, 16)
    with pytest.raises(ValueError, match="keep_graph"):
        E.link_relevance(model.trace(x))
    with pytest.raises(ValueError, match="no dense layers"):
        E.link_relevance(model.trace(x, ["features.norm5"], keep_graph=True))
    with pytest.raises(ValueError, match="needs \\['features.conv0'"):  # the first block's input
        E.link_relevance(model.trace(x, ["features.denseblock1.denselayer1", "features.denseblock1.denselayer2"],
                                     keep_graph=True))
    with pytest.raises(TypeError):
        E.link_relevance(model.trace(x, keep_graph=True), 1.5)
    handmade = model.trace(x, keep_graph=True)
    handmade.config = None  # a trace that does not say which network made it: its names cannot be read
    with pytest.raises(ValueError, match="which DenseNet"):
        E.link_relevance(handmade)
    result = E.link_relevance(model.trace(x, keep_graph=True), 1, blocks=[2])
    assert [b.name for b in result.blocks] == ["features.denseblock2"]
    assert result.blocks[0].input_name == "features.transition1"
