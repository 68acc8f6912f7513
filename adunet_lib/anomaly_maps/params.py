"""Notebook 05's parameters (``anomaly_maps`` block): see :mod:`adunet_lib.parameters`."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from adunet_lib.parameters import NotebookParams, param

#: ``held_out_maps``' choices (only read when the run has leak-free map parts).
HELD_OUT_MAPS = ("parts", "full")


@dataclasses.dataclass(frozen=True)
class MapsParams(NotebookParams):
    """Anomaly maps a = Φ(|x − G(x)|) on the T2W grid, their quality and Fig. 4."""

    NOTEBOOK: ClassVar[str] = "05_anomaly_maps"

    models: list = param([], "models to make maps with; [] → every model trained in this run (notebooks 02–04), "
                             "plus the oracle on phantoms")
    blur_kernel: int = param(4, "Φ's kernel size in model-slice pixels (paper: 8 at 128² slices)",
                             check=lambda v: v >= 1, need="must be at least 1 pixel")
    held_out_maps: str = param("parts", "leak-free maps only: who maps the cases outside the training split: parts "
                                        "(the mean of the part models' maps, whose maps nnU-Net learns from) or "
                                        "full (the model trained on every part)",
                               check=lambda v: v in HELD_OUT_MAPS, need="must be one of " + ", ".join(HELD_OUT_MAPS))
    fig4_models: list = param(["fpgan", "ddpm", "oracle"], "reconstructions shown in Fig. 4 (the paper: FP-GAN and "
                                                           "diffusion; oracle: phantoms only)")
    fig4_patients: int = param(4, "patients in Fig. 4", check=lambda v: v >= 0, need="must be ≥ 0")
