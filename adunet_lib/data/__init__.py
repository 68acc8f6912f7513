"""Data layer: images with geometry, cases, dataset readers and the layout registry, the synthetic
cohort, dataset checks.

The names below are loaded on first use, so that importing a light module of this package (the
layout registry, :mod:`adunet_lib.data.layouts`, which ``adunet --help`` lists layouts from) does not
load SimpleITK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adunet_lib.data.case import Case, LoadedCase, load_case
    from adunet_lib.data.image import Geometry, Image, read_image, write_image
    from adunet_lib.data.readers import Dataset, open_dataset, read_manifest, read_picai, read_prostate158

#: Exported name → the module of this package that defines it.
_EXPORTS = {"Case": "case", "LoadedCase": "case", "load_case": "case",
            "Geometry": "image", "Image": "image", "read_image": "image", "write_image": "image",
            "Dataset": "readers", "open_dataset": "readers", "read_manifest": "readers", "read_picai": "readers",
            "read_prostate158": "readers"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
