"""Notebook 05's stage logic: maps for every case and every model trained in the run, map quality, Fig. 4.

Maps and their record (``maps/<model>/mapset.json``: kernel, fingerprint, checkpoints) live where
the run folder says; a map set is redone when its model, its kernel or the cases change.

``adunet run PARAMS --stage 05 --shard K/N`` makes the maps of every N-th case (from the K-th) in
a process of its own; shards run side by side into one run folder (each map file is written
atomically, each case by one shard), and notebook 05 then finds their maps and makes only what is
missing. Maps are seeded per case, so sharded maps are the single run's, byte for byte.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from adunet_lib.anomaly_maps.maps import map_makers, model_maps, slice_maps
from adunet_lib.anomaly_maps.params import MapsParams
from adunet_lib.anomaly_maps.quality import quality_table
from adunet_lib.anomaly_models.inference import checkpoints, pseudo_healthy, reconstruct_stack
from adunet_lib.anomaly_models.oracle import ZONES as EDIT_ZONES
from adunet_lib.anomaly_models.oracle import edit_scores, edit_sums, has_twins, mean_sums, twin_files, twin_stack
from adunet_lib.anomaly_models.data import cases_seen
from adunet_lib.anomaly_models.registry import display_name, get, trained_models
from adunet_lib.cache import fingerprint, is_current, recorded, write_record
from adunet_lib.data.image import read_image, write_image
from adunet_lib.errors import AdunetError
from adunet_lib.fileio import exclusive, read_json, write_json
from adunet_lib.preprocessing.pipeline import PreprocessedCase
from adunet_lib.progress import progress
from adunet_lib.run_folder import RunContext
from adunet_lib.vocabulary import CROPPED, EVALUATED_SPLITS, LESION, ORACLE, SEQUENCE_DISPLAY, SEQUENCES, TEST, TRAIN, VAL


def _parts(cases: pd.DataFrame) -> dict[str, int | None]:
    """case → the map part whose cross-fitted model makes its maps (None: the run's model)."""
    if "map_part" not in cases:
        return {cid: None for cid in cases["case_id"]}
    return {cid: (int(p) if p >= 0 else None) for cid, p in zip(cases["case_id"], cases["map_part"])}


def map_models(ctx: RunContext) -> list[str]:
    """The models notebook 05 maps by default: every model trained in the run (02–04), then the ``oracle``
    when the run's cohorts are phantoms with lesion-free twins."""
    return trained_models(ctx) + ([ORACLE] if has_twins(ctx) else [])


def map_checkpoints(ctx: RunContext, model: str, parts: set) -> list[str]:
    """The checkpoints a map set is made with (run-relative): the model's, plus one per map part with
    leak-free maps; for the oracle, the twins."""
    if model == ORACLE:
        return [str(p.relative_to(ctx.run_dir)) for p in twin_files(ctx)]
    order = sorted(parts, key=lambda v: -1 if v is None else v)
    return [str(p.relative_to(ctx.run_dir)) for part in order for _, p in checkpoints(ctx, model, CROPPED, part)]


def map_fingerprint(ctx: RunContext, ckpts: list[str], kernel_size: int, held_out: str | None = None) -> str:
    """What a map set is made from: the kernel, its checkpoints and the preprocessed cases (and, with
    leak-free maps, who maps the held-out cases)."""
    what = {"kernel_size": kernel_size, "mode": CROPPED, "checkpoints": ckpts}
    return fingerprint(what | ({"held_out_maps": held_out} if held_out else {}),
                       upstream=[recorded(ctx.preprocessing_record).get("fingerprint", "")],
                       files=[ctx.run_dir / c for c in ckpts])


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` → (K, N), 1 ≤ K ≤ N; a one-line error otherwise."""
    try:
        index, count = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise AdunetError(f"--shard {text}: give K/N, e.g. 2/8 (the 2nd of 8 shards)") from None
    if not 1 <= index <= count:
        raise AdunetError(f"--shard {text}: K must be between 1 and N")
    return index, count


def generate_maps(ctx: RunContext, models: Sequence[str], cases: pd.DataFrame, kernel_size: int,
                  show_progress: bool = True, shard: tuple[int, int] | None = None,
                  held_out: str = "parts") -> pd.DataFrame:
    """Write the three maps of every case for every model (resumable; redone when a model changed).

    ``shard=(K, N)``: only cases K, K+N, … (1-based) and no final record — notebook 05 (the unsharded
    call) completes the set and writes it. ``held_out``: with leak-free maps, who maps the cases outside
    the parts (:func:`~adunet_lib.anomaly_maps.maps.map_makers`).
    """
    rows = []
    parts = _parts(cases)
    run_parts = sorted(p for p in set(parts.values()) if p is not None)
    if shard is not None:
        index, count = shard
        cases = cases.iloc[index - 1::count]
    for model in models:
        folder, record = ctx.map_dir(model), ctx.map_record(model)
        ckpts = map_checkpoints(ctx, model, set(parts.values()) | {None})
        rule = held_out if run_parts and model != ORACLE else None
        key = map_fingerprint(ctx, ckpts, kernel_size, rule)
        with exclusive(ctx.map_lock(model)):
            if folder.is_dir() and not is_current(record, key):
                shutil.rmtree(folder)  # made by another checkpoint, kernel or cohort: stale
            if shard is not None and not is_current(record, key):
                # the other shards see this key and keep what this one writes
                write_record(record, key, model=model, complete=False)
        cache: dict = {}
        desc = f"maps {model}" + (f" (shard {shard[0]}/{shard[1]})" if shard else "")
        twins = has_twins(ctx)
        for _, row in progress(list(cases.iterrows()), desc=desc, unit="case", enabled=show_progress):
            cid = row["case_id"]
            done = (all(ctx.map_file(model, cid, s).is_file() for s in SEQUENCES)
                    and (not twins or ctx.map_edits(model, cid).is_file()))
            if not done:
                pre = PreprocessedCase.from_run(ctx, row["set"], cid)
                maps, healthy = model_maps(ctx, model, pre, kernel_size,
                                           map_makers(model, parts[cid], run_parts, held_out), cache)
                twin = twin_stack(ctx, pre) if twins else None
                if twin is not None:  # phantoms: how far G(x) is from the twin, while G(x) is at hand
                    st = pre.stack(CROPPED)
                    write_json(ctx.map_edits(model, cid), mean_sums([edit_sums(st.images, h, twin, st.gland, st.lesion,
                                                                               st.zones) for h in healthy]))
                for seq, image in maps.items():
                    write_image(image, ctx.map_file(model, cid, seq))
            rows.append({"model": model, "set": row["set"], "case_id": cid, "reused": done})
        if shard is not None:
            continue
        # the oracle is the truth itself: it saw no case
        seen = [] if model == ORACLE else cases_seen(cases, get(model).uses_labels)
        write_record(record, key, model=model, complete=True, display_name=display_name(model), kernel_size=kernel_size,
                     checkpoints=ckpts, cohort=recorded(ctx.preprocessing_record).get("anomaly_cohort", {}),
                     leak_free=bool(run_parts), held_out_maps=rule, seen_by_model=seen)
    return pd.DataFrame(rows)


@dataclasses.dataclass(frozen=True)
class MapSet:
    """What :func:`run` made: the models mapped, one row per case and model (``reused``: it was
    there already), and the models Fig. 4 and the viewer show."""

    models: list[str]
    made: pd.DataFrame
    shown: list[str]


def chosen_models(ctx: RunContext, params: MapsParams, models: Sequence[str] | None = None) -> list[str]:
    """The models to map: ``models`` (a unit's ``--model``), else the params', else every model trained
    in the run and the oracle on phantoms; a one-line error when there is none."""
    chosen = list(models or params.models or map_models(ctx))
    if not chosen:
        raise AdunetError(f"{ctx.models_dir}: no trained models yet: run notebooks 02–04 (or their units) first")
    return chosen


def run(ctx: RunContext, params: MapsParams, models: Sequence[str] | None = None,
        shard: tuple[int, int] | None = None, show_progress: bool = True,
        log: Callable[[str], None] = print) -> MapSet:
    """Notebook 05's and ``adunet run --stage 05``'s entry point: the maps of every case (resumable).

    ``models``/``shard``: a unit's part of the work (see :func:`chosen_models`, :func:`generate_maps`).
    """
    chosen = chosen_models(ctx, params, models)
    log(f"maps from: {chosen}")
    cases, _ = ctx.tables()
    made = generate_maps(ctx, chosen, cases, params.blur_kernel, show_progress=show_progress, shard=shard,
                         held_out=params.held_out_maps)
    shown = [m for m in params.fig4_models if m in chosen] or chosen[:2]
    return MapSet(chosen, made, shown)


def figure4_of(ctx: RunContext, params: MapsParams, maps: MapSet, cases: pd.DataFrame, slices: pd.DataFrame):
    """Fig. 4 of a map set, with the params' kernel and number of patients."""
    return figure4(ctx, cases, slices, maps.shown, params.blur_kernel, params.fig4_patients)


def map_quality(ctx: RunContext, models: Sequence[str], cases: pd.DataFrame, show_progress: bool = True) -> pd.DataFrame:
    """Voxel AUROC / AUPRC / Dice per model, sequence and zone; validation picks the Dice threshold.

    The training split is scored too (set ``training``): those are the maps nnU-Net learns from, and when
    a reconstruction model saw those cases (``leak_free_maps`` 0) they can be better than the maps it is
    tested on — nnU-Net then learns to trust a channel that fails it on new cases."""
    labeled = cases[cases["labeled"].astype(bool) & cases["split"].isin([TRAIN, VAL, TEST])]
    truth = {}
    for _, row in progress(list(labeled.iterrows()), desc="lesion masks", unit="case", enabled=show_progress):
        gland = PreprocessedCase.from_run(ctx, row["set"], row["case_id"]).gland_on_t2w().array > 0
        lesion = ctx.case_image(row["set"], row["case_id"], "lesion").array
        zones = ctx.case_image(row["set"], row["case_id"], "zones")
        # a case with a gland and no PZ/TZ split (a whole-gland mask, the pretrained gland) counts in the
        # gland rows only: 0 is neither zone
        zones = zones.array if zones is not None else np.zeros(gland.shape, np.uint8)
        truth[row["case_id"]] = (row["split"], gland, lesion[gland] > 0, zones[gland])

    def samples():
        for model in models:
            for case_id, (split, gland, lesion, zones) in truth.items():
                for seq in SEQUENCES:
                    values = read_image(ctx.map_file(model, case_id, seq)).array[gland]
                    yield {"model": model, "sequence": seq, "set": split, "values": values, "lesion": lesion,
                           "zones": zones}

    table = quality_table(samples())
    edits = edit_table(ctx, models, labeled)
    if len(edits):
        table = table.merge(edits, on=["model", "sequence", "zone", "set"], how="left")
    table["set"] = table["set"].map({TRAIN: "training", VAL: EVALUATED_SPLITS[VAL], TEST: "test"})
    return table


def edit_table(ctx: RunContext, models: Sequence[str], cases: pd.DataFrame) -> pd.DataFrame:
    """Phantoms: lesion removal, lesion edit and healthy change per model, sequence, zone and split,
    pooled over ``cases``' lesion slices (from each case's ``<case>_edits.json``); empty for real data."""
    rows = []
    for model in models:
        found = {cid: ctx.map_edits(model, cid) for cid in cases["case_id"]}
        if not any(p.is_file() for p in found.values()):
            continue
        sums = {cid: read_json(p) for cid, p in found.items() if p.is_file()}
        for split, group in cases.groupby("split", sort=False):
            parts = [sums[cid] for cid in group["case_id"] if cid in sums]
            for seq in SEQUENCES:
                for zone in EDIT_ZONES:
                    rows.append({"model": model, "sequence": seq, "zone": zone, "set": split,
                                 **edit_scores(p[seq][zone] for p in parts)})
    return pd.DataFrame(rows)


def figure4(ctx: RunContext, cases: pd.DataFrame, slices: pd.DataFrame, models: Sequence[str], kernel_size: int,
            patients: int = 4):
    """The paper's Fig. 4: per patient, rows T2W/ADC/DWI; columns original, reconstructions, maps, lesion
    (drawn by :func:`draw_figure4`)."""
    candidates = slices[(slices["label"] == LESION) & slices["split"].isin([VAL, TEST])]
    chosen = (candidates.sort_values("lesion_voxels", ascending=False).drop_duplicates("case_id").head(patients))
    cache: dict = {}
    panels = []
    for _, row in chosen.iterrows():
        st = PreprocessedCase.from_run(ctx, row["set"], row["case_id"]).stack(CROPPED)
        k = int(row["slice"])
        images = st.images[:, k:k + 1]
        gland = st.gland[k:k + 1]
        pre = PreprocessedCase.from_run(ctx, row["set"], row["case_id"])
        recs = {m: (pseudo_healthy(ctx, m, pre)[:, k:k + 1] if m == ORACLE else
                    reconstruct_stack(ctx, m, images.transpose(1, 0, 2, 3), CROPPED, gland[:, None].astype(np.float32),
                                      cache).transpose(1, 0, 2, 3)) for m in models}
        maps = {m: slice_maps(images, recs[m], gland, kernel_size) for m in models}
        panels.append({"case_id": row["case_id"], "images": images[:, 0], "lesion": st.lesion[k],
                       "recs": {m: recs[m][:, 0] for m in models}, "maps": {m: maps[m][:, 0] for m in models}})
    return draw_figure4(panels, models)


def _map_title(model: str, sequence: str) -> str:
    title = f"map {display_name(model)} · {SEQUENCE_DISPLAY[sequence]}"
    return title if len(title) <= 22 else title.replace(" · ", "\n· ")


def draw_figure4(panels: Sequence[dict], models: Sequence[str]):
    """Fig. 4 from its arrays: each panel dict holds ``case_id``, ``images`` (sequence, y, x), ``lesion``
    (y, x), ``recs`` and ``maps`` (model → (sequence, y, x)).

    Per patient one colour scale for every map (a colourbar beside the map columns, labelled with what a
    map is); the lesion outline on the original and on every map, named by a legend below."""
    import matplotlib.pyplot as plt

    from adunet_lib.plotting import MAP_LABEL, OVERLAY_COLOURS, drawn_outlines, outline_legend, show_slice

    n_maps = len(models)
    # columns: original, reconstructions, maps, their colourbar, lesion mask
    widths = [1.0] * (1 + 2 * n_maps) + [0.09, 1.0]
    n_cols = len(widths)
    rows = 3 * max(1, len(panels))
    fig = plt.figure(figsize=(1.7 * (n_cols - 1) + 0.9, 1.75 * rows + 0.4), layout="constrained")
    grid = fig.add_gridspec(rows, n_cols, width_ratios=widths)
    drawn: list[str] = []
    for p, panel in enumerate(panels):
        maps = panel["maps"]
        vmax = max(float(maps[m].max()) for m in models) if models else 1.0
        vmax = vmax or 1.0
        lesion = {"lesion": panel["lesion"]}
        shown = None
        for c, seq in enumerate(SEQUENCES):
            r = 3 * p + c
            show_slice(fig.add_subplot(grid[r, 0]), panel["images"][c], f"{panel['case_id']} {SEQUENCE_DISPLAY[seq]}",
                       lesion, vmin=0, vmax=1, fontsize=7)
            for j, m in enumerate(models):
                show_slice(fig.add_subplot(grid[r, 1 + j]), panel["recs"][m][c], f"G(x) {display_name(m)}",
                           vmin=0, vmax=1, fontsize=7)
                shown = show_slice(fig.add_subplot(grid[r, 1 + n_maps + j]), maps[m][c], _map_title(m, seq), lesion,
                                   cmap="inferno", vmin=0, vmax=vmax, fontsize=7)
            mask_ax = fig.add_subplot(grid[r, n_cols - 1])
            show_slice(mask_ax, panel["lesion"].astype(float), "lesion mask", vmin=0, vmax=1, fontsize=7)
            if np.any(panel["lesion"]):
                mask_ax.contour(panel["lesion"].astype(float), levels=[0.5], colors=[OVERLAY_COLOURS["lesion"]],
                                linewidths=1.0)
            drawn += drawn_outlines(lesion)
        if shown is not None:
            bar = fig.colorbar(shown, cax=fig.add_subplot(grid[3 * p:3 * p + 3, n_cols - 2]))
            bar.set_label(f"{MAP_LABEL}\n(one scale per patient)", fontsize=7)
            bar.ax.tick_params(labelsize=6)
    outline_legend(fig, drawn)
    return fig


def viewer_case(cases: pd.DataFrame) -> pd.Series:
    """The held-out case with the most lesion slices (the one the viewers show)."""
    held_out = cases[cases["split"].isin([VAL, TEST])]
    return (held_out if len(held_out) else cases).sort_values("lesion_slices", ascending=False).iloc[0]
