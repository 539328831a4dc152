"""One forward pass, no hooks, nothing stored on the model, safe across threads."""

import threading

import pytest
import torch

import densenet
from densenet import DenseNetConfig
from tests.conftest import hook_count


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = densenet.create(DenseNetConfig(growth_rate=8, block_config=(3, 4, 3), num_init_features=16,
                                       stem="small", num_classes=5)).eval()
    for bn in m.modules():  # non-trivial statistics so activations differ per image
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.running_mean.normal_(0, 0.2)
            bn.bias.data.normal_(0, 0.2)
    return m


def test_trace_gives_forward_logits_and_every_tap(model):
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        expected = model(x)
    trace = model.trace(x)
    torch.testing.assert_close(trace.logits, expected, rtol=0, atol=0)
    assert list(trace.activations) == model.tap_names
    assert trace.activations["features.denseblock1.denselayer2"].shape == (2, 8, 24, 24)
    assert trace.activations["features.denseblock1"].shape == (2, 16 + 3 * 8, 24, 24)
    assert "features.norm5" in trace.activations and "features.transition2" in trace.activations
    assert not trace.logits.requires_grad


def test_trace_leaves_no_hooks_and_no_state(model):
    before_keys = set(vars(model))
    before_state = {k: v.clone() for k, v in model.state_dict().items()}
    model.trace(torch.randn(1, 3, 32, 32), keep_graph=True)
    assert hook_count(model) == 0
    assert set(vars(model)) == before_keys
    assert not model.training
    assert all(torch.equal(before_state[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_selected_layers_and_unknown_layer(model):
    trace = model.trace(torch.randn(1, 3, 32, 32), layers=["features.norm5", "features.denseblock1"])
    assert list(trace.activations) == ["features.denseblock1", "features.norm5"]  # forward order
    with pytest.raises(ValueError, match="unknown layer"):
        model.trace(torch.randn(1, 3, 32, 32), layers=["features.denseblock9"])


def test_gradients_come_from_autograd_without_touching_parameters(model):
    x = torch.randn(1, 3, 32, 32)
    trace = model.trace(x, layers=["features.transition1", "features.norm5"], keep_graph=True)
    grads = trace.gradients(target=2)
    assert grads["features.norm5"].shape == trace.activations["features.norm5"].shape
    assert all(p.grad is None for p in model.parameters())
    # agrees with an independent computation: a fresh forward with .retain_grad()
    with torch.enable_grad():
        feats = model.forward_features(x)
        feats.retain_grad()
        model.forward_head(feats)[0, 2].backward(inputs=[feats])
    torch.testing.assert_close(grads["features.norm5"], feats.grad)
    with pytest.raises(RuntimeError, match="keep_graph"):
        model.trace(x).gradients(0)


def test_eight_threads_tracing_one_model_get_their_own_tensors(model):
    images = [torch.full((1, 3, 32, 32), float(i)) + torch.randn(1, 3, 32, 32) * 0.1 for i in range(8)]
    expected = [model.trace(img).activations["features.denseblock2"] for img in images]
    results: dict[int, torch.Tensor] = {}
    start = threading.Barrier(8)

    def work(i: int) -> None:
        start.wait()
        for _ in range(3):
            t = model.trace(images[i], keep_graph=True)
            t.gradients()
            results[i] = t.activations["features.denseblock2"].detach()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(8):
        torch.testing.assert_close(results[i], expected[i])
    assert len({float(r.sum()) for r in results.values()}) == 8
    assert hook_count(model) == 0


def test_input_follows_the_model_and_is_checked(model):
    trace = model.trace(torch.randn(3, 32, 32, dtype=torch.float64))  # one image, other dtype
    assert trace.inputs.shape == (1, 3, 32, 32) and trace.inputs.dtype == torch.float32
    with pytest.raises(TypeError):
        model.trace([[1.0]])
    with pytest.raises(ValueError, match="N, C, H, W"):
        model.trace(torch.randn(32, 32))
