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
# # 05 · Anomaly maps in the original T2W domain
#
# For every case of the training, validation and external test sets and every trained model:
# a = Φ(|x − G(x)|) with Φ a box blur (`blur_kernel` pixels on the model slice), the background
# outside the gland masked to 0, slices put back in their T2W slice order (slices without prostate
# are 0), the crop undone and the map resampled to the case's **original T2W grid** — origin,
# direction and spacing identical to the T2W image — so it can be an nnU-Net input channel next to it.
#
# Beyond the paper: how good are the maps, voxel by voxel, against the lesion masks?

# %% tags=["parameters"]
# MapsParams in adunet_lib/anomaly_maps/params.py: change parameters there, then python -m adunet_lib.runner.params --sync
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
models: list = []  # models to make maps with; [] → every model trained in this run (notebooks 02–04), plus the oracle on phantoms
blur_kernel: int = 4  # Φ's kernel size in model-slice pixels (paper: 8 at 128² slices)
held_out_maps: str = "parts"  # leak-free maps only: who maps the cases outside the training split: parts (the mean of the part models' maps, whose maps nnU-Net learns from) or full (the model trained on every part)
fig4_models: list = ["fpgan", "ddpm", "oracle"]  # reconstructions shown in Fig. 4 (the paper: FP-GAN and diffusion; oracle: phantoms only)
fig4_patients: int = 4  # patients in Fig. 4

# %%
from adunet_lib.anomaly_maps import stage
from adunet_lib.anomaly_maps.maps import case_overlays, overlay_labels
from adunet_lib.anomaly_maps.params import MapsParams
from adunet_lib.report.figures import save_figure, save_table
from adunet_lib.report.viewer import case_viewer
from adunet_lib.run_folder import RunContext

params = MapsParams.from_namespace(globals())
ctx = RunContext.from_params(params)
cases, slices = ctx.tables()

# %% [markdown]
# ## Maps for every case

# %%
maps = stage.run(ctx, params)
maps.made.groupby(["model", "set"]).size()

# %% [markdown]
# ## Map quality against the lesion masks
# Voxel AUROC / AUPRC inside the gland and per zone; the Dice threshold is chosen on validation cases
# and applied unchanged to the external test cases.

# %%
quality = stage.map_quality(ctx, maps.models, cases)
save_table(quality, ctx.figure("map_quality.csv"))
quality.pivot_table(index=["model", "sequence"], columns=["set", "zone"], values="auroc").round(3)

# %% [markdown]
# ## Fig. 4

# %%
save_figure(stage.figure4_of(ctx, params, maps, cases, slices), ctx.figure("fig4_anomaly_maps.png"))

# %% [markdown]
# ## Browse a case with its anomaly map (ADC map shown)

# %%
case = stage.viewer_case(cases)
volumes, overlays = case_overlays(ctx, maps.shown[0], case["set"], case["case_id"])
case_viewer(volumes, overlays, interactive=ctx.interactive, title=f"{case['case_id']} ({maps.shown[0]})",
            save_to=ctx.figure("viewer_anomaly_maps.png"), labels=overlay_labels(maps.shown[0]))
