"""One cache-key scheme for every stage: a fingerprint of resolved settings + inputs.

A stage's output is reused when the fingerprint recorded next to it equals the fingerprint of what
it would be made from now: the resolved settings (a JSON-able dict), the fingerprints of the
upstream outputs it reads (so a change anywhere upstream ripples down) and, for files that come
from outside the run, the SHA-256 of their content.

Example:
    >>> key = fingerprint({"kernel": 8}, upstream=["3f2a…"])  # doctest: +SKIP
    >>> is_current(record_path, key)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from adunet_lib.fileio import read_json, write_json


def file_key(path: str | Path) -> str:
    """SHA-256 of a file's content (of every file, with its name, for a folder such as a DICOM
    series), or ``missing``: a fixed label or a replaced image changes it, whatever its size and
    modification time say (tools that keep the time stamp, copies with ``cp -p`` or ``rsync -t``)."""
    path = Path(path)
    digest = hashlib.sha256()
    try:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if file != path:
                digest.update(f"\0{file.relative_to(path).as_posix()}\0".encode("utf-8"))
            with open(file, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
    except OSError:
        return "missing"
    return digest.hexdigest()


def fingerprint(settings: Any, upstream: Iterable[str] = (), files: Iterable[str | Path] = ()) -> str:
    """A 16-hex-digit key of ``settings`` (JSON-able), upstream fingerprints and outside files."""
    payload = {"settings": settings, "upstream": list(upstream), "files": [file_key(f) for f in files]}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def recorded(path: str | Path) -> dict[str, Any]:
    """The record at ``path`` (``{}`` when there is none or it is unreadable)."""
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def is_current(path: str | Path, key: str) -> bool:
    """Does the record at ``path`` carry fingerprint ``key``?"""
    return recorded(path).get("fingerprint") == key


def write_record(path: str | Path, key: str, **info: Any) -> Path:
    """Write ``{"fingerprint": key, **info}`` atomically (written last: it marks the output complete)."""
    return write_json(path, {"fingerprint": key, **info})
