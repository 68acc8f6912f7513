"""Per-case preprocessing for the 2D anomaly models, and its inverse.

For each case: ADC/hbv are brought onto the T2W grid's physical space, a square box around the gland
(from the zonal or whole-gland mask) is cut out of the slices that contain gland, resampled to
``slice_size × slice_size`` slices, normalised per sequence to [0, 1] and masked to the gland
("cropped" mode, the paper's final setup). The box and the slices are made on the case's T2W grid
reoriented to :data:`~adunet_lib.preprocessing.geometry.CANONICAL_ORIENTATION` (every image and mask
reoriented exactly, without interpolation, first), so they do not depend on the scanner's direction
matrix. A "full" mode keeps the whole in-plane field of view of
the same slices, unmasked, for the paper's full-image rows of Table I. Every slice remembers its
T2W slice index, and :meth:`PreprocessedCase.to_t2w` takes a volume on a slice grid back to the
original T2W domain.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any


import numpy as np
import pandas as pd

from adunet_lib.cache import file_key, fingerprint
from adunet_lib.data.case import Case, LoadedCase, load_case, missing_mask_error
from adunet_lib.data.image import Geometry, Image, resample_to, write_image
from adunet_lib.errors import AdunetError, CaseError
from adunet_lib.fileio import atomic_path, read_json, write_json
from adunet_lib.preprocessing.geometry import (CANONICAL_ORIENTATION, CropBox, CropError, box_onto,
                                               canonical_geometry, full_box, gland_box, reorient, reorient_onto,
                                               slice_grid, uncrop)
from adunet_lib.progress import progress
from adunet_lib.run_folder import VOLUME_SUFFIX, RunContext
from adunet_lib.vocabulary import CROPPED, FULL, HEALTHY, LESION, MODES, SEQUENCES, UNKNOWN


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    """Settings of the preprocessing (part of every output's identity: change one, outputs are redone).

    Attributes:
        slice_size: in-plane size of model slices (the paper: 128; the demo: 64).
        crop_margin_mm: margin around the gland's bounding box, in millimetres.
        z_margin: extra slices above and below the gland.
        percentiles: intensity percentiles mapped to 0 and 1.
        intensity_reference: whose percentiles, for cropped images: ``gland`` (the gland's voxels; adunet's
            choice, the paper is silent) or ``field_of_view`` (every voxel of the full-mode slices: the
            whole in-plane field of view over the gland's slices). Full-mode images always use the field
            of view. Inside the gland a lesion can set a percentile — a bright DWI lesion then darkens
            the case's healthy tissue — which the field of view, where a lesion is a tiny share, avoids
            (``benchmarks/bench_map_settings.py``, ``figures/bench/normalisation.txt``).
        min_gland_coverage: least share of gland voxels that ADC/hbv must cover.
    """

    slice_size: int = 64
    crop_margin_mm: float = 8.0
    z_margin: int = 0
    percentiles: tuple[float, float] = (0.5, 99.5)
    intensity_reference: str = "gland"
    min_gland_coverage: float = 0.9

    def __post_init__(self) -> None:
        if self.intensity_reference not in INTENSITY_REFERENCES:
            raise AdunetError(f"intensity_reference must be one of {', '.join(INTENSITY_REFERENCES)}, "
                              f"not {self.intensity_reference!r}")

    def identity(self) -> dict[str, Any]:
        """The settings that make an output: every field, less ``intensity_reference`` at its default
        (so run folders made before the field existed keep their preprocessing)."""
        settings = dataclasses.asdict(self)
        if self.intensity_reference == "gland":
            del settings["intensity_reference"]
        return settings


#: :attr:`PreprocessConfig.intensity_reference`'s choices.
INTENSITY_REFERENCES = ("gland", "field_of_view")


@dataclasses.dataclass(eq=False)
class SliceStack:
    """One mode of a preprocessed case: the model slices and the grid they live on.

    Attributes:
        grid: the slice grid (``S × S × n``), a :class:`Geometry` in the case's physical space, in the
            canonical orientation (see :func:`~adunet_lib.preprocessing.geometry.canonical_geometry`).
        images: float32 ``(3, n, S, S)`` in [0, 1], sequences in ``SEQUENCES`` order.
        gland, zones, lesion: uint8 ``(n, S, S)`` on the slice grid.
        norm: sequence → (low, high) raw intensities mapped to 0 and 1.
    """

    grid: Geometry
    images: np.ndarray
    gland: np.ndarray
    zones: np.ndarray
    lesion: np.ndarray
    norm: dict[str, tuple[float, float]]

    def gland_slices(self) -> np.ndarray:
        """Indices of the slices that contain gland (the ones the models see)."""
        return np.flatnonzero(self.gland.reshape(self.gland.shape[0], -1).any(axis=1))

    def sequence(self, name: str) -> np.ndarray:
        return self.images[SEQUENCES.index(name)]


@dataclasses.dataclass(eq=False)
class PreprocessedCase:
    """A case ready for the 2D models — one :class:`SliceStack` per mode — plus its way back.

    The forward operation (:meth:`to_slices`, T2W grid → slice grid) and its inverse
    (:meth:`to_t2w`, slice grid → T2W grid) sit side by side, and so do the gland box and its
    paste-back (:meth:`gland_on_t2w`): no stage writes its own resample or paste.

    Attributes:
        case_id: the case.
        site: dataset / site label.
        cspca: case-level label (None when unknown).
        labeled: whether a lesion label exists (False: ``lesion`` arrays are zeros).
        t2w_geometry: the original T2W grid — every output map is written on it.
        box: the gland box on the original T2W grid (found on the canonical grid, then carried
            over: the same voxels; the slice grids are the canonical box's).
        stacks: mode (``cropped``, ``full``) → :class:`SliceStack`.
        gland_in_box: uint8 gland mask inside ``box`` on the T2W grid (exact, for masking maps).
        sources: the files the case came from (provenance only: nothing reads them again).
        stamp: fingerprint of the settings and inputs that made it.
    """

    case_id: str
    site: str
    cspca: bool | None
    labeled: bool
    t2w_geometry: Geometry
    box: CropBox
    stacks: dict[str, SliceStack]
    gland_in_box: np.ndarray
    sources: dict[str, str]
    stamp: str = ""
    inputs: dict[str, str] = dataclasses.field(default_factory=dict)  # role → content key of its file

    @property
    def n_slices(self) -> int:
        return self.box.size[2]

    def stack(self, mode: str = CROPPED) -> SliceStack:
        if mode not in self.stacks:
            raise AdunetError(f"case {self.case_id}: no {mode} slices (preprocessed modes: {', '.join(self.stacks)})")
        return self.stacks[mode]

    @property
    def slice_indices(self) -> np.ndarray:
        """T2W slice index (z) of every model slice (on the original grid: reversed when the canonical
        orientation runs the other way through the slices)."""
        z = self.box.start[2] + np.arange(self.n_slices)
        canonical = np.asarray(canonical_geometry(self.t2w_geometry).direction).reshape(3, 3)[:, 2]
        original = np.asarray(self.t2w_geometry.direction).reshape(3, 3)[:, 2]
        return z[::-1] if float(canonical @ original) < 0 else z

    def gland_on_t2w(self) -> Image:
        """The gland mask on the whole T2W grid (the box pasted back; 0 outside it)."""
        return uncrop(Image(self.gland_in_box, self.box.geometry), self.box)

    def to_slices(self, image: Image, mode: str = CROPPED, interpolation: str = "linear") -> np.ndarray:
        """Forward: an image on any grid of the case → ``(n, S, S)`` on the slice grid of ``mode``
        (reoriented first, as :func:`preprocess_case` does)."""
        return resample_to(reorient(image), self.stack(mode).grid, interpolation,
                           antialias=interpolation == "linear").array

    def to_t2w(self, volume: np.ndarray, mode: str = CROPPED, mask: bool = True) -> Image:
        """Inverse: a ``(n, S, S)`` volume on the slice grid of ``mode`` back on the original T2W grid.

        Linear resampling onto the T2W grid (origin, direction, spacing of the case's T2W image);
        outside the box the result is 0, and with ``mask`` everything outside the gland is 0. (The
        resample is onto the canonical orientation of that grid, then the axes are permuted / flipped
        back: the same voxels, and the same result however the scanner oriented the study.)
        """
        grid = self.stack(mode).grid
        if volume.shape != grid.shape:
            raise ValueError(f"{self.case_id}: volume shape {volume.shape} does not match the {mode} grid {grid.shape}")
        image = resample_to(Image(volume.astype(np.float32), grid), canonical_geometry(self.t2w_geometry), "linear",
                            default=0.0)
        image = reorient_onto(image, self.t2w_geometry)
        if mask:
            image = image.with_array(np.where(self.gland_on_t2w().array > 0, image.array, 0).astype(np.float32))
        return image

    # -- persistence (npz + json; no pickle) ---------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        arrays: dict[str, np.ndarray] = {"gland_in_box": self.gland_in_box}
        for mode, st in self.stacks.items():
            for name in ("images", "gland", "zones", "lesion"):
                arrays[f"{name}_{mode}"] = getattr(st, name)
        npz = folder / f"{self.case_id}.npz"
        with atomic_path(npz) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
        meta = {
            "case_id": self.case_id, "site": self.site, "cspca": self.cspca, "labeled": self.labeled,
            "t2w_geometry": self.t2w_geometry.to_dict(), "box": self.box.to_dict(),
            "grids": {m: st.grid.to_dict() for m, st in self.stacks.items()},
            "norm": {m: st.norm for m, st in self.stacks.items()}, "sources": self.sources, "stamp": self.stamp,
            "inputs": self.inputs,
        }
        # the json is written last: it marks the case as complete
        write_json(folder / f"{self.case_id}.json", meta)
        return npz

    @classmethod
    def load(cls, folder: str | Path, case_id: str) -> PreprocessedCase:
        folder = Path(folder)
        meta = read_json(folder / f"{case_id}.json")
        with np.load(folder / f"{case_id}.npz", allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        stacks = {m: SliceStack(Geometry.from_dict(g), arrays[f"images_{m}"], arrays[f"gland_{m}"],
                                arrays[f"zones_{m}"], arrays[f"lesion_{m}"],
                                {s: tuple(v) for s, v in meta["norm"][m].items()})
                  for m, g in meta["grids"].items()}
        return cls(
            case_id=meta["case_id"], site=meta["site"], cspca=meta["cspca"], labeled=meta["labeled"],
            t2w_geometry=Geometry.from_dict(meta["t2w_geometry"]), box=CropBox.from_dict(meta["box"]),
            stacks=stacks, gland_in_box=arrays["gland_in_box"], sources=meta["sources"], stamp=meta.get("stamp", ""),
            inputs=meta.get("inputs", {}),
        )

    @classmethod
    def from_run(cls, ctx: RunContext, set_name: str, case_id: str) -> PreprocessedCase:
        """A case as notebook 01 left it in the run folder (``preprocessed/<set>/<case>``)."""
        return cls.load(ctx.preprocessed_dir(set_name), case_id)


def normalise(volume: np.ndarray, region: np.ndarray, percentiles: tuple[float, float]) -> tuple[np.ndarray, tuple[float, float]]:
    """Map the ``percentiles`` of ``volume[region]`` to 0 and 1 and clip to [0, 1]."""
    values = volume[region] if region.any() else volume.reshape(-1)
    lo, hi = (float(v) for v in np.percentile(values, percentiles))
    if hi <= lo:
        hi = lo + 1.0
    return rescale(volume, (lo, hi)), (lo, hi)


def rescale(volume: np.ndarray, low_high: tuple[float, float]) -> np.ndarray:
    """Map ``low_high`` to 0 and 1 and clip to [0, 1]."""
    lo, hi = low_high
    return np.clip((volume - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def _coverage(image: Image, reference: Geometry) -> np.ndarray:
    ones = image.with_array(np.ones(image.shape, np.uint8))
    return resample_to(ones, reference, "nearest", default=0).array > 0


def preprocess_case(loaded: LoadedCase, config: PreprocessConfig = PreprocessConfig(),
                    modes: Iterable[str] = MODES) -> PreprocessedCase:
    """Crop, resample, normalise and mask one validated case (see the module docstring).

    Raises:
        CaseError: no gland mask, empty mask, image smaller than the crop box, or ADC/hbv not
            covering the gland.
    """
    case = loaded.case
    t2w = loaded.t2w
    t2w_path = case.path_of("t2w")
    if loaded.gland is None:
        raise missing_mask_error(case)
    gland_mask = loaded.gland.array > 0
    for seq in ("adc", "hbv"):
        covered = _coverage(loaded.images[seq], t2w.geometry)
        share = float(covered[gland_mask].mean())
        if share < config.min_gland_coverage:
            raise CaseError(case.case_id, case.path_of(seq),
                            f"{seq} covers only {share:.0%} of the gland (field of view does not overlap the T2W "
                            "image's prostate)")
    # every image and mask in the canonical orientation (exact: axes permuted / flipped), so the crop
    # box and the slices are the same whatever direction matrix the scanner wrote
    images = {seq: reorient(loaded.images[seq]) for seq in SEQUENCES}
    canonical_gland = reorient(loaded.gland)
    try:
        box = gland_box(canonical_gland, config.crop_margin_mm, square=True, z_margin=config.z_margin)
    except CropError as exc:
        raise CaseError(case.case_id, t2w_path, str(exc)) from None

    grids = {CROPPED: slice_grid(box, config.slice_size),
             FULL: slice_grid(full_box(box.reference, box.start[2], box.size[2]), config.slice_size)}
    lesion = (reorient(loaded.lesion) if loaded.lesion is not None
              else canonical_gland.with_array(np.zeros(canonical_gland.shape, np.uint8)))
    zones = reorient(loaded.zones) if loaded.zones is not None else canonical_gland
    resampled: dict[tuple[str, str], np.ndarray] = {}

    def on_grid(mode: str, seq: str) -> np.ndarray:
        """A sequence on a mode's slice grid, straight from its own grid (one interpolation only), once."""
        if (mode, seq) not in resampled:
            resampled[mode, seq] = resample_to(images[seq], grids[mode], "linear", antialias=True).array
        return resampled[mode, seq]

    field_of_view = {}  # sequence → (low, high) over the full-mode grid, when cropped images use it
    if config.intensity_reference == "field_of_view" and CROPPED in modes:
        for seq in SEQUENCES:
            vol = on_grid(FULL, seq)
            field_of_view[seq] = normalise(vol, np.ones(vol.shape, bool), config.percentiles)[1]
    stacks = {}
    for mode in modes:
        grid = grids[mode]
        gland = resample_to(canonical_gland, grid, "nearest").array.astype(np.uint8)
        region = gland > 0 if mode == CROPPED else np.ones_like(gland, bool)
        stack, norm = [], {}
        for seq in SEQUENCES:
            vol = on_grid(mode, seq)
            if mode == CROPPED and field_of_view:
                vol, norm[seq] = rescale(vol, field_of_view[seq]), field_of_view[seq]
            else:
                vol, norm[seq] = normalise(vol, region, config.percentiles)
            if mode == CROPPED:
                vol = vol * gland
            stack.append(vol)
        stacks[mode] = SliceStack(grid, np.stack(stack).astype(np.float32), gland,
                                  resample_to(zones, grid, "nearest").array.astype(np.uint8),
                                  resample_to(lesion, grid, "nearest").array.astype(np.uint8), norm)
    sources = {seq: str(case.path_of(seq)) for seq in SEQUENCES}
    sources.update({k: str(v) for k, v in (("lesion", case.lesion), ("gland", case.gland), ("zones", case.zones)) if v})
    t2w_box = box_onto(box, t2w.geometry)  # the same voxels, indexed on the original T2W grid
    return PreprocessedCase(
        case_id=case.case_id, site=case.site, cspca=loaded.cspca, labeled=loaded.lesion is not None,
        t2w_geometry=t2w.geometry, box=t2w_box, stacks=stacks,
        gland_in_box=np.ascontiguousarray(loaded.gland.array[t2w_box.slices()]).astype(np.uint8), sources=sources,
    )


def twin_stacks(pre: PreprocessedCase, twin: dict[str, Image]) -> dict[str, np.ndarray]:
    """A phantom's lesion-free twin (``sequence → image`` on the study's own grids) on the case's model
    slices, ``mode → (3, n, S, S)``: resampled as the case was (:meth:`PreprocessedCase.to_slices`),
    scaled by the *case's* intensity percentiles (not its own, so x − twin is the lesion alone) and
    masked to the gland like the case's cropped slices."""
    out = {}
    for mode, st in pre.stacks.items():
        volumes = [rescale(pre.to_slices(twin[seq], mode), st.norm[seq]) for seq in SEQUENCES]
        stack = np.stack(volumes).astype(np.float32)
        out[mode] = stack * st.gland[None] if mode == CROPPED else stack
    return out


def save_twin(path: str | Path, stacks: dict[str, np.ndarray], stamp: str) -> Path:
    """``twins/<set>/<case>.npz``: the twin per mode and the stamp of the preprocessed case it matches."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, stamp=np.array(stamp), **{f"images_{m}": v for m, v in stacks.items()})
    return Path(path)


def load_twin(path: str | Path, stamp: str | None = None) -> dict[str, np.ndarray] | None:
    """The twin's slices per mode, or None when there is none (or it was made for another preprocessing
    of its case than ``stamp``)."""
    path = Path(path)
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        if stamp is not None and str(data["stamp"]) != stamp:
            return None
        return {k.removeprefix("images_"): data[k] for k in data.files if k.startswith("images_")}


def write_t2w_volumes(loaded: LoadedCase, folder: str | Path) -> list[Path]:
    """Copy a case into the run: its sequences and masks as ``<volume>.mha`` on its T2W grid
    (ADC and hbv resampled once, here), so later stages never read the source dataset again."""
    folder = Path(folder)
    t2w = loaded.t2w.geometry
    written = [write_image(Image(loaded.on_t2w(seq).array.astype(np.float32), t2w), folder / f"{seq}{VOLUME_SUFFIX}")
               for seq in SEQUENCES]
    for name, mask in (("lesion", loaded.lesion), ("zones", loaded.zones), ("gland", loaded.gland)):
        if mask is not None:
            written.append(write_image(Image(mask.array.astype(np.uint8), t2w), folder / f"{name}{VOLUME_SUFFIX}"))
        else:
            (folder / f"{name}{VOLUME_SUFFIX}").unlink(missing_ok=True)
    return written


def slice_table(pre: PreprocessedCase, set_name: str, split: str) -> pd.DataFrame:
    """One row per model slice that contains gland: slice-level label and its T2W slice index."""
    st = pre.stacks[CROPPED] if CROPPED in pre.stacks else next(iter(pre.stacks.values()))
    rows = []
    for k, z in enumerate(pre.slice_indices):
        g = int(st.gland[k].sum())
        if g == 0:
            continue
        lv = int(st.lesion[k].sum())
        label = (LESION if lv > 0 else HEALTHY) if pre.labeled else UNKNOWN
        rows.append({"set": set_name, "split": split, "case_id": pre.case_id, "slice": k, "z": int(z),
                     "gland_voxels": g, "lesion_voxels": lv, "label": label, "case_cspca": pre.cspca})
    return pd.DataFrame(rows, columns=["set", "split", "case_id", "slice", "z", "gland_voxels", "lesion_voxels",
                                       "label", "case_cspca"])


def assign_folds(cases: list[tuple], n_folds: int, seed: int) -> dict[str, int]:
    """Cross-validation folds by patient, stratified by csPCa, deterministic in ``seed``.

    Args:
        cases: ``(case_id, cspca)`` or ``(case_id, cspca, patient_id)``; all studies of a patient
            share a fold (a patient is positive when any of its studies is).

    Fold 0's cases are the internal validation split; nnU-Net's ``splits_final.json`` is written
    from the same folds, so "validation" means the same cases in every notebook.
    """
    if n_folds < 2:
        raise ValueError("n_folds must be at least 2")
    studies: dict[str, list[str]] = {}
    labels: dict[str, list] = {}
    for item in cases:
        case_id, cspca = item[0], item[1]
        patient = (item[2] if len(item) > 2 else "") or case_id
        studies.setdefault(patient, []).append(case_id)
        labels.setdefault(patient, []).append(cspca)

    def patient_label(values: list) -> bool | None:
        return True if True in values else (False if False in values else None)

    rng = np.random.default_rng(seed)
    out: dict[str, int] = {}
    offset = 0
    for label in (True, False, None):
        group = sorted(p for p in studies if patient_label(labels[p]) is label)
        rng.shuffle(group)
        for i, patient in enumerate(group):
            # continue the round-robin across groups so fold sizes stay balanced
            for case_id in studies[patient]:
                out[case_id] = (offset + i) % n_folds
        offset += len(group)
    return out


def folds_from_splits(path: str | Path, cases: list[tuple[str, str]]) -> dict[str, int]:
    """Folds from published splits in nnU-Net's ``splits_final.json`` format (a list of
    ``{"train": [...], "val": [...]}``): a case's fold is the one whose ``val`` lists it.

    Args:
        cases: ``(case_id, patient_id)`` of the internal cases to place.

    Raises:
        AdunetError: naming the file, for a malformed file, a case in two folds, a case in none, or a
            patient whose studies sit in different folds.
    """
    path = Path(path)
    try:
        splits = read_json(path)
    except (OSError, ValueError) as exc:
        raise AdunetError(f"{path}: cannot read the splits ({exc})") from None
    if not isinstance(splits, list) or not all(isinstance(f, dict) and isinstance(f.get("val"), list) for f in splits):
        raise AdunetError(f"{path}: not nnU-Net's splits_final.json format (a list of {{\"train\": [...], \"val\": [...]}})")
    folds: dict[str, int] = {}
    for fold, entry in enumerate(splits):
        for case_id in entry["val"]:
            if case_id in folds:
                raise AdunetError(f"{path}: case {case_id} is in the validation set of folds {folds[case_id]} and {fold}")
            folds[str(case_id)] = fold
    missing = sorted(cid for cid, _ in cases if cid not in folds)
    if missing:
        raise AdunetError(f"{path}: {len(missing)} internal case(s) in no fold's validation set, e.g. "
                          f"{', '.join(missing[:3])}")
    patients: dict[str, set[int]] = {}
    for case_id, patient in cases:
        patients.setdefault(patient or case_id, set()).add(folds[case_id])
    split_patients = sorted(p for p, f in patients.items() if len(f) > 1)
    if split_patients:
        raise AdunetError(f"{path}: patient {split_patients[0]} has studies in several folds "
                          f"({len(split_patients)} patient(s) in all); a patient's studies must share a fold")
    return {cid: folds[cid] for cid, _ in cases}


#: What each input file of a case is, in the messages that say it changed.
INPUT_ROLES = {"t2w": "T2W", "adc": "ADC", "hbv": "hbv", "lesion": "lesion label", "gland": "gland mask",
               "zones": "zonal mask"}


def input_keys(case: Case) -> dict[str, str]:
    """Content key (SHA-256) of each file a case is made from, by role (see :data:`INPUT_ROLES`)."""
    files = {s: case.images.get(s) for s in SEQUENCES} | {"lesion": case.lesion, "gland": case.gland, "zones": case.zones}
    return {role: file_key(path) for role, path in files.items() if path is not None}


def case_fingerprint(case: Case, config: PreprocessConfig, modes: Iterable[str], keys: dict[str, str] | None = None) -> str:
    """What a preprocessed case is made from: the settings, the modes, the canonical orientation the
    slices are made in, the marksheet label and the content of the case's files (``keys``, from
    :func:`input_keys`)."""
    keys = input_keys(case) if keys is None else keys
    return fingerprint({"preprocess": config.identity(), "modes": sorted(modes),
                        "orientation": CANONICAL_ORIENTATION,
                        "zone_codes": sorted(case.zone_codes.items()), "cspca": case.cspca,
                        "files": sorted(keys.items())})


def what_changed(case: Case, before: dict, keys: dict[str, str]) -> str:
    """Why a preprocessed case is redone: the input files whose content changed, or the settings."""
    old = before.get("inputs") or {}
    path = {s: case.images.get(s) for s in SEQUENCES} | {"lesion": case.lesion, "gland": case.gland, "zones": case.zones}
    changed = [f"{INPUT_ROLES[r]} {path[r]}" for r in keys if r in old and old[r] != keys[r]]
    changed += [f"{INPUT_ROLES[r]} {path[r]} (new)" for r in keys if old and r not in old]
    changed += [f"{INPUT_ROLES[r]} (gone)" for r in old if r not in keys]
    if changed:
        return f"{', '.join(changed)} changed since it was preprocessed"
    return "its settings or marksheet label changed since it was preprocessed"


def preprocess_dataset(cases: Iterable[Case], out_dir: str | Path, config: PreprocessConfig = PreprocessConfig(),
                       modes: Iterable[str] = MODES, on_error: str = "fail", show_progress: bool = True,
                       desc: str = "preprocess", volumes_dir: str | Path | None = None,
                       log: Callable[[str], None] = print) -> tuple[list[str], list[tuple[str, str]]]:
    """Preprocess every case into ``out_dir`` (``<case>.npz`` + ``<case>.json``); resumable.

    Cases already preprocessed from the same files with the same settings are kept (see
    :func:`case_fingerprint`). ``on_error="skip"`` records failing cases instead of stopping; the
    default stops at the first bad case with its one-line message. With ``volumes_dir``, each
    case's sequences and masks are also copied there on its T2W grid (``<case>/<volume>.mha``).

    Returns:
        (case ids done, [(case id, error message) for skipped cases]).
    """
    if on_error not in ("fail", "skip"):
        raise AdunetError(f"on_error must be 'fail' or 'skip', not {on_error!r}")
    out_dir = Path(out_dir)
    modes = tuple(modes)
    done, skipped = [], []
    for case in progress(list(cases), desc=desc, unit="case", enabled=show_progress):
        keys = input_keys(case)
        stamp = case_fingerprint(case, config, modes, keys)
        meta = out_dir / f"{case.case_id}.json"
        before = read_json(meta) if meta.is_file() else {}
        if before.get("stamp") == stamp and (out_dir / f"{case.case_id}.npz").is_file():
            done.append(case.case_id)
            continue
        if before:
            log(f"case {case.case_id}: {what_changed(case, before, keys)}: preprocessing it again")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always")
                loaded = load_case(case)
                pre = preprocess_case(loaded, config, modes)
        except CaseError as exc:
            if on_error == "fail":
                raise
            skipped.append((case.case_id, str(exc)))
            continue
        if volumes_dir is not None:
            write_t2w_volumes(loaded, Path(volumes_dir) / case.case_id)
        pre.stamp, pre.inputs = stamp, keys
        pre.save(out_dir)  # last: its json marks the case (and its T2W volumes) complete
        done.append(case.case_id)
    return done, skipped
