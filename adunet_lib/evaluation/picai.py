"""Detection maps and lesion labels through ``picai_eval.evaluate`` — the PI-CAI challenge metrics.

Patient level: AUROC of the case score (the maximum of the detection map). Lesion level: average
precision of lesion candidates (hit = IoU ≥ 0.1 with a true lesion). Score = (AUROC + AP) / 2.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from adunet_lib.data.image import read_image
from adunet_lib.errors import AdunetError


def _picai_evaluate():
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints a citation banner on import
        from picai_eval import evaluate
    return evaluate


def evaluate_maps(detections: Mapping[str, str | Path | np.ndarray], labels: Mapping[str, str | Path | np.ndarray]):
    """PI-CAI metrics for the cases in ``labels`` (case → binary lesion mask or file).

    Args:
        detections: case → detection map (array or image file). Every labelled case needs one.
        labels: case → lesion mask (array or image file), binarised ≥ 1.

    Returns:
        ``picai_eval.Metrics`` (``.auroc``, ``.AP``, ``.score``, ``.lesion_results`` …).

    Example:
        >>> metrics = evaluate_maps({"a": det_a, "b": det_b}, {"a": lab_a, "b": lab_b})  # doctest: +SKIP
        >>> metrics.score  # doctest: +SKIP
    """
    ids = sorted(labels)
    missing = [c for c in ids if c not in detections]
    if missing:
        raise AdunetError(f"no detection map for case(s) {', '.join(missing[:5])}")

    def array(value):
        return read_image(value).array if isinstance(value, (str, Path)) else np.asarray(value)

    y_true, y_det = [], []
    for cid in ids:
        truth = (array(labels[cid]) >= 1).astype(np.int32)
        det = array(detections[cid]).astype(np.float32)
        if det.shape != truth.shape:
            raise AdunetError(f"case {cid}: detection map {det.shape} and label {truth.shape} differ in shape")
        if (det < 0).any() or not np.isfinite(det).all():
            raise AdunetError(f"case {cid}: detection map must be finite and ≥ 0")
        y_true.append(truth)
        y_det.append(det)
    return _picai_evaluate()(y_det=y_det, y_true=y_true, subject_list=ids, num_parallel_calls=1)
