"""An image that carries its voxels *and* its geometry.

Arrays are stored in SimpleITK's numpy order ``(z, y, x)``; spacing, origin and direction are in
ITK's physical order ``(x, y, z)``. Nothing in adunet passes a loose ``spacing=`` next to an array:
functions take and return :class:`Image`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import numpy as np
import SimpleITK as sitk

from adunet_lib.fileio import atomic_path

#: Real PI-CAI label files differ from their T2W image by ~2e-4 in direction cosines.
GEOMETRY_TOLERANCE = 1e-3


@dataclasses.dataclass(frozen=True)
class Geometry:
    """The voxel grid of a 3D image: size (x, y, z), spacing (mm), origin (mm), direction (row-major 3×3).

    Example:
        >>> g = Geometry(size=(4, 4, 2), spacing=(0.5, 0.5, 3.0), origin=(0, 0, 0),
        ...              direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
        >>> g.same_as(g)
        True
    """

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", tuple(int(v) for v in self.size))
        object.__setattr__(self, "spacing", tuple(float(v) for v in self.spacing))
        object.__setattr__(self, "origin", tuple(float(v) for v in self.origin))
        object.__setattr__(self, "direction", tuple(float(v) for v in self.direction))

    @property
    def shape(self) -> tuple[int, int, int]:
        """Numpy shape ``(z, y, x)`` of an array on this grid."""
        return (self.size[2], self.size[1], self.size[0])

    def differences(self, other: Geometry, tol: float = GEOMETRY_TOLERANCE) -> list[str]:
        """Human-readable list of what differs (empty when the grids match within ``tol``)."""
        out = []
        if self.size != other.size:
            out.append(f"size {self.size} vs {other.size}")
        for name in ("spacing", "origin", "direction"):
            a, b = np.asarray(getattr(self, name)), np.asarray(getattr(other, name))
            # origins are in mm and can be large: compare them relative to the voxel size
            scale = min(self.spacing) if name == "origin" else 1.0
            if a.shape != b.shape or not np.allclose(a, b, atol=tol * scale, rtol=0):
                out.append(f"{name} {tuple(round(float(v), 4) for v in a)} vs {tuple(round(float(v), 4) for v in b)}")
        return out

    def same_as(self, other: Geometry, tol: float = GEOMETRY_TOLERANCE) -> bool:
        return not self.differences(other, tol)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Geometry:
        return cls(**{k: tuple(data[k]) for k in ("size", "spacing", "origin", "direction")})

    @classmethod
    def of(cls, image: sitk.Image) -> Geometry:
        return cls(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())

    def index_to_physical(self, index: tuple[float, float, float]) -> tuple[float, float, float]:
        """Physical point (mm) of a continuous index ``(x, y, z)``."""
        d = np.asarray(self.direction).reshape(3, 3)
        return tuple(np.asarray(self.origin) + d @ (np.asarray(index, float) * np.asarray(self.spacing)))

    def empty(self, dtype: Any = np.float32) -> sitk.Image:
        """A SimpleITK image of zeros on this grid (for resampling references)."""
        img = sitk.GetImageFromArray(np.zeros(self.shape, dtype=dtype))
        img.SetSpacing(self.spacing)
        img.SetOrigin(self.origin)
        img.SetDirection(self.direction)
        return img


@dataclasses.dataclass(frozen=True, eq=False)
class Image:
    """Voxels ``(z, y, x)`` plus the grid they live on.

    Example:
        >>> img = Image(np.zeros((2, 4, 4), np.float32), Geometry((4, 4, 2), (0.5, 0.5, 3), (0, 0, 0),
        ...             (1, 0, 0, 0, 1, 0, 0, 0, 1)))
        >>> img.with_array(img.array + 1).array.mean()
        1.0
    """

    array: np.ndarray
    geometry: Geometry

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"Image expects a 3D array, got shape {self.array.shape}")
        if tuple(self.array.shape) != self.geometry.shape:
            raise ValueError(f"array shape {self.array.shape} does not match grid shape {self.geometry.shape}")

    @property
    def spacing(self) -> tuple[float, float, float]:
        return self.geometry.spacing

    @property
    def origin(self) -> tuple[float, float, float]:
        return self.geometry.origin

    @property
    def direction(self) -> tuple[float, ...]:
        return self.geometry.direction

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.geometry.shape

    def with_array(self, array: np.ndarray) -> Image:
        """Same grid, new voxels."""
        return Image(np.asarray(array), self.geometry)

    def to_sitk(self) -> sitk.Image:
        img = sitk.GetImageFromArray(self.array)
        img.SetSpacing(self.geometry.spacing)
        img.SetOrigin(self.geometry.origin)
        img.SetDirection(self.geometry.direction)
        return img

    @classmethod
    def from_sitk(cls, image: sitk.Image) -> Image:
        return cls(sitk.GetArrayFromImage(image), Geometry.of(image))


_INTERPOLATORS = {"linear": sitk.sitkLinear, "nearest": sitk.sitkNearestNeighbor, "bspline": sitk.sitkBSpline}


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


#: ITK picks a reader by the file's extension in lower case only; an export's ``.MHA`` needs it named.
_IMAGE_IO = {".mha": "MetaImageIO", ".mhd": "MetaImageIO", ".nii": "NiftiImageIO", ".nii.gz": "NiftiImageIO",
             ".nrrd": "NrrdImageIO"}


def _image_io(path: str | Path) -> str:
    """ITK's reader for an upper-case extension; "" (ITK's own choice) for every other name."""
    name = Path(path).name
    suffix = next((s for s in sorted(_IMAGE_IO, key=len, reverse=True) if name.lower().endswith(s)), None)
    return _IMAGE_IO[suffix] if suffix and not name.endswith(suffix) else ""


def read_image(path: str | Path) -> Image:
    """Read a 3D image (.mha, .nii.gz, .nrrd …) with its geometry.

    Raises:
        RuntimeError: SimpleITK's error when the file is missing, truncated or not an image.
        ValueError: when the image is not 3D with one component per voxel.
    """
    img = sitk.ReadImage(str(path), imageIO=_image_io(path))
    if img.GetDimension() != 3:
        raise ValueError(f"expected a 3D image, found {img.GetDimension()}D with size {img.GetSize()}")
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"expected one value per voxel, found {img.GetNumberOfComponentsPerPixel()} "
                         "(a 4D / multi-b-value series?)")
    return Image.from_sitk(img)


def read_geometry(path: str | Path) -> Geometry:
    """Read only the header of an image (fast: no voxels)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO(_image_io(path))
    reader.ReadImageInformation()
    if reader.GetDimension() != 3:
        raise ValueError(f"expected a 3D image, found {reader.GetDimension()}D with size {reader.GetSize()}")
    return Geometry(reader.GetSize(), reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection())


def write_image(image: Image, path: str | Path, compress: bool = True) -> Path:
    """Write atomically; the format follows the extension. Geometry round-trips exactly."""
    with atomic_path(path) as tmp:
        sitk.WriteImage(image.to_sitk(), str(tmp), useCompression=compress)
    return Path(path)
