"""Slice datasets for the reconstruction models, read from the preprocessed run folder."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from adunet_lib.anomaly_models.base import SliceBatch
from adunet_lib.cache import fingerprint
from adunet_lib.errors import AdunetError
from adunet_lib.run_folder import RunContext
from adunet_lib.vocabulary import CROPPED, HEALTHY, LABEL_CODES, LESION, SEQUENCES, TRAIN


def channels_of(sequence: str) -> list[int]:
    """Channel indices for a model trained on ``sequence`` (``t2w``, ``adc``, ``hbv`` or ``all``)."""
    if sequence == "all":
        return list(range(len(SEQUENCES)))
    if sequence not in SEQUENCES:
        raise AdunetError(f"unknown sequence {sequence!r}; use one of {', '.join(SEQUENCES)} or 'all'")
    return [SEQUENCES.index(sequence)]


@dataclasses.dataclass
class SliceData:
    """2D slices in memory: images ``(N, C, S, S)``, labels ``(N,)`` (0 healthy, 1 lesion, -1 unknown),
    gland masks ``(N, 1, S, S)``, and where each slice came from (``index``: set, case_id, slice, z).
    ``key`` fingerprints where the slices came from (empty for slices made in memory)."""

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    lesions: np.ndarray
    index: pd.DataFrame
    key: str = ""

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, keep: np.ndarray) -> SliceData:
        keep = np.asarray(keep)
        return SliceData(self.images[keep], self.labels[keep], self.masks[keep], self.lesions[keep],
                         self.index.iloc[np.flatnonzero(keep) if keep.dtype == bool else keep].reset_index(drop=True),
                         self.key)

    def batch(self, rows: np.ndarray | torch.Tensor) -> SliceBatch:
        rows = np.asarray(rows)
        return SliceBatch(torch.from_numpy(self.images[rows]), torch.from_numpy(self.labels[rows]).long(),
                          torch.from_numpy(self.masks[rows]))


def load_slices(ctx: RunContext, slices: pd.DataFrame, sequence: str = "all", mode: str = CROPPED,
                splits: Sequence[str] | None = None, sets: Sequence[str] | None = None) -> SliceData:
    """Gather the gland slices listed in ``slices`` (the run's ``slices.csv``) into memory.

    Args:
        ctx: the run.
        slices: the slice table (optionally pre-filtered).
        sequence: which channel(s): ``t2w``, ``adc``, ``hbv`` or ``all``.
        mode: ``cropped`` (gland box, masked) or ``full`` (whole field of view).
        splits, sets: keep only these splits / sets.
    """
    from adunet_lib.preprocessing.pipeline import PreprocessedCase

    table = slices
    if splits is not None:
        table = table[table["split"].isin(list(splits))]
    if sets is not None:
        table = table[table["set"].isin(list(sets))]
    if table.empty:
        raise AdunetError(f"no slices for splits={splits} sets={sets}: run notebook 01 first or check the split names")
    channels = channels_of(sequence)
    images, masks, lesions, labels, stamps, index = [], [], [], [], [], []
    for (set_name, case_id), rows in table.groupby(["set", "case_id"], sort=False):
        pre = PreprocessedCase.from_run(ctx, set_name, case_id)
        stamps.append(pre.stamp)
        stack = pre.stack(mode)
        k = rows["slice"].to_numpy()
        images.append(stack.images[channels][:, k].transpose(1, 0, 2, 3))
        masks.append(stack.gland[k][:, None].astype(np.float32))
        lesions.append(stack.lesion[k][:, None].astype(np.uint8))
        labels.append(rows["label"].map(LABEL_CODES).fillna(-1).to_numpy(np.int64))
        index.append(rows[["set", "split", "case_id", "slice", "z", "label"]])
    index = pd.concat(index, ignore_index=True)
    key = fingerprint({"sequence": sequence, "mode": mode, "slices": index.values.tolist()}, upstream=stamps)
    return SliceData(np.ascontiguousarray(np.concatenate(images), dtype=np.float32), np.concatenate(labels),
                     np.concatenate(masks), np.concatenate(lesions), index, key)


def cohort_slices(slices: pd.DataFrame, uses_labels: bool) -> pd.DataFrame:
    """The rows of a slice table that train a model: the anomaly cohort's (notebook 01's
    ``anomaly_train``); a label-using model also gets the training split's lesion slices."""
    if "anomaly_train" not in slices:
        return slices
    keep = slices["anomaly_train"].astype(bool)
    if uses_labels:
        keep |= (slices["label"] == LESION) & (slices["split"] == TRAIN)
    return slices[keep]


def map_parts(table: pd.DataFrame) -> list[int]:
    """The map parts of a run's cases or slices table (leak-free maps; [] when off)."""
    if "map_part" not in table:
        return []
    return sorted(int(p) for p in table["map_part"].unique() if p >= 0)


def cases_seen(cases: pd.DataFrame, uses_labels: bool) -> list[str]:
    """The cases whose map was made by a model that was trained on their slices (recorded with the
    maps): training-split cases, unless leak-free maps give each one a model blind to it."""
    train = (cases["split"] == TRAIN) & (cases["map_part"] < 0 if "map_part" in cases else True)
    seen = train & (cases["anomaly_train"].astype(bool) if "anomaly_train" in cases else True)
    if uses_labels:
        seen |= train & cases["cspca"].fillna(False).astype(bool)
    return sorted(cases.loc[seen, "case_id"])


def training_slices(data: SliceData, uses_labels: bool, healthy_from: str = "negative_cases") -> SliceData:
    """The slices a model learns from.

    Models that learn the healthy distribution (``uses_labels=False``) get healthy slices only —
    by default from csPCa-negative cases, as the paper trains on patients without visible
    abnormality (``healthy_from="healthy_slices"`` also takes lesion-free slices of positive cases).
    Label-using models (FP-GAN, diffusion classifier) get every labelled slice.
    """
    labelled = data.labels >= 0
    if uses_labels:
        keep = labelled
        if not (data.labels[keep] == LABEL_CODES[LESION]).any():
            raise AdunetError("no lesion slices among the training cases: this model needs some")
    else:
        keep = data.labels == LABEL_CODES[HEALTHY]
        if healthy_from == "negative_cases":
            positive_cases = set(data.index.loc[data.labels == LABEL_CODES[LESION], "case_id"])
            keep = keep & ~data.index["case_id"].isin(positive_cases).to_numpy()
        elif healthy_from != "healthy_slices":
            raise AdunetError(f"healthy_from must be 'negative_cases' or 'healthy_slices', not {healthy_from!r}")
    if not keep.any():
        raise AdunetError("no training slices left after selection")
    return data.subset(keep)


class BatchSampler:
    """Seeded random batches; balanced healthy/lesion for label-using models. Its state is a tensor
    (checkpointed, so a resumed run draws the same batches as an uninterrupted one)."""

    def __init__(self, data: SliceData, batch_size: int, balanced: bool, seed: int, flip: bool = True):
        self.data = data
        self.flip = flip
        self.batch_size = int(batch_size)
        self.balanced = balanced
        self.generator = torch.Generator().manual_seed(int(seed))
        self.healthy = torch.from_numpy(np.flatnonzero(data.labels == 0))
        self.lesion = torch.from_numpy(np.flatnonzero(data.labels == 1))

    def next(self) -> SliceBatch:
        if self.balanced and len(self.lesion) and len(self.healthy):
            n_lesion = self.batch_size // 2
            rows = torch.cat([
                self.healthy[torch.randint(len(self.healthy), (self.batch_size - n_lesion,), generator=self.generator)],
                self.lesion[torch.randint(len(self.lesion), (n_lesion,), generator=self.generator)],
            ])
        else:
            rows = torch.randint(len(self.data), (self.batch_size,), generator=self.generator)
        batch = self.data.batch(rows.numpy())
        if not self.flip:
            return batch
        # random flips left-right: prostate anatomy is near-symmetric; cheap augmentation
        flip = torch.rand(self.batch_size, generator=self.generator) < 0.5
        for name in ("images", "masks"):
            t = getattr(batch, name)
            t[flip] = t[flip].flip(-1)
        return batch

    def get_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)
