"""An ipywidgets case browser, with a static fallback for headless runs.

In JupyterLab: a slice slider, a sequence selector and overlays (lesion, gland, anomaly map,
detection map) with an opacity slider. Headless (papermill, ``interactive=False``) the same call
renders a static montage, saves it, and returns the figure.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from adunet_lib.plotting import OVERLAY_COLOURS, show_slice
from adunet_lib.progress import headless
from adunet_lib.report.figures import save_figure

HEAT_OVERLAYS = ("anomaly", "detection")


def _interesting_slices(overlays: Mapping[str, np.ndarray], n_slices: int, count: int) -> list[int]:
    for key in ("lesion", "gland"):
        mask = overlays.get(key)
        if mask is not None and np.any(mask):
            z = np.flatnonzero(np.asarray(mask).reshape(mask.shape[0], -1).any(axis=1))
            return sorted(set(np.linspace(z.min(), z.max(), min(count, z.size)).round().astype(int).tolist()))
    return sorted(set(np.linspace(0, n_slices - 1, min(count, n_slices)).round().astype(int).tolist()))


def static_montage(volumes: Mapping[str, np.ndarray], overlays: Mapping[str, np.ndarray] | None = None,
                   slices: list[int] | None = None, title: str = "", count: int = 4):
    """Rows = sequences, columns = slices; contours for masks, heat for anomaly / detection maps."""
    import matplotlib.pyplot as plt

    overlays = dict(overlays or {})
    first = next(iter(volumes.values()))
    slices = slices or _interesting_slices(overlays, first.shape[0], count)
    fig, axes = plt.subplots(len(volumes), len(slices), figsize=(2.2 * len(slices), 2.2 * len(volumes)), squeeze=False)
    for r, (name, vol) in enumerate(volumes.items()):
        for c, z in enumerate(slices):
            ax = axes[r, c]
            masks = {k: v[z] for k, v in overlays.items() if k not in HEAT_OVERLAYS}
            show_slice(ax, vol[z], f"{name} z={z}", masks)
            for k in HEAT_OVERLAYS:
                if k in overlays and np.any(overlays[k][z]):
                    heat = np.ma.masked_less_equal(overlays[k][z], 0)
                    ax.imshow(heat, cmap="inferno" if k == "anomaly" else "cool", alpha=0.5, interpolation="nearest")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def case_viewer(volumes: Mapping[str, np.ndarray], overlays: Mapping[str, np.ndarray] | None = None,
                interactive: bool = True, title: str = "", save_to: str | Path | None = None) -> Any:
    """Browse one case: ``volumes`` (name → ``(z, y, x)``) with ``overlays`` on the same grid.

    Returns an ipywidgets box when ``interactive`` and a kernel with widgets is available (not in a
    headless run); otherwise renders :func:`static_montage`, saves it to ``save_to`` when given, and
    returns the figure.

    Example:
        >>> case_viewer({"t2w": t2w, "adc": adc}, {"lesion": lesion}, interactive=False,
        ...             save_to="figures/demo/viewer_case.png")  # doctest: +SKIP
    """
    overlays = {k: np.asarray(v) for k, v in (overlays or {}).items() if v is not None}
    if not interactive or headless():
        fig = static_montage(volumes, overlays, title=title)
        if save_to is not None:
            save_figure(fig, save_to)
        return fig
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    names = list(volumes)
    first = volumes[names[0]]
    start = _interesting_slices(overlays, first.shape[0], 1)[0]
    slider = widgets.IntSlider(value=start, min=0, max=first.shape[0] - 1, description="slice")
    sequence = widgets.Dropdown(options=names, value=names[0], description="image")
    shown = widgets.SelectMultiple(options=list(overlays), value=tuple(overlays), description="overlays")
    opacity = widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="opacity")
    out = widgets.Output()

    def draw(*_: Any) -> None:
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(5, 5))
            z = slider.value
            show_slice(ax, volumes[sequence.value][z], f"{title} {sequence.value} z={z}",
                       {k: overlays[k][z] for k in shown.value if k not in HEAT_OVERLAYS})
            for k in shown.value:
                if k in HEAT_OVERLAYS:
                    ax.imshow(np.ma.masked_less_equal(overlays[k][z], 0), alpha=opacity.value,
                              cmap="inferno" if k == "anomaly" else "cool", interpolation="nearest")
            plt.show()

    for w in (slider, sequence, shown, opacity):
        w.observe(draw, names="value")
    draw()
    legend = widgets.HTML(" ".join(f"<span style='color:{c}'>■ {k}</span>" for k, c in OVERLAY_COLOURS.items()))
    return widgets.VBox([widgets.HBox([sequence, slider]), widgets.HBox([shown, opacity]), legend, out])
