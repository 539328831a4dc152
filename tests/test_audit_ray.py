"""The Ray engine gives the same rows as the local one (a local Ray started by the test, loopback only)."""

from __future__ import annotations

import math
import os
import shutil
import tempfile

import pytest
import torch

from densenet import audit, demo
from densenet.synthetic import write_dataset

pytest.importorskip("ray.data", reason="the Ray engine is an optional extra (requirements-scale.txt)")

LAYERS = ("features.denseblock2", "features.denseblock3")


@pytest.fixture
def short_ray_tmp(monkeypatch):
    # pytest's tmp_path is too long for Ray's socket paths (107 bytes); no address means a fresh local Ray.
    path = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    monkeypatch.setenv("RAY_TMPDIR", path)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.timeout(150)
def test_ray_engine_gives_the_same_rows_as_the_local_one(tmp_path, short_ray_tmp):
    torch.set_num_threads(1)  # as each actor runs: the same arithmetic, the same floats
    model = demo.load()
    data = write_dataset(tmp_path / "data", 16)
    ds = audit.load_dataset(data["images"], model.class_names, labels=data["labels"], masks=data["masks"])
    settings = audit.Settings(methods=("gradcam", "eigencam"), layers=LAYERS, chunk_size=4, batch_size=4)
    local = audit.run_audit(model, ds, tmp_path / "local", settings, report=False)
    remote = audit.run_audit(model, ds, tmp_path / "ray", settings, engine="ray", actors=2, report=False)
    assert remote.progress.state == "done" and remote.progress.rows == local.progress.rows == 16 * 2 * 2

    def rows(out):
        return sorted(audit.read_rows(out).to_pylist(), key=lambda r: (r["image"], r["method"], r["layer"]))

    for a, b in zip(rows(tmp_path / "local"), rows(tmp_path / "ray"), strict=True):
        for key, value in a.items():
            other = b[key]
            if isinstance(value, float):
                assert (math.isnan(value) and math.isnan(other)) or value == pytest.approx(other, abs=1e-6), key
            elif isinstance(value, list) and value and isinstance(value[0], float):
                assert value == pytest.approx(other, abs=1e-6), key
            else:
                assert value == other, key
    assert sorted(audit.read_skipped(tmp_path / "ray")) == sorted(audit.read_skipped(tmp_path / "local"))
    assert not os.environ.get("RAY_ADDRESS")
