"""The zone model of a run: its settings, and one study's zones from it (``adunet predict`` / ``adunet zones``).

Shared by the zone stage (:mod:`adunet_lib.zones.stage`, notebook 01) and the commands that use a
finished run, as :mod:`adunet_lib.anomaly_models.inference` is for the reconstruction models.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from adunet_lib.cache import recorded
from adunet_lib.data.case import LoadedCase
from adunet_lib.data.image import Image, read_image, write_image
from adunet_lib.errors import AdunetError, CaseError, ParamsError
from adunet_lib.nnunet_seam import PredictRequest, channel_file, checkpoint_file, fold_folder, label_file
from adunet_lib.run_folder import RunContext
from adunet_lib.segmentation import nnunet
from adunet_lib.vocabulary import SEQUENCES
from adunet_lib.vocabulary import INTERNAL
from adunet_lib.zones import pretrained
from adunet_lib.zones.masks import implausible, largest_gland_component


@dataclasses.dataclass(frozen=True)
class ZoneSettings:
    """The zone model (nnU-Net v2). ``epochs``/``iterations_per_epoch`` None = nnU-Net's defaults.

    Attributes:
        configuration: nnU-Net configuration (nnU-Net's default ``3d_fullres``; ``2d`` for a CPU demo).
        target_spacing: override nnU-Net's target spacing (z, y, x) in mm (coarser = faster).
        n_folds: folds over the zone model's training cases, by patient.
        folds: the folds to train; their ensemble predicts every other case.
        channels: input sequences, T2W first (the zones are T2W anatomy).
        min_gland_ml, max_gland_ml: a predicted gland outside this volume stops its case.
        dataset_id: nnU-Net dataset id of the zone model (the variants of notebook 06 use 500+).
    """

    configuration: str = "3d_fullres"
    target_spacing: tuple[float, ...] | None = None
    epochs: int | None = None
    iterations_per_epoch: int | None = None
    val_iterations_per_epoch: int | None = None
    batch_size: int | None = None
    n_folds: int = 5
    folds: tuple[int, ...] = (0, 1, 2, 3, 4)
    channels: tuple[str, ...] = ("t2w",)
    min_gland_ml: float = 5.0
    max_gland_ml: float = 500.0
    dataset_id: int = 400
    num_processes: int = 2
    mirroring: bool = True
    seed: int = 0  # training: weights, batches, augmentation
    fold_seed: int | None = None  # which cases each fold holds out (the run's data_seed); None: ``seed``

    def __post_init__(self) -> None:
        if not self.channels or self.channels[0] != "t2w" or not set(self.channels) <= set(SEQUENCES) \
                or len(set(self.channels)) != len(self.channels):
            raise ParamsError(f"zone_model channels must start with t2w and name each of {', '.join(SEQUENCES)} "
                              f"at most once, not {list(self.channels)}")
        if self.n_folds < 2:
            raise ParamsError(f"zone_model n_folds must be at least 2, not {self.n_folds}")
        if not self.folds or any(not 0 <= f < self.n_folds for f in self.folds):
            raise ParamsError(f"zone_model folds must lie in 0..{self.n_folds - 1}, not {list(self.folds)}")
        if not 0 <= self.min_gland_ml < self.max_gland_ml:
            raise ParamsError(f"zone_model needs 0 <= min_gland_ml < max_gland_ml, not "
                              f"{self.min_gland_ml} and {self.max_gland_ml}")
        for name in ("epochs", "iterations_per_epoch", "val_iterations_per_epoch", "batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ParamsError(f"zone_model {name} must be at least 1 (or 0 for nnU-Net's default), not {value}")

    @classmethod
    def from_params(cls, params: dict[str, Any], seed: int = 0, fold_seed: int | None = None) -> ZoneSettings:
        """From notebook 01's ``zone_model`` dict, where ``0`` and ``[]`` mean "nnU-Net's own choice";
        ``seed`` drives training, ``fold_seed`` (the run's ``data_seed``) the folds, so that a seed spread
        holds the zone model's held-out cases fixed as it holds the cohort."""
        known = {f.name for f in dataclasses.fields(cls)} - {"seed", "fold_seed"}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ParamsError(f"zone_model: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        unset = {"target_spacing", "epochs", "iterations_per_epoch", "val_iterations_per_epoch", "batch_size"}
        values = {k: (tuple(v) if isinstance(v, list) else v) or (None if k in unset else v) for k, v in params.items()}
        return cls(**values, seed=seed, fold_seed=fold_seed)

    def budget(self) -> dict[str, int]:
        return {"epochs": self.epochs or 1000, "iterations_per_epoch": self.iterations_per_epoch or 250,
                "val_iterations_per_epoch": self.val_iterations_per_epoch or 50}

    def describe(self) -> str:
        return f"nnU-Net {self.configuration}, folds {list(self.folds)} of {self.n_folds}, inputs {', '.join(self.channels)}"


def channel_images(loaded: LoadedCase, channels: tuple[str, ...]) -> list[Image]:
    t2w = loaded.t2w.geometry
    return [Image(loaded.on_t2w(seq).array.astype(np.float32), t2w) for seq in channels]


def finish_mask(raw: Path, t2w: Image, case_id: str, where: Path | str, settings: ZoneSettings) -> Image:
    """nnU-Net's label map → the mask adunet crops with: on the T2W grid exactly, largest gland
    component, plausible volume — else :class:`CaseError` naming the case and ``where`` (its T2W)."""
    labels = read_image(raw)
    if labels.shape != t2w.shape:
        raise CaseError(case_id, raw, f"zone prediction has shape {labels.shape}, the T2W image {t2w.shape}")
    zones = largest_gland_component(Image(np.clip(labels.array, 0, 2).astype(np.uint8), t2w.geometry))
    reason = implausible(zones, settings.min_gland_ml, settings.max_gland_ml)
    if reason:
        raise CaseError(case_id, where, reason)
    return zones


def zone_model_settings(ctx: RunContext) -> tuple[ZoneSettings, dict[str, Any]]:
    """The zone model of a finished run (settings and record); a one-line error when it has none."""
    record = recorded(ctx.zone_record)
    if not record.get("settings"):
        raise AdunetError(f"{ctx.run_dir}: this run has no zone model (no set's mask_source was predicted); give the "
                          "study's mask with --gland or --zones, use the pretrained gland model (--gland-model "
                          f"pretrained, after pip install -e \".[{pretrained.EXTRA}]\") or a run that predicts masks")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in record["settings"].items()}
    return ZoneSettings(**values), record


def predict_study_zones(ctx: RunContext, loaded: LoadedCase, target: Path, log: Callable[[str], None] = print) -> str:
    """Predict one study's PZ/TZ mask with the run's zone model (ensemble of its trained folds),
    post-processed and checked as the run's own masks; written to ``target`` on the study's T2W grid.

    Returns:
        A line saying which model made the mask (for the prediction's JSON).
    """
    settings, record = zone_model_settings(ctx)
    missing = [s for s in settings.channels if s not in loaded.images]
    if missing:
        raise AdunetError(f"the run's zone model reads {', '.join(settings.channels)}: give the study's "
                          f"{', '.join(missing)} too")
    mdir = ctx.nnunet_model_dir(record["dataset"], settings.configuration)
    folds = [int(f) for f in record["folds"]]
    absent = [f for f in folds if not (mdir / fold_folder(f) / checkpoint_file("final")).is_file()]
    if absent:
        raise AdunetError(f"{mdir}: zone model fold(s) {absent} not trained (rerun notebook 01 of this run)")
    case_id = loaded.case_id
    scratch = target.parent / f".{case_id}_zones_nnunet"  # nnU-Net's scratch space, gone whatever happens
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        files = [str(write_image(image, scratch / "input" / channel_file(case_id, k)))
                 for k, image in enumerate(channel_images(loaded, settings.channels))]
        nnunet.call(ctx, [PredictRequest(model_dir=str(mdir), folds=tuple(folds), inputs={case_id: tuple(files)},
                                         output_dir=str(scratch / "output"), device=ctx.device,
                                         mirroring=settings.mirroring, save_probabilities=False)],
                    log, label="nnU-Net zones", scratch=scratch)
        mask = finish_mask(scratch / "output" / label_file(case_id), loaded.t2w, case_id,
                           loaded.case.path_of("t2w"), settings)
        write_image(mask, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return f"predicted by the run's zone model ({record['dataset']}, {settings.describe()})"


#: ``adunet predict/zones --gland-model``: which model makes a study's crop mask when none is given
GLAND_MODELS = ("auto", "run", "pretrained")


def choose_gland_model(ctx: RunContext, choice: str = "auto") -> str:
    """``run`` (the run's zone model) or ``pretrained`` (the pretrained gland model, ``lavlab-taps``).

    ``auto`` takes the pretrained gland where it is installed and the run has no zone model, or one
    trained on phantoms only (a demo run: useless on a real study), or the run's own crops came from
    it; otherwise the run's zone model, as for the run's own cases. With neither: one line naming both.
    """
    if choice not in GLAND_MODELS:
        raise AdunetError(f"--gland-model must be one of {', '.join(GLAND_MODELS)}, not {choice!r}")
    if choice != "auto":
        return choice
    record = recorded(ctx.zone_record)
    has_zone_model = bool(record.get("settings"))
    internal = recorded(ctx.preprocessing_record).get("datasets", {}).get(INTERNAL, {})
    phantoms_only = has_zone_model and record.get("training_data") == [INTERNAL] and bool(internal.get("synthetic"))
    if pretrained.available() and (not has_zone_model or phantoms_only or ctx.pretrained_gland_record.is_file()):
        return "pretrained"
    if has_zone_model:
        return "run"
    raise AdunetError(f"{ctx.run_dir}: no mask given and this run has no zone model; give --gland or --zones, "
                      f"install the pretrained gland model (pip install -e \".[{pretrained.EXTRA}]\") or use a run "
                      "with a zone model")


def predict_study_mask(ctx: RunContext, loaded: LoadedCase, folder: Path, choice: str = "auto",
                       log: Callable[[str], None] = print) -> tuple[Path, str, str, str]:
    """One study's crop mask when none is given: the run's zone model (``<case>_zones.nii.gz``, PZ/TZ)
    or the pretrained gland model (``<case>_gland.nii.gz``, gland only), chosen by
    :func:`choose_gland_model`.

    Returns:
        (the mask file in ``folder``, ``"zones"`` or ``"gland"``, the model used: ``run`` or
        ``pretrained``, a line saying which model made it).
    """
    used = choose_gland_model(ctx, choice)
    case_id = loaded.case_id
    if used == "run":
        target = folder / f"{case_id}_zones.nii.gz"
        try:
            return target, "zones", used, predict_study_zones(ctx, loaded, target, log)
        except CaseError as exc:
            if "plausible" not in exc.message and "empty" not in exc.message:
                raise
            raise CaseError(case_id, exc.path, f"{exc.message}; the run's zone model may not suit this study: try "
                            f"--gland-model pretrained (pip install -e \".[{pretrained.EXTRA}]\")") from None
    record = recorded(ctx.zone_record).get("settings") or {}
    defaults = ZoneSettings()
    target = folder / f"{case_id}_gland.nii.gz"
    result = pretrained.pretrained_gland(loaded.t2w, case_id, loaded.case.path_of("t2w"),
                                         record.get("min_gland_ml", defaults.min_gland_ml),
                                         record.get("max_gland_ml", defaults.max_gland_ml), ctx.device, log)
    write_image(result.mask, target)
    return target, "gland", used, (f"{result.made_by}: whole gland {result.ml:.1f} ml in {result.seconds:.0f} s, "
                                   "no PZ/TZ split")
