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
# # 07 · Evaluation — Table II
#
# As in the PI-CAI challenge: patient-level AUROC, lesion-level average precision (AP) and their
# mean, from `picai_eval` on the detection maps of notebook 06, for the nnU-Net baseline and every
# adU-Net variant, on the internal validation set and the external test set. Beyond the paper:
# 95 % bootstrap confidence intervals for every number and a paired test of each variant against
# the baseline (the same resampled cases for both), ROC / precision–recall curves and forest plots.

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
variants: list = ["baseline", "adunet_t2w", "adunet_adc", "adunet_dwi", "adunet_all"]  # Table II rows
n_bootstrap: int = 500  # bootstrap replicates for CIs and paired tests (paper.yaml: 2000)
map_model: str = "fpgan"  # whose anomaly map the case viewer overlays
params_name: str = ""  # shown in the summary; "" = the run folder's name

# %%
import pandas as pd

from adunet_lib.anomaly_maps.stage import case_overlays
from adunet_lib.evaluation import stage
from adunet_lib.fileio import write_text
from adunet_lib.preprocessing.stage import load_case, load_tables
from adunet_lib.report.figures import save_figure, save_table
from adunet_lib.report.summary import write_summary
from adunet_lib.report.viewer import case_viewer
from adunet_lib.runner.context import RunContext

ctx = RunContext.create(run_dir, figure_dir, seed=seed, device=device, interactive=interactive)
cases, slices = load_tables(ctx)

# %% [markdown]
# ## PI-CAI metrics per model and set

# %%
results = stage.evaluate_all(ctx, variants, cases)
table, differences = stage.table2(results, n_bootstrap, seed)
save_table(table, ctx.figure("table2.csv"))
write_text(ctx.figure("table2.md"), stage.table2_markdown(table, n_bootstrap))
table[["set", "Model", "auroc", "ap", "score", "score_lo", "score_hi"]].round(4)

# %% [markdown]
# ## Table II

# %%
from IPython.display import Markdown

Markdown(stage.table2_markdown(table, n_bootstrap))

# %% [markdown]
# ## ROC and precision–recall curves; differences vs the baseline

# %%
for split, per_model in results.items():
    name = {"val": "validation", "test": "test"}[split]
    save_figure(stage.roc_pr_figure(per_model, stage.SETS[split]), ctx.figure(f"roc_pr_{name}.png"))
    save_figure(stage.forest_figure(differences[differences["set"] == stage.SETS[split]], stage.SETS[split]),
                ctx.figure(f"forest_{name}.png"))
differences.round(4)

# %% [markdown]
# ## Browse a test case: lesion, anomaly map and detection map

# %%
from adunet_lib.data.image import read_image
from adunet_lib.segmentation.detection import detection_path

split = "test" if "test" in results else "val"
row = cases[cases["split"] == split].sort_values("lesion_slices", ascending=False).iloc[0]
volumes, overlays = case_overlays(ctx, map_model, row["set"], row["case_id"])
box = load_case(ctx, row["set"], row["case_id"]).box
best = table[table["set"] == stage.SETS[split]].sort_values("score").iloc[-1]["model"]
overlays["detection"] = read_image(detection_path(ctx.predictions / best / split, row["case_id"])).array[box.slices()]
case_viewer(volumes, overlays, interactive=interactive, title=f"{row['case_id']} — {best}",
            save_to=ctx.figure("viewer_evaluation.png"))

# %% [markdown]
# ## Run summary

# %%
table1 = pd.read_csv(ctx.figure("table1.csv")) if ctx.figure("table1.csv").is_file() else None
path = write_summary(ctx, params_name or ctx.run_dir.name, table, cases, table1)
Markdown(path.read_text(encoding="utf-8"))
