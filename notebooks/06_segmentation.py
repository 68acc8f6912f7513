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
# # 06 · nnU-Net baseline and adU-Net
#
# adU-Net concatenates anomaly maps to the three sequences as extra nnU-Net input channels. Five
# models are compared, each a real **nnU-Net v2** run (its own planning, preprocessing, training and
# inference): the baseline on T2W, ADC and hbv, and adU-Net with the T2W, ADC, DWI (hbv) or all
# three maps. Channels are named as the PI-CAI baseline names them (picai_prep): T2W and HBV get
# nnU-Net's per-case z-score, ADC is named `CT` so it is normalised over the whole dataset; maps get
# `noNorm` by default (`map_normalisation`): they are already on a scale shared by all cases, which
# per-image z-scoring would destroy (see `adunet_lib/vocabulary.py`).
#
# nnU-Net's environment variables point into this run's `nnunet/` folder, for these calls only.
# Cross-validation folds are notebook 01's (fold 0 = the validation split): the run's `splits.json`
# becomes each dataset's `splits_final.json`. Softmax outputs become PI-CAI detection maps on each case's T2W grid.

# %% tags=["parameters"]
# SegmentationParams in adunet_lib/segmentation/params.py: change parameters there, then python -m adunet_lib.runner.params --sync
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
variants: list = ["baseline", "adunet_t2w", "adunet_adc", "adunet_dwi", "adunet_all"]  # Table II rows
map_model: str = "fpgan"  # whose anomaly maps feed adU-Net (the paper: FP-GAN)
oracle_row: bool = True  # phantom runs: add the row with the oracle maps of the lesion-free twins, the headroom; ignored for real data
configuration: str = "2d"  # nnU-Net configuration (paper: 3d_fullres)
target_spacing: list = [3.0, 1.5, 1.5]  # [] → nnU-Net's own choice; e.g. [3.0, 1.0, 1.0] (z, y, x mm) for a CPU demo
epochs: int = 8  # 0 → nnU-Net's default (1000)
iterations_per_epoch: int = 10  # 0 → nnU-Net's default (250)
val_iterations_per_epoch: int = 2  # 0 → nnU-Net's default (50)
folds: list = [0]  # folds to train; fold 0's validation cases → the internal validation set
batch_size: int = 6  # 0 → nnU-Net's planned batch size
mirroring: bool = False  # test-time mirroring (nnU-Net default and paper: True)
base_dataset_id: int = 500  # nnU-Net dataset ids base_dataset_id + the variant's dataset_offset (0..5)
keep_softmax: bool = False  # also write <case>_softmax.mha next to each detection map
num_gpus: int = 1  # GPUs per nnU-Net training, data-parallel as nnU-Net's own -num_gpus (needs device: cuda)
map_normalisation: str = "noNorm"  # nnU-Net normalisation of the map channels: noNorm (maps share one scale), zscore, CT, rescale_to_0_1
loss: str = "dice_ce"  # nnU-Net training loss: dice_ce (nnU-Net's own) or focal_ce (PI-CAI's baseline: 0.5 focal + 0.5 CE)
checkpoint: str = "final"  # weights that predict: final (nnU-Net's default) or best (best EMA pseudo-Dice, as PI-CAI's baseline)
lesion_threshold: str = "dynamic-fast"  # detection-map candidates: dynamic-fast (report_guided_annotation's default) or dynamic (PI-CAI's evaluation)

# %%
from adunet_lib.run_folder import RunContext
from adunet_lib.segmentation import stage
from adunet_lib.segmentation.params import SegmentationParams

params = SegmentationParams.from_namespace(globals())
ctx = RunContext.from_params(params)
stage.settings_for(params)

# %% [markdown]
# ## Train and predict every variant
# Each step is skipped when its outputs exist for the same inputs and settings, so a re-run resumes.

# %%
timings = stage.run(ctx, params)
timings.round(1)

# %% [markdown]
# ## Detection maps written

# %%
stage.detection_counts(ctx)
