# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 03 · Diffusion model with classifier guidance
#
# Wolleb et al. (2022): a DDPM (1000 steps, linear schedule) learns healthy slices; a noise-aware
# classifier learns healthy vs lesion on noised slices. The pseudo-healthy image comes from a
# deterministic DDIM encoding to noise level L, then a DDIM decoding guided toward "healthy" with
# scale s. `ddim_steps` sets how many DDIM steps span 0..L — the "fast guided diffusion" knob.
#
# The classifier: `classifier_design: wolleb` (paper.yaml) is the one of Wolleb et al.'s code — attention
# pooling after a middle block — with which adunet's DDPM removes as much of a lesion as their code at
# equal budget; `adunet` (the demo's) is MONAI's encoder with a perceptron head, which removed a quarter to
# a half as much (figures/bench/parity_ddpm_classifier.md).

# %% tags=["parameters"]
# DiffusionParams in adunet_lib/anomaly_models/params.py: change parameters there, then python -m adunet_lib.runner.params --sync
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
modes: list = ["cropped"]  # gland-cropped and/or full slices
iterations: int = 120  # DDPM training steps (paper: 400k)
batch_size: int = 16  # balanced slices per step: the DDPM learns from the healthy half (paper: 10)
checkpoint_every: int = 40  # steps between resume points
models: dict = {"ddpm": {"channels": [16, 32, 64, 64], "attention_resolutions": [], "num_res_blocks": 1, "num_head_channels": 32, "norm_num_groups": 16, "classifier_channels": [16, 32, 64, 64], "classifier_attention_resolutions": [], "classifier_num_res_blocks": 1, "lr": 0.001, "classifier_lr": 0.001, "classifier_max_t": 500, "noise_level": 250, "ddim_steps": 10}}  # registered model → hyperparameters (DDPMConfig: channels, noise_level L, guidance_scale s, ddim_steps, …)

# %%
from adunet_lib.anomaly_models import stage
from adunet_lib.anomaly_models.params import DiffusionParams
from adunet_lib.report.figures import save_figure
from adunet_lib.run_folder import RunContext

params = DiffusionParams.from_namespace(globals())
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
