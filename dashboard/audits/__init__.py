"""The dashboard's dataset audits, by job: where data may come from (:mod:`.data`), a run's turns on the
compute gate (:mod:`.turns`), the runs of this server process (:mod:`.runs`) and what a finished audit
shows (:mod:`.finished`). No page layout here (that is ``views/audit.py``).
"""

from __future__ import annotations

from .data import (CACHE_ENV, DATA_ROOT_ENV, DEMO_IMAGES, MAX_ZIP_BYTES, MAX_ZIP_FILES, DataRoots, audits_dir,
                   cache_dir, data_roots, new_token, no_roots_message, resolve_folder, unpack_upload, uploads_dir)
from .finished import case_picture, case_request, dataset_of, parquet_bytes, same_model, skipped_csv
from .runs import Run, Status, describe, known, lookup, resume, running, start, status, stop
from .turns import FINAL_STATES, GateTurns

__all__ = [
    "CACHE_ENV", "DATA_ROOT_ENV", "DEMO_IMAGES", "FINAL_STATES", "MAX_ZIP_BYTES", "MAX_ZIP_FILES", "DataRoots",
    "GateTurns", "Run", "Status", "audits_dir", "cache_dir", "case_picture", "case_request", "data_roots",
    "dataset_of", "describe", "known", "lookup", "new_token", "no_roots_message", "parquet_bytes", "resolve_folder",
    "resume", "running", "same_model", "skipped_csv", "start", "status", "stop", "unpack_upload", "uploads_dir",
]
