"""Reconstruction quality (Table I): SSIM and PSNR from scikit-image, data range 1.0.

Images are the preprocessed slices, normalised to [0, 1] per case and sequence, so ``data_range=1``.
For cropped images both metrics are computed **inside the gland**: SSIM as the mean of
scikit-image's local SSIM map over gland pixels (Gaussian window σ = 1.5, as Wang et al.), PSNR as
10·log10(1 / MSE) over gland pixels. For full images, over the whole slice.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from skimage.metrics import structural_similarity

DATA_RANGE = 1.0


def slice_metrics(x: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """(SSIM, PSNR dB) between two 2D slices, optionally restricted to ``mask``."""
    _, ssim_map = structural_similarity(x, y, data_range=DATA_RANGE, gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, full=True)
    region = np.ones(x.shape, bool) if mask is None else mask > 0
    if not region.any():
        return float("nan"), float("nan")
    mse = float(np.mean((x[region] - y[region]) ** 2))
    psnr = float("inf") if mse == 0 else 10.0 * np.log10(DATA_RANGE ** 2 / mse)
    return float(ssim_map[region].mean()), psnr


def reconstruction_table(originals: np.ndarray, reconstructions: np.ndarray, masks: np.ndarray | None,
                         channel_names: list[str]) -> pd.DataFrame:
    """Per slice and channel SSIM / PSNR. Arrays are ``(N, C, H, W)``; ``masks`` ``(N, 1, H, W)`` or None."""
    rows = []
    for i in range(originals.shape[0]):
        for c, name in enumerate(channel_names):
            mask = None if masks is None else masks[i, 0]
            ssim, psnr = slice_metrics(originals[i, c], reconstructions[i, c], mask)
            rows.append({"slice": i, "sequence": name, "ssim": ssim, "psnr": psnr})
    return pd.DataFrame(rows)
