"""Notebooks 02–04's stage logic: train models per sequence and mode, measure them, Table I, Fig. 3.

Model folders follow the run-folder contract: ``runs/<name>/models/<model>/<seq>/`` for the cropped
(gland) images the paper's final setup uses, ``<seq>_full`` for full-image models. ``<seq>`` is
``t2w``, ``adc``, ``hbv`` (one model per sequence, as the paper) or ``all`` (one model on the three
sequences as channels — cheaper, used by the CPU demo).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from adunet_lib.anomaly_models.checkpoint import load_model
from adunet_lib.anomaly_models.data import SliceData, channels_of, load_slices
from adunet_lib.anomaly_models.metrics import reconstruction_table
from adunet_lib.anomaly_models.registry import get
from adunet_lib.anomaly_models.training import TrainSettings, fit
from adunet_lib.data.case import SEQUENCES
from adunet_lib.errors import AdunetError
from adunet_lib.fileio import atomic_path
from adunet_lib.runner.context import RunContext

#: How the paper names models and sequences in its tables and figures.
DISPLAY = {"dense_ae": "Vanilla AE", "spatial_ae": "Spatial AE", "ddpm": "Diffusion Model", "fpgan": "FP GAN"}
SEQUENCE_DISPLAY = {"t2w": "T2W", "adc": "ADC", "hbv": "DWI"}


def model_sequences(channels: str) -> list[str]:
    """``per_sequence`` → one model per sequence (the paper); ``all`` → one 3-channel model."""
    if channels == "per_sequence":
        return list(SEQUENCES)
    if channels == "all":
        return ["all"]
    raise AdunetError(f"channels must be 'per_sequence' or 'all', not {channels!r}")


def model_dir(ctx: RunContext, model: str, sequence: str, mode: str = "cropped") -> Path:
    return ctx.models / model / (sequence if mode == "cropped" else f"{sequence}_{mode}")


def train_models(ctx: RunContext, model: str, slices: pd.DataFrame, channels: str, modes: Sequence[str],
                 settings: TrainSettings, config: dict[str, Any] | None = None,
                 show_progress: bool = True) -> pd.DataFrame:
    """Train (or load) ``model`` for every sequence group and mode on the internal training split.

    Returns one row per trained model folder: mode, sequence, iterations, slices, seconds, final losses.
    """
    rows = []
    for mode in modes:
        for seq in model_sequences(channels):
            data = load_slices(ctx.preprocessed, slices, seq, mode, splits=["train"], sets=["internal"])
            out = model_dir(ctx, model, seq, mode)
            _, history = fit(model, data, out, settings, config, device=ctx.device, show_progress=show_progress)
            final = history.iloc[-1].to_dict() if len(history) else {}
            rows.append({"model": model, "mode": mode, "sequence": seq, "iterations": settings.iterations,
                         **{k: v for k, v in final.items() if k != "iteration"}})
    return pd.DataFrame(rows)


def _models_for(ctx: RunContext, model: str, mode: str) -> list[tuple[list[int], Path]]:
    """(channel indices, checkpoint) covering the three sequences for ``model`` in ``mode``."""
    joint = model_dir(ctx, model, "all", mode) / "model.pt"
    if joint.is_file():
        return [(channels_of("all"), joint)]
    found = []
    for seq in SEQUENCES:
        path = model_dir(ctx, model, seq, mode) / "model.pt"
        if not path.is_file():
            raise AdunetError(f"{path} not found: train {model} ({mode}) first (notebooks 02–04)")
        found.append((channels_of(seq), path))
    return found


def trained_models(ctx: RunContext, mode: str = "cropped") -> list[str]:
    """Registered models with a complete set of checkpoints for ``mode`` in this run."""
    out = []
    for name in DISPLAY:
        try:
            _models_for(ctx, name, mode)
            out.append(name)
        except AdunetError:
            pass
    return out


def reconstruct_stack(ctx: RunContext, model: str, images: np.ndarray, mode: str = "cropped",
                      masks: np.ndarray | None = None, cache: dict | None = None) -> np.ndarray:
    """Pseudo-healthy G(x) of slices ``(N, 3, S, S)`` (all three sequences), in [0, 1].

    For cropped images the result is masked to the gland like the input. ``cache`` keeps loaded
    models between calls.
    """
    cache = {} if cache is None else cache
    out = np.zeros_like(images)
    for channels, path in _models_for(ctx, model, mode):
        if path not in cache:
            cache[path] = load_model(path, device=ctx.device)
        net = cache[path]
        torch.manual_seed(ctx.seed)  # stochastic models reconstruct reproducibly
        rec = net.reconstruct(torch.from_numpy(np.ascontiguousarray(images[:, channels]))).numpy()
        out[:, channels] = rec
    if masks is not None and mode == "cropped":
        out = out * masks
    return out


def evaluate_models(ctx: RunContext, models: Sequence[str], slices: pd.DataFrame, mode: str, split: str, set_name: str,
                    healthy_only: bool = True) -> pd.DataFrame:
    """Mean SSIM / PSNR per model and sequence on one split (inside the gland for cropped images)."""
    table = slices[(slices["split"] == split) & (slices["set"] == set_name)]
    if healthy_only:
        table = table[table["label"] == "healthy"]
    if table.empty:
        return pd.DataFrame()
    data = load_slices(ctx.preprocessed, table, "all", mode)
    rows = []
    for model in models:
        rec = reconstruct_stack(ctx, model, data.images, mode, data.masks)
        per = reconstruction_table(data.images, rec, data.masks if mode == "cropped" else None, list(SEQUENCES))
        for seq, group in per.groupby("sequence", sort=False):
            rows.append({"model": model, "mode": mode, "set": set_name, "split": split, "sequence": seq,
                         "ssim": group["ssim"].mean(), "psnr": group["psnr"].replace(np.inf, np.nan).mean(),
                         "slices": len(group)})
    return pd.DataFrame(rows)


def save_metrics(ctx: RunContext, model: str, frame: pd.DataFrame) -> Path:
    """Write ``models/<model>/metrics.csv`` (what Table I is assembled from)."""
    path = ctx.models / model / "metrics.csv"
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
    return path


TABLE1_NOTE = ("Healthy slices only (on lesion slices a good pseudo-healthy model is *meant* to differ). "
               "Cropped images: SSIM and PSNR inside the gland mask; full images: whole slice. Images are "
               "normalised per case and sequence to [0, 1] (data range 1). Validation: internal held-out "
               "cases; test: the external set. DWI = the high-b image (hbv).")


def best_model(ctx: RunContext, models: Sequence[str]) -> str:
    """The model with the highest mean SSIM on cropped validation images."""
    scores = {}
    for m in models:
        path = ctx.models / m / "metrics.csv"
        if path.is_file():
            frame = pd.read_csv(path)
            frame = frame[(frame["mode"] == "cropped") & (frame["split"] == "val")]
            if len(frame):
                scores[m] = frame["ssim"].mean()
    if not scores:
        raise AdunetError("no cropped validation metrics yet: run notebooks 02–04")
    return max(scores, key=scores.get)


def table1(ctx: RunContext, models: Sequence[str]) -> pd.DataFrame:
    """The paper's Table I: full-image block, cropped-image block, held-out test block of the best model.

    The best model is the one with the highest mean SSIM on cropped validation images (the paper
    picked FP-GAN this way).
    """
    frames = [pd.read_csv(ctx.models / m / "metrics.csv") for m in models if (ctx.models / m / "metrics.csv").is_file()]
    if not frames:
        raise AdunetError("no models/<model>/metrics.csv yet: run notebooks 02–04")
    metrics = pd.concat(frames, ignore_index=True)
    val = metrics[metrics["split"] == "val"]
    cropped = val[val["mode"] == "cropped"]
    best = best_model(ctx, models)
    blocks = [("Full images", val[val["mode"] == "full"]), ("Cropped images", cropped),
              ("Test results", metrics[(metrics["split"] == "test") & (metrics["mode"] == "cropped")
                                       & (metrics["model"] == best)])]
    rows = []
    for block, frame in blocks:
        for model in [m for m in DISPLAY if m in set(frame["model"])]:
            for seq in SEQUENCES:
                hit = frame[(frame["model"] == model) & (frame["sequence"] == seq)]
                if len(hit):
                    rows.append({"block": block, "method": DISPLAY[model], "modality": SEQUENCE_DISPLAY[seq],
                                 "SSIM": float(hit["ssim"].iloc[0]), "PSNR (dB)": float(hit["psnr"].iloc[0]),
                                 "slices": int(hit["slices"].iloc[0])})
    return pd.DataFrame(rows)


def figure3_slices(ctx: RunContext, slices: pd.DataFrame, count: int = 3) -> SliceData:
    """Validation slices for Fig. 3: lesion slices first (the interesting ones), then healthy."""
    val = slices[(slices["split"] == "val") & (slices["set"] == "internal")]
    chosen = pd.concat([val[val["label"] == "lesion"].sort_values("lesion_voxels", ascending=False).head(count - 1),
                        val[val["label"] == "healthy"].sort_values("gland_voxels", ascending=False).head(1)])
    return load_slices(ctx.preprocessed, chosen.head(count), "all", "cropped")


def figure3(ctx: RunContext, models: Sequence[str], data: SliceData, sequence_index: int | None = None):
    """Fig. 3: the same slices reconstructed by each model, side by side (rows: slice × sequence)."""
    import matplotlib.pyplot as plt

    from adunet_lib.report.figures import show_slice

    recs = {m: reconstruct_stack(ctx, m, data.images, "cropped", data.masks) for m in models}
    seqs = range(len(SEQUENCES)) if sequence_index is None else [sequence_index]
    rows = [(i, c) for i in range(len(data)) for c in seqs]
    fig, axes = plt.subplots(len(rows), 1 + len(models), figsize=(1.8 * (1 + len(models)), 1.8 * len(rows)),
                             squeeze=False)
    for r, (i, c) in enumerate(rows):
        lesion = data.lesions[i, 0]
        label = f"{data.index.loc[i, 'case_id']} z={data.index.loc[i, 'z']} {SEQUENCE_DISPLAY[SEQUENCES[c]]}"
        show_slice(axes[r, 0], data.images[i, c], f"original\n{label}", {"lesion": lesion}, vmin=0, vmax=1)
        for k, m in enumerate(models):
            show_slice(axes[r, k + 1], recs[m][i, c], DISPLAY[m], vmin=0, vmax=1)
    fig.tight_layout()
    return fig


def loss_figure(ctx: RunContext, model: str):
    """Loss curves of every folder of ``model`` (one panel per loss term)."""
    import matplotlib.pyplot as plt

    folders = sorted(p for p in (ctx.models / model).iterdir() if (p / "losses.csv").is_file())
    histories = {p.name: pd.read_csv(p / "losses.csv") for p in folders}
    terms = sorted({c for h in histories.values() for c in h.columns if c not in ("iteration", "lr")})
    fig, axes = plt.subplots(1, max(1, len(terms)), figsize=(3.2 * max(1, len(terms)), 2.6), squeeze=False)
    for ax, term in zip(axes[0], terms):
        for name, h in histories.items():
            if term in h:
                ax.plot(h["iteration"], h[term], label=name)
        ax.set_title(f"{DISPLAY.get(model, model)}: {term}", fontsize=9)
        ax.set_xlabel("iteration")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def settings_from(iterations: int, batch_size: int, checkpoint_every: int, seed: int,
                  healthy_from: str = "negative_cases") -> TrainSettings:
    return TrainSettings(iterations=iterations, batch_size=batch_size, checkpoint_every=checkpoint_every,
                         log_every=max(1, min(25, iterations // 20 or 1)), seed=seed, healthy_from=healthy_from)


def uses_labels(model: str) -> bool:
    return get(model).uses_labels
