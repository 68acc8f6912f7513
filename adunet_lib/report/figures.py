"""Saving figures and tables, and the figures shared by several notebooks (one slice and its contours:
:mod:`adunet_lib.plotting`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from adunet_lib.fileio import atomic_path, write_text
from adunet_lib.plotting import OVERLAY_COLOURS, drawn_outlines, outline_legend, show_slice


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure atomically (PNG by extension) and close it.

    Headless runs (``MPLBACKEND=Agg``) show no inline images, so every figure the paper needs goes
    through here to ``figures/<params>/``.
    """
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return Path(path)


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".4f", bold: dict[str, Any] | None = None) -> str:
    """A GitHub-flavoured markdown table; ``bold`` maps column → a predicate on the cell value."""
    bold = bold or {}
    cols = list(frame.columns)
    lines = ["| " + " | ".join(str(c) for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in frame.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            text = format(v, floatfmt) if isinstance(v, (float, np.floating)) and np.isfinite(v) else (
                "–" if isinstance(v, (float, np.floating)) else str(v))
            if c in bold and bold[c](v):
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def save_table(frame: pd.DataFrame, csv_path: str | Path, md_path: str | Path | None = None, title: str = "",
               note: str = "", floatfmt: str = ".4f", bold: dict[str, Any] | None = None) -> None:
    """Write a table as CSV and (optionally) markdown, both atomically."""
    with atomic_path(csv_path) as tmp:
        frame.to_csv(tmp, index=False)
    if md_path is not None:
        text = (f"# {title}\n\n" if title else "") + markdown_table(frame, floatfmt, bold) + (f"\n{note}\n" if note else "")
        write_text(md_path, text)


def preprocessing_figure(rows: Sequence[dict[str, Any]], sequences: Sequence[str] = ("t2w", "adc", "hbv")):
    """The paper's Fig. 2 for several cases: original slice with the gland box, cropped, masked.

    Each row dict holds ``case_id``, ``original`` (seq → 2D array on the T2W grid), ``box`` ((x0, y0,
    x1, y1) on that slice), ``gland`` and ``lesion`` (2D, T2W grid), ``cropped`` (seq → 2D model slice,
    unmasked), ``masked`` (seq → 2D model slice) and ``lesion_model`` (2D model grid). A legend below
    names every outline colour drawn (crop box, gland, lesion).
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    n_cols = 3 * len(sequences)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(1.9 * n_cols, 2.0 * len(rows) + 0.4), squeeze=False,
                             layout="constrained")
    drawn: list[str] = []
    for r, row in enumerate(rows):
        for s, seq in enumerate(sequences):
            ax = axes[r, 3 * s]
            outlines = {"gland": row["gland"], "lesion": row["lesion"]}
            show_slice(ax, row["original"][seq], f"{row['case_id']} {seq}", outlines)
            x0, y0, x1, y1 = row["box"]
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec=OVERLAY_COLOURS["box"], lw=1))
            cropped = {"lesion": row["lesion_model"]}
            show_slice(axes[r, 3 * s + 1], row["cropped"][seq], "cropped", cropped, vmin=0, vmax=1)
            show_slice(axes[r, 3 * s + 2], row["masked"][seq], "masked", cropped, vmin=0, vmax=1)
            drawn += ["box", *drawn_outlines(outlines), *drawn_outlines(cropped)]
    outline_legend(fig, drawn)
    return fig
