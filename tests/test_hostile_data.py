"""Hostile dataset folders: nothing in the input is skipped silently.

Every file under a dataset's root that its reader does not use is one ``note`` line naming the file
(or the folder) and why; symbolic links out of the root are refused; malformed marksheet rows are
one-line errors; an empty csPCa cell never becomes a silent negative; a T2W with too few slices is an
error. Each test breaks a private copy of a synthetic cohort (or of the real shared studies), runs
``adunet check`` and asserts the exit code, the exact line and that nothing was written into the data.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from adunet_lib.cli import main
from adunet_lib.data import load_case, open_dataset
from adunet_lib.data.case import MIN_T2W_SLICES
from adunet_lib.data.check import MAX_LISTED
from adunet_lib.data.image import read_image, write_image
from adunet_lib.data.synthetic import synthesize_cohort
from adunet_lib.errors import CaseError
from adunet_lib.preprocessing.geometry import CropBox, crop

MARKSHEET = Path("picai_labels/clinical_information/marksheet.csv")
PICAI_NAME = "name does not match the PI-CAI layout (<patient>_<study>_<t2w|adc|hbv>.mha)"


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every entry under ``root`` (links not followed) with its size and modification time."""
    return {str(p): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")}


def check(capsys, root: Path, *extra: str) -> tuple[int, list[str], str]:
    """``adunet check`` on ``root``: (exit code, stdout lines, stderr), asserting that it wrote nothing."""
    before = snapshot(root.parent if root.is_file() else root)
    code = main(["check", str(root), "--quiet", *extra])
    out = capsys.readouterr()
    assert snapshot(root.parent if root.is_file() else root) == before
    return code, out.out.splitlines(), out.err


def notes(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("note: ")]


def first_patient(root: Path) -> tuple[Path, str]:
    """The first patient folder of a PI-CAI cohort and the case id of its first study."""
    folder = sorted((root / "images").iterdir())[0]
    return folder, sorted(folder.iterdir())[0].name.rsplit("_", 1)[0]


@pytest.fixture(scope="module")
def p158(tmp_path_factory) -> Path:
    return synthesize_cohort(tmp_path_factory.mktemp("hostile") / "p158", cases=3, seed=4, site="external",
                             layout="prostate158", show_progress=False)


# -- files the reader does not use: one note each, exit 0 (also with --strict) -----------------------------

def test_clean_cohorts_read_every_file_and_say_how_many_cases(capsys, cohort_copy, realdata_copy, p158):
    for root, count, layout in ((cohort_copy, 6, "picai"), (realdata_copy, 3, "picai"), (p158, 3, "prostate158")):
        code, lines, _ = check(capsys, root)
        assert code == 0 and lines[0] == f"read {count} case(s) from {root} ({layout} layout)"
        assert notes(lines) == [] and lines[-1].startswith("ok: no errors") and lines[-1].endswith(", 0 note(s))")


def test_stray_files_in_a_patient_folder_are_named_with_why(capsys, cohort_copy):
    folder, cid = first_patient(cohort_copy)
    (folder / f"{cid}_T2.mha").write_bytes(b"x")  # wrong name
    (folder / "IM_0001.dcm").write_bytes(b"x")  # a DICOM file where the layout has .mha
    (folder / f"{cid}_t2w.mha.bak").write_bytes(b"x")
    (cohort_copy / "images" / "notes.txt").write_text("x")  # not in a patient folder
    (cohort_copy / "export.zip").write_bytes(b"x")
    code, lines, _ = check(capsys, cohort_copy)
    assert code == 0 and lines[0] == f"read 6 case(s) from {cohort_copy} (picai layout)"
    images = ".mha, .nii.gz, .nii, .nrrd, .mhd"
    assert notes(lines) == [
        f"note: {cohort_copy / 'export.zip'}: not used: not part of the PI-CAI layout "
        "(images/<patient>/, picai_labels/)",
        f"note: {folder / f'{cid}_T2.mha'}: not used: {PICAI_NAME}",
        f"note: {folder / f'{cid}_t2w.mha.bak'}: not used: unexpected extension .bak (images are {images})",
        f"note: {folder / 'IM_0001.dcm'}: not used: unexpected extension .dcm (images are {images})",
        f"note: {cohort_copy / 'images' / 'notes.txt'}: not used: images are read from patient folders "
        "(images/<patient>/)",
    ]
    assert lines[-1] == "ok: no errors (0 warning(s), 5 note(s))"
    code, lines, _ = check(capsys, cohort_copy, "--strict")  # notes stay notes: real PI-CAI ships cor/sag T2W
    assert code == 0 and len(notes(lines)) == 5


def test_coronal_and_sagittal_t2w_of_the_real_studies_are_named_as_such(capsys, realdata_copy):
    folder = realdata_copy / "images" / "11373"
    for plane in ("cor", "sag"):  # as in the PI-CAI public training data
        shutil.copy(folder / "11373_1001396_t2w.mha", folder / f"11373_1001396_{plane}.mha")
    code, lines, _ = check(capsys, realdata_copy)
    assert code == 0 and notes(lines) == [
        f"note: {folder / f'11373_1001396_{plane}.mha'}: not used: coronal/sagittal T2W is not part of bpMRI input "
        "(t2w, adc, hbv)" for plane in ("cor", "sag")]

def test_a_windows_export_with_upper_case_names_is_read_and_said_once(capsys, realdata_copy):
    folder = realdata_copy / "images" / "11373"
    for seq in ("t2w", "adc", "hbv"):  # as a Windows export writes them
        (folder / f"11373_1001396_{seq}.mha").rename(folder / f"11373_1001396_{seq.upper()}.MHA")
    (realdata_copy / "images" / "10795" / "10795_1000811_hbv.mha").rename(
        realdata_copy / "images" / "10795" / "10795_1000811_Hbv.mha")
    code, lines, _ = check(capsys, realdata_copy)
    assert code == 0 and lines[0] == f"read 3 case(s) from {realdata_copy} (picai layout)"
    assert notes(lines) == [f"note: {realdata_copy}: 4 image(s) named in upper case (e.g. 10795_1000811_Hbv.mha, "
                            "as a Windows export writes them) read as their lower-case PI-CAI names"]
    case = open_dataset(realdata_copy)["11373_1001396"]
    assert case.images["t2w"] == folder / "11373_1001396_T2W.MHA" and load_case(case).cspca is True



def test_hidden_files_are_counted_in_one_line(capsys, cohort_copy):
    folder, _ = first_patient(cohort_copy)
    (folder / ".DS_Store").write_bytes(b"x")
    (folder / "._20000_1020000_t2w.mha").write_bytes(b"x")  # macOS AppleDouble: must not be read as an image
    (cohort_copy / ".git").mkdir()
    (cohort_copy / ".git" / "HEAD").write_text("ref")
    (cohort_copy / "picai_labels" / "README.md").write_text("documentation, not read")
    code, lines, _ = check(capsys, cohort_copy)
    hidden = sorted(str(p.relative_to(cohort_copy)) for p in (cohort_copy / ".git", folder / ".DS_Store",
                                                               folder / "._20000_1020000_t2w.mha"))
    assert code == 0 and notes(lines) == [
        f"note: {cohort_copy}: 3 hidden file(s) or folder(s) not read ({', '.join(hidden)})"]


def test_label_folders_name_a_source_not_read_and_masks_without_a_study(capsys, cohort_copy):
    lesions = cohort_copy / "picai_labels" / "csPCa_lesion_delineations"
    original = lesions / "human_expert" / "original"  # in picai_labels; adunet reads the resampled ones
    original.mkdir()
    for k in range(3):
        (original / f"1000{k}_100000{k}.nii.gz").write_bytes(b"x")
    orphan = lesions / "AI" / "Bosma22a" / "99999_1099999.nii.gz"  # a study whose images are not here
    shutil.copy(next((lesions / "AI" / "Bosma22a").iterdir()), orphan)
    code, lines, _ = check(capsys, cohort_copy)
    assert code == 0 and notes(lines) == [
        f"note: {orphan}: not used: mask of a study without images",
        f"note: {original}{os.sep}: not used (3 files): not one of the lesion sources read "
        "(human_expert/resampled, human_expert/Pooch25, AI/Bosma22a)"]


def test_a_prostate158_case_not_in_the_split_csvs_and_a_second_readers_mask(capsys, p158, tmp_path):
    root = Path(shutil.copytree(p158, tmp_path / "p158"))
    case = sorted((root / "train").iterdir())[0]
    shutil.copy(case / "t2_anatomy_reader1.nii.gz", case / "t2_anatomy_reader2.nii.gz")
    extra = Path(shutil.copytree(case, root / "train" / "999"))
    code, lines, _ = check(capsys, root)
    assert code == 0 and lines[0] == f"read 3 case(s) from {root} (prostate158 layout)"
    assert notes(lines) == [
        f"note: {case / 't2_anatomy_reader2.nii.gz'}: not used: annotation of reader 2; adunet reads reader 1's",
        f"note: {extra}{os.sep}: not used ({len(list(extra.iterdir()))} files): case folder not listed in "
        "train.csv, valid.csv, test.csv"]


def test_a_file_the_manifest_does_not_list(capsys, tmp_path):
    manifest = synthesize_cohort(tmp_path / "m", cases=2, seed=1, layout="manifest", show_progress=False)
    stray = manifest.parent / "studies" / "case000" / "t2w_old.nii.gz"
    stray.write_bytes(b"x")
    code, lines, _ = check(capsys, manifest)
    assert code == 0 and lines[0] == f"read 2 case(s) from {manifest} (manifest layout)"
    assert notes(lines) == [f"note: {stray}: not used: not listed in manifest.csv"]


def test_many_files_unused_for_one_reason_are_listed_up_to_a_limit(capsys, cohort_copy):
    folder, _ = first_patient(cohort_copy)
    for k in range(MAX_LISTED + 3):
        (folder / f"IM_{k:04d}.dcm").write_bytes(b"x")
    code, lines, _ = check(capsys, cohort_copy)
    why = "unexpected extension .dcm (images are .mha, .nii.gz, .nii, .nrrd, .mhd)"
    assert code == 0 and notes(lines) == [f"note: {folder / f'IM_{k:04d}.dcm'}: not used: {why}"
                                          for k in range(MAX_LISTED)] + [
        f"note: {cohort_copy}: 3 more file(s) or folder(s) not used: {why}"]


# -- symbolic links: out of the root refused (one line, exit 2), inside it fine ----------------------------

def test_a_file_link_out_of_the_dataset_is_refused(capsys, cohort_copy, tmp_path):
    folder, cid = first_patient(cohort_copy)
    outside = tmp_path / "elsewhere_hbv.mha"
    (folder / f"{cid}_hbv.mha").rename(outside)
    (folder / f"{cid}_hbv.mha").symlink_to(outside)
    code, lines, err = check(capsys, cohort_copy)
    assert code == 2 and lines == [] and err.strip() == (
        f"adunet check: error: {folder / f'{cid}_hbv.mha'}: symbolic link escapes the dataset root {cohort_copy} "
        f"(it points to {outside}); copy the files into the dataset folder or open the folder it points to")


def test_a_folder_link_out_of_the_dataset_is_refused(capsys, cohort_copy, tmp_path):
    folder, _ = first_patient(cohort_copy)
    outside = Path(shutil.move(folder, tmp_path / "archive"))
    folder.symlink_to(outside, target_is_directory=True)
    code, _, err = check(capsys, cohort_copy)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"error: {folder}: symbolic link escapes the dataset root {cohort_copy} (it points to {outside})" in err


def test_links_that_stay_inside_the_dataset_are_read_through(capsys, cohort_copy):
    folder, cid = first_patient(cohort_copy)
    archive = cohort_copy / "archive"
    archive.mkdir()
    moved = Path(shutil.move(folder, archive / folder.name))
    folder.symlink_to(Path("..") / "archive" / folder.name, target_is_directory=True)  # a patient folder
    other = sorted((cohort_copy / "images").iterdir())[1]
    hbv = sorted(other.glob("*_hbv.mha"))[0]
    hbv.rename(archive / hbv.name)
    hbv.symlink_to(Path("..") / ".." / "archive" / hbv.name)  # one file
    code, lines, _ = check(capsys, cohort_copy)
    assert code == 0 and lines[0] == f"read 6 case(s) from {cohort_copy} (picai layout)" and notes(lines) == []
    ds = open_dataset(cohort_copy)
    assert (moved / f"{cid}_t2w.mha").resolve() in ds.used and (archive / hbv.name).resolve() in ds.used


# -- the marksheet: a malformed row is one line naming file and line (exit 2); an empty cell is never a silent negative

@pytest.mark.parametrize("edit, message", [
    (lambda rows: rows[:1] + [rows[1].replace(",YES,", ",maybe,").replace(",NO,", ",maybe,")] + rows[2:],
     "line 2: case_csPCa 'maybe' is not YES or NO (leave the cell empty when it is unknown)"),
    (lambda rows: rows[:2] + [rows[2].rsplit(",", 1)[0]] + rows[3:],
     "line 3: 6 field(s) where the header has 7; a stray comma or a missing cell shifts the columns"),
    (lambda rows: rows[:1] + ["2.0E+04" + rows[1][rows[1].index(","):]] + rows[2:],
     "line 2: patient_id '2.0E+04' is not a number (PI-CAI ids are digits)"),
    (lambda rows: rows + [rows[1]],
     "line 8: study 20000_1020000 is listed twice (also on line 2)"),
], ids=["unparseable_cspca", "wrong_field_count", "non_numeric_id", "duplicate_study"])
def test_a_malformed_marksheet_row_is_one_line_naming_file_and_line(capsys, cohort_copy, edit, message):
    marksheet = cohort_copy / MARKSHEET
    rows = marksheet.read_text(encoding="utf-8").splitlines()
    assert len(rows) == 7 and rows[1].startswith("20000,1020000,")
    marksheet.write_text("\n".join(edit(rows)) + "\n", encoding="utf-8")
    code, lines, err = check(capsys, cohort_copy)
    assert code == 2 and lines == [] and err.strip() == f"adunet check: error: {marksheet}: {message}"


def test_a_marksheet_that_is_not_utf8_or_has_blank_rows(capsys, cohort_copy):
    marksheet = cohort_copy / MARKSHEET
    text = marksheet.read_text(encoding="utf-8")
    marksheet.write_text(text + ",,,,,,\n", encoding="utf-8")  # a spreadsheet's empty row: holds nothing
    code, lines, _ = check(capsys, cohort_copy)
    assert code == 0 and notes(lines) == []
    marksheet.write_bytes(text.replace("SYNTH-INTERNAL", "Universitätsklinik", 1).encode("latin-1"))
    code, _, err = check(capsys, cohort_copy)
    assert code == 2 and err.strip().startswith(f"adunet check: error: {marksheet}: not UTF-8 text (byte ")


def test_a_pirads_cell_that_is_not_a_list_of_scores_is_one_line_naming_file_and_line(capsys, realdata_copy):
    marksheet = realdata_copy / MARKSHEET
    text = marksheet.read_text(encoding="utf-8")
    assert ",MRBx,4,4+3," in text  # 11373's one PI-RADS 4 lesion, on line 3
    marksheet.write_text(text.replace(",MRBx,4,4+3,", ",MRBx,4b,4+3,"), encoding="utf-8")
    code, lines, err = check(capsys, realdata_copy)
    assert code == 2 and lines == [] and err.strip() == (
        f"adunet check: error: {marksheet}: line 3: lesion_PIRADS '4b' is not a list of PI-RADS scores 1-5 "
        "(N/A for a lesion without one)")


def test_an_empty_cspca_cell_with_a_lesion_is_named_and_treated_as_positive(capsys, cohort_copy):
    marksheet = cohort_copy / MARKSHEET
    rows = marksheet.read_text(encoding="utf-8").splitlines()
    cid = "_".join(rows[1].split(",")[:2])
    assert ",YES," in rows[1]
    rows[1] = rows[1].replace(",YES,", ",,")
    marksheet.write_text("\n".join(rows) + "\n", encoding="utf-8")
    case = open_dataset(cohort_copy)[cid]
    assert case.cspca is None and case.lesion is not None and not case.negative_without_lesion
    code, lines, _ = check(capsys, cohort_copy)
    assert code == 0
    assert (f"warning: case {cid}: {marksheet}: line 2: the csPCa cell is empty but the lesion label "
            f"({case.lesion}) has a lesion: treated as csPCa-positive (the label wins)") in lines
    assert load_case(case).cspca is True


def test_a_manifest_with_an_unparseable_cspca(capsys, tmp_path):
    manifest = synthesize_cohort(tmp_path / "m", cases=2, seed=1, layout="manifest", show_progress=False)
    manifest.write_text(manifest.read_text(encoding="utf-8").replace(",yes", ",maybe").replace(",no", ",maybe"),
                        encoding="utf-8")
    code, _, err = check(capsys, manifest)
    assert code == 2 and err.strip() == (f"adunet check: error: {manifest}: line 2: cspca 'maybe' is not YES or NO "
                                         "(leave the cell empty when it is unknown)")


# -- too few slices ------------------------------------------------------------------------------------------

def test_a_t2w_with_too_few_slices_is_an_error_naming_case_and_file(capsys, cohort_copy):
    case = next(c for c in open_dataset(cohort_copy).cases if c.lesion is not None)
    zz = np.nonzero(read_image(case.zones).array)[0]
    for path in (case.images["t2w"], case.lesion, case.zones, case.gland):  # the T2W grid and its masks
        image = read_image(path)
        g = image.geometry
        two = crop(image, CropBox((0, 0, int(zz.mean())), (g.size[0], g.size[1], 2), g))
        Path(path).unlink()
        write_image(two, path)
    code, lines, _ = check(capsys, cohort_copy)
    assert code == 1
    message = f"t2w has 2 slice(s); the pipeline needs at least {MIN_T2W_SLICES}"
    assert f"error: case {case.case_id}: {case.images['t2w']}: {message}" in lines
    with pytest.raises(CaseError, match=re.escape(message)):
        load_case(open_dataset(cohort_copy)[case.case_id])
