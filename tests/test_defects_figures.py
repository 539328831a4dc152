"""Defects of issue 21 that a figure or a pure function shows: titles, plurals, axis room, number formats."""

from __future__ import annotations

import json

import densenet
from dashboard import figures
from densenet import DenseNetConfig


def test_one_layer_block_says_one_layer_one_link():
    topo = densenet.topology(DenseNetConfig(growth_rate=4, block_config=(1, 2), num_init_features=8, stem="cifar"))
    title = figures.connectivity_graph(topo.blocks[0]).layout.title.text
    assert "1 layer, 1 link" in title and "1 layers" not in title and "1 links" not in title
    assert "1 layer, 1 link" in figures.connectivity_matrix(topo.blocks[0]).layout.title.text


def test_matrix_title_clears_its_top_axis_and_fits_a_narrow_column():
    block = densenet.topology("densenet264").blocks[2]  # 64 layers
    fig = figures.connectivity_matrix(block, height=460)
    layout = fig.layout
    assert layout.xaxis.side == "top" and layout.xaxis.title.text
    assert layout.margin.t >= figures.MATRIX_TOP_MARGIN >= 90  # title, axis title and ticks stacked
    assert layout.title.y >= 0.98 and layout.title.yanchor == "top"
    assert len(layout.title.text) <= 36, layout.title.text  # ~300 px at 15 px font
    assert "2,080 links" in layout.title.text
