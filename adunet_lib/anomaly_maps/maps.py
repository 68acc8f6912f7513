"""From pseudo-healthy slices to anomaly maps on the original T2W grid.

The paper's Eq. (1): a = Φ(|x − G(x)|), Φ a blur with kernel size 8. Here Φ is the normalised box
(mean) filter of ``kernel_size × kernel_size`` pixels on each 2D model slice — what ``cv2.blur`` with
an 8×8 kernel computes (for an even size the window is [i − k/2, i + k/2 − 1]); borders reflect.
Then: the background outside the gland is set to 0, slices without prostate are 0, and the stack is
resampled (linear) from the model's slice grid to the case's T2W grid — same origin, direction and
spacing as the T2W image — and masked to the gland there too.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.ndimage import uniform_filter

from adunet_lib.data.image import Image, read_image
from adunet_lib.preprocessing.pipeline import PreprocessedCase
from adunet_lib.run_folder import RunContext
from adunet_lib.vocabulary import CROPPED, ORACLE, SEQUENCE_DISPLAY, SEQUENCES

#: The sequence whose anomaly map the case viewers overlay.
VIEWER_SEQUENCE = "adc"


def blur(residual: np.ndarray, kernel_size: int) -> np.ndarray:
    """Φ: box filter of ``kernel_size`` pixels in-plane, slice by slice (``(..., H, W)``)."""
    if kernel_size <= 1:
        return residual.astype(np.float32)
    size = (1,) * (residual.ndim - 2) + (kernel_size, kernel_size)
    return uniform_filter(residual.astype(np.float32), size=size, mode="reflect")


def slice_maps(images: np.ndarray, reconstructions: np.ndarray, gland: np.ndarray, kernel_size: int) -> np.ndarray:
    """a = Φ(|x − G(x)|) on the slice grid, 0 outside the gland. Arrays ``(C, n, S, S)``, gland ``(n, S, S)``."""
    residual = np.abs(images - reconstructions)
    return (blur(residual, kernel_size) * (gland[None] > 0)).astype(np.float32)


def case_maps(pre: PreprocessedCase, reconstructions: np.ndarray, kernel_size: int,
              mode: str = CROPPED) -> dict[str, Image]:
    """One map per sequence on the case's original T2W grid.

    Args:
        pre: the preprocessed case.
        reconstructions: G(x) for every slice of the case's slice grid, ``(3, n, S, S)``; slices
            without gland are ignored (their map is 0).
        kernel_size: Φ's kernel size in model-slice pixels.
    """
    st = pre.stack(mode)
    has_gland = np.zeros(st.gland.shape[0], bool)
    has_gland[st.gland_slices()] = True
    recon = np.where(has_gland[None, :, None, None], reconstructions, st.images)
    stack = slice_maps(st.images, recon, st.gland, kernel_size)
    return {seq: pre.to_t2w(stack[c], mode=mode, mask=True) for c, seq in enumerate(SEQUENCES)}


def map_makers(model: str, part: int | None, run_parts: Sequence[int], held_out: str) -> list[int | None]:
    """Which of ``model``'s networks make one case's maps (``None``: the model trained on every part).

    Without leak-free maps (no ``run_parts``): the model. With them, a training-split case of part ``part``
    gets the cross-fitted model blind to it; every other case (validation, external, a new study) gets the
    part models' mean map (``held_out="parts"``: the networks whose maps nnU-Net learns from, so the
    channel has one scale in training and testing) or the model (``"full"``). The oracle is one "network".
    """
    if model == ORACLE or not run_parts:
        return [None]
    if part is not None:
        return [part]
    return list(run_parts) if held_out == "parts" else [None]


def model_maps(ctx: RunContext, model: str, pre: PreprocessedCase, kernel_size: int, makers: Sequence[int | None],
               cache: dict | None = None) -> tuple[dict[str, Image], list[np.ndarray]]:
    """A case's maps on its T2W grid, the mean over ``makers``' maps (:func:`map_makers`), and each maker's
    G(x) (``(3, n, S, S)``). The mean is taken on the T2W grid: resampling and masking are linear, so it is
    the map of the mean residual image."""
    from adunet_lib.anomaly_models.inference import pseudo_healthy

    healthy = [pseudo_healthy(ctx, model, pre, cache, part) for part in makers]
    each = [case_maps(pre, h, kernel_size) for h in healthy]
    if len(each) == 1:
        return each[0], healthy
    return {seq: each[0][seq].with_array(np.mean([m[seq].array for m in each], axis=0).astype(np.float32))
            for seq in SEQUENCES}, healthy


def case_overlays(ctx: RunContext, model: str, set_name: str, case_id: str) -> tuple[dict, dict]:
    """Volumes and overlays for the case viewer, on the T2W grid cropped to the gland box."""
    pre = PreprocessedCase.from_run(ctx, set_name, case_id)
    box = pre.box.slices()
    volumes = {seq: ctx.case_image(set_name, case_id, seq).array[box] for seq in SEQUENCES}
    overlays = {"gland": pre.gland_in_box,
                "anomaly": read_image(ctx.map_file(model, case_id, VIEWER_SEQUENCE)).array[box]}
    lesion = ctx.case_image(set_name, case_id, "lesion")
    if lesion is not None:
        overlays["lesion"] = lesion.array[box]
    return volumes, overlays


def overlay_labels(model: str, sequence: str = VIEWER_SEQUENCE) -> dict[str, str]:
    """The viewer's ``labels`` for :func:`case_overlays`' anomaly map: its model and sequence."""
    from adunet_lib.anomaly_models.registry import display_name

    return {"anomaly": f"{display_name(model)} · {SEQUENCE_DISPLAY[sequence]}"}
