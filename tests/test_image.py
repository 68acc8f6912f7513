import numpy as np
import pytest
from conftest import make_image

from adunet_lib.data.image import Geometry, read_geometry, read_image, write_image


@pytest.mark.parametrize("suffix", [".mha", ".nii.gz"])
def test_geometry_and_voxels_round_trip_exactly(tmp_path, suffix):
    image = make_image(spacing=(0.4, 0.55, 3.3), origin=(-101.25, 37.5, -12.125), tilt_deg=11.0)
    path = write_image(image, tmp_path / f"img{suffix}")
    back = read_image(path)
    np.testing.assert_array_equal(back.array, image.array)
    # .mha keeps doubles; NIfTI stores float32 geometry: both must be within a rounding error
    tol = 1e-12 if suffix == ".mha" else 1e-5
    np.testing.assert_allclose(back.spacing, image.spacing, atol=tol)
    np.testing.assert_allclose(back.origin, image.origin, atol=tol * 100)
    np.testing.assert_allclose(back.direction, image.direction, atol=tol)
    assert read_geometry(path).same_as(image.geometry)


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path):
    write_image(make_image(), tmp_path / "a.mha")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mha"]


def test_geometry_tolerance_accepts_rounding_but_not_real_shifts():
    g = make_image().geometry
    rounded = Geometry(g.size, g.spacing, g.origin, tuple(np.asarray(g.direction) + 2e-4))
    shifted = Geometry(g.size, g.spacing, tuple(np.asarray(g.origin) + (0.0, 0.0, 1.5)), g.direction)
    assert g.same_as(rounded)
    assert not g.same_as(shifted)
    assert "origin" in g.differences(shifted)[0]


def test_four_dimensional_images_are_refused(tmp_path):
    import SimpleITK as sitk

    array = np.zeros((3, 4, 5, 6), np.float32)
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=False), str(tmp_path / "dwi4d.mha"))
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=True), str(tmp_path / "dwi_vector.mha"))
    with pytest.raises(ValueError, match="expected a 3D image, found 4D"):
        read_image(tmp_path / "dwi4d.mha")
    with pytest.raises(ValueError, match="multi-b-value"):
        read_image(tmp_path / "dwi_vector.mha")
