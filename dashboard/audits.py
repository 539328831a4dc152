"""The dashboard's dataset audits: where data may come from, uploaded zips, the runs of this server
process and their turns on the compute gate. No page layout here (that is ``views/audit.py``).

* **Data roots.** A typed path reaches only folders under a data root: ``data/`` beside the app,
  or the folders in ``$DENSENET_DATA_ROOT`` (``os.pathsep``-separated), plus the bundled demo set.
  A root that does not exist is reported, never created.
* **Uploads.** A zip is checked (:func:`densenet.audit.check_zip`: size, file count, names that
  escape, links) before a byte is written, then unpacked into this session's folder of the cache.
* **Runs.** An audit runs in its own thread (:func:`densenet.audit.start`). :data:`_RUNS` holds
  every run this process started, by output folder, so a session that leaves and comes back,
  or a second session, finds it again; a folder without a live run is read from disk alone.
* **The gate.** A run's progress callback (:class:`GateTurns`) holds a LONG ticket of the
  compute gate while it works and offers its slot between batches, so other sessions' pages
  go first; the ticket is released when the run ends, fails or is stopped.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

import densenet
from densenet import audit
from densenet.explain import INPUT, Cancelled

from .gate import LONG, ComputeGate

ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT_ENV = "DENSENET_DATA_ROOT"
CACHE_ENV = "DENSENET_CACHE"
#: Images in the bundled demo set the page offers (generated once per machine, about 10 s).
DEMO_IMAGES = 200
#: What an uploaded zip may hold (the library's limits).
MAX_ZIP_BYTES = audit.safety.MAX_ZIP_BYTES
MAX_ZIP_FILES = audit.safety.MAX_ZIP_FILES
#: Ends of a run: the callback releases its ticket on these.
FINAL_STATES = ("done", "stopped", "failed")


# --- folders ---------------------------------------------------------------------------------------

def cache_dir() -> Path:
    """``$DENSENET_CACHE``, else ``~/.cache/densenet-explorer`` (read at each call, so tests can redirect it)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "densenet-explorer")


def audits_dir() -> Path:
    """Where the app's audits write their output folders (one new folder per run)."""
    return cache_dir() / "audits"


def uploads_dir() -> Path:
    """Where uploaded zips are unpacked, one folder per session (never a data root for typed paths)."""
    return cache_dir() / "uploads"


@dataclass(frozen=True)
class DataRoots:
    """The folders a typed path may reach.

    Attributes:
        roots: existing folders, in the order configured (a relative path is taken under the first).
        missing: configured folders that do not exist (reported to the user).
        from_env: the roots came from ``$DENSENET_DATA_ROOT``.
    """

    roots: tuple[Path, ...]
    missing: tuple[Path, ...]
    from_env: bool


def data_roots(demo: Path | None = None) -> DataRoots:
    """The configured data roots (``$DENSENET_DATA_ROOT``, else ``data/`` beside the app), plus ``demo``."""
    text = os.environ.get(DATA_ROOT_ENV, "")
    from_env = bool(text.strip())
    configured = [Path(p.strip()).expanduser() for p in text.split(os.pathsep) if p.strip()] if from_env \
        else [ROOT / "data"]
    resolved = list(dict.fromkeys(p.resolve() for p in configured))
    existing = [p for p in resolved if p.is_dir()]
    missing = [p for p in resolved if not p.is_dir()]
    if demo is not None and demo.is_dir() and demo.resolve() not in existing:
        existing.append(demo.resolve())
    return DataRoots(tuple(existing), tuple(missing), from_env)


def no_roots_message(roots: DataRoots) -> str:
    """Why no typed path can be used, and how the server's owner fixes it."""
    where = ", ".join(f"`{p}`" for p in roots.missing) or f"`{ROOT / 'data'}`"
    how = (f"create it, or set `{DATA_ROOT_ENV}`" if not roots.from_env
           else f"create it, or change `{DATA_ROOT_ENV}`")
    return (f"This server has no data folder yet ({where} does not exist): {how} (folders separated by "
            f"`{os.pathsep}`) and restart. Until then use the demo set or upload a zip.")


def resolve_folder(roots: DataRoots, typed: str) -> Path:
    """The dataset folder a visitor typed, if it lies under a data root and exists.

    Raises:
        densenet.audit.UnsafePathError: no roots, an empty path, or one outside every root.
        densenet.audit.DatasetError: the path does not exist or is not a folder.
    """
    if not roots.roots:
        raise audit.UnsafePathError(no_roots_message(roots))
    path = audit.resolve_under(roots.roots, typed)
    if not path.exists():
        raise audit.DatasetError(f"{typed.strip()!r} does not exist under {roots.roots[0]}")
    if not path.is_dir():
        raise audit.DatasetError(f"{typed.strip()!r} is a file: give the folder that holds the images and CSVs")
    return path


# --- uploads ---------------------------------------------------------------------------------------

def unpack_upload(data: bytes, owner: str, *, max_bytes: int = MAX_ZIP_BYTES, max_files: int = MAX_ZIP_FILES,
                  base: Path | None = None) -> Path:
    """Check an uploaded zip, then unpack it into ``owner``'s upload folder; the same zip twice is unpacked once.

    Args:
        data: the zip's bytes.
        owner: the session's token (:func:`new_token`): a folder name of letters and digits.
        max_bytes, max_files: the limits, as for :func:`densenet.audit.check_zip`.
        base: folder of the per-session upload folders (default :func:`uploads_dir`).

    Returns:
        The unpacked folder (pass it to :func:`densenet.audit.load_folder`).

    Raises:
        densenet.audit.ZipRefused: not a zip, too large, too many files, or unsafe names; nothing is written.
        ValueError: a bad ``owner``.
    """
    if not owner.isalnum():
        raise ValueError(f"owner must be letters and digits, got {owner!r}")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as e:
        raise audit.ZipRefused(f"not a readable zip file ({e})") from None
    with zf:
        audit.check_zip(zf, max_bytes=max_bytes, max_files=max_files)  # before anything is written
    folder = (base or uploads_dir()) / owner
    dest = folder / hashlib.sha256(data).hexdigest()[:16]
    if dest.is_dir():
        return dest
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{dest.name}-{uuid.uuid4().hex[:8]}"
    try:
        audit.extract_zip(io.BytesIO(data), tmp, max_bytes=max_bytes, max_files=max_files)
        try:
            os.replace(tmp, dest)
        except OSError:  # the same zip unpacked by an overlapping run of this session: use that one
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def new_token() -> str:
    """A random name for a session (its uploads folder, the runs it may stop)."""
    return uuid.uuid4().hex


# --- the gate --------------------------------------------------------------------------------------

class GateTurns:
    """A run's ``on_progress`` callback: it takes turns on the compute gate for the run's thread.

    The first call waits for a slot (blocking in the callback pauses the run, which is what the
    library promises); each later call is between two batches, where the slot goes to waiting
    interactive work first (:meth:`densenet.gate.Ticket.between_chunks`). A final state releases
    the ticket; :meth:`stop` makes the next call raise :class:`~densenet.explain.Cancelled`,
    also while the run still waits for its first slot.
    """

    def __init__(self, gate: ComputeGate, label: str = "dataset audit", *, poll: float = 0.25) -> None:
        self.gate = gate
        self.ticket = gate.ticket(label, LONG)
        self.poll = poll
        self.stopping = threading.Event()
        self._held = False
        self._lock = threading.Lock()

    @property
    def held(self) -> bool:
        return self._held

    def __call__(self, p: audit.Progress) -> None:
        if p.state in FINAL_STATES:
            self.release()
            return
        if self.stopping.is_set():
            self.release()
            raise Cancelled("stopped")
        if not self._held:
            while not self.gate.acquire(self.ticket, timeout=self.poll):
                if self.stopping.is_set():
                    self.release()
                    raise Cancelled("stopped")
            self._held = True
        else:
            self.ticket.between_chunks(p.fraction)

    def stop(self) -> None:
        self.stopping.set()

    def release(self) -> None:
        """Give the slot back (or leave the queue); safe to call twice and from any thread."""
        with self._lock:
            self.gate.release(self.ticket)
            self._held = False


# --- runs ------------------------------------------------------------------------------------------

@dataclass
class Run:
    """An audit this process started.

    Attributes:
        out: its output folder.
        job: the library's background run.
        dataset, model, settings: what it audits (kept to resume it and to draw its gallery).
        owner: the token of the session that started it (only that one may stop or resume it).
        model_key: the dashboard's key of the model as used (``Context.key``).
        label: the model and dataset in words.
        model_source: how the manifest names the model.
        turns: its callback on the compute gate.
        started: ``time.time()`` at its start.
    """

    out: Path
    job: audit.AuditRun
    dataset: audit.Dataset
    model: densenet.DenseNet
    settings: audit.Settings
    owner: str
    model_key: str
    label: str
    model_source: str
    turns: GateTurns
    started: float

    @property
    def running(self) -> bool:
        return self.job.running

    @property
    def progress(self) -> audit.Progress:
        """The latest progress; a stop asked for before the first batch reads as stopped, not failed."""
        p = self.job.progress
        if p.state == "failed" and isinstance(self.job.error, Cancelled):
            return replace(p, state="stopped", message="")
        if p.state not in FINAL_STATES and not self.job.running:  # ended between two updates
            return replace(p, state="failed" if self.job.error else "done")
        return p


_RUNS: dict[str, Run] = {}
_RUNS_LOCK = threading.Lock()


def _key(out: str | os.PathLike) -> str:
    return str(Path(out).resolve())


def _launch(model: densenet.DenseNet, dataset: audit.Dataset, out: Path, settings: audit.Settings, *,
            owner: str, model_key: str, label: str, model_source: str, gate: ComputeGate) -> Run:
    turns = GateTurns(gate)
    job = audit.start(model, dataset, out, settings, engine="local", model_source=model_source, on_progress=turns)
    run = Run(out, job, dataset, model, settings, owner, model_key, label, model_source, turns, time.time())
    with _RUNS_LOCK:
        _RUNS[_key(out)] = run

    def reap() -> None:  # whatever way the thread ends, its ticket goes back
        job.wait()
        turns.release()

    threading.Thread(target=reap, name=f"audit reaper {out.name}", daemon=True).start()
    return run


def start(model: densenet.DenseNet, dataset: audit.Dataset, settings: audit.Settings, *, owner: str,
          model_key: str, label: str, model_source: str, gate: ComputeGate | None = None,
          base: Path | None = None, name: str = "audit") -> Run:
    """Start an audit in a new output folder (two runs never share one) and register it.

    Args:
        model: the model as the user reads it (shared, read-only).
        dataset: from :func:`densenet.audit.load_folder`.
        settings: what to compute.
        owner: the starting session's token.
        model_key: ``Context.key`` of the model.
        label: the model and dataset in words, for lists.
        model_source: how the model is named in the manifest.
        gate: the compute gate (default: the app's, ``dashboard.runtime.GATE``).
        base: folder of the output folders (default :func:`audits_dir`).
        name: the output folder's name stem.
    """
    if gate is None:
        from .runtime import GATE as gate
    out = audit.new_output_dir(base or audits_dir(), name)
    return _launch(model, dataset, out, settings, owner=owner, model_key=model_key, label=label,
                   model_source=model_source, gate=gate)


def resume(out: str | os.PathLike, owner: str, *, gate: ComputeGate | None = None) -> Run:
    """Start a stopped run of this process again in its folder; the library redoes only unfinished chunks.

    Raises:
        ValueError: no such run here, it is still running, or ``owner`` did not start it.
    """
    run = lookup(out)
    if run is None:
        raise ValueError(f"no audit of this server process writes {out}")
    if run.owner != owner:
        raise ValueError("only the session that started this audit may resume it")
    if run.running:
        raise ValueError("this audit is still running")
    if gate is None:
        from .runtime import GATE as gate
    return _launch(run.model, run.dataset, run.out, run.settings, owner=owner, model_key=run.model_key,
                   label=run.label, model_source=run.model_source, gate=gate)


def stop(out: str | os.PathLike, owner: str) -> bool:
    """Ask ``owner``'s run in ``out`` to stop after its current batch; ``False`` if it is not theirs or not running."""
    run = lookup(out)
    if run is None or run.owner != owner or not run.running:
        return False
    run.turns.stop()
    run.job.stop()
    return True


def lookup(out: str | os.PathLike) -> Run | None:
    with _RUNS_LOCK:
        return _RUNS.get(_key(out))


def running(owner: str | None = None) -> list[Run]:
    """Runs of this process still running (``owner``'s only, when given)."""
    with _RUNS_LOCK:
        runs = list(_RUNS.values())
    return [r for r in runs if r.running and (owner is None or r.owner == owner)]


@dataclass(frozen=True)
class Status:
    """Where the audit in a folder stands, for any session.

    Attributes:
        progress: the run's progress (live for a run of this process, else read from the folder).
        live: a run of this process writes the folder.
        owner: the token of the session that started it (``None`` when not known here).
    """

    progress: audit.Progress
    live: bool
    owner: str | None

    @property
    def running(self) -> bool:
        return self.progress.state not in FINAL_STATES


def status(out: str | os.PathLike) -> Status | None:
    """The audit in ``out``; ``None`` for a folder no run has written a manifest in (and none runs)."""
    run = lookup(out)
    if run is not None:
        return Status(run.progress, True, run.owner)
    try:
        p = audit.progress_of(out)
    except (audit.RunFolderError, OSError, ValueError):
        return None
    if p is None:
        return None
    return Status(p, False, None)


def known(base: Path | None = None) -> list[Path]:
    """Output folders of audits, newest first: this process's runs and the folders under ``base``."""
    base = base or audits_dir()
    folders = {_key(p.parent): p.parent for p in base.glob("*/manifest.json")} if base.is_dir() else {}
    with _RUNS_LOCK:
        for run in _RUNS.values():
            if run.out.parent.resolve() == base.resolve():
                folders.setdefault(_key(run.out), run.out)

    def made(p: Path) -> float:  # the manifest is written once, when the run starts
        try:
            return (p / "manifest.json").stat().st_mtime
        except OSError:
            run = lookup(p)
            return run.started if run is not None else 0.0

    return sorted(folders.values(), key=lambda p: (-made(p), p.name))


def describe(out: Path) -> str:
    """An audit folder in a few words: its name, model and dataset."""
    run = lookup(out)
    if run is not None:
        return f"{out.name} · {run.label}"
    try:
        manifest = audit.read_manifest(out) or {}
    except (audit.RunFolderError, OSError):
        return f"{out.name} · unreadable"
    model = manifest.get("model", {}).get("source", "?")
    data = Path(manifest.get("dataset", {}).get("root", "?")).name
    return f"{out.name} · {model} on {data}"


# --- what a finished audit shows -------------------------------------------------------------------

def dataset_of(out: str | os.PathLike, class_names: list[str]) -> audit.Dataset | None:
    """The audited dataset: the run's own, else listed again from the manifest (``None`` if it is gone)."""
    run = lookup(out)
    if run is not None:
        return run.dataset
    manifest = audit.read_manifest(out) or {}
    d = manifest.get("dataset")
    if not d:
        return None
    src = d.get("sources", {})
    try:
        return audit.load_dataset(d["root"], class_names, labels=src.get("labels"), boxes=src.get("boxes"),
                                  masks=src.get("masks"))
    except (ValueError, OSError):
        return None


def same_model(out: str | os.PathLike, model_key: str, model: densenet.DenseNet) -> bool:
    """The audit in ``out`` was made with this model (as the user reads it): same key, or same weights hash."""
    run = lookup(out)
    if run is not None:
        return run.model_key == model_key
    manifest = audit.read_manifest(out) or {}
    from densenet.audit.run import model_hash

    return manifest.get("model_hash") == model_hash(model)


def case_picture(case: dict[str, Any], dataset: audit.Dataset, model: densenet.DenseNet) -> np.ndarray | None:
    """A gallery case's picture (:func:`dashboard.audit_figures.case_picture`); ``None`` if its image is gone."""
    from densenet.geometry import view_box
    from densenet.images import ImageError, load_image
    from densenet.preprocess import to_display

    from .audit_figures import case_picture as draw

    item = next((it for it in dataset.items if it.image == case["image"]), None)
    if item is None:
        return None
    try:
        image = load_image(item.path)
    except (ImageError, OSError, ValueError):
        return None
    shown = to_display(image, model)
    h, w = image.shape[:2]
    try:
        truth = audit.truth_in_view(item, case["target"], h, w, view_box(h, w, model), shown.shape[0])
    except ValueError:  # an unreadable mask: the picture without the outline
        truth = None
    return draw(shown, truth, case["map"])


def parquet_bytes(out: str | os.PathLike) -> bytes:
    """Every row of the audit as one Parquet file (the ``results/`` dataset joined)."""
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(audit.read_rows(out), buf, compression="zstd")
    return buf.getvalue()


def skipped_csv(out: str | os.PathLike) -> bytes:
    import csv

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image", "reason"])
    writer.writerows(audit.read_skipped(out))
    return buf.getvalue().encode()


# --- "open on the Attention page" ---------------------------------------------------------------

#: The session value the sidebar reads for an image that is not a sample or an upload.
IMAGE_OVERRIDE = "image_override"


@dataclass(frozen=True)
class ImageOverride:
    """An image the Attention page should explain in place of the sidebar's sample.

    Attributes:
        name: its name (the audit's relative path).
        path: the file (inside an audited dataset: a data root, the demo set or this session's upload).
        source: the audit folder it came from.
    """

    name: str
    path: Path
    source: Path

    def read(self) -> bytes:
        return self.path.read_bytes()


def open_case(case: dict[str, Any], dataset: audit.Dataset, model_key: str) -> ImageOverride:
    """Set the Attention page's controls to a gallery case: method, layer, target and the image.

    The image goes into the session as :data:`IMAGE_OVERRIDE` (the sidebar must honour it; see
    :func:`image_override`). The Attention page re-targets the top prediction whenever its
    image changes; the case's target is kept by marking it as chosen for that image.

    Raises:
        ValueError: the case's image is not in ``dataset``.
    """
    from . import session
    from .sources import digest

    item = next((it for it in dataset.items if it.image == case["image"]), None)
    if item is None:
        raise ValueError(f"{case['image']!r} is not in the audited dataset any more")
    override = ImageOverride(case["image"], item.path, Path(dataset.root))
    session.choose("method", case["method"])
    if case["layer"] != INPUT:
        session.choose("cam_layer", case["layer"])
        session.keep("_cam_layer_for", model_key)  # chosen for this model: the Attention page keeps it
    session.choose("target", int(case["target_index"]))
    session.keep(IMAGE_OVERRIDE, override)
    session.keep("_target_for", f"{model_key}#{digest(override.read())}")  # the Attention page's analysis key
    return override


def image_override() -> ImageOverride | None:
    """The image the sidebar should show instead of its sample (``None``: none, or its file is gone)."""
    from . import session

    found = session.kept(IMAGE_OVERRIDE)
    return found if isinstance(found, ImageOverride) and found.path.is_file() else None


def clear_image_override() -> None:
    from . import session

    session.keep(IMAGE_OVERRIDE, None)
