"""Resuming the forward from a traced layer equals the full forward, at every tap point."""

from __future__ import annotations

import threading

import pytest
import torch

import densenet
from densenet import DenseNetConfig
from densenet.testing import randomise_batchnorm
from tests.conftest import hook_count


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return randomise_batchnorm(densenet.create(DenseNetConfig(growth_rate=8, block_config=(2, 3, 2),
                                                              num_init_features=16, num_classes=6))).eval()


def assert_every_tap_resumes(model: densenet.DenseNet, x: torch.Tensor, atol: float) -> None:
    trace = model.trace(x)
    with torch.no_grad():
        for name in model.tap_names:
            out = model.forward_from(name, trace.activations[name], trace)
            torch.testing.assert_close(out, trace.logits, rtol=0, atol=atol, msg=f"resumed from {name}")


def test_densenet121_every_tap_point():
    torch.manual_seed(0)
    model = randomise_batchnorm(densenet.create("densenet121")).eval()
    assert_every_tap_resumes(model, torch.randn(2, 3, 64, 64), atol=1e-5)


def test_demo_model_every_tap_point():
    import densenet.demo

    try:
        model = densenet.demo.load()
    except FileNotFoundError:
        pytest.skip("demo weights not built")
    assert_every_tap_resumes(model, torch.randn(2, 1, 128, 128), atol=1e-5)


def test_batched_modified_activation_shares_the_traced_tensors(tiny):
    x = torch.randn(1, 3, 48, 48)
    layer = "features.denseblock2.denselayer2"
    trace = tiny.trace(x, tiny.resume_inputs(layer) + [layer])
    a = trace.activations[layer]
    batch = a.expand(4, -1, -1, -1).clone()
    batch[1, 3] = 0
    batch[2] *= 2
    with torch.no_grad():
        resumed = tiny.forward_from(layer, batch, trace)
    # Reference: the same change made inside a full forward, via the recorder.
    for i in range(4):
        def record(name, t, i=i):
            return batch[i:i + 1] if name == layer else t
        with torch.no_grad():
            full = tiny.forward_head(tiny.forward_features(x, record))
        torch.testing.assert_close(resumed[i:i + 1], full, rtol=0, atol=1e-5)
    assert resumed.shape == (4, 6)


def test_resume_inputs_name_what_the_block_needs(tiny):
    assert tiny.resume_inputs("features.norm5") == []
    assert tiny.resume_inputs("features.denseblock1") == []
    assert tiny.resume_inputs("features.denseblock1.denselayer1") == ["features.pool0"]
    assert tiny.resume_inputs("features.denseblock2.denselayer3") == [
        "features.transition1", "features.denseblock2.denselayer1", "features.denseblock2.denselayer2"]


def test_bad_arguments_are_named(tiny):
    trace = tiny.trace(torch.randn(1, 3, 32, 32), ["features.denseblock2.denselayer2"])
    a = trace.activations["features.denseblock2.denselayer2"]
    with pytest.raises(ValueError, match="needs 'features.transition1'"):
        tiny.forward_from("features.denseblock2.denselayer2", a, trace)
    with pytest.raises(ValueError, match="unknown layer"):
        tiny.forward_from("features.denseblock9", a, trace)
    with pytest.raises(ValueError, match="traced one is"):
        tiny.forward_from("features.denseblock2.denselayer2", a[:, :3], trace)
    with pytest.raises(TypeError, match="activation must be"):
        tiny.forward_from("features.norm5", a[0], trace)


def test_no_hooks_no_state_and_gradients_follow_the_callers_mode(tiny):
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    trace = tiny.trace(torch.randn(1, 3, 32, 32))
    a = trace.activations["features.transition1"].detach().clone().requires_grad_(True)
    out = tiny.forward_from("features.transition1", a, trace)
    (g,) = torch.autograd.grad(out[0, 1], a)
    assert g.shape == a.shape and g.abs().sum() > 0
    assert hook_count(tiny) == 0 and not tiny.training
    assert all(p.grad is None for p in tiny.parameters())
    assert all(torch.equal(before[k], v) for k, v in tiny.state_dict().items())


def test_threads_resuming_one_model_get_their_own_results(tiny):
    images = [torch.randn(1, 3, 32, 32) for _ in range(4)]
    traces = [tiny.trace(x) for x in images]
    layer = "features.denseblock3.denselayer1"
    expected = [t.logits for t in traces]
    errors = []

    def work(i: int) -> None:
        for _ in range(5):
            with torch.no_grad():
                out = tiny.forward_from(layer, traces[i].activations[layer], traces[i])
            if not torch.allclose(out, expected[i], atol=1e-5):
                errors.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_resume_equals_full_forward(tiny):
    import copy

    model = copy.deepcopy(tiny).cuda()
    assert_every_tap_resumes(model, torch.randn(2, 3, 48, 48, device="cuda"), atol=1e-4)
