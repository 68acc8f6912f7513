"""No code runs from a run folder: nnU-Net's pickles are read with an allow-list of globals.

nnU-Net v2 loads its checkpoints with ``torch.load(..., weights_only=False)`` and its preprocessed
case properties with :func:`pickle.load`. A run folder is shared and copied between colleagues, so a
replaced ``checkpoint_final.pth`` or ``<case>.pkl`` would run arbitrary code when ``adunet predict``
or a resumed notebook 06 loads it. :func:`install` (called by the nnU-Net worker process before any
step) makes both loads safe:

* ``torch.load`` is always called with ``weights_only=True`` (PyTorch's restricted unpickler), with
  the few numpy globals nnU-Net's checkpoints hold (its training log keeps numpy scalars) allowed;
* batchgenerators' ``load_pickle`` (what nnU-Net calls) goes through :class:`RestrictedUnpickler`,
  which builds containers, numbers, strings and numpy arrays and nothing else.

A file that needs anything else is refused with :class:`UnsafeFileError`, one line naming the file;
the object it asks for is never imported, let alone called.
"""

from __future__ import annotations

import contextlib
import pickle
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adunet_lib.errors import AdunetError

#: Exactly what nnU-Net's checkpoints and properties files contain besides containers and numbers.
_ALLOWED: frozenset[tuple[str, str]] = frozenset({
    ("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice"),
    ("builtins", "complex"), ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("torch", "device"),
})


class UnsafeFileError(AdunetError):
    """A file in a run folder asks to build an object that is not allowed (possible code execution)."""

    def __init__(self, path: str | Path, what: str):
        super().__init__(f"{path}: refused to load: it asks for {what}, which nnU-Net's files never contain "
                         f"(a replaced or crafted file can run code when loaded); delete it and rerun the step "
                         f"that writes it")


def _allowed(module: str, name: str) -> bool:
    # numpy's per-dtype classes (numpy.dtypes.Float64DType …) are plain type objects
    return (module, name) in _ALLOWED or (module == "numpy.dtypes" and name.endswith("DType"))


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only allow-listed globals (see :data:`_ALLOWED`)."""

    def __init__(self, file: Any, path: str | Path = "<stream>"):
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if not _allowed(module, name):
            raise UnsafeFileError(self._path, f"{module}.{name}")
        return super().find_class(module, name)


def load_pickle(path: str | Path, mode: str = "rb") -> Any:
    """A drop-in for batchgenerators' ``load_pickle`` that refuses anything but data."""
    with open(path, mode) as fh:
        return RestrictedUnpickler(fh, path).load()


def _numpy_globals() -> list[Any]:
    import numpy as np

    found: list[Any] = [np.ndarray, np.dtype]
    for module_name in ("numpy._core.multiarray", "numpy.core.multiarray"):
        module = sys.modules.get(module_name)
        if module is None:
            with contextlib.suppress(ImportError):
                module = __import__(module_name, fromlist=["scalar"])
        if module is not None:
            found += [getattr(module, n) for n in ("scalar", "_reconstruct") if hasattr(module, n)]
    found += [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    return found


def safe_torch_load(original: Callable[..., Any]) -> Callable[..., Any]:
    """``torch.load`` forced to ``weights_only=True`` (whatever the caller asked for)."""
    import torch

    allowed = _numpy_globals()

    def load(f: Any, map_location: Any = None, *args: Any, weights_only: Any = None, **kwargs: Any) -> Any:
        kwargs.pop("pickle_module", None)  # weights_only does not take one
        with torch.serialization.safe_globals(allowed):
            try:
                return original(f, map_location, *args, weights_only=True, **kwargs)
            except pickle.UnpicklingError as exc:
                found = re.search(r"GLOBAL:? ?([\w.]+)", str(exc))  # PyTorch names the global it blocked
                raise UnsafeFileError(f if isinstance(f, (str, Path)) else "<stream>",
                                      found.group(1) if found else "an object that is not data") from None

    load.__wrapped__ = original  # type: ignore[attr-defined]
    return load


def install() -> None:
    """Make every nnU-Net load in this process safe (idempotent). Call before importing nnunetv2."""
    import torch
    from batchgenerators.utilities import file_and_folder_operations as ffo

    if not hasattr(torch.load, "__wrapped__"):
        torch.load = safe_torch_load(torch.load)
    ffo.load_pickle = load_pickle
    for name, module in list(sys.modules.items()):  # modules that bound the name before we got here
        if name.startswith("nnunetv2") and getattr(module, "load_pickle", None) is not None:
            module.load_pickle = load_pickle
