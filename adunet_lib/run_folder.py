"""The run folder ``runs/<name>/``: the one module that knows where everything in it lives.

Every path and every record under a run folder is a method of :class:`RunContext`; stages, the
summary and ``adunet predict`` ask it instead of joining path strings, and notebooks talk to each
other only through what it points to. nnU-Net folder names come from nnU-Net's own naming
functions. :data:`LAYOUT` is the listing that ARCHITECTURE.md shows (a test keeps them equal).

A run folder is self-contained: notebook 01 copies every case's sequences and masks, on the case's
T2W grid, into ``cases/``; nothing after it reads the source dataset.

This module knows where things are, not what they are: a record a stage owns is read by its own type
(``PreprocessedCase.from_run``, ``registry.trained_models``), so the run folder sits below every stage
(``adunet_lib/layers.py``).
"""

from __future__ import annotations

import dataclasses
import os
import random
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from adunet_lib.errors import AdunetError, ParamsError
from adunet_lib.fileio import VOLUME_SUFFIX
from adunet_lib.vocabulary import CROPPED, SEQUENCES, VARIANTS, variant

if TYPE_CHECKING:
    import pandas as pd

    from adunet_lib.data.image import Image
    from adunet_lib.parameters import NotebookParams

#: What a finished run folder holds (ARCHITECTURE.md shows this listing; a test compares them).
LAYOUT = """\
runs/<name>/
  .adunet.lock                                  while adunet reproduce runs: who holds the run folder
  .unit-<piece>.lock                            while adunet run works on a piece (02-06): who does it
  params.json                                   what each notebook was given (adunet reproduce)
  reproduce.json                                status and seconds per notebook
  notebooks/                                    executed copies of the notebooks
  jobs/<job id>_*                               adunet submit: each job's submission and log (submitit)
  data/<set>/                                   synthetic cohorts, when params say "synthetic"
  twins/<set>/<case>/<seq>.mha                  synthetic cohorts only: each study's lesion-free twin (01)
  twins/<set>/<case>.npz                        the twin on the model slices, as its study (01; the oracle's G(x))
  cases/<set>/<case>/<volume>.mha               t2w, adc, hbv, lesion, zones, gland on the T2W grid (01)
  preprocessed/<set>/<case>.npz|json            model slices per mode + the way back to T2W (01)
  preprocessed/cases.csv                        one row per case: set, split, fold, labels (01)
  preprocessed/slices.csv                       one row per gland slice: label, T2W slice index (01)
  preprocessed/config.json                      preprocessing settings and skipped cases (01)
  splits.json                                   folds, nnU-Net splits_final.json format (01)
  zones/<case>.nii.gz                           predicted PZ/TZ masks on the T2W grid, when params ask (01)
  zones/heldout/<case>.nii.gz                   the zone model's held-out fold predictions, for Dice (01)
  zones/nnunet/heldout|ensemble/<case>.mha      nnU-Net's label maps before post-processing (01)
  zones/zones.json                              zone model: fingerprint, settings, who made each mask (01)
  zones/pretrained/<case>.nii.gz                pretrained gland masks (lavlab-taps) on the T2W grid, when params ask (01)
  zones/pretrained/glands.json                  pretrained gland: model, volume, seconds, inputs per case (01)
  models/<model>/<seq>[_full|_partN]/model.pt   weights + resolved config; _partN: leak-free maps (02-04)
  models/<model>/<seq>[_full]/checkpoint.pt     resume point while training (02-04)
  models/<model>/<seq>[_full]/losses.csv        loss history, TensorBoard in tb/ (02-04)
  models/<model>/metrics.csv                    SSIM / PSNR per mode, split, sequence (02-04)
  maps/<model>/<case>_<seq>_anomaly.mha         anomaly maps on the T2W grid (05)
  maps/<model>/mapset.json                      kernel, fingerprint, the checkpoints that made them (05)
  maps/<model>/<case>_edits.json                phantoms: lesion removal and healthy change vs the twin (05)
  maps/.<model>.lock                            one process at a time decides if a map set is stale (05, shards)
  nnunet/raw|preprocessed|results/<dataset>/    nnU-Net's own folders: the zone model (01), a variant (06)
  nnunet/records/<dataset>.json                 fingerprint of a variant's inputs and settings (06)
  nnunet/records/<dataset>.lock                 fold units of a variant take turns exporting and planning (06)
  nnunet/softmax/<variant>/<split>/<case>.npz   nnU-Net's probabilities (06)
  nnunet/settings.json                          segmentation settings, variants, map model (06)
  predictions/<variant>/<split>/<case>_detection_map.mha   PI-CAI detection maps on the T2W grid (06)
"""

#: Held by ``adunet reproduce`` while it runs (see :mod:`adunet_lib.runner.lock`).
RUN_LOCK = ".adunet.lock"
#: Held by ``adunet run`` for each piece of work it does: ``.unit-<piece>.lock`` (same module).
UNIT_LOCK_PREFIX = ".unit-"

#: The volumes notebook 01 copies into ``cases/<set>/<case>/`` (masks only where the case has them).
CASE_VOLUMES = (*SEQUENCES, "lesion", "zones", "gland")

def project_root(start: str | Path | None = None) -> Path:
    """The nearest folder (from ``start``, default cwd, upwards) holding ``notebooks/`` and ``params/``."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "notebooks").is_dir() and (folder / "params").is_dir():
            return folder
    return here


def resolve(path: str | Path, root: str | Path | None = None) -> Path:
    """An absolute path; relative ones are taken from the project root (so notebooks opened in
    JupyterLab, whose working folder is ``notebooks/``, find the same files as the runner)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else (Path(root) if root else project_root()) / path


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (when imported) torch."""
    import sys

    random.seed(seed)
    np.random.seed(seed % 2**32)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)


def nnunet_dataset_name(dataset_id: int, variant_name: str) -> str:
    """``DatasetXXX_adunet_<variant>``, checked with nnU-Net's own parser of dataset names."""
    from nnunetv2.utilities.dataset_name_id_conversion import convert_dataset_name_to_id

    name = f"Dataset{dataset_id:03d}_adunet_{variant_name}"
    if convert_dataset_name_to_id(name) != dataset_id:
        raise AdunetError(f"nnU-Net cannot parse the dataset name {name}")
    return name


#: the project's own folders: no run or figure folder may lie in them (``figures/`` and ``runs/`` may hold them)
PROJECT_FOLDERS = ("adunet_lib", "notebooks", "params", "tests", "benchmarks", ".git", ".ci")


def why_unsafe_output(path: str | Path, data: tuple[Path, ...] = (), root: str | Path | None = None) -> str:
    """Why writing into ``path`` would overwrite the project or input data ("" when it would not).

    Refused: the file-system root, the home folder, the project folder or any folder above it, a
    folder inside the project's own code/notebook/params folders (:data:`PROJECT_FOLDERS`), and a
    folder inside one of the ``data`` folders or holding one. Compared as real paths, so "..", "~"
    and symlinks do not slip past.
    """
    base = project_root(root)
    path = resolve(path, base).resolve()
    if path == Path(path.anchor):
        return "is the file-system root"
    if path == Path.home().resolve():
        return "is your home folder"
    if path == base or path in base.parents:
        return f"is the project folder {base} or holds it"
    inside = next((name for name in PROJECT_FOLDERS if path == base / name or base / name in path.parents), None)
    if inside:
        return f"lies in the project's own {inside}/ folder"
    real = [resolve(p, base).resolve() for p in data]
    found = next((p for p in real if path == p or p in path.parents or path in p.parents), None)
    return f"lies inside the input data {found} or holds it" if found is not None else ""


def check_output_folders(run_dir: str | Path, figure_dir: str | Path, inputs: tuple[str | Path | None, ...] = (),
                         root: str | Path | None = None) -> None:
    """Refuse, before anything is written, a run or figure folder that would overwrite the project or
    data (see :func:`why_unsafe_output`).

    Raises:
        ParamsError: one line naming the key, the folder and why.
    """
    data = tuple(Path(str(p)) for p in inputs if p and str(p) not in ("synthetic", "none"))
    for key, value in (("run_dir", run_dir), ("figure_dir", figure_dir)):
        why = why_unsafe_output(value, data, root)
        if why:
            raise ParamsError(f"{key}: {value} {why}; outputs would overwrite files there — use a folder of its own "
                              f"(e.g. runs/<name> and figures/<name>)")


@dataclasses.dataclass(frozen=True)
class RunContext:
    """A run folder (``runs/<params-name>/``), its figure folder and the run-wide settings.

    Example:
        >>> ctx = RunContext.create("runs/demo", "figures/demo", seed=0)  # doctest: +SKIP
        >>> ctx.map_file("fpgan", "10795_1000811", "adc")  # doctest: +SKIP
        PosixPath('/…/runs/demo/maps/fpgan/10795_1000811_adc_anomaly.mha')
    """

    run_dir: Path
    figure_dir: Path
    seed: int = 0
    device: str = "cpu"
    interactive: bool = False
    #: draws what is data rather than training — the synthetic cohort, the folds, the anomaly cohort,
    #: the bootstrap — so that a seed spread can vary training alone (``None``: the same as ``seed``)
    cohort_seed: int | None = None

    @property
    def data_seed(self) -> int:
        return self.seed if self.cohort_seed is None else self.cohort_seed

    @classmethod
    def create(cls, run_dir: str | Path, figure_dir: str | Path, seed: int = 0, device: str = "cpu",
               interactive: bool = False, inputs: tuple[str | Path | None, ...] = (),
               data_seed: int = -1) -> RunContext:
        """Resolve the folders, refuse to write into an input folder, create them and seed every RNG.

        ``data_seed`` < 0 means the same as ``seed`` (one seed for everything).
        """
        check_output_folders(run_dir, figure_dir, inputs)
        ctx = cls(resolve(run_dir), resolve(figure_dir), int(seed), str(device), bool(interactive),
                  None if int(data_seed) < 0 else int(data_seed))
        if device not in ("cpu", "cuda", "mps") and not str(device).startswith("cuda:"):
            raise ParamsError(f"device must be cpu, cuda, cuda:N or mps, not {device!r}")
        ctx.run_dir.mkdir(parents=True, exist_ok=True)
        ctx.figure_dir.mkdir(parents=True, exist_ok=True)
        seed_everything(ctx.seed)
        return ctx

    @classmethod
    def from_params(cls, params: NotebookParams, reads_inputs: bool = False) -> RunContext:
        """The run of a notebook's parameters (their common block), as :meth:`create` makes it;
        ``reads_inputs``: the notebook reads the source data (01), so the run folder may not lie in it."""
        inputs = (params.internal_data, params.external_data) if reads_inputs else ()
        return cls.create(params.run_dir, params.figure_dir, seed=params.seed, device=params.device,
                          interactive=params.interactive, inputs=inputs, data_seed=params.data_seed)

    def figure(self, name: str) -> Path:
        """A file of this params file's figure folder (``figures/<name>/``)."""
        return self.figure_dir / name

    # -- the runner ----------------------------------------------------------------------------
    @property
    def params_record(self) -> Path:
        return self.run_dir / "params.json"

    @property
    def reproduce_record(self) -> Path:
        return self.run_dir / "reproduce.json"

    @property
    def jobs_dir(self) -> Path:
        """submitit's job scripts and logs (``adunet submit``)."""
        return self.run_dir / "jobs"

    @property
    def notebooks_dir(self) -> Path:
        return self.run_dir / "notebooks"

    # -- notebook 01: data, cases on the T2W grid, preprocessed slices, tables, splits ---------
    def synthetic_data(self, set_name: str) -> Path:
        return self.run_dir / "data" / set_name

    def twins_dir(self, set_name: str) -> Path:
        """Synthetic cohorts only: every study's lesion-free twin (``<case>/<seq>.mha``), beside — never
        inside — the dataset, so no reader or training sees it."""
        return self.run_dir / "twins" / set_name

    def twin_slices(self, set_name: str, case_id: str) -> Path:
        """The twin on the case's model slices, normalised and masked as the case (``twins/<set>/<case>.npz``)."""
        return self.twins_dir(set_name) / f"{case_id}.npz"

    def cases_dir(self, set_name: str) -> Path:
        return self.run_dir / "cases" / set_name

    def case_dir(self, set_name: str, case_id: str) -> Path:
        return self.cases_dir(set_name) / case_id

    def case_file(self, set_name: str, case_id: str, volume: str) -> Path:
        """One of :data:`CASE_VOLUMES` of a case, on its T2W grid."""
        if volume not in CASE_VOLUMES:
            raise ValueError(f"unknown case volume {volume!r}; one of {', '.join(CASE_VOLUMES)}")
        return self.case_dir(set_name, case_id) / f"{volume}{VOLUME_SUFFIX}"

    def case_image(self, set_name: str, case_id: str, volume: str) -> Image | None:
        """A case volume on its T2W grid, or None when the case has none (e.g. no lesion label)."""
        from adunet_lib.data.image import read_image

        path = self.case_file(set_name, case_id, volume)
        return read_image(path) if path.is_file() else None

    def preprocessed_dir(self, set_name: str) -> Path:
        return self.run_dir / "preprocessed" / set_name

    @property
    def cases_table(self) -> Path:
        return self.run_dir / "preprocessed" / "cases.csv"

    @property
    def slices_table(self) -> Path:
        return self.run_dir / "preprocessed" / "slices.csv"

    @property
    def preprocessing_record(self) -> Path:
        return self.run_dir / "preprocessed" / "config.json"

    @property
    def splits(self) -> Path:
        return self.run_dir / "splits.json"

    def tables(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``cases.csv`` and ``slices.csv`` (notebook 01 must have run)."""
        import pandas as pd

        if not self.cases_table.is_file():
            raise AdunetError(f"{self.cases_table} not found: run notebook 01_preprocessing for this params file first")
        ids = {"case_id": str, "patient_id": str}  # Prostate158 ids such as "001" stay strings
        return pd.read_csv(self.cases_table, dtype=ids), pd.read_csv(self.slices_table, dtype={"case_id": str})

    # -- notebooks 02-04: reconstruction models -----------------------------------------------
    @property
    def models_dir(self) -> Path:
        return self.run_dir / "models"

    def model_dir(self, model: str, sequence: str, mode: str = CROPPED, part: int | None = None) -> Path:
        """``models/<model>/<seq>`` (cropped, the final setup) or ``<seq>_<mode>``; ``_part<N>``: the
        cross-fitted model that never saw the training cases of map part N (leak-free maps)."""
        name = sequence if mode == CROPPED else f"{sequence}_{mode}"
        return self.models_dir / model / (name if part is None else f"{name}_part{part}")

    def model_checkpoint(self, model: str, sequence: str, mode: str = CROPPED, part: int | None = None) -> Path:
        return self.model_dir(model, sequence, mode, part) / "model.pt"

    def model_metrics(self, model: str) -> Path:
        return self.models_dir / model / "metrics.csv"

    def model_checkpoints(self, model: str, mode: str = CROPPED, part: int | None = None) -> list[tuple[str, Path]] | None:
        """``(sequence, model.pt)`` covering the three sequences: one joint ``all`` model or one per
        sequence; None when the model is not (completely) trained for ``mode`` (and ``part``)."""
        joint = self.model_checkpoint(model, "all", mode, part)
        if joint.is_file():
            return [("all", joint)]
        found = [(seq, self.model_checkpoint(model, seq, mode, part)) for seq in SEQUENCES]
        return found if all(path.is_file() for _, path in found) else None

    # -- notebook 05: anomaly maps ------------------------------------------------------------
    def map_dir(self, model: str) -> Path:
        return self.run_dir / "maps" / model

    def map_file(self, model: str, case_id: str, sequence: str) -> Path:
        return self.map_dir(model) / f"{case_id}_{sequence}_anomaly{VOLUME_SUFFIX}"

    def map_record(self, model: str) -> Path:
        return self.map_dir(model) / "mapset.json"

    def map_edits(self, model: str, case_id: str) -> Path:
        """Phantoms: how much of the lesion G(x) removed and how much healthy gland it changed, per
        sequence and zone (sums, pooled by map quality)."""
        return self.map_dir(model) / f"{case_id}_edits.json"

    def map_lock(self, model: str) -> Path:
        """Beside the map folder (which a stale check may delete): map shards take turns on it."""
        return self.map_dir(model).parent / f".{model}.lock"

    # -- notebook 01: the zone model, when a set's masks are predicted --------------------------
    @property
    def zones_dir(self) -> Path:
        return self.run_dir / "zones"

    def zone_mask(self, case_id: str) -> Path:
        """The predicted PZ/TZ mask of a case on its T2W grid (``zones/<case>.nii.gz``)."""
        return self.zones_dir / f"{case_id}.nii.gz"

    def heldout_zone_mask(self, case_id: str) -> Path:
        """A zone-model training case predicted by the fold that held it out."""
        return self.zones_dir / "heldout" / f"{case_id}.nii.gz"

    @property
    def zone_record(self) -> Path:
        return self.zones_dir / "zones.json"

    def pretrained_gland_mask(self, case_id: str) -> Path:
        """A case's whole-gland mask from the pretrained gland model (``mask_source: pretrained_gland``)."""
        return self.zones_dir / "pretrained" / f"{case_id}.nii.gz"

    @property
    def pretrained_gland_record(self) -> Path:
        return self.zones_dir / "pretrained" / "glands.json"

    def zone_raw_predictions(self, kind: str) -> Path:
        """nnU-Net's own label files before post-processing (``heldout`` or ``ensemble``)."""
        return self.zones_dir / "nnunet" / kind

    def zone_dataset(self, dataset_id: int) -> tuple[int, str]:
        """(dataset id, dataset name) of the zone model."""
        return dataset_id, nnunet_dataset_name(dataset_id, "zones")

    # -- notebook 06: nnU-Net and detection maps ----------------------------------------------
    @property
    def nnunet_dir(self) -> Path:
        return self.run_dir / "nnunet"

    @property
    def nnunet_raw(self) -> Path:
        return self.nnunet_dir / "raw"

    @property
    def nnunet_preprocessed(self) -> Path:
        return self.nnunet_dir / "preprocessed"

    @property
    def nnunet_results(self) -> Path:
        return self.nnunet_dir / "results"

    @property
    def segmentation_record(self) -> Path:
        return self.nnunet_dir / "settings.json"

    def nnunet_dataset(self, variant_name: str, base_dataset_id: int) -> tuple[int, str]:
        """(dataset id, dataset name) of a variant: base id + the variant's own, fixed ``dataset_offset``."""
        dataset_id = base_dataset_id + variant(variant_name).dataset_offset
        return dataset_id, nnunet_dataset_name(dataset_id, variant_name)

    def nnunet_dataset_record(self, dataset_name: str) -> Path:
        return self.nnunet_dir / "records" / f"{dataset_name}.json"

    def nnunet_dataset_lock(self, dataset_name: str) -> Path:
        """Fold units of one variant take turns here to export and plan its dataset (06)."""
        return self.nnunet_dataset_record(dataset_name).with_suffix(".lock")

    def nnunet_model_dir(self, dataset_name: str, configuration: str) -> Path:
        """nnU-Net's results folder of one trained configuration (``<trainer>__<plans>__<config>``)."""
        from adunet_lib.nnunet_seam import trainer_folder  # the seam names what is inside nnU-Net's folders

        return self.nnunet_results / dataset_name / trainer_folder(configuration)

    def nnunet_softmax_dir(self, variant_name: str, split: str | None = None) -> Path:
        """``nnunet/softmax/<variant>[/<split>]``."""
        folder = self.nnunet_dir / "softmax" / variant_name
        return folder / split if split else folder

    def detection_dir(self, variant_name: str, split: str | None = None) -> Path:
        """``predictions/<variant>[/<split>]``."""
        folder = self.run_dir / "predictions" / variant_name
        return folder / split if split else folder

    def detection_map(self, variant_name: str, split: str, case_id: str) -> Path:
        return self.detection_dir(variant_name, split) / f"{case_id}_detection_map.mha"

    def detection_variants(self) -> list[str]:
        """Variants with detection maps in this run, in the vocabulary's order."""
        return [v for v in VARIANTS if (self.run_dir / "predictions" / v).is_dir()]
