"""Notebook 07's stage logic: Table II, ROC/PR curves, forest plots, the run summary.

Reads ``runs/<name>/predictions/<variant>/<split>/<case>_detection_map.mha`` (notebook 06) and the
lesion labels of the original data; writes ``figures/<name>/table2.{csv,md}``,
``roc_pr_<set>.png``, ``forest_<set>.png`` and ``summary.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from adunet_lib.data.case import load_case as load_raw
from adunet_lib.errors import AdunetError
from adunet_lib.evaluation.picai import evaluate_maps
from adunet_lib.evaluation.statistics import paired_bootstrap
from adunet_lib.preprocessing.stage import load_case
from adunet_lib.progress import progress
from adunet_lib.runner.context import RunContext
from adunet_lib.segmentation.detection import detection_path
from adunet_lib.segmentation.variants import DISPLAY

SETS = {"val": "validation", "test": "external test"}


def lesion_labels(ctx: RunContext, cases: pd.DataFrame, split: str, show_progress: bool = True) -> dict[str, np.ndarray]:
    """Binary lesion masks (T2W grid) of the labelled cases of ``split``."""
    rows = cases[(cases["split"] == split) & cases["labeled"].astype(bool)]
    out = {}
    for _, row in progress(list(rows.iterrows()), desc=f"labels {split}", unit="case", enabled=show_progress):
        raw = load_raw(load_case(ctx, row["set"], row["case_id"]).source_case())
        out[row["case_id"]] = raw.lesion.array
    return out


def evaluate_all(ctx: RunContext, variants: Sequence[str], cases: pd.DataFrame,
                 show_progress: bool = True) -> dict[str, dict[str, object]]:
    """split → variant → ``picai_eval.Metrics`` (only splits with predictions and labels)."""
    results: dict[str, dict[str, object]] = {}
    for split in SETS:
        labels = lesion_labels(ctx, cases, split, show_progress)
        if not labels:
            continue
        results[split] = {}
        for variant in variants:
            folder = ctx.predictions / variant / split
            detections = {cid: detection_path(folder, cid) for cid in labels if detection_path(folder, cid).is_file()}
            if len(detections) < len(labels):
                missing = sorted(set(labels) - set(detections))
                raise AdunetError(f"{folder}: no detection map for {', '.join(missing[:3])}: run notebook 06 first")
            results[split][variant] = evaluate_maps(detections, labels)
    if not results:
        raise AdunetError("no labelled validation or test cases to evaluate")
    return results


def table2(results: Mapping[str, Mapping[str, object]], n_bootstrap: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table II (one block per set) with 95 % CIs, and the paired differences vs the baseline."""
    tables, diffs = [], []
    for split, per_model in results.items():
        table, diff = paired_bootstrap(per_model, n_bootstrap=n_bootstrap, seed=seed)
        n_cases = len(next(iter(per_model.values())).case_target)
        positives = int(sum(next(iter(per_model.values())).case_target.values()))
        tables.append(table.assign(set=SETS[split], cases=n_cases, positives=positives))
        diffs.append(diff.assign(set=SETS[split]))
    table = pd.concat(tables, ignore_index=True)
    diff = pd.concat(diffs, ignore_index=True) if diffs else pd.DataFrame()
    if len(diff):
        score_diff = diff[diff["metric"] == "score"].set_index(["set", "model"])
        table = table.join(score_diff[["delta", "lo", "hi", "p_value"]].rename(columns={
            "delta": "delta_score", "lo": "delta_score_lo", "hi": "delta_score_hi", "p_value": "p_vs_baseline"}),
            on=["set", "model"])
    numeric = table.select_dtypes("number").columns
    table[numeric] = table[numeric] + 0.0  # no "-0.0" in the CSV
    table.insert(0, "Model", table["model"].map(DISPLAY).fillna(table["model"]))
    return table, diff


def table2_markdown(table: pd.DataFrame, n_bootstrap: int) -> str:
    """The paper's layout: a block per set, best per column in bold, CIs in brackets."""
    lines = ["# Table II — csPCa detection (PI-CAI metrics)", ""]
    for set_name, block in table.groupby("set", sort=False):
        lines += [f"**{set_name.capitalize()} set** ({int(block['cases'].iloc[0])} cases, "
                  f"{int(block['positives'].iloc[0])} with csPCa)", "",
                  "| Model | AUROC [95% CI] | AP [95% CI] | Average [95% CI] | Δ Average vs baseline [95% CI] | p |",
                  "|---|---|---|---|---|---|"]
        best = {k: block[k].max() for k in ("auroc", "ap", "score")}
        for _, r in block.iterrows():
            cells = []
            for k in ("auroc", "ap", "score"):
                # + 0.0 turns picai's -0.0 (an AP with no true positive) into 0.0
                text = f"{r[k] + 0.0:.4f}"
                if np.isclose(r[k], best[k]):
                    text = f"**{text}**"
                cells.append(f"{text} [{r[f'{k}_lo'] + 0.0:.3f}, {r[f'{k}_hi'] + 0.0:.3f}]")
            if "delta_score" in r and pd.notna(r.get("delta_score")):
                cells.append(f"{r['delta_score']:+.4f} [{r['delta_score_lo']:+.3f}, {r['delta_score_hi']:+.3f}]")
                cells.append(f"{r['p_vs_baseline']:.3f}")
            else:
                cells += ["—", "—"]
            lines.append(f"| {r['Model']} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(f"AUROC: patient level; AP: lesion level; Average = (AUROC + AP) / 2, all from `picai_eval`. "
                 f"95 % CIs and two-sided p-values from a paired bootstrap over cases ({n_bootstrap} replicates; "
                 "the same resampled cases for every model). Bold: best per column and set.")
    return "\n".join(lines) + "\n"


def roc_pr_figure(per_model: Mapping[str, object], title: str):
    """Patient-level ROC and lesion-level precision–recall curves, one line per model."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(9, 4))
    for name, m in per_model.items():
        roc.plot(m.case_FPR, m.case_TPR, label=f"{DISPLAY.get(name, name)} ({m.auroc:.3f})")
        pr.plot(m.recall, m.precision, label=f"{DISPLAY.get(name, name)} ({m.AP:.3f})")
    roc.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    roc.set(xlabel="False positive rate (patients)", ylabel="True positive rate", title=f"ROC — {title}")
    pr.set(xlabel="Recall (lesions)", ylabel="Precision", title=f"Precision–recall — {title}", xlim=(0, 1), ylim=(0, 1.02))
    roc.legend(fontsize=7, loc="lower right")
    pr.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def forest_figure(diff: pd.DataFrame, title: str):
    """Differences vs the baseline (AUROC, AP, Average) with 95 % CIs, one row per variant."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    metrics = [("auroc", "Δ AUROC"), ("ap", "Δ AP"), ("score", "Δ Average")]
    fig, axes = plt.subplots(1, 3, figsize=(10, 0.6 * max(2, diff["model"].nunique()) + 1.2), sharey=True)
    for ax, (key, label) in zip(axes, metrics):
        d = diff[diff["metric"] == key].reset_index(drop=True)
        y = np.arange(len(d))[::-1]
        ax.errorbar(d["delta"], y, xerr=[d["delta"] - d["lo"], d["hi"] - d["delta"]], fmt="o", capsize=3)
        ax.axvline(0, color="grey", lw=0.8, ls="--")
        ax.set_yticks(y, [DISPLAY.get(m, m) for m in d["model"]])
        ax.set_xlabel(label)
        for yi, p in zip(y, d["p_value"]):
            ax.annotate(f"p={p:.2f}", (1.0, yi), xycoords=("axes fraction", "data"), fontsize=7, ha="right", va="bottom")
    fig.suptitle(f"adU-Net variants vs nnU-Net baseline — {title}", fontsize=10)
    fig.tight_layout()
    return fig
