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
# # 04 · Fixed-Point GAN — and Table I, Fig. 3
#
# Siddiquee et al. (2019): a StarGAN-style generator G(x, c) with a residual output tanh(x + G(x, c)),
# trained with WGAN-GP, domain classification, cycle and *conditional identity* losses, so that
# translating a slice to its own domain changes nothing (a fixed point) while translating a lesion
# slice to "healthy" removes the lesion. At test time every slice is translated to healthy.
#
# The notebook ends by assembling **Table I** (SSIM / PSNR per model and sequence: full images,
# cropped images, and the best model on the held-out external test set) and **Fig. 3** (the same
# slices reconstructed by every model).

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
channels: str = "all"  # "per_sequence" (paper) or "all" (one 3-channel model)
modes: list = ["cropped", "full"]  # gland-cropped and/or full slices
iterations: int = 250  # paper: 200k, learning-rate decay from the midpoint
batch_size: int = 8  # paper: 16
checkpoint_every: int = 100  # steps between resume points
model_config: dict = {"conv_dim": 16, "n_res_blocks": 2, "d_layers": 4, "g_lr": 0.001, "d_lr": 0.001, "n_critic": 2, "decay_from": 0.8}  # FPGANConfig fields: conv_dim (64), n_res_blocks (6), d_layers (6), n_critic (5), …
figure_slices: int = 3  # validation slices in Fig. 3

# %%
import pandas as pd

from adunet_lib.anomaly_models import stage
from adunet_lib.preprocessing.stage import load_tables
from adunet_lib.report.figures import save_figure, save_table
from adunet_lib.runner.context import RunContext

ctx = RunContext.create(run_dir, figure_dir, seed=seed, device=device, interactive=interactive)
cases, slices = load_tables(ctx)
settings = stage.settings_from(iterations, batch_size, checkpoint_every, seed)
settings

# %% [markdown]
# ## Train

# %%
trained = stage.train_models(ctx, "fpgan", slices, channels, modes, settings, model_config)
save_figure(stage.loss_figure(ctx, "fpgan"), ctx.figure("losses_fpgan.png"))
trained

# %% [markdown]
# ## Reconstruction quality, and the held-out test of the best model

# %%
metrics = pd.concat([stage.evaluate_models(ctx, ["fpgan"], slices, mode, "val", "internal") for mode in modes])
stage.save_metrics(ctx, "fpgan", metrics)
models = stage.trained_models(ctx, "cropped")
best = stage.best_model(ctx, models)
test = stage.evaluate_models(ctx, [best], slices, "cropped", "test", "external")
stage.save_metrics(ctx, best, pd.concat([pd.read_csv(ctx.models / best / "metrics.csv"), test]).drop_duplicates(
    ["model", "mode", "set", "split", "sequence"], keep="last"))
print("best model on cropped validation images:", best)

# %% [markdown]
# ## Table I

# %%
table = stage.table1(ctx, models)
save_table(table, ctx.figure("table1.csv"), ctx.figure("table1.md"), floatfmt=".4f",
           title="Table I — reconstruction quality (SSIM, PSNR in dB; data range 1)",
           note=stage.TABLE1_NOTE)
table

# %% [markdown]
# ## Fig. 3 — the same slices, every model

# %%
fig = stage.figure3(ctx, models, stage.figure3_slices(ctx, slices, figure_slices))
save_figure(fig, ctx.figure("fig3_reconstructions.png"))
