"""Dataset readers: PI-CAI layout, Prostate158 layout and a plain CSV manifest.

All three return a :class:`Dataset` of :class:`~adunet_lib.data.case.Case` objects. Readers only
*find* files (fast, no voxels read); :func:`~adunet_lib.data.case.load_case` validates content.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from collections import defaultdict
from pathlib import Path

from adunet_lib.data.case import SEQUENCES, Case
from adunet_lib.errors import DatasetError

IMAGE_SUFFIXES = (".mha", ".nii.gz", ".nii", ".nrrd", ".mhd")
PICAI_LESION_ROOT = "csPCa_lesion_delineations"
#: picai_labels' lesion sources in the order adunet takes them: human delineations resampled to T2W
#: (1,295 studies, csPCa-negative ones included), the manual masks made for the other 205
#: csPCa-positive studies, then the AI masks (Bosma et al. 2022, every study).
PICAI_LESION_SOURCES = ("human_expert/resampled", "human_expert/Pooch25", "AI/Bosma22a")
PICAI_GLAND_ROOT = "anatomical_delineations/whole_gland"
PICAI_ZONES_ROOT = "anatomical_delineations/zonal_pz_tz"


@dataclasses.dataclass(frozen=True)
class Dataset:
    """The cases of one dataset, in a stable order (sorted by case id)."""

    name: str
    root: Path
    layout: str
    cases: tuple[Case, ...]
    warnings: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.cases)

    def __iter__(self):
        return iter(self.cases)

    def __getitem__(self, case_id: str) -> Case:
        for case in self.cases:
            if case.case_id == case_id:
                return case
        raise KeyError(case_id)

    @property
    def case_ids(self) -> list[str]:
        return [c.case_id for c in self.cases]


def _strip_suffix(name: str) -> tuple[str, str] | None:
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)], suffix
    return None


def _make_dataset(name: str, root: Path, layout: str, cases: list[Case], where: str,
                  warnings: list[str] | None = None) -> Dataset:
    seen: dict[str, int] = defaultdict(int)
    for case in cases:
        seen[case.case_id] += 1
    dupes = sorted(cid for cid, n in seen.items() if n > 1)
    if dupes:
        raise DatasetError(f"{where}: duplicate case id(s) {', '.join(dupes[:5])}; case ids must be unique")
    return Dataset(name=name, root=root, layout=layout, cases=tuple(sorted(cases, key=lambda c: c.case_id)),
                   warnings=tuple(warnings or ()))


def _mask_sources(base: Path) -> list[Path]:
    """Mask source folders under ``base`` (e.g. ``AI/Yuan23``), human ones first, then AI, sorted."""
    if not base.is_dir():
        return []
    folders = sorted({p.parent for p in base.rglob("*.nii.gz")})
    return sorted(folders, key=lambda p: ("AI" in p.relative_to(base).parts, str(p)))


def _pick_source(base: Path, preferred: str | None) -> list[Path]:
    if preferred:
        folder = base / preferred
        if not folder.is_dir():
            raise DatasetError(f"{folder}: requested mask source does not exist")
        return [folder]
    return _mask_sources(base)


def _read_marksheet(path: Path) -> dict[str, bool | None]:
    """case id → csPCa (None where the cell is empty)."""
    out: dict[str, bool | None] = {}
    if not path.is_file():
        return out
    with path.open(newline="", encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            try:
                case_id = f"{row['patient_id'].strip()}_{row['study_id'].strip()}"
                value = (row["case_csPCa"] or "").strip().upper()
            except KeyError as exc:
                raise DatasetError(f"{path}: marksheet lacks column {exc.args[0]!r}") from None
            out[case_id] = None if not value else value in ("YES", "1", "TRUE")
    return out


def read_picai(root: str | Path, labels_dir: str | Path | None = None, zonal_source: str | None = None,
               gland_source: str | None = None, lesion_sources: tuple[str, ...] = PICAI_LESION_SOURCES,
               site: str = "picai") -> Dataset:
    """Read a dataset in the PI-CAI layout.

    ``root/images/<pid>/<pid>_<sid>_{t2w,adc,hbv}.mha`` and, from ``picai_labels`` (``root/picai_labels``
    unless ``labels_dir`` is given): lesion masks from the first of ``lesion_sources`` (under
    ``csPCa_lesion_delineations/``) that has the study — each case records which — zones ``anatomical_delineations/zonal_pz_tz/<source>`` (1 = PZ, 2 = TZ), whole gland
    ``anatomical_delineations/whole_gland/<source>`` and ``clinical_information/marksheet.csv``.
    When several mask sources exist, human ones are preferred, then AI ones in alphabetical order;
    ``zonal_source`` / ``gland_source`` (e.g. ``"AI/Yuan23"``) pin one.

    A study without a mask in any source is a labelled negative when the marksheet says it has no
    csPCa; when the marksheet says csPCa, it is named in :attr:`Dataset.warnings` and stays
    unlabeled (kept out of voxel-level training and evaluation), never counted as negative.

    Example:
        >>> ds = read_picai("../shared/realdata/picai")  # doctest: +SKIP
        >>> ds.case_ids  # doctest: +SKIP
        ['10795_1000811', '11373_1001396', 'px0218_0218']
    """
    root = Path(root)
    images_dir = root / "images"
    if not images_dir.is_dir():
        raise DatasetError(f"{root}: not a PI-CAI dataset (no images/ folder)")
    labels = Path(labels_dir) if labels_dir else root / "picai_labels"
    zonal_dirs = _pick_source(labels / PICAI_ZONES_ROOT, zonal_source)
    gland_dirs = _pick_source(labels / PICAI_GLAND_ROOT, gland_source)
    marks = _read_marksheet(labels / "clinical_information" / "marksheet.csv")
    pattern = re.compile(r"^(?P<case>.+)_(?P<seq>t2w|adc|hbv)$")

    found: dict[str, dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    patients: dict[str, str] = {}
    for patient_dir in sorted(p for p in images_dir.iterdir() if p.is_dir()):
        for path in sorted(patient_dir.iterdir()):
            stripped = _strip_suffix(path.name)
            if stripped is None:
                continue
            match = pattern.match(stripped[0])
            if match and match["case"].startswith(patient_dir.name + "_"):
                found[match["case"]][match["seq"]].append(path)
                patients[match["case"]] = patient_dir.name

    lesion_dirs = [(source, labels / PICAI_LESION_ROOT / source) for source in lesion_sources]
    cases, warnings = [], []
    for case_id, seqs in found.items():
        pid = patients[case_id]
        lesion, source = next(((d / f"{case_id}.nii.gz", name) for name, d in lesion_dirs
                               if (d / f"{case_id}.nii.gz").is_file()), (None, ""))
        cspca = marks.get(case_id)
        if lesion is None:
            source = {False: "none: marksheet says no csPCa", True: "none: marksheet says csPCa"}.get(cspca, "none")
            if cspca:
                warnings.append(f"case {case_id}: the marksheet says csPCa but no lesion mask exists in "
                                f"{', '.join(lesion_sources)}; kept out of voxel-level training and evaluation")
        zones = next((d / f"{case_id}.nii.gz" for d in zonal_dirs if (d / f"{case_id}.nii.gz").is_file()), None)
        gland = next((d / f"{case_id}.nii.gz" for d in gland_dirs if (d / f"{case_id}.nii.gz").is_file()), None)
        cases.append(Case(
            case_id=case_id,
            images={s: paths[0] for s, paths in seqs.items() if len(paths) == 1},
            lesion=lesion,
            gland=gland,
            zones=zones,
            cspca=cspca,
            site=site,
            duplicates={s: tuple(paths) for s, paths in seqs.items() if len(paths) > 1},
            expected={s: images_dir / pid / f"{case_id}_{s}.mha" for s in SEQUENCES},
            patient_id=pid,
            lesion_source=source,
            negative_without_lesion=lesion is None and cspca is False,
        ))
    return _make_dataset(root.name, root, "picai", cases, str(images_dir), warnings)


#: Prostate158 file stems → adunet roles. Anatomy: 1 = central gland (TZ), 2 = PZ.
P158_FILES = {"t2w": "t2", "adc": "adc", "hbv": "dwi"}
P158_ZONES = "t2_anatomy_reader1"
P158_LESION = ("adc_tumor_reader1", "t2_tumor_reader1")
P158_ZONE_CODES = {1: 2, 2: 1}


def read_prostate158(root: str | Path, splits: tuple[str, ...] = ("train", "valid", "test"),
                     site: str = "prostate158") -> Dataset:
    """Read the Prostate158 layout: per-case folders of NIfTI files listed by ``train/valid/test.csv``.

    Each case folder holds ``t2.nii.gz``, ``adc.nii.gz``, ``dwi.nii.gz`` (the high-b image),
    ``t2_anatomy_reader1.nii.gz`` (1 = central gland/TZ, 2 = PZ; remapped to adunet's 1 = PZ,
    2 = TZ) and, for cases with cancer, ``adc_tumor_reader1.nii.gz`` (drawn on the ADC grid,
    resampled to T2W). When no CSVs exist, every sub-folder with a ``t2.nii.gz`` is a case.
    """
    root = Path(root)
    folders: list[tuple[Path, dict[str, str]]] = []
    csvs = [root / f"{s}.csv" for s in splits if (root / f"{s}.csv").is_file()]
    for csv_path in csvs:
        with csv_path.open(newline="", encoding="utf-8-sig") as fh:
            for row in csv.DictReader(fh):
                case_ref = row.get("ID") or row.get("id")
                if case_ref is None:
                    raise DatasetError(f"{csv_path}: no ID column")
                t2 = row.get("t2")
                folder = (root / t2).parent if t2 else next(root.rglob(f"{case_ref}/t2.nii.gz"), root / case_ref).parent
                folders.append((_inside(root, folder, csv_path), row))
    if not csvs:
        folders = [(f, {}) for f in sorted({p.parent for p in root.rglob("t2.nii.gz")})]
    if not folders:
        raise DatasetError(f"{root}: not a Prostate158 dataset (no train/valid/test CSV, no */t2.nii.gz)")
    cases = []
    for folder, row in folders:
        case_id = folder.name
        images = {seq: folder / f"{stem}.nii.gz" for seq, stem in P158_FILES.items()}
        lesion, source = _p158_tumour(root, folder, row)
        zones = folder / f"{P158_ZONES}.nii.gz"
        cases.append(Case(
            case_id=case_id,
            images={s: p for s, p in images.items() if p.exists()},
            lesion=lesion,
            zones=zones if zones.is_file() else None,
            # every Prostate158 case is fully annotated: no tumour file means a csPCa-negative case
            cspca=None if lesion is not None else False,
            site=site,
            zone_codes=P158_ZONE_CODES,
            lesion_on_other_grid=True,
            expected=images,
            patient_id=case_id,
            lesion_source=source,
            negative_without_lesion=lesion is None,
        ))
    return _make_dataset(root.name, root, "prostate158", cases, str(root))


def _p158_tumour(root: Path, folder: Path, row: dict[str, str]) -> tuple[Path | None, str]:
    """(tumour file, its source) of a Prostate158 case; (None, why) for a negative. The CSV's tumour
    columns win (an empty cell or an ``empty.nii.gz`` placeholder means no tumour); without a CSV,
    the files in the case folder."""
    for stem in P158_LESION:
        if stem in row:
            cell = (row.get(stem) or "").strip()
            if cell and not Path(cell).name.startswith("empty"):
                return _inside(root, root / cell, root), stem
            continue
        if (folder / f"{stem}.nii.gz").is_file():
            return folder / f"{stem}.nii.gz", stem
    return None, "none: no tumour file (csPCa-negative)"


MANIFEST_COLUMNS = ("case_id", "t2w", "adc", "hbv")
MANIFEST_OPTIONAL = ("lesion", "gland", "zones", "cspca", "site", "patient_id")


def _inside(root: Path, path: Path, where: Path) -> Path:
    resolved = path.resolve()
    if resolved != root.resolve() and root.resolve() not in resolved.parents:
        raise DatasetError(f"{where}: path {path} escapes the dataset root {root}; "
                           "list only files inside the manifest's folder")
    return path


def read_manifest(path: str | Path, site: str = "") -> Dataset:
    """Read a CSV manifest: ``case_id,t2w,adc,hbv[,lesion,gland,zones,cspca,site]``.

    Paths are relative to the manifest's folder and must stay inside it (``../`` escapes are
    refused). ``cspca`` accepts yes/no/1/0/true/false; empty cells mean "not available".
    """
    path = Path(path)
    root = path.parent
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in MANIFEST_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(f"{path}: manifest lacks column(s) {', '.join(missing)}")
        rows = list(reader)
    cases = []
    for line, row in enumerate(rows, start=2):
        case_id = (row["case_id"] or "").strip()
        if not case_id:
            raise DatasetError(f"{path}: line {line}: empty case_id")

        def file(column: str) -> Path | None:
            value = (row.get(column) or "").strip()
            return _inside(root, root / value, path) if value else None

        images = {s: file(s) for s in SEQUENCES}
        cspca_text = (row.get("cspca") or "").strip().lower()
        cspca = None if not cspca_text else cspca_text in ("yes", "1", "true")
        cases.append(Case(
            case_id=case_id,
            images={s: p for s, p in images.items() if p is not None},
            lesion=file("lesion"), gland=file("gland"), zones=file("zones"),
            cspca=cspca, site=(row.get("site") or site or "manifest").strip(),
            expected={s: p for s, p in images.items() if p is not None},
            patient_id=(row.get("patient_id") or "").strip(),
            lesion_source="manifest" if file("lesion") else ("none: cspca says no" if cspca is False else "none"),
            negative_without_lesion=file("lesion") is None and cspca is False,
        ))
    return _make_dataset(path.stem, root, "manifest", cases, str(path))


def open_dataset(path: str | Path, site: str | None = None,
                 lesion_sources: tuple[str, ...] = PICAI_LESION_SOURCES) -> Dataset:
    """Open a dataset, detecting its layout: a ``.csv`` manifest, a PI-CAI folder (``images/``) or
    a Prostate158 folder (``train.csv`` / case folders with ``t2.nii.gz``). ``lesion_sources``: the
    picai_labels lesion sources, in order of preference."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: dataset not found")
    if path.is_file() and path.suffix == ".csv":
        return read_manifest(path, site=site or "")
    if (path / "images").is_dir():
        return read_picai(path, site=site or path.name, lesion_sources=tuple(lesion_sources))
    if any((path / f"{s}.csv").is_file() for s in ("train", "valid", "test")) or any(path.rglob("t2.nii.gz")):
        return read_prostate158(path, site=site or path.name)
    raise DatasetError(f"{path}: unknown dataset layout (expected a manifest .csv, a PI-CAI folder with images/, "
                       "or a Prostate158 folder)")
