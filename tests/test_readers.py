import shutil

import numpy as np
import pytest

from adunet_lib.data import load_case, open_dataset, read_manifest, read_picai
from adunet_lib.data.image import write_image
from adunet_lib.errors import CaseError, DatasetError


def test_picai_reader_loads_the_three_real_studies(realdata):
    ds = read_picai(realdata)
    assert ds.case_ids == ["10795_1000811", "11373_1001396", "px0218_0218"]
    pos = load_case(ds["11373_1001396"])
    neg = load_case(ds["10795_1000811"])
    assert pos.cspca is True and neg.cspca is False  # from the marksheet
    assert pos.lesion.array.any() and set(np.unique(pos.lesion.array)) == {0, 1}  # ISUP 3 binarised
    assert not neg.lesion.array.any()
    assert set(np.unique(pos.zones.array)) == {0, 1, 2}
    # masks are put on the T2W grid exactly despite ~2e-4 direction differences in the files
    assert pos.lesion.geometry == pos.t2w.geometry
    # ADC/hbv keep their own coarser grid until preprocessing resamples them
    assert pos.images["adc"].spacing[0] == pytest.approx(2.0)


def test_unlabeled_real_study_still_loads(realdata):
    case = read_picai(realdata)["px0218_0218"]
    assert case.lesion is None and case.zones is None and case.gland is None and case.cspca is None
    loaded = load_case(case)
    assert loaded.lesion is None and loaded.gland is None
    assert loaded.t2w.shape == (20, 320, 320)
    with pytest.raises(CaseError, match="px0218_0218.*no gland mask"):
        load_case(case, require_masks=True)


def test_picai_reader_prefers_a_pinned_zonal_source(realdata):
    ds = read_picai(realdata, zonal_source="AI/Yuan23")
    assert "Yuan23" in str(ds["11373_1001396"].zones)


def test_synthetic_cohort_goes_through_the_picai_reader(synth_internal):
    ds = open_dataset(synth_internal)
    assert ds.layout == "picai" and len(ds) == 6
    loaded = load_case(ds.cases[0])
    assert loaded.gland is not None and loaded.zones is not None


def _as_prostate158(cohort, out):
    """Rewrite synthetic PI-CAI cases into the Prostate158 layout (1 = TZ, 2 = PZ; tumour on ADC grid)."""
    from adunet_lib.data.image import resample_to

    ds = read_picai(cohort)
    rows = []
    for case in ds.cases[:3]:
        folder = out / "train" / case.case_id
        folder.mkdir(parents=True)
        loaded = load_case(case)
        write_image(loaded.t2w, folder / "t2.nii.gz")
        write_image(loaded.images["adc"], folder / "adc.nii.gz")
        write_image(loaded.images["hbv"], folder / "dwi.nii.gz")
        z = loaded.zones.array
        write_image(loaded.zones.with_array(np.where(z == 1, 2, np.where(z == 2, 1, 0)).astype(np.uint8)),
                    folder / "t2_anatomy_reader1.nii.gz")
        if loaded.lesion.array.any():
            write_image(resample_to(loaded.lesion, loaded.images["adc"].geometry, "nearest"),
                        folder / "adc_tumor_reader1.nii.gz")
        rows.append(f"{case.case_id},train/{case.case_id}/t2.nii.gz")
    (out / "train.csv").write_text("ID,t2\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return ds


def test_prostate158_layout_remaps_zones_and_resamples_tumours(synth_internal, tmp_path):
    source = _as_prostate158(synth_internal, tmp_path / "p158")
    ds = open_dataset(tmp_path / "p158")
    assert ds.layout == "prostate158" and len(ds) == 3
    assert any(c.lesion is not None for c in ds) and any(c.lesion is None for c in ds)
    for case in ds:
        original = load_case(source[case.case_id])
        loaded = load_case(case)
        np.testing.assert_array_equal(loaded.zones.array, original.zones.array)  # back to 1 = PZ, 2 = TZ
        assert loaded.cspca == bool(original.lesion.array.any())
        if case.lesion is None:  # no tumour file: a labelled negative, an all-zero mask on the T2W grid
            assert not original.lesion.array.any() and case.labeled
            assert loaded.lesion.geometry == loaded.t2w.geometry and not loaded.lesion.array.any()
        else:
            assert loaded.lesion.geometry == loaded.t2w.geometry
            overlap = (loaded.lesion.array & original.lesion.array).sum() / original.lesion.array.sum()
            assert overlap > 0.5  # the ADC-grid tumour lands on the same voxels after resampling


def test_manifest_reader_and_its_guards(synth_internal, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(synth_internal, root)
    ds = read_picai(root)
    lines = ["case_id,t2w,adc,hbv,lesion,zones,cspca"]
    for case in ds.cases[:2]:
        rel = {k: p.relative_to(root) for k, p in case.images.items()}
        lines.append(f"{case.case_id},{rel['t2w']},{rel['adc']},{rel['hbv']},{case.lesion.relative_to(root)},"
                     f"{case.zones.relative_to(root)},{'yes' if case.cspca else 'no'}")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    manifest = open_dataset(root / "manifest.csv")
    assert manifest.layout == "manifest" and manifest.case_ids == ds.case_ids[:2]
    assert load_case(manifest.cases[0]).zones is not None

    (root / "dupes.csv").write_text("\n".join(lines + [lines[1]]) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=f"duplicate case id.*{ds.case_ids[0]}"):
        read_manifest(root / "dupes.csv")
    (root / "escape.csv").write_text(lines[0] + "\nx,../../etc/passwd,a,b,,,\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="escapes the dataset root"):
        read_manifest(root / "escape.csv")


def test_unknown_layout_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="unknown dataset layout"):
        open_dataset(tmp_path)
