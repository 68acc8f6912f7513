"""Resampling and invertible crops. Geometry travels with the voxels (:class:`Image`).

A crop is a :class:`CropBox`: an index range on a reference grid (the case's T2W grid). Cropping
copies voxels and moves the origin; :func:`uncrop` pastes them back, so crop → uncrop is exact.
Model grids (fixed ``S × S`` slices) are ordinary :class:`Geometry` objects over the same physical
box, so going back to the original T2W domain is a plain :func:`resample_to`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np
import SimpleITK as sitk

from adunet_lib.data.image import Geometry, Image

_INTERPOLATORS = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor, "bspline": sitk.sitkBSpline}


class CropError(ValueError):
    """The crop box cannot be placed in the image (e.g. the image is smaller than the box)."""


def resample_to(image: Image, reference: Geometry, interpolation: Literal["linear", "nearest", "bspline"] = "linear",
                default: float = 0.0, antialias: bool = False) -> Image:
    """Resample ``image`` onto ``reference`` (physical space is matched through origin/direction/spacing).

    Args:
        image: the image to move.
        reference: the target grid.
        interpolation: ``linear`` for intensities, ``nearest`` for labels.
        default: value outside the source field of view.
        antialias: Gaussian pre-filter where the target is coarser than the source (intensities only).

    Example:
        >>> adc_on_t2w = resample_to(adc, t2w.geometry)  # doctest: +SKIP
    """
    src = image.to_sitk()
    if interpolation == "nearest":
        out_type = src.GetPixelID()
    else:
        src = sitk.Cast(src, sitk.sitkFloat32)
        out_type = sitk.sitkFloat32
        if antialias:
            ratio = np.asarray(reference.spacing) / np.asarray(image.spacing)
            sigma = [0.5 * s * float(np.sqrt(max(r * r - 1.0, 0.0))) for s, r in zip(image.spacing, ratio)]
            if any(v > 0 for v in sigma):
                src = sitk.SmoothingRecursiveGaussian(src, [max(v, 1e-3) if v > 0 else 1e-3 for v in sigma])
    ref = reference.empty()
    out = sitk.Resample(src, ref, sitk.Transform(), _INTERPOLATORS[interpolation], float(default), out_type)
    return Image.from_sitk(out)


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

    This is the grid the 2D models work on; :func:`resample_to` to ``box.reference`` undoes it.
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
