"""Drawing one slice with its contours: the plotting that stages and reports share.

It sits below every stage (it imports nothing of adunet), so a stage that draws its own figure (Fig. 3,
Fig. 4) needs nothing from :mod:`adunet_lib.report`, which builds on it.

A figure explains itself: every outline colour it draws has a legend entry (:func:`outline_legend`,
proxies named by :data:`OVERLAY_LABELS`) and every map it draws in colour has a colourbar that says
what the values are (:data:`MAP_LABEL`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

OVERLAY_COLOURS = {"gland": "#4cd964", "lesion": "#ff3b30", "box": "#ffcc00", "detection": "#00c8ff"}

#: The legend's name of each outline colour.
OVERLAY_LABELS = {"gland": "gland", "lesion": "lesion", "box": "crop box", "detection": "detection"}

#: What an anomaly map's values are (the colourbar's label).
MAP_LABEL = "anomaly map a = Φ(|x − G(x)|)"


def _contour(ax: Any, mask: np.ndarray | None, colour: str, width: float = 1.0) -> bool:
    if mask is not None and np.any(mask):
        ax.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=width)
        return True
    return False


def drawn_outlines(overlays: Mapping[str, np.ndarray | None] | None) -> list[str]:
    """The overlay names :func:`show_slice` draws an outline for (a mask with a voxel set)."""
    return [name for name, mask in (overlays or {}).items() if mask is not None and np.any(mask)]


def show_slice(ax: Any, image: np.ndarray, title: str = "", overlays: dict[str, np.ndarray | None] | None = None,
               cmap: str = "gray", vmin: float | None = None, vmax: float | None = None, fontsize: float = 8) -> Any:
    """One 2D slice with contour overlays (keys of :data:`OVERLAY_COLOURS`); returns the image (for a
    colourbar)."""
    if vmin is None or vmax is None:
        finite = image[np.isfinite(image)]
        lo, hi = (np.percentile(finite, [1, 99]) if finite.size else (0, 1))
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    shown = ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    for name, mask in (overlays or {}).items():
        _contour(ax, mask, OVERLAY_COLOURS.get(name, "#ffffff"))
    ax.set_title(title, fontsize=fontsize)
    ax.set_axis_off()
    return shown


def outline_handles(names: Iterable[str]) -> list[Any]:
    """Legend proxies (one line each, in its outline colour) for overlay names, in
    :data:`OVERLAY_COLOURS`' order, each once."""
    from matplotlib.lines import Line2D

    wanted = set(names)
    order = [n for n in OVERLAY_COLOURS if n in wanted] + sorted(wanted - set(OVERLAY_COLOURS))
    return [Line2D([], [], color=OVERLAY_COLOURS.get(n, "#ffffff"), lw=1.5, label=f"{OVERLAY_LABELS.get(n, n)} outline")
            for n in order]


def outline_legend(fig: Any, names: Iterable[str], loc: str = "outside lower center", **kwargs: Any) -> Any:
    """A figure legend for the outline colours ``names`` (none when empty); ``loc`` "outside …" needs a
    figure with ``layout="constrained"``."""
    handles = outline_handles(names)
    if not handles:
        return None
    kwargs.setdefault("fontsize", 8)
    kwargs.setdefault("frameon", False)
    return fig.legend(handles=handles, loc=loc, ncol=len(handles), **kwargs)
