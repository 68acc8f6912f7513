"""adunet's seam with nnU-Net v2: the requests its worker runs, and nnU-Net's file names.

The one owner of both (a test greps the rest of ``adunet_lib`` for nnU-Net's raw-data names and for
hand-written request dicts):

* **Requests** — :class:`PlanRequest`, :class:`PreprocessRequest`, :class:`TrainRequest`,
  :class:`PredictRequest`: frozen, typed, built by the stages and ``adunet predict``, sent to
  :mod:`adunet_lib.segmentation._worker` as JSON (``to_json``) and parsed there by the same classes
  (:func:`request_from_json`), which refuse an unknown command, an unknown or missing field and a
  value of the wrong type with one line (:class:`RequestError`).
* **Names** — nnU-Net's raw dataset (``imagesTr/<case>_<k:04d><ending>``, ``labelsTr``,
  ``imagesTs``, ``dataset.json``), its ``splits_final.json``, the results folders
  (``<trainer>__<plans>__<configuration>/fold_<k>/checkpoint_<name>.pth``, named by nnU-Net's own
  function), the files a prediction writes, and adunet's "done" files beside them.

Where these folders sit in a run folder is :mod:`adunet_lib.run_folder`'s business; this module
names what is inside them. It imports no stage, and nnunetv2 only inside the function that needs it.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Union

from adunet_lib.errors import AdunetError
from adunet_lib.fileio import write_json
from adunet_lib.fileio import VOLUME_SUFFIX

# ---------------------------------------------------------------------------------------------- names

#: nnU-Net's raw dataset folders: training images and labels, test images.
IMAGES_TR, LABELS_TR, IMAGES_TS = "imagesTr", "labelsTr", "imagesTs"
#: A raw dataset's description (channels, labels, file ending), also copied into the preprocessed folder.
DATASET_JSON = "dataset.json"
#: The folds nnU-Net cross-validates over, in the preprocessed dataset's folder.
SPLITS_FILE = "splits_final.json"
#: nnU-Net trainer and plans that adunet trains with (nnU-Net's defaults).
NNUNET_TRAINER, NNUNET_PLANS = "nnUNetTrainer", "nnUNetPlans"
#: The file ending of adunet's raw data (MetaImage, as the run folder's volumes: see ``VOLUME_SUFFIX``).
FILE_ENDING = VOLUME_SUFFIX
#: What nnU-Net saves beside a label map when asked for probabilities.
PROBABILITIES_ENDING = ".npz"
#: Written (atomically) by the worker when a step has finished: nnU-Net writes its own files in place,
#: so a file's presence alone does not prove it complete after an interruption. ``PLANNED`` sits in the
#: preprocessed dataset's folder, ``TRAINED`` in the fold's results folder.
PLANNED = "adunet_planned.json"
TRAINED = "adunet_trained.json"


def channel_file(case_id: str, k: int) -> str:
    """Channel ``k`` of a case in a raw images folder: ``<case>_<k:04d><ending>`` (nnU-Net's rule)."""
    return f"{case_id}_{k:04d}{FILE_ENDING}"


def channel_files(folder: Path, case_id: str, n: int) -> list[Path]:
    """The ``n`` channel files of a case in ``folder``, in channel order."""
    return [folder / channel_file(case_id, k) for k in range(n)]


def channel_pattern(case_id: str) -> str:
    """A glob for every channel file of a case (four digits, as nnU-Net matches them)."""
    return f"{case_id}_[0-9][0-9][0-9][0-9]{FILE_ENDING}"


def label_file(case_id: str) -> str:
    """A case's label map: in ``labelsTr``, and what a prediction of the case writes."""
    return f"{case_id}{FILE_ENDING}"


def probabilities_file(case_id: str) -> str:
    """The class probabilities a prediction of the case writes when asked to save them."""
    return f"{case_id}{PROBABILITIES_ENDING}"


def trainer_folder(configuration: str, trainer: str = NNUNET_TRAINER, plans: str = NNUNET_PLANS) -> str:
    """``<trainer>__<plans>__<configuration>``: a trained model's folder in a results dataset, by nnU-Net's own function."""
    from nnunetv2.utilities.file_path_utilities import convert_trainer_plans_config_to_identifier

    return convert_trainer_plans_config_to_identifier(trainer, plans, configuration)


def fold_folder(fold: int) -> str:
    """A fold's folder in a trained model's folder."""
    return f"fold_{fold}"


def checkpoint_file(name: str = "final") -> str:
    """``checkpoint_<name>.pth`` (``final``, ``best``, ``latest``) in a fold's folder."""
    return f"checkpoint_{name}.pth"


def plans_file(plans: str = NNUNET_PLANS) -> str:
    """The plans in a preprocessed dataset's folder."""
    return f"{plans}.json"


def write_dataset_json(raw_folder: Path, channel_names: Mapping[str, str], labels: Mapping[str, int],
                       num_training: int, description: str) -> Path:
    """A raw dataset's ``dataset.json``; its name is the folder's (``DatasetXXX_<name>``) without the id."""
    return write_json(raw_folder / DATASET_JSON, {
        "channel_names": dict(channel_names),
        "labels": dict(labels),
        "numTraining": int(num_training),
        "file_ending": FILE_ENDING,
        "name": raw_folder.name.split("_", 1)[1],
        "description": description,
    })


def write_splits(preprocessed_folder: Path, splits: Sequence[Mapping[str, Sequence[str]]]) -> Path:
    """nnU-Net's ``splits_final.json``: one ``{"train": [...], "val": [...]}`` per fold."""
    return write_json(preprocessed_folder / SPLITS_FILE, splits)


# ------------------------------------------------------------------------------------------- requests


class RequestError(AdunetError):
    """A worker request that is not one: unknown command, unknown or missing field, wrong type."""


@dataclasses.dataclass(frozen=True)
class _Request:
    command: ClassVar[str] = ""

    def to_json(self) -> dict[str, Any]:
        """``{"command": …, <field>: <value>}`` with tuples as lists (what ``json`` reads back)."""
        return {"command": self.command, **{f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}}

    @classmethod
    def from_json(cls, data: Any) -> _Request:
        """The request in ``data`` (as :meth:`to_json` writes it), checked field by field."""
        if not isinstance(data, dict):
            raise RequestError(f"an nnU-Net request is a JSON object, not {type(data).__name__}")
        if data.get("command") != cls.command:
            raise RequestError(f"not a {cls.command} request: command {data.get('command')!r}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - {"command"} - set(fields))
        if unknown:
            raise RequestError(f"{cls.command} request: unknown field(s) {', '.join(unknown)}")
        missing = [name for name, f in fields.items() if name not in data
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise RequestError(f"{cls.command} request: missing field(s) {', '.join(missing)}")
        return cls(**{name: value for name, value in data.items() if name != "command"})

    def __post_init__(self) -> None:
        # every field checked against its type, where it is built as where it is read (lists become tuples)
        for name, tp in _hints(type(self)).items():
            object.__setattr__(self, name, _load(tp, getattr(self, name), f"{self.command} request: {name}"))


@dataclasses.dataclass(frozen=True)
class PlanRequest(_Request):
    """Check the raw dataset, extract its fingerprint, plan its experiment (nnU-Net's ``plan_experiment``)."""

    command: ClassVar[str] = "plan"
    dataset_id: int
    num_processes: int
    verify: bool = True
    target_spacing: tuple[float, ...] | None = None  # (z, y, x) mm instead of nnU-Net's choice


@dataclasses.dataclass(frozen=True)
class PreprocessRequest(_Request):
    """Preprocess a planned dataset for some configurations; ``PLANNED`` marks it done."""

    command: ClassVar[str] = "preprocess"
    dataset_id: int
    configurations: tuple[str, ...]
    num_processes: int
    target_spacing: tuple[float, ...] | None = None  # what the plan was made with: recorded in PLANNED


@dataclasses.dataclass(frozen=True)
class TrainRequest(_Request):
    """Train one fold (resuming from its latest checkpoint); ``TRAINED`` marks it done."""

    command: ClassVar[str] = "train"
    dataset_id: int
    configuration: str
    fold: int
    device: str
    seed: int
    epochs: int
    iterations_per_epoch: int
    val_iterations_per_epoch: int
    batch_size: int | None = None  # None: nnU-Net's plan
    num_gpus: int = 1
    loss: str = "dice_ce"
    patch_size: tuple[int, ...] | None = None  # None: nnU-Net's plan; else a smaller patch (``adunet rehearse``)


@dataclasses.dataclass(frozen=True)
class PredictRequest(_Request):
    """Predict cases (case id → channel files) with some folds of a trained model into ``output_dir``."""

    command: ClassVar[str] = "predict"
    model_dir: str
    folds: tuple[int, ...]
    inputs: dict[str, tuple[str, ...]]
    output_dir: str
    device: str
    mirroring: bool
    save_probabilities: bool = True  # else only the label maps
    checkpoint: str = "final"
    tile_step_size: float = 0.5

    def done_file(self, case_id: str) -> str:
        """The output that marks a case predicted: its probabilities, or its label map when only those are kept."""
        return probabilities_file(case_id) if self.save_probabilities else label_file(case_id)


Request = Union[PlanRequest, PreprocessRequest, TrainRequest, PredictRequest]
REQUESTS: dict[str, type[_Request]] = {cls.command: cls for cls in (PlanRequest, PreprocessRequest, TrainRequest,
                                                                     PredictRequest)}


def request_from_json(data: Any) -> Request:
    """The request in ``data``, by its ``command``; :class:`RequestError` (one line) when it is none."""
    command = data.get("command") if isinstance(data, dict) else None
    if command not in REQUESTS:
        raise RequestError(f"unknown nnU-Net command {command!r} (known: {', '.join(REQUESTS)})")
    return REQUESTS[command].from_json(data)  # type: ignore[return-value]


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return {f.name: typing.get_type_hints(cls)[f.name] for f in dataclasses.fields(cls)}


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _load(tp: Any, value: Any, where: str) -> Any:
    """``value`` as type ``tp`` (lists become tuples; numbers are never converted: 3 stays 3)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _load(inner, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise RequestError(f"{where} must be a list, not {value!r}")
        return tuple(_load(args[0], v, where) for v in value)
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise RequestError(f"{where} must be an object with text keys, not {value!r}")
        return {k: _load(args[1], v, where) for k, v in value.items()}
    ok = {bool: lambda v: isinstance(v, bool),
          int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          str: lambda v: isinstance(v, str)}[tp]
    if not ok(value):
        raise RequestError(f"{where} must be {tp.__name__}, not {value!r}")
    return value
