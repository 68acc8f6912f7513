import dataclasses
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image
from scipy.ndimage import binary_dilation

from adunet_lib.data import load_case, open_dataset, read_picai
from adunet_lib.data.image import resample_to
from adunet_lib.errors import AdunetError, CaseError
from adunet_lib.preprocessing.geometry import CropBox, crop, gland_box, slice_grid, uncrop
from adunet_lib.preprocessing.pipeline import (PreprocessConfig, PreprocessedCase, assign_folds, preprocess_case,
                                               preprocess_dataset, slice_table)


def test_crop_then_uncrop_gives_back_the_original_grid_and_voxels():
    image = make_image(shape=(8, 30, 40))
    box = CropBox(start=(5, 7, 2), size=(20, 15, 4), reference=image.geometry)
    cropped = crop(image, box)
    # the crop stays where it was in physical space
    assert np.allclose(cropped.origin, image.geometry.index_to_physical((5, 7, 2)))
    back = uncrop(cropped, box)
    assert back.geometry == image.geometry
    np.testing.assert_array_equal(back.array[box.slices()], image.array[box.slices()])
    assert not back.array[:2].any()  # outside the box: fill value


def test_slice_grid_resampling_is_undone_by_resampling_back():
    image = make_image(shape=(4, 40, 40), spacing=(0.5, 0.5, 3.0))
    smooth = image.with_array(np.broadcast_to(np.linspace(0, 1, 40)[None, None, :], image.shape).astype(np.float32).copy())
    box = CropBox((4, 4, 0), (32, 32, 4), image.geometry)
    grid = slice_grid(box, 16)
    assert grid.size == (16, 16, 4) and grid.spacing[0] == pytest.approx(1.0)
    down = resample_to(smooth, grid)
    up = resample_to(down, image.geometry)
    inner = (slice(None), slice(8, 32), slice(8, 32))
    np.testing.assert_allclose(up.array[inner], smooth.array[inner], atol=0.02)


def test_gland_box_is_square_in_mm_and_refuses_too_small_images():
    gland = make_image(shape=(6, 60, 60), spacing=(0.5, 0.5, 3.0)).with_array(np.zeros((6, 60, 60), np.uint8))
    gland.array[2:4, 20:30, 25:45] = 1
    box = gland_box(gland, margin_mm=2.0)
    assert box.size[0] == box.size[1] == 28  # 20 voxels + 2 × 4 voxels margin
    assert (box.start[2], box.size[2]) == (2, 2)
    with pytest.raises(ValueError, match="smaller than the crop box"):
        gland_box(gland, margin_mm=20.0)


@pytest.fixture(scope="module")
def preprocessed(synth_internal, tmp_path_factory):
    out = tmp_path_factory.mktemp("pre")
    ds = open_dataset(synth_internal)
    done, skipped = preprocess_dataset(ds.cases, out, PreprocessConfig(slice_size=32), show_progress=False)
    assert not skipped and done == ds.case_ids
    return ds, out


def test_preprocessed_slices_are_normalised_masked_and_labelled(preprocessed):
    ds, out = preprocessed
    for case_id in ds.case_ids:
        pre = PreprocessedCase.load(out, case_id)
        images, gland = pre.stack("cropped").images, pre.stack("cropped").gland
        assert images.shape == (3, pre.n_slices, 32, 32) and images.dtype == np.float32
        assert images.min() >= 0 and images.max() <= 1
        assert not images[:, gland == 0].any()  # background outside the gland is masked
        assert pre.stack("full").images[:, gland == 0].any()  # full mode keeps the surroundings
        table = slice_table(pre, "internal", "train")
        assert (table["label"] == "lesion").any() == bool(pre.stack("cropped").lesion.any())
        # each slice's T2W index is where the lesion really is
        raw = load_case(ds[case_id])
        for _, row in table[table["label"] == "lesion"].iterrows():
            assert raw.lesion.array[row["z"]].any()


def test_volume_on_slice_grid_goes_back_to_the_t2w_domain(preprocessed):
    ds, out = preprocessed
    pre = PreprocessedCase.load(out, ds.case_ids[0])
    back = pre.to_t2w(pre.stack("cropped").images[0])
    raw = load_case(ds[pre.case_id])
    assert back.geometry == raw.t2w.geometry
    assert not back.array[raw.gland.array == 0].any()
    # the lesion drawn on the slice grid lands on the lesion in the T2W grid
    if pre.stack("cropped").lesion.any():
        lesion_back = pre.to_t2w(pre.stack("cropped").lesion.astype(np.float32)).array > 0.5
        overlap = (lesion_back & (raw.lesion.array > 0)).sum() / max(lesion_back.sum(), 1)
        assert overlap > 0.6


def test_forward_and_inverse_sit_side_by_side(preprocessed):
    """to_slices (T2W grid → slice grid) and to_t2w (back) agree, and the gland pastes back exactly."""
    ds, out = preprocessed
    pre = PreprocessedCase.load(out, ds.case_ids[0])
    raw = load_case(ds[pre.case_id])
    assert np.array_equal(pre.gland_on_t2w().array > 0, raw.gland.array > 0)
    t2w_slices = pre.to_slices(raw.t2w)
    assert t2w_slices.shape == pre.stack("cropped").grid.shape
    back = pre.to_t2w(t2w_slices, mask=True).array
    inside = raw.gland.array > 0
    correlation = np.corrcoef(back[inside], raw.t2w.array[inside])[0, 1]
    assert correlation > 0.8  # a round trip through 32² slices keeps the anatomy


def test_resumes_without_redoing_cases(preprocessed):
    ds, out = preprocessed
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npz")}
    preprocess_dataset(ds.cases, out, PreprocessConfig(slice_size=32), show_progress=False)
    assert before == {p.name: p.stat().st_mtime_ns for p in out.glob("*.npz")}


def test_a_changed_source_file_redoes_that_case_only(synth_internal, tmp_path):
    import shutil

    from adunet_lib.data.image import read_image, write_image

    data = Path(shutil.copytree(synth_internal, tmp_path / "data"))
    out = tmp_path / "pre"
    ds = open_dataset(data)
    preprocess_dataset(ds.cases, out, PreprocessConfig(slice_size=32), show_progress=False)
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npz")}
    case = next(c for c in ds.cases if c.lesion is not None)
    write_image(read_image(case.lesion), case.lesion)  # a corrected label: same grid, rewritten file
    preprocess_dataset(open_dataset(data).cases, out, PreprocessConfig(slice_size=32), show_progress=False)
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npz")}
    assert [n for n in after if after[n] != before[n]] == [f"{case.case_id}.npz"]


@pytest.mark.parametrize("reference, moves", [("gland", True), ("field_of_view", False)])
def test_whether_a_brighter_lesion_changes_how_the_healthy_gland_looks(synth_internal, reference, moves):
    """#15: with gland percentiles a bright DWI lesion sets the 99.5th percentile and darkens the case's
    healthy tissue (the FP-GAN's classifier could tell lesion slices by that alone); over the field of
    view a lesion is too small a share to set the scale."""
    ds = open_dataset(synth_internal)
    loaded = load_case(next(c for c in ds.cases if c.lesion is not None and c.gland is not None))
    hbv = loaded.images["hbv"]
    on_hbv = resample_to(loaded.lesion, hbv.geometry, "nearest").array > 0
    assert on_hbv.any()
    brighter = dataclasses.replace(loaded, images=loaded.images | {
        "hbv": hbv.with_array(np.where(on_hbv, hbv.array * 3, hbv.array).astype(np.float32))})
    config = PreprocessConfig(slice_size=32, intensity_reference=reference)
    stacks = [preprocess_case(case, config, modes=("cropped",)).stack("cropped") for case in (loaded, brighter)]
    healthy = (stacks[0].gland > 0) & (stacks[0].lesion == 0)
    # away from the lesion, so that the resampled lesion's own voxels do not count
    healthy &= ~binary_dilation(stacks[0].lesion > 0, iterations=3)
    before, after = (st.sequence("hbv")[healthy].mean() for st in stacks)
    if moves:
        assert after < 0.8 * before
    else:
        assert after == pytest.approx(before, rel=0.02)
    # the other sequences are untouched either way
    np.testing.assert_array_equal(stacks[0].sequence("adc"), stacks[1].sequence("adc"))


def test_an_unknown_intensity_reference_is_refused_by_name():
    with pytest.raises(AdunetError, match="intensity_reference must be one of gland, field_of_view, not 'body'"):
        PreprocessConfig(intensity_reference="body")


def test_folds_are_stratified_balanced_and_deterministic():
    cases = [(f"c{i}", i % 3 == 0) for i in range(21)]
    a, b = assign_folds(cases, 3, seed=1), assign_folds(cases, 3, seed=1)
    assert a == b and a != assign_folds(cases, 3, seed=2)
    for fold in range(3):
        members = [cid for cid, f in a.items() if f == fold]
        assert len(members) == 7
        assert sum(int(c[1:]) % 3 == 0 for c in members) in (2, 3)  # 7 positives spread over 3 folds


def test_real_studies_preprocess_and_px0218_names_the_missing_mask(realdata, tmp_path):
    ds = read_picai(realdata)
    done, skipped = preprocess_dataset(ds.cases, tmp_path, PreprocessConfig(slice_size=64), on_error="skip",
                                       show_progress=False)
    assert done == ["10795_1000811", "11373_1001396"]
    assert len(skipped) == 1 and skipped[0][0] == "px0218_0218"
    assert "no gland mask" in skipped[0][1] and "px0218_0218_t2w.mha" in skipped[0][1]
    pre = PreprocessedCase.load(tmp_path, "11373_1001396")
    assert pre.stack("cropped").lesion.any()
    assert pre.to_t2w(pre.stack("cropped").images[1]).geometry.same_as(load_case(ds["11373_1001396"]).t2w.geometry)
    with pytest.raises(CaseError, match="px0218_0218"):
        preprocess_dataset([ds["px0218_0218"]], tmp_path / "strict", show_progress=False)


def test_more_folds_than_patients_stops_with_the_numbers_before_and_after_skipped_cases(realdata, tmp_path):
    from adunet_lib.preprocessing.stage import preprocess_sets
    from adunet_lib.run_folder import RunContext

    ctx = RunContext.create(tmp_path / "run", tmp_path / "figures", seed=0)
    datasets = {"internal": read_picai(realdata)}
    with pytest.raises(AdunetError) as caught:  # the three real studies are three patients
        preprocess_sets(ctx, datasets, PreprocessConfig(slice_size=32), n_folds=5, show_progress=False)
    assert str(caught.value) == (f"n_folds = 5 but the internal set {realdata} has 3 patient(s); folds go by patient, "
                                 "so set n_folds to at most 3")
    assert not ctx.cases_table.exists() and not any(ctx.preprocessed_dir("internal").glob("*"))
    # px0218 has no gland mask: skipped, two patients remain for three folds
    with pytest.raises(AdunetError, match=r"^n_folds = 3 but the internal set .* has 2 patient\(s\) left after 1 "
                                          r"skipped case\(s\); folds go by patient, so set n_folds to at most 2$"):
        preprocess_sets(ctx, datasets, PreprocessConfig(slice_size=32), n_folds=3, on_error="skip", show_progress=False)
    assert not ctx.cases_table.exists() and not ctx.splits.exists()
