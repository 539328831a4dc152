"""Writes constraints-min.txt: every floor of the requirements files pinned exactly (the minimum-versions CI run)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = ("requirements.txt", "requirements-scale.txt", "tests/requirements.txt")
_FLOOR = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*>=\s*([0-9][^\s,;#]*)")


def floors() -> dict[str, str]:
    """{normalised name: floor} over the requirements files; a package with two different floors is an error."""
    found: dict[str, str] = {}
    for name in FILES:
        for line in (ROOT / name).read_text().splitlines():
            match = _FLOOR.match(line)
            if not match:
                continue
            package, version = re.sub(r"[-_.]+", "-", match[1].lower()), match[2]
            if found.setdefault(package, version) != version:
                raise SystemExit(f"{package}: floors {found[package]} and {version} disagree ({name})")
    return found


def main() -> None:
    lines = ["# The floors of requirements*.txt and tests/requirements.txt, pinned: CI's minimum-versions run installs",
             "# with these (-c constraints-min.txt). Written by `python .ci/floors.py`; do not edit by hand."]
    lines += [f"{name}=={version}" for name, version in sorted(floors().items())]
    text = "\n".join(lines) + "\n"
    if sys.argv[1:] == ["--check"]:
        if (ROOT / "constraints-min.txt").read_text() != text:
            raise SystemExit("constraints-min.txt is stale: run python .ci/floors.py")
        return
    (ROOT / "constraints-min.txt").write_text(text)


if __name__ == "__main__":
    main()
