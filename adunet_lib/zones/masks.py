"""Predicted zone masks: post-processing, plausibility and agreement with a reference mask.

Pure functions on :class:`~adunet_lib.data.image.Image` s on a case's T2W grid; the stage
(:mod:`adunet_lib.zones.stage`) and ``adunet predict`` / ``adunet zones`` share them.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from scipy import ndimage

from adunet_lib.data.image import Image
from adunet_lib.preprocessing.geometry import CropError, gland_box

#: zone labels of a predicted (and a remapped reference) mask
PZ, TZ = 1, 2


def largest_gland_component(zones: Image) -> Image:
    """Keep the largest 3D-connected component of the gland (PZ ∪ TZ), zone labels inside it kept.

    Example:
        >>> import numpy as np
        >>> from adunet_lib.data.image import Geometry
        >>> a = np.zeros((1, 5, 9), np.uint8); a[0, 1:4, 1:4] = 1; a[0, 2, 2] = 2; a[0, 2, 7] = 2
        >>> out = largest_gland_component(Image(a, Geometry((9, 5, 1), (1, 1, 1), (0, 0, 0), (1, 0, 0, 0, 1, 0, 0, 0, 1))))
        >>> int(out.array[0, 2, 7]), int(out.array[0, 2, 2])
        (0, 2)
    """
    gland = zones.array > 0
    labelled, count = ndimage.label(gland, structure=np.ones((3, 3, 3), bool))
    if count <= 1:
        return zones.with_array(zones.array.astype(np.uint8))
    sizes = np.bincount(labelled.ravel())[1:]
    keep = labelled == (int(np.argmax(sizes)) + 1)
    return zones.with_array(np.where(keep, zones.array, 0).astype(np.uint8))


def volume_ml(mask: np.ndarray, spacing: tuple[float, ...]) -> float:
    """Volume of the non-zero voxels in millilitres (spacing in mm)."""
    return float(np.count_nonzero(mask) * float(np.prod(spacing)) / 1000.0)


def implausible(zones: Image, min_ml: float, max_ml: float) -> str | None:
    """Why a predicted gland cannot be used for cropping (``None`` when it can).

    Example:
        >>> from adunet_lib.data.image import Geometry
        >>> implausible(Image(np.zeros((2, 4, 4), np.uint8), Geometry((4, 4, 2), (1, 1, 1), (0, 0, 0), (1, 0, 0, 0, 1, 0, 0, 0, 1))), 5, 500)
        'the predicted zone mask is empty (no PZ or TZ voxel)'
    """
    gland = zones.array > 0
    if not gland.any():
        return "the predicted zone mask is empty (no PZ or TZ voxel)"
    ml = volume_ml(gland, zones.spacing)
    if not min_ml <= ml <= max_ml:
        return (f"the predicted gland is {ml:.1f} ml, outside the plausible {min_ml:g}-{max_ml:g} ml "
                "(zone_model min_gland_ml / max_gland_ml)")
    return None


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks (1.0 when both are empty)."""
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(a & b)) / total


@dataclasses.dataclass(frozen=True)
class Agreement:
    """How a predicted zone mask agrees with a reference mask of the same case (same grid)."""

    dice_pz: float
    dice_tz: float
    dice_gland: float
    box_shift_mm: float
    box_size_change_mm: float
    gland_ml_reference: float
    gland_ml_predicted: float


def agreement(predicted: Image, reference_zones: Image | None, reference_gland: Image, margin_mm: float,
              z_margin: int = 0) -> Agreement:
    """Dice per zone (NaN without a zonal reference) and for the gland; how far the crop box moves.

    The crop box is the preprocessing's (:func:`~adunet_lib.preprocessing.geometry.gland_box` with
    the run's margin); ``box_shift_mm`` is the distance between the two boxes' centres in physical
    space, ``box_size_change_mm`` the largest change of a side.
    """
    pred, ref = predicted.array, reference_gland.array > 0
    pz = tz = float("nan")
    if reference_zones is not None:
        pz = dice(pred == PZ, reference_zones.array == PZ)
        tz = dice(pred == TZ, reference_zones.array == TZ)
    shift = change = float("nan")
    try:
        boxes = [gland_box(mask, margin_mm, square=True, z_margin=z_margin)
                 for mask in (reference_gland, predicted.with_array((pred > 0).astype(np.uint8)))]
    except CropError:
        boxes = []
    if boxes:
        geometry = reference_gland.geometry
        centres = [np.asarray(geometry.index_to_physical(tuple((np.asarray(b.start) + np.asarray(b.stop) - 1) / 2)))
                   for b in boxes]
        shift = float(np.linalg.norm(centres[1] - centres[0]))
        change = float(np.max(np.abs(np.subtract(boxes[1].size, boxes[0].size)) * np.asarray(geometry.spacing)))
    return Agreement(pz, tz, dice(pred > 0, ref), shift, change, volume_ml(ref, reference_gland.spacing),
                     volume_ml(pred > 0, predicted.spacing))


def quality_summary(quality: pd.DataFrame) -> pd.DataFrame:
    """Mean Dice per zone and gland, median crop-box shift, per role (held-out folds pooled)."""
    if quality.empty:
        return pd.DataFrame()
    group = quality["role"].where(~quality["role"].str.startswith("held-out"), "held-out folds")
    return (quality.assign(role=group).groupby("role", sort=False)
            .agg(cases=("case_id", "count"), dice_pz=("dice_pz", "mean"), dice_tz=("dice_tz", "mean"),
                 dice_gland=("dice_gland", "mean"), box_shift_mm_median=("box_shift_mm", "median"),
                 box_shift_mm_max=("box_shift_mm", "max"))
            .round(3).reset_index())
