"""Dataset audit: scores against an independent computation, input formats, skipped files, resume, safety, CLI."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from densenet import audit, demo, explain, load_image, preprocess
from densenet.audit import metrics
from densenet.synthetic import DATASET_SEED, write_dataset

ROOT = Path(__file__).resolve().parents[1]
N = 24
LAYER = "features.denseblock2"
pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return demo.load()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("demo_data"), N)


@pytest.fixture(scope="module")
def masked_run(model, data, tmp_path_factory):
    """One audit with masks, Grad-CAM at one layer; the report is written."""
    ds = audit.load_dataset(data["images"], model.class_names, labels=data["labels"], masks=data["masks"])
    out = tmp_path_factory.mktemp("runs") / "masked"
    result = audit.run_audit(model, ds, out, audit.Settings(methods=("gradcam",), layers=(LAYER,), chunk_size=8))
    return result


def chexlocalize_fill(cv2, thresh: np.ndarray) -> np.ndarray:
    """CheXlocalize's ``cam_to_segmentation`` after Otsu, verbatim: contours drawn as filled polygons."""
    from PIL import ImageDraw

    cnts = cv2.findContours(thresh, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    cnts = cnts[0] if len(cnts) == 2 else cnts[1]
    polygons = [[list(pt[0]) for pt in cnt] for cnt in cnts if len(cnt) > 1]
    out = Image.new("1", (thresh.shape[1], thresh.shape[0]))
    for polygon in polygons:
        ImageDraw.Draw(out).polygon([(p[0], p[1]) for p in polygon], outline=1, fill=1)
    return np.array(out, dtype=bool)


def _rows(out) -> list[dict]:
    rows = audit.read_rows(out).to_pylist()
    return sorted(rows, key=lambda r: (r["image"], r["target"], r["method"], r["layer"]))


# --- the scores, against an independent computation --------------------------------------------

def test_hit_rate_and_iou_equal_an_independent_grad_cam(model, data, masked_run):
    cv2 = pytest.importorskip("cv2", reason="OpenCV (opencv-python-headless) is the independent Otsu")
    _, labels, _, masks = demo.generate(N, DATASET_SEED, 128, masks=True)  # the generator's own masks
    rows = {r["image"]: r for r in _rows(masked_run.out)}
    assert len(rows) == N
    hits, ious = [], []
    for i in range(N):
        if int(labels[i]) == 0:
            continue
        name = f"demo_{i:05d}.png"
        x = preprocess(load_image(data["images"] / name), model)
        cam = explain.grad_cam(model, x, target=int(labels[i]), layers=[LAYER])[LAYER]  # (128, 128) in [0, 1]
        mask = masks[i].numpy()
        hit = bool(mask.flat[int(np.argmax(cam))]) and cam.max() > 0
        u8 = np.uint8(255 * (cam - cam.min()) / (cam.max() - cam.min()))
        _, seg = cv2.threshold(u8, 0, 255, cv2.THRESH_OTSU)
        seg = chexlocalize_fill(cv2, seg)
        iou = (seg & mask).sum() / (seg | mask).sum()
        row = rows[name]
        assert row["hit"] == hit, name
        assert row["iou"] == pytest.approx(iou, abs=1e-3), name
        assert row["target"] == demo.CLASSES[int(labels[i])] and row["truth"] == "mask"
        hits.append(hit)
        ious.append(iou)
    overall = masked_run.summary["by_method_layer"][0]["overall"]
    assert overall["with_truth"] == len(hits)
    assert overall["hit_rate"]["mean"] == pytest.approx(np.mean(hits), abs=1e-6)
    assert overall["iou"]["mean"] == pytest.approx(np.mean(ious), abs=1e-3)
    assert overall["iou"]["low"] <= overall["iou"]["mean"] <= overall["iou"]["high"]
    none_rows = [r for r in rows.values() if r["target"] == "none"]
    assert none_rows and all(r["hit"] is None and np.isnan(r["iou"]) for r in none_rows)


def test_otsu_matches_opencv_and_fixed_threshold():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    maps = np.stack([rng.random((20, 24)) ** k for k in (1, 2, 3, 5)]).astype(np.float32)
    u8 = metrics.to_uint8(maps)
    for m, t in zip(u8, metrics.otsu_thresholds(u8)):
        assert t == int(cv2.threshold(m, 0, 255, cv2.THRESH_OTSU)[0])
    seg, thr = metrics.binarize(maps, 0.5)  # strict, as CheXlocalize's ``mask > threshold``
    scaled = (maps[0] - maps[0].min()) / (maps[0].max() - maps[0].min())
    assert np.array_equal(seg[0], scaled > 0.5)
    with pytest.raises(ValueError, match="threshold"):
        metrics.binarize(maps, 1.5)


def test_bootstrap_and_auroc():
    mean, low, high = metrics.bootstrap_ci(np.array([0.0, 1.0] * 50))
    assert mean == 0.5 and low < 0.5 < high
    assert np.isnan(metrics.bootstrap_ci(np.array([np.nan]))[0])
    assert metrics.auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75


# --- input formats ---------------------------------------------------------------------------

def test_nih_and_plain_boxes_give_the_same_rows(model, data, tmp_path):
    settings = audit.Settings(methods=("gradcam",), layers=(LAYER,))
    rows = []
    for name, boxes in (("plain", data["boxes"]), ("nih", data["nih_boxes"])):
        ds = audit.load_dataset(data["images"], model.class_names, labels=data["labels"], boxes=boxes, limit=12)
        audit.run_audit(model, ds, tmp_path / name, settings, report=False)
        rows.append(_rows(tmp_path / name))
    assert len(rows[0]) == 12
    assert any(r["truth"] == "box" for r in rows[0])
    for a, b in zip(*rows):
        assert_same_row(a, b, ignore=("chunk",))


def assert_same_row(a: dict, b: dict, *, ignore: tuple[str, ...] = ()) -> None:
    """Two result rows are equal: numbers to float rounding (NaN equals NaN), list columns element by
    element, everything else exactly. ``pytest.approx`` takes no dict holding lists (pytest >= 9)."""
    assert a.keys() == b.keys()
    for key in a.keys() - set(ignore):
        x, y = a[key], b[key]
        if isinstance(x, (list, tuple)):
            assert isinstance(y, (list, tuple)) and len(x) == len(y), key
            assert list(x) == pytest.approx(list(y), nan_ok=True), key
        elif isinstance(x, float) or isinstance(y, float):
            assert x == pytest.approx(y, nan_ok=True), key
        else:
            assert x == y, key


def test_multilabel_csv_gives_one_row_per_positive_label(model, data, tmp_path):
    names = sorted(p.name for p in data["images"].iterdir())[:6]
    positives = {names[0]: ["nodule", "ring"], names[1]: ["opacity"], names[2]: ["none", "nodule", "opacity"],
                 names[3]: ["ring"], names[4]: [], names[5]: ["nodule"]}
    labels = tmp_path / "multi.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Path", *model.class_names])
        for n in names:
            w.writerow([n, *("1.0" if c in positives[n] else ("-1.0" if c == "ring" else "0.0")
                             for c in model.class_names)])
    ds = audit.load_dataset(data["images"], model.class_names, labels=labels, limit=6)
    audit.run_audit(model, ds, tmp_path / "out", audit.Settings(methods=("gradcam", "eigencam"),
                                                                layers=(LAYER, "features.denseblock3")), report=False)
    rows = _rows(tmp_path / "out")
    for n in names:
        mine = [r for r in rows if r["image"] == n]
        if positives[n]:
            assert sorted({r["target"] for r in mine}) == sorted(positives[n])
            assert len(mine) == len(positives[n]) * 2 * 2
            assert all(r["target_source"] == "label" for r in mine)
        else:  # no positive label: the top prediction is explained, and says so
            assert len(mine) == 4 and all(r["target_source"] == "prediction" for r in mine)


def test_image_folder_layout_gives_labels(model, data, tmp_path):
    for i, name in enumerate(sorted(p.name for p in data["images"].iterdir())[:4]):
        cls = model.class_names[i % 2]
        (tmp_path / cls).mkdir(exist_ok=True)
        (tmp_path / cls / name).write_bytes((data["images"] / name).read_bytes())
    ds = audit.load_dataset(tmp_path, model.class_names)
    assert ds.has_labels and [it.labels for it in ds.items] == [("nodule",), ("nodule",), ("none",), ("none",)]


def test_truth_follows_the_preprocessing_geometry(model, data, tmp_path):
    """A lesion image padded on both sides, its box shifted: the centre crop sees the same
    pixels, so the rows must be the same as for the original."""
    with open(data["boxes"]) as f:
        box_rows = list(csv.DictReader(f))
    first = box_rows[0]
    src = np.asarray(Image.open(data["images"] / first["image"]))
    padded = np.pad(src, ((0, 0), (16, 16)), mode="edge")  # 128 x 160: the crop takes columns 16..143
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(src).save(folder / "a.png")
    Image.fromarray(padded).save(folder / "b.png")
    boxes = tmp_path / "boxes.csv"
    x0, y0, x1, y1 = (float(first[k]) for k in ("x0", "y0", "x1", "y1"))
    boxes.write_text("image,label,x0,y0,x1,y1\n"
                     f"a.png,{first['label']},{x0},{y0},{x1},{y1}\nb.png,{first['label']},{x0 + 16},{y0},{x1 + 16},{y1}\n")
    labels = tmp_path / "labels.csv"
    labels.write_text(f"image,label\na.png,{first['label']}\nb.png,{first['label']}\n")
    ds = audit.load_dataset(folder, model.class_names, labels=labels, boxes=boxes)
    for resolution in ("input", "original"):
        out = tmp_path / resolution
        audit.run_audit(model, ds, out, audit.Settings(methods=("gradcam",), layers=(LAYER,), resolution=resolution),
                        report=False)
        a, b = _rows(out)
        assert (b["width"], b["height"]) == (160, 128)
        assert a["scored_at"] == b["scored_at"] == resolution
        for key in ("hit", "iou", "dice", "energy_in", "score"):
            assert a[key] == pytest.approx(b[key], abs=1e-5), (resolution, key)
        assert a["lesion_fraction"] > 0
        # on the film the margins the crop cut away are part of the image: the same lesion is a smaller share
        scale = 1.0 if resolution == "input" else 128 / 160
        assert b["lesion_fraction"] == pytest.approx(a["lesion_fraction"] * scale, abs=1e-6)


def test_corrupt_file_and_missing_label_are_recorded_and_the_run_completes(model, data, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    names = sorted(p.name for p in data["images"].iterdir())[:5]
    for n in names:
        (folder / n).write_bytes((data["images"] / n).read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a picture")
    labels = tmp_path / "labels.csv"
    with open(data["labels"]) as f:
        lines = f.read().splitlines()
    kept = [l for l in lines[1:] if l.split(",")[0] in names[1:]]  # names[0] has no label
    labels.write_text("\n".join([lines[0], *kept, "broken.png,nodule"]) + "\n")
    ds = audit.load_dataset(folder, model.class_names, labels=labels)
    result = audit.run_audit(model, ds, tmp_path / "out", audit.Settings(methods=("gradcam",), layers=(LAYER,)))
    skipped = dict(audit.read_skipped(tmp_path / "out"))
    assert set(skipped) == {names[0], "broken.png"}
    assert "no label" in skipped[names[0]] and "broken.png" in skipped
    with open(tmp_path / "out" / "skipped.csv") as f:
        assert {r["image"] for r in csv.DictReader(f)} == {names[0], "broken.png"}
    assert {r["image"] for r in _rows(tmp_path / "out")} == set(names[1:])
    assert result.progress.state == "done" and result.summary["skipped"] == 2
    # a fresh run: nothing came from an earlier one (issue 21, defect 11), and its pace counts its own images only
    assert result.progress.images_resumed == 0 and result.progress.images_done == result.progress.images_total == 6


# --- resume and runs -------------------------------------------------------------------------------

def _cli(*args: str, **kw) -> list[str]:
    return [sys.executable, "-m", "densenet", "audit", *args]


def test_a_killed_run_resumes_without_duplicate_or_missing_rows(data, tmp_path):
    out = tmp_path / "out"
    args = _cli("--model", "demo", "--data", str(data["images"]), "--labels", str(data["labels"]), "--boxes",
                str(data["boxes"]), "--layers", f"{LAYER},features.denseblock3", "--out", str(out),
                "--chunk-size", "2", "--batch-size", "2", "--threads", "1", "--no-report")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list((out / "results").glob("part-*.parquet"))) < 3:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    parts_before = len(list((out / "results").glob("part-*.parquet")))
    assert 3 <= parts_before < N // 2, "the run was not killed midway"
    assert (out / ".lock").exists()  # left by the killed process; the next run takes it over
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "from an earlier run" in done.stdout
    rows = _rows(out)
    keys = [(r["image"], r["target"], r["method"], r["layer"]) for r in rows]
    assert len(keys) == len(set(keys)) == N * 2
    assert {r["image"] for r in rows} == {f"demo_{i:05d}.png" for i in range(N)}


def test_background_run_stops_resumes_and_owns_its_folder(model, data, tmp_path):
    ds = audit.load_dataset(data["images"], model.class_names, labels=data["labels"], boxes=data["boxes"])
    settings = audit.Settings(methods=("gradcam",), layers=(LAYER,), chunk_size=4, batch_size=2)
    out = audit.new_output_dir(tmp_path, "demo")
    assert audit.new_output_dir(tmp_path, "demo") != out  # two runs never get the same folder
    seen = []
    run = audit.start(model, ds, out, settings, report=False, on_progress=lambda p: seen.append(p))
    while not seen or seen[-1].images_done < 8:
        assert run.running or run.error is None
        time.sleep(0.01)
    with pytest.raises(audit.RunFolderError, match="another audit is running"):
        audit.run_audit(model, ds, out, settings)
    partial = audit.read_rows(out).num_rows  # rows appear while the run goes on
    run.stop()
    assert run.wait(60) and run.error is None
    assert run.progress.state == "stopped" and partial <= audit.read_rows(out).num_rows < N
    again = audit.run_audit(model, ds, out, settings, report=False)
    assert again.resumed and again.progress.state == "done" and again.progress.images_resumed > 0
    keys = [(r["image"], r["layer"]) for r in _rows(out)]
    assert len(keys) == len(set(keys)) == N
    other = audit.Settings(methods=("gradcam",), layers=("features.denseblock3",), chunk_size=4)
    with pytest.raises(audit.RunFolderError, match="different audit"):
        audit.run_audit(model, ds, out, other)
    watched = audit.progress_of(out)  # what a second session sees, from the folder alone
    assert watched.state == "done" and watched.images_done == watched.images_total == N
    assert audit.summary_now(out)["rows"] == N


def test_one_folder_layout_is_discovered(model, data):
    root = data["images"].parent
    parts = audit.discover(root)
    assert parts == {"data": data["images"], "labels": data["labels"], "boxes": data["boxes"], "masks": data["masks"]}
    ds = audit.load_folder(root, model.class_names, limit=5)
    assert len(ds.items) == 5 and ds.has_labels and not ds.problems


# --- safety ------------------------------------------------------------------------------------------

def test_paths_outside_the_data_roots_are_refused(tmp_path):
    root, demo_root = tmp_path / "data", tmp_path / "demo"
    (root / "set1").mkdir(parents=True)
    demo_root.mkdir()
    (tmp_path / "secret").mkdir()
    (root / "link").symlink_to(tmp_path / "secret")
    assert audit.resolve_under([root, demo_root], "set1") == (root / "set1").resolve()
    assert audit.resolve_under([root, demo_root], str(demo_root)) == demo_root.resolve()
    for bad in ("../secret", str(tmp_path / "secret"), "/etc", "set1/../../secret", "link", "", "a\x00b"):
        with pytest.raises(audit.UnsafePathError):
            audit.resolve_under([root, demo_root], bad)


def test_zips_with_escaping_names_or_huge_sizes_are_refused_before_extraction(tmp_path):
    def make(name: str, members: dict[str, bytes]) -> Path:
        path = tmp_path / name
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for member, content in members.items():
                zf.writestr(member, content)
        return path

    good = make("good.zip", {"images/a.png": b"x", "labels.csv": b"image,label\n"})
    assert sorted(p.name for p in audit.extract_zip(good, tmp_path / "good")) == ["a.png", "labels.csv"]
    for name, member in (("slip.zip", "../evil.txt"), ("deep.zip", "images/../../evil.txt"),
                         ("abs.zip", "/tmp/evil.txt"), ("win.zip", "C:/evil.txt")):
        zpath = make(name, {"ok.txt": b"fine", member: b"bad"})
        with pytest.raises(audit.ZipRefused, match="outside|absolute"):
            audit.extract_zip(zpath, tmp_path / name.replace(".zip", ""))
        assert not (tmp_path / name.replace(".zip", "")).exists() and not (tmp_path / "evil.txt").exists()

    # A 10 GB entry, declared in the zip's directory, without writing 10 GB: the central
    # directory is written from the member list, whose size we set before closing.
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("huge.bin", b"\0" * 1024)
        zf.filelist[0].file_size = 10 * 1024 ** 3
    assert zipfile.ZipFile(bomb).infolist()[0].file_size == 10 * 1024 ** 3
    with pytest.raises(audit.ZipRefused, match="10.0 GB"):
        audit.extract_zip(bomb, tmp_path / "bomb")
    assert not (tmp_path / "bomb").exists()
    many = make("many.zip", {f"f{i}.txt": b"" for i in range(30)})
    with pytest.raises(audit.ZipRefused, match="30 files"):
        audit.extract_zip(many, tmp_path / "many", max_files=20)
    # A header that understates the size: the bytes are counted, and zipfile's own check trips.
    liar = tmp_path / "liar.zip"
    with zipfile.ZipFile(liar, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.bin", b"\0" * (2 << 20))
        zf.filelist[0].file_size = 10
    with pytest.raises(audit.ZipRefused):
        audit.extract_zip(liar, tmp_path / "liar", max_bytes=1 << 20)
    assert not (tmp_path / "liar").exists()


# --- the command line --------------------------------------------------------------------------------

def _main(args: list[str], capsys) -> tuple[int, str, str]:
    """The command in this process (fast); the resume test above runs it as a real subprocess."""
    from densenet.__main__ import main

    rc = main(["audit", *args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.mark.parametrize("extra, message", [
    (["--data", "/no/such/folder"], "no such folder"),
    (["--methods", "nope"], "unknown method"),
    (["--layers", "features.nope"], "unknown layer"),
    (["--threshold", "2"], "--threshold"),
    (["--labels", "/no/such.csv"], "no such file"),
    (["--model", "/no/model.safetensors"], "no such file"),
    (["--batch-size", "0"], "--batch-size"),
])
def test_cli_errors_are_one_line(data, tmp_path, capsys, extra, message):
    args = ["--model", "demo", "--data", str(data["images"]), "--out", str(tmp_path / "o"), "--quiet", *extra]
    rc, _, err = _main(args, capsys)
    assert rc == 2 and "Traceback" not in err
    assert err.strip().startswith("error:") and len(err.strip().splitlines()) == 1 and message in err


def test_cli_without_any_auditable_image_exits_non_zero(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "bad.png").write_bytes(b"not an image")
    rc, out, err = _main(["--model", "demo", "--data", str(tmp_path / "imgs"), "--out", str(tmp_path / "o"),
                          "--quiet"], capsys)
    assert rc == 1 and "Traceback" not in err
    assert "0 rows" in out and "bad.png" in (tmp_path / "o" / "skipped.csv").read_text()


def test_demo_dataset_command(tmp_path, capsys):
    from densenet.demo.__main__ import main

    assert main(["dataset", "--out", str(tmp_path / "d"), "--n", "6"]) == 0
    assert len(list((tmp_path / "d" / "images").glob("*.png"))) == 6
    header = (tmp_path / "d" / "BBox_List_2017.csv").read_text().splitlines()[0]
    assert header == "Image Index,Finding Label,Bbox [x,y,w,h]"
    assert len((tmp_path / "d" / "labels.csv").read_text().splitlines()) == 7


def test_gallery_and_report_files(masked_run):
    cases = audit.gallery(masked_run.out, per_class=2)
    assert cases and {c["rank"] for c in cases} == {"best", "worst"}
    assert all(c["map"].shape == (128, 128) for c in cases)  # kept at the model's input size by default
    best = [c for c in cases if c["rank"] == "best" and c["target"] == cases[0]["target"]]
    assert best == sorted(best, key=lambda c: -c["iou"])
    html = audit.report_path(masked_run.out).read_text()
    assert html.count("<script type=\"text/javascript\">/**") <= 1  # plotly inlined once
    assert "<script src=" not in html and "data:image/png;base64," in html
    assert audit.read_summary(masked_run.out)["rows"] == N


def test_the_local_engine_never_imports_ray(data, tmp_path):
    code = ("import sys, torch; torch.set_num_threads(1)\n"
            "from densenet import audit, demo\n"
            "m = demo.load()\n"
            f"ds = audit.load_folder({str(data['images'].parent)!r}, m.class_names, limit=2)\n"
            f"audit.run_audit(m, ds, {str(tmp_path / 'o')!r}, audit.Settings(layers=('features.denseblock2',)))\n"
            "assert 'ray' not in sys.modules, 'ray was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
