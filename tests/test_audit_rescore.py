"""``audit rescore``: a finished run re-scored from its stored maps equals a run made with those settings."""

from __future__ import annotations

import pytest
import torch

from densenet import audit, demo
from densenet.__main__ import main
from densenet.synthetic import write_dataset

pytestmark = pytest.mark.timeout(240)
LAYER = "features.denseblock2"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    torch.set_num_threads(1)
    model = demo.load()
    data = write_dataset(tmp_path_factory.mktemp("data"), 12)
    ds = audit.load_dataset(data["images"], model.class_names, labels=data["labels"], masks=data["masks"],
                            boxes=data["boxes"])
    base = tmp_path_factory.mktemp("runs")
    out = {}
    for name, binarize in (("otsu", "otsu"), ("fixed", 0.4)):
        audit.run_audit(model, ds, base / name, audit.Settings(methods=("gradcam",), layers=(LAYER,),
                                                               binarize=binarize), report=False)
        out[name] = base / name
    return out


def _by_key(out):
    return {(r["image"], r["target"]): r for r in audit.read_rows(out).to_pylist()}


def test_rescore_at_a_fixed_threshold_equals_a_run_at_it(runs, capsys):
    first = _by_key(runs["otsu"])
    assert main(["audit", "rescore", str(runs["otsu"]), "--threshold", "0.4", "--no-report"]) == 0
    assert "rescored" in capsys.readouterr().out
    got, want = _by_key(runs["otsu"]), _by_key(runs["fixed"])
    assert got.keys() == want.keys()
    scored = [k for k in want if want[k]["hit"] is not None]
    assert scored
    for k in scored:
        g, w = got[k], want[k]
        assert g["threshold"] == w["threshold"] == 0.4
        assert (g["truth"], g["scored_at"], g["hit"], g["hit_mask"], g["hit_box"]) == \
            (w["truth"], w["scored_at"], w["hit"], w["hit_mask"], w["hit_box"])
        # the stored maps are float16: a pixel at the threshold may fall the other way
        assert g["iou"] == pytest.approx(w["iou"], abs=0.02) and g["dice"] == pytest.approx(w["dice"], abs=0.02)
        assert g["lesion_fraction"] == w["lesion_fraction"]
    assert audit.read_manifest(runs["otsu"])["settings"]["binarize"] == 0.4
    assert audit.read_summary(runs["otsu"])["rows"] == len(got)
    # and back: Otsu again gives the first run's scores
    assert main(["audit", "rescore", str(runs["otsu"]), "--otsu"]) == 0
    again = _by_key(runs["otsu"])
    for k in scored:
        assert again[k]["hit"] == first[k]["hit"]
        assert again[k]["threshold"] == pytest.approx(first[k]["threshold"], abs=2 / 255)
        assert again[k]["iou"] == pytest.approx(first[k]["iou"], abs=0.02)
    assert (runs["otsu"] / "report.html").is_file()


def test_rows_carry_the_hit_by_mask_and_by_box_and_a_tolerance_only_adds_hits(runs):
    rows = [r for r in _by_key(runs["fixed"]).values() if r["hit"] is not None]
    assert rows and all(r["truth"] == "mask" and r["hit_mask"] == r["hit"] and r["hit_box"] is not None for r in rows)
    overall = audit.read_summary(runs["fixed"])["by_method_layer"][0]["overall"]
    assert overall["hit_rate_mask"]["mean"] == pytest.approx(sum(r["hit_mask"] for r in rows) / len(rows), abs=1e-6)
    assert overall["hit_rate_box"]["mean"] == pytest.approx(sum(r["hit_box"] for r in rows) / len(rows), abs=1e-6)
    # a box holds its mask: every hit by mask is a hit by box (the ring's hole is the other way round)
    assert all(r["hit_box"] for r in rows if r["hit_mask"])
    before = {k: r["hit"] for k, r in _by_key(runs["fixed"]).items()}
    assert main(["audit", "rescore", str(runs["fixed"]), "--pointing-tolerance", "15", "--no-report"]) == 0
    after = {k: r["hit"] for k, r in _by_key(runs["fixed"]).items()}
    assert all(after[k] for k in before if before[k])  # a hit stays a hit
    assert sum(map(bool, after.values())) >= sum(map(bool, before.values()))


def test_rescore_refuses_a_folder_without_an_audit(tmp_path, capsys):
    assert main(["audit", "rescore", str(tmp_path)]) == 2
    assert "holds no audit" in capsys.readouterr().err


def test_auroc_counts_no_finding_images_as_negatives_and_leaves_uncertain_ones_out():
    import pyarrow as pa

    from densenet.audit.summary import classification

    rows = {"image": ["a", "b", "c", "d"], "labels": [["x"], [], [], ["y"]], "target_source": ["label"] * 4,
            "probabilities": [[0.9, 0.1], [0.2, 0.3], [0.95, 0.2], [0.1, 0.8]], "predicted": ["x", "y", "x", "y"],
            "uncertain": [[], [], ["x"], []]}
    table = pa.table(rows)
    c = classification(table, ["x", "y"], True, labelled=True)
    # x: a positive (0.9); b (0.2) and d (0.1) negative; c is uncertain for x (0.95 would have been a false alarm)
    assert c["images"] == 4 and c["per_class"]["x"]["auroc"] == 1.0 and c["per_class"]["x"]["uncertain_left_out"] == 1
    counted_negative = classification(table.drop_columns(["uncertain"]), ["x", "y"], True, labelled=True)
    assert counted_negative["per_class"]["x"]["auroc"] == pytest.approx(2 / 3)
    assert classification(table, ["x", "y"], True)["images"] == 2  # without labels, empty means unlabelled
