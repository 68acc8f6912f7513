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
fig4_models: list = ["fpgan", "ddpm", "oracle"]  # reconstructions shown in Fig. 4 (the paper: FP-GAN and diffusion; oracle: phantoms only)
fig4_patients: int = 4  # patients in Fig. 4

# %%
from adunet_lib.anomaly_maps import stage
from adunet_lib.anomaly_maps.maps import case_overlays
from adunet_lib.report.figures import save_figure, save_table
from adunet_lib.report.viewer import case_viewer
from adunet_lib.run_folder import RunContext

ctx = RunContext.create(run_dir, figure_dir, seed=seed, data_seed=data_seed, device=device, interactive=interactive)
cases, slices = ctx.tables()
models = models or stage.map_models(ctx)
print("maps from:", models)

# %% [markdown]
# ## Maps for every case

# %%
done = stage.generate_maps(ctx, models, cases, blur_kernel)
done.groupby(["model", "set"]).size()

# %% [markdown]
# ## Map quality against the lesion masks
# Voxel AUROC / AUPRC inside the gland and per zone; the Dice threshold is chosen on validation cases
# and applied unchanged to the external test cases.

# %%
quality = stage.map_quality(ctx, models, cases)
save_table(quality, ctx.figure("map_quality.csv"))
quality.pivot_table(index=["model", "sequence"], columns=["set", "zone"], values="auroc").round(3)

# %% [markdown]
# ## Fig. 4

# %%
shown = [m for m in fig4_models if m in models] or models[:2]
save_figure(stage.figure4(ctx, cases, slices, shown, blur_kernel, fig4_patients), ctx.figure("fig4_anomaly_maps.png"))

# %% [markdown]
# ## Browse a case with its anomaly map (ADC map shown)

# %%
case = stage.viewer_case(cases)
volumes, overlays = case_overlays(ctx, shown[0], case["set"], case["case_id"])
case_viewer(volumes, overlays, interactive=interactive, title=f"{case['case_id']} ({shown[0]})",
            save_to=ctx.figure("viewer_anomaly_maps.png"))
