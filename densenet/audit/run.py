"""Run an audit to an output folder: blocking (:func:`run_audit`) or in a background thread (:func:`start`).

Both engines share everything here: the plan (chunks of the sorted listing), the manifest,
the commit of each chunk, progress, stopping and the final summary and report.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..explain import Cancelled
from ..versions import versions
from .core import Auditor, ChunkResult, Settings, resolve_layers
from .dataset import Dataset
from .results import RunFolder
from .summary import summarise

ENGINES = ("local", "ray")


@dataclass
class Progress:
    """Where a run stands; a copy is handed to the progress callback and kept on :class:`AuditRun`.

    Attributes:
        state: ``"starting"``, ``"running"``, ``"finishing"`` (summary and report), ``"done"``,
            ``"stopped"`` or ``"failed"``.
        images_total: images in the dataset (listed and audit-able).
        images_done: images finished, including those of an earlier run being resumed.
        images_resumed: of those, how many an earlier run had done.
        rows: rows committed so far.
        skipped: images skipped so far (unreadable files, missing labels).
        images_per_s: this run's throughput (resumed images not counted).
        eta_s: seconds left at that pace (``None`` until it is known).
        message: the error of a failed run, in one sentence.
    """

    state: str = "starting"
    images_total: int = 0
    images_done: int = 0
    images_resumed: int = 0
    rows: int = 0
    skipped: int = 0
    images_per_s: float = 0.0
    eta_s: float | None = None
    message: str = ""

    @property
    def fraction(self) -> float:
        return 1.0 if self.images_total == 0 else min(1.0, self.images_done / self.images_total)


@dataclass
class RunResult:
    """The outcome of a finished (or stopped) run."""

    out: Path
    progress: Progress
    summary: dict[str, Any] | None
    report: Path | None
    resumed: bool
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def model_hash(model: torch.nn.Module) -> str:
    """sha256 of the weights, config, class names and preprocessing: what decides the rows."""
    h = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        h.update(key.encode())
        h.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    h.update(repr(getattr(model, "config", None)).encode())
    h.update(json.dumps(list(getattr(model, "class_names", []))).encode())
    h.update(repr(getattr(model, "preprocessing", None)).encode())
    return h.hexdigest()


def _versions() -> dict[str, str]:
    return versions(("torch", "numpy", "pyarrow", "pillow", "pydicom"))


def build_manifest(model: torch.nn.Module, dataset: Dataset, settings: Settings, *,
                   model_source: str | None = None) -> dict[str, Any]:
    """The manifest of this audit; its identity keys decide whether a folder may be resumed."""
    return {
        "format": 1,
        "model_hash": model_hash(model),
        "model": {"source": model_source or str(getattr(model, "metadata", {}).get("source", "in memory")),
                  "classes": list(model.class_names), "multilabel": bool(model.config.multilabel),
                  "cam_layer": getattr(model, "metadata", {}).get("cam_layer"),
                  "preprocessing": repr(model.preprocessing),
                  "preprocessing_dict": model.preprocessing.to_dict()},
        "dataset_hash": dataset.listing_hash(),
        "dataset": {"root": str(dataset.root), "images": len(dataset.items), "problems": len(dataset.problems),
                    "has_labels": dataset.has_labels, "sources": dataset.sources,
                    "recognised": {k: v for k, v in dataset.details.items() if k != "options"},
                    "options": dataset.details.get("options", {})},
        "settings": settings.to_json(),
        "layers": resolve_layers(model, settings),
        "versions": _versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def plan_chunks(dataset: Dataset, chunk_size: int) -> list[tuple[int, list]]:
    """The sorted listing cut into chunks of ``chunk_size`` images: ``(chunk id, items)``."""
    return [(k, dataset.items[s:s + chunk_size]) for k, s in enumerate(range(0, len(dataset.items), chunk_size))]


def run_audit(model: torch.nn.Module, dataset: Dataset, out: str | os.PathLike, settings: Settings = Settings(), *,
              engine: str = "local", ray_address: str | None = None, actors: int | None = None,
              model_source: str | None = None, progress: Callable[[Progress], None] | None = None,
              stop: threading.Event | None = None, report: bool = True) -> RunResult:
    """Audit ``dataset`` with ``model`` into ``out``, resuming what an earlier run of the same audit left.

    Args:
        model: a DenseNet in eval mode (read-only; may be shared with other threads).
        dataset: from :func:`~densenet.audit.load_dataset`.
        out: the output folder (created; refused when it holds a different audit or a live run).
        settings: what to compute.
        engine: ``"local"`` (in this process) or ``"ray"`` (Ray Data, an actor pool).
        ray_address: ``None``: start a local Ray (or join ``RAY_ADDRESS`` when set); else join it.
        actors: Ray actors (default: CPUs of the cluster, at most 4).
        model_source: how the model was named (a path, ``"demo"``), for the manifest.
        progress: called with a :class:`Progress` after every batch (local) or chunk (Ray);
            raising :class:`~densenet.explain.Cancelled` from it stops the run.
        stop: set it to stop between batches; committed chunks stay and a later run resumes.
        report: write ``report.html`` at the end.

    Returns:
        A :class:`RunResult` (also for a stopped run).

    Raises:
        ValueError: a bad engine; RunFolderError for an unusable folder; whatever the engine
            raises for a failure that is not about one image.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    started = time.monotonic()
    folder = RunFolder(out)
    manifest = build_manifest(model, dataset, settings, model_source=model_source)
    state = Progress(images_total=len(dataset.items) + len(dataset.problems))
    chunks = plan_chunks(dataset, settings.chunk_size)
    with folder.lock():
        resumed = folder.prepare(manifest)
        folder.write_dataset_problems(dataset.problems)
        folder.write_unmatched(dataset.unmatched_rows())
        done = folder.done_chunks()
        todo = [(k, items) for k, items in chunks if k not in done]
        state.images_resumed = sum(len(items) for k, items in chunks if k in done)  # an earlier run's work only
        state.images_done = state.images_resumed + len(dataset.problems)  # not auditable: done at once, never resumed
        already = state.images_done
        state.rows = folder.read_rows(columns=["image"]).num_rows if done else 0
        state.skipped = len(folder.read_skipped())
        state.state = "running"

        def report_progress() -> None:
            elapsed = time.monotonic() - started
            fresh = state.images_done - already
            state.images_per_s = fresh / elapsed if elapsed > 0 else 0.0
            left = state.images_total - state.images_done
            state.eta_s = left / state.images_per_s if state.images_per_s > 0 else None
            if progress is not None:
                progress(replace(state))
            if stop is not None and stop.is_set():
                raise Cancelled("stopped")

        def on_images(n: int) -> None:
            state.images_done += n
            report_progress()

        def on_chunk(chunk: int, result: ChunkResult) -> None:
            folder.write_chunk(chunk, result, settings.map_size)
            state.rows += result.num_rows
            state.skipped += len(result.skipped)

        def on_remote_chunk(chunk: int, result: ChunkResult) -> None:
            on_chunk(chunk, result)
            on_images(result.images_done)

        report_progress()
        try:
            if engine == "local":
                from . import engine_local

                engine_local.run(Auditor(model, settings), todo, on_chunk, on_images)
            else:
                from . import engine_ray

                engine_ray.run(model, settings, todo, on_remote_chunk, address=ray_address, actors=actors,
                               should_stop=(lambda: stop is not None and stop.is_set()))
            state.state = "finishing"
        except Cancelled:
            state.state = "stopped"
        sanity = None
        if state.state == "finishing" and settings.sanity_images > 0:
            sanity = sanity_sample(model, dataset, folder, settings)
        summary = finish(folder, model, images_total=state.images_total, sanity=sanity)
        report_path = None
        if report and summary["rows"] > 0:
            from .report import write_report

            report_path = write_report(folder, model=model, dataset=dataset)
        if state.state == "finishing":
            state.state = "done"
        state.eta_s = 0.0 if state.state == "done" else state.eta_s
        if progress is not None:
            progress(replace(state))
    return RunResult(folder.path, state, summary, report_path, resumed, time.monotonic() - started)


def sanity_sample(model: torch.nn.Module, dataset: Dataset, folder: RunFolder, settings: Settings) -> dict[str, Any]:
    """The sanity check's rank correlation on the first ``settings.sanity_images`` rows with truth
    (first method, first layer), kept in ``sanity.json`` so that a resumed run does not redo it."""
    import numpy as np

    from .. import explain
    from ..images import load_image
    from ..preprocess import preprocess
    from .metrics import bootstrap_ci
    from .results import _atomic_write

    path = folder.path / "sanity.json"
    if path.is_file():
        return json.loads(path.read_text())
    method, layer = settings.methods[0], resolve_layers(model, settings)[0]
    rows = [r for r in folder.read_rows(["image", "target_index", "method", "layer", "hit"]).to_pylist()
            if r["method"] == method and r["layer"] == layer and r["hit"] is not None][:settings.sanity_images]
    paths = {item.image: item.path for item in dataset.items}
    rhos = []
    for r in rows:
        x = preprocess(load_image(paths[r["image"]]), model)
        rhos.append(explain.sanity_check(model, x, r["target_index"], layer, method).rank_correlation)
    mean, low, high = bootstrap_ci(np.array(rhos)) if rhos else (math.nan,) * 3
    result = {"method": method, "layer": layer, "images": len(rhos),
              "rank_correlation": {"mean": mean, "low": low, "high": high}}
    _atomic_write(path, json.dumps(_finite(result)).encode())
    return _finite(result)


def finish(folder: RunFolder, model: torch.nn.Module, *, images_total: int | None = None,
           sanity: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``skipped.csv`` and ``summary.json`` from what the folder holds now; returns the summary."""
    folder.write_skipped_csv()
    table = folder.read_rows()
    dataset = (folder.read_manifest() or {}).get("dataset", {})
    summary = summarise(table, list(model.class_names), multilabel=bool(model.config.multilabel),
                        skipped=len(folder.read_skipped()), images_total=images_total,
                        labelled=bool(dataset.get("has_labels")))
    recognised = dataset.get("recognised", {})
    if recognised:
        summary["dataset"] = recognised  # formats, label counts (positive / negative / uncertain / blank), mapping
    if sanity is not None:
        summary["sanity"] = sanity
    from .results import _atomic_write

    _atomic_write(folder.summary_path, json.dumps(_finite(summary), indent=2).encode())
    return summary


def _finite(obj: Any) -> Any:
    """JSON has no NaN: None instead."""
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


class AuditRun:
    """An audit running in a background thread, for a page to start, watch and stop.

    Attributes:
        out: the output folder.
        progress: the latest :class:`Progress` (a copy; safe to read from any thread).
        result: the :class:`RunResult` once the thread has finished.
        error: the exception of a failed run.
    """

    def __init__(self, model: torch.nn.Module, dataset: Dataset, out: str | os.PathLike,
                 settings: Settings = Settings(), *, on_progress: Callable[[Progress], None] | None = None,
                 **options: Any) -> None:
        self.out = Path(out)
        self.progress = Progress(images_total=len(dataset.items) + len(dataset.problems))
        self.result: RunResult | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._on_progress = on_progress
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, args=(model, dataset, settings, options),
                                        name=f"audit {self.out.name}", daemon=True)

    def _update(self, p: Progress) -> None:
        with self._lock:
            self.progress = p
        if self._on_progress is not None:
            self._on_progress(p)

    def _work(self, model, dataset, settings, options) -> None:
        try:
            self.result = run_audit(model, dataset, self.out, settings, progress=self._update, stop=self._stop,
                                    **options)
        except BaseException as e:  # the page shows it; the thread must not die silently
            self.error = e
            self._update(replace(self.progress, state="failed", message=f"{type(e).__name__}: {e}"))

    def start(self) -> AuditRun:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the run to stop after the current batch (committed chunks stay)."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the thread; ``True`` when it has finished."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()


def start(model: torch.nn.Module, dataset: Dataset, out: str | os.PathLike, settings: Settings = Settings(),
          **options: Any) -> AuditRun:
    """Start :func:`run_audit` in a background thread; returns the :class:`AuditRun` (see its methods).

    ``options`` are :func:`run_audit`'s keywords (``engine``, ``ray_address``, ``model_source``,
    ``report``) and ``on_progress``.
    """
    return AuditRun(model, dataset, out, settings, **options).start()
