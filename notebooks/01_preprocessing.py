# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Preprocessing
#
# From bpMRI studies (T2W, ADC, high-b DWI "hbv") to the 2D slices the anomaly models learn from —
# the paper's Fig. 2: ADC/hbv are brought onto the T2W grid, a square box around the prostate
# (from the PZ/TZ masks) is cropped, the background outside the gland is masked, and each sequence
# is normalised to [0, 1] (`intensity_reference`: the field of view's 0.5/99.5 percentiles, which a
# lesion cannot set, or the gland's; the paper does not say). Every slice keeps its T2W slice index so
# anomaly maps can be put back into the original T2W domain later (notebook 05).
#
# With `internal_data: synthetic` this notebook first writes a phantom cohort in the PI-CAI layout
# (`adunet synth`), which then goes through exactly the same reader as real data.
#
# Everything later notebooks need goes into the run folder here — every case's sequences and masks
# on its T2W grid (`cases/`), the model slices (`preprocessed/`), the case and slice tables and the
# folds (`splits.json`) — so the run survives moving or unmounting the source data.

# %% tags=["parameters"]
# PreprocessingParams in adunet_lib/preprocessing/params.py: change parameters there, then python -m adunet_lib.runner.params --sync
# --- common: every notebook declares these ---
run_dir: str = "runs/demo"  # run folder (relative paths are taken from the project root)
figure_dir: str = "figures/demo"  # where tables and figures of this params file go
internal_data: str = "synthetic"  # "synthetic", a PI-CAI folder or a manifest .csv: training + validation
external_data: str = "synthetic"  # "synthetic", a Prostate158 / PI-CAI folder, a manifest, or "none"
seed: int = 0  # seeds training: model weights, batches, augmentation, nnU-Net
data_seed: int = -1  # draws the synthetic cohort, the folds and the bootstrap (-1: the same as seed)
device: str = "cpu"  # cpu, cuda, cuda:N or mps
interactive: bool = True  # widgets in JupyterLab; static figures when false (headless runs)
# --- this notebook: defaults = params/demo.yaml (CPU demo); the paper's settings are in params/paper.yaml ---
synth_internal_cases: int = 24  # synthetic internal cohort size (used when internal_data is synthetic)
synth_external_cases: int = 12  # synthetic external cohort size
slice_size: int = 64  # in-plane size of the model slices (paper: 128)
crop_margin_mm: float = 8.0  # margin around the gland bounding box
intensity_reference: str = "field_of_view"  # cropped slices map the 0.5/99.5 percentiles of the "field_of_view" or of the "gland" to 0 and 1 (the paper is silent)
n_folds: int = 3  # cross-validation folds of the internal set, by patient, stratified by csPCa; fold 0 → the validation split
splits: str = ""  # published folds instead: a JSON in nnU-Net's splits_final.json format ("" → make folds)
lesion_sources: list = ["human_expert/resampled", "human_expert/Pooch25", "AI/Bosma22a"]  # picai_labels lesion masks, first found wins
anomaly_cohort: str = "training_split"  # who trains the reconstruction models: "training_split" (every training case) or "paper" (N healthy patients)
anomaly_patients: int = 100  # "paper" cohort size in patients (the paper: 100 patients without visible abnormality)
leak_free_maps: int = 0  # 0 → off (the paper); k ≥ 2: cross-fit, each training case's map from models blind to it (k parts)
synth_external_layout: str = "prostate158"  # layout of the synthetic external set (the paper's external set is Prostate158)
synth_without_masks: int = 6  # every k-th synthetic internal study has no anatomical mask, like the real px0218 (0: none)
mask_source: dict = {"internal": "files_then_predicted", "external": "predicted"}  # crop masks per set: "files" (the data's own), "predicted" (the paper: the zone model's for every case), "files_then_predicted", or the pretrained gland model's whole gland (pip install -e ".[gland]"): "pretrained_gland" (every case) / "files_then_pretrained"
zone_training_data: list = []  # extra data sets whose zonal masks also train the zone model (the paper: ProstateX)
zone_model: dict = {"configuration": "2d", "target_spacing": [3.0, 1.5, 1.5], "epochs": 12, "iterations_per_epoch": 25, "val_iterations_per_epoch": 2, "batch_size": 8, "n_folds": 3, "folds": [0], "mirroring": False}  # nnU-Net zone model, trained when a set's masks are predicted (paper: nnU-Net's defaults, 3d_fullres, 5 folds); keys of ZoneSettings
on_case_error: str = "fail"  # "fail" stops at the first bad case; "skip" lists it and goes on
show_cases: int = 3  # cases drawn in the preprocessing figure

# %%
from adunet_lib.preprocessing import stage
from adunet_lib.preprocessing.params import PreprocessingParams
from adunet_lib.preprocessing.pipeline import PreprocessConfig
from adunet_lib.report.figures import preprocessing_figure, save_figure
from adunet_lib.report.viewer import case_viewer
from adunet_lib.run_folder import RunContext
from adunet_lib.zones import stage as zone_stage
from adunet_lib.zones.masks import quality_summary
from adunet_lib.zones.model import ZoneSettings

params = PreprocessingParams.from_namespace(globals())
ctx = RunContext.from_params(params, reads_inputs=True)
config = PreprocessConfig(slice_size=params.slice_size, crop_margin_mm=params.crop_margin_mm,
                          intensity_reference=params.intensity_reference)
print(ctx.run_dir, config)

# %% [markdown]
# ## Data
# Each set is opened with the reader its layout needs (PI-CAI, Prostate158 or a manifest).

# %%
datasets = stage.resolve_datasets(
    ctx, {"internal": params.internal_data, "external": params.external_data},
    {"internal": params.synth_internal_cases, "external": params.synth_external_cases},
    synth_layouts={"external": params.synth_external_layout}, lesion_sources=params.lesion_sources,
    without_masks=params.synth_without_masks)
for name, ds in datasets.items():
    print(f"{name}: {len(ds)} cases of {len({c.patient for c in ds})} patients ({ds.layout} layout) from {ds.root}")
    for warning in ds.warnings:
        print("warning:", warning)

# %% [markdown]
# ## Zone masks: files or the zone model
# The crop needs a prostate mask. The paper predicts PZ/TZ masks with an nnU-Net zone model for every
# study (`mask_source: predicted`); `files` uses the data's own masks, `files_then_predicted` predicts
# only where a study has none. The zone model trains on the internal cases' zonal masks (plus
# `zone_training_data`) in folds by patient; held-out folds give its Dice, and `zones.csv` lists Dice per
# zone and how far the crop box moves against the reference masks. A predicted gland that is empty or
# outside `min_gland_ml`–`max_gland_ml` stops its case (or is skipped with `on_case_error: skip`).
# `pretrained_gland` / `files_then_pretrained` take the whole gland of a pretrained model instead (`lavlab-taps`,
# nothing to train; the extra `pip install -e ".[gland]"`): the crop needs the gland only, but those cases
# have no PZ/TZ split, so they are absent from the per-zone rows of `zones.csv` and map quality.

# %%
zones = zone_stage.run_zone_stage(
    ctx, datasets, params.mask_source, ZoneSettings.from_params(params.zone_model, params.seed, ctx.data_seed),
    extra=[stage.open_extra(p) for p in params.zone_training_data], margin_mm=params.crop_margin_mm,
    on_error=params.on_case_error)
stage.write_zone_quality(ctx, zones.quality)
quality_summary(zones.quality)

# %% [markdown]
# ## Crop, mask, normalise, slice
# Cases already preprocessed with the same settings are reused, so a re-run resumes.

# %%
tables = stage.preprocess_sets(ctx, zones.datasets, config, n_folds=params.n_folds, on_error=params.on_case_error,
                               splits_file=params.splits or None, anomaly_cohort=params.anomaly_cohort,
                               anomaly_patients=params.anomaly_patients, leak_free_maps=params.leak_free_maps,
                               mask_origins=zones.mask_origins, skipped=zones.skipped)
for case_id, message in tables.skipped:
    print("skipped:", message)
stage.summary(tables.cases)

# %% [markdown]
# ## Where the lesion and crop masks came from
# PI-CAI: the first of `lesion_sources` that has the study; Prostate158: the tumour file, or none
# for a csPCa-negative case (a labelled negative with an empty mask). Crop masks: the data's files or
# the zone model's predictions (`mask_source`).

# %%
stage.label_sources(tables.cases)

# %%
stage.mask_sources(tables.cases)

# %% [markdown]
# ## Fig. 2 — the preprocessing, case by case
# Original slice with the gland (green), lesion (red) and crop box (yellow); the cropped slice;
# the masked model input.

# %%
rows = stage.figure_rows(ctx, tables.cases, params.show_cases)
save_figure(preprocessing_figure(rows), ctx.figure("fig2_preprocessing.png"))

# %% [markdown]
# ## Browse a case
# In JupyterLab: a slice slider, a sequence selector and overlays. Headless: a static montage.

# %%
case_id, volumes, overlays = stage.viewer_volumes(ctx, tables.cases)
case_viewer(volumes, overlays, interactive=ctx.interactive, title=case_id, save_to=ctx.figure("viewer_preprocessing.png"))
