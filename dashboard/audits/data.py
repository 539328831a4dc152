"""Where an audit's data may come from: the server's data roots, the cache, and uploaded zips.

* **Data roots.** A typed path reaches only folders under a data root: ``data/`` beside the app,
  or the folders in ``$DENSENET_DATA_ROOT`` (``os.pathsep``-separated), plus the bundled demo set.
  A root that does not exist is reported, never created.
* **Uploads.** A zip is checked (:func:`densenet.audit.check_zip`: size, file count, names that
  escape, links) before a byte is written, then unpacked into this session's folder of the cache.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

from densenet import audit

ROOT = Path(__file__).resolve().parents[2]
DATA_ROOT_ENV = "DENSENET_DATA_ROOT"
CACHE_ENV = "DENSENET_CACHE"
#: Images in the bundled demo set the page offers (generated once per machine, about 10 s).
DEMO_IMAGES = 200
#: What an uploaded zip may hold (the library's limits).
MAX_ZIP_BYTES = audit.safety.MAX_ZIP_BYTES
MAX_ZIP_FILES = audit.safety.MAX_ZIP_FILES


def cache_dir() -> Path:
    """``$DENSENET_CACHE``, else ``~/.cache/densenet-explorer`` (read at each call, so tests can redirect it)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "densenet-explorer")


def audits_dir() -> Path:
    """Where the app's audits write their output folders (one new folder per run)."""
    return cache_dir() / "audits"


def uploads_dir() -> Path:
    """Where uploaded zips are unpacked, one folder per session (never a data root for typed paths)."""
    return cache_dir() / "uploads"


@dataclass(frozen=True)
class DataRoots:
    """The folders a typed path may reach.

    Attributes:
        roots: existing folders, in the order configured (a relative path is taken under the first).
        missing: configured folders that do not exist (reported to the user).
        from_env: the roots came from ``$DENSENET_DATA_ROOT``.
    """

    roots: tuple[Path, ...]
    missing: tuple[Path, ...]
    from_env: bool


def data_roots(demo: Path | None = None) -> DataRoots:
    """The configured data roots (``$DENSENET_DATA_ROOT``, else ``data/`` beside the app), plus ``demo``."""
    text = os.environ.get(DATA_ROOT_ENV, "")
    from_env = bool(text.strip())
    configured = [Path(p.strip()).expanduser() for p in text.split(os.pathsep) if p.strip()] if from_env \
        else [ROOT / "data"]
    resolved = list(dict.fromkeys(p.resolve() for p in configured))
    existing = [p for p in resolved if p.is_dir()]
    missing = [p for p in resolved if not p.is_dir()]
    if demo is not None and demo.is_dir() and demo.resolve() not in existing:
        existing.append(demo.resolve())
    return DataRoots(tuple(existing), tuple(missing), from_env)


def no_roots_message(roots: DataRoots) -> str:
    """Why no typed path can be used, and how the server's owner fixes it."""
    where = ", ".join(f"`{p}`" for p in roots.missing) or f"`{ROOT / 'data'}`"
    how = (f"create it, or set `{DATA_ROOT_ENV}`" if not roots.from_env
           else f"create it, or change `{DATA_ROOT_ENV}`")
    return (f"This server has no data folder yet ({where} does not exist): {how} (folders separated by "
            f"`{os.pathsep}`) and restart. Until then use the demo set or upload a zip.")


def resolve_folder(roots: DataRoots, typed: str) -> Path:
    """The dataset folder a visitor typed, if it lies under a data root and exists.

    Raises:
        densenet.audit.UnsafePathError: no roots, an empty path, or one outside every root.
        densenet.audit.DatasetError: the path does not exist or is not a folder.
    """
    if not roots.roots:
        raise audit.UnsafePathError(no_roots_message(roots))
    path = audit.resolve_under(roots.roots, typed)
    if not path.exists():
        raise audit.DatasetError(f"{typed.strip()!r} does not exist under {roots.roots[0]}")
    if not path.is_dir():
        raise audit.DatasetError(f"{typed.strip()!r} is a file: give the folder that holds the images and CSVs")
    return path


def unpack_upload(data: bytes, owner: str, *, max_bytes: int = MAX_ZIP_BYTES, max_files: int = MAX_ZIP_FILES,
                  base: Path | None = None) -> Path:
    """Check an uploaded zip, then unpack it into ``owner``'s upload folder; the same zip twice is unpacked once.

    Args:
        data: the zip's bytes.
        owner: the session's token (:func:`new_token`): a folder name of letters and digits.
        max_bytes, max_files: the limits, as for :func:`densenet.audit.check_zip`.
        base: folder of the per-session upload folders (default :func:`uploads_dir`).

    Returns:
        The unpacked folder (pass it to :func:`densenet.audit.load_folder`).

    Raises:
        densenet.audit.ZipRefused: not a zip, too large, too many files, or unsafe names; nothing is written.
        ValueError: a bad ``owner``.
    """
    if not owner.isalnum():
        raise ValueError(f"owner must be letters and digits, got {owner!r}")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as e:
        raise audit.ZipRefused(f"not a readable zip file ({e})") from None
    with zf:
        audit.check_zip(zf, max_bytes=max_bytes, max_files=max_files)  # before anything is written
    folder = (base or uploads_dir()) / owner
    dest = folder / hashlib.sha256(data).hexdigest()[:16]
    if dest.is_dir():
        return dest
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{dest.name}-{uuid.uuid4().hex[:8]}"
    try:
        audit.extract_zip(io.BytesIO(data), tmp, max_bytes=max_bytes, max_files=max_files)
        try:
            os.replace(tmp, dest)
        except OSError:  # the same zip unpacked by an overlapping run of this session: use that one
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def new_token() -> str:
    """A random name for a session (its uploads folder, the runs it may stop)."""
    return uuid.uuid4().hex
