"""Defects of issue 21 that a figure or a pure function shows: titles, plurals, axis room, number formats."""

from __future__ import annotations

import json

import densenet
from dashboard import figures, numbers
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


def test_percent_never_prints_the_threshold_for_the_other_side():
    from dashboard.analysis import percent

    assert percent(0.499) == "50%"  # no threshold: plain rounding
    assert percent(0.499, 0.5) == "49.9%" and percent(0.4999, 0.5) == "49.99%"
    assert percent(0.5004, 0.5) == "50.0%" or percent(0.5004, 0.5) == "50.04%"
    assert percent(0.73, 0.5) == "73%" and percent(0.5, 0.5) == "50%"
    assert percent(0.3, 0.5) == "30%"


def test_findings_bar_text_agrees_with_the_call():
    from densenet.labels import Finding

    row = Finding(index=0, name="a", probability=0.499, threshold=0.5, calibrated=True, positive=False)
    assert not row.positive
    assert list(figures.findings_bar([row]).data[0].text) == ["49.9%"]


def test_geometry_labels_fit_the_sidebar():
    from densenet import geometry

    assert geometry.short_label("crop") == "centre crop"
    assert all(len(geometry.short_label(g)) <= 12 for g in geometry.GEOMETRIES)


def test_sidebar_shows_server_time_after_a_refused_file():
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from tests.apptest import widget

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py"), default_timeout=180)
    at.run()
    widget(at, "selectbox", "model_source").set_value("checkpoint").run()
    at.file_uploader(key="ckpt_upload").set_value(("broken.pt", b"\x80\x02not a checkpoint", "application/octet-stream"))
    at.run()
    assert not at.exception
    assert any(e.value.startswith("Could not load the checkpoint broken.pt") for e in at.main.error)
    assert any(c.value.startswith("Server time for this view:") for c in at.sidebar.caption)


def test_lesson_table_shows_short_counts_and_the_step_chart_labels_stand_off():
    import re

    from dashboard import analysis, lesson

    topo = densenet.topology("densenet121")
    html = lesson.build(topo, title="DenseNet-121")
    table = html[html.index("Layer table"):]
    table = table[:table.index("</table>")]
    assert f"<td>{numbers.big(topo.total_macs)}</td>" in table and "<td>7.98 M</td>" in table  # the totals
    assert not re.search(r">\\s*\\d{7,}\\s*<", table)  # no raw 7+ digit integers in a cell
    step = figures.step_figure(topo.blocks[0], analysis.block_steps(topo.blocks[0], 4)[2])
    assert step.layout.yaxis.ticklabelstandoff >= 6


def test_demo_samples_are_right_or_labelled_as_known_errors():
    import numpy as np
    import torch
    from PIL import Image

    import densenet.demo as demo

    model = demo.load()
    for path in demo.sample_paths():
        if not path.name.startswith("demo_"):
            continue
        truth = path.stem.split("_")[1]
        pixels = np.asarray(Image.open(path).convert("L"), dtype=np.float32) / 255
        with torch.no_grad():
            predicted = model.class_names[int(model(demo.normalize(torch.from_numpy(pixels)[None, None])).argmax())]
        assert (predicted != truth) == (path.name in demo.KNOWN_ERRORS), (path.name, predicted)


def test_the_sidebar_says_why_a_known_error_is_wrong():
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from tests.apptest import ok, widget

    at = ok(AppTest.from_file(str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py"),
                              default_timeout=180).run())
    assert not any("A known error" in c.value for c in at.sidebar.caption)
    widget(at, "selectbox", "sample").set_value("demo_opacity_2.png").run()
    assert any(c.value.endswith(__import__("densenet.demo").demo.KNOWN_ERRORS["demo_opacity_2.png"])
               for c in ok(at).sidebar.caption)


def test_waits_read_in_minutes():
    from dashboard.analysis import duration

    assert duration(45) == "45 s" and duration(3924) == "1 h 5 min" and duration(600) == "10 min"


def test_captum_methods_have_measured_estimates():
    import torch

    from densenet import explain

    model = densenet.create(DenseNetConfig(growth_rate=4, block_config=(2,), num_init_features=8, stem="cifar",
                                           in_channels=1, num_classes=3)).eval()
    x = torch.randn(1, 1, 28, 28)
    for name, count in [("integrated-gradients", 32), ("smoothgrad", 16), ("occlusion", 13 * 13), ("guided-gradcam", 2)]:
        est = explain.method(name).estimate(model, x, ["features.norm5"])
        assert est.forwards == count and est.seconds > 0 and est.text.startswith("≈ "), (name, est)
