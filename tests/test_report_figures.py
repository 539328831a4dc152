"""The report's figures say what they show: both heat-map axes titled and labelled with every layer and method,
scatter titles clear of the subplot titles, one colour per class (issue 21, defect 10)."""

from __future__ import annotations

import pytest

from densenet import audit, demo
from densenet.audit.report import heatmap_figure, scatter_figure
from densenet.synthetic import write_dataset

LAYERS = ("features.denseblock2", "features.denseblock3")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    model = demo.load()
    base = tmp_path_factory.mktemp("report_figures")
    data = write_dataset(base / "data", 16)
    ds = audit.load_dataset(data["images"], model.class_names, labels=data["labels"], masks=data["masks"])
    return audit.run_audit(model, ds, base / "out", audit.Settings(methods=("gradcam", "gradcam++"), layers=LAYERS),
                           report=False)


def test_heat_map_axes_carry_every_layer_and_method_with_titles(run):
    fig = heatmap_figure(run.summary)
    for trace in fig.data:
        assert list(trace.x) == ["denseblock2", "denseblock3"]
        assert list(trace.y) == ["gradcam", "gradcam++"]
    layout = fig.layout
    assert layout.xaxis.title.text == layout.xaxis2.title.text == "layer"
    assert layout.yaxis.title.text == "method"
    assert layout.yaxis.automargin and layout.xaxis.automargin  # labels are never cut


def test_scatter_classes_have_their_own_colours_and_the_title_clears_the_subplots(run):
    table = audit.read_rows(run.out)
    fig = scatter_figure(table, ("gradcam", "features.denseblock2"))
    colours = {t.name: t.marker.color for t in fig.data}
    assert len(colours) >= 2 and len(set(colours.values())) == len(colours)  # not every class in one colour
    assert fig.layout.title.text == "gradcam at denseblock2"
    assert fig.layout.margin.t >= 70  # room for the title above the subplot titles
    assert fig.layout.xaxis.title.text == "target probability" and fig.layout.yaxis.title.text == "IoU"
