"""Notebooks 02–04's stage logic: train the models a params block names, measure them, Table I, Fig. 3.

Each training notebook's params block names its models with their own hyperparameters
(``models: {fpgan: {conv_dim: 16}, my_model: {}}``) and shares one budget (iterations, batch size,
sequences, modes). Model folders and records are the run folder's
(:class:`~adunet_lib.run_folder.RunContext`); ``<seq>`` is ``t2w``, ``adc``, ``hbv`` (one model
per sequence, as the paper) or ``all`` (one model on the three sequences as channels — cheaper,
used by the CPU demo). Table I, Fig. 3 and the maps use every model trained in the run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from adunet_lib.anomaly_models.data import SliceData, cohort_slices, load_slices, map_parts
from adunet_lib.anomaly_models.inference import reconstruct_stack
from adunet_lib.anomaly_models.metrics import reconstruction_table
from adunet_lib.anomaly_models.params import FixedPointGANParams, TrainingParams
from adunet_lib.anomaly_models.oracle import edit_scores, edit_sums, has_twins, twin_stack
from adunet_lib.anomaly_models.registry import available, display_name, get, trained_models
from adunet_lib.anomaly_models.training import TrainSettings, fit
from adunet_lib.errors import AdunetError, ParamsError
from adunet_lib.fileio import atomic_path
from adunet_lib.preprocessing.pipeline import PreprocessedCase
from adunet_lib.run_folder import RunContext
from adunet_lib.vocabulary import (CROPPED, EXTERNAL, FULL, HEALTHY, INTERNAL, LESION, SEQUENCE_DISPLAY, SEQUENCES,
                                   TEST, TRAIN, VAL)


def model_sequences(channels: str) -> list[str]:
    """``per_sequence`` → one model per sequence (the paper); ``all`` → one 3-channel model."""
    if channels == "per_sequence":
        return list(SEQUENCES)
    if channels == "all":
        return ["all"]
    raise AdunetError(f"channels must be 'per_sequence' or 'all', not {channels!r}")


def check_models(models: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{name: hyperparameters}`` of a params block, every name registered (a one-line error otherwise)."""
    known = available()
    unknown = [m for m in models if m not in known]
    if unknown:
        raise ParamsError(f"unknown model(s) {', '.join(unknown)}; registered: {', '.join(known)} "
                          "(a new model needs its module in the registry; see docs/adding-a-model.md)")
    return {name: dict(config or {}) for name, config in models.items()}


def train_models(ctx: RunContext, models: Mapping[str, Any], slices: pd.DataFrame, channels: str,
                 modes: Sequence[str], settings: TrainSettings, show_progress: bool = True) -> pd.DataFrame:
    """Train (or load) every model of ``models`` (name → its hyperparameters) for every sequence group
    and mode on the run's anomaly cohort (notebook 01's ``anomaly_cohort``: the internal training split
    by default).

    Returns one row per trained model folder: model, mode, sequence, iterations, final losses.
    """
    rows = []
    parts = map_parts(slices)
    for name, config in check_models(models).items():
        cohort = cohort_slices(slices, get(name).uses_labels)
        # the models of the run, then (leak-free maps) one per map part, blind to that part's cases
        jobs = [(mode, None, cohort) for mode in modes]
        jobs += [(CROPPED, part, cohort[cohort["map_part"] != part]) for part in parts]
        for mode, part, rows_used in jobs:
            for seq in model_sequences(channels):
                data = load_slices(ctx, rows_used, seq, mode, splits=[TRAIN], sets=[INTERNAL])
                try:
                    _, history = fit(name, data, ctx.model_dir(name, seq, mode, part), settings, config,
                                     device=ctx.device, show_progress=show_progress)
                except AdunetError as exc:
                    if part is None:
                        raise
                    raise AdunetError(f"leak-free maps, {name} without map part {part}: {exc} (set leak_free_maps "
                                      "lower, or 0, in notebook 01's params)") from None
                final = history.iloc[-1].to_dict() if len(history) else {}
                rows.append({"model": name, "mode": mode, "part": -1 if part is None else part, "sequence": seq,
                             "iterations": settings.iterations, **{k: v for k, v in final.items() if k != "iteration"}})
    return pd.DataFrame(rows)


def evaluate_models(ctx: RunContext, models: Sequence[str], slices: pd.DataFrame, mode: str, split: str, set_name: str,
                    healthy_only: bool = True) -> pd.DataFrame:
    """Mean SSIM / PSNR per model and sequence on one split: inside the gland for cropped images
    (``ssim``/``psnr``) and over the whole slice (``ssim_slice``/``psnr_slice``, which the masked-out
    background inflates for cropped images; the same numbers for full images)."""
    everything = slices[(slices["split"] == split) & (slices["set"] == set_name)]
    table = everything[everything["label"] == HEALTHY] if healthy_only else everything
    if table.empty:
        return pd.DataFrame()
    data = load_slices(ctx, table, "all", mode)
    lesion_rows = everything[everything["label"] == LESION]
    edits = (lesion_edits(ctx, models, lesion_rows, mode) if has_twins(ctx) and len(lesion_rows)
             else {})
    rows = []
    for model in models:
        rec = reconstruct_stack(ctx, model, data.images, mode, data.masks)
        per = reconstruction_table(data.images, rec, data.masks if mode == CROPPED else None, list(SEQUENCES))
        whole = reconstruction_table(data.images, rec, None, list(SEQUENCES)) if mode == CROPPED else per
        for (seq, group), (_, slice_group) in zip(per.groupby("sequence", sort=False),
                                                  whole.groupby("sequence", sort=False)):
            rows.append({"model": model, "mode": mode, "set": set_name, "split": split, "sequence": seq,
                         "ssim": group["ssim"].mean(), "psnr": group["psnr"].replace(np.inf, np.nan).mean(),
                         "ssim_slice": slice_group["ssim"].mean(),
                         "psnr_slice": slice_group["psnr"].replace(np.inf, np.nan).mean(), "slices": len(group),
                         **edits.get(model, {}).get(seq, {})})
    return pd.DataFrame(rows)


def lesion_edits(ctx: RunContext, models: Sequence[str], lesion_rows: pd.DataFrame, mode: str) -> dict:
    """Phantoms: model → sequence → lesion removal, lesion edit and healthy change on the lesion slices of
    ``lesion_rows``, against each case's lesion-free twin (see :mod:`~adunet_lib.anomaly_models.oracle`)."""
    data = load_slices(ctx, lesion_rows, "all", mode)
    twins = []
    for (set_name, case_id), rows in data.index.groupby(["set", "case_id"], sort=False):
        twin = twin_stack(ctx, PreprocessedCase.from_run(ctx, set_name, case_id), mode)
        if twin is None:
            return {}
        twins.append(twin[:, rows["slice"].to_numpy()])
    twin = np.concatenate(twins, axis=1)
    gland, lesion = data.masks[:, 0], data.lesions[:, 0]
    out = {}
    for model in models:
        rec = reconstruct_stack(ctx, model, data.images, mode, data.masks)
        sums = edit_sums(data.images.transpose(1, 0, 2, 3), rec.transpose(1, 0, 2, 3), twin, gland, lesion,
                         gland.astype(np.uint8))
        out[model] = {seq: edit_scores([sums[seq]["gland"]]) for seq in SEQUENCES}
    return out


def measure_models(ctx: RunContext, models: Sequence[str], slices: pd.DataFrame, modes: Sequence[str]) -> pd.DataFrame:
    """SSIM / PSNR of each model on the validation split, per mode; written to the model's metrics
    record (what Table I is assembled from)."""
    frames = []
    for model in models:
        frame = pd.concat([evaluate_models(ctx, [model], slices, mode, VAL, INTERNAL) for mode in modes])
        _write_metrics(ctx, model, frame)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def measure_on_test(ctx: RunContext, model: str, slices: pd.DataFrame) -> pd.DataFrame:
    """Add the held-out external test block (cropped images) to ``model``'s metrics record."""
    test = evaluate_models(ctx, [model], slices, CROPPED, TEST, EXTERNAL)
    merged = pd.concat([_read_metrics(ctx, model), test]).drop_duplicates(
        ["model", "mode", "set", "split", "sequence"], keep="last")
    _write_metrics(ctx, model, merged)
    return test


def _read_metrics(ctx: RunContext, model: str) -> pd.DataFrame:
    path = ctx.model_metrics(model)
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


def _write_metrics(ctx: RunContext, model: str, frame: pd.DataFrame) -> None:
    with atomic_path(ctx.model_metrics(model)) as tmp:
        frame.to_csv(tmp, index=False)


#: The paper's Table I: (block, method, modality) → (SSIM, PSNR dB), for comparison next to ours.
PAPER_TABLE1 = {
    ("Full images", "Vanilla AE", "T2W"): (0.1885, 11.8812), ("Full images", "Vanilla AE", "ADC"): (0.1692, 14.0192),
    ("Full images", "Vanilla AE", "DWI"): (0.2475, 14.0217), ("Full images", "Spatial AE", "T2W"): (0.2401, 14.1857),
    ("Full images", "Spatial AE", "ADC"): (0.2478, 17.1155), ("Full images", "Spatial AE", "DWI"): (0.2891, 15.5884),
    ("Full images", "Diffusion Model", "T2W"): (0.7456, 23.8554),
    ("Full images", "Diffusion Model", "ADC"): (0.7647, 25.0425),
    ("Full images", "Diffusion Model", "DWI"): (0.7673, 27.4743), ("Full images", "FP GAN", "T2W"): (0.7902, 21.9702),
    ("Full images", "FP GAN", "ADC"): (0.7515, 21.666), ("Full images", "FP GAN", "DWI"): (0.7445, 24.9116),
    ("Cropped images", "Diffusion Model", "T2W"): (0.8547, 24.029),
    ("Cropped images", "Diffusion Model", "ADC"): (0.8895, 21.841),
    ("Cropped images", "Diffusion Model", "DWI"): (0.8562, 22.005),
    ("Cropped images", "FP GAN", "T2W"): (0.939, 30.532), ("Cropped images", "FP GAN", "ADC"): (0.957, 31.475),
    ("Cropped images", "FP GAN", "DWI"): (0.961, 31.342), ("Test results", "FP GAN", "T2W"): (0.9480, 28.079),
    ("Test results", "FP GAN", "ADC"): (0.8730, 28.528), ("Test results", "FP GAN", "DWI"): (0.6916, 27.8080),
}

TABLE1_NOTE = ("Healthy slices only (on lesion slices a good pseudo-healthy model is *meant* to differ). "
               "Cropped images: SSIM and PSNR inside the gland mask, and over the whole cropped slice (its "
               "masked-out background, 0 in both images, inflates them; the paper does not say which it reports); "
               "full images: whole slice. 'paper': the paper's Table I on real PI-CAI data (blank where it has "
               "no such row). Images are "
               "normalised per case and sequence to [0, 1] (data range 1). Validation: internal held-out "
               "cases; test: the external set. DWI = the high-b image (hbv).")


#: Phantom runs only: how each model edits lesion slices against the lesion-free twin (Table I columns).
PHANTOM_COLUMNS = {"lesion_removal": "lesion removal", "healthy_change": "healthy |G(x) − x|"}
PHANTOM_NOTE = (" Phantoms only — on lesion slices, against each study's lesion-free twin: *lesion removal* is the "
                "share of the lesion's intensity change (x − twin) that G(x) undoes (1 = removed, 0 = untouched); "
                "*healthy |G(x) − x|* is the mean change on the gland outside the lesion (0 = kept).")


def table1_note(table: pd.DataFrame) -> str:
    """Table I's note, with what the phantom columns mean when the table has them."""
    return TABLE1_NOTE + (PHANTOM_NOTE if any(c in table for c in PHANTOM_COLUMNS.values()) else "")


def best_model(ctx: RunContext, models: Sequence[str] | None = None) -> str:
    """The model with the highest mean SSIM on cropped validation images (how the paper picked FP-GAN)."""
    scores = {}
    for m in models if models is not None else trained_models(ctx):
        frame = _read_metrics(ctx, m)
        if len(frame):
            frame = frame[(frame["mode"] == CROPPED) & (frame["split"] == VAL)]
            if len(frame):
                scores[m] = frame["ssim"].mean()
    if not scores:
        raise AdunetError("no cropped validation metrics yet: run notebooks 02–04")
    return max(scores, key=scores.get)


def table1(ctx: RunContext, models: Sequence[str] | None = None) -> pd.DataFrame:
    """The paper's Table I over every model trained in the run (or ``models``): full-image block,
    cropped-image block, held-out test block of the best model."""
    models = list(models) if models is not None else trained_models(ctx)
    frames = [f for f in (_read_metrics(ctx, m) for m in models) if len(f)]
    if not frames:
        raise AdunetError("no models/<model>/metrics.csv yet: run notebooks 02–04")
    metrics = pd.concat(frames, ignore_index=True)
    val = metrics[metrics["split"] == VAL]
    best = best_model(ctx, models)
    blocks = [("Full images", val[val["mode"] == FULL]), ("Cropped images", val[val["mode"] == CROPPED]),
              ("Test results", metrics[(metrics["split"] == TEST) & (metrics["mode"] == CROPPED)
                                       & (metrics["model"] == best)])]
    rows = []
    for block, frame in blocks:
        for model in [m for m in models if m in set(frame["model"])]:
            for seq in SEQUENCES:
                hit = frame[(frame["model"] == model) & (frame["sequence"] == seq)]
                if len(hit):
                    rows.append({"block": block, "method": display_name(model), "modality": SEQUENCE_DISPLAY[seq],
                                 "SSIM": float(hit["ssim"].iloc[0]), "PSNR (dB)": float(hit["psnr"].iloc[0]),
                                 "SSIM (whole slice)": float(hit["ssim_slice"].iloc[0]),
                                 "PSNR (dB, whole slice)": float(hit["psnr_slice"].iloc[0]),
                                 "slices": int(hit["slices"].iloc[0]),
                                 **{label: float(hit[column].iloc[0]) for column, label in PHANTOM_COLUMNS.items()
                                    if column in hit},
                                 **dict(zip(("paper SSIM", "paper PSNR (dB)"),
                                            PAPER_TABLE1.get((block, display_name(model), SEQUENCE_DISPLAY[seq]),
                                                             (np.nan, np.nan))))})
    return pd.DataFrame(rows)


def figure3_slices(ctx: RunContext, slices: pd.DataFrame, count: int = 3) -> SliceData:
    """Validation slices for Fig. 3: lesion slices first (the interesting ones), then healthy."""
    val = slices[(slices["split"] == VAL) & (slices["set"] == INTERNAL)]
    chosen = pd.concat([val[val["label"] == LESION].sort_values("lesion_voxels", ascending=False).head(count - 1),
                        val[val["label"] == HEALTHY].sort_values("gland_voxels", ascending=False).head(1)])
    return load_slices(ctx, chosen.head(count), "all", CROPPED)


def figure3(ctx: RunContext, models: Sequence[str] | None, data: SliceData, sequence_index: int | None = None):
    """Fig. 3: the same slices reconstructed by each model (default: every model trained in the
    run), side by side (rows: slice × sequence)."""
    import matplotlib.pyplot as plt

    from adunet_lib.plotting import drawn_outlines, outline_legend, show_slice

    models = list(models) if models is not None else trained_models(ctx)
    recs = {m: reconstruct_stack(ctx, m, data.images, CROPPED, data.masks) for m in models}
    seqs = range(len(SEQUENCES)) if sequence_index is None else [sequence_index]
    rows = [(i, c) for i in range(len(data)) for c in seqs]
    fig, axes = plt.subplots(len(rows), 1 + len(models), figsize=(1.8 * (1 + len(models)), 1.8 * len(rows) + 0.3),
                             squeeze=False, layout="constrained")
    drawn: list[str] = []
    for r, (i, c) in enumerate(rows):
        lesion = data.lesions[i, 0]
        label = f"{data.index.loc[i, 'case_id']} z={data.index.loc[i, 'z']} {SEQUENCE_DISPLAY[SEQUENCES[c]]}"
        show_slice(axes[r, 0], data.images[i, c], f"original\n{label}", {"lesion": lesion}, vmin=0, vmax=1)
        drawn += drawn_outlines({"lesion": lesion})
        for k, m in enumerate(models):
            show_slice(axes[r, k + 1], recs[m][i, c], display_name(m), vmin=0, vmax=1)
    outline_legend(fig, drawn)
    return fig


def loss_figure(ctx: RunContext, model: str):
    """Loss curves of every folder of ``model`` (one panel per loss term; axes labelled, a legend entry per
    folder's curve)."""
    import matplotlib.pyplot as plt

    folders = sorted(p for p in (ctx.models_dir / model).iterdir() if (p / "losses.csv").is_file())
    histories = {p.name: pd.read_csv(p / "losses.csv") for p in folders}
    terms = sorted({c for h in histories.values() for c in h.columns if c not in ("iteration", "lr")})
    fig, axes = plt.subplots(1, max(1, len(terms)), figsize=(3.2 * max(1, len(terms)), 2.8), squeeze=False,
                             layout="constrained")
    for ax, term in zip(axes[0], terms):
        for name, h in histories.items():
            if term in h:
                ax.plot(h["iteration"], h[term], label=name)
        ax.set_title(f"{display_name(model)}: {term}", fontsize=9)
        ax.set_xlabel("iteration")
        ax.set_ylabel("loss")
        ax.legend(fontsize=7, title="model folder", title_fontsize=7)
    return fig


def settings_from(iterations: int, batch_size: int, checkpoint_every: int, seed: int,
                  healthy_from: str = "negative_cases") -> TrainSettings:
    return TrainSettings(iterations=iterations, batch_size=batch_size, checkpoint_every=checkpoint_every,
                         log_every=max(1, min(25, iterations // 20 or 1)), seed=seed, healthy_from=healthy_from)


def train_settings(params: TrainingParams) -> TrainSettings:
    """The training budget of a training notebook's parameters (what a model folder's resolved config
    records: the same settings resume, others retrain)."""
    return settings_from(params.iterations, params.batch_size, params.checkpoint_every, params.seed)


def chosen_models(params: TrainingParams, models: Sequence[str] | None = None) -> dict[str, Any]:
    """Model → hyperparameters: the params', or those of ``models`` (a unit's ``--model``; each among them)."""
    chosen = dict(params.models)
    if models:
        unknown = [m for m in models if m not in chosen]
        if unknown:
            raise ParamsError(f"--model {', '.join(unknown)}: not among notebook {params.NOTEBOOK}'s models "
                              f"({', '.join(chosen) or 'none'})")
        chosen = {m: chosen[m] for m in models}
    return chosen


def run(ctx: RunContext, params: TrainingParams, models: Sequence[str] | None = None,
        show_progress: bool = True) -> pd.DataFrame:
    """Notebooks 02–04's and ``adunet run --stage 02|03|04``'s entry point: train (or load, or resume)
    every model of ``params`` (or of ``models``) for every mode and sequence group; see
    :func:`train_models` for the rows it returns."""
    _, slices = ctx.tables()
    return train_models(ctx, chosen_models(params, models), slices, params.channels, params.modes,
                        train_settings(params), show_progress=show_progress)


def measure(ctx: RunContext, params: TrainingParams, slices: pd.DataFrame) -> pd.DataFrame:
    """SSIM / PSNR of the notebook's models on the validation split, in each of its modes."""
    return measure_models(ctx, list(params.models), slices, params.modes)


def reconstructions(ctx: RunContext, params: TrainingParams, slices: pd.DataFrame):
    """The notebook's own models on the same validation slices (02, 03: ``RECONSTRUCTIONS_FIGURE``)."""
    return figure3(ctx, list(params.models), figure3_slices(ctx, slices))


def figure3_of(ctx: RunContext, params: FixedPointGANParams, slices: pd.DataFrame):
    """Fig. 3: every model of the run (02–04) on ``figure_slices`` validation slices (notebook 04)."""
    return figure3(ctx, None, figure3_slices(ctx, slices, params.figure_slices))
