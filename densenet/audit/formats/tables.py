"""CSV files as they are shipped: plain, gzip-compressed (``.gz``) or the only member of a ``.zip``."""

from __future__ import annotations

import csv
import gc
import gzip
import io
import zipfile
from pathlib import Path


class TableError(ValueError):
    """A table that cannot be read at all."""


def open_text(path: Path) -> io.TextIOBase:
    """``path`` opened as UTF-8 text (a BOM dropped), unpacking ``.gz`` and one-member ``.zip`` files.

    Raises:
        TableError: a missing file, or a zip that does not hold exactly one file.
    """
    if not path.is_file():
        raise TableError(f"file {str(path)!r} does not exist")
    name = path.name.lower()
    if name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    if name.endswith(".zip"):
        archive = zipfile.ZipFile(path)
        members = [m for m in archive.namelist() if not m.endswith("/") and not m.startswith("__MACOSX")]
        if len(members) != 1:
            archive.close()
            raise TableError(f"{str(path)!r} holds {len(members)} files; a zipped table must hold exactly one")
        return io.TextIOWrapper(archive.open(members[0]), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header (stripped names) and the non-blank rows of a CSV file.

    Raises:
        TableError: a missing, unreadable or empty file.
    """
    enabled = gc.isenabled()
    gc.disable()  # a table of 100k+ rows is 100k+ new lists: the cyclic collector would rescan them over and over
    try:
        with open_text(path) as f:
            rows = [row for row in csv.reader(f) if any(row)]  # blank lines dropped (a row of spaces finds no image)
    except TableError:
        raise
    except (OSError, UnicodeDecodeError, csv.Error, zipfile.BadZipFile, EOFError) as e:
        raise TableError(f"cannot read CSV {str(path)!r}: {e}") from None
    finally:
        if enabled:
            gc.enable()
    if not rows:
        raise TableError(f"CSV {str(path)!r} is empty")
    return [h.strip() for h in rows[0]], rows[1:]


def read_header(path: Path) -> list[str]:
    """The first row of a table (stripped names), without reading the rest.

    Raises:
        TableError: a missing or unreadable file.
    """
    try:
        with open_text(path) as f:
            return [h.strip() for h in next(csv.reader(f), [])]
    except TableError:
        raise
    except (OSError, UnicodeDecodeError, csv.Error, zipfile.BadZipFile, EOFError) as e:
        raise TableError(f"cannot read CSV {str(path)!r}: {e}") from None
