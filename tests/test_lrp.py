"""Layer-wise relevance propagation (densenet.explain.lrp_core): the canonizer, conservation, the
shared model left alone, the dense links, the demo lesions, the registry and the trust panel.

Conservation is the test of an LRP implementation: on a network without biases the ε rule passes
the target's logit down to the pixels without loss, so the input relevance sums to the logit.
"""

from __future__ import annotations

import inspect

import threading

import numpy as np
import pytest
import torch
from torch import nn

import densenet
import densenet.explain as E
from densenet import DenseNetConfig
from densenet.explain.canonize import DenseNetCanonizer
from densenet.explain.lrp_core import canonical, propagate
from densenet.testing import randomise_batchnorm

# Tiny nets for everything but the two conservation tests the issue names (121 and a BC net).
TINY = DenseNetConfig(growth_rate=8, block_config=(2, 2, 3, 2), num_init_features=16, num_classes=10)
TINY_BC = densenet.cifar_bc(depth=22, growth_rate=8)
TINY_PLAIN = densenet.cifar_plain(depth=13, growth_rate=6)  # 3x3 convolutions right after the concatenation
TINY_LME = DenseNetConfig(growth_rate=6, block_config=(2, 2), num_init_features=12, in_channels=1, num_classes=4,
                          stem="small", pool="lme", null_class=True)


def make(config: DenseNetConfig, seed: int = 0) -> densenet.DenseNet:
    torch.manual_seed(seed)
    return randomise_batchnorm(densenet.create(config), seed).eval()


def bias_free(config: DenseNetConfig | str, seed: int = 0) -> densenet.DenseNet:
    """Random BN scales and variances, but zero shifts and means, and no classifier bias."""
    torch.manual_seed(seed)
    model = densenet.create(config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
        model.classifier.bias.zero_()
    return model.eval()


def image(seed: int, channels: int = 3, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, channels, size, size, generator=g)


def hooks_left(model: nn.Module) -> list[str]:
    return [f"{name}.{attr}" for name, m in model.named_modules()
            for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_full_backward_hooks")
            if getattr(m, attr, None)]


# --- the canonizer ---------------------------------------------------------------------------------

@pytest.mark.parametrize("config", [TINY, TINY_BC, TINY_PLAIN, TINY_LME], ids=["imagenet", "bc", "plain", "lme"])
def test_canonized_model_computes_the_same_logits_and_remove_restores_it(config: DenseNetConfig) -> None:
    model = make(config)
    x = image(1, config.in_channels, 64 if config.stem == "imagenet" else 32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        y = model(x)
    (instance,) = DenseNetCanonizer().apply(model)
    with torch.no_grad():
        y_canon = model(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # every BN folded away
    torch.testing.assert_close(y_canon, y, rtol=1e-5, atol=1e-5)
    instance.remove()
    after = model.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
    with torch.no_grad():
        assert torch.equal(model(x), y)
    assert not any(hasattr(model, name) for name in ("lrp_relu5", "lrp_pool", "lrp_classifier"))


def test_canonizer_refuses_train_mode_and_other_modules() -> None:
    with pytest.raises(ValueError, match="eval mode"):
        DenseNetCanonizer().apply(densenet.create(TINY).train())
    with pytest.raises(TypeError, match="DenseNet"):
        DenseNetCanonizer().apply(nn.Linear(2, 2))


# --- conservation ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,size", [("densenet-bc-100-12", 32), ("densenet121", 64)])
def test_epsilon_rule_conserves_the_logit_without_biases(name: str, size: int) -> None:
    model = bias_free(name)
    result = E.lrp_relevance(model, image(2, size=size), 3, rule="epsilon")
    logit, total = float(result.logit[0]), float(result.total[0])
    with torch.no_grad():
        assert logit == pytest.approx(float(model(image(2, size=size))[0, 3]), rel=1e-4)
    assert abs(total - logit) <= 0.01 * abs(logit), (total, logit)
    assert result.relevance.shape == (1, 3, size, size)
    private, _ = canonical(model)
    with torch.no_grad():  # the canonized copy computes the model's logits
        torch.testing.assert_close(private(image(2, size=size)), model(image(2, size=size)), rtol=1e-5, atol=1e-5)


def test_with_biases_the_absorbed_relevance_is_reported() -> None:
    model = make(TINY_BC)
    result = E.lrp_relevance(model, image(3), 2, rule="epsilon")
    assert float(result.absorbed.abs()[0]) > 1e-3  # BN shifts and the head bias take their share
    torch.testing.assert_close(result.total + result.absorbed, result.logit)
    torch.testing.assert_close(result.total, result.relevance.sum(dim=(1, 2, 3)))


def test_our_rules_equal_zennits_own() -> None:
    model = make(TINY_LME)
    x = image(4, 1, 32)
    for rule in E.lrp_methods.RULES:
        fast, _, _, _ = propagate(model, x, 2, rule=rule)
        reference, _, _, _ = propagate(model, x, 2, rule=rule, fast=False)
        torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-6)


def test_rules_give_different_finite_maps_of_the_input_shape() -> None:
    model = make(TINY_BC)
    x = image(5)[0]  # one (C, H, W) image: relevance comes back (C, H, W)
    maps = {rule: E.lrp(model, x, 1, rule=rule) for rule in E.lrp_methods.RULES}
    for rule, r in maps.items():
        assert r.shape == x.shape and torch.isfinite(r).all() and r.abs().sum() > 0, rule
    names = list(maps)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not torch.allclose(maps[a], maps[b], rtol=1e-3, atol=1e-6), (a, b)


def test_bad_arguments_are_refused_by_name() -> None:
    model = make(TINY_BC)
    with pytest.raises(ValueError, match="unknown LRP rule 'z-plus'"):
        E.lrp(model, image(0), 1, rule="z-plus")
    with pytest.raises(ValueError, match="out of range"):
        E.lrp(model, image(0), 10)
    with pytest.raises(TypeError, match="DenseNet"):
        E.lrp(nn.Conv2d(3, 3, 1).eval(), image(0), 0)
    with pytest.raises(ValueError, match="train mode"):
        E.lrp(densenet.create(TINY_BC).train(), image(0), 0)
    with pytest.raises(ValueError, match="input channel"):
        E.lrp(model, image(0, channels=1), 0)


# --- the shared model ----------------------------------------------------------------------------------

def test_the_shared_model_is_never_touched_also_from_two_threads() -> None:
    model = make(TINY_BC)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    xs = [image(10), image(11)]
    expected = [E.lrp(model, x, 1) for x in xs]
    results: dict[int, torch.Tensor] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def work(i: int) -> None:
        try:
            barrier.wait()
            for _ in range(3):
                results[i] = E.lrp(model, xs[i], 1)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i in range(2):
        torch.testing.assert_close(results[i], expected[i])
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)
    assert not hooks_left(model) and not model.training
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    private, _ = canonical(model)
    assert private is not model and not hooks_left(private)  # the rules' hooks lived for the call only


def test_the_copy_is_canonized_once_and_again_after_the_model_changes() -> None:
    model = make(TINY_BC)
    first, _ = canonical(model)
    E.lrp(model, image(0), 1)
    assert canonical(model)[0] is first
    with torch.no_grad():
        model.features.denseblock1.denselayer1.conv1.weight.mul_(2)  # an in-place change
    second, _ = canonical(model)
    assert second is not first
    with torch.no_grad():
        torch.testing.assert_close(second(image(0)), model(image(0)), rtol=1e-5, atol=1e-5)


# --- the dense links ------------------------------------------------------------------------------------

def test_lrp_link_relevance_is_complete_and_conserved_per_block_without_biases() -> None:
    model = bias_free(TINY_BC)
    trace = model.trace(image(6))  # no graph needed: LRP re-runs the canonized copy
    result = E.link_relevance(trace, 4, method="lrp", model=model, rule="epsilon")
    assert isinstance(result, E.LinkRelevance) and result.target == 4
    assert [b.name for b in result.blocks] == [b.name for b in densenet.topology(model).blocks]
    result.check(1e-4)  # sum over a node's links equals its total, in every block
    for block in result.blocks:
        assert len(block.links) == block.num_layers * (block.num_layers + 1) // 2
        at_output, at_input = E.block_conservation(block)
        assert at_input == pytest.approx(at_output, rel=1e-3)
    # The last block's output is all that reaches the head: it carries the whole logit.
    assert E.block_conservation(result.blocks[-1])[0] == pytest.approx(result.logit, rel=1e-3)


def test_lrp_link_relevance_with_biases_and_errors() -> None:
    model = make(TINY_LME)
    trace = model.trace(image(7, 1, 32))
    result = E.link_relevance(trace, 2, method="lrp", model=model, blocks=[2])
    assert [b.name for b in result.blocks] == ["features.denseblock2"]
    result.check(1e-4)
    assert all(np.isfinite(v) for v in result.blocks[0].links.values())
    with pytest.raises(ValueError, match="needs the model"):
        E.link_relevance(trace, 2, method="lrp")
    with pytest.raises(ValueError, match="unknown link relevance method"):
        E.link_relevance(trace, 2, method="deeplift")
    with pytest.raises(ValueError, match="no dense block"):
        E.link_relevance(trace, 2, method="lrp", model=model, blocks=[5])


# --- the demo lesions ------------------------------------------------------------------------------------

def test_lrp_concentrates_on_the_demo_lesions() -> None:
    from densenet.demo import load
    from densenet.synthetic import generate, normalize

    model = load()
    images, labels, boxes = generate(16, seed=20261204)
    keep = labels > 0
    x, labels, boxes = normalize(images[keep]), labels[keep], boxes[keep]
    relevance = E.lrp(model, x, labels)[:, 0].clamp(min=0)  # (N, H, W): positive evidence
    shares, areas = [], []
    for r, (x0, y0, x1, y1) in zip(relevance, boxes.int().tolist()):
        shares.append(float(r[y0:y1 + 1, x0:x1 + 1].sum() / r.sum()))
        areas.append((x1 - x0 + 1) * (y1 - y0 + 1) / r.numel())
    assert len(shares) >= 8
    assert np.mean(shares) >= 5 * np.mean(areas), (np.mean(shares), np.mean(areas))


# --- the registry and the trust panel ------------------------------------------------------------------

def test_lrp_is_registered_with_its_rule_as_an_option() -> None:
    record = E.method("lrp")
    assert record.kind is E.Kind.INPUT_ATTRIBUTION and not record.needs_layer and not record.slow
    assert inspect.signature(record.run).parameters["rule"].default == "epsilon-plus-flat"  # compute(..., rule=)
    assert record in E.methods(kind=E.Kind.INPUT_ATTRIBUTION)
    layer = E.method("lrp-layer")
    assert layer.needs_layer and layer.kind is E.Kind.RELEVANCE
    from densenet.explain import lrp_core

    assert lrp_core.RULES == E.lrp_methods.RULES and lrp_core.DEFAULT_RULE == "epsilon-plus-flat"


def test_lrp_at_a_layer_is_the_relevance_reaching_it() -> None:
    model = make(TINY_LME)
    x = image(8, 1, 32)
    out = E.compute("lrp-layer", model, x, 3, ["features.denseblock2", "features.norm5"], rule="epsilon")
    taps = E.layer_relevance(model, x, 3, ["features.denseblock2"], rule="epsilon")
    m = out["features.denseblock2"]
    assert m.raw.shape == (8, 8) and m.map.shape == (32, 32) and m.layer == "features.denseblock2"
    np.testing.assert_allclose(m.raw, taps["features.denseblock2"][0].sum(0).numpy(), rtol=1e-5, atol=1e-6)
    # norm5 is the identity after canonization: what reaches it is what left the last block.
    np.testing.assert_allclose(out["features.norm5"].raw, m.raw)
    shown = E.compute("lrp", model, x, 3)[E.INPUT]
    assert shown.raw.shape == (32, 32) and 0 <= shown.map.min() and shown.map.max() == pytest.approx(1.0)


def test_trust_panel_runs_on_lrp() -> None:
    model = make(TINY_BC)
    x = image(9)
    shown = E.compute("lrp", model, x, 1)[E.INPUT]
    sanity = E.sanity_check(model, x, 1, "features.denseblock2", "lrp", original=shown)
    assert -1 <= sanity.rank_correlation <= 1 and sanity.randomized.shape == (32, 32)
    assert "classifier" in sanity.reinitialised
    curves = E.deletion_insertion(model, x, shown.map, 1, steps=4)
    assert 0 <= curves.deletion_auc <= 1 and 0 <= curves.insertion_auc <= 1


# --- the dashboard ------------------------------------------------------------------------------------

def _app():
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py"), default_timeout=180)


def test_attention_page_offers_lrp_and_draws_it_with_the_trust_checks() -> None:
    from tests.apptest import ok, widget

    at = ok(_app().run())  # the demo model and its nodule sample
    at.switch_page("views/attention.py").run()
    method = widget(ok(at), "selectbox", "method")
    assert "LRP" in method.options and "LRP at a layer" in method.options
    method.set_value("lrp").run()
    shown = ok(at).main.get("image")[1].proto.imgs[0].caption
    assert shown == "LRP · input · nodule"
    assert any("Layer-wise relevance propagation" in c.value for c in at.caption)
    widget(at, "toggle", "trust_open").set_value(True).run()  # the checks run when asked
    labels = [m.label for m in ok(at).metric]
    assert "Randomisation rank correlation" in labels and "Deletion AUC" in labels and "Insertion AUC" in labels
    maps = [m for m in at.session_state["_cache_maps"].values() if getattr(m, "method", None) == "lrp"]
    assert maps and maps[0].map.shape == (128, 128) and maps[0].map.max() == 1.0
    widget(at, "selectbox", "method").set_value("lrp-layer").run()
    assert ok(at).main.get("image")[1].proto.imgs[0].caption.startswith("LRP at a layer · ")


def test_architecture_overlay_shows_lrp_with_the_blocks_conservation() -> None:
    from tests.apptest import ok, widget

    at = ok(_app().run())
    widget(at, "toggle", "relevance_overlay").set_value(True).run()
    widget(ok(at), "radio", "relevance_method").set_value("lrp").run()
    caption = next(c.value for c in ok(at).caption if c.value.startswith("For “nodule”, layer "))
    assert "LRP: of the relevance entering this block at its output" in caption
    assert any(c.key == "conn_graph" or (c.key or "").startswith("conn_graph") for c in at.get("plotly_chart"))
