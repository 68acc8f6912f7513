"""Voxel-level quality of anomaly maps against lesion masks (beyond the paper).

Per model, sequence and zone (gland, PZ, TZ): AUROC and AUPRC of map values for lesion vs
non-lesion voxels, and the best Dice over thresholds — the threshold is chosen on the validation
set and applied unchanged to the test set, so the test Dice is honest.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from adunet_lib.vocabulary import TEST, TRAIN, VAL

ZONES = {"gland": None, "PZ": 1, "TZ": 2}


def _dice_curve(values: np.ndarray, truth: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    order = np.argsort(-values)
    v, t = values[order], truth[order]
    tp = np.cumsum(t)
    n_pos = t.sum()
    # predicted-positive count and TP at each threshold: voxels with value >= threshold
    k = np.searchsorted(-v, -thresholds, side="right")
    tp_at = np.where(k > 0, tp[np.clip(k - 1, 0, None)], 0)
    return 2 * tp_at / np.maximum(k + n_pos, 1)


def voxel_quality(values: np.ndarray, truth: np.ndarray, threshold: float | None = None,
                  n_thresholds: int = 500) -> dict[str, float]:
    """AUROC, AUPRC and Dice (best over thresholds, or at ``threshold``) for pooled voxels."""
    truth = truth.astype(bool)
    out = {"voxels": int(values.size), "lesion_voxels": int(truth.sum())}
    if truth.all() or not truth.any():
        return out | {"auroc": np.nan, "auprc": np.nan, "dice": np.nan, "threshold": np.nan}
    out["auroc"] = float(roc_auc_score(truth, values))
    out["auprc"] = float(average_precision_score(truth, values))
    if threshold is None:
        # candidate thresholds: observed values (interpolated ones would sit between classes) from the
        # (1 − 5·prevalence) quantile up, where every sensible lesion threshold lies
        start = max(0.0, 1.0 - 5.0 * truth.mean())
        grid = np.unique(np.quantile(values, np.linspace(start, 1.0, n_thresholds), method="higher"))
        dice = _dice_curve(values, truth, grid)
        best = int(np.argmax(dice))
        out["dice"], out["threshold"] = float(dice[best]), float(grid[best])
    elif not np.isfinite(threshold):
        out["dice"], out["threshold"] = np.nan, np.nan  # no lesion in the validation set to pick one
    else:
        pred = values >= threshold
        out["dice"] = float(2 * (pred & truth).sum() / max(pred.sum() + truth.sum(), 1))
        out["threshold"] = float(threshold)
    return out


def quality_table(samples: Iterable[dict]) -> pd.DataFrame:
    """``samples``: dicts with model, sequence, set ('train' | 'val' | 'test'), values, lesion, zones (flat
    arrays of gland voxels). Thresholds chosen on 'val' rows are applied to 'test' rows; 'train' rows take
    their own best Dice threshold."""
    pooled: dict[tuple, dict[str, list]] = {}
    for s in samples:
        for zone, code in ZONES.items():
            keep = np.ones(s["values"].shape, bool) if code is None else s["zones"] == code
            key = (s["model"], s["sequence"], zone, s["set"])
            entry = pooled.setdefault(key, {"values": [], "lesion": []})
            entry["values"].append(s["values"][keep])
            entry["lesion"].append(s["lesion"][keep])
    rows = []
    thresholds = {}
    for set_name in (TRAIN, VAL, TEST):
        for (model, seq, zone, sname), entry in pooled.items():
            if sname != set_name:
                continue
            values, lesion = np.concatenate(entry["values"]), np.concatenate(entry["lesion"])
            if set_name == TRAIN and not lesion.any():
                continue  # a training split without lesion voxels has nothing to score (tiny cohorts)
            threshold = thresholds.get((model, seq, zone), np.nan) if set_name == TEST else None
            q = voxel_quality(values, lesion, threshold)
            if set_name == VAL:
                thresholds[(model, seq, zone)] = q.get("threshold")
            rows.append({"model": model, "sequence": seq, "zone": zone, "set": set_name, **q})
    return pd.DataFrame(rows)
