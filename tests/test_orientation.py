"""Orientation (#14, item 7): every study is cropped and sliced in one canonical anatomical orientation,
and everything comes back on the study's own T2W grid.

A study written with its x (or y, or z) axis flipped — the same anatomy, every voxel at the same
physical position, only a different direction matrix — must give the same model slices and, with
the same model, the same anomaly maps (on its own grid, so equal after undoing the flip).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from adunet_lib.anomaly_maps.maps import case_maps
from adunet_lib.anomaly_models.registry import create
from adunet_lib.data import load_case, open_dataset
from adunet_lib.data.case import Case
from adunet_lib.data.image import Geometry, Image, read_image, write_image
from adunet_lib.preprocessing.geometry import (CANONICAL_ORIENTATION, CropBox, box_onto, canonical_geometry,
                                               canonical_orientation, crop, orientation_of, reorient, reorient_onto)
from adunet_lib.preprocessing.pipeline import PreprocessConfig, PreprocessedCase, preprocess_case, slice_table
from adunet_lib.vocabulary import SEQUENCES

SLICE_SIZE = 32
CONFIG = PreprocessConfig(slice_size=SLICE_SIZE)


# -- writing the same study with another direction matrix -------------------------------------------
def flip(image: Image, axis: int) -> Image:
    """Reverse index axis ``axis`` (0 = x, 1 = y, 2 = z): column negated, origin moved to the other
    end, so every voxel keeps its physical position."""
    d = np.asarray(image.direction).reshape(3, 3).copy()
    n, s = image.geometry.size[axis], image.spacing[axis]
    origin = np.asarray(image.origin) + d[:, axis] * (n - 1) * s
    d[:, axis] *= -1
    array = np.flip(image.array, axis=2 - axis)
    return Image(np.ascontiguousarray(array), Geometry(image.geometry.size, image.spacing, tuple(origin),
                                                       tuple(d.reshape(-1))))


def swap_xy(image: Image) -> Image:
    """Swap the in-plane index axes (a transposed in-plane direction): the same voxels, the same positions."""
    d = np.asarray(image.direction).reshape(3, 3)[:, [1, 0, 2]]
    size, spacing = image.geometry.size, image.spacing
    return Image(np.ascontiguousarray(image.array.transpose(0, 2, 1)),
                 Geometry((size[1], size[0], size[2]), (spacing[1], spacing[0], spacing[2]), image.origin,
                          tuple(d.reshape(-1))))


def rewrite_case(case: Case, folder: Path, transform) -> Case:
    """A copy of every file of ``case`` (sequences and masks) written through ``transform``."""
    folder.mkdir(parents=True, exist_ok=True)

    def moved(path: Path | None, name: str) -> Path | None:
        if path is None:
            return None
        return write_image(transform(read_image(path)), folder / f"{name}.mha")

    images = {seq: moved(path, seq) for seq, path in case.images.items()}
    return dataclasses.replace(case, images=images, expected=images, lesion=moved(case.lesion, "lesion"),
                               gland=moved(case.gland, "gland"), zones=moved(case.zones, "zones"))


# -- one model, maps for a case -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create("dense_ae", in_channels=3, image_size=SLICE_SIZE, config={"filters": (8, 16), "latent_dim": 8})


def reconstruct(model, images: np.ndarray) -> np.ndarray:
    """G(x) of a ``(3, n, S, S)`` stack."""
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(1, 0, 2, 3)))
    return model.reconstruct(x).numpy().transpose(1, 0, 2, 3)


def maps_of(model, pre: PreprocessedCase) -> dict[str, Image]:
    return case_maps(pre, reconstruct(model, pre.stack("cropped").images), kernel_size=4)


@pytest.fixture(scope="module")
def study(synth_internal):
    """A synthetic case with a lesion, and its preprocessing on its own (canonical, LPS) grid."""
    ds = open_dataset(synth_internal)
    for case_id in ds.case_ids:
        loaded = load_case(ds[case_id])
        if loaded.lesion is not None and loaded.lesion.array.any():
            return ds[case_id], preprocess_case(loaded, CONFIG)
    raise AssertionError("no lesion case in the fixture cohort")


def assert_same_slices(a: PreprocessedCase, b: PreprocessedCase) -> None:
    assert a.stacks.keys() == b.stacks.keys()
    for mode in a.stacks:
        sa, sb = a.stack(mode), b.stack(mode)
        assert sa.grid.same_as(sb.grid, tol=1e-9), (mode, sa.grid.differences(sb.grid, tol=1e-9))
        np.testing.assert_allclose(sa.images, sb.images, rtol=0, atol=1e-6, err_msg=mode)
        for name in ("gland", "zones", "lesion"):
            assert np.array_equal(getattr(sa, name), getattr(sb, name)), (mode, name)
        for seq in SEQUENCES:
            np.testing.assert_allclose(sa.norm[seq], sb.norm[seq], rtol=1e-6, err_msg=f"{mode} {seq}")


# -- the phantoms are already canonical ---------------------------------------------------------------
def test_the_phantoms_and_identity_directions_are_already_canonical(study):
    case, pre = study
    t2w = load_case(case).t2w
    assert CANONICAL_ORIENTATION == "LPS"
    assert orientation_of(t2w.geometry) == canonical_orientation(t2w.geometry) == CANONICAL_ORIENTATION
    assert reorient(t2w) is t2w  # a no-op: nothing is copied or moved
    assert canonical_geometry(t2w.geometry) == t2w.geometry
    assert pre.box.reference == t2w.geometry


# -- flipped studies: same slices, same maps, each on its own grid ------------------------------------
@pytest.mark.parametrize("axis", [0, 1, 2], ids=["x", "y", "z"])
def test_a_flipped_study_gives_the_same_slices_and_maps_on_its_own_grid(study, model, tmp_path, axis):
    case, pre = study
    flipped_case = rewrite_case(case, tmp_path / "flipped", lambda image: flip(image, axis))
    flipped_loaded = load_case(flipped_case)
    assert orientation_of(flipped_loaded.t2w.geometry) != CANONICAL_ORIENTATION
    flipped = preprocess_case(flipped_loaded, CONFIG)

    # (a) the models see the same slices
    assert_same_slices(pre, flipped)

    # the crop box is the same voxels, indexed on each study's own grid
    t2w = load_case(case).t2w
    assert flipped.box.size == pre.box.size
    assert np.array_equal(flip(pre.gland_on_t2w(), axis).array, flipped.gland_on_t2w().array)
    assert np.array_equal(np.flip(t2w.array, 2 - axis)[flipped.box.slices()], t2w.array[pre.box.slices()][
        tuple(slice(None, None, -1) if k == 2 - axis else slice(None) for k in range(3))])
    # slice k of the model is the same anatomical slice: its T2W index on each grid says so
    n_z = t2w.geometry.size[2]
    expected_z = (n_z - 1 - pre.slice_indices) if axis == 2 else pre.slice_indices
    assert np.array_equal(flipped.slice_indices, expected_z)
    table = slice_table(flipped, "internal", "train")
    for _, row in table[table["label"] == "lesion"].iterrows():
        assert flipped_loaded.lesion.array[row["z"]].any()

    # the stored case (npz + json) still knows its way back
    flipped.save(tmp_path)
    stored = PreprocessedCase.load(tmp_path, flipped.case_id)
    assert stored.box == flipped.box and stored.t2w_geometry == flipped.t2w_geometry

    # (b) + (c): the same model gives the same maps, each on its own T2W grid
    maps = maps_of(model, pre)
    flipped_maps = maps_of(model, stored)
    for seq in SEQUENCES:
        assert maps[seq].geometry == t2w.geometry, seq
        assert flipped_maps[seq].geometry == flipped_loaded.t2w.geometry, seq
        assert maps[seq].array.max() > 0.01, seq  # not trivially zero
        np.testing.assert_allclose(flip(flipped_maps[seq], axis).array, maps[seq].array, rtol=0, atol=1e-6,
                                   err_msg=seq)


def test_without_reorientation_the_model_would_see_other_slices(study, model):
    """The check above means something: the model is not flip-equivariant, so slices in another
    orientation would give another map."""
    _, pre = study
    images = pre.stack("cropped").images
    direct = reconstruct(model, images)
    via_flip = reconstruct(model, np.ascontiguousarray(images[..., ::-1]))[..., ::-1]
    gland = pre.stack("cropped").gland > 0
    assert np.abs(direct - via_flip)[:, gland].max() > 1e-3


# -- other direction matrices go through ----------------------------------------------------------------
@pytest.mark.parametrize("name, transform, orientation", [
    ("RAS", lambda image: flip(flip(image, 0), 1), "RAS"),
    ("transposed in-plane", swap_xy, "PLS"),
    ("RAS, transposed, feet first", lambda image: flip(swap_xy(flip(flip(image, 0), 1)), 2), "ARI"),
])
def test_permuted_and_opposite_directions_go_through(study, model, tmp_path, name, transform, orientation):
    case, pre = study
    other_case = rewrite_case(case, tmp_path / "other", transform)
    other_loaded = load_case(other_case)
    assert orientation_of(other_loaded.t2w.geometry) == orientation
    other = preprocess_case(other_loaded, CONFIG)
    assert_same_slices(pre, other)
    maps = maps_of(model, pre)
    other_maps = maps_of(model, other)
    for seq in SEQUENCES:
        assert other_maps[seq].geometry == other_loaded.t2w.geometry, seq
        # on the other grid the same voxels: bring both to the canonical grid to compare
        np.testing.assert_allclose(reorient(other_maps[seq]).array, maps[seq].array, rtol=0, atol=1e-6,
                                   err_msg=seq)
    assert np.array_equal(reorient(other.gland_on_t2w()).array, pre.gland_on_t2w().array)


# -- the geometry helpers -----------------------------------------------------------------------------
def _image(direction: np.ndarray, seed: int = 0) -> Image:
    rng = np.random.default_rng(seed)
    array = rng.random((5, 7, 9)).astype(np.float32)
    return Image(array, Geometry((9, 7, 5), (0.5, 0.7, 3.0), (-12.5, 4.25, 30.0), tuple(direction.reshape(-1))))


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


@pytest.mark.parametrize("seed", range(12))
def test_reorient_is_exact_and_reorient_onto_undoes_it(seed):
    """Any direction (oblique, permuted, left-handed): the canonical copy has the same voxels at the
    same places, the slice axis stays the through-plane axis, and the way back is bit for bit."""
    rng = np.random.default_rng(seed)
    image = _image(_rotation(rng), seed)
    canonical = reorient(image)
    assert orientation_of(canonical.geometry) == canonical_orientation(image.geometry)
    assert canonical.geometry == canonical_geometry(image.geometry)
    d0 = np.asarray(image.direction).reshape(3, 3)
    d1 = np.asarray(canonical.direction).reshape(3, 3)
    assert abs(abs(d0[:, 2] @ d1[:, 2]) - 1) < 1e-9  # the through-plane axis stays the slice axis
    assert canonical.geometry.size[2] == image.geometry.size[2]
    assert sorted(canonical.array.ravel().tolist()) == sorted(image.array.ravel().tolist())
    back = reorient_onto(canonical, image.geometry)
    assert back.geometry == image.geometry and np.array_equal(back.array, image.array)
    # a box found on the canonical grid covers the same voxels on the original grid
    box = CropBox((1, 2, 1), (3, 2, 3), canonical.geometry)
    moved = box_onto(box, image.geometry)
    on_original = crop(image, moved)
    assert np.array_equal(reorient_onto(crop(canonical, box), on_original.geometry).array, on_original.array)
    assert on_original.geometry.same_as(reorient(crop(canonical, box), orientation_of(image.geometry)).geometry)


def test_the_through_plane_axis_picks_the_canonical_order():
    axial = np.eye(3)
    sagittal = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], float)  # slices stacked left-right
    coronal = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0]], float)  # slices stacked front-back
    for direction, expected in ((axial, "LPS"), (-axial, "LPS"), (sagittal, "PSL"), (coronal, "LSP")):
        geometry = _image(direction).geometry
        assert canonical_orientation(geometry) == expected
    with pytest.raises(ValueError):
        reorient_onto(_image(np.eye(3)), _image(np.eye(3)[:, [1, 0, 2]]).geometry)
