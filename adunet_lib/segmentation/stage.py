"""Notebook 06's stage logic: for every variant, export → plan/preprocess → train → predict → detection maps.

Where each step's outputs go is the run folder's business (:mod:`adunet_lib.run_folder`): nnU-Net's
raw / preprocessed / results folders, the softmax it saves, and the PI-CAI detection maps on each
case's T2W grid. A variant's steps are redone when the fingerprint of its inputs (maps, folds,
settings) changes.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from adunet_lib.cache import fingerprint, is_current, recorded, write_record
from adunet_lib.errors import AdunetError, ParamsError
from adunet_lib.fileio import exclusive, write_json
from adunet_lib.nnunet_seam import PlanRequest, PredictRequest, PreprocessRequest, TrainRequest, probabilities_file
from adunet_lib.preprocessing.pipeline import PreprocessedCase
from adunet_lib.run_folder import RunContext
from adunet_lib.segmentation import nnunet
from adunet_lib.segmentation.detection import LESION_THRESHOLDS, write_detection
from adunet_lib.segmentation.export import channel_files, export_variant, write_splits
from adunet_lib.segmentation.params import SegmentationParams
from adunet_lib.vocabulary import (INTERNAL, MAP_CHANNEL_NAME, MAP_NORMALISATIONS, TEST, VAL, Variant,
                                   variant)


#: nnU-Net training losses: its own Dice + CE, or PI-CAI's baseline focal + CE.
LOSSES = ("dice_ce", "focal_ce")
#: nnU-Net checkpoints that predict, by the name of their file (checkpoint_<name>.pth).
CHECKPOINTS = ("final", "best")
#: Settings added after runs were made: at their default they stay out of the fingerprint, so an
#: earlier run (the demo's) is not redone for a setting it already had.
_NEWER_SETTINGS = {"loss": "dice_ce", "checkpoint": "final", "lesion_threshold": "dynamic-fast"}


@dataclasses.dataclass(frozen=True)
class SegmentationSettings:
    """nnU-Net settings. ``epochs``/``iterations_per_epoch`` None = nnU-Net's defaults (1000 × 250).

    Attributes:
        configuration: nnU-Net configuration (paper: ``3d_fullres``; CPU demo: ``2d``).
        target_spacing: override nnU-Net's target spacing (z, y, x) in mm, e.g. coarser for a CPU demo.
        folds: folds to train (fold 0's validation cases are the internal validation set).
        batch_size: override the planned batch size (None = nnU-Net's plan).
        mirroring: test-time mirroring (nnU-Net's default: on).
        map_normalisation: nnU-Net channel name (= normalisation) of the anomaly-map channels.
        num_gpus: GPUs per training, data-parallel as nnU-Net's own ``-num_gpus`` does it (1: one device).
        loss: ``dice_ce`` (nnU-Net's own trainer) or ``focal_ce`` (PI-CAI's baseline: 0.5 · focal +
            0.5 · cross-entropy, :class:`~adunet_lib.segmentation.losses.FocalAndCrossEntropy`).
        checkpoint: the weights that predict: ``final`` (nnU-Net's default) or ``best`` (the epoch
            of best EMA pseudo-Dice on the fold's validation cases, as PI-CAI's baseline predicts).
        lesion_threshold: how detection maps are cut from the softmax (``dynamic-fast``, the
            package's default, or ``dynamic``, PI-CAI's evaluation's).
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
    map_normalisation: str = MAP_CHANNEL_NAME
    num_gpus: int = 1
    loss: str = "dice_ce"
    checkpoint: str = "final"
    lesion_threshold: str = "dynamic-fast"

    def __post_init__(self) -> None:
        if self.map_normalisation not in MAP_NORMALISATIONS:
            raise ParamsError(f"map_normalisation must be one of {', '.join(MAP_NORMALISATIONS)}, "
                              f"not {self.map_normalisation!r}")
        for name, allowed in (("loss", LOSSES), ("checkpoint", CHECKPOINTS), ("lesion_threshold", LESION_THRESHOLDS)):
            if getattr(self, name) not in allowed:
                raise ParamsError(f"segmentation {name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")

    @classmethod
    def from_params(cls, **params: Any) -> SegmentationSettings:
        """From notebook parameters, where ``0`` and ``[]`` mean "nnU-Net's own choice"."""
        unset = {"target_spacing", "epochs", "iterations_per_epoch", "val_iterations_per_epoch", "batch_size"}
        values = {k: (tuple(v) if isinstance(v, list) else v) or (None if k in unset else v) for k, v in params.items()}
        return cls(**values)

    def budget(self) -> dict[str, int]:
        return {"epochs": self.epochs or 1000, "iterations_per_epoch": self.iterations_per_epoch or 250,
                "val_iterations_per_epoch": self.val_iterations_per_epoch or 50}


def settings_for(params: SegmentationParams) -> SegmentationSettings:
    """The nnU-Net settings of notebook 06's parameters (what the variants' fingerprints are made of)."""
    return SegmentationSettings.from_params(
        configuration=params.configuration, target_spacing=params.target_spacing, epochs=params.epochs,
        iterations_per_epoch=params.iterations_per_epoch, val_iterations_per_epoch=params.val_iterations_per_epoch,
        folds=params.folds, batch_size=params.batch_size, mirroring=params.mirroring,
        base_dataset_id=params.base_dataset_id, keep_softmax=params.keep_softmax, seed=params.seed,
        map_normalisation=params.map_normalisation, num_gpus=params.num_gpus, loss=params.loss,
        checkpoint=params.checkpoint, lesion_threshold=params.lesion_threshold)


def chosen_variants(params: SegmentationParams, variants: Sequence[str] | None = None) -> list[str]:
    """``variants`` (a unit's ``--variant``; each among the params'), else every variant of the table."""
    known = params.table_variants()
    chosen = list(variants or known)
    outside = [v for v in chosen if v not in known]
    if outside:
        raise ParamsError(f"--variant {', '.join(outside)}: not among segmentation.variants ({', '.join(known)})")
    return chosen


def run(ctx: RunContext, params: SegmentationParams, variants: Sequence[str] | None = None,
        folds: Sequence[int] | None = None, train_only: bool = False,
        log: Callable[[str], None] = print) -> pd.DataFrame:
    """Notebook 06's and ``adunet run --stage 06``'s entry point.

    Notebook 06: every variant of the table, trained and predicted (:func:`run_all`; seconds and nnU-Net
    steps per variant). A unit (``train_only``): some ``folds`` of some ``variants`` trained, nothing
    else (:func:`train_folds`; folds trained here per variant) — the notebook then only predicts.
    """
    settings = settings_for(params)
    chosen = chosen_variants(params, variants)
    cases, _ = ctx.tables()
    if not train_only:
        return run_all(ctx, chosen, cases, params.map_model, settings, log)
    folds = list(folds or settings.folds)
    return pd.DataFrame([{"variant": name, "trained": train_folds(ctx, name, folds, cases, params.map_model,
                                                                  settings, log)} for name in chosen])


def _fingerprint(ctx: RunContext, spec: Variant, map_model: str, cases: pd.DataFrame,
                 settings: SegmentationSettings) -> str:
    upstream = [recorded(ctx.preprocessing_record).get("fingerprint", "")]
    if spec.maps:
        record = recorded(ctx.map_record(map_model))
        maps = record.get("fingerprint")
        if not maps:
            raise AdunetError(f"{ctx.map_record(map_model)} not found: run notebook 05 for {map_model} first")
        if record.get("complete") is False:
            raise AdunetError(f"{ctx.map_record(map_model)}: only map shards ran for {map_model}; run notebook 05 "
                              "(it makes the missing maps and completes the set) first")
        upstream.append(maps)
    return fingerprint({"variant": spec.name, "map_model": map_model if spec.maps else "",
                        "cases": cases[["case_id", "set", "fold"]].values.tolist(),
                        # how many GPUs train it is how, not what: a run moved to more GPUs resumes
                        "settings": {k: v for k, v in dataclasses.asdict(settings).items() if k != "num_gpus"
                                     and _NEWER_SETTINGS.get(k, object()) != v}
                        | {"mirroring": None, "keep_softmax": None}},
                       upstream=upstream)


def _reset_if_changed(ctx: RunContext, spec: Variant, dataset_name: str, key: str, log: Callable[[str], None]) -> None:
    record = ctx.nnunet_dataset_record(dataset_name)
    if is_current(record, key):
        return
    stale = [ctx.nnunet_raw / dataset_name, ctx.nnunet_preprocessed / dataset_name, ctx.nnunet_results / dataset_name,
             ctx.nnunet_softmax_dir(spec.name), ctx.detection_dir(spec.name)]
    if any(p.exists() for p in stale):
        log(f"{spec.name}: inputs or settings changed since the last run: redoing its nnU-Net steps")
    for path in stale:
        if path.exists():
            shutil.rmtree(path)
    write_record(record, key, variant=spec.name)


def prediction_jobs(ctx: RunContext, spec: Variant, cases: pd.DataFrame, settings: SegmentationSettings,
                    map_model: str) -> list[tuple[str, list[int], dict[str, list[str]]]]:
    """(split, folds, case → channel files): validation cases by the fold that held them out;
    external cases by the ensemble of trained folds."""
    internal = cases[(cases["set"] == INTERNAL) & cases["labeled"].astype(bool)]
    external = cases[cases["set"] != INTERNAL]

    def inputs(rows: pd.DataFrame) -> dict[str, list[str]]:
        return {r["case_id"]: [str(f) for f in channel_files(ctx, spec, r["set"], r["case_id"], map_model)]
                for _, r in rows.sort_values("case_id").iterrows()}

    jobs = [(VAL, [fold], inputs(internal[internal["fold"] == fold])) for fold in settings.folds
            if (internal["fold"] == fold).any()]
    if len(external):
        jobs.append((TEST, list(settings.folds), inputs(external)))
    return jobs


def run_variant(ctx: RunContext, variant_name: str, cases: pd.DataFrame, map_model: str,
                settings: SegmentationSettings, log: Callable[[str], None] = print) -> dict[str, float]:
    """All nnU-Net steps for one variant in one child process (each skipped when its outputs exist)."""
    spec = variant(variant_name)
    map_model = spec.maps_from(map_model)  # the oracle row always takes the twin's maps
    dataset_id, name = ctx.nnunet_dataset(spec.name, settings.base_dataset_id)
    t = time.perf_counter()
    with exclusive(ctx.nnunet_dataset_lock(name)):  # fold units of this variant may be planning it
        _reset_if_changed(ctx, spec, name, _fingerprint(ctx, spec, map_model, cases, settings), log)
        export_variant(ctx, spec, name, cases, map_model, settings.map_normalisation)
        write_splits(ctx, name)
    steps = nnunet.training_steps(ctx, dataset_id, name, settings)
    mdir = ctx.nnunet_model_dir(name, settings.configuration)
    jobs = prediction_jobs(ctx, spec, cases, settings, map_model)
    for split, folds, inputs in jobs:
        out = ctx.nnunet_softmax_dir(spec.name, split)
        request = PredictRequest(model_dir=str(mdir), folds=tuple(folds), inputs=inputs, output_dir=str(out),
                                 device=ctx.device, mirroring=settings.mirroring, checkpoint=settings.checkpoint)
        if not all((out / request.done_file(cid)).is_file() for cid in inputs):
            steps.append(request)
    if steps:
        log(f"{spec.name}: nnU-Net {' → '.join(s.command for s in steps)} ({settings.configuration}, "
            f"budget {settings.budget()}, folds {list(settings.folds)})")
    nnunet.call(ctx, steps, log, settings.num_processes, label=f"nnU-Net {spec.name}")
    write_detections(ctx, spec.name, cases, jobs, settings.keep_softmax, settings.lesion_threshold)
    return {"seconds": time.perf_counter() - t, "steps": len(steps)}


def train_folds(ctx: RunContext, variant_name: str, folds: Sequence[int], cases: pd.DataFrame, map_model: str,
                settings: SegmentationSettings, log: Callable[[str], None] = print) -> int:
    """Train some folds of one variant, nothing else: one unit of notebook 06, run as a process of its own
    (``adunet run PARAMS --stage 06 --variant V --fold K``) next to other such units.

    Export and planning are shared by a variant's folds, so one process at a time does them (under a
    lock beside the variant's record); the folds then train side by side, each in its own nnU-Net fold
    folder. Notebook 06 afterwards finds the trained folds (their "done" files) and only predicts.
    Returns the number of folds trained here.
    """
    spec = variant(variant_name)
    map_model = spec.maps_from(map_model)
    unknown = [f for f in folds if f not in settings.folds]
    if unknown:
        raise AdunetError(f"--fold {', '.join(map(str, unknown))}: not among segmentation.folds {list(settings.folds)}")
    dataset_id, name = ctx.nnunet_dataset(spec.name, settings.base_dataset_id)
    chosen = dataclasses.replace(settings, folds=tuple(folds))
    with exclusive(ctx.nnunet_dataset_lock(name)):
        _reset_if_changed(ctx, spec, name, _fingerprint(ctx, spec, map_model, cases, settings), log)
        plan = [s for s in nnunet.training_steps(ctx, dataset_id, name, chosen)
                if isinstance(s, (PlanRequest, PreprocessRequest))]
        if plan:
            export_variant(ctx, spec, name, cases, map_model, settings.map_normalisation)
            write_splits(ctx, name)
            nnunet.call(ctx, plan, log, settings.num_processes, label=f"nnU-Net {spec.name} plan")
    train = [s for s in nnunet.training_steps(ctx, dataset_id, name, chosen) if isinstance(s, TrainRequest)]
    if train:
        log(f"{spec.name}: nnU-Net train fold(s) {[s.fold for s in train]} ({settings.configuration}, "
            f"budget {settings.budget()})")
    nnunet.call(ctx, train, log, settings.num_processes, label=f"nnU-Net {spec.name}")
    return len(train)


def write_detections(ctx: RunContext, variant_name: str, cases: pd.DataFrame, jobs, keep_softmax: bool,
                     threshold: str = "dynamic-fast") -> None:
    """PI-CAI detection maps on each case's T2W grid from nnU-Net's softmax."""
    sets = cases.set_index("case_id")["set"]
    for split, _, inputs in jobs:
        for cid in inputs:
            target = ctx.detection_map(variant_name, split, cid)
            if not target.is_file():
                geometry = PreprocessedCase.from_run(ctx, sets[cid], cid).t2w_geometry
                write_detection(ctx.nnunet_softmax_dir(variant_name, split) / probabilities_file(cid), geometry, target,
                                keep_softmax, threshold)


def run_all(ctx: RunContext, variants: Sequence[str], cases: pd.DataFrame, map_model: str,
            settings: SegmentationSettings, log: Callable[[str], None] = print) -> pd.DataFrame:
    """Every variant in turn; returns a table of seconds and nnU-Net steps per variant."""
    for name in variants:
        variant(name)
    write_json(ctx.segmentation_record, dataclasses.asdict(settings) | {"variants": list(variants),
                                                                       "map_model": map_model})
    rows = []
    for name in variants:
        rows.append({"variant": name, **run_variant(ctx, name, cases, map_model, settings, log)})
        log(f"{name}: done in {rows[-1]['seconds']:.0f} s")
    return pd.DataFrame(rows)


def detection_counts(ctx: RunContext) -> pd.DataFrame:
    """How many detection maps each variant has per split."""
    return pd.DataFrame([{"variant": v, "split": s.name, "detection maps": len(list(s.glob("*_detection_map.mha")))}
                         for v in ctx.detection_variants()
                         for s in sorted(ctx.detection_dir(v).iterdir()) if s.is_dir()])
