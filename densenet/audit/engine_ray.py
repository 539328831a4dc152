"""The Ray engine: Ray Data reads the listing, an actor pool (one model per actor) audits chunks.

This is the only module of the package that imports ``ray`` (an optional extra:
``pip install -r requirements-scale.txt``). Each actor builds the model once from the
checkpoint bytes it is sent and runs the very :class:`~densenet.audit.core.Auditor` the local
engine runs, so both engines give the same rows. Results come back to the driver as Arrow IPC
and ``.npz`` bytes (no pickles of our data) and are committed by the same writer, so the output
folder needs no shared file system; the images must be readable by the workers at the paths
listed (a shared or replicated data folder).

Lessons from a prototype (ray 2.60, 2 cores), built in here: actors get a fraction of the CPUs
so that Ray Data's own tasks are never starved (a full claim hangs silently); a local Ray is
started with ``address="local"`` so a stale ``/tmp/ray/ray_current_cluster`` is never joined;
no dashboard (it needs ``ray[default]``); ``compute=ActorPoolStrategy(size=n)``, one pool per run.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from .core import Auditor, ChunkResult, Settings, COLUMNS
from .dataset import Item

_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # densenet/


def _item_json(item: Item) -> dict:
    return {"image": item.image, "path": str(item.path), "labels": list(item.labels),
            "boxes": {k: [list(b) for b in v] for k, v in item.boxes.items()},
            "masks": {k: str(p) for k, p in item.masks.items()}}


def _item_from_json(d: dict) -> Item:
    return Item(d["image"], Path(d["path"]), tuple(d["labels"]),
                {k: tuple(tuple(b) for b in v) for k, v in d["boxes"].items()},
                {k: Path(p) for k, p in d["masks"].items()})


def _checkpoint_bytes(model: torch.nn.Module) -> bytes:
    from ..checkpoints import save_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.safetensors"
        save_checkpoint(model, path)
        return path.read_bytes()


class _ChunkActor:
    """One model per actor; audits one chunk per call and returns it as bytes."""

    def __init__(self, model_ref: list, settings: dict, device: str, threads: int) -> None:
        import ray

        from ..checkpoints import load_checkpoint

        torch.set_num_threads(threads)
        data = model_ref[0]
        data = ray.get(data) if isinstance(data, ray.ObjectRef) else data
        model = load_checkpoint(bytes(data)).eval().to(device)
        self.settings = Settings.from_json(settings, device)
        self.auditor = Auditor(model, self.settings)

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = {"chunk": [], "rows": [], "maps": [], "skipped": [], "images": []}
        for chunk, items_json in zip(batch.column("chunk").to_pylist(), batch.column("items").to_pylist()):
            items = [_item_from_json(d) for d in json.loads(items_json)]
            result = self.auditor.run_chunk(int(chunk), items)
            out["chunk"].append(int(chunk))
            out["rows"].append(_rows_bytes(result))
            buf = io.BytesIO()
            np.savez_compressed(buf, maps=result.map_stack(self.settings.map_size))
            out["maps"].append(buf.getvalue())
            out["skipped"].append(json.dumps(result.skipped))
            out["images"].append(result.images_done)
        return pa.table({"chunk": pa.array(out["chunk"], pa.int64()), "rows": pa.array(out["rows"], pa.binary()),
                         "maps": pa.array(out["maps"], pa.binary()), "skipped": pa.array(out["skipped"], pa.string()),
                         "images": pa.array(out["images"], pa.int64())})


def _rows_bytes(result: ChunkResult) -> bytes:
    from .results import SCHEMA

    table = pa.Table.from_pydict(result.rows, schema=SCHEMA)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, SCHEMA) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _decode(row: dict) -> ChunkResult:
    table = pa.ipc.open_stream(pa.py_buffer(row["rows"])).read_all()
    with np.load(io.BytesIO(row["maps"]), allow_pickle=False) as z:
        maps = z["maps"]
    result = ChunkResult(rows={c: table.column(c).to_pylist() for c in COLUMNS}, maps=list(maps),
                         skipped=[tuple(s) for s in json.loads(row["skipped"])], images_done=int(row["images"]))
    return result


def init_ray(address: str | None = None, *, runtime_env: dict | None = None) -> bool:
    """Connect to Ray: ``address`` (or ``RAY_ADDRESS``) joins that cluster, else a fresh local one.

    Returns:
        ``True`` when this call connected (the caller shuts it down), ``False`` when Ray was
        already initialised in this process.
    """
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address != "local":
        # The workers of a remote cluster get our package from here (unless it is installed there).
        env = {"py_modules": [str(_PACKAGE_DIR)], **(runtime_env or {})}
        ray.init(address=address, runtime_env=env, log_to_driver=False)
    else:
        pythonpath = os.pathsep.join(p for p in (str(_PACKAGE_DIR.parent), os.environ.get("PYTHONPATH")) if p)
        env = {"env_vars": {"PYTHONPATH": pythonpath, "OMP_WAIT_POLICY": "PASSIVE"}, **(runtime_env or {})}
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, runtime_env=env,
                 log_to_driver=False)
    return True


def run(model: torch.nn.Module, settings: Settings, chunks: list[tuple[int, list[Item]]],
        on_chunk: Callable[[int, ChunkResult], None], *, address: str | None = None, actors: int | None = None,
        should_stop: Callable[[], bool] = lambda: False, runtime_env: dict | None = None) -> None:
    """Audit ``chunks`` on Ray; ``on_chunk`` commits each as it arrives (any order).

    Args:
        model: the model (sent to the actors as checkpoint bytes through the object store).
        settings: what to compute.
        chunks: ``(chunk id, items)`` still to do.
        on_chunk: called on the driver with each finished chunk; raising from it stops the run.
        address: a Ray cluster to join; ``None``: ``RAY_ADDRESS``, else a local Ray.
        actors: actor pool size (default: the cluster's CPUs, at most 4).
        should_stop: polled between chunks; ``True`` stops the run.
        runtime_env: extra Ray runtime environment entries.
    """
    if not chunks:
        return
    try:
        import ray
        from ray.data import ActorPoolStrategy
    except ImportError:
        raise ImportError("the Ray engine needs Ray Data: pip install -r requirements-scale.txt") from None
    started = init_ray(address, runtime_env=runtime_env)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the caller shows progress
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        cpus = max(1.0, float(ray.cluster_resources().get("CPU", 1)))
        n = max(1, min(actors or min(4, int(cpus)), len(chunks)))
        # Leave a share of every CPU to Ray Data's own tasks, or the pipeline can stall silently.
        cpu_share = max(0.1, min(1.0, 0.8 * cpus / n))
        threads = max(1, int(cpus // n))
        gpus = 1 if settings.device.startswith("cuda") else 0
        ref = ray.put(_checkpoint_bytes(model))
        listing = ray.data.from_items([{"chunk": k, "items": json.dumps([_item_json(i) for i in items])}
                                       for k, items in chunks], override_num_blocks=len(chunks))
        results = listing.map_batches(
            _ChunkActor, batch_size=1, batch_format="pyarrow", compute=ActorPoolStrategy(size=n),
            fn_constructor_kwargs={"model_ref": [ref], "settings": settings.to_json(), "device": settings.device,
                                   "threads": threads},
            num_cpus=cpu_share, num_gpus=gpus)
        for batch in results.iter_batches(batch_size=1, batch_format="pyarrow", prefetch_batches=0):
            for row in batch.to_pylist():
                on_chunk(int(row["chunk"]), _decode(row))
            if should_stop():
                break
    finally:
        if started:
            ray.shutdown()
