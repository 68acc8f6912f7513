"""nnU-Net softmax → PI-CAI detection maps (``report_guided_annotation.extract_lesion_candidates``)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from adunet_lib.data.image import Geometry, Image, write_image


def _extract_lesion_candidates():
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints a citation banner on import
        from report_guided_annotation import extract_lesion_candidates
    return extract_lesion_candidates


#: ``report_guided_annotation.extract_lesion_candidates`` thresholds: ``dynamic-fast`` (the package's
#: default: one threshold per candidate, from its peak) and ``dynamic`` (what PI-CAI's evaluation of
#: the challenge used: several thresholds per candidate, slower).
LESION_THRESHOLDS = ("dynamic-fast", "dynamic")


def detection_map(probability: np.ndarray, threshold: str = "dynamic-fast") -> np.ndarray:
    """Lesion candidates (each filled with its peak probability) from a lesion-probability volume,
    by PI-CAI's ``extract_lesion_candidates`` with ``threshold`` (one of :data:`LESION_THRESHOLDS`)
    and its other defaults."""
    if threshold not in LESION_THRESHOLDS:
        raise ValueError(f"lesion threshold must be one of {', '.join(LESION_THRESHOLDS)}, not {threshold!r}")
    return _extract_lesion_candidates()(np.asarray(probability, dtype=np.float32),
                                        threshold=threshold)[0].astype(np.float32)


def write_detection(npz: str | Path, geometry: Geometry, target: str | Path, keep_softmax: bool = False,
                    threshold: str = "dynamic-fast") -> Path:
    """Convert nnU-Net's saved probabilities of one case into a detection map (``target``) on its T2W
    grid (candidates by ``threshold``); with ``keep_softmax`` the lesion probability goes beside it
    (``…_softmax.mha``)."""
    target = Path(target)
    with np.load(npz, allow_pickle=False) as data:
        probability = data["probabilities"][1]
    if probability.shape != geometry.shape:
        raise ValueError(f"{npz}: probabilities {probability.shape} are not on the T2W grid {geometry.shape}")
    if keep_softmax:
        write_image(Image(probability.astype(np.float32), geometry),
                    target.with_name(target.name.replace("_detection_map", "_softmax")))
    return write_image(Image(detection_map(probability, threshold), geometry), target)
