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
# The variants and the map model are the ones notebook 06 ran (its record in the run folder).

# %% tags=["parameters"]
# EvaluationParams in adunet_lib/evaluation/params.py: change parameters there, then python -m adunet_lib.runner.params --sync
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
n_bootstrap: int = 500  # bootstrap replicates for CIs and paired tests (paper.yaml: 2000)
params_name: str = ""  # shown in the summary; "" → the run folder's name

# %%
from IPython.display import Markdown

from adunet_lib.anomaly_models.stage import table1
from adunet_lib.evaluation import stage
from adunet_lib.evaluation.params import EvaluationParams
from adunet_lib.fileio import write_text
from adunet_lib.report.figures import save_figure, save_table
from adunet_lib.report.summary import write_summary
from adunet_lib.report.viewer import case_viewer
from adunet_lib.run_folder import RunContext

params = EvaluationParams.from_namespace(globals())
ctx = RunContext.from_params(params)
cases, slices = ctx.tables()
variants, map_model = stage.segmentation_run(ctx)
print("variants:", variants, "— maps from:", map_model)

# %% [markdown]
# ## PI-CAI metrics per model and set

# %%
results = stage.evaluate_all(ctx, variants, cases)
table, differences = stage.table2(results, params.n_bootstrap, ctx.data_seed)
save_table(table, ctx.figure("table2.csv"))
write_text(ctx.figure("table2.md"), stage.table2_markdown(table, params.n_bootstrap))
table[["set", "Model", "auroc", "ap", "score", "score_lo", "score_hi"]].round(4)

# %% [markdown]
# ## Table II

# %%
Markdown(stage.table2_markdown(table, params.n_bootstrap))

# %% [markdown]
# ## ROC and precision–recall curves; differences vs the baseline

# %%
for split, per_model in results.items():
    name = {"val": "validation", "oof": "oof", "test": "test"}[split]
    save_figure(stage.roc_pr_figure(per_model, stage.SETS[split]), ctx.figure(f"roc_pr_{name}.png"))
    save_figure(stage.forest_figure(differences[differences["set"] == stage.SETS[split]], stage.SETS[split]),
                ctx.figure(f"forest_{name}.png"))
differences.round(4)

# %% [markdown]
# ## Browse a test case: lesion, anomaly map and detection map

# %%
case_id, best, volumes, overlays = stage.viewer_overlays(ctx, cases, table, map_model, results)
case_viewer(volumes, overlays, interactive=ctx.interactive, title=f"{case_id} — {best}",
            save_to=ctx.figure("viewer_evaluation.png"), labels=stage.viewer_labels(map_model, best))

# %% [markdown]
# ## Run summary

# %%
path = write_summary(ctx, params.params_name or ctx.run_dir.name, table, cases, table1(ctx))
Markdown(path.read_text(encoding="utf-8"))
