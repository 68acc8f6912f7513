"""Progress bars that work both in JupyterLab (widgets) and in headless papermill runs (text)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any


def headless() -> bool:
    """True inside ``adunet reproduce`` (the runner sets ``ADUNET_HEADLESS=1`` for its kernels)."""
    return os.environ.get("ADUNET_HEADLESS") == "1"


def progress(iterable: Iterable[Any] | None = None, desc: str = "", enabled: bool = True, **kwargs: Any):
    """A tqdm bar: widget-based in an interactive notebook, plain text (throttled) when headless.

    Example:
        >>> for case in progress(cases, desc="maps"):  # doctest: +SKIP
        ...     ...
    """
    if headless():
        from tqdm.std import tqdm

        kwargs.setdefault("mininterval", 10.0)
        kwargs.setdefault("ascii", True)
    else:
        from tqdm.auto import tqdm
    return tqdm(iterable, desc=desc, disable=not enabled, dynamic_ncols=True, **kwargs)
