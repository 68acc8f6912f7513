"""nnU-Net v2 raw datasets (``DatasetXXX_Name/imagesTr/{case}_{0000..}.nii.gz``, ``labelsTr``, ``imagesTs``).

Every channel is written on the case's original T2W grid: T2W as read, ADC and hbv resampled onto
it (linear), the anomaly maps as notebook 05 wrote them (already on that grid). The sequences are
written once into a shared folder and linked into each variant's dataset.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from adunet_lib.anomaly_maps.maps import map_path
from adunet_lib.data.case import SEQUENCES, load_case as load_raw
from adunet_lib.data.image import Image, read_image, write_image
from adunet_lib.errors import AdunetError
from adunet_lib.fileio import write_json
from adunet_lib.preprocessing.geometry import resample_to
from adunet_lib.preprocessing.stage import load_case
from adunet_lib.progress import progress
from adunet_lib.runner.context import RunContext
from adunet_lib.segmentation.variants import VARIANTS, channel_names

SUFFIX = ".nii.gz"


def dataset_name(dataset_id: int, variant: str) -> str:
    return f"Dataset{dataset_id:03d}_adunet_{variant}"


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    try:
        os.symlink(os.path.relpath(src, dst.parent), dst)
    except OSError:  # file systems without symlinks
        shutil.copyfile(src, dst)


def export_sequences(ctx: RunContext, cases: pd.DataFrame, show_progress: bool = True) -> Path:
    """T2W, ADC, hbv (on the T2W grid) and the binary lesion label of every case, once."""
    shared = ctx.nnunet / "raw" / "_sequences"
    for _, row in progress(list(cases.iterrows()), desc="export sequences", unit="case", enabled=show_progress):
        files = [shared / f"{row['case_id']}_{seq}{SUFFIX}" for seq in SEQUENCES]
        label = shared / f"{row['case_id']}_label{SUFFIX}"
        if all(f.is_file() for f in files) and (label.is_file() or not row["labeled"]):
            continue
        raw = load_raw(load_case(ctx, row["set"], row["case_id"]).source_case())
        t2w = raw.t2w
        for seq, path in zip(SEQUENCES, files):
            image = t2w if seq == "t2w" else resample_to(raw.images[seq], t2w.geometry, "linear")
            write_image(Image(image.array.astype(np.float32), t2w.geometry), path)
        if raw.lesion is not None:
            write_image(Image(raw.lesion.array.astype(np.uint8), t2w.geometry), label)
    return shared


def export_variant(ctx: RunContext, variant: str, dataset_id: int, cases: pd.DataFrame, map_model: str) -> Path:
    """Write (links to) the raw dataset of ``variant``; returns its folder.

    Training cases (``imagesTr``/``labelsTr``) are the labelled internal cases (all folds: nnU-Net
    cross-validates over them); ``imagesTs`` holds the external test cases.
    """
    shared = ctx.nnunet / "raw" / "_sequences"
    folder = ctx.nnunet / "raw" / dataset_name(dataset_id, variant)
    maps = VARIANTS[variant]
    internal = cases[(cases["set"] == "internal") & cases["labeled"].astype(bool)]
    external = cases[cases["set"] != "internal"]
    for subset, sub in ((internal, "imagesTr"), (external, "imagesTs")):
        for case_id in subset["case_id"]:
            sources = [shared / f"{case_id}_{seq}{SUFFIX}" for seq in SEQUENCES]
            sources += [map_path(ctx.maps / map_model, case_id, seq) for seq in maps]
            for k, src in enumerate(sources):
                if not src.is_file():
                    raise AdunetError(f"case {case_id}: {src} missing: run notebook 05 (maps) / the sequence export")
                if src.suffix == ".mha":  # maps: nnU-Net wants one file ending per dataset
                    dst = ctx.nnunet / "raw" / "_maps" / map_model / f"{case_id}_{maps[k - 3]}{SUFFIX}"
                    if not dst.is_file():
                        write_image(read_image(src), dst)
                    src = dst
                _link(src, folder / sub / f"{case_id}_{k:04d}{SUFFIX}")
            if sub == "imagesTr":
                _link(shared / f"{case_id}_label{SUFFIX}", folder / "labelsTr" / f"{case_id}{SUFFIX}")
    write_json(folder / "dataset.json", {
        "channel_names": channel_names(variant),
        "labels": {"background": 0, "lesion": 1},
        "numTraining": int(len(internal)),
        "file_ending": SUFFIX,
        "name": f"adunet_{variant}",
        "description": f"adU-Net variant {variant}: T2W, ADC, hbv (on the T2W grid)"
                       + (f" + {map_model} anomaly maps of {', '.join(maps)}" if maps else ""),
    })
    return folder


def write_splits(ctx: RunContext, dataset_id: int, variant: str, cases: pd.DataFrame) -> Path:
    """``splits_final.json`` from the folds of notebook 01 (fold 0 = the validation split)."""
    internal = cases[(cases["set"] == "internal") & cases["labeled"].astype(bool)]
    folds = sorted(int(f) for f in internal["fold"].unique())
    splits = [{"train": sorted(internal.loc[internal["fold"] != f, "case_id"]),
               "val": sorted(internal.loc[internal["fold"] == f, "case_id"])} for f in folds]
    path = ctx.nnunet / "preprocessed" / dataset_name(dataset_id, variant) / "splits_final.json"
    write_json(path, splits)
    # nnU-Net also looks here: keep a copy with the run's own files
    write_json(ctx.nnunet / "splits" / f"{dataset_name(dataset_id, variant)}.json", splits)
    return path


def read_dataset_json(folder: Path) -> dict:
    return json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
