"""An audit's output folder: written as it goes, read back at any time, resumed after a stop.

Layout::

    OUT/manifest.json        model hash, dataset listing hash, settings, layers, versions
    OUT/results/part-K.parquet   the rows of chunk K (one Parquet dataset, pyarrow)
    OUT/maps/part-K.npz      the chunk's maps, (rows, m, m) float16 (m: the model's input size unless
                             ``map_size`` was set), row ``map_index``; ``audit rescore`` reads them
    OUT/skipped/part-K.csv   images of chunk K that could not be audited (and dataset.csv)
    OUT/skipped.csv          all of them, ``image,reason`` (rewritten as parts come)
    OUT/summary.json         the scorecard (:mod:`.summary`)
    OUT/report.html          the report (:mod:`.report`)
    OUT/.lock                held while a run writes here

A chunk is committed when its Parquet part appears: the maps and skipped parts are written
first, every file is written to a temporary name and renamed. Resuming therefore reads which
parts exist and redoes only the others; a row can be neither lost nor written twice.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .core import COLUMNS, ChunkResult

SCHEMA = pa.schema([
    ("image", pa.string()), ("target", pa.string()), ("target_index", pa.int32()), ("target_source", pa.string()),
    ("method", pa.string()), ("layer", pa.string()), ("predicted", pa.string()), ("predicted_index", pa.int32()),
    ("correct", pa.bool_()), ("score", pa.float64()), ("logit", pa.float64()),
    ("probabilities", pa.list_(pa.float64())), ("labels", pa.list_(pa.string())), ("truth", pa.string()),
    ("lesion_fraction", pa.float64()), ("hit", pa.bool_()), ("energy_in", pa.float64()), ("iou", pa.float64()),
    ("dice", pa.float64()), ("threshold", pa.float64()), ("deletion_auc", pa.float64()),
    ("insertion_auc", pa.float64()), ("height", pa.int32()), ("width", pa.int32()), ("chunk", pa.int32()),
    ("map_index", pa.int32()), ("scored_at", pa.string()), ("hit_mask", pa.bool_()), ("hit_box", pa.bool_()),
    ("uncertain", pa.list_(pa.string())), ("reader", pa.string()),
])
assert tuple(SCHEMA.names) == COLUMNS

_PART = re.compile(r"part-(\d{6})\.parquet")
IDENTITY_KEYS = ("model_hash", "dataset_hash", "settings", "layers")

_active: set[Path] = set()  # folders written by a run in this process
_active_lock = threading.Lock()


class RunFolderError(ValueError):
    """An output folder that cannot be used for this run (another run, or a different audit)."""


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class RunFolder:
    """One audit's output folder (see the module docstring for the layout)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.results_dir = self.path / "results"
        self.maps_dir = self.path / "maps"
        self.skipped_dir = self.path / "skipped"
        self.manifest_path = self.path / "manifest.json"
        self.summary_path = self.path / "summary.json"
        self.report_path = self.path / "report.html"
        self.skipped_path = self.path / "skipped.csv"

    # --- identity ---------------------------------------------------------------------------

    def read_manifest(self) -> dict[str, Any] | None:
        """The manifest, or ``None`` for a folder no run has started in."""
        try:
            return json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise RunFolderError(f"{self.manifest_path} is unreadable ({e}); choose another output folder") from None

    def prepare(self, manifest: dict[str, Any]) -> bool:
        """Create the folder for ``manifest``, or check that it holds the same audit.

        Returns:
            ``True`` when earlier results of this same audit are there (a resume).

        Raises:
            RunFolderError: the folder holds a different audit, or files that are not an audit's.
        """
        existing = self.read_manifest()
        if existing is None:
            if self.path.exists() and any(p.name != ".lock" for p in self.path.iterdir()):
                raise RunFolderError(f"{self.path} is not empty and holds no audit; choose a new output folder")
            for d in (self.results_dir, self.maps_dir, self.skipped_dir):
                d.mkdir(parents=True, exist_ok=True)
            _atomic_write(self.manifest_path, json.dumps(manifest, indent=2, sort_keys=True).encode())
            return False
        changed = [k for k in IDENTITY_KEYS if existing.get(k) != manifest.get(k)]
        if changed:
            raise RunFolderError(f"{self.path} holds a different audit (its {', '.join(changed)} differ); "
                                 "choose another output folder to start a new one")
        for d in (self.results_dir, self.maps_dir, self.skipped_dir):
            d.mkdir(parents=True, exist_ok=True)
        return True

    # --- one writer at a time -----------------------------------------------------------------

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder for this run: another run (thread or process) is refused.

        A lock left by a process that is gone (a crash, a kill) is taken over.

        Raises:
            RunFolderError: a live run holds the folder.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        key = self.path.resolve()
        with _active_lock:
            if key in _active:
                raise RunFolderError(f"another audit is running in {self.path}")
            _active.add(key)
        lock = self.path / ".lock"
        try:
            for _ in range(2):
                try:
                    fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    if self._stale(lock):
                        lock.unlink(missing_ok=True)
                        continue
                    raise RunFolderError(f"another audit is running in {self.path} ({lock.read_text().strip()})") from None
                with os.fdopen(fd, "w") as f:
                    f.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
                break
            else:
                raise RunFolderError(f"cannot take the lock {lock}")
            try:
                yield
            finally:
                lock.unlink(missing_ok=True)
        finally:
            with _active_lock:
                _active.discard(key)

    @staticmethod
    def _stale(lock: Path) -> bool:
        try:
            text = lock.read_text()
        except OSError:
            return True
        m = re.match(r"pid (\d+) on (\S+)", text)
        if m is None or m.group(2) != socket.gethostname():
            return m is None
        pid = int(m.group(1))
        if pid == os.getpid():
            return True  # ours, left by a run of this process that is over (the registry says so)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def is_running(self) -> bool:
        """A run (in any process on this host) holds the folder now."""
        lock = self.path / ".lock"
        if self.path.resolve() in _active:
            return True
        return lock.exists() and not self._stale(lock)

    # --- parts --------------------------------------------------------------------------------

    def done_chunks(self) -> set[int]:
        """Chunks whose rows are committed."""
        if not self.results_dir.is_dir():
            return set()
        return {int(m.group(1)) for p in self.results_dir.iterdir() if (m := _PART.fullmatch(p.name))}

    def write_chunk(self, chunk: int, result: ChunkResult, map_size: int) -> None:
        """Commit one chunk: maps, skipped, then the Parquet part (the commit point)."""
        name = f"part-{chunk:06d}"
        buf = io.BytesIO()
        np.savez_compressed(buf, maps=result.map_stack(map_size))
        _atomic_write(self.maps_dir / f"{name}.npz", buf.getvalue())
        _atomic_write(self.skipped_dir / f"{name}.csv", _csv_bytes(result.skipped))
        table = pa.Table.from_pydict(result.rows, schema=SCHEMA)
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        _atomic_write(self.results_dir / f"{name}.parquet", sink.getvalue())

    def write_dataset_problems(self, problems: list[tuple[str, str]]) -> None:
        self.skipped_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.skipped_dir / "dataset.csv", _csv_bytes(problems))

    def read_rows(self, columns: list[str] | None = None) -> pa.Table:
        """Every committed row so far (a run may still be adding parts), in chunk order."""
        parts = sorted(self.done_chunks())
        tables = []
        for k in parts:
            try:
                tables.append(pq.read_table(self.results_dir / f"part-{k:06d}.parquet", columns=columns))
            except FileNotFoundError:  # removed between listing and reading: not ours to explain
                continue
        schema = SCHEMA if columns is None else pa.schema([SCHEMA.field(c) for c in columns])
        return pa.concat_tables(tables) if tables else schema.empty_table()

    def read_maps(self, chunk: int) -> np.ndarray:
        """The stored maps of one chunk, (rows, m, m) float16 (index with ``map_index``)."""
        with np.load(self.maps_dir / f"part-{chunk:06d}.npz", allow_pickle=False) as z:
            return z["maps"]

    def read_skipped(self) -> list[tuple[str, str]]:
        """Every skipped image so far: dataset problems first, then per chunk."""
        out: list[tuple[str, str]] = []
        if not self.skipped_dir.is_dir():
            return out
        names = ["dataset.csv"] + sorted(p.name for p in self.skipped_dir.glob("part-*.csv"))
        for name in names:
            try:
                with open(self.skipped_dir / name, newline="") as f:
                    rows = list(csv.reader(f))
            except FileNotFoundError:
                continue
            out += [(r[0], r[1]) for r in rows[1:] if len(r) >= 2]
        return out

    def write_unmatched(self, rows: list[tuple[str, str]]) -> None:
        """Label names that matched no class, one row each with its count (``skipped.csv`` lists them last)."""
        self.skipped_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.skipped_dir / "labels.csv", _csv_bytes(rows))

    def read_unmatched(self) -> list[tuple[str, str]]:
        try:
            with open(self.skipped_dir / "labels.csv", newline="") as f:
                return [(r[0], r[1]) for r in list(csv.reader(f))[1:] if len(r) >= 2]
        except FileNotFoundError:
            return []

    def write_skipped_csv(self) -> None:
        _atomic_write(self.skipped_path, _csv_bytes(self.read_skipped() + self.read_unmatched()))


def _csv_bytes(rows: list[tuple[str, str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image", "reason"])
    writer.writerows(rows)
    return buf.getvalue().encode()


def new_output_dir(base: str | os.PathLike, name: str = "audit") -> Path:
    """A fresh folder ``base/name-YYYYmmdd-HHMMSS[-k]`` that no other run has (it is created)."""
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "audit"
    for k in range(1000):
        candidate = base / (f"{safe}-{stamp}" + (f"-{k}" if k else ""))
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise RunFolderError(f"cannot create a new folder under {base}")
