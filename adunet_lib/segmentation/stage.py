"""Notebook 06's stage logic: for every variant, export → plan/preprocess → train → predict → detection maps.

Files::

    runs/<name>/nnunet/raw/DatasetXXX_adunet_<variant>/   nnU-Net raw datasets (+ _sequences, _maps)
    runs/<name>/nnunet/preprocessed/…/splits_final.json    the cross-validation folds of notebook 01
    runs/<name>/nnunet/results/…                          nnU-Net's trained folds (checkpoint_final.pth)
    runs/<name>/nnunet/predictions/<variant>/<set>/       nnU-Net's softmax (.npz)
    runs/<name>/predictions/<variant>/<set>/<case>_detection_map.mha   on the T2W grid
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from adunet_lib.errors import AdunetError
from adunet_lib.fileio import read_json, write_json
from adunet_lib.preprocessing.stage import load_case
from adunet_lib.runner.context import RunContext
from adunet_lib.segmentation import nnunet
from adunet_lib.segmentation._worker import PLANNED, TRAINED
from adunet_lib.segmentation.detection import detection_path, write_detection
from adunet_lib.segmentation.export import dataset_name, export_sequences, export_variant, write_splits
from adunet_lib.segmentation.variants import VARIANTS

SETS = {"val": "validation", "test": "test"}


@dataclasses.dataclass(frozen=True)
class SegmentationSettings:
    """nnU-Net settings. ``epochs``/``iterations_per_epoch`` None = nnU-Net's defaults (1000 × 250).

    Attributes:
        configuration: nnU-Net configuration (paper: ``3d_fullres``; CPU demo: ``2d``).
        target_spacing: override nnU-Net's target spacing (z, y, x) in mm, e.g. coarser for a CPU demo.
        folds: folds to train (fold 0's validation cases are the internal validation set).
        batch_size: override the planned batch size (None = nnU-Net's plan).
        mirroring: test-time mirroring (nnU-Net's default: on).
    """

    configuration: str = "3d_fullres"
    target_spacing: tuple[float, ...] | None = None
    epochs: int | None = None
    iterations_per_epoch: int | None = None
    val_iterations_per_epoch: int | None = None
    folds: tuple[int, ...] = (0, 1, 2, 3, 4)
    batch_size: int | None = None
    mirroring: bool = True
    base_dataset_id: int = 500
    num_processes: int = 2
    keep_softmax: bool = False
    seed: int = 0

    def budget(self) -> dict[str, int]:
        return {"epochs": self.epochs or 1000, "iterations_per_epoch": self.iterations_per_epoch or 250,
                "val_iterations_per_epoch": self.val_iterations_per_epoch or 50}


def _stamp(ctx: RunContext, variant: str, map_model: str, cases: pd.DataFrame, settings: SegmentationSettings) -> str:
    maps_stamp = ""
    if VARIANTS[variant]:
        stamp_file = ctx.maps / map_model / "stamp.json"
        if not stamp_file.is_file():
            raise AdunetError(f"{stamp_file} not found: run notebook 05 for {map_model} first")
        maps_stamp = read_json(stamp_file)["stamp"]
    key = json.dumps({"variant": variant, "maps": maps_stamp, "map_model": map_model if VARIANTS[variant] else "",
                      "cases": cases[["case_id", "set", "fold"]].values.tolist(),
                      "settings": dataclasses.asdict(settings) | {"mirroring": None, "keep_softmax": None}},
                     sort_keys=True, default=str)
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def _reset_if_changed(ctx: RunContext, variant: str, dataset_id: int, stamp: str, log: Callable[[str], None]) -> None:
    name = dataset_name(dataset_id, variant)
    stamp_file = ctx.nnunet / "stamps" / f"{name}.json"
    if stamp_file.is_file() and read_json(stamp_file).get("stamp") == stamp:
        return
    stale = [ctx.nnunet / d / name for d in ("raw", "preprocessed", "results")]
    stale += [ctx.nnunet / "predictions" / variant, ctx.predictions / variant]
    if any(p.exists() for p in stale):
        log(f"{variant}: inputs or settings changed since the last run: redoing its nnU-Net steps")
    for path in stale:
        if path.exists():
            shutil.rmtree(path)
    write_json(stamp_file, {"stamp": stamp, "variant": variant})


def model_dir(ctx: RunContext, dataset_id: int, variant: str, configuration: str) -> Path:
    return ctx.nnunet / "results" / dataset_name(dataset_id, variant) / f"nnUNetTrainer__nnUNetPlans__{configuration}"


def run_variant(ctx: RunContext, variant: str, index: int, cases: pd.DataFrame, map_model: str,
                settings: SegmentationSettings, log: Callable[[str], None] = print) -> dict[str, float]:
    """All nnU-Net steps for one variant in one child process (each skipped when its outputs exist)."""
    dataset_id = settings.base_dataset_id + index
    name = dataset_name(dataset_id, variant)
    _reset_if_changed(ctx, variant, dataset_id, _stamp(ctx, variant, map_model, cases, settings), log)
    t = time.perf_counter()
    export_variant(ctx, variant, dataset_id, cases, map_model)
    write_splits(ctx, dataset_id, variant, cases)
    steps: list[dict] = []
    preprocessed = ctx.nnunet / "preprocessed" / name
    if not (preprocessed / PLANNED).is_file():
        steps.append({"command": "plan", "dataset_id": dataset_id, "configurations": [settings.configuration],
                      "num_processes": settings.num_processes, "verify": True,
                      "target_spacing": list(settings.target_spacing) if settings.target_spacing else None})
    mdir = model_dir(ctx, dataset_id, variant, settings.configuration)
    for fold in settings.folds:
        if not (mdir / f"fold_{fold}" / TRAINED).is_file():
            steps.append({"command": "train", "dataset_id": dataset_id, "configuration": settings.configuration,
                          "fold": fold, "device": ctx.device, "seed": settings.seed, "batch_size": settings.batch_size,
                          **settings.budget()})
    jobs = prediction_jobs(ctx, variant, dataset_id, cases, settings)
    for split, folds, inputs in jobs:
        out = ctx.nnunet / "predictions" / variant / split
        if not all((out / f"{cid}.npz").is_file() for cid in inputs):
            steps.append({"command": "predict", "model_dir": str(mdir), "folds": folds, "inputs": inputs,
                          "output_dir": str(out), "device": ctx.device, "mirroring": settings.mirroring})
    if steps:
        log(f"{variant}: nnU-Net {' → '.join(s['command'] for s in steps)} ({settings.configuration}, "
            f"budget {settings.budget()}, folds {list(settings.folds)})")
    nnunet.call(ctx, steps, log, settings.num_processes, label=f"nnU-Net {variant}")
    write_detections(ctx, variant, cases, jobs, settings.keep_softmax)
    return {"seconds": time.perf_counter() - t, "steps": len(steps)}


def _inputs(ctx: RunContext, dataset_id: int, variant: str, case_ids: Sequence[str], sub: str) -> dict[str, list[str]]:
    folder = ctx.nnunet / "raw" / dataset_name(dataset_id, variant) / sub
    n = 3 + len(VARIANTS[variant])
    return {cid: [str(folder / f"{cid}_{k:04d}.nii.gz") for k in range(n)] for cid in case_ids}


def prediction_jobs(ctx: RunContext, variant: str, dataset_id: int, cases: pd.DataFrame,
                    settings: SegmentationSettings) -> list[tuple[str, list[int], dict[str, list[str]]]]:
    """Validation cases by the fold that held them out; external cases by the ensemble of trained folds."""
    internal = cases[(cases["set"] == "internal") & cases["labeled"].astype(bool)]
    jobs = []
    for fold in settings.folds:
        val_ids = sorted(internal.loc[internal["fold"] == fold, "case_id"])
        if val_ids:
            jobs.append(("val", [fold], _inputs(ctx, dataset_id, variant, val_ids, "imagesTr")))
    test_ids = sorted(cases.loc[cases["set"] != "internal", "case_id"])
    if test_ids:
        jobs.append(("test", list(settings.folds), _inputs(ctx, dataset_id, variant, test_ids, "imagesTs")))
    return jobs


def write_detections(ctx: RunContext, variant: str, cases: pd.DataFrame, jobs, keep_softmax: bool) -> None:
    """PI-CAI detection maps on each case's T2W grid from nnU-Net's softmax."""
    for split, _, inputs in jobs:
        for cid in inputs:
            target = detection_path(ctx.predictions / variant / split, cid)
            if not target.is_file():
                row = cases[cases["case_id"] == cid].iloc[0]
                geometry = load_case(ctx, row["set"], cid).t2w_geometry
                write_detection(ctx.nnunet / "predictions" / variant / split / f"{cid}.npz", geometry, target.parent,
                                cid, keep_softmax)


def run_all(ctx: RunContext, variants: Sequence[str], cases: pd.DataFrame, map_model: str,
            settings: SegmentationSettings, log: Callable[[str], None] = print) -> pd.DataFrame:
    """Every variant in turn; returns a table of seconds per step."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise AdunetError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    write_json(ctx.nnunet / "settings.json", dataclasses.asdict(settings) | {"variants": list(variants),
                                                                           "map_model": map_model})
    export_sequences(ctx, cases)
    rows = []
    for variant in variants:
        index = list(VARIANTS).index(variant)
        rows.append({"variant": variant, **run_variant(ctx, variant, index, cases, map_model, settings, log)})
        log(f"{variant}: done in {rows[-1]['seconds']:.0f} s")
    return pd.DataFrame(rows)
