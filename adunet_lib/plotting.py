"""Drawing one slice with its contours: the plotting that stages and reports share.

It sits below every stage (it imports nothing of adunet), so a stage that draws its own figure (Fig. 3,
Fig. 4) needs nothing from :mod:`adunet_lib.report`, which builds on it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

OVERLAY_COLOURS = {"gland": "#4cd964", "lesion": "#ff3b30", "box": "#ffcc00", "detection": "#00c8ff"}


def _contour(ax: Any, mask: np.ndarray | None, colour: str, width: float = 1.0) -> None:
    if mask is not None and np.any(mask):
        ax.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=width)


def show_slice(ax: Any, image: np.ndarray, title: str = "", overlays: dict[str, np.ndarray | None] | None = None,
               cmap: str = "gray", vmin: float | None = None, vmax: float | None = None) -> None:
    """One 2D slice with contour overlays (keys of :data:`OVERLAY_COLOURS`)."""
    if vmin is None or vmax is None:
        finite = image[np.isfinite(image)]
        lo, hi = (np.percentile(finite, [1, 99]) if finite.size else (0, 1))
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    for name, mask in (overlays or {}).items():
        _contour(ax, mask, OVERLAY_COLOURS.get(name, "#ffffff"))
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()
