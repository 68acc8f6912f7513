"""One cache-key scheme for every stage: a fingerprint of resolved settings + inputs.

A stage's output is reused when the fingerprint recorded next to it equals the fingerprint of what
it would be made from now: the resolved settings (a JSON-able dict), the fingerprints of the
upstream outputs it reads (so a change anywhere upstream ripples down) and, for files that come
from outside the run, their size and modification time.

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
    """Size and modification time of a file (or ``missing``): cheap, and changes when it is rewritten."""
    try:
        st = Path(path).stat()
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


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
