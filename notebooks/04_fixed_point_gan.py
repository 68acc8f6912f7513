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
# FixedPointGANParams in adunet_lib/anomaly_models/params.py: change parameters there, then python -m adunet_lib.runner.params --sync
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
channels: str = "all"  # "per_sequence" (paper) or "all" (one 3-channel model)
modes: list = ["cropped", "full"]  # gland-cropped and/or full slices
iterations: int = 250  # paper: 200k, learning-rate decay from the midpoint
batch_size: int = 8  # paper: 16
checkpoint_every: int = 100  # steps between resume points
models: dict = {"fpgan": {"conv_dim": 16, "n_res_blocks": 2, "d_layers": 4, "g_lr": 0.001, "d_lr": 0.001, "n_critic": 2, "decay_from": 0.8}}  # registered model → hyperparameters (FPGANConfig: conv_dim 64, n_res_blocks 6, d_layers 6, n_critic 5, …)
figure_slices: int = 3  # validation slices in Fig. 3

# %%
from adunet_lib.anomaly_models import stage
from adunet_lib.anomaly_models.params import FixedPointGANParams
from adunet_lib.report.figures import save_figure, save_table
from adunet_lib.run_folder import RunContext

params = FixedPointGANParams.from_namespace(globals())
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

# %% [markdown]
# ## The held-out test of the best model
# Table I's last block: the model with the best mean SSIM on cropped validation images (the paper
# picked FP-GAN this way), measured on the external test set.

# %%
best = stage.best_model(ctx)
print("best model on cropped validation images:", best)
stage.measure_on_test(ctx, best, slices)

# %% [markdown]
# ## Table I
# Every model trained in this run (notebooks 02–04), in the registry's order.

# %%
table = stage.table1(ctx)
save_table(table, ctx.figure("table1.csv"), ctx.figure("table1.md"), floatfmt=".4f",
           title="Table I — reconstruction quality (SSIM, PSNR in dB; data range 1)",
           note=stage.table1_note(table))
table

# %% [markdown]
# ## Fig. 3 — the same slices, every model

# %%
save_figure(stage.figure3_of(ctx, params, slices), ctx.figure("fig3_reconstructions.png"))
