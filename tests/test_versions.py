"""What the app runs on is said where a bug report can copy it, and the lock and the floors agree with the
requirements (the minimum-versions CI run installs exactly the floors)."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import streamlit
import torch
from streamlit.testing.v1 import AppTest

from densenet.versions import versions

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ("requirements.txt", "requirements-scale.txt", "tests/requirements.txt")


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)", line)
        if match:
            pins[re.sub(r"[-_.]+", "-", match[1].lower())] = match[2]
    return pins


def _floors() -> dict[str, str]:
    floors = {}
    for name in REQUIREMENTS:
        for line in (ROOT / name).read_text().splitlines():
            match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*>=\s*([0-9][^\s,;#]*)", line)
            if match:
                floors[re.sub(r"[-_.]+", "-", match[1].lower())] = match[2]
    return floors


def _release(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.match(r"[0-9]+(?:\.[0-9]+)*", v)[0].split("."))


def test_versions_name_the_running_packages():
    found = versions()
    assert found["torch"] == torch.__version__.split("+")[0] or found["torch"] == torch.__version__
    assert found["streamlit"] == streamlit.__version__
    assert found["captum"] == version("captum")
    assert "python" in found and "not-a-package" not in versions(("not-a-package",))


def test_every_requirement_is_pinned_in_the_lock_at_or_above_its_floor():
    lock = _pins(ROOT / "constraints.txt")
    for name, floor in _floors().items():
        assert name in lock, f"{name} is required but not in constraints.txt (bash .ci/lock)"
        assert _release(lock[name]) >= _release(floor), f"{name}: lock {lock[name]} is below the floor {floor}"


def test_the_floors_file_pins_exactly_the_floors():
    assert _pins(ROOT / "constraints-min.txt") == _floors()
    subprocess.run([sys.executable, str(ROOT / ".ci" / "floors.py"), "--check"], check=True)


def test_no_floor_admits_a_release_with_a_known_advisory_on_what_we_use():
    floors = _floors()
    # torch.load(weights_only=True) is how a user's checkpoint is read: CVE-2025-32434, CVE-2026-24747
    assert _release(floors["torch"]) >= (2, 10)
    assert _release(floors["pydicom"]) >= (3, 0, 2)  # CVE-2026-32711
    assert _release(floors["pillow"]) >= (12, 3)  # CVE-2026-25990 and the 2026 decoder fixes
    assert _release(floors["tqdm"]) >= (4, 66, 3)  # CVE-2024-34062
    assert _release(floors["pyarrow"]) >= (14, 0, 1)  # CVE-2023-47248
    assert _release(floors["ray"]) >= (2, 54)  # CVE-2025-62593, CVE-2026-27482


def test_the_sidebar_says_what_the_server_runs_on():
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=180).run()
    assert not at.exception
    about = [e for e in at.sidebar.expander if e.label == "About this server"]
    assert about, "no 'About this server' in the sidebar"
    text = " ".join(c.value for c in about[0].caption)
    assert f"torch {version('torch')}" in text and f"streamlit {streamlit.__version__}" in text
    assert f"captum {version('captum')}" in text and "device: cpu" in text.lower()
