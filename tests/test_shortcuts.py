"""Shortcut audit: eigengap, hotspot, foreground, erasure on built data; the planted shortcut found and confirmed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from densenet import synthetic
from densenet.audit import shortcuts as sc
from densenet.audit import spray
from densenet.demo.shortcut import load_shortcut
from densenet.synthetic import write_dataset
from densenet.synthetic_shortcut import MARKER_CLASS, marker_mask, plant, read_markers, write_shortcut_dataset

pytestmark = pytest.mark.timeout(300)
N = 64
SHORTCUT_SEED = 81_000_001  # fresh: no training, evaluation, samples or dataset seed
CLEAN_SEED = 81_000_002


# --- clustering --------------------------------------------------------------------------------------

def test_eigengap_counts_the_components_of_a_block_affinity():
    rng = np.random.default_rng(0)
    sizes = [5, 7, 4]
    a = np.zeros((16, 16))
    start = 0
    for s in sizes:
        a[start:start + s, start:start + s] = 1.0
        start += s
    noise = 0.01 * rng.random((16, 16))
    a = a + (noise + noise.T) / 2  # weak links between the blocks: still three clusters
    assert spray.eigengap(a) == 3
    assert spray.eigengap(np.ones((10, 10))) == 1
    with pytest.raises(ValueError, match="symmetric"):
        spray.eigengap(np.triu(np.ones((4, 4))))


def test_maps_with_two_places_of_attention_make_two_clusters():
    rng = np.random.default_rng(1)
    maps = 0.05 * rng.random((24, 16, 16))
    maps[:14, 1:4, 1:4] += 1.0  # top-left
    maps[14:, 10:14, 9:13] += 1.0  # lower right
    labels = spray.cluster_maps(maps)
    assert set(labels[:14]) == {0} and set(labels[14:]) == {1}


# --- hotspot, foreground, where ---------------------------------------------------------------------

def test_hotspot_is_the_smallest_box_holding_the_share():
    e = np.zeros((12, 10))
    e[2:5, 6:9] = 1.0  # 9 units
    e[8:10, 1:3] = 0.5  # 2 units
    assert spray.hotspot(e, share=0.8) == (6, 2, 9, 5)  # the block alone holds 9/11
    x0, y0, x1, y1 = spray.hotspot(e, share=1.0)  # both blobs: the box spanning them
    assert (x0, y0, x1, y1) == (1, 2, 9, 10)
    assert spray.hotspot(np.zeros((4, 4))) == (0, 0, 4, 4)
    with pytest.raises(ValueError, match="share"):
        spray.hotspot(e, share=0)


def _radiograph(size: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """A film with air around a bright body (darker lungs inside) and a bright letter in the air."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    body = ((xx - 0.5) / 0.36) ** 2 + ((yy - 0.55) / 0.42) ** 2 <= 1
    img = np.full((size, size), 0.04, np.float32)
    img[body] = 0.65
    lungs = ((((xx - 0.36) / 0.1) ** 2 + ((yy - 0.5) / 0.22) ** 2 <= 1)
             | (((xx - 0.64) / 0.1) ** 2 + ((yy - 0.5) / 0.22) ** 2 <= 1))
    img[lungs] = 0.3
    img[8:24, 6:10] = 0.95  # an "L" in the top-left air
    img[20:24, 6:18] = 0.95
    rng = np.random.default_rng(2)
    return np.clip(img + 0.02 * rng.standard_normal(img.shape), 0, 1).astype(np.float32), body


def test_foreground_is_the_body_with_its_lungs_and_without_the_marker():
    img, body = _radiograph()
    fg = sc.foreground(img)
    assert (fg == body).mean() > 0.97
    assert not fg[8:24, 6:18].any()  # the letter lies outside the body
    assert fg[80, 58]  # a lung is inside (holes filled)
    # A demo film has no air around the body: all of it is body.
    images, _, _ = synthetic.generate(1, seed=CLEAN_SEED)
    assert sc.foreground(images[0, 0].numpy()).all()


def test_shares_and_where_of_attention_on_the_marker_in_the_air():
    img, body = _radiograph()
    energy = np.zeros_like(img)
    energy[8:24, 6:18] = 1.0
    s = sc.shares(energy, sc.foreground(img))
    assert s["outside_body"] == pytest.approx(1.0) and s["corners"] == pytest.approx(1.0)
    assert sc.where(s) == "outside body"
    assert sc.where({"border": 0.7, "corners": 0.2, "outside_body": 0.1}) == "border"
    assert sc.where({"border": 0.2, "corners": 0.0, "outside_body": 0.0}) == "inside"
    assert sc.location((0, 0, 20, 20), 160, 160) == "the top-left corner"
    assert sc.location((60, 60, 100, 100), 160, 160) == "the centre of the film"


def test_erase_fills_only_the_box_with_its_surroundings():
    img, _ = _radiograph()
    out = sc.erase(img, (6, 8, 18, 24))
    assert np.array_equal(np.delete(out, np.s_[8:24], axis=0), np.delete(img, np.s_[8:24], axis=0))
    assert out[8:24, 6:18].max() < 0.3  # the letter is gone: filled with the dark air around it
    colour = np.repeat(img[:, :, None], 3, axis=2)
    assert np.allclose(sc.erase(colour, (6, 8, 18, 24))[:, :, 1], out, atol=1e-5)
    assert sc.control_box((0, 0, 20, 30), 160, 200) == (180, 130, 200, 160)


def test_planted_marker_lands_where_markers_csv_says():
    images, labels, _ = synthetic.generate(40, seed=SHORTCUT_SEED)
    p = plant(images, labels, SHORTCUT_SEED)
    cls = synthetic.CLASSES.index(MARKER_CLASS)
    assert p.marked.any() and not p.marked[labels != cls].any()
    i = int(p.marked.nonzero()[0, 0])
    x0, y0, x1, y1 = p.boxes[i].tolist()
    assert x1 <= 32 and y1 <= 32 and (p.images[i, 0, y0:y1, x0:x1] > 0.9).any()
    assert torch.equal(p.images[~p.marked], images[~p.marked])
    mask, box = marker_mask(256, np.random.default_rng(0))
    assert mask.shape == (256, 256) and box[2] <= 64


# --- the planted shortcut, end to end -----------------------------------------------------------------

def _audit(model_arg: str, data: dict, out, capsys) -> tuple[dict, str]:
    from densenet.__main__ import main

    torch.set_num_threads(1)
    rc = main(["audit", "--model", model_arg, "--data", str(data["images"]), "--labels", str(data["labels"]),
               "--layers", "features.denseblock2", "--out", str(out), "--quiet", "--shortcuts"])
    printed = capsys.readouterr().out
    assert rc == 0
    return json.loads((out / "summary.json").read_text()), printed


def test_the_planted_marker_is_found_and_confirmed_on_the_shortcut_model(tmp_path, capsys):
    data = write_shortcut_dataset(tmp_path / "data", N, seed=SHORTCUT_SEED)
    summary, printed = _audit("demo-shortcut", data, tmp_path / "out", capsys)
    clusters = summary["shortcuts"]
    for key in ("target", "images", "hotspot", "where", "flagged", "erasure_drop", "control_drop"):
        assert all(key in c for c in clusters), key
    markers = read_markers(data["markers"])
    marked = {name for name, box in markers.items() if box is not None}
    assert len(marked) >= 8
    flagged = [c for c in clusters if c["flagged"]]
    assert flagged and {c["target"] for c in flagged} == {MARKER_CLASS}
    best = max(flagged, key=lambda c: len(marked & set(c["images"])))
    assert len(marked & set(best["images"])) >= 0.8 * len(marked)
    assert best["where"] == "border" and best["location"] == "the top-left corner"
    assert best["erasure_drop"] >= 0.2 and best["erasure_drop"] >= 2 * max(best["control_drop"], 0.0)
    # The hotspot covers the marker: most of each member's marker lies inside its hotspot.
    covered = []
    for m in best["members"]:
        if markers.get(m["image"]):
            mx0, my0, mx1, my1 = markers[m["image"]]
            hx0, hy0, hx1, hy1 = m["hotspot"]
            inter = max(0, min(mx1, hx1) - max(mx0, hx0)) * max(0, min(my1, hy1) - max(my0, hy0))
            covered.append(inter / ((mx1 - mx0) * (my1 - my0)))
    assert np.mean(covered) >= 0.7 and min(covered) >= 0.4
    assert f"shortcut: {best['sentence']}" in printed
    assert best["sentence"].startswith(f"{best['size']} of {best['of_target']} '{MARKER_CLASS}' films are explained by "
                                       "the top-left corner; erasing it drops the probability by")
    report = (tmp_path / "out" / "report.html").read_text()
    assert 'id="shortcuts"' in report and best["sentence"].replace("'", "&#x27;") in report
    from densenet.audit.rescore import rescore

    rescored = rescore(tmp_path / "out", binarize=0.5)  # another threshold leaves the clusters as they were
    assert rescored["shortcuts"] == clusters
    assert 'id="shortcuts"' in (tmp_path / "out" / "report.html").read_text()


def test_the_clean_model_on_clean_films_has_no_shortcut(tmp_path, capsys):
    data = write_dataset(tmp_path / "data", N, seed=CLEAN_SEED)
    summary, _ = _audit("demo", data, tmp_path / "out", capsys)
    clusters = summary["shortcuts"]
    assert clusters and sum(c["size"] for c in clusters) == N
    assert not [c["sentence"] for c in clusters if c["flagged"]]


def test_the_demo_commands_write_marked_films_and_train_the_shortcut_model(tmp_path):
    from densenet.checkpoints import load_checkpoint
    from densenet.demo.__main__ import main

    assert main(["dataset", "--shortcut", "--out", str(tmp_path / "d"), "--n", "12", "--seed", str(SHORTCUT_SEED)]) == 0
    markers = read_markers(tmp_path / "d" / "markers.csv")
    assert len(markers) == 12 and any(markers.values())
    assert main(["train", "--shortcut", "--smoke", "--out", str(tmp_path / "m.safetensors")]) == 0
    model = load_checkpoint(tmp_path / "m.safetensors")
    assert model.metadata["cam_layer"] == "features.denseblock2" and list(model.class_names) == list(synthetic.CLASSES)
    bundled = load_shortcut()
    assert bundled.metadata["shortcut"] == f"'L' marker on {MARKER_CLASS}"
