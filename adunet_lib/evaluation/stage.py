"""Notebook 07's stage logic: Table II, ROC/PR curves, forest plots, the case viewer, the run summary.

Reads the detection maps of notebook 06 and the lesion labels that notebook 01 copied into the
run, both through the run folder; which variants and map model to evaluate is notebook 06's
record, so the two notebooks cannot disagree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from adunet_lib.errors import AdunetError
from adunet_lib.evaluation.picai import evaluate_maps
from adunet_lib.evaluation.statistics import paired_bootstrap
from adunet_lib.fileio import read_json
from adunet_lib.progress import progress
from adunet_lib.run_folder import RunContext
from adunet_lib.vocabulary import EVALUATED_MEANING, EVALUATED_SPLITS, INTERNAL, OOF, TEST, VAL, VARIANTS

SETS = EVALUATED_SPLITS


def display(variant_name: str) -> str:
    return VARIANTS[variant_name].display if variant_name in VARIANTS else variant_name


def segmentation_run(ctx: RunContext) -> tuple[list[str], str]:
    """(variants, map model) that notebook 06 ran, from its record."""
    record = _segmentation_record(ctx)
    return list(record["variants"]), str(record["map_model"])


def _segmentation_record(ctx: RunContext) -> dict:
    if not ctx.segmentation_record.is_file():
        raise AdunetError(f"{ctx.segmentation_record} not found: run notebook 06 for this params file first")
    return read_json(ctx.segmentation_record)


def evaluated_cases(cases: pd.DataFrame, split: str, folds: Sequence[int] = (0,)) -> pd.DataFrame:
    """The labelled cases of an evaluated set: fold 0's held-out cases (``val``), every trained fold's
    (``oof``, only with more than one fold) or the external cases (``test``)."""
    labelled = cases[cases["labeled"].astype(bool)]
    if split == OOF:
        if len(folds) < 2:
            return labelled.iloc[0:0]
        return labelled[(labelled["set"] == INTERNAL) & labelled["fold"].isin(list(folds))]
    return labelled[labelled["split"] == split]


def lesion_labels(ctx: RunContext, cases: pd.DataFrame, split: str, show_progress: bool = True,
                  folds: Sequence[int] = (0,)) -> dict[str, np.ndarray]:
    """Binary lesion masks (T2W grid) of the labelled cases of an evaluated set, from the run's case copies."""
    rows = evaluated_cases(cases, split, folds)
    return {row["case_id"]: ctx.case_image(row["set"], row["case_id"], "lesion").array
            for _, row in progress(list(rows.iterrows()), desc=f"labels {split}", unit="case", enabled=show_progress)}


def evaluate_all(ctx: RunContext, variants: Sequence[str], cases: pd.DataFrame,
                 show_progress: bool = True) -> dict[str, dict[str, object]]:
    """split → variant → ``picai_eval.Metrics`` (only splits with predictions and labels)."""
    folds = [int(f) for f in _segmentation_record(ctx).get("folds", [0])]
    results: dict[str, dict[str, object]] = {}
    for split in SETS:
        labels = lesion_labels(ctx, cases, split, show_progress, folds)
        if not labels:
            continue
        results[split] = {}
        predicted = VAL if split == OOF else split  # out-of-fold maps are each fold's validation maps
        for name in variants:
            detections = {cid: ctx.detection_map(name, predicted, cid) for cid in labels}
            missing = sorted(cid for cid, path in detections.items() if not path.is_file())
            if missing:
                raise AdunetError(f"{ctx.detection_dir(name, predicted)}: no detection map for {', '.join(missing[:3])}: "
                                  "run notebook 06 first")
            results[split][name] = evaluate_maps(detections, labels)
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
    table.insert(0, "Model", table["model"].map(display))
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
    for split, name in SETS.items():
        if name in set(table["set"]):
            lines.append(f"*{name.capitalize()}*: {EVALUATED_MEANING[split]}.  ")
    lines.append(f"AUROC: patient level; AP: lesion level; Average = (AUROC + AP) / 2, all from `picai_eval`. "
                 f"95 % CIs and two-sided p-values from a paired bootstrap over cases ({n_bootstrap} replicates; "
                 "the same resampled cases for every model). Bold: best per column and set.")
    return "\n".join(lines) + "\n"


#: Line styles and markers that tell models apart where their curves coincide (one pair per model, in order).
LINE_STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def curve_style(index: int) -> dict:
    """The ``index``-th model's line style, marker and marker spacing; the markers of successive models are
    staggered along the curve, so even identical curves show every model's markers."""
    return {"ls": LINE_STYLES[index % len(LINE_STYLES)], "marker": MARKERS[index % len(MARKERS)],
            "markevery": (0.025 * (index % 4), 0.1), "markersize": 4, "lw": 1.4, "markerfacecolor": "none"}


def roc_pr_figure(per_model: Mapping[str, object], title: str):
    """Patient-level ROC and lesion-level precision–recall curves, one line per model.

    Each model has its own colour, line style and markers (coinciding curves stay apart); each panel's
    legend sits below its axes, never on the curves."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    rows = (len(per_model) + 1) // 2
    fig, (roc, pr) = plt.subplots(1, 2, figsize=(10, 4.4 + 0.25 * rows), layout="constrained")
    for i, (name, m) in enumerate(per_model.items()):
        style = curve_style(i)
        roc.plot(m.case_FPR, m.case_TPR, label=f"{display(name)} (AUROC {m.auroc:.3f})", **style)
        pr.plot(m.recall, m.precision, label=f"{display(name)} (AP {max(m.AP, 0.0):.3f})", **style)
    roc.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="chance")
    roc.set(xlabel="False positive rate (patients)", ylabel="True positive rate", title=f"ROC — {title}",
            xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
    pr.set(xlabel="Recall (lesions)", ylabel="Precision", title=f"Precision–recall — {title}", xlim=(0, 1.02),
           ylim=(0, 1.02))
    for ax in (roc, pr):
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    return fig


def forest_figure(diff: pd.DataFrame, title: str):
    """Differences vs the baseline (AUROC, AP, Average) with 95 % CIs, one row per variant; each panel's
    p-values in a column at its right, outside the axes."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    metrics = [("auroc", "Δ AUROC"), ("ap", "Δ AP"), ("score", "Δ Average")]
    fig, axes = plt.subplots(1, 3, figsize=(12, 0.6 * max(2, diff["model"].nunique()) + 1.6), sharey=True,
                             layout="constrained")
    for ax, (key, label) in zip(axes, metrics):
        d = diff[diff["metric"] == key].reset_index(drop=True)
        y = np.arange(len(d))[::-1]
        ax.errorbar(d["delta"], y, xerr=[d["delta"] - d["lo"], d["hi"] - d["delta"]], fmt="o", capsize=3,
                    label="difference, 95 % CI")
        ax.axvline(0, color="grey", lw=0.8, ls="--")
        ax.set_yticks(y, [display(m) for m in d["model"]])
        ax.set_ylim(-0.6, max(len(d) - 0.4, 0.6))
        ax.set_xlabel(f"{label} (variant − baseline)")
        ax.set_title(label, fontsize=9)
        for yi, p in zip(y, d["p_value"]):
            ax.annotate(f"p={p:.2f}", (1.02, yi), xycoords=("axes fraction", "data"), fontsize=7, ha="left",
                        va="center", annotation_clip=False)
    fig.suptitle(f"adU-Net variants vs nnU-Net baseline — {title}", fontsize=10)
    fig.get_layout_engine().set(wspace=0.08)
    return fig


def viewer_overlays(ctx: RunContext, cases: pd.DataFrame, table: pd.DataFrame, map_model: str,
                    results: Mapping[str, object]) -> tuple[str, str, dict, dict]:
    """(case id, best variant, volumes, overlays) for the evaluation viewer: the held-out case with
    the most lesion slices, with the map model's ADC map and the best variant's detection map."""
    from adunet_lib.anomaly_maps.maps import case_overlays
    from adunet_lib.data.image import read_image
    from adunet_lib.preprocessing.pipeline import PreprocessedCase

    split = TEST if TEST in results else VAL
    row = cases[cases["split"] == split].sort_values("lesion_slices", ascending=False).iloc[0]
    volumes, overlays = case_overlays(ctx, map_model, row["set"], row["case_id"])
    best = table[table["set"] == SETS[split]].sort_values("score").iloc[-1]["model"]
    box = PreprocessedCase.from_run(ctx, row["set"], row["case_id"]).box.slices()
    overlays["detection"] = read_image(ctx.detection_map(best, split, row["case_id"])).array[box]
    return row["case_id"], best, volumes, overlays


def viewer_labels(map_model: str, best: str) -> dict[str, str]:
    """The evaluation viewer's ``labels``: the anomaly map's model and sequence, the detection map's variant."""
    from adunet_lib.anomaly_maps.maps import overlay_labels

    return overlay_labels(map_model) | {"detection": display(best)}
