"""Pseudo-healthy images G(x) from the models trained in a run (what notebooks 04–05 and
``adunet predict`` reconstruct with).

The run folder says which checkpoints exist (:meth:`RunContext.model_checkpoints`); this module
loads them once per call site (``cache``) and applies them to slices.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from adunet_lib.anomaly_models.checkpoint import load_model
from adunet_lib.anomaly_models.data import channels_of
from adunet_lib.errors import AdunetError
from adunet_lib.run_folder import RunContext
from adunet_lib.vocabulary import CROPPED, ORACLE


def checkpoints(ctx: RunContext, model: str, mode: str = CROPPED, part: int | None = None) -> list[tuple[str, Path]]:
    """``(sequence, model.pt)`` of ``model`` covering all three sequences; a one-line error if missing."""
    found = ctx.model_checkpoints(model, mode, part)
    if not found:
        which = f"{model} ({mode}{'' if part is None else f', map part {part}'})"
        raise AdunetError(f"{ctx.model_dir(model, 'all', mode).parent}: {which} is not trained in this run "
                          "(notebooks 02–04)")
    return found


def reconstruct_stack(ctx: RunContext, model: str, images: np.ndarray, mode: str = CROPPED,
                      masks: np.ndarray | None = None, cache: dict | None = None, part: int | None = None) -> np.ndarray:
    """Pseudo-healthy G(x) of slices ``(N, 3, S, S)`` (all three sequences), in [0, 1].

    For cropped images the result is masked to the gland like the input. ``cache`` keeps loaded
    models between calls; ``part``: the cross-fitted model of a map part (leak-free maps).
    """
    if model == ORACLE:
        raise AdunetError(f"the {ORACLE} reconstructs whole preprocessed cases (its twin), not loose slices: "
                          "use pseudo_healthy()")
    cache = {} if cache is None else cache
    out = np.zeros_like(images)
    for sequence, path in checkpoints(ctx, model, mode, part):
        if path not in cache:
            cache[path] = load_model(path, device=ctx.device)
        channels = channels_of(sequence)
        torch.manual_seed(ctx.seed)  # stochastic models reconstruct reproducibly
        out[:, channels] = cache[path].reconstruct(torch.from_numpy(np.ascontiguousarray(images[:, channels]))).numpy()
    if masks is not None and mode == CROPPED:
        out = out * masks
    return out


def pseudo_healthy(ctx: RunContext, model: str, pre, cache: dict | None = None, part: int | None = None) -> np.ndarray:
    """G(x) for every gland slice of a preprocessed case, ``(3, n, S, S)`` (non-gland slices: the input);
    ``part``: use the cross-fitted model that never saw this case (leak-free maps). The ``oracle``
    (phantom runs) gives the case's lesion-free twin."""
    if model == ORACLE:
        from adunet_lib.anomaly_models.oracle import oracle_slices

        return oracle_slices(ctx, pre)
    st = pre.stack(CROPPED)
    keep = st.gland_slices()
    out = st.images.copy()
    if keep.size:
        stack = np.ascontiguousarray(st.images[:, keep].transpose(1, 0, 2, 3))
        rec = reconstruct_stack(ctx, model, stack, CROPPED, st.gland[keep][:, None].astype(np.float32), cache, part)
        out[:, keep] = rec.transpose(1, 0, 2, 3)
    return out
