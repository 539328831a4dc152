"""The audits of this server process: start, resume, stop, and find them again from any session.

An audit runs in its own thread (:func:`densenet.audit.start`). :data:`_RUNS` holds every run this
process started, by output folder, so a session that leaves and comes back, or a second session,
finds it again; a folder without a live run is read from disk alone.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import densenet
from densenet import audit
from densenet.explain import Cancelled

from ..gate import ComputeGate
from .data import audits_dir
from .turns import FINAL_STATES, GateTurns


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
        from ..runtime import GATE as gate
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
        from ..runtime import GATE as gate
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

    @property
    def phase(self) -> str:
        """What the page draws differently: ``"running"``, ``"stopped"``, ``"failed"`` or ``"done"``."""
        return "running" if self.running else self.progress.state

    def watch_every(self) -> float | None:
        """Seconds between two looks of a page showing this audit; ``None`` once nothing can change it.

        A running audit changes every batch; a stopped or failed one of this process can still be resumed by the
        session that owns it, and a watcher must see that without a click (issue 21, defect 4).
        """
        if self.running:
            return RUNNING_POLL_S
        if self.live and self.progress.state in ("stopped", "failed"):
            return RESUMABLE_POLL_S
        return None


#: How often a page looks at a running audit, and at a stopped one that its owner may resume.
RUNNING_POLL_S = 2.0
RESUMABLE_POLL_S = 3.0


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
