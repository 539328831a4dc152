"""The audit on the files the field publishes: labels, boxes, masks, vocabularies, paths (issue 18).

Published tables come from torchxrayvision's package ``data/`` folder (NIH ChestX-ray14,
CheXpert, RSNA Pneumonia, VinDr-CXR, SIIM-ACR) when it is installed; images are generated to
their names and sizes. CheXlocalize's sample is vendored under ``tests/data/chexlocalize``.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densenet import audit
from densenet.audit.formats.masks import RunLengthMask
from densenet.audit.formats.names import NameIndex
from densenet.audit.formats.vocabulary import Vocabulary
from densenet.labels import CHESTXRAY14, CHEXPERT

pytestmark = pytest.mark.timeout(240)
CHESTXRAY14 = list(CHESTXRAY14)
CHEXPERT = list(CHEXPERT)


@pytest.fixture(scope="module")
def xrv_data() -> Path:
    """torchxrayvision's ``data/`` folder, found without importing the package (seconds of imports)."""
    import importlib.util

    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("torchxrayvision ships the published label files")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _rows(path: Path) -> list[list[str]]:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            text = z.read(z.namelist()[0]).decode("utf-8-sig")
    else:
        text = gzip.open(path, "rt", encoding="utf-8-sig").read()
    return list(csv.reader(io.StringIO(text)))


def _images(folder: Path, names: list[str], size: tuple[int, int] = (64, 64)) -> Path:
    for name in names:
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", size).save(p)
    return folder


# --- vocabulary and names ------------------------------------------------------------------------

def test_vocabulary_synonyms_case_insensitive_map_and_unmatched(tmp_path):
    v = Vocabulary(CHESTXRAY14)
    assert v.match("Infiltrate") == ("Infiltration",)
    assert v.match("pleural effusion") == ("Effusion",)
    assert v.match("Pleural Thickening") == ("Pleural_Thickening",)
    assert v.match("Nodule/Mass") == ("Mass", "Nodule")
    assert v.match("Support Devices") == () and v.match("support devices") == ()
    assert v.to_json()["unmatched"] == {"Support Devices": 1, "support devices": 1}
    assert v.to_json()["mapped"]["Infiltrate"] == {"classes": ["Infiltration"], "by": "synonym"}
    assert Vocabulary(CHEXPERT).match("Airspace Opacity") == ("Lung Opacity",)
    mapping = tmp_path / "map.csv"
    mapping.write_text("name,class\nAortic enlargement,Cardiomegaly\nInfiltrate,\n")
    given = Vocabulary(CHESTXRAY14, audit.formats_read_classes_map(mapping))
    assert given.match("aortic enlargement") == ("Cardiomegaly",) and given.match("Infiltrate") == ()
    with pytest.raises(ValueError, match="'Lung Lesion', not among the model's classes"):
        bad = tmp_path / "bad.csv"
        bad.write_text("Nodule/Mass,Lung Lesion\n")
        Vocabulary(CHESTXRAY14, audit.formats_read_classes_map(bad))


def test_names_match_prefixed_paths_bare_ids_and_flattened_ids():
    index = NameIndex(["valid/patient64541/study1/view1_frontal.jpg", "valid/patient64542/study1/view1_frontal.jpg",
                       "images/00000001_000.png", "rsna/0004cfab.dcm", "a/x.png", "b/x.png"])
    assert index.find("CheXpert-v1.0/valid/patient64541/study1/view1_frontal.jpg") == \
        "valid/patient64541/study1/view1_frontal.jpg"
    assert index.find("00000001_000.png") == "images/00000001_000.png"
    assert index.find("0004cfab") == "rsna/0004cfab.dcm"
    assert index.find("patient64542_study1_view1_frontal") == "valid/patient64542/study1/view1_frontal.jpg"
    assert index.find("x.png") is None  # two listed files have that name: no guess
    assert index.find("other/patient64541/view1_frontal.jpg") is None


# --- labels as published ---------------------------------------------------------------------------

def test_nih_finding_labels_pipes_and_no_finding(xrv_data, tmp_path):
    rows = _rows(xrv_data / "Data_Entry_2017_v2020.csv.gz")
    header, body = rows[0], rows[1:]
    assert header[:2] == ["Image Index", "Finding Labels"]
    piped = [r for r in body if "|" in r[1]][:12]
    none = [r for r in body if r[1] == "No Finding"][:4]
    hernia = [r for r in body if r[1] == "Hernia"][:2]
    sample = piped + none + hernia
    folder = _images(tmp_path / "images", [r[0] for r in sample])
    ds = audit.load_dataset(folder, CHESTXRAY14, labels=xrv_data / "Data_Entry_2017_v2020.csv.gz")
    assert len(ds.items) == len(sample) and not ds.problems
    got = {it.image: it.labels for it in ds.items}
    for r in piped:
        assert got[r[0]] == tuple(r[1].split("|")), r
    assert all(got[r[0]] == () for r in none)
    assert ds.details["labels"]["format"] == "nih"
    # a CheXpert-style model: Effusion is its Pleural Effusion, Hernia matches nothing and is counted
    ds = audit.load_dataset(folder, CHEXPERT, labels=xrv_data / "Data_Entry_2017_v2020.csv.gz")
    assert ds.details["vocabulary"]["mapped"].get("Effusion", {}).get("classes", ["Pleural Effusion"]) == [
        "Pleural Effusion"]
    assert ds.details["vocabulary"]["unmatched"]["Hernia"] == len(hernia) + sum("Hernia" in r[1] for r in piped)
    assert any("'Hernia' matches none of the model's classes" in reason for _, reason in ds.unmatched_rows())


def test_chexpert_uncertain_labels_follow_the_policy(xrv_data, tmp_path):
    rows = _rows(xrv_data / "chexpert_train.csv.gz")
    header, body = rows[0], rows[1:]
    col = {h: i for i, h in enumerate(header)}
    unsure = [r for r in body if r[col["Cardiomegaly"]] == "-1.0"][:5]
    sure = [r for r in body if r[col["Cardiomegaly"]] == "1.0"][:5]
    sample = unsure + sure
    assert sample[0][0].startswith("CheXpert-v1.0-small/train/")
    # the folder holds train/... (the dataset-root prefix of the published paths is not there)
    folder = _images(tmp_path / "data", [r[0].split("/", 1)[1] for r in sample])
    copy = tmp_path / "train_sample.csv"  # the other policies on the same rows, exact header, without 223k rows
    with open(copy, "w", newline="") as f:
        csv.writer(f).writerows([header] + sample)
    by_policy = {}
    for policy, source in (("ignore", xrv_data / "chexpert_train.csv.gz"), ("positive", copy), ("negative", copy)):
        ds = audit.load_dataset(folder, CHEXPERT, labels=source, uncertain=policy)
        assert len(ds.items) == len(sample) and not ds.problems
        by_policy[policy] = {it.image: it for it in ds.items}
        counts = ds.details["labels"]
        n_unsure = sum(r[i] == "-1.0" for r in sample for h, i in col.items() if h in CHEXPERT)
        assert counts["uncertain"] == n_unsure and counts["uncertain_policy"] == policy
    for r in unsure:
        key = r[0].split("/", 1)[1]
        assert "Cardiomegaly" not in by_policy["ignore"][key].labels  # never a target unless asked
        assert "Cardiomegaly" in by_policy["ignore"][key].uncertain
        assert "Cardiomegaly" in by_policy["positive"][key].labels
        assert "Cardiomegaly" not in by_policy["negative"][key].labels + by_policy["negative"][key].uncertain
    for r in sure:
        assert "Cardiomegaly" in by_policy["ignore"][r[0].split("/", 1)[1]].labels


def test_mimic_labels_hold_for_every_image_of_the_study(tmp_path):
    """MIMIC-CXR's chexpert.csv labels studies (subject_id, study_id): the row holds for each image in s<study_id>/."""
    header = ("subject_id,study_id,Atelectasis,Cardiomegaly,Consolidation,Edema,Enlarged Cardiomediastinum,Fracture,"
              "Lung Lesion,Lung Opacity,No Finding,Pleural Effusion,Pleural Other,Pneumonia,Pneumothorax,Support Devices")
    table = tmp_path / "mimic-cxr-2.0.0-chexpert.csv"
    table.write_text(header + "\n10000032,50414267,,1.0,,-1.0,,,,,,,,,,\n10000032,53189527,,,,,,,,,1.0,,,,,\n")
    folder = _images(tmp_path / "files", ["p10/p10000032/s50414267/02aa804e.jpg", "p10/p10000032/s50414267/174413ec.jpg",
                                          "p10/p10000032/s53189527/2a2277a9.jpg"])
    ds = audit.load_dataset(folder, CHEXPERT, labels=table)
    got = {it.image.rsplit("/", 1)[-1]: (it.labels, it.uncertain) for it in ds.items}
    assert got == {"02aa804e.jpg": (("Cardiomegaly",), ("Edema",)), "174413ec.jpg": (("Cardiomegaly",), ("Edema",)),
                   "2a2277a9.jpg": ((), ())}
    assert ds.details["labels"]["uncertain"] == 2 and not ds.problems


# --- ground truth as published ---------------------------------------------------------------------------

def test_nih_boxes_infiltrate_meets_infiltration(xrv_data, tmp_path):
    rows = _rows(xrv_data / "BBox_List_2017.csv.gz")
    infiltrate = [r for r in rows[1:] if r[1] == "Infiltrate"][:6]
    folder = _images(tmp_path / "images", [r[0] for r in infiltrate], size=(1024, 1024))
    ds = audit.load_dataset(folder, CHESTXRAY14, boxes=xrv_data / "BBox_List_2017.csv.gz")
    assert ds.details["boxes"]["format"] == "nih"
    for r in infiltrate:
        item = next(it for it in ds.items if it.image == r[0])
        x, y, w, h = (float(v) for v in r[2:6])
        assert (x, y, x + w, y + h) in item.boxes["Infiltration"]
        truth = audit.truth_on_original(item, "Infiltration", 1024, 1024)
        assert truth.sum() == pytest.approx(w * h, rel=0.05)


def test_rsna_boxes_one_class_named_or_defaulted(xrv_data, tmp_path):
    rows = _rows(xrv_data / "kaggle_stage_2_train_labels.csv.zip")
    assert rows[0] == ["patientId", "x", "y", "width", "height", "Target"]
    positive = [r for r in rows[1:] if r[5] == "1"][:4]
    negative = [r for r in rows[1:] if r[5] == "0"][:2]
    folder = _images(tmp_path / "rsna", [f"{r[0]}.png" for r in positive + negative], size=(1024, 1024))
    ds = audit.load_dataset(folder, CHESTXRAY14, boxes=xrv_data / "kaggle_stage_2_train_labels.csv.zip")
    assert ds.details["boxes"]["format"] == "rsna"
    items = {it.image: it for it in ds.items}
    for r in positive:
        x, y, w, h = (float(v) for v in r[1:5])
        assert (x, y, x + w, y + h) in items[f"{r[0]}.png"].boxes["Pneumonia"]
    assert all(not items[f"{r[0]}.png"].boxes for r in negative)
    ds = audit.load_dataset(folder, CHEXPERT, boxes=xrv_data / "kaggle_stage_2_train_labels.csv.zip",
                            truth_class="Lung Opacity")
    assert any("Lung Opacity" in it.boxes for it in ds.items)
    with pytest.raises(audit.DatasetError, match="--truth-class"):
        audit.load_dataset(folder, ["nodule", "ring"], boxes=xrv_data / "kaggle_stage_2_train_labels.csv.zip")


def test_vindr_readers_union_and_majority(xrv_data, tmp_path):
    rows = _rows(xrv_data / "vinbigdata-train.csv.gz")
    assert rows[0] == ["image_id", "class_name", "class_id", "rad_id", "x_min", "y_min", "x_max", "y_max"]
    by_image: dict[str, list[list[str]]] = {}
    for r in rows[1:60000]:
        by_image.setdefault(r[0], []).append(r)
    # an image where all three readers boxed Cardiomegaly, and one where every reader saw nothing
    card = next(k for k, v in by_image.items()
                if len({r[3] for r in v if r[1] == "Cardiomegaly"}) == 3 and len({r[3] for r in v}) == 3)
    clear = next(k for k, v in by_image.items() if all(r[1] == "No finding" for r in v))
    folder = _images(tmp_path / "vindr", [f"{card}.png", f"{clear}.png"], size=(3000, 3000))
    src = tmp_path / "train.csv"
    with open(src, "w", newline="") as f:
        csv.writer(f).writerows([rows[0]] + by_image[card] + by_image[clear])
    union = audit.load_dataset(folder, CHESTXRAY14, boxes=src)
    majority = audit.load_dataset(folder, CHESTXRAY14, boxes=src, readers="majority")
    assert union.details["boxes"]["format"] == "vindr" and union.details["boxes"]["no_finding"] == 3
    u = next(it for it in union.items if it.image == f"{card}.png")
    m = next(it for it in majority.items if it.image == f"{card}.png")
    assert len(u.boxes["Cardiomegaly"]) == 3 and m.truth_kind("Cardiomegaly") == "box"
    boxes = [tuple(float(v) for v in r[4:8]) for r in by_image[card] if r[1] == "Cardiomegaly"]
    ys, xs = np.arange(3000) + 0.5, np.arange(3000) + 0.5
    votes = sum(((ys >= b[1]) & (ys < b[3]))[:, None] & ((xs >= b[0]) & (xs < b[2]))[None, :] for b in boxes)
    assert np.array_equal(audit.truth_on_original(m, "Cardiomegaly", 3000, 3000), votes >= 2)
    assert np.array_equal(audit.truth_on_original(u, "Cardiomegaly", 3000, 3000), votes >= 1)
    assert not next(it for it in union.items if it.image == f"{clear}.png").boxes

    # each reader on their own: one row per reader, all three sharing the image's one map
    import torch

    from densenet import DenseNet, DenseNetConfig
    from densenet.preprocess import named

    torch.manual_seed(0)
    cfg = DenseNetConfig(growth_rate=4, block_config=(2, 2), num_init_features=8, bn_size=2, in_channels=1,
                         num_classes=len(CHESTXRAY14), stem="small", multilabel=True)
    model = DenseNet(cfg, class_names=CHESTXRAY14, preprocessing=named("xray").replace(size=64)).eval()
    labels = tmp_path / "labels.csv"
    labels.write_text(f"image,label\n{card}.png,Cardiomegaly\n")
    each = audit.load_dataset(folder, CHESTXRAY14, labels=labels, boxes=src, readers="each", limit=None)
    assert [it.image for it in each.items] == [f"{card}.png"]
    result = audit.run_audit(model, each, tmp_path / "each", audit.Settings(
        methods=("gradcam",), layers=("features.denseblock2",), resolution="input"), report=False)
    rows = audit.read_rows(result.out).to_pylist()
    readers = sorted({r[3] for r in by_image[card] if r[1] == "Cardiomegaly"})
    assert sorted(r["reader"] for r in rows) == readers and len({r["map_index"] for r in rows}) == 1
    by_reader = {r["reader"]: r for r in rows}
    for rad in readers:
        (x0, y0, x1, y1), = [tuple(float(v) for v in r[4:8]) for r in by_image[card]
                              if r[1] == "Cardiomegaly" and r[3] == rad]
        assert by_reader[rad]["lesion_fraction"] == pytest.approx((x1 - x0) * (y1 - y0) / 3000 ** 2, abs=0.01)


def _kaggle_rle_decode(rle: str, width: int, height: int) -> np.ndarray:
    """The SIIM-ACR competition's own ``rle2mask`` (mask_functions.py), as an independent reference."""
    mask = np.zeros(width * height)
    array = np.asarray([int(x) for x in rle.split()])
    starts, lengths = array[0::2], array[1::2]
    current = 0
    for index, start in enumerate(starts):
        current += start
        mask[current:current + lengths[index]] = 255
        current += lengths[index]
    return mask.reshape(width, height).T > 0


def test_siim_run_lengths_decode_column_major(xrv_data, tmp_path):
    rows = _rows(xrv_data / "siim-pneumothorax-train-rle.csv.gz")
    assert [h.strip() for h in rows[0]] == ["ImageId", "EncodedPixels"]
    positive = [r for r in rows[1:] if r[1].strip() != "-1"][:3]
    negative = [r for r in rows[1:] if r[1].strip() == "-1"][:2]
    folder = _images(tmp_path / "siim", [f"{r[0]}.png" for r in positive + negative], size=(1024, 1024))
    ds = audit.load_dataset(folder, CHESTXRAY14, masks=xrv_data / "siim-pneumothorax-train-rle.csv.gz")
    assert ds.details["masks"]["format"] == "siim"
    items = {it.image: it for it in ds.items}
    for r in positive:
        item = items[f"{r[0]}.png"]
        expected = np.zeros((1024, 1024), bool)
        for other in (o for o in rows[1:] if o[0] == r[0]):  # an image may have several rows
            expected |= _kaggle_rle_decode(other[1].strip(), 1024, 1024)
        got = audit.truth_on_original(item, "Pneumothorax", 1024, 1024)
        assert got.any() and np.array_equal(got, expected)
    assert all(items[f"{r[0]}.png"].truth_kind("Pneumothorax") == "" for r in negative)
    with pytest.raises(ValueError, match="past a 10 x 10 image"):
        RunLengthMask(("95 10",)).decode(10, 10)


def test_a_folder_of_published_files_is_sorted_by_their_headers(xrv_data, tmp_path):
    """NIH's files under their own names (and RSNA's zip beside them) in one folder: each found by content."""
    import shutil

    rows = _rows(xrv_data / "BBox_List_2017.csv.gz")
    _images(tmp_path / "nih" / "images", [r[0] for r in rows[1:4]])
    for name in ("Data_Entry_2017_v2020.csv.gz", "BBox_List_2017.csv.gz"):
        shutil.copy(xrv_data / name, tmp_path / "nih" / name)
    parts = audit.discover(tmp_path / "nih")
    assert parts["labels"].name == "Data_Entry_2017_v2020.csv.gz" and parts["boxes"].name == "BBox_List_2017.csv.gz"
    ds = audit.load_folder(tmp_path / "nih", CHESTXRAY14)
    assert len(ds.items) == 3 and all(it.boxes for it in ds.items)
    assert (ds.details["labels"]["format"], ds.details["boxes"]["format"]) == ("nih", "nih")


def test_an_unknown_truth_file_says_what_each_format_needs(tmp_path):
    _images(tmp_path / "images", ["a.png"])
    odd = tmp_path / "odd.csv"
    odd.write_text("file,where\na.png,left\n")
    with pytest.raises(audit.DatasetError) as e:
        audit.load_dataset(tmp_path / "images", CHESTXRAY14, boxes=odd)
    for needed in ("patientId,x,y,width,height,Target", "image_id,class_name", "ImageId, EncodedPixels",
                   "gt_segmentations", "gt_annotations", "image,label,x0,y0,x1,y1", "--format"):
        assert needed in str(e.value)
    plain = tmp_path / "plain.csv"
    plain.write_text("image,label,x0,y0,x1,y1\na.png,Infiltrate,1,1,9,9\n")
    with pytest.raises(audit.DatasetError, match="as rsna: missing column"):
        audit.load_dataset(tmp_path / "images", CHESTXRAY14, boxes=plain, truth_format="rsna")
    ds = audit.load_dataset(tmp_path / "images", CHESTXRAY14, boxes=plain, truth_format="plain")
    assert ds.items[0].boxes == {"Infiltration": ((1.0, 1.0, 9.0, 9.0),)}


# --- CheXlocalize's sample ------------------------------------------------------------------------------

CXL = Path(__file__).parent / "data" / "chexlocalize"
FILMS = {"patient64541_study1_view1_frontal": (2320, 2828), "patient64542_study1_view1_frontal": (2022, 2021)}


def _decode(rle: dict) -> np.ndarray:
    coco = pytest.importorskip("pycocotools.mask")
    return coco.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


def test_our_segmentation_of_chexlocalize_maps_equals_theirs():
    """Each of CheXlocalize's 20 Grad-CAM maps (320 px, a whole-film resize), carried onto the film
    by our geometry and segmented by our pipeline, against the segmentation CheXlocalize made of it."""
    from densenet.audit import metrics
    from densenet.geometry import to_original
    from densenet.preprocess import named

    theirs = json.loads((CXL / "gradcam_segmentations_val_sample.json").read_text())
    resize = named("xray", geometry="resize").replace(size=320)  # CheXlocalize resizes the film to 320 x 320
    with np.load(CXL / "gradcam_maps_val.npz") as z:
        maps = {k: z[k].astype(np.float32) for k in z.files}
    assert len(maps) == 20
    for key, cam in maps.items():
        image, task = key.rsplit("_", 1)
        h, w = FILMS[image]
        film = to_original(cam, h, w, resize)
        ours, _ = metrics.binarize(film[None], "otsu")
        ref = _decode(theirs[image][task])
        assert ref.shape == (h, w)
        iou = (ours[0] & ref).sum() / (ours[0] | ref).sum()
        assert iou >= 0.99, (key, iou)


def test_contour_fill_equals_opencv_and_pil():
    """The contour step against CheXlocalize's own code (findContours, then PIL polygons) on speckled segmentations."""
    cv2 = pytest.importorskip("cv2")
    from PIL import ImageDraw

    from densenet.audit.metrics import fill_contours

    rng = np.random.default_rng(0)
    for _ in range(60):
        n = int(rng.integers(5, 40))
        seg = rng.random((n, n)) < rng.uniform(0.1, 0.7)
        cnts = cv2.findContours(seg.astype(np.uint8) * 255, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
        cnts = cnts[0] if len(cnts) == 2 else cnts[1]
        out = Image.new("1", (n, n))
        for cnt in cnts:
            if len(cnt) > 1:
                ImageDraw.Draw(out).polygon([(int(p[0][0]), int(p[0][1])) for p in cnt], outline=1, fill=1)
        assert np.array_equal(fill_contours(seg), np.array(out, dtype=bool))


def test_chexlocalize_polygons_are_their_segmentations():
    from densenet.audit.formats.names import NameIndex
    from densenet.audit.formats.truth import read_truth

    names = [f"valid/{k.replace('_study1_', '/study1/').replace('_view1', '/view1')}.jpg" for k in FILMS]
    index = NameIndex(names)
    voc = Vocabulary(CHEXPERT)
    polys = read_truth(CXL / "gt_annotations_val.json", index, voc)
    rles = read_truth(CXL / "gt_segmentations_val.json", index, voc)
    assert (polys.format, rles.format) == ("polygons", "coco-rle")
    assert {n: set(m) for n, m in polys.masks.items()} == {n: set(m) for n, m in rles.masks.items()}
    assert "Lung Opacity" in polys.masks[names[0]]  # their Airspace Opacity, the model's Lung Opacity
    for name, per_class in rles.masks.items():
        h, w = FILMS[Path(name).parent.parent.name + "_study1_view1_frontal"]
        for cls, source in per_class.items():
            a, b = source.decode(h, w), polys.masks[name][cls].decode(h, w)
            assert a.shape == (h, w) and np.array_equal(a, b), (name, cls)


def test_an_audit_of_the_two_films_scores_the_radiologists_masks_at_film_resolution(tmp_path):
    import torch

    from densenet import DenseNet, DenseNetConfig
    from densenet.preprocess import named

    torch.manual_seed(0)
    cfg = DenseNetConfig(growth_rate=4, block_config=(2, 2), num_init_features=8, bn_size=2, in_channels=1,
                         num_classes=len(CHEXPERT), stem="small", multilabel=True)
    model = DenseNet(cfg, class_names=CHEXPERT, preprocessing=named("xray", geometry="resize").replace(size=64)).eval()
    ds = audit.load_dataset(CXL, CHEXPERT, labels=CXL / "valid.csv", masks=CXL / "gt_segmentations_val.json")
    assert [it.image for it in ds.items] == ["valid/patient64541/study1/view1_frontal.jpg",
                                             "valid/patient64542/study1/view1_frontal.jpg"]  # CheXpert-v1.0/ prefix
    assert not ds.problems
    assert ds.details["masks"]["format"] == "coco-rle"
    assert ds.details["vocabulary"]["mapped"]["Airspace Opacity"]["classes"] == ["Lung Opacity"]
    result = audit.run_audit(model, ds, tmp_path / "out", audit.Settings(methods=("gradcam",),
                                                                          layers=("features.denseblock2",)))
    rows = audit.read_rows(result.out).to_pylist()
    gt = json.loads((CXL / "gt_segmentations_val.json").read_text())
    scored = [r for r in rows if r["hit"] is not None]
    # 64541: Enlarged Cardiomediastinum, Cardiomegaly, Lung Opacity (Airspace Opacity); 64542: Support Devices
    assert sorted((r["image"][6:18], r["target"]) for r in scored) == sorted([
        ("patient64541", "Cardiomegaly"), ("patient64541", "Enlarged Cardiomediastinum"),
        ("patient64541", "Lung Opacity"), ("patient64542", "Support Devices")])
    for r in scored:
        key = r["image"][6:].replace("/", "_")[:-4]
        task = "Airspace Opacity" if r["target"] == "Lung Opacity" else r["target"]
        truth = _decode(gt[key][task])
        assert (r["height"], r["width"]) == truth.shape == FILMS[key]
        assert r["scored_at"] == "original" and r["truth"] == "mask"
        assert r["lesion_fraction"] == pytest.approx(truth.mean(), abs=1e-9)  # the mask read at the film's size
        assert 0 <= r["iou"] <= 1
    summary = audit.read_summary(result.out)
    assert summary["dataset"]["labels"]["format"] == "columns"
    assert summary["dataset"]["labels"]["positive"] == 4
