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
# --- common: every notebook declares these ---
run_dir: str = "runs/demo"  # run folder (relative paths are taken from the project root)
figure_dir: str = "figures/demo"  # where tables and figures of this params file go
internal_data: str = "synthetic"  # "synthetic", a PI-CAI folder or a manifest .csv: training + validation
external_data: str = "synthetic"  # "synthetic", a Prostate158 / PI-CAI folder, a manifest, or "none"
seed: int = 0  # one seed for every random choice of the run
device: str = "cpu"  # cpu, cuda, cuda:N or mps
interactive: bool = True  # widgets in JupyterLab; static figures when false (headless runs)
# --- this notebook: defaults = params/demo.yaml (CPU demo); the paper's settings are in params/paper.yaml ---
models: list = ["dense_ae", "spatial_ae"]  # registered model names
channels: str = "all"  # "per_sequence": one model per T2W/ADC/hbv (paper); "all": one 3-channel model
modes: list = ["cropped", "full"]  # gland-cropped slices (final setup) and/or full slices (Table I, block 1)
iterations: int = 80  # training steps per model
batch_size: int = 16  # slices per step
checkpoint_every: int = 50  # steps between resume points
optimizer: str = "sgd"  # paper: lr 0.1; Adam at 0.1 collapses (see AEConfig), SGD + momentum trains
lr: float = 0.1  # initial learning rate
lr_step_epochs: int = 30  # StepLR step size in epochs (paper: 30)
model_config: dict = {}  # any other AEConfig field, e.g. {"filters": [32, 64, 128, 128]}

# %%
import pandas as pd

from adunet_lib.anomaly_models import stage
from adunet_lib.preprocessing.stage import load_tables
from adunet_lib.report.figures import save_figure
from adunet_lib.runner.context import RunContext

ctx = RunContext.create(run_dir, figure_dir, seed=seed, device=device, interactive=interactive)
cases, slices = load_tables(ctx)
settings = stage.settings_from(iterations, batch_size, checkpoint_every, seed)
config = {"optimizer": optimizer, "lr": lr, "lr_step_epochs": lr_step_epochs, **model_config}
settings

# %% [markdown]
# ## Train

# %%
trained = [stage.train_models(ctx, name, slices, channels, modes, settings, config) for name in models]
for name in models:
    save_figure(stage.loss_figure(ctx, name), ctx.figure(f"losses_{name}.png"))
pd.concat(trained)

# %% [markdown]
# ## Reconstruction quality on the validation split
# SSIM and PSNR (data range 1) on healthy validation slices; inside the gland for cropped images.

# %%
metrics = {name: pd.concat([stage.evaluate_models(ctx, [name], slices, mode, "val", "internal") for mode in modes])
           for name in models}
for name, frame in metrics.items():
    stage.save_metrics(ctx, name, frame)
pd.concat(metrics.values())

# %%
fig = stage.figure3(ctx, models, stage.figure3_slices(ctx, slices))
save_figure(fig, ctx.figure("reconstructions_autoencoders.png"))
