"""The DenseNet family: parameter counts, torchvision parity, knobs, memory-efficient mode."""

import pytest
import torch
import torchvision

import densenet
from densenet import DenseNetConfig
from densenet.testing import randomise_batchnorm

PAPER_PARAMS = {
    "densenet121": 7_978_856,
    "densenet161": 28_681_000,
    "densenet169": 14_149_480,
    "densenet201": 20_013_928,
    "densenet264": 33_337_704,
}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, expected", PAPER_PARAMS.items())
def test_parameter_counts_match_the_paper_table(name, expected):
    model = densenet.create(name)
    assert n_params(model) == expected
    assert densenet.topology(name).total_params == expected


def test_densenet_bc_100_12_has_about_0_8m_parameters():
    assert 0.75e6 < n_params(densenet.create("densenet-bc-100-12")) < 0.85e6


@pytest.mark.parametrize("name", ["densenet121", "densenet161", "densenet169", "densenet201"])
def test_state_dict_keys_are_torchvisions(name):
    ours = densenet.create(name).state_dict()
    theirs = getattr(torchvision.models, name)().state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[k].shape == theirs[k].shape for k in ours)


def test_dense_block_concatenates_never_adds():
    model = densenet.create(DenseNetConfig(growth_rate=4, block_config=(3,), num_init_features=8,
                                           stem="cifar", num_classes=2)).eval()
    tr = model.trace(torch.randn(1, 3, 16, 16))
    block = tr.activations["features.denseblock1"]
    assert block.shape[1] == 8 + 3 * 4
    # The block output is its input followed by each layer's new maps, unchanged.
    assert torch.equal(block[:, :8], tr.activations["features.conv0"])
    for layer in range(1, 4):
        new = tr.activations[f"features.denseblock1.denselayer{layer}"]
        assert torch.equal(block[:, 8 + 4 * (layer - 1): 8 + 4 * layer], new)


def test_every_knob_is_honoured():
    cfg = DenseNetConfig(growth_rate=8, block_config=(2, 3), num_init_features=10, bn_size=None,
                         compression=0.7, in_channels=1, num_classes=5, stem="small")
    model = densenet.create(cfg).eval()
    assert model.config is cfg
    assert not hasattr(model.features.denseblock1.denselayer1, "conv2")  # no bottleneck
    assert model.features.denseblock1.denselayer1.conv1.kernel_size == (3, 3)
    # transition: floor(0.7 * (10 + 2*8)) = 18
    assert model.features.transition1.conv.out_channels == 18
    out = model(torch.randn(2, 1, 32, 32))
    assert out.shape == (2, 5)


def test_overrides_and_bad_values_are_reported():
    model = densenet.create("densenet121", growth_rate=12, in_channels=1, num_classes=3)
    assert model.config.growth_rate == 12 and model.config.in_channels == 1
    with pytest.raises(TypeError, match="unknown DenseNetConfig option"):
        densenet.create("densenet121", growth=12)
    with pytest.raises(ValueError, match="compression"):
        densenet.create("densenet121", compression=1.5)
    with pytest.raises(ValueError, match="unknown DenseNet variant"):
        densenet.create("densenet999")
    with pytest.raises(ValueError, match="input channel"):
        densenet.create("densenet-bc-100-12").trace(torch.randn(1, 1, 32, 32))


def test_plain_and_bc_cifar_variants():
    plain = densenet.create("densenet-40-12")
    assert plain.config.bn_size is None and plain.config.compression == 1.0
    assert plain.config.depth == 40
    assert densenet.create("densenet-bc-100-12").config.depth == 100
    with pytest.raises(ValueError, match="6n\\+4"):
        densenet.cifar_bc(101, 12)


def test_lme_head_with_null_class():
    cfg = DenseNetConfig(growth_rate=4, block_config=(2, 2), num_init_features=8, stem="small",
                         in_channels=1, num_classes=4, pool="lme", null_class=True)
    model = densenet.create(cfg).eval()
    assert model.classifier.out_features == 3
    logits = model(torch.randn(3, 1, 32, 32))
    assert logits.shape == (3, 4) and torch.all(logits[:, 0] == 0)


def test_memory_efficient_mode_gives_the_same_outputs_and_gradients():
    cfg = densenet.cifar_bc(40, 12)
    plain = densenet.create(cfg)
    efficient = densenet.create(cfg, memory_efficient=True)
    efficient.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    for model in (plain, efficient):
        model.train()
        model.zero_grad()
        model(x).logsumexp(1).sum().backward()
    torch.testing.assert_close(efficient(x), plain(x))
    for (name, p), q in zip(plain.named_parameters(), efficient.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_train_step_reaches_every_parameter():
    model = densenet.create(densenet.cifar_bc(40, 12)).train()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_pick_device_prefers_cuda_only_when_present():
    device = densenet.pick_device()
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert densenet.pick_device("cpu").type == "cpu"
    with pytest.raises(ValueError):
        densenet.pick_device("tpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_mixed_precision_logits_within_1e_2():
    model = densenet.create("densenet121").eval().cuda()
    randomise_batchnorm(model)
    model = model.cuda()
    x = torch.rand(2, 3, 224, 224, device="cuda")
    full = model.trace(x).logits
    half = model.trace(x, amp=True).logits
    assert half.dtype == torch.float32
    assert (full - half).abs().max() < 1e-2
