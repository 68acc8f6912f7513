"""Notebook 01's stage logic: datasets in, preprocessed cases + case/slice tables out.

Files written (the contract later notebooks read)::

    runs/<name>/data/{internal,external}/         synthetic cohorts (when params say "synthetic")
    runs/<name>/preprocessed/<set>/<case>.npz|json  one PreprocessedCase per case
    runs/<name>/preprocessed/cases.csv             set, split, case_id, cspca, labeled, … per case
    runs/<name>/preprocessed/slices.csv            one row per gland slice: label, T2W slice index
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from adunet_lib.data.readers import Dataset, open_dataset
from adunet_lib.data.synthetic import synthesize_cohort
from adunet_lib.errors import AdunetError
from adunet_lib.fileio import atomic_path, write_json
from adunet_lib.preprocessing.pipeline import (PreprocessConfig, PreprocessedCase, assign_folds, preprocess_dataset,
                                               slice_table)
from adunet_lib.runner.context import RunContext, resolve

SETS = ("internal", "external")


@dataclasses.dataclass
class CohortTables:
    cases: pd.DataFrame
    slices: pd.DataFrame
    skipped: list[tuple[str, str]]


def resolve_datasets(ctx: RunContext, sources: dict[str, str], synth_cases: dict[str, int],
                     show_progress: bool = True) -> dict[str, Dataset]:
    """Open each set's dataset; ``"synthetic"`` writes (or reuses) a phantom cohort in the run folder.

    Args:
        sources: set name → ``"synthetic"``, ``"none"``/``""`` (no such set) or a dataset path.
        synth_cases: set name → number of synthetic cases.
    """
    out = {}
    for set_name, source in sources.items():
        if source in ("", "none", None):
            continue
        if source == "synthetic":
            site = "external" if set_name == "external" else "internal"
            path = synthesize_cohort(ctx.data / set_name, cases=synth_cases[set_name], seed=ctx.seed, site=site,
                                     show_progress=show_progress)
            out[set_name] = open_dataset(path, site=f"synthetic-{site}")
        else:
            out[set_name] = open_dataset(resolve(source), site=set_name)
        if not len(out[set_name]):
            raise AdunetError(f"{set_name} dataset {source}: no cases found")
    if "internal" not in out:
        raise AdunetError("internal_data is required (training and validation cases)")
    return out


def preprocess_sets(ctx: RunContext, datasets: dict[str, Dataset], config: PreprocessConfig, n_folds: int,
                    on_error: str = "fail", show_progress: bool = True) -> CohortTables:
    """Preprocess every set, assign internal cases to stratified folds (fold 0 = validation split,
    the rest = training split), write ``cases.csv`` and ``slices.csv``."""
    case_rows, slice_frames, skipped = [], [], []
    for set_name, dataset in datasets.items():
        folder = ctx.preprocessed / set_name
        done, bad = preprocess_dataset(dataset.cases, folder, config, on_error=on_error,
                                       show_progress=show_progress, desc=f"preprocess {set_name}")
        skipped.extend(bad)
        pres = {cid: PreprocessedCase.load(folder, cid) for cid in done}
        if set_name == "internal":
            folds = assign_folds([(cid, p.cspca) for cid, p in pres.items()], n_folds, ctx.seed)
            splits = {cid: "val" if fold == 0 else "train" for cid, fold in folds.items()}
        else:
            folds = {cid: -1 for cid in pres}
            splits = {cid: "test" for cid in pres}
        for cid, pre in pres.items():
            table = slice_table(pre, set_name, splits[cid])
            slice_frames.append(table)
            case_rows.append({
                "set": set_name, "split": splits[cid], "fold": folds[cid], "case_id": cid, "site": pre.site, "cspca": pre.cspca,
                "labeled": pre.labeled, "gland_slices": len(table),
                "lesion_slices": int((table["label"] == "lesion").sum()),
                "box_size_mm": round(pre.box.size[0] * pre.t2w_geometry.spacing[0], 1),
                "t2w": pre.sources["t2w"],
            })
    cases = pd.DataFrame(case_rows)
    slices = pd.concat(slice_frames, ignore_index=True) if slice_frames else pd.DataFrame()
    for name, frame in (("cases.csv", cases), ("slices.csv", slices)):
        with atomic_path(ctx.preprocessed / name) as tmp:
            frame.to_csv(tmp, index=False)
    write_json(ctx.preprocessed / "config.json", {"preprocess": dataclasses.asdict(config),
                                                  "n_folds": n_folds,
                                                  "datasets": {k: str(v.root) for k, v in datasets.items()},
                                                  "skipped": skipped})
    return CohortTables(cases, slices, skipped)


def load_tables(ctx: RunContext) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``cases.csv`` and ``slices.csv`` of a run (notebook 01 must have run)."""
    cases_path, slices_path = ctx.preprocessed / "cases.csv", ctx.preprocessed / "slices.csv"
    if not cases_path.is_file():
        raise AdunetError(f"{cases_path} not found: run notebook 01_preprocessing for this params file first")
    return pd.read_csv(cases_path), pd.read_csv(slices_path)


def load_case(ctx: RunContext, set_name: str, case_id: str) -> PreprocessedCase:
    return PreprocessedCase.load(ctx.preprocessed / set_name, case_id)


def summary(cases: pd.DataFrame) -> pd.DataFrame:
    """Cases, csPCa-positive cases and slices per set and split."""
    return (cases.assign(positive=cases["cspca"].fillna(False).astype(bool))
            .groupby(["set", "split"], sort=False)
            .agg(cases=("case_id", "count"), csPCa=("positive", "sum"), gland_slices=("gland_slices", "sum"),
                 lesion_slices=("lesion_slices", "sum"))
            .reset_index())


def figure_rows(ctx: RunContext, cases: pd.DataFrame, count: int) -> list[dict[str, Any]]:
    """Rows for :func:`~adunet_lib.report.figures.preprocessing_figure`: lesion cases first."""
    from adunet_lib.data.case import load_case as load_raw
    from adunet_lib.preprocessing.geometry import resample_to

    chosen = cases.sort_values(["lesion_slices", "case_id"], ascending=[False, True]).head(count)
    rows = []
    for _, row in chosen.iterrows():
        pre = load_case(ctx, row["set"], row["case_id"])
        loaded = load_raw(pre.source_case())
        lesion_model = pre.lesion["cropped"]
        k = int(np.argmax(lesion_model.reshape(len(lesion_model), -1).sum(1))) if lesion_model.any() else pre.n_slices // 2
        z = int(pre.slice_indices[k])
        t2w = loaded.t2w
        original = {s: resample_to(loaded.images[s], t2w.geometry).array[z] if s != "t2w" else t2w.array[z]
                    for s in ("t2w", "adc", "hbv")}
        (x0, y0, _), (x1, y1, _) = pre.box.start, pre.box.stop
        gland_full = np.zeros(t2w.shape, np.uint8)
        gland_full[pre.box.slices()] = pre.gland_t2w
        lesion_full = loaded.lesion.array[z] if loaded.lesion is not None else None
        unmasked = {}
        for i, s in enumerate(("t2w", "adc", "hbv")):
            vol = resample_to(loaded.images[s], pre.grids["cropped"], "linear", antialias=True).array[k]
            lo, hi = pre.norm["cropped"][s]
            unmasked[s] = np.clip((vol - lo) / (hi - lo), 0, 1)
        rows.append({"case_id": pre.case_id, "original": original, "box": (x0, y0, x1, y1), "gland": gland_full[z],
                     "lesion": lesion_full, "cropped": unmasked,
                     "masked": {s: pre.images["cropped"][i, k] for i, s in enumerate(("t2w", "adc", "hbv"))},
                     "lesion_model": lesion_model[k]})
    return rows
