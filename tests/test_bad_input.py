"""The bad-input corpus: hospital-export problems, each a one-line error naming case and file,
a non-zero exit, and nothing half-written.

Each kind breaks a private copy of a synthetic cohort (or of the real shared studies), then runs
``adunet check`` (the CLI) and the preprocessing pipeline on it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from adunet_lib.cli import main
from adunet_lib.data import open_dataset
from adunet_lib.data.image import Geometry, Image, read_image, write_image
from adunet_lib.errors import AdunetError
from adunet_lib.preprocessing.geometry import CropBox, crop
from adunet_lib.preprocessing.pipeline import PreprocessConfig, preprocess_dataset

def lesion_case(root: Path):
    """The first case with a lesion (its files wherever the layout's label sources put them)."""
    ds = open_dataset(root)
    return next(c for c in ds.cases if c.lesion is not None and read_image(c.lesion).array.any())


def first_case(root: Path) -> tuple[str, Path]:
    case = lesion_case(root)
    return case.case_id, Path(case.images["t2w"]).parent


def seq_file(root, seq):
    cid, folder = first_case(root)
    return cid, folder / f"{cid}_{seq}.mha"


def rewrite(path: Path, fn) -> None:
    image = read_image(path)
    out = fn(image)
    path.unlink()
    write_image(out, path)


# -- the kinds: each breaks ``root`` and returns (case_id, file that must be named, message regex) ----------

def missing_sequence(root):
    cid, path = seq_file(root, "hbv")
    path.unlink()
    return cid, path, "missing sequence hbv"


def sequence_twice(root):
    cid, path = seq_file(root, "t2w")
    write_image(read_image(path), path.with_name(f"{cid}_t2w.nii.gz"))
    return cid, path, "sequence t2w present 2 times"


def adc_outside_fov(root):
    cid, path = seq_file(root, "adc")
    rewrite(path, lambda im: Image(im.array, Geometry(im.geometry.size, im.spacing,
                                                       tuple(np.asarray(im.origin) + 400.0), im.direction)))
    return cid, path, "adc does not overlap the T2W field of view"


def label_grid_mismatch(root):
    case = lesion_case(root)
    cid, path = case.case_id, case.lesion
    rewrite(path, lambda im: Image(im.array, Geometry(im.geometry.size, (0.6, 0.6, 3.0), im.origin, im.direction)))
    return cid, path, r"lesion label grid differs from the T2W grid \(spacing"


def label_out_of_range(root):
    case = lesion_case(root)
    cid, path = case.case_id, case.lesion

    def bump(im):
        a = im.array.copy()
        a[a > 0] = 7
        return im.with_array(a)

    rewrite(path, bump)
    return cid, path, r"lesion label values outside 0\.\.5: \[7\]"


def nan_voxels(root):
    cid, path = seq_file(root, "adc")

    def nan(im):
        a = im.array.astype(np.float32)
        a[3, 10, 10:14] = np.nan
        return im.with_array(a)

    rewrite(path, nan)
    return cid, path, "adc: 4 NaN/Inf voxels"


def inf_voxels(root):
    cid, path = seq_file(root, "hbv")

    def inf(im):
        a = im.array.astype(np.float32)
        a[2, 5, 5] = np.inf
        return im.with_array(a)

    rewrite(path, inf)
    return cid, path, "hbv: 1 NaN/Inf voxels"


def all_zero_image(root):
    cid, path = seq_file(root, "t2w")
    rewrite(path, lambda im: im.with_array(np.zeros_like(im.array)))
    return cid, path, "t2w image is all zeros"


def dwi_4d(root):
    cid, path = seq_file(root, "hbv")
    vol = read_image(path).array
    path.unlink()
    sitk.WriteImage(sitk.GetImageFromArray(np.stack([vol, vol // 2]), isVector=False), str(path))
    return cid, path, "hbv: expected a 3D image, found 4D"


def truncated_mha(root):
    cid, path = seq_file(root, "t2w")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    return cid, path, r"t2w: corrupt or unreadable image \(truncated or damaged file"


def corrupt_nifti(root):
    case = lesion_case(root)
    cid, path = case.case_id, case.zones
    path.write_bytes(b"\x1f\x8b this is not a gzip stream" * 10)
    return cid, path, r"zonal mask: corrupt or unreadable image \(not a recognised image format"


def empty_gland_mask(root):
    case = lesion_case(root)
    for path in (case.zones, case.gland):
        rewrite(path, lambda im: im.with_array(np.zeros_like(im.array)))
    return case.case_id, case.zones, "gland mask is empty"


def write_dicom_series(image: Image, folder: Path) -> Path:
    """One DICOM file per slice, with position and orientation tags (as a scanner export)."""
    folder.mkdir(parents=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    vol = image.to_sitk()
    orientation = (*image.direction[0::3], *image.direction[1::3])
    for k in range(vol.GetDepth()):
        sl = sitk.Cast(vol[:, :, k], sitk.sitkUInt16)  # cast first: Cast drops metadata
        sl.SetDirection((1, 0, 0, 1))  # the 3D orientation travels in the DICOM tags below
        origin = vol.TransformIndexToPhysicalPoint((0, 0, k))
        for tag, value in (("0020|0032", "\\".join(f"{v:.4f}" for v in origin)),
                           ("0020|0037", "\\".join(f"{v:.6f}" for v in orientation)),
                           ("0020|0013", str(k)), ("0008|0060", "MR"), ("0020|000e", "1.2.3.4.5"),
                           ("0020|000d", "1.2.3.4"), ("0028|0030", f"{image.spacing[1]}\\{image.spacing[0]}")):
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice_{k:03d}.dcm"))
        writer.Execute(sl)
    return folder


def missing_slice(root):
    """A T2W DICOM series with one slice missing, listed in a manifest."""
    cid, t2w = seq_file(root, "t2w")
    folder = write_dicom_series(read_image(t2w), root / "dicom" / cid)
    (folder / "slice_005.dcm").unlink()
    ds = open_dataset(root)
    case = ds[cid]
    rel = lambda p: Path(p).relative_to(root)  # noqa: E731
    (root / "manifest.csv").write_text(
        "case_id,t2w,adc,hbv,lesion,zones\n"
        f"{cid},{rel(folder)},{rel(case.images['adc'])},{rel(case.images['hbv'])},{rel(case.lesion)},{rel(case.zones)}\n", encoding="utf-8")
    return cid, folder, r"non-uniform slice spacing \(missing slice\?\)"


def test_a_complete_dicom_series_reads_like_the_file_it_came_from(cohort_copy, tmp_path):
    from adunet_lib.data.case import read_case_image

    _, t2w = seq_file(cohort_copy, "t2w")
    image = read_image(t2w)
    series = read_case_image("x", write_dicom_series(image, tmp_path / "series"), "t2w")
    assert series.geometry.same_as(image.geometry)
    np.testing.assert_array_equal(series.array, image.array)


KINDS = [missing_sequence, sequence_twice, adc_outside_fov, label_grid_mismatch, label_out_of_range, nan_voxels,
         inf_voxels, all_zero_image, dwi_4d, truncated_mha, corrupt_nifti, empty_gland_mask, missing_slice]


def _dataset_path(root: Path) -> Path:
    return root / "manifest.csv" if (root / "manifest.csv").is_file() else root


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
def test_each_kind_is_named_with_case_and_file(kind, cohort_copy, tmp_path, capsys):
    case_id, path, message = kind(cohort_copy)
    dataset = _dataset_path(cohort_copy)
    before = {p: p.stat().st_mtime_ns for p in cohort_copy.rglob("*") if p.is_file()}

    # the CLI: non-zero exit, one line that names case, file and problem
    code = main(["check", str(dataset), "--quiet"])
    text = capsys.readouterr()
    lines = [ln for ln in (text.out + text.err).splitlines() if re.search(message, ln)]
    assert code == 1, text.out
    assert lines and f"case {case_id}" in lines[0] and str(path) in lines[0]

    # the pipeline: the same one-line error, and nothing half-written for anyone
    out = tmp_path / "pre"
    ds = open_dataset(dataset)
    with pytest.raises(AdunetError) as info:
        preprocess_dataset([ds[case_id]], out, PreprocessConfig(slice_size=32), show_progress=False)
    assert re.search(message, str(info.value)) and case_id in str(info.value) and "\n" not in str(info.value)
    assert not out.exists() or not any(out.iterdir())
    # inputs untouched
    assert before == {p: p.stat().st_mtime_ns for p in cohort_copy.rglob("*") if p.is_file()}


def test_lesion_outside_the_gland_warns_and_goes_on(cohort_copy, tmp_path, capsys):
    case = lesion_case(cohort_copy)
    cid, path = case.case_id, case.lesion

    def outside(im):
        a = im.array.copy()
        a[0, :3, :3] = 3  # a corner of the field of view, far from the prostate
        return im.with_array(a)

    rewrite(path, outside)
    assert main(["check", str(cohort_copy), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"warning: case {cid}: {path}: 9 of" in out and "outside the gland mask" in out
    with pytest.warns(UserWarning, match=f"case {cid}.*outside the gland"):
        done, _ = preprocess_dataset([open_dataset(cohort_copy)[cid]], tmp_path, PreprocessConfig(slice_size=32),
                                     show_progress=False)
    assert done == [cid] and (tmp_path / f"{cid}.npz").is_file()


def test_image_smaller_than_the_crop_box(cohort_copy, tmp_path):
    cid, folder = first_case(cohort_copy)
    case = open_dataset(cohort_copy)[cid]
    t2w = read_image(case.images["t2w"])
    gland = read_image(case.zones).array > 0
    _, yy, xx = np.nonzero(gland)
    box = CropBox((int(xx.min()) - 2, int(yy.min()) - 2, 0),
                  (int(xx.max() - xx.min()) + 5, int(yy.max() - yy.min()) + 5, t2w.geometry.size[2]), t2w.geometry)
    for path in (case.images["t2w"], case.lesion, case.zones, case.gland):
        image = read_image(path)
        small = crop(image, CropBox(box.start, box.size, image.geometry))  # a field of view just around the gland
        Path(path).unlink()
        write_image(small, path)
    with pytest.raises(AdunetError, match=rf"case {cid}: .*_t2w.mha: image \(.*\) is smaller than the crop box"):
        preprocess_dataset([open_dataset(cohort_copy)[cid]], tmp_path, PreprocessConfig(slice_size=32, crop_margin_mm=8),
                           show_progress=False)


def test_duplicate_case_ids_and_escaping_paths_in_a_manifest(cohort_copy, capsys):
    ds = open_dataset(cohort_copy)
    case = ds.cases[0]
    rel = {k: Path(p).relative_to(cohort_copy) for k, p in case.images.items()}
    row = f"{case.case_id},{rel['t2w']},{rel['adc']},{rel['hbv']}"
    (cohort_copy / "dupes.csv").write_text(f"case_id,t2w,adc,hbv\n{row}\n{row}\n", encoding="utf-8")
    assert main(["check", str(cohort_copy / "dupes.csv"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"dupes.csv: duplicate case id(s) {case.case_id}" in err and len(err.strip().splitlines()) == 1
    (cohort_copy / "escape.csv").write_text(f"case_id,t2w,adc,hbv\nx,../../{rel['t2w']},{rel['adc']},{rel['hbv']}\n", encoding="utf-8")
    assert main(["check", str(cohort_copy / "escape.csv"), "--quiet"]) == 2
    assert "escapes the dataset root" in capsys.readouterr().err


def test_real_study_copy_with_a_corrupt_hbv(realdata_copy, capsys):
    path = realdata_copy / "images/11373/11373_1001396_hbv.mha"
    path.write_bytes(path.read_bytes()[:2000])
    assert main(["check", str(realdata_copy), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert f"error: case 11373_1001396: {path}: hbv: corrupt or unreadable image" in out


def test_params_with_an_unknown_key_or_a_wrong_type(tmp_path, capsys):
    for body, message in (("preprocessing:\n  slice_size: 64\n  crop_margn_mm: 3\n", "unknown key preprocessing.crop_margn_mm"),
                          ("segmentation:\n  epochs: ten\n", "key segmentation.epochs must be int, got str 'ten'")):
        path = tmp_path / "p.yaml"
        path.write_text(f"common:\n  run_dir: {tmp_path / 'run'}\n" + body, encoding="utf-8")
        assert main(["reproduce", str(path)]) == 2
        err = capsys.readouterr().err
        assert message in err and "p.yaml" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_run_refuses_to_write_into_its_input_folder(cohort_copy):
    from adunet_lib.run_folder import RunContext

    with pytest.raises(AdunetError, match="lies inside the input data"):
        RunContext.create(cohort_copy / "runs" / "x", cohort_copy.parent / "figs", inputs=(str(cohort_copy),))
    with pytest.raises(AdunetError, match="or holds it"):  # a folder that holds the data is refused too
        RunContext.create(cohort_copy.parent, cohort_copy.parent / "figs", inputs=(str(cohort_copy),))


@pytest.mark.parametrize("key, value, why", [
    ("run_dir", ".", "is the project folder"),
    ("run_dir", "..", "is the project folder"),
    ("run_dir", "/", "is the file-system root"),
    ("run_dir", "~", "is your home folder"),
    ("run_dir", "notebooks", "lies in the project's own notebooks/ folder"),
    ("figure_dir", "params", "lies in the project's own params/ folder"),
    ("figure_dir", "adunet_lib/figs", "lies in the project's own adunet_lib/ folder"),
])
def test_a_run_or_figure_folder_that_would_overwrite_the_project_is_refused_before_anything_runs(
        tmp_path, capsys, key, value, why):
    """``run_dir: "."`` used to overwrite a committed notebook: now one line, exit 2, nothing written."""
    from adunet_lib.cli import main
    from conftest import REPO

    before = {p: p.stat().st_mtime_ns for p in (REPO / "notebooks").iterdir()}
    other = {"run_dir": str(tmp_path / "run"), "figure_dir": str(tmp_path / "figs")}
    other[key] = value
    path = tmp_path / "p.yaml"
    path.write_text("common:\n" + "".join(f"  {k}: '{v}'\n" for k, v in other.items()), encoding="utf-8")
    assert main(["reproduce", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{key}: {value} {why}" in err
    assert {p: p.stat().st_mtime_ns for p in (REPO / "notebooks").iterdir()} == before
    assert not (tmp_path / "run").exists() and not (tmp_path / "figs").exists()
