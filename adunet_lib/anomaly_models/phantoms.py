"""2D phantom slices for checking a reconstruction model in seconds, without any cohort.

Textured disc "glands" on a zero background (as in cropped mode); every other slice carries a dark
lesion blob inside the gland. The FP-GAN tests and ``benchmarks/bench_fpgan.py`` train on them: a
model that learned "healthy" keeps healthy slices and removes the blob.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from adunet_lib.anomaly_models.data import SliceData

GLAND_LEVEL = (0.55, 0.65)  # healthy gland intensity range
LESION_LEVEL = 0.2  # the blob's intensity: contrast ≈ 0.4 against the gland


def phantom_slices(n: int, size: int = 32, seed: int = 0) -> SliceData:
    """``n`` one-channel slices of ``size``², labels alternating healthy (0) and lesion (1).

    Example:
        >>> data = phantom_slices(4, size=16)
        >>> data.images.shape, list(data.labels)
        ((4, 1, 16, 16), [0, 1, 0, 1])
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    images = np.zeros((n, 1, size, size), np.float32)
    glands = np.zeros_like(images)
    lesions = np.zeros((n, 1, size, size), np.uint8)
    labels = np.arange(n) % 2
    for i in range(n):
        cy, cx = size / 2 + rng.uniform(-0.05, 0.05, 2) * size
        ry, rx = size * rng.uniform(0.3, 0.38, 2)
        gland = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        texture = ndimage.uniform_filter(rng.normal(size=(size, size)), 3)
        img = rng.uniform(*GLAND_LEVEL) + 0.08 * texture + 0.02 * rng.normal(size=(size, size))
        if labels[i]:
            r, angle, d = size * rng.uniform(0.08, 0.12), rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.45)
            blob = ((yy - cy - d * ry * np.sin(angle)) ** 2 + (xx - cx - d * rx * np.cos(angle)) ** 2 < r * r) & gland
            img = np.where(blob, LESION_LEVEL + 0.03 * texture, img)
            lesions[i, 0] = blob
        images[i, 0] = np.clip(img * gland, 0, 1)
        glands[i, 0] = gland
    index = pd.DataFrame({"set": "internal", "split": "train", "case_id": [f"p{i}" for i in range(n)],
                          "slice": 0, "z": 0, "label": np.where(labels == 1, "lesion", "healthy")})
    return SliceData(images, labels.astype(np.int64), glands, lesions, index)
