"""Anomaly maps: geometry of the original T2W domain, masking, slice order, the blur, map quality."""

import numpy as np
import pytest

from adunet_lib.anomaly_maps.maps import blur, case_maps
from adunet_lib.anomaly_maps.quality import quality_table, voxel_quality
from adunet_lib.data import load_case, open_dataset, read_picai
from adunet_lib.preprocessing.pipeline import PreprocessConfig, PreprocessedCase, preprocess_dataset


def test_blur_is_a_normalised_box_filter_of_the_given_size():
    impulse = np.zeros((1, 32, 32), np.float32)
    impulse[0, 16, 16] = 64.0
    out = blur(impulse, 8)
    assert out.sum() == pytest.approx(64.0)
    assert np.count_nonzero(out) == 64 and out.max() == pytest.approx(1.0)  # 8 × 8 pixels of 64 / 64
    flat = np.full((2, 16, 16), 0.3, np.float32)
    np.testing.assert_allclose(blur(flat, 8), flat, atol=1e-6)
    assert blur(impulse, 1) is not impulse and np.array_equal(blur(impulse, 1), impulse)


@pytest.fixture(scope="module")
def synthetic_pre(synth_internal, tmp_path_factory):
    out = tmp_path_factory.mktemp("pre_maps")
    ds = open_dataset(synth_internal)
    preprocess_dataset(ds.cases, out, PreprocessConfig(slice_size=32), show_progress=False)
    return ds, out


def _lesion_case(ds, out):
    for cid in ds.case_ids:
        pre = PreprocessedCase.load(out, cid)
        if pre.stack("cropped").lesion.any():
            return pre
    raise AssertionError("no lesion case in the fixture cohort")


def test_maps_live_on_the_t2w_grid_and_are_zero_outside_the_gland(synthetic_pre):
    ds, out = synthetic_pre
    pre = _lesion_case(ds, out)
    fake = pre.stack("cropped").images * 0.5  # a "reconstruction" that halves everything: residual everywhere
    maps = case_maps(pre, fake, kernel_size=4)
    raw = load_case(ds[pre.case_id])
    for seq, image in maps.items():
        assert image.geometry == raw.t2w.geometry, seq
        assert not image.array[raw.gland.array == 0].any(), seq
        assert image.array[raw.gland.array > 0].mean() > 0.05


def test_a_lesion_in_slice_k_lights_up_slice_k_of_the_map(synthetic_pre):
    ds, out = synthetic_pre
    pre = _lesion_case(ds, out)
    gland = pre.stack("cropped").gland
    k = int(np.flatnonzero(gland.reshape(len(gland), -1).any(1))[1])
    recon = pre.stack("cropped").images.copy()
    recon[:, k] = np.clip(recon[:, k] + 0.5 * gland[k], 0, 1)  # G differs from x only in slice k
    adc_map = case_maps(pre, recon, kernel_size=4)["adc"].array
    lit = np.flatnonzero(adc_map.reshape(adc_map.shape[0], -1).max(1) > 0.05)
    assert lit.tolist() == [int(pre.slice_indices[k])]


def test_maps_for_the_real_studies_match_their_t2w_geometry(realdata, tmp_path):
    ds = read_picai(realdata)
    preprocess_dataset(ds.cases[:2], tmp_path, PreprocessConfig(slice_size=32), show_progress=False)
    for cid in ds.case_ids[:2]:
        pre = PreprocessedCase.load(tmp_path, cid)
        maps = case_maps(pre, np.zeros_like(pre.stack("cropped").images), kernel_size=4)
        raw = load_case(ds[cid])
        # same size, spacing, origin and direction as the real T2W file (oblique, 0.5 × 0.5 × 3 mm)
        assert maps["t2w"].geometry == raw.t2w.geometry
        assert not maps["hbv"].array[raw.gland.array == 0].any()
        assert maps["adc"].array.any()


def test_voxel_quality_of_a_perfect_and_a_useless_map():
    rng = np.random.default_rng(0)
    truth = rng.random(5000) < 0.05
    perfect = voxel_quality(truth.astype(float) + rng.random(5000) * 0.1, truth)
    assert perfect["auroc"] == pytest.approx(1.0) and perfect["dice"] > 0.98
    noise = voxel_quality(rng.random(5000), truth)
    assert 0.4 < noise["auroc"] < 0.6 and noise["dice"] < 0.3


def test_the_test_dice_uses_the_validation_threshold():
    truth = np.r_[np.ones(10, bool), np.zeros(90, bool)]
    val_values = np.r_[np.full(10, 0.8), np.full(90, 0.1)]
    test_values = np.r_[np.full(10, 0.5), np.full(90, 0.1)]  # lesions weaker: below the val threshold
    zones = np.ones(100, np.uint8)
    table = quality_table([
        {"model": "m", "sequence": "adc", "set": "val", "values": val_values, "lesion": truth, "zones": zones},
        {"model": "m", "sequence": "adc", "set": "test", "values": test_values, "lesion": truth, "zones": zones},
    ]).set_index(["zone", "set"])
    assert table.loc[("gland", "val"), "dice"] == pytest.approx(1.0)
    assert table.loc[("gland", "test"), "auroc"] == pytest.approx(1.0)
    assert table.loc[("gland", "test"), "dice"] == pytest.approx(0.0)  # same threshold, honestly applied
    assert np.isnan(table.loc[("TZ", "val"), "auroc"])  # no TZ voxels at all
