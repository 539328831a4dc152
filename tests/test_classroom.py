"""The classroom experiments: well-formed results on tiny settings, exact depths, the memory claim, honest peers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import densenet
import densenet.demo
from densenet.classroom import (
    Cancelled, block_plan, compare_configs, compare_with_resnet, feature_reuse, gradient_experiment, learn,
    matched_plain_cnn, matched_resnet, memory_experiment, param_count, peak_bytes, plain_cnn, published_accuracy,
    resnet, reuse_experiment, same_depth, same_depth_resnet, watch_it_learn,
)
from densenet.classroom.memory import _resnet_stack, resnet_stack_params
from densenet.classroom.params import count_macs
from tests.conftest import TINY_GREY as TINY

pytestmark = pytest.mark.timeout(120)

# Depth 2 * 4 + 1 + 2 = 11; one-channel images and the demo's 4 classes.


class Recorder:
    """A progress callback that keeps every fraction it is given."""

    def __init__(self) -> None:
        self.fractions: list[float] = []

    def __call__(self, fraction: float) -> None:
        self.fractions.append(fraction)


def _assert_progress(rec: Recorder) -> None:
    assert rec.fractions, "progress was never called"
    assert all(0.0 <= f <= 1.0 for f in rec.fractions)
    assert rec.fractions == sorted(rec.fractions)
    assert rec.fractions[-1] == pytest.approx(1.0)


def _cancel_after(n: int):
    calls = []

    def progress(fraction: float) -> None:
        calls.append(fraction)
        if len(calls) >= n:
            raise Cancelled

    return progress, calls


def _weighted_layers(model: nn.Module) -> int:
    """Weighted layers on the main path, counted from the modules: every conv not on a shortcut, plus linears."""
    return sum(1 for name, m in model.named_modules()
               if isinstance(m, (nn.Conv2d, nn.Linear)) and "downsample" not in name)


# --- the peers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("block", ["basic", "bottleneck"])
@pytest.mark.parametrize("depth", [4, 5, 6, 7, 8, 11, 18, 19, 40, 41, 100, 121])
def test_resnet_has_exactly_the_depth_asked_for(depth, block):
    with torch.device("meta"):
        net = resnet(depth, block=block, width=8, stages=1)
    assert net.depth == depth
    assert _weighted_layers(net) == depth
    assert net.tap_depths[-1] == depth - 1  # the classifier is the last weighted layer
    plan = block_plan(depth, block)
    assert plan.convs == depth - 2 and plan.blocks == len(net.stages[0])


@pytest.mark.parametrize("name", [n for n in densenet.VARIANTS])
def test_same_depth_resnet_matches_every_variant(name):
    config = densenet.VARIANTS[name]
    with torch.device("meta"):
        net = same_depth_resnet(config)
    assert net.depth == config.depth == _weighted_layers(net)
    assert len(net.stages) == len(config.block_config)


@pytest.mark.parametrize("name, depth, block, layout", [
    ("resnet18", 18, "basic", (2, 2, 2, 2)), ("resnet34", 34, "basic", (3, 4, 6, 3)),
    ("resnet50", 50, "bottleneck", (3, 4, 6, 3)),
])
def test_resnet_reproduces_torchvision_with_its_layout(name, depth, block, layout):
    with torch.device("meta"):
        ours = resnet(depth, block=block, width=64, layout=layout, stem="imagenet", in_channels=3, num_classes=1000)
        theirs = torchvision.models.get_model(name)
    assert param_count(ours) == param_count(theirs)
    assert count_macs(ours, (224, 224), 3) == count_macs(theirs, (224, 224), 3)


def test_bad_depths_and_layouts_are_refused():
    with pytest.raises(ValueError, match="depth >= 4"):
        block_plan(3)
    with pytest.raises(ValueError, match="block must be"):
        block_plan(10, "wide")
    with pytest.raises(ValueError, match="layout"):
        resnet(18, layout=(2, 2))
    with pytest.raises(ValueError, match="multiple of 4"):
        resnet(5, width=6, stages=1)  # an odd branch-conv count needs a Bottleneck filler


def test_peers_forward_and_taps():
    x = torch.randn(2, 1, 32, 32)
    for net in (resnet(11, width=8), plain_cnn(11, width=8), matched_resnet(TINY), matched_plain_cnn(TINY)):
        logits, taps = net.forward_taps(x)
        assert logits.shape == (2, 4)
        assert len(taps) == len(net.tap_depths) == len(net.tap_names)
        assert np.all(np.diff(net.tap_depths) > 0)
        assert torch.allclose(net(x), logits)
    dense = param_count(densenet.create(TINY))
    assert abs(param_count(matched_resnet(TINY)) - dense) < 0.5 * dense


def test_macs_agree_with_topology():
    # An independent reference: FlopCounterMode on the built model against the config-only arithmetic.
    for config in (TINY, densenet.VARIANTS["densenet121"]):
        with torch.device("meta"):
            model = densenet.DenseNet(config)
        size = 32 if config.stem == "cifar" else 224
        assert count_macs(model, (size, size), config.in_channels) == densenet.topology(config, size).total_macs


# --- fewer parameters ---------------------------------------------------------------------------

def test_published_accuracy_counts_agree_with_torchvision():
    rec = Recorder()
    # Two models keep the test quick; the full table is the same loop over nine.
    result = published_accuracy(families={"DenseNet": ("densenet121",), "ResNet": ("resnet18",)}, progress=rec)
    _assert_progress(rec)
    assert {m.family for m in result.models} == {"DenseNet", "ResNet"}
    for m in result.models:
        assert m.params == m.published_params
        assert 50 < m.top1 < m.top5 < 100
        assert m.weights.endswith("IMAGENET1K_V1") and m.macs > 0
    assert "torchvision" in result.source and "acc@1" in result.source
    assert [m.name for m in result.family("ResNet")] == ["resnet18"]


def test_same_depth_has_both_counts():
    result = same_depth(TINY)
    assert result.depth == TINY.depth
    assert result.densenet_params == param_count(densenet.create(TINY))
    assert result.resnet_params > 0 and result.resnet_macs > 0
    assert sum(result.resnet_layout) == result.resnet_plan.blocks


# --- memory -------------------------------------------------------------------------------------

def test_peak_bytes_is_exact_on_known_allocations():
    def step():
        a = torch.ones(1000)  # 4000 bytes
        b = torch.ones(500)  # +2000 -> 6000 alive
        a.add_(1)  # in place: no new storage
        _ = b.view(5, 100)  # a view: no new storage
        del a  # -> 2000
        c = torch.ones(200)  # -> 2800
        return b, c

    assert peak_bytes(step) == 6000


def test_memory_naive_grows_faster_than_efficient():
    rec = Recorder()
    result = memory_experiment((2, 4, 8, 12), growth_rate=4, in_channels=8, batch_size=2, image_size=8, progress=rec)
    _assert_progress(rec)
    assert result.depths == [2, 4, 8, 12]
    for curve in result.curves:
        assert len(curve.peak_bytes) == len(curve.params) == 4
        assert all(b > 0 for b in curve.peak_bytes) and np.isfinite(curve.exponent)
        assert curve.peak_bytes == sorted(curve.peak_bytes)
    naive, efficient = result.naive, result.efficient
    assert naive.params == efficient.params
    assert all(n > e for n, e in zip(naive.peak_bytes, efficient.peak_bytes))
    assert naive.exponent > efficient.exponent
    assert naive.peak_bytes[-1] / naive.peak_bytes[0] > efficient.peak_bytes[-1] / efficient.peak_bytes[0]


def test_resnet_stack_params_closed_form():
    for layers, c0, width in [(1, 8, 8), (1, 8, 12), (3, 24, 20)]:
        assert resnet_stack_params(layers, c0, width) == param_count(_resnet_stack(layers, c0, width))


def test_memory_refuses_bad_depths():
    with pytest.raises(ValueError, match="increasing"):
        memory_experiment((4, 4))


# --- vanishing gradients ------------------------------------------------------------------------

def test_gradient_experiment_is_well_formed():
    rec = Recorder()
    result = gradient_experiment(TINY, steps=2, batch_size=4, image_size=32, progress=rec)
    _assert_progress(rec)
    assert [p.network for p in result.profiles] == ["plain CNN", "ResNet", "DenseNet"]
    for p in result.profiles:
        n = len(p.layers)
        assert n >= 3 and p.init.shape == p.trained.shape == (n,) and len(p.depths) == n
        assert np.all(np.diff(p.depths) > 0) and p.depths[0] == 1 and p.depths[-1] < result.depth
        assert np.isfinite(p.init).all() and np.isfinite(p.trained).all() and (p.init > 0).all()
        assert not np.array_equal(p.init, p.trained)
    assert len(result.findings) == 2 * 3 + 2
    assert result.profile("DenseNet").depths[-1] == TINY.depth - 1  # the last dense layer; then the classifier


def test_gradient_experiment_at_initialisation_only():
    rec = Recorder()
    result = gradient_experiment(TINY, steps=0, batch_size=2, progress=rec)
    _assert_progress(rec)
    assert all(np.array_equal(p.init, p.trained) for p in result.profiles)
    assert len(result.findings) == 3 + 1


def test_gradient_experiment_stops_when_progress_raises():
    progress, calls = _cancel_after(2)
    with pytest.raises(Cancelled):
        gradient_experiment(TINY, steps=50, batch_size=2, progress=progress)
    assert len(calls) == 2


def test_gradient_experiment_refuses_a_config_for_other_data():
    with pytest.raises(ValueError, match="1 channel and 4 classes"):
        gradient_experiment(TINY.replace(in_channels=3))


# --- feature reuse ------------------------------------------------------------------------------

def test_feature_reuse_shape_and_visibility():
    model = densenet.create(TINY)
    reuse = feature_reuse(model, block_index=1)
    layers = TINY.block_config[1]
    assert reuse.matrix.shape == (layers + 1, layers + 1)
    for row in range(layers):  # dense layer row+1 sees the block input and layers 1..row
        assert np.isfinite(reuse.matrix[row, :row + 1]).all() and np.isnan(reuse.matrix[row, row + 1:]).all()
    assert np.isfinite(reuse.matrix[-1]).all() and reuse.targets[-1] == "classifier"
    with pytest.raises(IndexError):
        feature_reuse(model, block_index=2)


def test_reuse_experiment_live_and_demo():
    rec = Recorder()
    result = reuse_experiment(TINY, steps=2, batch_size=4, image_size=32, reference=densenet.demo.load, progress=rec)
    _assert_progress(rec)
    assert len(result.live) == len(TINY.block_config) and result.live_steps == 2
    assert np.isfinite(result.live_loss)
    demo = densenet.demo.load()
    if result.demo is None:
        pytest.skip(result.demo_note)
    assert [r.matrix.shape for r in result.demo] == [(n + 1, n + 1) for n in demo.config.block_config]


# --- watch it learn -----------------------------------------------------------------------------

def test_learn_yields_snapshots_with_curves_and_cams():
    rec = Recorder()
    snaps = list(learn(TINY, steps=3, batch_size=4, image_size=32, every=2, progress=rec))
    _assert_progress(rec)
    assert [s.step for s in snaps] == [0, 2, 3] and [s.done for s in snaps] == [False, False, True]
    last = snaps[-1]
    for net in (last.densenet, last.resnet):
        assert net.steps == [1, 2, 3] and len(net.loss) == len(net.accuracy) == 3
        assert np.isfinite(net.loss).all() and net.images_per_second > 0
        assert net.cam.shape == (32, 32) and 0.0 <= net.cam.min() and net.cam.max() <= 1.0
    assert snaps[1].densenet.loss == last.densenet.loss[:2]  # snapshots are copies
    assert last.label != 0 and last.image.shape == (32, 32)
    assert abs(last.resnet.params - last.densenet.params) < 0.5 * last.densenet.params


def test_learn_stops_early():
    progress, calls = _cancel_after(1)
    with pytest.raises(Cancelled):
        watch_it_learn(TINY, steps=20, batch_size=2, image_size=32, progress=progress)
    seen = []
    for snap in learn(TINY, steps=20, batch_size=2, image_size=32, every=1):
        seen.append(snap.step)
        if snap.step == 1:
            break  # the consumer stops: no more steps are trained
    assert seen == [0, 1]


# --- side by side -------------------------------------------------------------------------------

def test_compare_with_resnet_rows_align():
    result = compare_with_resnet(TINY)
    dense, res = result.left, result.right
    assert dense.depth == res.depth == TINY.depth
    assert dense.links == sum(n * (n + 1) // 2 for n in TINY.block_config)
    assert res.links == res.units == len(res.reads)
    k, c0 = TINY.growth_rate, TINY.num_init_features
    assert dense.reads[:2] == [c0, c0 + k]
    assert [r.quantity for r in result.rows][0].startswith("depth")
    assert all(r.left is not None and r.right is not None for r in result.rows)
    assert dense.memory.step_bytes >= dense.memory.forward_bytes > 0
    assert compare_with_resnet(TINY, measure_memory=False).rows[-1].left is None


def test_compare_configs_memory_efficient_saves_memory_not_parameters():
    result = compare_configs(TINY, TINY.replace(memory_efficient=True), labels=("naive", "efficient"))
    rows = {r.quantity: r for r in result.rows}
    assert rows["parameters"].difference == 0 and rows["MACs per image"].difference == 0
    assert rows["activation memory: forward peak (bytes)"].ratio < 1
    wider = compare_configs(TINY, TINY.replace(growth_rate=8))
    assert {r.quantity: r for r in wider.rows}["parameters"].ratio > 1


def test_timing_runs_one_experiment_and_refuses_unknown_names():
    from densenet.classroom.timing import time_experiments

    (timing,) = time_experiments(["same_depth"], threads=1)
    assert timing.name == "same_depth" and timing.seconds > 0 and timing.threads == 1
    with pytest.raises(ValueError, match="unknown experiment"):
        time_experiments(["nope"])
