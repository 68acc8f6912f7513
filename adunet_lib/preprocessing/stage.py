"""Notebook 01's stage logic: datasets in; cases on their T2W grid, preprocessed slices, tables out.

What it writes is listed in :data:`adunet_lib.run_folder.LAYOUT` (``cases/``, ``preprocessed/``,
``splits.json``); after this stage nothing reads the source dataset again.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from adunet_lib.cache import fingerprint, write_record
from adunet_lib.data import layouts
from adunet_lib.data.readers import Dataset, open_dataset
from adunet_lib.data.synthetic import synthesize_cohort
from adunet_lib.errors import AdunetError
from adunet_lib.fileio import atomic_path, write_json
from adunet_lib.data.case import read_case_image
from adunet_lib.preprocessing.pipeline import (PreprocessConfig, PreprocessedCase, assign_folds, folds_from_splits,
                                               load_twin, preprocess_dataset, save_twin, slice_table, twin_stacks)
from adunet_lib.run_folder import RunContext, resolve
from adunet_lib.vocabulary import ANOMALY_COHORTS, CROPPED, EXTERNAL, INTERNAL, SEQUENCES, TEST, TRAIN, VAL


@dataclasses.dataclass
class CohortTables:
    cases: pd.DataFrame
    slices: pd.DataFrame
    skipped: list[tuple[str, str]]


def resolve_datasets(ctx: RunContext, sources: dict[str, str], synth_cases: dict[str, int],
                     show_progress: bool = True, synth_layouts: dict[str, str] | None = None,
                     lesion_sources: tuple[str, ...] | None = None, without_masks: int = 0) -> dict[str, Dataset]:
    """Open each set's dataset; ``"synthetic"`` writes (or reuses) a phantom cohort in the run folder.

    Args:
        sources: set name → ``"synthetic"``, ``"none"``/``""`` (no such set) or a dataset path.
        synth_cases: set name → number of synthetic cases.
        synth_layouts: set name → layout of its synthetic cohort (default: the registered layout that
            is the set's synthetic default, :func:`~adunet_lib.data.layouts.synthetic_default`: PI-CAI
            internal, Prostate158 external, as in the paper).
        lesion_sources: label sources in order of preference, for layouts that have several (PI-CAI's
            picai_labels; default: the layout's own).
        without_masks: every k-th synthetic internal study has no anatomical mask (0: none such).
    """
    synth_layouts = synth_layouts or {}
    options = {"lesion_sources": tuple(lesion_sources)} if lesion_sources else {}
    out = {}
    for set_name, source in sources.items():
        if source in ("", "none", None):
            continue
        if source == "synthetic":
            site = EXTERNAL if set_name == EXTERNAL else INTERNAL
            layout = synth_layouts[set_name] if set_name in synth_layouts else layouts.synthetic_default(set_name)
            path = synthesize_cohort(ctx.synthetic_data(set_name), cases=synth_cases[set_name], seed=ctx.data_seed, site=site,
                                     show_progress=show_progress, layout=layout,
                                     without_masks=without_masks if set_name == INTERNAL else 0,
                                     twins=ctx.twins_dir(set_name))
            out[set_name] = open_dataset(path, site=f"synthetic-{site}", **options)
        else:
            out[set_name] = open_dataset(resolve(source), site=set_name, **options)
        if not len(out[set_name]):
            raise AdunetError(f"{set_name} dataset {source}: no cases found")
    if INTERNAL not in out:
        raise AdunetError("internal_data is required (training and validation cases)")
    return out


def open_extra(path: str) -> Dataset:
    """A data set that only trains the zone model (``zone_training_data``; the paper: ProstateX)."""
    dataset = open_dataset(resolve(path), site="zone training")
    if not any(c.zones is not None for c in dataset):
        raise AdunetError(f"zone_training_data {path}: no case with a zonal (PZ/TZ) mask")
    return dataset


def write_zone_quality(ctx: RunContext, quality: pd.DataFrame) -> None:
    """``figures/<name>/zones.csv`` when the zone model ran; a stale one from an earlier run goes."""
    target = ctx.figure("zones.csv")
    if quality.empty:
        target.unlink(missing_ok=True)
        return
    with atomic_path(target) as tmp:
        quality.round(4).to_csv(tmp, index=False)


def preprocess_sets(ctx: RunContext, datasets: dict[str, Dataset], config: PreprocessConfig, n_folds: int,
                    on_error: str = "fail", show_progress: bool = True, splits_file: str | None = None,
                    anomaly_cohort: str = "training_split", anomaly_patients: int = 100,
                    leak_free_maps: int = 0, mask_origins: dict[str, dict[str, str]] | None = None,
                    skipped: list[tuple[str, str]] | None = None) -> CohortTables:
    """Preprocess every set into the run folder, assign internal cases to folds — by patient,
    stratified by csPCa, or from published ``splits_file`` (nnU-Net's format) — (fold 0 = validation
    split, the rest = training split), write ``cases.csv``, ``slices.csv`` and ``splits.json``.

    ``mask_origins`` (set → case → ``files`` / ``predicted``) is the zone stage's word on where each
    crop mask came from (a ``mask_source`` column); ``skipped`` lists cases it already left out."""
    if not splits_file and INTERNAL in datasets:
        # before any case is read: fewer patients than folds would leave a fold, or the validation split, empty
        check_fold_count(n_folds, len({case.patient for case in datasets[INTERNAL]}), datasets[INTERNAL].root)
    case_rows, slice_frames, stamps = [], [], []
    skipped = list(skipped or [])
    mask_origins = mask_origins or {}
    for set_name, dataset in datasets.items():
        done, bad = preprocess_dataset(dataset.cases, ctx.preprocessed_dir(set_name), config, on_error=on_error,
                                       show_progress=show_progress, desc=f"preprocess {set_name}",
                                       volumes_dir=ctx.cases_dir(set_name))
        skipped.extend(bad)
        pres = {cid: PreprocessedCase.from_run(ctx, set_name, cid) for cid in done}
        preprocess_twins(ctx, set_name, pres)
        if set_name == INTERNAL and splits_file:
            folds = folds_from_splits(resolve(splits_file), [(cid, dataset[cid].patient) for cid in pres])
            n_folds = max(folds.values(), default=0) + 1
            splits = {cid: VAL if fold == 0 else TRAIN for cid, fold in folds.items()}
        elif set_name == INTERNAL:
            check_fold_count(n_folds, len({dataset[cid].patient for cid in pres}), dataset.root, len(bad))
            folds = assign_folds([(cid, p.cspca, dataset[cid].patient) for cid, p in pres.items()], n_folds, ctx.data_seed)
            splits = {cid: VAL if fold == 0 else TRAIN for cid, fold in folds.items()}
        else:
            folds = {cid: -1 for cid in pres}
            splits = {cid: TEST for cid in pres}
        for cid, pre in pres.items():
            stamps.append(pre.stamp)
            table = slice_table(pre, set_name, splits[cid])
            slice_frames.append(table)
            case_rows.append({
                "set": set_name, "split": splits[cid], "fold": folds[cid], "case_id": cid,
                "patient_id": dataset[cid].patient, "site": pre.site, "cspca": pre.cspca, "labeled": pre.labeled,
                "lesion_source": dataset[cid].lesion_source, "visible_lesion": dataset[cid].visible_lesion,
                "mask_source": mask_origins.get(set_name, {}).get(cid, "files"), "gland_slices": len(table),
                "lesion_slices": int((table["label"] == "lesion").sum()),
                "box_size_mm": round(pre.box.size[0] * pre.t2w_geometry.spacing[0], 1),
            })
    cases = pd.DataFrame(case_rows)
    internal = cases["set"] == INTERNAL
    cases["anomaly_train"] = internal & cases["case_id"].isin(anomaly_training_cases(cases, anomaly_cohort,
                                                                                      anomaly_patients, ctx.data_seed))
    healthy, by_cspca_alone = healthy_patients(cases)
    parts = map_parts(cases, leak_free_maps, ctx.data_seed)
    cases["map_part"] = [parts.get(cid, -1) if inside else -1 for cid, inside in zip(cases["case_id"], internal)]
    slices = pd.concat(slice_frames, ignore_index=True) if slice_frames else pd.DataFrame()
    if len(slices):  # per slice, the case's (set and case id together: ids may repeat across sets)
        slices = slices.merge(cases[["set", "case_id", "anomaly_train", "map_part"]], on=["set", "case_id"], how="left")
    for path, frame in ((ctx.cases_table, cases), (ctx.slices_table, slices)):
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
    splits = nnunet_splits(cases)
    write_json(ctx.splits, splits)
    write_record(ctx.preprocessing_record,
                 fingerprint({"preprocess": config.identity(), "splits": splits,
                              "cases": cases[["set", "split", "fold", "case_id"]].values.tolist()}, upstream=stamps),
                 preprocess=config.identity(), n_folds=n_folds, splits_file=str(splits_file or ""),
                 leak_free_maps=int(leak_free_maps), anomaly_cohort={"kind": anomaly_cohort, "patients": int(cases.loc[cases["anomaly_train"], "patient_id"].nunique()),
                                 "cases": int(cases["anomaly_train"].sum()), "healthy_patients": len(healthy),
                                 "healthy_without_pirads": len(by_cspca_alone)},
                 datasets={k: {"layout": v.layout, "cases": len(v), "synthetic": (v.root / "synth.json").is_file(),
                               "remarks": list(v.remarks)} for k, v in datasets.items()},
                 warnings=[w for v in datasets.values() for w in v.warnings], skipped=skipped)
    return CohortTables(cases, slices, skipped)


def preprocess_twins(ctx: RunContext, set_name: str, pres: dict[str, Any]) -> int:
    """Synthetic sets: each case's lesion-free twin on its model slices (``twins/<set>/<case>.npz``), made
    exactly as the case was; redone when the case's preprocessing changed. Real sets have no twins.
    Returns the number of twins made."""
    folder = ctx.twins_dir(set_name)
    if not folder.is_dir():
        return 0
    made = 0
    for cid, pre in pres.items():
        target = ctx.twin_slices(set_name, cid)
        if load_twin(target, pre.stamp) is not None:
            continue
        twin = {seq: read_case_image(cid, folder / cid / f"{seq}.mha", f"{seq} twin") for seq in SEQUENCES}
        save_twin(target, twin_stacks(pre, twin), pre.stamp)
        made += 1
    return made


def check_fold_count(n_folds: int, patients: int, where: object, skipped: int = 0) -> None:
    """Stop when the internal set has fewer patients than folds: folds go by patient, so some would
    stay empty and the run would silently have fewer folds than its params say."""
    if n_folds > patients:
        after = f" left after {skipped} skipped case(s)" if skipped else ""
        raise AdunetError(f"n_folds = {n_folds} but the internal set {where} has {patients} patient(s){after}; "
                          f"folds go by patient, so set n_folds to at most {patients}")


def anomaly_training_cases(cases: pd.DataFrame, cohort: str, patients: int, seed: int) -> set[str]:
    """Case ids whose healthy slices train the reconstruction models (see :data:`ANOMALY_COHORTS`)."""
    if cohort not in ANOMALY_COHORTS:
        raise AdunetError(f"anomaly_cohort must be one of {', '.join(ANOMALY_COHORTS)}, not {cohort!r}")
    train = cases[(cases["set"] == INTERNAL) & (cases["split"] == TRAIN)]
    if cohort == "training_split":
        return set(train["case_id"])
    healthy, _ = healthy_patients(cases)
    if not healthy:
        raise AdunetError("anomaly_cohort 'paper': no training-split patient without csPCa and without a visible "
                          "lesion (PI-RADS ≥ 3 or a lesion mask)")
    chosen = np.random.default_rng(seed).permutation(healthy)[:patients]
    return set(train.loc[train["patient_id"].isin(set(chosen)), "case_id"])


def healthy_patients(cases: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The internal training split's patients "without visible abnormality" (the paper's cohort), and
    those of them whose marksheet records no PI-RADS (they qualify by csPCa alone).

    Every study of the patient must be a labelled csPCa negative with no lesion in its mask and no
    reported lesion of PI-RADS ≥ 3: a csPCa-negative study can hold a PI-RADS 4 lesion that biopsy
    called ISUP 1 (the real ``10795``), which a reconstruction model must not learn as healthy."""
    train = cases[(cases["set"] == INTERNAL) & (cases["split"] == TRAIN)]
    visible = train["visible_lesion"] if "visible_lesion" in train else pd.Series(None, index=train.index, dtype=object)
    unhealthy = (~train["labeled"].astype(bool) | train["cspca"].fillna(False).astype(bool)
                 | (train.get("lesion_slices", pd.Series(0, index=train.index)) > 0) | (visible == True))  # noqa: E712  (None: not recorded)
    healthy = sorted(set(train["patient_id"]) - set(train.loc[unhealthy, "patient_id"]))
    unrecorded = set(train.loc[visible.isna(), "patient_id"])
    return healthy, [p for p in healthy if p in unrecorded]


def map_parts(cases: pd.DataFrame, parts: int, seed: int) -> dict[str, int]:
    """Leak-free maps (cross-fitting): the training-split cases in ``parts`` parts, by patient and
    stratified by csPCa; each part's maps come from models trained without it. ``parts`` 0 = off."""
    if parts == 0:
        return {}
    train = cases[(cases["set"] == INTERNAL) & (cases["split"] == TRAIN)]
    if parts < 2 or train["patient_id"].nunique() < parts:
        raise AdunetError(f"leak_free_maps must be 0 (off) or between 2 and the training split's "
                          f"{train['patient_id'].nunique()} patients, not {parts}")
    return assign_folds(list(zip(train["case_id"], train["cspca"], train["patient_id"])), parts, seed + 1)


def nnunet_splits(cases: pd.DataFrame) -> list[dict[str, list[str]]]:
    """The folds as nnU-Net's ``splits_final.json``: one ``{"train", "val"}`` per fold, labelled
    internal cases only (the ones nnU-Net trains on)."""
    internal = cases[(cases["set"] == INTERNAL) & cases["labeled"].astype(bool)]
    folds = sorted(int(f) for f in internal["fold"].unique())
    return [{"train": sorted(internal.loc[internal["fold"] != f, "case_id"]),
             "val": sorted(internal.loc[internal["fold"] == f, "case_id"])} for f in folds]


def label_sources(cases: pd.DataFrame) -> pd.DataFrame:
    """Cases per set and lesion-mask source (which picai_labels source, Prostate158 file, or why none)."""
    return (cases.groupby(["set", "lesion_source"], sort=False).agg(cases=("case_id", "count"),
                                                                    labeled=("labeled", "sum"))
            .reset_index())


def mask_sources(cases: pd.DataFrame) -> pd.DataFrame:
    """Cases per set whose crop mask came from files or from the zone model."""
    return cases.groupby(["set", "mask_source"], sort=False).agg(cases=("case_id", "count")).reset_index()


def summary(cases: pd.DataFrame) -> pd.DataFrame:
    """Cases, patients, csPCa-positive and labelled cases and slices per set and split."""
    return (cases.assign(positive=cases["cspca"].fillna(False).astype(bool))
            .groupby(["set", "split"], sort=False)
            .agg(cases=("case_id", "count"), patients=("patient_id", "nunique"), csPCa=("positive", "sum"),
                 labeled=("labeled", "sum"), gland_slices=("gland_slices", "sum"),
                 lesion_slices=("lesion_slices", "sum"))
            .reset_index())


def figure_rows(ctx: RunContext, cases: pd.DataFrame, count: int) -> list[dict[str, Any]]:
    """Rows for :func:`~adunet_lib.report.figures.preprocessing_figure`: lesion cases first."""
    chosen = cases.sort_values(["lesion_slices", "case_id"], ascending=[False, True]).head(count)
    rows = []
    for _, row in chosen.iterrows():
        pre = PreprocessedCase.from_run(ctx, row["set"], row["case_id"])
        st = pre.stack(CROPPED)
        k = int(np.argmax(st.lesion.reshape(len(st.lesion), -1).sum(1))) if st.lesion.any() else pre.n_slices // 2
        z = int(pre.slice_indices[k])
        on_t2w = {s: ctx.case_image(row["set"], row["case_id"], s) for s in SEQUENCES}
        lesion = ctx.case_image(row["set"], row["case_id"], "lesion")
        (x0, y0, _), (x1, y1, _) = pre.box.start, pre.box.stop
        unmasked = {}
        for s in SEQUENCES:
            lo, hi = st.norm[s]
            unmasked[s] = np.clip((pre.to_slices(on_t2w[s])[k] - lo) / (hi - lo), 0, 1)
        rows.append({"case_id": pre.case_id, "original": {s: on_t2w[s].array[z] for s in SEQUENCES},
                     "box": (x0, y0, x1, y1), "gland": pre.gland_on_t2w().array[z],
                     "lesion": lesion.array[z] if lesion is not None else None, "cropped": unmasked,
                     "masked": {s: st.sequence(s)[k] for s in SEQUENCES}, "lesion_model": st.lesion[k]})
    return rows


def viewer_volumes(ctx: RunContext, cases: pd.DataFrame) -> tuple[str, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(case id, model-slice volumes, overlays) for the viewer: the validation case with most lesion slices
    (the run's own held-out fold, so two runs on different cohorts draw their own case), else any case's."""
    held_out = cases[cases["split"] == VAL] if "split" in cases else cases.iloc[:0]
    pool = held_out if len(held_out) and held_out["lesion_slices"].max() > 0 else cases
    first = pool.sort_values(["lesion_slices", "case_id"], ascending=[False, True]).iloc[0]
    st = PreprocessedCase.from_run(ctx, first["set"], first["case_id"]).stack(CROPPED)
    return first["case_id"], {s: st.sequence(s) for s in SEQUENCES}, {"gland": st.gland, "lesion": st.lesion}
