"""The versions this process runs on (for manifests and bug reports): Python and the installed packages."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

#: What a bug report about a map needs first.
REPORTED = ("torch", "torchvision", "streamlit", "captum", "zennit", "numpy", "pillow", "pydicom", "pyarrow")


def versions(packages: tuple[str, ...] = REPORTED) -> dict[str, str]:
    """``{"python": ..., package: version}`` for each of ``packages`` that is installed (the others are left out)."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out
