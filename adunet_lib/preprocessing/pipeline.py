"""Per-case preprocessing for the 2D anomaly models, and its inverse.

For each case: ADC/hbv are brought onto the T2W grid's physical space, a square box around the gland
(from the zonal or whole-gland mask) is cut out of the slices that contain gland, resampled to
``slice_size × slice_size`` slices, normalised per sequence to [0, 1] and masked to the gland
("cropped" mode, the paper's final setup). A "full" mode keeps the whole in-plane field of view of
the same slices, unmasked, for the paper's full-image rows of Table I. Every slice remembers its
T2W slice index, and :meth:`PreprocessedCase.to_t2w` takes a volume on a slice grid back to the
original T2W domain.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adunet_lib.data.case import SEQUENCES, Case, LoadedCase, load_case, missing_mask_error
from adunet_lib.data.image import Geometry, Image
from adunet_lib.errors import AdunetError, CaseError
from adunet_lib.progress import progress
from adunet_lib.fileio import atomic_path, read_json, write_json
from adunet_lib.preprocessing.geometry import CropBox, CropError, full_box, gland_box, resample_to, slice_grid

MODES = ("cropped", "full")


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    """Settings of the preprocessing (part of every output's identity: change one, outputs are redone).

    Attributes:
        slice_size: in-plane size of model slices (the paper: 128; the demo: 64).
        crop_margin_mm: margin around the gland's bounding box, in millimetres.
        z_margin: extra slices above and below the gland.
        percentiles: intensity percentiles mapped to 0 and 1 (inside the gland for cropped images).
        min_gland_coverage: least share of gland voxels that ADC/hbv must cover.
    """

    slice_size: int = 64
    crop_margin_mm: float = 8.0
    z_margin: int = 0
    percentiles: tuple[float, float] = (0.5, 99.5)
    min_gland_coverage: float = 0.9

    def fingerprint(self) -> str:
        return hashlib.sha1(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:12]


@dataclasses.dataclass(eq=False)
class PreprocessedCase:
    """A case ready for the 2D models: one ``(3, n_slices, S, S)`` stack per mode, plus its way back.

    Attributes:
        case_id: the case.
        site: dataset / site label.
        cspca: case-level label (None when unknown).
        labeled: whether a lesion label exists (False: ``lesion`` arrays are zeros).
        t2w_geometry: the original T2W grid — every output map is written on it.
        box: the gland box on the T2W grid.
        grids: mode → slice grid (``S × S × n_slices``) over the box / the full field of view.
        images: mode → float32 ``(3, n, S, S)`` in [0, 1], sequences in ``SEQUENCES`` order.
        gland, zones, lesion: mode → uint8 ``(n, S, S)`` on the slice grid.
        gland_t2w: uint8 gland mask cut to ``box`` on the T2W grid (exact, for masking maps).
        norm: mode → sequence → (low, high) raw intensities mapped to 0 and 1.
        sources: file paths the case came from.
    """

    case_id: str
    site: str
    cspca: bool | None
    labeled: bool
    t2w_geometry: Geometry
    box: CropBox
    grids: dict[str, Geometry]
    images: dict[str, np.ndarray]
    gland: dict[str, np.ndarray]
    zones: dict[str, np.ndarray]
    lesion: dict[str, np.ndarray]
    gland_t2w: np.ndarray
    norm: dict[str, dict[str, tuple[float, float]]]
    sources: dict[str, str]
    stamp: str = ""
    zone_codes: dict[int, int] = dataclasses.field(default_factory=lambda: {1: 1, 2: 2})
    lesion_on_other_grid: bool = False

    @property
    def n_slices(self) -> int:
        return self.box.size[2]

    def source_case(self) -> Case:
        """The :class:`Case` this was made from (to re-read the original files)."""
        files = {k: Path(v) for k, v in self.sources.items()}
        return Case(case_id=self.case_id, images={s: files[s] for s in SEQUENCES}, lesion=files.get("lesion"),
                    gland=files.get("gland"), zones=files.get("zones"), cspca=self.cspca, site=self.site,
                    zone_codes=self.zone_codes, lesion_on_other_grid=self.lesion_on_other_grid)

    @property
    def slice_indices(self) -> np.ndarray:
        """T2W slice index (z) of every model slice."""
        return self.box.start[2] + np.arange(self.n_slices)

    def to_t2w(self, volume: np.ndarray, mode: str = "cropped", mask: bool = True) -> Image:
        """Take a ``(n, S, S)`` volume on the slice grid of ``mode`` back to the original T2W grid.

        Linear resampling onto the T2W grid (origin, direction, spacing of the case's T2W image);
        outside the box the result is 0, and with ``mask`` everything outside the gland is 0.
        """
        grid = self.grids[mode]
        if volume.shape != grid.shape:
            raise ValueError(f"{self.case_id}: volume shape {volume.shape} does not match the {mode} grid {grid.shape}")
        image = resample_to(Image(volume.astype(np.float32), grid), self.t2w_geometry, "linear", default=0.0)
        if mask:
            gland = np.zeros(self.t2w_geometry.shape, np.uint8)
            gland[self.box.slices()] = self.gland_t2w
            image = image.with_array(np.where(gland > 0, image.array, 0).astype(np.float32))
        return image

    # -- persistence (npz + json; no pickle) ---------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        arrays: dict[str, np.ndarray] = {"gland_t2w": self.gland_t2w}
        for mode in self.images:
            arrays[f"images_{mode}"] = self.images[mode]
            arrays[f"gland_{mode}"] = self.gland[mode]
            arrays[f"zones_{mode}"] = self.zones[mode]
            arrays[f"lesion_{mode}"] = self.lesion[mode]
        npz = folder / f"{self.case_id}.npz"
        with atomic_path(npz) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
        meta = {
            "case_id": self.case_id, "site": self.site, "cspca": self.cspca, "labeled": self.labeled,
            "t2w_geometry": self.t2w_geometry.to_dict(), "box": self.box.to_dict(),
            "grids": {m: g.to_dict() for m, g in self.grids.items()}, "norm": self.norm, "sources": self.sources,
            "stamp": self.stamp, "zone_codes": [[k, v] for k, v in self.zone_codes.items()],
            "lesion_on_other_grid": self.lesion_on_other_grid,
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
        modes = [m for m in MODES if f"images_{m}" in arrays]
        return cls(
            case_id=meta["case_id"], site=meta["site"], cspca=meta["cspca"], labeled=meta["labeled"],
            t2w_geometry=Geometry.from_dict(meta["t2w_geometry"]), box=CropBox.from_dict(meta["box"]),
            grids={m: Geometry.from_dict(g) for m, g in meta["grids"].items()},
            images={m: arrays[f"images_{m}"] for m in modes}, gland={m: arrays[f"gland_{m}"] for m in modes},
            zones={m: arrays[f"zones_{m}"] for m in modes}, lesion={m: arrays[f"lesion_{m}"] for m in modes},
            gland_t2w=arrays["gland_t2w"], norm={m: {s: tuple(v) for s, v in n.items()} for m, n in meta["norm"].items()},
            sources=meta["sources"], stamp=meta.get("stamp", ""),
            zone_codes={int(k): int(v) for k, v in meta.get("zone_codes", [[1, 1], [2, 2]])},
            lesion_on_other_grid=bool(meta.get("lesion_on_other_grid", False)),
        )


def normalise(volume: np.ndarray, region: np.ndarray, percentiles: tuple[float, float]) -> tuple[np.ndarray, tuple[float, float]]:
    """Map the ``percentiles`` of ``volume[region]`` to 0 and 1 and clip to [0, 1]."""
    values = volume[region] if region.any() else volume.reshape(-1)
    lo, hi = (float(v) for v in np.percentile(values, percentiles))
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((volume - lo) / (hi - lo), 0.0, 1.0).astype(np.float32), (lo, hi)


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
    try:
        box = gland_box(loaded.gland, config.crop_margin_mm, square=True, z_margin=config.z_margin)
    except CropError as exc:
        raise CaseError(case.case_id, t2w_path, str(exc)) from None

    grids = {"cropped": slice_grid(box, config.slice_size),
             "full": slice_grid(full_box(t2w.geometry, box.start[2], box.size[2]), config.slice_size)}
    lesion = loaded.lesion if loaded.lesion is not None else loaded.gland.with_array(np.zeros(t2w.shape, np.uint8))
    zones = loaded.zones if loaded.zones is not None else loaded.gland
    out: dict[str, dict[str, Any]] = {k: {} for k in ("images", "gland", "zones", "lesion", "norm")}
    for mode in modes:
        grid = grids[mode]
        gland = resample_to(loaded.gland, grid, "nearest").array.astype(np.uint8)
        region = gland > 0 if mode == "cropped" else np.ones_like(gland, bool)
        stack, norm = [], {}
        for seq in SEQUENCES:
            # straight from each sequence's own grid: one interpolation only
            vol = resample_to(loaded.images[seq], grid, "linear", antialias=True).array
            vol, norm[seq] = normalise(vol, region, config.percentiles)
            if mode == "cropped":
                vol = vol * gland
            stack.append(vol)
        out["images"][mode] = np.stack(stack).astype(np.float32)
        out["gland"][mode] = gland
        out["zones"][mode] = resample_to(zones, grid, "nearest").array.astype(np.uint8)
        out["lesion"][mode] = resample_to(lesion, grid, "nearest").array.astype(np.uint8)
        out["norm"][mode] = norm
    sources = {seq: str(case.path_of(seq)) for seq in SEQUENCES}
    sources.update({k: str(v) for k, v in (("lesion", case.lesion), ("gland", case.gland), ("zones", case.zones)) if v})
    return PreprocessedCase(
        case_id=case.case_id, site=case.site, cspca=loaded.cspca, labeled=loaded.lesion is not None,
        t2w_geometry=t2w.geometry, box=box, grids={m: grids[m] for m in modes}, images=out["images"],
        gland=out["gland"], zones=out["zones"], lesion=out["lesion"],
        gland_t2w=np.ascontiguousarray(loaded.gland.array[box.slices()]).astype(np.uint8), norm=out["norm"],
        sources=sources, zone_codes=dict(case.zone_codes), lesion_on_other_grid=case.lesion_on_other_grid,
    )


def slice_table(pre: PreprocessedCase, set_name: str, split: str) -> pd.DataFrame:
    """One row per model slice that contains gland: slice-level label and its T2W slice index."""
    gland = pre.gland["cropped"] if "cropped" in pre.gland else next(iter(pre.gland.values()))
    lesion = pre.lesion["cropped"] if "cropped" in pre.lesion else next(iter(pre.lesion.values()))
    rows = []
    for k, z in enumerate(pre.slice_indices):
        g = int(gland[k].sum())
        if g == 0:
            continue
        lv = int(lesion[k].sum())
        label = ("lesion" if lv > 0 else "healthy") if pre.labeled else "unknown"
        rows.append({"set": set_name, "split": split, "case_id": pre.case_id, "slice": k, "z": int(z),
                     "gland_voxels": g, "lesion_voxels": lv, "label": label, "case_cspca": pre.cspca})
    return pd.DataFrame(rows, columns=["set", "split", "case_id", "slice", "z", "gland_voxels", "lesion_voxels",
                                       "label", "case_cspca"])


def assign_folds(cases: list[tuple[str, bool | None]], n_folds: int, seed: int) -> dict[str, int]:
    """Stratified cross-validation folds (by csPCa), deterministic in ``seed``.

    Fold 0's cases are the internal validation split; nnU-Net's ``splits_final.json`` is written
    from the same folds, so "validation" means the same cases in every notebook.
    """
    if n_folds < 2:
        raise ValueError("n_folds must be at least 2")
    rng = np.random.default_rng(seed)
    out: dict[str, int] = {}
    offset = 0
    for label in (True, False, None):
        group = sorted(cid for cid, c in cases if c is label)
        rng.shuffle(group)
        for i, cid in enumerate(group):
            # continue the round-robin across groups so fold sizes stay balanced
            out[cid] = (offset + i) % n_folds
        offset += len(group)
    return out


def preprocess_dataset(cases: Iterable[Case], out_dir: str | Path, config: PreprocessConfig = PreprocessConfig(),
                       modes: Iterable[str] = MODES, on_error: str = "fail", show_progress: bool = True,
                       desc: str = "preprocess") -> tuple[list[str], list[tuple[str, str]]]:
    """Preprocess every case into ``out_dir`` (``<case>.npz`` + ``<case>.json``); resumable.

    Cases already preprocessed with the same config are kept. ``on_error="skip"`` records failing
    cases instead of stopping; the default stops at the first bad case with its one-line message.

    Returns:
        (case ids done, [(case id, error message) for skipped cases]).
    """
    if on_error not in ("fail", "skip"):
        raise AdunetError(f"on_error must be 'fail' or 'skip', not {on_error!r}")
    out_dir = Path(out_dir)
    modes = tuple(modes)
    stamp = f"{config.fingerprint()}:{','.join(sorted(modes))}"
    done, skipped = [], []
    for case in progress(list(cases), desc=desc, unit="case", enabled=show_progress):
        meta = out_dir / f"{case.case_id}.json"
        if meta.is_file() and (out_dir / f"{case.case_id}.npz").is_file() and read_json(meta).get("stamp") == stamp:
            done.append(case.case_id)
            continue
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
        pre.stamp = stamp
        pre.save(out_dir)
        done.append(case.case_id)
    return done, skipped
