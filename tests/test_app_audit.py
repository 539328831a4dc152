"""The Audit page: its figures and glue as plain functions, then the page itself through AppTest.

The page test runs a real audit of the bundled demo model on 20 images of the demo set (written
into a temporary cache), paused at its first step so that a second session can watch it, stopped,
resumed and finished; then the scorecard, heat map and gallery are read, and a case opens on the
Attention page. Paths outside the data root and a zip with ``../`` are refused with a message.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from tests.apptest import ok, widget

from dashboard import audit_figures as af
from dashboard import audits, navigation
from dashboard.gate import INTERACTIVE, LONG, ComputeGate
from densenet import audit, demo, explain
from densenet.synthetic import write_dataset

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")
TIMEOUT = 300  # first runs import torch and plotly and build the demo set; two cores are shared
FIRST_CAM = explain.methods(kind=explain.Kind.GRADIENT_CAM)[0].name
SECOND_CAM = explain.methods(kind=explain.Kind.GRADIENT_CAM)[1].name
OWNER = "a" * 32

pytestmark = pytest.mark.timeout(600)


# --- figures and tables ----------------------------------------------------------------------------

def _ci(mean, low=None, high=None):
    return {"mean": mean, "low": low, "high": high}


def _scores(rows, truth, hit, iou):
    empty = _ci(None)
    return {"rows": rows, "with_truth": truth, "hit_rate": hit, "energy_in": _ci(0.1, 0.05, 0.15), "iou": iou,
            "dice": _ci(0.3, 0.2, 0.4), "deletion_auc": empty, "insertion_auc": empty}


def make_summary() -> dict:
    """Two methods x two layers, one pair missing; two classes, one without ground truth."""
    entries = []
    for method, layer, hit, iou in ((FIRST_CAM, "features.denseblock1", 0.5, 0.2),
                                    (FIRST_CAM, "features.denseblock2", 0.75, 0.4),
                                    (SECOND_CAM, "features.denseblock2", 0.25, None)):
        overall = _scores(10, 8, _ci(hit, hit - 0.1, hit + 0.1), _ci(iou, iou and iou - 0.05, iou and iou + 0.05))
        entries.append({"method": method, "layer": layer, "overall": overall,
                        "per_class": {"nodule": overall, "none": _scores(2, 0, _ci(None), _ci(None))}})
    return {"rows": 30, "images": 10, "images_total": 10, "skipped": 0, "by_method_layer": entries,
            "classification": {"images": 10, "metric": "accuracy", "accuracy": _ci(0.9, 0.7, 1.0),
                               "per_class": {"nodule": {"images": 8, "accuracy": _ci(1.0, 1.0, 1.0)}}}}


def test_heatmap_is_method_by_layer_with_blanks_where_nothing_was_audited():
    fig = af.heatmap(make_summary())
    hit, iou = fig.data
    label = explain.method(FIRST_CAM).label
    assert list(hit.y) == [label, explain.method(SECOND_CAM).label]
    assert list(hit.x) == ["denseblock1", "denseblock2"]
    assert [list(r) for r in hit.z] == [[0.5, 0.75], [None, 0.25]]
    assert [list(r) for r in iou.z] == [[0.2, 0.4], [None, None]]
    assert hit.zmin == 0 and hit.zmax == 1 and iou.zmin == 0 and iou.zmax == 1
    assert hit.text[0][1] == "75%" and iou.text[0][1] == "0.40" and iou.text[1][1] == ""
    assert "65.0–85.0%" in hit.hovertext[0][1] and "8 rows with truth" in hit.hovertext[0][1]
    assert [a.text for a in fig.layout.annotations] == ["hit rate (pointing game)", "mean IoU"]


def test_scorecard_tables_and_lines():
    summary = make_summary()
    card = af.scorecard(summary)
    assert list(card.columns) == ["method", "layer", "rows with truth", "hit rate", "energy inside", "IoU", "Dice"]
    assert card.iloc[1].tolist()[1:4] == ["denseblock2", 8, "75.0% (65.0–85.0%)"]
    assert card.iloc[0]["IoU"] == "0.200 (0.150–0.250)" and card.iloc[2]["IoU"] == "–"
    per = af.per_class(summary, FIRST_CAM, "features.denseblock2")
    assert per["class"].tolist() == ["nodule", "none"]
    assert per.iloc[0]["accuracy"] == "100.0% (100.0–100.0%)" and per.iloc[1]["hit rate"] == "–"
    assert "hit by box" not in per.columns  # no image has both a mask and boxes
    entry = summary["by_method_layer"][1]["per_class"]["nodule"]
    entry.update(hit_rate_mask=_ci(0.0, 0.0, 0.0), hit_rate_box=_ci(0.9, 0.8, 1.0))  # a ring: in the box, not the mask
    per = af.per_class(summary, FIRST_CAM, "features.denseblock2")
    assert per.columns.tolist()[3:5] == ["hit rate", "hit by box"] and per.iloc[0]["hit by box"] == "90.0% (80.0–100.0%)"
    with pytest.raises(ValueError, match="no rows for method"):
        af.per_class(summary, SECOND_CAM, "features.denseblock1")
    assert af.classification_line(summary) == "Classification accuracy 90.0% (70.0–100.0%) over 10 labelled images."
    assert "no accuracy" in af.classification_line({"classification": {"images": 0}})
    auroc = {"classification": {"images": 5, "metric": "auroc", "mean_auroc": 0.8125}}
    assert af.classification_line(auroc).startswith("Mean AUROC 0.812")
    assert af.interval(_ci(0.5)) == "0.500" and af.interval(None) == "–"


def test_progress_text_and_latest_rows():
    p = audit.Progress(state="running", images_total=200, images_done=50, rows=150, skipped=2, images_per_s=2.5,
                       eta_s=60.0)
    assert af.progress_text(p) == ("Auditing: 50 of 200 images · 2.5 images/s · about 1 min 0 s left · 150 rows · "
                                   "2 skipped")
    done = audit.Progress(state="done", images_total=4, images_done=4, images_resumed=2, rows=4)
    assert af.progress_text(done) == "Done: 4 of 4 images · 2 from an earlier run · 4 rows"
    assert af.duration(5) == "5 s" and af.duration(3725) == "1 h 02 min"
    table = pa.table({"image": ["a.png", "b.png", "c.png"], "target": ["nodule"] * 3, "method": [FIRST_CAM] * 3,
                      "layer": ["features.denseblock2", explain.INPUT, "features.denseblock2"],
                      "predicted": ["nodule"] * 3, "score": [0.9, 0.8, 0.7], "hit": [True, None, False],
                      "iou": [0.5, float("nan"), 0.1], "dice": [0.6, float("nan"), 0.2], "extra": [1, 2, 3]})
    frame = af.latest_rows(table, 2)
    assert frame["image"].tolist() == ["c.png", "b.png"]
    assert frame["layer"].tolist() == ["denseblock2", "input"]
    assert frame["method"].tolist() == [explain.method(FIRST_CAM).label] * 2
    assert list(frame.columns) == ["image", "target", "method", "layer", "predicted", "p(target)", "hit", "IoU", "Dice"]
    with pytest.raises(ValueError):
        af.latest_rows(table, 0)


def test_case_picture_outlines_the_truth_beside_the_map():
    display = np.full((16, 16), 0.5, np.float32)
    truth = np.zeros((16, 16), bool)
    truth[4:10, 4:10] = True
    edge = af.outline(truth)
    assert edge.sum() == 20 and not edge[5:9, 5:9].any()
    cam = np.zeros((4, 4), np.float32)
    cam[1, 1] = 1.0
    pic = af.case_picture(display, truth, cam, gap=4)
    assert pic.shape == (16, 36, 3) and pic.dtype == np.uint8
    left, right = pic[:, :16], pic[:, 20:]
    assert (left[edge] == af.TRUTH_COLOUR).all() and (left[~edge] == 128).all()
    assert (right[edge] == af.OUTLINE_ON_MAP).all()
    assert (pic[:, 16:20] == 255).all()
    assert not np.array_equal(right[6, 6], right[14, 14])  # the map's peak is coloured differently
    plain = af.case_picture(np.stack([display] * 3, axis=2), None, cam)
    assert (plain[:, :16] == 128).all()
    with pytest.raises(ValueError, match="truth must be"):
        af.case_picture(display, truth[:8], cam)
    with pytest.raises(ValueError, match="square"):
        af.case_picture(display[:8], None, cam)


# --- data roots and uploads ------------------------------------------------------------------------

def test_data_roots_come_from_the_environment_and_paths_stay_inside(tmp_path, monkeypatch):
    inside, other, missing = tmp_path / "root", tmp_path / "other", tmp_path / "missing"
    (inside / "set" / "images").mkdir(parents=True)
    (inside / "file.csv").write_text("x")
    other.mkdir()
    (inside / "escape").symlink_to(tmp_path)
    monkeypatch.setenv(audits.DATA_ROOT_ENV, os.pathsep.join([str(inside), str(missing), str(other)]))
    roots = audits.data_roots()
    assert roots.roots == (inside.resolve(), other.resolve()) and roots.missing == (missing.resolve(),)
    assert roots.from_env
    assert audits.resolve_folder(roots, "set") == (inside / "set").resolve()
    assert audits.resolve_folder(roots, str(other)) == other.resolve()
    for typed in ("../other/../..", "/etc", "escape", "set/../../other/../.."):
        with pytest.raises(audit.UnsafePathError, match="outside the data folders"):
            audits.resolve_folder(roots, typed)
    with pytest.raises(audit.UnsafePathError, match="no path"):
        audits.resolve_folder(roots, "  ")
    with pytest.raises(audit.DatasetError, match="does not exist"):
        audits.resolve_folder(roots, "nope")
    with pytest.raises(audit.DatasetError, match="is a file"):
        audits.resolve_folder(roots, "file.csv")
    demo_like = tmp_path / "demo"
    demo_like.mkdir()
    assert audits.data_roots(demo_like).roots[-1] == demo_like.resolve()

    monkeypatch.setenv(audits.DATA_ROOT_ENV, str(missing))
    none = audits.data_roots()
    assert none.roots == () and none.missing == (missing.resolve(),)
    with pytest.raises(audit.UnsafePathError, match=audits.DATA_ROOT_ENV):
        audits.resolve_folder(none, "set")
    assert not missing.exists()  # reported, never created
    monkeypatch.delenv(audits.DATA_ROOT_ENV)
    default = audits.data_roots()
    assert (ROOT / "data").resolve() in default.roots + default.missing and not default.from_env


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_uploaded_zips_are_checked_before_anything_is_written(tmp_path):
    base = tmp_path / "uploads"
    refused = {
        "outside its folder": _zip({"set/a.png": b"x", "../evil.txt": b"x"}),
        "absolute path": _zip({"/etc/evil": b"x"}),
        "not a readable zip": b"PK\x03\x04 not really",
    }
    for message, data in refused.items():
        with pytest.raises(audit.ZipRefused, match=message):
            audits.unpack_upload(data, OWNER, base=base)
    with pytest.raises(audit.ZipRefused, match="at most"):
        audits.unpack_upload(_zip({"a.bin": b"0" * 2000}), OWNER, base=base, max_bytes=1000)
    with pytest.raises(audit.ZipRefused, match="at most 2 are allowed"):
        audits.unpack_upload(_zip({f"{k}.png": b"x" for k in range(3)}), OWNER, base=base, max_files=2)
    assert not base.exists() or not any(base.rglob("*"))
    with pytest.raises(ValueError, match="owner"):
        audits.unpack_upload(_zip({"a": b"x"}), "../x", base=base)

    source = write_dataset(tmp_path / "src", 4)["images"].parent
    files = {f"mine/{p.relative_to(source).as_posix()}": p.read_bytes() for p in source.rglob("*") if p.is_file()}
    data = _zip(files)
    folder = audits.unpack_upload(data, OWNER, base=base)
    assert folder.parent == base / OWNER and (folder / "mine" / "labels.csv").is_file()
    assert audits.unpack_upload(data, OWNER, base=base) == folder  # unpacked once
    assert [p.name for p in (base / OWNER).iterdir()] == [folder.name]
    ds = audit.load_folder(folder, demo.CLASSES)
    assert len(ds.items) == 4 and ds.has_labels


# --- the gate -----------------------------------------------------------------------------------

def test_gate_turns_hold_the_slot_yield_between_batches_and_release_at_the_end():
    gate = ComputeGate(1, grace=0.0)
    turns = audits.GateTurns(gate, poll=0.02)
    turns(audit.Progress(state="running", images_total=2))
    assert gate.holders() == [turns.ticket] and turns.held
    served = threading.Event()

    def interactive():
        t = gate.ticket("page", INTERACTIVE)
        gate.acquire(t)
        served.set()
        gate.release(t)

    worker = threading.Thread(target=interactive)
    worker.start()
    while not gate.interactive_waiting():
        time.sleep(0.01)
    turns(audit.Progress(state="running", images_total=2, images_done=1))  # between batches: the page goes first
    worker.join(5)
    assert served.is_set() and turns.ticket.yields == 1 and gate.holders() == [turns.ticket]
    turns(audit.Progress(state="done", images_total=2, images_done=2))
    assert gate.holders() == [] and not turns.held


def test_a_stop_while_waiting_for_the_first_slot_cancels_and_leaves_the_queue():
    gate = ComputeGate(1, grace=0.0)
    other = gate.ticket("someone else", LONG)
    gate.acquire(other)
    turns = audits.GateTurns(gate, poll=0.02)
    threading.Timer(0.1, turns.stop).start()
    with pytest.raises(explain.Cancelled):
        turns(audit.Progress(state="running"))
    gate.release(other)
    fresh = gate.ticket("next", LONG)
    assert gate.acquire(fresh, timeout=1.0)  # the cancelled ticket is not in the queue any more
    gate.release(fresh)


# --- the registry of runs ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The demo model and 8 generated images."""
    folder = write_dataset(tmp_path_factory.mktemp("small"), 8)
    model = demo.load()
    return SimpleNamespace(model=model, dataset=audit.load_folder(folder["images"].parent, model.class_names))


SETTINGS = audit.Settings(methods=(FIRST_CAM,), layers=("features.denseblock2",), batch_size=2, chunk_size=4)


def test_a_run_registers_finishes_and_gives_its_slot_back(small, tmp_path):
    gate = ComputeGate(1, grace=0.0)
    run = audits.start(small.model, small.dataset, SETTINGS, owner=OWNER, model_key="demo-key", label="demo on small",
                       model_source="demo", gate=gate, base=tmp_path, name="small")
    assert run.job.wait(120) and run.progress.state == "done", run.progress
    assert gate.holders() == [] and audits.lookup(run.out) is run
    assert run.out.parent == tmp_path and run.out.name.startswith("small-")
    assert audits.status(run.out).progress.rows == 8 and not audits.status(run.out).running
    assert run.out in audits.known(tmp_path) and "demo on small" in audits.describe(run.out)
    assert not audits.stop(run.out, OWNER)  # not running any more
    second = audits.start(small.model, small.dataset, SETTINGS, owner=OWNER, model_key="demo-key", label="again",
                          model_source="demo", gate=gate, base=tmp_path, name="small")
    assert second.out != run.out  # two runs never share a folder
    assert second.job.wait(120) and gate.holders() == []
    frame = af.latest_rows(audit.read_rows(run.out), 3)
    assert len(frame) == 3
    assert audit.read_rows(run.out).num_rows == 8 and len(audits.parquet_bytes(run.out)) > 100
    assert audits.skipped_csv(run.out).decode().startswith("image,reason")


def _running_behind_a_blocker(small, tmp_path):
    """A run started while another session's long job holds the only slot: running, waiting for its first turn."""
    gate = ComputeGate(1, grace=0.0)
    blocker = gate.ticket("another session's occlusion", LONG)
    gate.acquire(blocker)
    run = audits.start(small.model, small.dataset, SETTINGS, owner=OWNER, model_key="k", label="l",
                       model_source="demo", gate=gate, base=tmp_path)
    deadline = time.monotonic() + 30
    while audits.status(run.out) is None or run.progress.state != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return gate, blocker, run


def test_stop_before_the_first_slot_then_resume(small, tmp_path):
    gate, blocker, run = _running_behind_a_blocker(small, tmp_path)
    assert run.running and audits.running(OWNER) == [run]
    assert not audits.stop(run.out, "b" * 32)  # only the starting session may stop it
    assert audits.stop(run.out, OWNER)
    assert run.job.wait(30) and run.progress.state == "stopped"
    assert gate.holders() == [blocker]
    with pytest.raises(ValueError, match="only the session"):
        audits.resume(run.out, "b" * 32, gate=gate)
    gate.release(blocker)
    again = audits.resume(run.out, OWNER, gate=gate)
    assert again.out == run.out and audits.lookup(run.out) is again
    assert again.job.wait(120) and again.progress.state == "done"
    rows = audit.read_rows(run.out, ["image"]).column("image").to_pylist()
    assert sorted(rows) == sorted(it.image for it in small.dataset.items)  # all, once each
    assert gate.holders() == []


def test_a_watcher_keeps_looking_while_the_owner_can_still_resume(small, tmp_path):
    """Issue 21, defect 4: a page showing a stopped run of this process keeps looking (its owner may resume it from
    another browser), a finished one does not, and the page is redrawn whenever the phase changes."""
    gate, blocker, run = _running_behind_a_blocker(small, tmp_path)
    running = audits.status(run.out)
    assert running.phase == "running" and running.watch_every() == audits.runs.RUNNING_POLL_S
    audits.stop(run.out, OWNER)
    assert run.job.wait(30)
    stopped = audits.status(run.out)
    assert stopped.phase == "stopped" and stopped.watch_every() == audits.runs.RESUMABLE_POLL_S  # not None: may resume
    gate.release(blocker)
    again = audits.resume(run.out, OWNER, gate=gate)
    assert again.job.wait(120)
    done = audits.status(run.out)
    assert done.phase == "done" and done.watch_every() is None
    from_disk = audits.Status(stopped.progress, live=False, owner=None)  # a folder no run of this process holds
    assert from_disk.watch_every() is None


def test_a_failing_run_gives_its_slot_back(small, tmp_path, monkeypatch):
    from densenet.audit import engine_local

    def boom(auditor, chunks, on_chunk, on_images):
        on_images(1)  # the first batch: the slot is held now
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(engine_local, "run", boom)
    gate = ComputeGate(1, grace=0.0)
    run = audits.start(small.model, small.dataset, SETTINGS, owner=OWNER, model_key="k", label="l",
                       model_source="demo", gate=gate, base=tmp_path)
    assert run.job.wait(60)
    assert run.progress.state == "failed" and "the disk is full" in run.progress.message
    deadline = time.monotonic() + 5
    while gate.holders() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert gate.holders() == []


def test_a_folder_alone_tells_its_model_dataset_and_gallery(small, tmp_path):
    import densenet

    out = tmp_path / "by-hand"
    audit.run_audit(small.model, small.dataset, out, SETTINGS)  # not in the registry: read from disk only
    assert audits.lookup(out) is None
    assert audits.status(out).progress.state == "done" and not audits.status(out).live
    assert audits.same_model(out, "whatever", small.model)
    other = densenet.DenseNet(small.model.config, preprocessing=small.model.preprocessing)
    assert not audits.same_model(out, "whatever", other)
    listed = audits.dataset_of(out, list(small.model.class_names))
    assert [it.image for it in listed.items] == [it.image for it in small.dataset.items]
    cases = audit.gallery(out, per_class=1)
    pic = audits.case_picture(cases[0], listed, small.model)
    size = small.model.preprocessing.size
    assert pic.shape == (size, 2 * size + 4, 3)
    assert audits.case_picture({**cases[0], "image": "gone.png"}, listed, small.model) is None
    assert audits.status(tmp_path / "empty") is None
    line = af.dataset_line(small.dataset)
    assert line.startswith("8 images · labels from labels.csv")


# --- the page --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A temporary cache (the demo set, audits, uploads) and data root for the page tests."""
    cache, data = tmp_path_factory.mktemp("cache"), tmp_path_factory.mktemp("data")
    (data / "mine").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(audits.CACHE_ENV, str(cache))
        mp.setenv(audits.DATA_ROOT_ENV, str(data))
        yield SimpleNamespace(cache=cache, data=data)



def audit_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page("views/audit.py").run()
    return ok(at)


def classes_in_demo() -> list[str]:
    return list(demo.load().class_names)


def progress_text(at: AppTest) -> str:
    return " ".join(p.proto.text for p in at.main.get("progress"))


def rerun_until(at: AppTest, word: str, seconds: float = 240) -> AppTest:
    """Re-run the page until its progress says ``word`` (the fragment does not tick under AppTest)."""
    deadline = time.monotonic() + seconds
    while word not in progress_text(at):
        assert time.monotonic() < deadline, f"still {progress_text(at)!r}"
        time.sleep(0.5)
        at.run()
    return at


def test_the_page_runs_an_audit_that_others_watch_and_shows_the_scorecard(env, monkeypatch):
    go = threading.Event()
    original = audits.GateTurns.__call__

    def paused(self, p):  # the first step waits for the test (blocking in the callback pauses the run)
        while not go.is_set() and not self.stopping.is_set():
            time.sleep(0.02)
        return original(self, p)

    monkeypatch.setattr(audits.GateTurns, "__call__", paused)
    at = audit_page()
    assert "200 images · labels from labels.csv" in " ".join(c.value for c in at.caption)
    widget(at, "number_input", "audit.limit").set_value(20).run()
    widget(at, "multiselect", "audit.layers").set_value(["features.denseblock2", "features.denseblock3"]).run()
    assert widget(at, "multiselect", "audit.methods").value == [FIRST_CAM]
    ok(at.button(key="audit_start").click().run())
    rerun_until(at, "Auditing: 0 of 20 images", 60)  # paused at its first step
    assert at.button(key="audit_stop") and at.button(key="audit_start").disabled

    watcher = audit_page()  # a second session finds the run in the list and watches it
    assert "Auditing: 0 of 20 images" in progress_text(watcher)
    assert not [b for b in watcher.button if b.key == "audit_stop"]
    assert any("another session" in c.value for c in watcher.caption)

    ok(at.button(key="audit_stop").click().run())
    rerun_until(at, "Stopped")
    go.set()
    ok(at.button(key="audit_resume").click().run())
    rerun_until(ok(at), "Done")
    ok(at)
    assert "Done: 20 of 20 images" in progress_text(at)
    assert any(m.value.startswith("Classification accuracy") for m in at.markdown)
    card = next(d.value for d in at.dataframe if "method" in d.value.columns and "hit rate" in d.value.columns)
    per = next(d.value for d in at.dataframe if "class" in d.value.columns)
    assert per["class"].tolist() == classes_in_demo()
    assert card["layer"].tolist() == ["denseblock2", "denseblock3"]
    assert all(v.endswith(")") for v in card["hit rate"])
    heat = [c for c in at.get("plotly_chart") if c.key == "audit_heatmap"]
    z = json.loads(heat[0].proto.spec)["data"][0]["z"]
    assert np.asarray(z, float).shape == (1, 2) and np.all((np.asarray(z, float) >= 0) & (np.asarray(z, float) <= 1))
    assert len(at.main.get("image")) >= 2  # gallery pictures
    assert {b.key for b in at.get("download_button")} >= {"audit_dl_report", "audit_dl_parquet", "audit_dl_skipped"}

    ok(watcher.run())
    assert "Done: 20 of 20 images" in progress_text(watcher)  # the watcher sees the end too, with the downloads
    assert {b.key for b in watcher.get("download_button")} >= {"audit_dl_report", "audit_dl_parquet", "audit_dl_skipped"}

    opener = next(b for b in at.button if (b.key or "").startswith("open."))
    case_image = opener.key.split(".")[1] + ".png"
    pair = widget(at, "selectbox", "audit.pair").value
    ok(opener.click().run())
    assert not at.exception
    assert widget(at, "selectbox", "method").value == pair[0]
    assert widget(at, "selectbox", "cam_layer").value == pair[1]
    assert navigation.image_override(at.session_state).name == case_image
    # the sidebar explains the case's image, with the case's target, until the user goes back
    assert at.sidebar.get("image")[0].proto.imgs[0].caption.startswith(case_image)
    assert f"From the audit: {case_image}" in [c.value for c in at.sidebar.caption]
    assert widget(at, "selectbox", "sample").disabled
    at.button(key="clear_override").click().run()
    assert not widget(ok(at), "selectbox", "sample").disabled


def test_paths_outside_the_data_root_are_refused_on_the_page(env):
    at = audit_page()
    widget(at, "radio", "audit.source").set_value("folder").run()
    ok(at)
    for typed in ("../", "/etc", "mine/../../"):
        widget(at, "text_input", "audit.path").set_value(typed).run()
        assert not at.exception
        assert any("outside the data folders" in e.value for e in at.error), [e.value for e in at.error]
        assert at.button(key="audit_start").disabled
    widget(at, "text_input", "audit.path").set_value("mine").run()
    assert any("no images" in e.value for e in at.error)  # inside, but empty: said plainly


def test_a_zip_with_parent_paths_is_refused_on_the_page(env):
    at = audit_page()
    widget(at, "radio", "audit.source").set_value("zip").run()
    at.file_uploader(key="audit_zip").set_value(("evil.zip", _zip({"images/a.png": b"x", "../../evil.txt": b"x"}),
                                                  "application/zip")).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any("evil.zip was refused" in e and "outside its folder" in e for e in errors), errors
    uploads = env.cache / "uploads"
    assert not uploads.exists() or not any(p.is_file() for p in uploads.rglob("*"))
    assert not (env.cache.parent / "evil.txt").exists()


def test_published_files_are_recognised_and_counted_before_the_run(env):
    """CheXlocalize's sample as published (CheXpert's valid.csv with its CheXpert-v1.0/ paths, the
    radiologists' RLE JSON) in a folder holding valid/: the page says what it read before any run."""
    import shutil

    folder = env.data / "chexlocalize"
    if not folder.exists():
        shutil.copytree(ROOT / "tests" / "data" / "chexlocalize", folder)
    at = audit_page()
    widget(at, "radio", "audit.source").set_value("folder").run()
    widget(at, "text_input", "audit.path").set_value("chexlocalize").run()
    ok(at)
    captions = " ".join(c.value for c in at.caption)
    assert "2 images · labels from valid.csv" in captions
    assert "Labels `valid.csv` read as **columns**" in captions and "(policy: ignore)" in captions
    assert "Masks `gt_segmentations_val.json` read as **coco-rle**" in captions
    # the demo model's classes are not CheXpert's: the synonyms that meet are shown, the rest named and counted
    assert "Airspace Opacity → opacity (synonym)" in captions
    assert "Matched none of the model's classes" in captions
    assert "Cardiomegaly (2)" in captions  # one positive label and one radiologist's mask
    widget(at, "radio", "audit.uncertain").set_value("positive").run()
    assert "(policy: positive)" in " ".join(c.value for c in ok(at).caption)
