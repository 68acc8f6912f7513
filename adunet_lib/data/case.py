"""Cases: where a study's files are (:class:`Case`) and their validated content (:class:`LoadedCase`).

Every reader (PI-CAI, Prostate158, manifest, synthetic) produces the same :class:`Case` objects, so
everything downstream is layout-agnostic. :func:`load_case` turns a case into images and masks on
the T2W grid and raises :class:`~adunet_lib.errors.CaseError` — naming the case and the file — for
anything a pipeline must not silently accept.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from adunet_lib.data.image import Geometry, Image, read_image, resample_to
from adunet_lib.errors import CaseError
from adunet_lib.vocabulary import SEQUENCES
#: Lesion labels in PI-CAI are ISUP-based grades 0..5; anything else is a corrupt label.
MAX_LESION_VALUE = 5
#: Fewest T2W slices a study may have. The crop keeps the slices that hold gland (at least one) plus
#: ``PreprocessConfig.z_margin`` slices (default 0) above and below it; nnU-Net's 3d_fullres (the
#: detection and zone models) convolves 3 slices at a time along z once pooling has brought its
#: in-plane spacing within a factor 2 of the slice spacing, so a gland slice needs a real neighbour
#: on either side rather than zero padding: 1 + 2 = 3 (a larger ``z_margin`` is checked by the crop
#: itself). Real bpMRI T2W has ~20; 1 or 2 slices is a localizer, one exported slice or a broken conversion.
MIN_T2W_SLICES = 3


class LesionOutsideGlandWarning(UserWarning):
    """Some lesion voxels lie outside the gland mask (kept; the map is masked to the gland)."""


@dataclasses.dataclass(frozen=True)
class Case:
    """One bpMRI study: file locations and case-level facts, nothing loaded yet.

    Attributes:
        case_id: ``<pid>_<sid>`` for PI-CAI, the given id for Prostate158 / manifests.
        images: sequence name (``t2w``, ``adc``, ``hbv``) → file (or DICOM folder). A missing key is
            a missing sequence; :func:`load_case` reports it.
        lesion: lesion label file (values 0..5, binarised ≥ 1), or None when unlabeled.
        gland: whole-gland mask, or None.
        zones: zonal mask, or None. Values are mapped through ``zone_codes`` to 1 = PZ, 2 = TZ.
        cspca: case-level csPCa from a marksheet, or None (then derived from the lesion label).
        site: free text, e.g. ``internal`` / ``external`` / the dataset name.
        zone_codes: source value → adunet value; Prostate158 stores 1 = TZ, 2 = PZ.
        lesion_on_other_grid: the lesion label legitimately lives on another grid (Prostate158 draws
            tumours on ADC) and is resampled (nearest neighbour) to T2W; otherwise a grid mismatch is
            an error.
        duplicates: sequence → every file found for it, when more than one was found.
        expected: sequence → the path where a missing file was looked for (for error messages).
        patient_id: the patient (several studies of one patient share it; folds never split it).
        lesion_source: where the lesion mask came from (e.g. ``human_expert/resampled``), or why
            there is none.
        negative_without_lesion: the case is a fully annotated csPCa negative that has no lesion
            file (Prostate158 negatives; PI-CAI studies the marksheet calls negative): its lesion
            mask is all zeros on the T2W grid.
        empty_cspca_cell: where the case's csPCa cell is (``<marksheet>: line <n>``) when the table
            has a row for the case but the cell is empty ('' otherwise): csPCa then comes from the
            lesion label, and ``adunet check`` says so.
        lesion_pirads: the PI-RADS score of every lesion the radiologist reported (PI-CAI marksheet
            ``lesion_PIRADS``, manifest ``pirads``); ``()`` when none was reported; None when the
            table has no such column (not recorded).
    """

    case_id: str
    images: Mapping[str, Path]
    lesion: Path | None = None
    gland: Path | None = None
    zones: Path | None = None
    cspca: bool | None = None
    site: str = ""
    zone_codes: Mapping[int, int] = dataclasses.field(default_factory=lambda: {1: 1, 2: 2})
    lesion_on_other_grid: bool = False
    duplicates: Mapping[str, tuple[Path, ...]] = dataclasses.field(default_factory=dict)
    expected: Mapping[str, Path] = dataclasses.field(default_factory=dict)
    patient_id: str = ""
    lesion_source: str = ""
    negative_without_lesion: bool = False
    empty_cspca_cell: str = ""
    lesion_pirads: tuple[int, ...] | None = None

    @property
    def visible_lesion(self) -> bool | None:
        """Did the radiologist report a lesion (PI-RADS ≥ 3, "equivocal" or worse)? None: not recorded.
        The paper's reconstruction models learn from patients "without visible abnormality": a
        csPCa-negative study can still hold a PI-RADS 4 lesion that biopsy found to be ISUP 1."""
        return None if self.lesion_pirads is None else any(score >= 3 for score in self.lesion_pirads)

    @property
    def patient(self) -> str:
        return self.patient_id or self.case_id

    @property
    def labeled(self) -> bool:
        """Is there a voxel-level lesion reference (a mask, or a known negative)?"""
        return self.lesion is not None or self.negative_without_lesion

    @property
    def has_gland_mask(self) -> bool:
        return self.zones is not None or self.gland is not None

    def path_of(self, sequence: str) -> Path:
        """The file of ``sequence``; raises :class:`CaseError` when it is missing or ambiguous."""
        if sequence in self.duplicates:
            files = ", ".join(str(p) for p in self.duplicates[sequence])
            raise CaseError(self.case_id, self.duplicates[sequence][0],
                            f"sequence {sequence} present {len(self.duplicates[sequence])} times ({files}); keep one")
        if sequence not in self.images:
            raise CaseError(self.case_id, self.expected.get(sequence), f"missing sequence {sequence}")
        return Path(self.images[sequence])


@dataclasses.dataclass(frozen=True, eq=False)
class LoadedCase:
    """A validated case: sequences on their own grids, masks binarised / remapped on the T2W grid."""

    case: Case
    images: dict[str, Image]
    lesion: Image | None
    zones: Image | None
    gland: Image | None

    @property
    def case_id(self) -> str:
        return self.case.case_id

    @property
    def t2w(self) -> Image:
        return self.images["t2w"]

    def on_t2w(self, sequence: str) -> Image:
        """A sequence on the T2W grid (T2W as read; ADC and hbv resampled, linear): the one place
        where a case's sequences are brought onto its T2W grid."""
        if sequence == "t2w":
            return self.t2w
        return resample_to(self.images[sequence], self.t2w.geometry, "linear")

    @property
    def cspca(self) -> bool | None:
        if self.case.cspca is not None:
            return self.case.cspca
        if self.lesion is not None:
            return bool(self.lesion.array.any())
        return None


def _itk_reason(exc: RuntimeError) -> str:
    """The readable part of a SimpleITK/ITK read error (its messages carry C++ source locations)."""
    text = str(exc)
    if "Unable to determine ImageIO reader" in text:
        return "not a recognised image format: damaged or not really .mha / .nii.gz"
    if "cannot be read" in text or "data not read completely" in text or "Failed to read" in text:
        return "truncated or damaged file: the header promises more data than the file holds"
    for line in text.splitlines():
        if "ERROR:" in line:
            return line.split("ERROR:", 1)[1].split("): ", 1)[-1].strip()[:160]
    return text.strip().splitlines()[-1][:160] if text.strip() else "unreadable"


def read_case_image(case_id: str, path: Path, what: str) -> Image:
    """Read one file of a case and turn every failure into a one-line :class:`CaseError`."""
    if not Path(path).exists():
        raise CaseError(case_id, path, f"{what} file does not exist")
    if not os.access(path, os.R_OK):
        raise CaseError(case_id, path, f"{what}: permission denied (cannot read the file)")
    try:
        image = read_dicom_series(path) if Path(path).is_dir() else read_image(path)
    except CaseError:
        raise
    except ValueError as exc:
        raise CaseError(case_id, path, f"{what}: {exc}") from None
    except RuntimeError as exc:
        raise CaseError(case_id, path, f"{what}: corrupt or unreadable image ({_itk_reason(exc)})") from None
    array = image.array
    if array.dtype.kind == "f":
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            raise CaseError(case_id, path, f"{what}: {bad} NaN/Inf voxels")
    return image


def read_dicom_series(folder: Path) -> Image:
    """Read a DICOM series folder, refusing series with missing slices (non-uniform spacing)."""
    reader = sitk.ImageSeriesReader()
    files = reader.GetGDCMSeriesFileNames(str(folder))
    if not files:
        raise ValueError("folder holds no DICOM series")
    positions = []
    for name in files:
        file_reader = sitk.ImageFileReader()
        file_reader.SetFileName(name)
        file_reader.ReadImageInformation()
        positions.append(np.asarray(file_reader.GetOrigin()))
    if len(positions) > 2:
        gaps = np.linalg.norm(np.diff(np.stack(positions), axis=0), axis=1)
        typical = float(np.median(gaps))
        irregular = np.flatnonzero(np.abs(gaps - typical) > 0.01 * max(typical, 1e-6))
        if irregular.size:
            k = int(irregular[0])
            raise ValueError(f"non-uniform slice spacing (missing slice?): gap of {gaps[k]:.2f} mm after slice {k}, "
                             f"typical {typical:.2f} mm")
    reader.SetFileNames(files)
    return Image.from_sitk(reader.Execute())


def _check_content(case_id: str, path: Path, image: Image, what: str) -> None:
    if not np.any(image.array):
        raise CaseError(case_id, path, f"{what} image is all zeros")


def _physical_corners(geometry: Geometry) -> np.ndarray:
    corners = []
    for i in (-0.5, geometry.size[0] - 0.5):
        for j in (-0.5, geometry.size[1] - 0.5):
            for k in (-0.5, geometry.size[2] - 0.5):
                corners.append(geometry.index_to_physical((i, j, k)))
    return np.asarray(corners)


def overlap_fraction(moving: Geometry, reference: Geometry) -> float:
    """Fraction of the reference's field of view (in its own index frame) that ``moving`` covers."""
    d = np.asarray(reference.direction).reshape(3, 3)
    corners = _physical_corners(moving) - np.asarray(reference.origin)
    idx = (np.linalg.solve(d, corners.T).T) / np.asarray(reference.spacing)
    lo = np.maximum(idx.min(axis=0), -0.5)
    hi = np.minimum(idx.max(axis=0), np.asarray(reference.size) - 0.5)
    inter = np.prod(np.clip(hi - lo, 0, None))
    return float(inter / np.prod(reference.size))


def _label_on_t2w(case: Case, path: Path, t2w: Image, what: str, may_resample: bool) -> Image:
    label = read_case_image(case.case_id, path, what)
    if label.array.dtype.kind == "f":
        if not np.all(np.equal(np.mod(label.array, 1), 0)):
            raise CaseError(case.case_id, path, f"{what} holds non-integer values")
    if not label.geometry.same_as(t2w.geometry):
        if not may_resample:
            diff = "; ".join(label.geometry.differences(t2w.geometry))
            raise CaseError(case.case_id, path, f"{what} grid differs from the T2W grid ({diff})")
        label = resample_to(label, t2w.geometry, interpolation="nearest")
    # adopt the T2W grid exactly (tolerated ~1e-4 differences in direction cosines would otherwise
    # propagate into every output written next to the T2W image)
    return Image(label.array, t2w.geometry)


def load_sequence(case: Case, seq: str) -> Image:
    """Read one sequence of ``case`` and check it is present once, readable, finite and not all zero."""
    path = case.path_of(seq)
    image = read_case_image(case.case_id, path, seq)
    _check_content(case.case_id, path, image, seq)
    return image


def check_slices(case: Case, t2w: Image) -> None:
    """Raise when the T2W has fewer slices than the pipeline needs (:data:`MIN_T2W_SLICES`)."""
    slices = t2w.geometry.size[2]
    if slices < MIN_T2W_SLICES:
        raise CaseError(case.case_id, case.path_of("t2w"),
                        f"t2w has {slices} slice(s); the pipeline needs at least {MIN_T2W_SLICES}")


def check_overlap(case: Case, seq: str, image: Image, t2w: Image) -> None:
    """Raise when ``image`` (ADC or hbv) does not overlap the T2W field of view."""
    covered = overlap_fraction(image.geometry, t2w.geometry)
    if covered < 0.05:
        raise CaseError(case.case_id, case.path_of(seq),
                        f"{seq} does not overlap the T2W field of view ({covered:.0%} covered)")


def load_lesion(case: Case, t2w: Image) -> Image | None:
    """The binarised lesion label on the T2W grid (all zeros for a known negative without a lesion
    file), or None when the case is unlabeled."""
    if case.lesion is None:
        return t2w.with_array(np.zeros(t2w.shape, np.uint8)) if case.negative_without_lesion else None
    lesion = _label_on_t2w(case, case.lesion, t2w, "lesion label", case.lesion_on_other_grid)
    values = np.unique(lesion.array)
    bad = values[(values < 0) | (values > MAX_LESION_VALUE)]
    if bad.size:
        raise CaseError(case.case_id, case.lesion,
                        f"lesion label values outside 0..{MAX_LESION_VALUE}: {sorted(bad.tolist())[:5]}")
    return lesion.with_array((lesion.array >= 1).astype(np.uint8))


def load_zones(case: Case, t2w: Image) -> tuple[Image | None, Image | None]:
    """(zones with 1 = PZ, 2 = TZ, gland) on the T2W grid; the gland comes from zones when present."""
    zones = gland = None
    if case.zones is not None:
        raw = _label_on_t2w(case, case.zones, t2w, "zonal mask", False)
        values = set(np.unique(raw.array).tolist()) - {0}
        unknown = sorted(values - set(case.zone_codes))
        if unknown:
            raise CaseError(case.case_id, case.zones,
                            f"zonal mask values {unknown[:5]} are not zones (expected {sorted(case.zone_codes)})")
        remapped = np.zeros(raw.shape, np.uint8)
        for src, dst in case.zone_codes.items():
            remapped[raw.array == src] = dst
        zones = raw.with_array(remapped)
        gland = zones.with_array((remapped > 0).astype(np.uint8))
    elif case.gland is not None:
        raw = _label_on_t2w(case, case.gland, t2w, "gland mask", False)
        gland = raw.with_array((raw.array > 0).astype(np.uint8))
    if gland is not None and not gland.array.any():
        raise CaseError(case.case_id, case.zones if case.zones is not None else case.gland, "gland mask is empty")
    return zones, gland


def missing_mask_error(case: Case) -> CaseError:
    return CaseError(case.case_id, case.expected.get("t2w") or case.images.get("t2w"),
                     "no gland mask (neither zonal_pz_tz nor whole_gland found): cropping needs one — "
                     "add a mask from a prostate segmentation model (e.g. picai_labels' AI masks), or let one "
                     "make it (mask_source files_then_predicted / files_then_pretrained)")


def warn_lesion_outside_gland(case: Case, lesion: Image | None, gland: Image | None) -> None:
    if lesion is None or gland is None:
        return
    outside = int(np.count_nonzero(lesion.array & (gland.array == 0)))
    if outside:
        total = int(np.count_nonzero(lesion.array))
        warnings.warn(f"case {case.case_id}: {case.lesion}: {outside} of {total} lesion voxels lie outside "
                      "the gland mask (kept; maps are masked to the gland)", LesionOutsideGlandWarning,
                      stacklevel=3)


def load_case(case: Case, require_masks: bool = False, sequences: tuple[str, ...] = SEQUENCES) -> LoadedCase:
    """Read and validate every file of ``case``.

    Checks: each sequence present once, readable, 3D, finite, not all zero; the T2W has at least
    :data:`MIN_T2W_SLICES` slices; ADC/hbv overlap the T2W field of view; labels on the T2W grid
    with values in range; gland mask not empty. A lesion outside the gland only warns
    (:class:`LesionOutsideGlandWarning`).

    Args:
        case: the case to load.
        require_masks: raise when the case has neither zonal nor whole-gland mask.
        sequences: the sequences to read (T2W always; the zone model may need T2W alone).

    Raises:
        CaseError: naming the case and the offending file.
    """
    images = {seq: load_sequence(case, seq) for seq in dict.fromkeys(("t2w", *sequences))}
    t2w = images["t2w"]
    check_slices(case, t2w)
    for seq in (s for s in ("adc", "hbv") if s in images):
        check_overlap(case, seq, images[seq], t2w)
    lesion = load_lesion(case, t2w)
    zones, gland = load_zones(case, t2w)
    if gland is None and require_masks:
        raise missing_mask_error(case)
    warn_lesion_outside_gland(case, lesion, gland)
    return LoadedCase(case=case, images=images, lesion=lesion, zones=zones, gland=gland)
