"""Topology from the config alone agrees with the model the config builds."""

import pytest
import torch

import densenet
from densenet import DenseNetConfig


def test_densenet121_link_counts():
    topo = densenet.topology("densenet121")
    assert [b.num_links for b in topo.blocks] == [21, 78, 300, 136]
    assert topo.num_links == 535
    for block in topo.blocks:
        L = block.num_layers
        assert block.num_links == L * (L + 1) // 2
        # layer l receives exactly l inputs: the block input and every earlier layer
        for layer in range(1, L + 1):
            assert sorted(s for s, t in block.links if t == layer) == list(range(layer))


def test_densenet121_channel_table():
    topo = densenet.topology("densenet121", input_size=224)
    assert [(b.in_channels, b.out_channels) for b in topo.blocks] == [(64, 256), (128, 512), (256, 1024), (512, 1024)]
    assert [b.size for b in topo.blocks] == [(56, 56), (28, 28), (14, 14), (7, 7)]
    t1 = topo.row("features.transition1")
    assert (t1.in_channels, t1.out_channels, t1.size) == (256, 128, (28, 28))
    layer6 = topo.row("features.denseblock1.denselayer6")
    assert (layer6.in_channels, layer6.out_channels) == (64 + 5 * 32, 32)


@pytest.mark.parametrize("config", [
    densenet.VARIANTS["densenet121"],
    densenet.VARIANTS["densenet-40-12"],
    DenseNetConfig(growth_rate=5, block_config=(2, 3, 1), num_init_features=7, compression=0.6,
                   stem="small", in_channels=1, num_classes=4, pool="lme", null_class=True),
])
def test_rows_match_the_built_model(config):
    size = 64
    model = densenet.create(config).eval()
    topo = densenet.topology(model, input_size=size)
    assert topo.total_params == sum(p.numel() for p in model.parameters())
    trace = model.trace(torch.zeros(1, config.in_channels, size, size))
    for row in topo.layers:
        if row.name == "classifier":
            continue
        module = model.get_submodule(row.name)
        assert sum(p.numel() for p in module.parameters()) == row.params, row.name
        act = trace.activations[row.name]
        assert act.shape[1] == row.out_channels and tuple(act.shape[2:]) == row.size, row.name


def test_macs_of_densenet121_are_about_2_9_gmacs():
    assert 2.8e9 < densenet.topology("densenet121").total_macs < 2.9e9


def test_provenance_names_the_source_of_every_channel_range():
    topo = densenet.topology("densenet121")
    slices = topo.provenance("features.denseblock2.denselayer3")
    assert [(s.start, s.stop, s.source) for s in slices] == [
        (0, 128, "features.transition1"),
        (128, 160, "features.denseblock2.denselayer1"),
        (160, 192, "features.denseblock2.denselayer2"),
    ]
    block_out = topo.provenance("features.transition1")
    assert block_out[0].source == "features.pool0" and block_out[-1].stop == 256
    assert sum(s.channels for s in topo.provenance("features.norm5")) == 1024


def test_provenance_matches_the_traced_tensors():
    model = densenet.create(DenseNetConfig(growth_rate=3, block_config=(4,), num_init_features=5,
                                           stem="cifar", num_classes=2)).eval()
    trace = model.trace(torch.randn(1, 3, 8, 8))
    block = trace.activations["features.denseblock1"]
    for s in densenet.topology(model, 8).provenance("features.denseblock1"):
        assert torch.equal(block[:, s.start:s.stop], trace.activations[s.source])


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown variant"):
        densenet.topology("resnet50")
    with pytest.raises(KeyError):
        densenet.topology("densenet121").provenance("features.conv0")


def test_the_taps_are_read_from_the_topology():
    topo = densenet.topology("densenet121")
    assert topo.cam_layers == [f"features.denseblock{b}" for b in range(1, 5)] + ["features.norm5"]
    assert [topo.block_input(b) for b in range(1, 5)] == [
        "features.pool0", "features.transition1", "features.transition2", "features.transition3"]
    assert topo.dense_layers(4) == [f"features.denseblock4.denselayer{i}" for i in range(1, 17)]
    cifar = densenet.topology(densenet.DenseNetConfig(growth_rate=4, block_config=(2, 3), num_init_features=8,
                                                      stem="cifar", num_classes=3), 32)
    assert cifar.block_input(1) == "features.conv0" and len(cifar.dense_layers(2)) == 3
    model = densenet.DenseNet(cifar.config)
    # every name the topology gives is a tap the model traces
    assert set(cifar.cam_layers + cifar.dense_layers(1) + [cifar.block_input(2)]) <= set(model.tap_names)
    for bad in (0, 3, True, "1"):
        with pytest.raises(ValueError, match="block must be 1..2"):
            cifar.block(bad)


def test_the_layer_to_explain_first_is_the_checkpoints_else_the_last_feature_map():
    from densenet.topology import default_cam_layer

    model = densenet.DenseNet(densenet.DenseNetConfig(growth_rate=4, block_config=(2, 3), num_init_features=8,
                                                      stem="cifar", num_classes=3))
    assert default_cam_layer(model) == "features.norm5"
    model.metadata["cam_layer"] = "features.denseblock1"
    assert default_cam_layer(model) == "features.denseblock1"
    model.metadata["cam_layer"] = "features.nowhere"  # a stale recommendation is not followed
    assert default_cam_layer(model) == "features.norm5"
