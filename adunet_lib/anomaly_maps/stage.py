"""Notebook 05's stage logic: maps for every case, map quality, Fig. 4.

Files::

    runs/<name>/maps/<model>/<case>_<seq>_anomaly.mha   on the case's original T2W grid
    runs/<name>/maps/<model>/stamp.json                  which checkpoints / kernel made them
    figures/<name>/map_quality.csv, fig4_anomaly_maps.png
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence

import numpy as np
import pandas as pd

from adunet_lib.anomaly_maps.maps import case_maps, map_path, slice_maps, write_case_maps
from adunet_lib.anomaly_maps.quality import quality_table
from adunet_lib.anomaly_models.stage import DISPLAY, SEQUENCE_DISPLAY, _models_for, reconstruct_stack
from adunet_lib.data.case import SEQUENCES, load_case as load_raw
from adunet_lib.data.image import read_image
from adunet_lib.fileio import read_json, write_json
from adunet_lib.preprocessing.stage import load_case
from adunet_lib.progress import progress
from adunet_lib.runner.context import RunContext


def _stamp(ctx: RunContext, model: str, kernel_size: int) -> str:
    parts = [f"kernel={kernel_size}"]
    for _, path in _models_for(ctx, model, "cropped"):
        st = path.stat()
        parts.append(f"{path.relative_to(ctx.run_dir)}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def pseudo_healthy(ctx: RunContext, model: str, pre, cache: dict | None = None) -> np.ndarray:
    """G(x) for every gland slice of a preprocessed case, ``(3, n, S, S)`` (non-gland slices: the input)."""
    images = pre.images["cropped"]
    gland = pre.gland["cropped"]
    keep = np.flatnonzero(gland.reshape(gland.shape[0], -1).any(axis=1))
    out = images.copy()
    if keep.size:
        stack = images[:, keep].transpose(1, 0, 2, 3)
        masks = gland[keep][:, None].astype(np.float32)
        rec = reconstruct_stack(ctx, model, np.ascontiguousarray(stack), "cropped", masks, cache)
        out[:, keep] = rec.transpose(1, 0, 2, 3)
    return out


def generate_maps(ctx: RunContext, models: Sequence[str], cases: pd.DataFrame, kernel_size: int,
                  show_progress: bool = True) -> pd.DataFrame:
    """Write the three maps of every case for every model (resumable; redone when a model changed)."""
    rows = []
    for model in models:
        folder = ctx.maps / model
        stamp = _stamp(ctx, model, kernel_size)
        stamp_file = folder / "stamp.json"
        if folder.is_dir() and (not stamp_file.is_file() or read_json(stamp_file).get("stamp") != stamp):
            shutil.rmtree(folder)  # made by another checkpoint or kernel: stale
        write_json(stamp_file, {"stamp": stamp, "kernel_size": kernel_size, "model": model})
        cache: dict = {}
        for _, row in progress(list(cases.iterrows()), desc=f"maps {model}", unit="case", enabled=show_progress):
            done = all(map_path(folder, row["case_id"], s).is_file() for s in SEQUENCES)
            if not done:
                pre = load_case(ctx, row["set"], row["case_id"])
                maps = case_maps(pre, pseudo_healthy(ctx, model, pre, cache), kernel_size)
                write_case_maps(folder, row["case_id"], maps)
            rows.append({"model": model, "set": row["set"], "case_id": row["case_id"], "reused": done})
    return pd.DataFrame(rows)


def map_quality(ctx: RunContext, models: Sequence[str], cases: pd.DataFrame, show_progress: bool = True) -> pd.DataFrame:
    """Voxel AUROC / AUPRC / Dice per model, sequence and zone; validation picks the Dice threshold."""
    labeled = cases[cases["labeled"].astype(bool) & cases["split"].isin(["val", "test"])]
    truth = {}
    for _, row in progress(list(labeled.iterrows()), desc="lesion masks", unit="case", enabled=show_progress):
        pre = load_case(ctx, row["set"], row["case_id"])
        raw = load_raw(pre.source_case())
        gland = np.zeros(pre.t2w_geometry.shape, bool)
        gland[pre.box.slices()] = pre.gland_t2w > 0
        zones = raw.zones.array if raw.zones is not None else gland.astype(np.uint8)
        truth[row["case_id"]] = (row["split"], gland, raw.lesion.array[gland] > 0, zones[gland])

    def samples():
        for model in models:
            for case_id, (split, gland, lesion, zones) in truth.items():
                for seq in SEQUENCES:
                    values = read_image(map_path(ctx.maps / model, case_id, seq)).array[gland]
                    yield {"model": model, "sequence": seq, "set": split, "values": values, "lesion": lesion,
                           "zones": zones}

    table = quality_table(samples())
    table["set"] = table["set"].map({"val": "validation", "test": "test"})
    return table


def figure4(ctx: RunContext, cases: pd.DataFrame, slices: pd.DataFrame, models: Sequence[str], kernel_size: int,
            patients: int = 4):
    """The paper's Fig. 4: per patient, rows T2W/ADC/DWI; columns original, reconstructions, maps, lesion."""
    import matplotlib.pyplot as plt

    from adunet_lib.report.figures import show_slice

    candidates = slices[(slices["label"] == "lesion") & slices["split"].isin(["val", "test"])]
    chosen = (candidates.sort_values("lesion_voxels", ascending=False).drop_duplicates("case_id").head(patients))
    n_cols = 2 + 2 * len(models)
    fig, axes = plt.subplots(3 * len(chosen), n_cols, figsize=(1.7 * n_cols, 1.7 * 3 * len(chosen)), squeeze=False)
    cache: dict = {}
    for p, (_, row) in enumerate(chosen.iterrows()):
        pre = load_case(ctx, row["set"], row["case_id"])
        k = int(row["slice"])
        images = pre.images["cropped"][:, k:k + 1]
        gland = pre.gland["cropped"][k:k + 1]
        recs = {m: reconstruct_stack(ctx, m, images.transpose(1, 0, 2, 3), "cropped",
                                     gland[:, None].astype(np.float32), cache).transpose(1, 0, 2, 3) for m in models}
        maps = {m: slice_maps(images, recs[m], gland, kernel_size) for m in models}
        vmax = max(float(maps[m].max()) for m in models) or 1.0
        for c, seq in enumerate(SEQUENCES):
            r = 3 * p + c
            lesion = pre.lesion["cropped"][k]
            show_slice(axes[r, 0], images[c, 0], f"{row['case_id']} {SEQUENCE_DISPLAY[seq]}", vmin=0, vmax=1)
            for j, m in enumerate(models):
                show_slice(axes[r, 1 + j], recs[m][c, 0], DISPLAY[m], vmin=0, vmax=1)
                show_slice(axes[r, 1 + len(models) + j], maps[m][c, 0], f"map {DISPLAY[m]}", cmap="inferno",
                           vmin=0, vmax=vmax)
            show_slice(axes[r, n_cols - 1], lesion.astype(float), "lesion mask", vmin=0, vmax=1)
    fig.tight_layout()
    return fig


def case_overlays(ctx: RunContext, model: str, set_name: str, case_id: str) -> tuple[dict, dict]:
    """Volumes and overlays for the case viewer, on the T2W grid cropped to the gland box."""
    from adunet_lib.preprocessing.geometry import resample_to

    pre = load_case(ctx, set_name, case_id)
    raw = load_raw(pre.source_case())
    box = pre.box.slices()
    volumes = {seq: (raw.images[seq] if seq == "t2w" else resample_to(raw.images[seq], raw.t2w.geometry)).array[box]
               for seq in SEQUENCES}
    overlays = {"gland": pre.gland_t2w, "anomaly": read_image(map_path(ctx.maps / model, case_id, "adc")).array[box]}
    if raw.lesion is not None:
        overlays["lesion"] = raw.lesion.array[box]
    return volumes, overlays
