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
# # 02 · Dense and spatial autoencoders
#
# The paper's first reconstruction models (Baur et al. 2021): a 5×5 stride-2 convolutional encoder,
# a dense (vector) or spatial (feature-map) bottleneck and a mirrored decoder, trained with an L2
# loss on healthy slices only — from csPCa-negative cases, as the paper trains on patients without
# visible abnormality. Each model is trained on gland-cropped slices (the final setup) and on full
# slices (Table I's first block). A model folder that already holds `model.pt` trained with the
# same settings is loaded instead of retrained; an interrupted training resumes from its last
# checkpoint.

# %% tags=["parameters"]
# AutoencodersParams in adunet_lib/anomaly_models/params.py: change parameters there, then python -m adunet_lib.runner.params --sync
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
channels: str = "all"  # "per_sequence": one model per T2W/ADC/hbv (paper); "all": one 3-channel model
modes: list = ["cropped", "full"]  # gland-cropped slices (final setup) and/or full slices (Table I, block 1)
iterations: int = 80  # training steps per model
batch_size: int = 16  # slices per step
checkpoint_every: int = 50  # steps between resume points
models: dict = {"dense_ae": {}, "spatial_ae": {}}  # registered model → its hyperparameters ({} → AEConfig: SGD, lr 0.1, StepLR 30 epochs)

# %%
from adunet_lib.anomaly_models import stage
from adunet_lib.anomaly_models.params import AutoencodersParams
from adunet_lib.report.figures import save_figure
from adunet_lib.run_folder import RunContext

params = AutoencodersParams.from_namespace(globals())
ctx = RunContext.from_params(params)
cases, slices = ctx.tables()
stage.train_settings(params)

# %% [markdown]
# ## Train
# Every model named in `models`, each with its own hyperparameters, on the same budget.

# %%
trained = stage.run(ctx, params)
for name in stage.chosen_models(params):
    save_figure(stage.loss_figure(ctx, name), ctx.figure(f"losses_{name}.png"))
trained

# %% [markdown]
# ## Reconstruction quality on the validation split
# SSIM and PSNR (data range 1) on healthy validation slices; inside the gland for cropped images.

# %%
stage.measure(ctx, params, slices)

# %%
save_figure(stage.reconstructions(ctx, params, slices), ctx.figure(params.RECONSTRUCTIONS_FIGURE))
