"""Paths a visitor types and zips a visitor uploads: refuse anything that leaves its allowed folder.

Both checks happen before anything is read or written: :func:`resolve_under` resolves symlinks
and ``..`` first and only then compares against the roots; :func:`extract_zip` reads the zip's
central directory (the declared sizes and names) and refuses the whole archive before extracting
a single byte, then counts the bytes it actually writes, so a header that lies about the size
cannot get past the limit either.
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

#: Default limits for an uploaded zip.
MAX_ZIP_BYTES = 2 * 1024 ** 3  # uncompressed, all members together
MAX_ZIP_FILES = 20_000


class UnsafePathError(ValueError):
    """A typed path, or a name inside a zip, that would leave its allowed folder."""


class ZipRefused(ValueError):
    """An uploaded zip that is refused before extraction (too big, too many files, unsafe names)."""


def resolve_under(roots: str | os.PathLike | Iterable[str | os.PathLike], typed: str | os.PathLike) -> Path:
    """Resolve a path typed by a visitor, allowing only what lies under one of ``roots``.

    A relative ``typed`` is taken relative to the first root. Symlinks and ``..`` are resolved
    before the check, so a link inside a root that points outside is refused too.

    Args:
        roots: one allowed folder or several (e.g. ``data/`` beside the app and the demo set).
        typed: the path as typed.

    Returns:
        The resolved, absolute path (it need not exist).

    Raises:
        UnsafePathError: the path is empty, holds a NUL byte, or resolves outside every root.
        ValueError: no roots were given.
    """
    root_list = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
    if not root_list:
        raise ValueError("no data roots configured: nothing may be read")
    resolved_roots = [Path(r).expanduser().resolve() for r in root_list]
    text = os.fspath(typed).strip() if not isinstance(typed, Path) else os.fspath(typed)
    if not text:
        raise UnsafePathError("no path given")
    if "\x00" in text:
        raise UnsafePathError("the path holds a NUL byte")
    candidate = Path(text).expanduser()
    if not candidate.is_absolute():
        candidate = resolved_roots[0] / candidate
    resolved = candidate.resolve()
    for root in resolved_roots:
        if resolved == root or resolved.is_relative_to(root):
            return resolved
    allowed = ", ".join(str(r) for r in resolved_roots)
    raise UnsafePathError(f"{text!r} is outside the data folders this server may read ({allowed})")


def check_zip(source: str | os.PathLike | zipfile.ZipFile, *, max_bytes: int = MAX_ZIP_BYTES,
              max_files: int = MAX_ZIP_FILES) -> list[zipfile.ZipInfo]:
    """Check a zip's directory without extracting anything.

    Args:
        source: a path to the zip, or an open :class:`zipfile.ZipFile`.
        max_bytes: most uncompressed bytes allowed, all members together.
        max_files: most members allowed (folders not counted).

    Returns:
        The file members (folders left out), in archive order.

    Raises:
        ZipRefused: not a zip, too many files, too many uncompressed bytes, an encrypted member,
            a symlink, or a name that is absolute, has a drive, or climbs out with ``..``.
    """
    if isinstance(source, zipfile.ZipFile):
        return _check_members(source, max_bytes, max_files)
    try:
        with zipfile.ZipFile(source) as zf:
            return _check_members(zf, max_bytes, max_files)
    except zipfile.BadZipFile as e:
        raise ZipRefused(f"not a readable zip file ({e})") from None


def _check_members(zf: zipfile.ZipFile, max_bytes: int, max_files: int) -> list[zipfile.ZipInfo]:
    members = [info for info in zf.infolist() if not info.is_dir()]
    if len(members) > max_files:
        raise ZipRefused(f"the zip holds {len(members):,} files; at most {max_files:,} are allowed")
    total = sum(info.file_size for info in members)
    if total > max_bytes:
        raise ZipRefused(f"the zip would unpack to {_size(total)}; at most {_size(max_bytes)} are allowed")
    for info in zf.infolist():
        _member_path(info.filename)
        if info.flag_bits & 0x1:
            raise ZipRefused(f"{info.filename!r} is encrypted")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ZipRefused(f"{info.filename!r} is a symbolic link; links are not extracted")
    return members


def _member_path(name: str) -> PurePosixPath:
    """The member's relative path, or :class:`ZipRefused` when it could escape the folder."""
    unified = name.replace("\\", "/")
    path = PurePosixPath(unified)
    if not unified or "\x00" in unified:
        raise ZipRefused(f"the zip holds an empty or invalid name {name!r}")
    if path.is_absolute() or (len(unified) > 1 and unified[1] == ":"):
        raise ZipRefused(f"the zip holds an absolute path {name!r}; only relative names are allowed")
    if ".." in path.parts:
        raise ZipRefused(f"the zip holds {name!r}, which points outside its folder ('..')")
    return path


def extract_zip(source: str | os.PathLike, dest: str | os.PathLike, *, max_bytes: int = MAX_ZIP_BYTES,
                max_files: int = MAX_ZIP_FILES) -> list[Path]:
    """Check a zip (:func:`check_zip`), then extract its files under ``dest``.

    While extracting, the bytes actually written are counted as well, so a member whose header
    understates its size stops at ``max_bytes`` (the partial output is removed).

    Args:
        source: path of the zip.
        dest: folder to extract into (created; must be empty or new).
        max_bytes, max_files: as for :func:`check_zip`.

    Returns:
        The extracted files.

    Raises:
        ZipRefused: as for :func:`check_zip`, or more data than declared.
        ValueError: ``dest`` exists and is not an empty folder.
    """
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ValueError(f"{dest} exists and is not an empty folder")
    try:
        zf = zipfile.ZipFile(source)
    except zipfile.BadZipFile as e:
        raise ZipRefused(f"not a readable zip file ({e})") from None
    with zf:
        members = _check_members(zf, max_bytes, max_files)
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        written: list[Path] = []
        budget = max_bytes
        try:
            for info in members:
                target = root.joinpath(*_member_path(info.filename).parts)
                if not target.resolve().is_relative_to(root):  # belt and braces after the name check
                    raise ZipRefused(f"{info.filename!r} points outside its folder")
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        budget -= len(chunk)
                        if budget < 0:
                            raise ZipRefused(f"the zip unpacks to more than {_size(max_bytes)} "
                                             "(more than its directory declares)")
                        out.write(chunk)
                written.append(target)
        except zipfile.BadZipFile as e:  # a CRC or size that does not match what the directory says
            shutil.rmtree(root, ignore_errors=True)
            raise ZipRefused(f"the zip is damaged or its headers lie ({e})") from None
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
    return written


def _size(n: int) -> str:
    for unit, scale in (("GB", 1024 ** 3), ("MB", 1024 ** 2), ("kB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"
