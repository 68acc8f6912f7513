"""Atomic writes: every output appears whole or not at all.

A run killed mid-write leaves at most a hidden temporary file (``.<name>.tmp-*``), never a
half-written file under the final name that a later run would trust and skip.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: MetaImage keeps the T2W grid's origin and direction in double precision (NIfTI rounds them to
#: float32), and nnU-Net reads it too: the case copies, the maps and nnU-Net's raw data share it.
VOLUME_SUFFIX = ".mha"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds.

    The temporary name keeps the final suffixes (``.nii.gz``, ``.mha``, ``.png``) so that writers
    which pick a format from the extension (SimpleITK, matplotlib) behave as for the final name.

    Example:
        >>> with atomic_path(tmp_dir / "table.csv") as tmp:  # doctest: +SKIP
        ...     frame.to_csv(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) if path.suffixes else ""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes 0600; outputs get what the user's umask says
    try:
        yield tmp
        os.replace(tmp, path)
    except Exception as exc:
        if disk_full(exc, path.parent):  # named for the file the user asked for, not the hidden temporary one
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from exc
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


#: Below this much free space, a failed write is taken for a full disk (one block short is full enough).
DISK_FULL_BYTES = 1 << 20


def free_bytes(folder: Path) -> int:
    """Bytes an unprivileged process may still write in ``folder``'s file system."""
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def disk_full(exc: BaseException, folder: Path) -> bool:
    """Did a write fail because the disk filled? Libraries say so in their own words — Python's
    ENOSPC, ITK's "MetaImage: … file stream is fail after write", PyTorch's "file write failed" — so
    the error number, the text and, failing both, the free space left decide."""
    if isinstance(exc, OSError):  # Python's own word: permission denied stays permission denied
        return exc.errno == errno.ENOSPC
    if "No space left on device" in str(exc):
        return True
    try:
        return free_bytes(folder) < DISK_FULL_BYTES
    except OSError:
        return False


def current_umask() -> int:
    """The process's umask (read without changing it, where Linux shows it; else set-and-restore)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> Path:
    """Write text atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, data: Any) -> Path:
    """Write JSON (indented, keys in insertion order) atomically."""
    return write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@contextlib.contextmanager
def exclusive(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing; never removed, since another
    process may be waiting on it) for the block: processes side by side take turns there."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
