"""nnU-Net v2 raw datasets: training images and labels, test images, ``dataset.json`` (names: :mod:`adunet_lib.nnunet_seam`).

Every channel is on the case's original T2W grid: the sequences are the run's own copies that
notebook 01 wrote (``cases/``), linked, and the anomaly maps are notebook 05's. The channel layout
comes from the variant (:class:`~adunet_lib.vocabulary.Variant`), as in ``dataset.json``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd

from adunet_lib.errors import AdunetError
from adunet_lib.fileio import read_json
from adunet_lib.nnunet_seam import IMAGES_TR, IMAGES_TS, LABELS_TR, channel_file, label_file, write_dataset_json
from adunet_lib.nnunet_seam import write_splits as write_splits_file
from adunet_lib.run_folder import RunContext
from adunet_lib.vocabulary import INTERNAL, MAP_CHANNEL_NAME, Variant


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    try:
        os.symlink(os.path.relpath(src, dst.parent), dst)
    except OSError:  # file systems without symlinks
        shutil.copyfile(src, dst)


def channel_files(ctx: RunContext, variant: Variant, set_name: str, case_id: str, map_model: str) -> list[Path]:
    """The files of a case's nnU-Net channels, in the variant's channel order."""
    files = [ctx.case_file(set_name, case_id, seq) if kind == "sequence" else ctx.map_file(map_model, case_id, seq)
             for kind, seq in variant.channels()]
    for path, (kind, _) in zip(files, variant.channels()):
        if not path.is_file():
            notebook = "01 for this params file" if kind == "sequence" else f"05 (maps) for {map_model}"
            raise AdunetError(f"case {case_id}: {path} missing: run notebook {notebook}")
    return files


def export_variant(ctx: RunContext, variant: Variant, dataset_name: str, cases: pd.DataFrame, map_model: str,
                   map_channel: str = MAP_CHANNEL_NAME) -> Path:
    """Write (links to) the raw dataset of ``variant``; returns its folder.

    Training cases (images and labels) are the labelled internal cases (all folds: nnU-Net
    cross-validates over them); the test images are the external cases.
    """
    folder = ctx.nnunet_raw / dataset_name
    internal = cases[(cases["set"] == INTERNAL) & cases["labeled"].astype(bool)]
    external = cases[cases["set"] != INTERNAL]
    for subset, sub in ((internal, IMAGES_TR), (external, IMAGES_TS)):
        for _, row in subset.iterrows():
            case_id = row["case_id"]
            for k, src in enumerate(channel_files(ctx, variant, row["set"], case_id, map_model)):
                _link(src, folder / sub / channel_file(case_id, k))
            if sub == IMAGES_TR:
                _link(ctx.case_file(row["set"], case_id, "lesion"), folder / LABELS_TR / label_file(case_id))
    write_dataset_json(folder, variant.channel_names(map_channel), {"background": 0, "lesion": 1}, len(internal),
                       f"adU-Net variant {variant.name}: T2W, ADC, hbv (on the T2W grid)"
                       + (f" + {map_model} anomaly maps of {', '.join(variant.maps)}" if variant.maps else ""))
    return folder


def write_splits(ctx: RunContext, dataset_name: str) -> Path:
    """nnU-Net's splits file for a dataset: the run's ``splits.json`` (notebook 01's folds)."""
    if not ctx.splits.is_file():
        raise AdunetError(f"{ctx.splits} not found: run notebook 01 for this params file first")
    return write_splits_file(ctx.nnunet_preprocessed / dataset_name, read_json(ctx.splits))
