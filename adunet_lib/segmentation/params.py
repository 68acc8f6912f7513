"""Notebook 06's parameters (``segmentation`` block): see :mod:`adunet_lib.parameters`."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from adunet_lib.parameters import NotebookParams, param
from adunet_lib.vocabulary import MAP_NORMALISATIONS, table_variants

CONFIGURATIONS = ("2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres")


@dataclasses.dataclass(frozen=True)
class SegmentationParams(NotebookParams):
    """nnU-Net baseline and adU-Net variants: what to train, on which maps, with which budget.

    (The choices of ``loss``, ``checkpoint`` and ``lesion_threshold`` are
    ``segmentation.stage.LOSSES``, ``CHECKPOINTS`` and ``detection.LESION_THRESHOLDS``, spelled here to
    keep this module light; ``SegmentationSettings`` checks them again.)
    """

    NOTEBOOK: ClassVar[str] = "06_segmentation"

    variants: list = param(["baseline", "adunet_t2w", "adunet_adc", "adunet_dwi", "adunet_all"], "Table II rows")
    map_model: str = param("fpgan", "whose anomaly maps feed adU-Net (the paper: FP-GAN)")
    oracle_row: bool = param(True, "phantom runs: add the row with the oracle maps of the lesion-free twins, the "
                                   "headroom; ignored for real data")
    configuration: str = param("2d", "nnU-Net configuration (paper: 3d_fullres)",
                               check=lambda v: v in CONFIGURATIONS,
                               need="must be an nnU-Net configuration: " + ", ".join(CONFIGURATIONS))
    target_spacing: list = param([3.0, 1.5, 1.5], "[] → nnU-Net's own choice; e.g. [3.0, 1.0, 1.0] (z, y, x mm) "
                                                  "for a CPU demo",
                                 check=lambda v: v == [] or (len(v) == 3 and all(s > 0 for s in v)),
                                 need="must be [] or three positive spacings [z, y, x] in mm")
    epochs: int = param(8, "0 → nnU-Net's default (1000)", check=lambda v: v >= 0,
                        need="must be ≥ 0 (0: nnU-Net's 1000)")
    iterations_per_epoch: int = param(10, "0 → nnU-Net's default (250)", check=lambda v: v >= 0,
                                      need="must be ≥ 0 (0: nnU-Net's 250)")
    val_iterations_per_epoch: int = param(2, "0 → nnU-Net's default (50)", check=lambda v: v >= 0,
                                          need="must be ≥ 0 (0: nnU-Net's 50)")
    folds: list = param([0], "folds to train; fold 0's validation cases → the internal validation set",
                        check=lambda v: bool(v) and all(isinstance(f, int) and f >= 0 for f in v),
                        need="must list at least one fold number ≥ 0")
    batch_size: int = param(6, "0 → nnU-Net's planned batch size", check=lambda v: v >= 0,
                            need="must be ≥ 0 (0: nnU-Net's planned batch size)")
    mirroring: bool = param(False, "test-time mirroring (nnU-Net default and paper: True)")
    base_dataset_id: int = param(500, "nnU-Net dataset ids base_dataset_id + the variant's dataset_offset "
                                      "(0..5)",
                                 check=lambda v: 1 <= v <= 995, need="must be between 1 and 995 (ids id..id+4 < 1000)")
    keep_softmax: bool = param(False, "also write <case>_softmax.mha next to each detection map")
    num_gpus: int = param(1, "GPUs per nnU-Net training, data-parallel as nnU-Net's own -num_gpus (needs device: "
                             "cuda)", check=lambda v: v >= 1, need="must be ≥ 1")
    map_normalisation: str = param("noNorm", "nnU-Net normalisation of the map channels: noNorm (maps share one "
                                             "scale), zscore, CT, rescale_to_0_1",
                                   check=lambda v: v in MAP_NORMALISATIONS,
                                   need="must be one of " + ", ".join(MAP_NORMALISATIONS))
    loss: str = param("dice_ce", "nnU-Net training loss: dice_ce (nnU-Net's own) or focal_ce (PI-CAI's baseline: "
                                 "0.5 focal + 0.5 CE)", check=lambda v: v in ("dice_ce", "focal_ce"),
                      need="must be dice_ce (nnU-Net's) or focal_ce (PI-CAI's baseline)")
    checkpoint: str = param("final", "weights that predict: final (nnU-Net's default) or best (best EMA pseudo-Dice, "
                                     "as PI-CAI's baseline)", check=lambda v: v in ("final", "best"),
                            need="must be final or best")
    lesion_threshold: str = param("dynamic-fast", "detection-map candidates: dynamic-fast (report_guided_annotation's "
                                                  "default) or dynamic (PI-CAI's evaluation)",
                                  check=lambda v: v in ("dynamic-fast", "dynamic"),
                                  need="must be dynamic-fast or dynamic (report_guided_annotation)")

    def table_variants(self) -> list[str]:
        """The variants this run trains and tabulates: ``variants``, plus the oracle row on phantoms."""
        return table_variants(self.variants, self.oracle_row, (self.internal_data, self.external_data))
