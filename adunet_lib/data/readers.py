"""Dataset readers: PI-CAI layout, Prostate158 layout and a plain CSV manifest.

Each layout is registered in :mod:`adunet_lib.data.layouts` (the built-in ones in
:mod:`adunet_lib.data.builtin_layouts`), which is how :func:`open_dataset` detects it. All three return a :class:`Dataset` of :class:`~adunet_lib.data.case.Case` objects. Readers only
*find* files (fast, no voxels read); :func:`~adunet_lib.data.case.load_case` validates content.
Nothing under a dataset's root is skipped silently: each reader records the files it uses and why it
passes over others, and every remaining file is listed in :attr:`Dataset.unused` (``adunet check``
prints them); a symbolic link out of the root is refused.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

from adunet_lib.data import layouts
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
PICAI_MARKSHEET = "clinical_information/marksheet.csv"
#: A PI-CAI image: ``<patient>_<study>_<sequence>`` (+ an image suffix) in ``images/<patient>/``.
#: The sequence name is matched in any case: a Windows export writes ``<pid>_<sid>_T2W.mha``.
PICAI_IMAGE_NAME = re.compile(r"^(?P<case>.+)_(?P<seq>t2w|adc|hbv)$", re.IGNORECASE)
MARKSHEET_COLUMNS = ("patient_id", "study_id", "case_csPCa")
#: The marksheet's lesion list: one PI-RADS score per reported lesion ("4,4"); N/A for a lesion
#: without one (a systematic-biopsy finding). Optional: an older marksheet lacks it.
PIRADS_COLUMN = "lesion_PIRADS"
NOT_AVAILABLE = ("N/A", "NA", "")
#: csPCa cells (marksheet ``case_csPCa``, manifest ``cspca``), upper-cased; an empty cell means "not recorded".
CSPCA_VALUES = {"YES": True, "TRUE": True, "1": True, "NO": False, "FALSE": False, "0": False}
#: Files that describe a dataset rather than hold it (picai_labels has a README.md in its root and in
#: every source folder; LICENSE, CITATION, …): recognised, never reported as unused.
DOCUMENTATION = ("README", "LICENSE", "LICENCE", "CITATION", "CHANGELOG", "NOTICE")
#: adunet synth's record of a synthetic cohort (read by the preprocessing stage, not by the readers).
SYNTH_RECORD = "synth.json"


@dataclasses.dataclass(frozen=True)
class Unused:
    """A file under a dataset's root that its reader does not read, and why; or a folder (``files``:
    how many) all of whose files are unused for the same reason."""

    path: Path
    why: str
    files: int | None = None


@dataclasses.dataclass(frozen=True)
class Dataset:
    """The cases of one dataset, in a stable order (sorted by case id).

    Attributes:
        used: every path (resolved) the reader took or recognised as a file it could take: images,
            the masks of every label source for the cases read, marksheets and split CSVs.
        unused: every other file or folder under ``root`` with why (documentation excepted), sorted.
        hidden: hidden files and folders under ``root`` (``.DS_Store``, ``.git``), not read.
        remarks: how the reader read what it read, when a user might not expect it (e.g. upper-case
            file names read case-insensitively); one line each, never a problem.
    """

    name: str
    root: Path
    layout: str
    cases: tuple[Case, ...]
    warnings: tuple[str, ...] = ()
    remarks: tuple[str, ...] = ()
    used: frozenset[Path] = frozenset()
    unused: tuple[Unused, ...] = ()
    hidden: tuple[Path, ...] = ()

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
        if name.lower().endswith(suffix):
            return name[: -len(suffix)], suffix
    return None


def make_dataset(name: str, root: Path, layout: str, cases: list[Case], where: str,
                 warnings: list[str] | None = None, *, used: Iterable[Path] = (),
                 why: Mapping[Path, str] | None = None, default_why: str = "",
                 remarks: Iterable[str] = ()) -> Dataset:
    """The :class:`Dataset`, once case ids are unique and :func:`_survey` has sorted every file under
    ``root`` into used (``used``, or a folder of it), unused (why: ``why`` of the file or its nearest
    folder, else ``default_why``) and hidden. Every reader (a registered layout's too) ends with it."""
    seen: dict[str, int] = defaultdict(int)
    for case in cases:
        seen[case.case_id] += 1
    dupes = sorted(cid for cid, n in seen.items() if n > 1)
    if dupes:
        raise DatasetError(f"{where}: duplicate case id(s) {', '.join(dupes[:5])}; case ids must be unique")
    resolved, unused, hidden = _survey(root, used, why or {}, default_why)
    return Dataset(name=name, root=root, layout=layout, cases=tuple(sorted(cases, key=lambda c: c.case_id)),
                   warnings=tuple(warnings or ()), remarks=tuple(remarks), used=resolved, unused=unused,
                   hidden=hidden)


def _within(base: Path, resolved: Path) -> bool:
    """Is the resolved path ``resolved`` the resolved folder ``base`` or inside it?"""
    return resolved == base or base in resolved.parents


def _is_documentation(path: Path, root: Path) -> bool:
    return path.name.upper().startswith(DOCUMENTATION) or path.suffix.lower() == ".md" or path == root / SYNTH_RECORD


def _survey(root: Path, used: Iterable[Path], why: Mapping[Path, str], default_why: str
            ) -> tuple[frozenset[Path], tuple[Unused, ...], tuple[Path, ...]]:
    """Walk ``root`` without following links; return (``used`` resolved, the unused files, the hidden
    entries).

    A symbolic link (file or folder) that resolves outside ``root`` is refused, as a manifest path
    that escapes it is; one that stays inside is fine (files count as used through either path).
    Hidden entries (a leading ``.``) are neither entered nor checked. A folder of two or more
    files, all unused for one reason, is one :class:`Unused` entry (e.g. a label source not read).
    """
    base = root.resolve()
    used = frozenset(p.resolve() for p in used)
    files: list[Path] = []
    hidden: list[Path] = []
    unreadable: list[Unused] = []

    def note_unreadable(error: OSError) -> None:
        unreadable.append(Unused(Path(error.filename), f"folder cannot be read ({error.strerror})"))

    for folder, dirnames, filenames in os.walk(root, onerror=note_unreadable):
        here = Path(folder)
        for name in sorted(dirnames + filenames):
            path = here / name
            if name.startswith("."):
                hidden.append(path)
            elif path.is_symlink() and not _within(base, path.resolve()):
                raise DatasetError(f"{path}: symbolic link escapes the dataset root {root} (it points to "
                                   f"{path.resolve()}); copy the files into the dataset folder or open the "
                                   "folder it points to")
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(here / name for name in sorted(filenames) if not name.startswith("."))

    def folders(path: Path) -> list[Path]:
        """The folders between ``root`` and ``path``, nearest first."""
        return list(path.parents[:len(path.relative_to(root).parts) - 1])

    def is_used(path: Path) -> bool:
        real = path.resolve()
        return real in used or not used.isdisjoint(real.parents) or _is_documentation(path, root)

    def reason(path: Path) -> str:
        return next((why[p] for p in (path, *folders(path)) if p in why), default_why)

    unused = [(path, reason(path)) for path in files if not is_used(path)]
    total, unused_in, reasons = Counter(), Counter(), defaultdict(set)
    for path in files:
        total.update(folders(path))
    for path, because in unused:
        unused_in.update(folders(path))
        for folder in folders(path):
            reasons[folder].add(because)
    whole = {f for f, n in unused_in.items() if n == total[f] >= 2 and len(reasons[f]) == 1}
    entries: dict[Path, Unused] = {}
    for path, because in unused:
        top = next((f for f in reversed(folders(path)) if f in whole), None)
        entries.setdefault(top or path, Unused(top, because, total[top]) if top else Unused(path, because))
    return used, tuple(sorted([*entries.values(), *unreadable], key=lambda u: u.path)), tuple(hidden)


def _stray_reason(path: Path, layout: str) -> str:
    """Why a file where a layout expects images is not read: its extension, or else its name."""
    if _strip_suffix(path.name) is None:
        return f"unexpected extension {path.suffix or '(none)'} (images are {', '.join(IMAGE_SUFFIXES)})"
    return f"name does not match {layout}"


def _csv_rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and ``(line, row)`` of every row of a CSV file (UTF-8, a BOM allowed).

    A file that is not UTF-8 text or not CSV, and a row with more or fewer fields than the header
    (a stray comma or a missing cell shifts every column after it), are one-line :class:`DatasetError`s.
    """
    rows: list[tuple[int, dict[str, str]]] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = list(reader.fieldnames or [])
            for row in reader:
                fields = len(header) + len(row.get(None) or []) - sum(v is None for v in row.values())
                if fields != len(header):
                    raise DatasetError(f"{path}: line {reader.line_num}: {fields} field(s) where the header has "
                                       f"{len(header)}; a stray comma or a missing cell shifts the columns")
                rows.append((reader.line_num, row))
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8 CSV") from None
    except csv.Error as exc:
        raise DatasetError(f"{path}: line {reader.line_num}: not valid CSV ({exc})") from None
    return header, rows


def _parse_cspca(text: str | None, where: str, column: str) -> bool | None:
    """A csPCa cell: YES / NO (also TRUE / FALSE, 1 / 0, any case); None when empty; else refused."""
    value = (text or "").strip()
    if not value:
        return None
    if value.upper() not in CSPCA_VALUES:
        raise DatasetError(f"{where}: {column} {value!r} is not YES or NO (leave the cell empty when it is unknown)")
    return CSPCA_VALUES[value.upper()]


def _parse_pirads(text: str | None, where: str, column: str) -> tuple[int, ...]:
    """A lesion list of PI-RADS scores (``"4,4"``; N/A for a lesion without one); an empty cell:
    no lesion reported (PI-CAI leaves it empty for PI-RADS 1–2 studies). Anything else is refused."""
    scores = []
    for token in (text or "").split(","):
        token = token.strip()
        if token.upper() in NOT_AVAILABLE:
            continue
        if not re.fullmatch(r"[1-5]", token):
            raise DatasetError(f"{where}: {column} {(text or '').strip()!r} is not a list of PI-RADS scores 1-5 "
                               "(N/A for a lesion without one)")
        scores.append(int(token))
    return tuple(scores)


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


def _read_marksheet(path: Path) -> dict[str, tuple[bool | None, int, tuple[int, ...] | None]]:
    """case id → (csPCa, the row's line in the marksheet, the PI-RADS of its reported lesions);
    csPCa is None where the cell is empty, PI-RADS None where the marksheet has no lesion_PIRADS.

    A malformed row — a wrong number of fields, an id that is not a number (PI-CAI's ids are digits;
    a spreadsheet may have turned ``10795`` into ``10795.0``), a case_csPCa other than YES / NO, a
    study listed twice — is a one-line :class:`DatasetError` naming the file and line. A row whose
    cells are all empty (a spreadsheet's trailing ``,,,``) holds nothing and is passed over.
    """
    out: dict[str, tuple[bool | None, int, tuple[int, ...] | None]] = {}
    if not path.is_file():
        return out
    header, rows = _csv_rows(path)
    missing = [c for c in MARKSHEET_COLUMNS if c not in header]
    if missing:
        raise DatasetError(f"{path}: marksheet lacks column {missing[0]!r}")
    for line, row in rows:
        if not any((value or "").strip() for value in row.values()):
            continue
        where = f"{path}: line {line}"
        ids = [(row[column] or "").strip() for column in ("patient_id", "study_id")]
        for column, value in zip(("patient_id", "study_id"), ids):
            if not re.fullmatch(r"[0-9]+", value):
                raise DatasetError(f"{where}: {column} {value!r} is not a number (PI-CAI ids are digits)")
        case_id = "_".join(ids)
        if case_id in out:
            raise DatasetError(f"{where}: study {case_id} is listed twice (also on line {out[case_id][1]})")
        pirads = _parse_pirads(row[PIRADS_COLUMN], where, PIRADS_COLUMN) if PIRADS_COLUMN in header else None
        out[case_id] = (_parse_cspca(row["case_csPCa"], where, "case_csPCa"), line, pirads)
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
    marksheet = labels / PICAI_MARKSHEET
    marks = _read_marksheet(marksheet)
    used: set[Path] = {marksheet}
    why: dict[Path, str] = {}

    found: dict[str, dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    patients: dict[str, str] = {}
    not_lower: list[Path] = []
    for patient_dir in sorted(p for p in images_dir.iterdir() if not p.name.startswith(".")):
        if not patient_dir.is_dir():
            why[patient_dir] = "images are read from patient folders (images/<patient>/)"
            continue
        for path in sorted(p for p in patient_dir.iterdir() if not p.name.startswith(".")):
            stripped = _strip_suffix(path.name)
            match = PICAI_IMAGE_NAME.match(stripped[0]) if stripped else None
            if match and match["case"].startswith(patient_dir.name + "_"):
                found[match["case"]][match["seq"].lower()].append(path)
                patients[match["case"]] = patient_dir.name
                used.add(path)
                if path.name != match["case"] + "_" + match["seq"].lower() + stripped[1]:
                    not_lower.append(path)
            elif not path.is_dir():
                why[path] = _picai_stray(path, patient_dir.name)

    lesion_dirs = [(source, labels / PICAI_LESION_ROOT / source) for source in lesion_sources]
    why[labels / PICAI_LESION_ROOT] = f"not one of the lesion sources read ({', '.join(lesion_sources)})"
    for base, pinned in ((PICAI_ZONES_ROOT, zonal_source), (PICAI_GLAND_ROOT, gland_source)):
        if pinned:
            why[labels / base] = f"not the mask source selected ({pinned})"
    for folder in {d for _, d in lesion_dirs} | set(zonal_dirs) | set(gland_dirs):
        used.update(_picai_masks(folder, found, why))
    cases, warnings = [], []
    for case_id, seqs in found.items():
        pid = patients[case_id]
        lesion, source = next(((d / f"{case_id}.nii.gz", name) for name, d in lesion_dirs
                               if (d / f"{case_id}.nii.gz").is_file()), (None, ""))
        cspca, line, pirads = marks.get(case_id, (None, 0, None))
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
            empty_cspca_cell=f"{marksheet}: line {line}" if line and cspca is None else "",
            lesion_pirads=pirads,
        ))
    remarks = [f"{len(not_lower)} image(s) named in upper case (e.g. {not_lower[0].name}, as a Windows export writes "
               f"them) read as their lower-case PI-CAI names"] if not_lower else []
    return make_dataset(root.name, root, "picai", cases, str(images_dir), warnings, used=used, why=why,
                        default_why="not part of the PI-CAI layout (images/<patient>/, picai_labels/)",
                        remarks=remarks)


def _picai_stray(path: Path, patient: str) -> str:
    """Why a file in the PI-CAI patient folder ``images/<patient>/`` is not one of its images."""
    stripped = _strip_suffix(path.name)
    if stripped and re.fullmatch(r".+_(cor|sag)", stripped[0]):
        return "coronal/sagittal T2W is not part of bpMRI input (t2w, adc, hbv)"
    match = PICAI_IMAGE_NAME.match(stripped[0]) if stripped else None
    if match:
        return f"the study's name does not start with its patient folder's name ({patient}_)"
    return _stray_reason(path, "the PI-CAI layout (<patient>_<study>_<t2w|adc|hbv>.mha)")


def _picai_masks(folder: Path, found: Mapping[str, object], why: dict[Path, str]) -> list[Path]:
    """The masks in a picai_labels source folder of the studies in ``found`` (each source is read or
    is an alternative for them); every other file gets its reason in ``why``."""
    masks = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else ():
        study = path.name[:-len(".nii.gz")] if path.name.endswith(".nii.gz") else None
        if study in found:
            masks.append(path)
        else:
            why[path] = "mask of a study without images" if study else "not a mask (<patient>_<study>.nii.gz)"
    return masks


#: Prostate158 file stems → adunet roles. Anatomy: 1 = central gland (TZ), 2 = PZ.
P158_FILES = {"t2w": "t2", "adc": "adc", "hbv": "dwi"}
P158_ZONES = "t2_anatomy_reader1"
P158_LESION = ("adc_tumor_reader1", "t2_tumor_reader1")
P158_ZONE_CODES = {1: 2, 2: 1}
#: The case files adunet reads or could read (the other tumour file is an alternative lesion source).
P158_KNOWN = tuple(f"{stem}.nii.gz" for stem in (*P158_FILES.values(), P158_ZONES, *P158_LESION))


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
        for _, row in _csv_rows(csv_path)[1]:
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
    used: set[Path] = set(csvs)
    why: dict[Path, str] = {}
    listed = {folder for folder, _ in folders}
    for t2 in root.rglob("t2.nii.gz"):
        if t2.parent not in listed:
            why[t2.parent] = f"case folder not listed in {', '.join(p.name for p in csvs)}"
    cases = []
    for folder, row in folders:
        case_id = folder.name
        images = {seq: folder / f"{stem}.nii.gz" for seq, stem in P158_FILES.items()}
        lesion, source = _p158_tumour(root, folder, row)
        used.update(_p158_case_files(folder, why))
        # the CSV's tumour cells: the file taken, or the empty.nii.gz placeholder of a negative
        used.update(root / row[stem].strip() for stem in P158_LESION if (row.get(stem) or "").strip())
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
    return make_dataset(root.name, root, "prostate158", cases, str(root), used=used, why=why,
                        default_why="not part of the Prostate158 layout (train/valid/test.csv and their case folders)")


def _p158_case_files(folder: Path, why: dict[Path, str]) -> list[Path]:
    """The files of a Prostate158 case folder that adunet reads or could read (:data:`P158_KNOWN`);
    every other file gets its reason in ``why`` (e.g. reader 2's annotations)."""
    known = []
    for path in sorted(folder.iterdir()) if folder.is_dir() else ():
        reader = re.search(r"_reader(\d+)\.nii\.gz$", path.name)
        if path.name in P158_KNOWN:
            known.append(path)
        elif reader and reader[1] != "1":
            why[path] = f"annotation of reader {reader[1]}; adunet reads reader 1's"
        elif not path.is_dir():
            why[path] = _stray_reason(path, f"a Prostate158 case file ({', '.join(P158_KNOWN)})")
    return known


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
MANIFEST_OPTIONAL = ("lesion", "gland", "zones", "cspca", "site", "patient_id", "pirads")


def _inside(root: Path, path: Path, where: Path) -> Path:
    if not _within(root.resolve(), path.resolve()):
        raise DatasetError(f"{where}: path {path} escapes the dataset root {root}; "
                           "list only files inside the manifest's folder")
    return path


def read_manifest(path: str | Path, site: str = "") -> Dataset:
    """Read a CSV manifest: ``case_id,t2w,adc,hbv[,lesion,gland,zones,cspca,site,patient_id,pirads]``
    (``pirads``: the PI-RADS of each reported lesion, as PI-CAI's ``lesion_PIRADS``).

    Paths are relative to the manifest's folder and must stay inside it (``../`` escapes are
    refused). ``cspca`` accepts yes/no/1/0/true/false (anything else is refused); empty cells mean
    "not available". Every other file in the manifest's folder is noted as not listed.
    """
    path = Path(path)
    root = path.parent
    header, rows = _csv_rows(path)
    missing = [c for c in MANIFEST_COLUMNS if c not in header]
    if missing:
        raise DatasetError(f"{path}: manifest lacks column(s) {', '.join(missing)}")
    used = {path}
    cases = []
    for line, row in rows:
        case_id = (row["case_id"] or "").strip()
        if not case_id:
            raise DatasetError(f"{path}: line {line}: empty case_id")

        def file(column: str) -> Path | None:
            value = (row.get(column) or "").strip()
            if not value:
                return None
            used.add(_inside(root, root / value, path))
            return root / value

        images = {s: file(s) for s in SEQUENCES}
        cspca = _parse_cspca(row.get("cspca"), f"{path}: line {line}", "cspca")
        cases.append(Case(
            case_id=case_id,
            images={s: p for s, p in images.items() if p is not None},
            lesion=file("lesion"), gland=file("gland"), zones=file("zones"),
            cspca=cspca, site=(row.get("site") or site or "manifest").strip(),
            expected={s: p for s, p in images.items() if p is not None},
            patient_id=(row.get("patient_id") or "").strip(),
            lesion_source="manifest" if file("lesion") else ("none: cspca says no" if cspca is False else "none"),
            negative_without_lesion=file("lesion") is None and cspca is False,
            empty_cspca_cell=f"{path}: line {line}" if "cspca" in header and cspca is None else "",
            lesion_pirads=_parse_pirads(row["pirads"], f"{path}: line {line}", "pirads") if "pirads" in header else None,
        ))
    return make_dataset(path.stem, root, "manifest", cases, str(path), used=used,
                        default_why=f"not listed in {path.name}")


def open_dataset(path: str | Path, site: str | None = None,
                 lesion_sources: tuple[str, ...] | None = None) -> Dataset:
    """Open a dataset, detecting its layout from the layout registry (:mod:`adunet_lib.data.layouts`):
    the first registered layout that recognises ``path`` reads it — built in, in this order, a PI-CAI
    folder (``images/``), a Prostate158 folder (``train.csv`` / case folders with ``t2.nii.gz``) or a
    ``.csv`` manifest. ``lesion_sources``: the picai_labels lesion sources, in order of preference
    (None: :data:`PICAI_LESION_SOURCES`)."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: dataset not found")
    return layouts.detect(path).read(path, site=site, lesion_sources=lesion_sources)
