"""Notebook 01's parameters (``preprocessing`` block): see :mod:`adunet_lib.parameters`."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from adunet_lib.parameters import NotebookParams, param
from adunet_lib.vocabulary import ANOMALY_COHORTS


@dataclasses.dataclass(frozen=True)
class PreprocessingParams(NotebookParams):
    """The data sets, the zone masks, the crop/mask/normalise/slice settings and the folds."""

    NOTEBOOK: ClassVar[str] = "01_preprocessing"

    synth_internal_cases: int = param(24, "synthetic internal cohort size (used when internal_data is synthetic)",
                                      check=lambda v: v >= 2, need="must be at least 2")
    synth_external_cases: int = param(12, "synthetic external cohort size", check=lambda v: v >= 1,
                                      need="must be at least 1")
    slice_size: int = param(64, "in-plane size of the model slices (paper: 128)", check=lambda v: v >= 8,
                            need="must be at least 8 (pixels per side)")
    crop_margin_mm: float = param(8.0, "margin around the gland bounding box", check=lambda v: v >= 0,
                                  need="must be ≥ 0")
    intensity_reference: str = param("field_of_view", 'cropped slices map the 0.5/99.5 percentiles of the '
                                                      '"field_of_view" or of the "gland" to 0 and 1 '
                                                      '(the paper is silent)',
                                     check=lambda v: v in ("gland", "field_of_view"),
                                     need="must be 'gland' or 'field_of_view'")
    n_folds: int = param(3, "cross-validation folds of the internal set, by patient, stratified by csPCa; fold 0 → "
                            "the validation split", check=lambda v: v >= 2,
                         need="must be at least 2 (fold 0 is the validation split)")
    splits: str = param("", 'published folds instead: a JSON in nnU-Net\'s splits_final.json format ("" → make '
                            'folds)')
    lesion_sources: list = param(["human_expert/resampled", "human_expert/Pooch25", "AI/Bosma22a"],
                                 "picai_labels lesion masks, first found wins")
    anomaly_cohort: str = param("training_split", 'who trains the reconstruction models: "training_split" (every '
                                                  'training case) or "paper" (N healthy patients)',
                                check=lambda v: v in ANOMALY_COHORTS,
                                need="must be one of " + ", ".join(ANOMALY_COHORTS))
    anomaly_patients: int = param(100, '"paper" cohort size in patients (the paper: 100 patients without visible '
                                       'abnormality)', check=lambda v: v >= 1, need="must be at least 1")
    leak_free_maps: int = param(0, "0 → off (the paper); k ≥ 2: cross-fit, each training case's map from models "
                                   "blind to it (k parts)", check=lambda v: v == 0 or v >= 2,
                                need="must be 0 (off) or at least 2 parts")
    synth_external_layout: str = param("prostate158", "layout of the synthetic external set (the paper's external "
                                                      "set is Prostate158)")
    synth_without_masks: int = param(6, "every k-th synthetic internal study has no anatomical mask, like the real "
                                        "px0218 (0: none)", check=lambda v: v >= 0,
                                     need="must be ≥ 0 (0: every study has masks)")
    mask_source: dict = param({"internal": "files_then_predicted", "external": "predicted"},
                              'crop masks per set: "files" (the data\'s own), "predicted" (the paper: the zone '
                              'model\'s for every case), "files_then_predicted", or the pretrained gland model\'s '
                              'whole gland (pip install -e ".[gland]"): "pretrained_gland" (every case) / '
                              '"files_then_pretrained"')
    zone_training_data: list = param([], "extra data sets whose zonal masks also train the zone model (the paper: "
                                         "ProstateX)")
    zone_model: dict = param({"configuration": "2d", "target_spacing": [3.0, 1.5, 1.5], "epochs": 12,
                              "iterations_per_epoch": 25, "val_iterations_per_epoch": 2, "batch_size": 8,
                              "n_folds": 3, "folds": [0], "mirroring": False},
                             "nnU-Net zone model, trained when a set's masks are predicted (paper: nnU-Net's defaults, "
                             "3d_fullres, 5 folds); keys of ZoneSettings")
    on_case_error: str = param("fail", '"fail" stops at the first bad case; "skip" lists it and goes on',
                               check=lambda v: v in ("fail", "skip"), need="must be 'fail' or 'skip'")
    show_cases: int = param(3, "cases drawn in the preprocessing figure", check=lambda v: v >= 0, need="must be ≥ 0")
