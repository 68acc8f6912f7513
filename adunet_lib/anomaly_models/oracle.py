"""The oracle of phantom runs: G(x) = the study's lesion-free twin, and how far a model is from it.

A phantom knows what its pseudo-healthy image *should* be: the synthetic generator renders every study's
twin — the same anatomy, bias fields, noise draws and benign mimics, the csPCa lesions left out — and
notebook 01 puts it on the study's model slices exactly as the study (``twins/<set>/<case>.npz``; real
data have none). Two uses:

- **the oracle model** (``oracle``, joined by name wherever a map model is named: notebook 05's
  ``models``, notebook 06's ``map_model``, the ``adunet_all_oracle`` variant): its maps are what perfect
  pseudo-healthy images give at the run's Φ and nnU-Net budget — the headroom every model reads against;
- **edit statistics** of any model, on lesion slices: *lesion removal* — the share of the lesion's
  intensity change x − twin that G(x) undoes (the least-squares projection of x − G(x) onto x − twin over
  lesion voxels: 1 = removed, 0 = untouched; noise that G(x) smooths away is uncorrelated with the lesion
  and drops out) — and *healthy change*, the mean |G(x) − x| on the gland outside the lesion (0 = kept).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from adunet_lib.errors import AdunetError
from adunet_lib.preprocessing.pipeline import PreprocessedCase, load_twin
from adunet_lib.run_folder import RunContext
from adunet_lib.vocabulary import CROPPED, ORACLE, SEQUENCES, SETS

#: The zones edit statistics are pooled over (as map quality's): gland, PZ (1), TZ (2).
ZONES = {"gland": None, "PZ": 1, "TZ": 2}
#: The sums one case contributes (pooled over cases before the ratios are taken).
SUMS = ("projection", "lesion_energy", "lesion_abs", "lesion_voxels", "healthy_abs", "healthy_voxels")


def has_twins(ctx: RunContext) -> bool:
    """Whether this run's cohorts are phantoms with twins (so the oracle and edit statistics exist)."""
    return any(any(ctx.twins_dir(s).glob("*.npz")) for s in SETS if ctx.twins_dir(s).is_dir())


def twin_files(ctx: RunContext) -> list:
    """Every twin the oracle reads (what its maps are made from: their fingerprint)."""
    return sorted(p for s in SETS if ctx.twins_dir(s).is_dir() for p in ctx.twins_dir(s).glob("*.npz"))


def twin_stack(ctx: RunContext, pre: PreprocessedCase, mode: str = CROPPED) -> np.ndarray | None:
    """The case's twin on its ``mode`` slices, ``(3, n, S, S)``; None when the run has none for it."""
    for set_name in SETS:
        twin = load_twin(ctx.twin_slices(set_name, pre.case_id), pre.stamp)
        if twin is not None and mode in twin:
            return twin[mode]
    return None


def oracle_slices(ctx: RunContext, pre: PreprocessedCase) -> np.ndarray:
    """G(x) of the oracle: the twin, ``(3, n, S, S)``; one line naming the case when it has none."""
    twin = twin_stack(ctx, pre)
    if twin is None:
        where = " or ".join(str(ctx.twin_slices(s, pre.case_id)) for s in SETS)
        raise AdunetError(f"case {pre.case_id}: the {ORACLE} needs the phantom's lesion-free twin ({where}), which "
                          "only synthetic cohorts have; rerun notebook 01 of a synthetic run, or use a trained model")
    return twin


def edit_sums(images: np.ndarray, healthy: np.ndarray, twin: np.ndarray, gland: np.ndarray, lesion: np.ndarray,
              zones: np.ndarray) -> dict[str, dict[str, dict[str, float]]]:
    """Per sequence and zone, the sums behind lesion removal and healthy change, on lesion slices.

    Args:
        images, healthy, twin: x, G(x) and the twin, ``(3, n, S, S)`` on one case's slice grid.
        gland, lesion, zones: ``(n, S, S)`` on the same grid.
    """
    on_lesion_slice = lesion.reshape(len(lesion), -1).any(axis=1)[:, None, None]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for c, seq in enumerate(SEQUENCES):
        x, g, t = (a[c].astype(np.float64) for a in (images, healthy, twin))
        out[seq] = {}
        for zone, code in ZONES.items():
            region = (gland > 0) & (True if code is None else zones == code) & on_lesion_slice
            inside, outside = region & (lesion > 0), region & (lesion == 0)
            change, signal = (x - g)[inside], (x - t)[inside]
            out[seq][zone] = {"projection": float(change @ signal), "lesion_energy": float(signal @ signal),
                              "lesion_abs": float(np.abs(change).sum()), "lesion_voxels": int(inside.sum()),
                              "healthy_abs": float(np.abs(g - x)[outside].sum()), "healthy_voxels": int(outside.sum())}
    return out


def mean_sums(sums: Sequence[dict[str, dict[str, dict[str, float]]]]) -> dict[str, dict[str, dict[str, float]]]:
    """The mean of several :func:`edit_sums` of one case (maps that are the mean of several models' maps:
    their models' mean removal and change). Voxel counts are the same in each and stay counts."""
    if len(sums) == 1:
        return sums[0]
    return {seq: {zone: {key: type(value)(np.mean([s[seq][zone][key] for s in sums]))
                         for key, value in sums[0][seq][zone].items()}
                  for zone in sums[0][seq]} for seq in sums[0]}


def edit_scores(sums: Iterable[dict[str, float]]) -> dict[str, float]:
    """Pooled ``lesion_removal``, ``lesion_edit`` (mean |x − G(x)| in lesions) and ``healthy_change``."""
    total = dict.fromkeys(SUMS, 0.0)
    for part in sums:
        for key in SUMS:
            total[key] += part[key]
    nan = float("nan")
    return {"lesion_removal": total["projection"] / total["lesion_energy"] if total["lesion_energy"] > 0 else nan,
            "lesion_edit": total["lesion_abs"] / total["lesion_voxels"] if total["lesion_voxels"] else nan,
            "healthy_change": total["healthy_abs"] / total["healthy_voxels"] if total["healthy_voxels"] else nan}
