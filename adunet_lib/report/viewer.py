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

from adunet_lib.plotting import MAP_LABEL, OVERLAY_COLOURS, OVERLAY_LABELS, drawn_outlines, outline_legend, show_slice
from adunet_lib.progress import headless
from adunet_lib.report.figures import save_figure

HEAT_OVERLAYS = ("anomaly", "detection")

#: Each heat overlay's colour map and what its values are (the colourbar's label).
HEAT_CMAPS = {"anomaly": "inferno", "detection": "cool"}
HEAT_MEANING = {"anomaly": MAP_LABEL, "detection": "detection map (lesion likelihood)"}


def _interesting_slices(overlays: Mapping[str, np.ndarray], n_slices: int, count: int) -> list[int]:
    for key in ("lesion", "gland"):
        mask = overlays.get(key)
        if mask is not None and np.any(mask):
            z = np.flatnonzero(np.asarray(mask).reshape(mask.shape[0], -1).any(axis=1))
            return sorted(set(np.linspace(z.min(), z.max(), min(count, z.size)).round().astype(int).tolist()))
    return sorted(set(np.linspace(0, n_slices - 1, min(count, n_slices)).round().astype(int).tolist()))


def heat_label(key: str, labels: Mapping[str, str] | None = None) -> str:
    """A heat overlay's colourbar label: what it is, and (``labels[key]``) whose map of which sequence."""
    meaning = HEAT_MEANING.get(key, key)
    named = (labels or {}).get(key)
    return f"{meaning}\n{named}" if named else meaning


def _heat_norms(overlays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """One colour scale per heat overlay, over its whole volume (0 … its maximum), so a colourbar holds for
    every slice."""
    from matplotlib.colors import Normalize

    norms = {}
    for k in HEAT_OVERLAYS:
        if k in overlays:
            top = float(np.nanmax(overlays[k])) if np.size(overlays[k]) else 0.0
            norms[k] = Normalize(0.0, top if top > 0 else 1.0)
    return norms


def _draw_heat(ax: Any, overlays: Mapping[str, np.ndarray], shown: Any, z: int, norms: Mapping[str, Any],
               alpha: float) -> None:
    for k in HEAT_OVERLAYS:
        if k in shown and k in overlays and np.any(overlays[k][z]):
            ax.imshow(np.ma.masked_less_equal(overlays[k][z], 0), cmap=HEAT_CMAPS[k], norm=norms[k], alpha=alpha,
                      interpolation="nearest")


def _explain(fig: Any, axes: Any, overlays: Mapping[str, np.ndarray], shown: Any, outlines: list[str],
             norms: Mapping[str, Any], labels: Mapping[str, str] | None, alpha: float) -> None:
    """A colourbar per heat overlay shown, and a legend for the outline colours drawn."""
    from matplotlib.cm import ScalarMappable

    for k in HEAT_OVERLAYS:
        if k in shown and k in overlays:
            bar = fig.colorbar(ScalarMappable(norms[k], HEAT_CMAPS[k]), ax=axes, shrink=0.8, alpha=alpha, pad=0.02)
            bar.set_label(heat_label(k, labels), fontsize=8)
            bar.ax.tick_params(labelsize=7)
    outline_legend(fig, outlines)


def _title(title: str, overlays: Mapping[str, np.ndarray], labels: Mapping[str, str] | None) -> str:
    """The figure title, naming the model and sequence of every heat overlay shown."""
    named = [f"{k} map: {labels[k]}" for k in HEAT_OVERLAYS if k in overlays and k in (labels or {})]
    return "\n".join(t for t in (title, "; ".join(named)) if t)


def static_montage(volumes: Mapping[str, np.ndarray], overlays: Mapping[str, np.ndarray] | None = None,
                   slices: list[int] | None = None, title: str = "", count: int = 4,
                   labels: Mapping[str, str] | None = None):
    """Rows = sequences, columns = slices; contours for masks, heat for anomaly / detection maps.

    Every outline colour drawn has a legend entry, every heat overlay a colourbar (one scale for the
    whole volume); ``labels`` (overlay → its model and sequence, e.g. ``{"anomaly": "FP GAN · ADC"}``)
    goes into the colourbar's label and the title.
    """
    import matplotlib.pyplot as plt

    overlays = dict(overlays or {})
    first = next(iter(volumes.values()))
    slices = slices or _interesting_slices(overlays, first.shape[0], count)
    fig, axes = plt.subplots(len(volumes), len(slices), figsize=(2.2 * len(slices) + 1.2, 2.2 * len(volumes) + 0.6),
                             squeeze=False, layout="constrained")
    norms = _heat_norms(overlays)
    drawn: list[str] = []
    for r, (name, vol) in enumerate(volumes.items()):
        for c, z in enumerate(slices):
            ax = axes[r, c]
            masks = {k: v[z] for k, v in overlays.items() if k not in HEAT_OVERLAYS}
            show_slice(ax, vol[z], f"{name} z={z}", masks)
            drawn += drawn_outlines(masks)
            _draw_heat(ax, overlays, overlays, z, norms, 0.5)
    _explain(fig, axes, overlays, overlays, drawn, norms, labels, 0.5)
    heading = _title(title, overlays, labels)
    if heading:
        fig.suptitle(heading, fontsize=9)
    return fig


def case_viewer(volumes: Mapping[str, np.ndarray], overlays: Mapping[str, np.ndarray] | None = None,
                interactive: bool = True, title: str = "", save_to: str | Path | None = None,
                labels: Mapping[str, str] | None = None) -> Any:
    """Browse one case: ``volumes`` (name → ``(z, y, x)``) with ``overlays`` on the same grid.

    Returns an ipywidgets box when ``interactive`` and a kernel with widgets is available (not in a
    headless run); otherwise renders :func:`static_montage`, saves it to ``save_to`` when given, and
    returns the figure. ``labels``: each heat overlay's model and sequence (see :func:`static_montage`).

    Example:
        >>> case_viewer({"t2w": t2w, "adc": adc}, {"lesion": lesion}, interactive=False,
        ...             save_to="figures/demo/viewer_case.png")  # doctest: +SKIP
    """
    overlays = {k: np.asarray(v) for k, v in (overlays or {}).items() if v is not None}
    if not interactive or headless():
        fig = static_montage(volumes, overlays, title=title, labels=labels)
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

    norms = _heat_norms(overlays)

    def draw(*_: Any) -> None:
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(6, 5), layout="constrained")
            z = slider.value
            masks = {k: overlays[k][z] for k in shown.value if k not in HEAT_OVERLAYS}
            show_slice(ax, volumes[sequence.value][z], _title(f"{title} {sequence.value} z={z}",
                       {k: overlays[k] for k in shown.value}, labels), masks)
            _draw_heat(ax, overlays, shown.value, z, norms, opacity.value)
            _explain(fig, ax, overlays, shown.value, drawn_outlines(masks), norms, labels, opacity.value)
            plt.show()

    for w in (slider, sequence, shown, opacity):
        w.observe(draw, names="value")
    draw()
    legend = widgets.HTML(" ".join(f"<span style='color:{OVERLAY_COLOURS[k]}'>■ {OVERLAY_LABELS[k]}</span>"
                                   for k in OVERLAY_COLOURS if k in overlays and k not in HEAT_OVERLAYS))
    return widgets.VBox([widgets.HBox([sequence, slider]), widgets.HBox([shown, opacity]), legend, out])
