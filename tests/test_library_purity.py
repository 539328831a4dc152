"""densenet/ is a pure library: every module imports with streamlit blocked."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import densenet

ROOT = Path(__file__).resolve().parents[1]


def test_every_module_imports_without_streamlit():
    modules = ["densenet"] + [f"densenet.{m.name}" for m in pkgutil.walk_packages(densenet.__path__, "")]
    code = ("import sys; sys.modules['streamlit'] = None\n"
            f"import importlib\nfor name in {modules!r}: importlib.import_module(name)\n"
            "assert not any(k.startswith('streamlit') and sys.modules[k] is not None for k in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_no_torch_load_without_weights_only():
    offenders = []
    for path in ROOT.rglob("*.py"):
        if ".venv" in path.parts:
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if "torch.load(" in line and "weights_only=True" not in line and "torch.load(`" not in line:
                offenders.append(f"{path.relative_to(ROOT)}:{lineno}")
    assert offenders == []
