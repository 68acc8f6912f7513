"""Invertible crops and reorientation. Geometry travels with the voxels (:class:`Image`; resampling
lives with that type: :func:`~adunet_lib.data.image.resample_to`).

A crop is a :class:`CropBox`: an index range on a reference grid (the case's T2W grid). Cropping
copies voxels and moves the origin; :func:`uncrop` pastes them back, so crop → uncrop is exact.
Model grids (fixed ``S × S`` slices) are ordinary :class:`Geometry` objects over the same physical
box, so going back to the original T2W domain is a plain :func:`~adunet_lib.data.image.resample_to`.

Before a case is cropped, its images are reoriented (:func:`reorient`: axes permuted / flipped, no
interpolation) to one anatomical orientation, :data:`CANONICAL_ORIENTATION`, so the crop and the
model slices do not depend on the direction matrix a scanner wrote; :func:`reorient_onto` and
:func:`box_onto` take an image or a box back onto the original grid exactly.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
import SimpleITK as sitk

from adunet_lib.data.image import Geometry, Image

#: The anatomical orientation every study is brought to before it is cropped and sliced, in DICOM
#: letters (where each index axis points: x → Left, y → Posterior, z → Superior). It is ITK's
#: identity direction, the orientation PI-CAI's scans and the synthetic phantoms are stored in, so
#: for them reorienting changes nothing. The slice axis stays the acquisition's through-plane axis
#: (see :func:`canonical_orientation`).
CANONICAL_ORIENTATION = "LPS"
_ANATOMICAL_AXIS = {"L": 0, "R": 0, "P": 1, "A": 1, "S": 2, "I": 2}


class CropError(ValueError):
    """The crop box cannot be placed in the image (e.g. the image is smaller than the box)."""


@dataclasses.dataclass(frozen=True)
class CropBox:
    """An index box ``[start, start + size)`` (x, y, z) on ``reference``.

    Example:
        >>> box = CropBox(start=(10, 12, 2), size=(32, 32, 8), reference=t2w.geometry)  # doctest: +SKIP
        >>> uncrop(crop(t2w, box), box).geometry == t2w.geometry  # doctest: +SKIP
        True
    """

    start: tuple[int, int, int]
    size: tuple[int, int, int]
    reference: Geometry

    @property
    def stop(self) -> tuple[int, int, int]:
        return tuple(a + b for a, b in zip(self.start, self.size))

    @property
    def geometry(self) -> Geometry:
        """The grid of the cropped image (same spacing and direction, moved origin)."""
        return Geometry(self.size, self.reference.spacing, self.reference.index_to_physical(self.start),
                        self.reference.direction)

    def slices(self) -> tuple[slice, slice, slice]:
        """Numpy index (z, y, x) of the box in an array on the reference grid."""
        (x0, y0, z0), (x1, y1, z1) = self.start, self.stop
        return slice(z0, z1), slice(y0, y1), slice(x0, x1)

    def to_dict(self) -> dict[str, Any]:
        return {"start": list(self.start), "size": list(self.size), "reference": self.reference.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CropBox:
        return cls(tuple(data["start"]), tuple(data["size"]), Geometry.from_dict(data["reference"]))


def crop(image: Image, box: CropBox) -> Image:
    """Copy the voxels inside ``box``; the result keeps its place in physical space."""
    if not image.geometry.same_as(box.reference):
        raise ValueError("crop: image is not on the box's reference grid")
    return Image(np.ascontiguousarray(image.array[box.slices()]), box.geometry)


def uncrop(image: Image, box: CropBox, fill: float = 0) -> Image:
    """Exact inverse of :func:`crop`: paste the voxels back into a ``fill``-valued reference grid."""
    if tuple(image.geometry.size) != tuple(box.size):
        raise ValueError(f"uncrop: image size {image.geometry.size} does not match box size {box.size}")
    out = np.full(box.reference.shape, fill, dtype=image.array.dtype)
    out[box.slices()] = image.array
    return Image(out, box.reference)


def gland_box(gland: Image, margin_mm: float = 10.0, square: bool = True, z_margin: int = 0) -> CropBox:
    """Bounding box of the gland with an in-plane margin, square in millimetres by default.

    The box covers the slices that contain gland (± ``z_margin``). A box that sticks out of the image
    is shifted inside it.

    Raises:
        CropError: when the mask is empty or the image is smaller than the box.
    """
    mask = gland.array > 0
    if not mask.any():
        raise CropError("gland mask is empty")
    zz, yy, xx = np.nonzero(mask)
    spacing = np.asarray(gland.spacing)
    lo = np.array([xx.min(), yy.min(), zz.min()], float)
    hi = np.array([xx.max(), yy.max(), zz.max()], float) + 1
    center = (lo + hi) / 2
    extent_mm = (hi - lo) * spacing
    extent_mm[:2] += 2 * margin_mm
    if square:
        extent_mm[:2] = extent_mm[:2].max()
    size = np.ceil(extent_mm / spacing).astype(int)
    size[2] = int(hi[2] - lo[2]) + 2 * z_margin
    start = np.round(center - size / 2).astype(int)
    start[2] = int(lo[2]) - z_margin
    image_size = np.asarray(gland.geometry.size)
    if np.any(size > image_size):
        axes = "".join("xyz"[i] for i in np.flatnonzero(size > image_size))
        raise CropError(f"image ({tuple(int(v) for v in image_size)} voxels) is smaller than the crop box "
                        f"({tuple(int(v) for v in size)} voxels) "
                        f"along {axes}: reduce crop_margin_mm")
    start = np.clip(start, 0, image_size - size)
    return CropBox(tuple(int(v) for v in start), tuple(int(v) for v in size), gland.geometry)


def slice_grid(box: CropBox, size: int) -> Geometry:
    """A grid over the same physical box with ``size × size`` voxels per slice and the box's slices.

    This is the grid the 2D models work on; :func:`~adunet_lib.data.image.resample_to` to ``box.reference``
    undoes it.
    """
    geo = box.geometry
    extent = np.asarray(geo.size[:2], float) * np.asarray(geo.spacing[:2])
    spacing = np.array([extent[0] / size, extent[1] / size, geo.spacing[2]])
    # keep the physical box: the first voxel centre moves by half the change of spacing
    shift = np.array([(spacing[0] - geo.spacing[0]) / 2, (spacing[1] - geo.spacing[1]) / 2, 0.0])
    d = np.asarray(geo.direction).reshape(3, 3)
    origin = np.asarray(geo.origin) + d @ shift
    return Geometry((size, size, geo.size[2]), spacing, origin, geo.direction)


def full_box(reference: Geometry, z_start: int, z_size: int) -> CropBox:
    """The whole in-plane field of view over slices ``[z_start, z_start + z_size)`` ("full image" mode)."""
    return CropBox((0, 0, z_start), (reference.size[0], reference.size[1], z_size), reference)


def orientation_of(geometry: Geometry) -> str:
    """The anatomical orientation closest to a grid's direction, in DICOM letters (``LPS``, ``RAS`` …)."""
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(geometry.direction)


def canonical_orientation(geometry: Geometry) -> str:
    """:data:`CANONICAL_ORIENTATION` with the grid's third (through-plane, slice) axis kept third:
    ``LPS`` for an axial acquisition, ``PSL`` for a sagittal and ``LSP`` for a coronal one."""
    through = _ANATOMICAL_AXIS[orientation_of(geometry)[2]]
    in_plane = "".join(c for c in CANONICAL_ORIENTATION if _ANATOMICAL_AXIS[c] != through)
    return in_plane + next(c for c in CANONICAL_ORIENTATION if _ANATOMICAL_AXIS[c] == through)


def reorient(image: Image, orientation: str | None = None) -> Image:
    """The same voxels with the axes permuted / flipped to ``orientation`` (default: the image's
    :func:`canonical_orientation`), SimpleITK's ``DICOMOrient``. Exact: no interpolation, every
    voxel keeps its value and its physical position. An image already so oriented comes back as is.

    Example:
        >>> np.array_equal(reorient_onto(reorient(t2w), t2w.geometry).array, t2w.array)  # doctest: +SKIP
        True
    """
    target = orientation or canonical_orientation(image.geometry)
    if orientation_of(image.geometry) == target:
        return image
    return Image.from_sitk(sitk.DICOMOrient(image.to_sitk(), target))


@functools.lru_cache(maxsize=256)
def canonical_geometry(geometry: Geometry) -> Geometry:
    """The grid of :func:`reorient` (canonical orientation) for an image on ``geometry``."""
    if orientation_of(geometry) == canonical_orientation(geometry):
        return geometry
    return reorient(Image(np.zeros(geometry.shape, np.uint8), geometry)).geometry


def reorient_onto(image: Image, reference: Geometry) -> Image:
    """Inverse of :func:`reorient`: an image on a reoriented copy of ``reference`` back on ``reference``
    itself (exact; the result carries ``reference`` bit for bit).

    Raises:
        ValueError: when ``image`` is not on a reorientation of ``reference``.
    """
    back = reorient(image, orientation_of(reference))
    if not back.geometry.same_as(reference):
        diff = "; ".join(back.geometry.differences(reference))
        raise ValueError(f"reorient_onto: the image is not on a reorientation of the reference grid ({diff})")
    return Image(back.array, reference)


def box_onto(box: CropBox, reference: Geometry) -> CropBox:
    """The voxels of ``box`` as a box on ``reference``, a reorientation of ``box.reference`` (axes
    permuted / flipped: the same voxels, indexed differently)."""
    if box.reference == reference:
        return box
    d = np.asarray(reference.direction).reshape(3, 3)
    corners = [box.reference.index_to_physical(c) for c in (box.start, tuple(v - 1 for v in box.stop))]
    index = [np.rint(np.linalg.solve(d, np.subtract(p, reference.origin)) / np.asarray(reference.spacing))
             for p in corners]
    lo, hi = np.minimum(*index).astype(int), np.maximum(*index).astype(int) + 1
    return CropBox(tuple(int(v) for v in lo), tuple(int(v) for v in hi - lo), reference)
