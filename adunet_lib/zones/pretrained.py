"""A pretrained whole-gland model for real studies, with nothing to train: ``lavlab-taps``.

`TAPS <https://github.com/laviolette-lab/taps>`_ (MIT licence) is a MONAI SegResNetDS trained on
real T2W images; the wheel ships its ONNX weights, so nothing is downloaded at run time. It segments
the whole prostate — no peripheral / transition zone split. adunet's crop and background mask need
the gland only; what the zone split is still used for is in ``docs/paper-settings.md``.

It is an optional extra (``pip install -e ".[gland]"``); :func:`require_taps` says so in one line when
it is missing. :func:`pretrained_gland` takes a study's T2W :class:`~adunet_lib.data.image.Image` and
returns the gland mask on that same grid (geometry checked, then set exactly), the largest connected
component, with the same plausible-volume check as the zone model's masks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from adunet_lib.data.image import Image, read_image, resample_to, write_image
from adunet_lib.errors import AdunetError, CaseError
from adunet_lib.zones.masks import implausible, largest_gland_component, volume_ml

#: the optional extra that installs the model
EXTRA = "gland"
#: the package (and its import name) that carries it
PACKAGE, MODULE = "lavlab-taps", "taps"
#: how far the returned mask's grid may differ from the T2W's before it is resampled (NIfTI round trip)
GRID_TOLERANCE = 1e-3
MISSING = (f"the pretrained gland model needs the optional extra: pip install -e \".[{EXTRA}]\" "
           f"(installs {PACKAGE}, MIT licence)")


@dataclasses.dataclass(frozen=True)
class GlandResult:
    """A study's gland from the pretrained model.

    Attributes:
        mask: uint8 gland mask (1 = gland) on the study's T2W grid, exactly.
        ml: its volume.
        seconds: wall time of the model's call.
        notes: the model's own quality-control warnings (border contact, holes …), one string each.
        made_by: a line for the records (model and version).
    """

    mask: Image
    ml: float
    seconds: float
    notes: tuple[str, ...]
    made_by: str


def require_taps() -> Any:
    """The ``taps`` module, or :class:`AdunetError` naming the extra to install.

    Importing taps configures Python's root logger (``logging.basicConfig``); that is undone here so
    adunet's output stays as it was.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        import taps
        import taps.inference  # noqa: F401
    except ImportError:
        raise AdunetError(MISSING) from None
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        root.setLevel(level)
    return taps


def available() -> bool:
    """Whether the pretrained gland model is installed (without importing it)."""
    import importlib.util

    return importlib.util.find_spec(MODULE) is not None


def describe() -> str:
    """``pretrained gland (lavlab-taps <version>, MIT)`` — what the records say made a mask."""
    try:
        from importlib.metadata import version

        return f"pretrained gland ({PACKAGE} {version(PACKAGE)}, MIT)"
    except Exception:  # noqa: BLE001  (metadata missing: an editable or vendored copy)
        return f"pretrained gland ({PACKAGE}, MIT)"


def _providers(device: str) -> tuple[str, list[str]]:
    """(taps device, onnxruntime providers): the GPU only where both torch and onnxruntime have one."""
    import onnxruntime as ort
    import torch

    if device.startswith("cuda") and torch.cuda.is_available() \
            and "CUDAExecutionProvider" in ort.get_available_providers():
        return "cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return "cpu", ["CPUExecutionProvider"]


@contextlib.contextmanager
def _session_options(taps_inference: Any, providers: list[str]) -> Iterator[None]:
    """While taps runs: its ONNX session with adunet's thread count (torch's) and the providers chosen
    here (so a machine without a GPU never tries, and warns about, the CUDA provider)."""
    import onnxruntime as ort
    import torch

    original = taps_inference.ONNXPredictor

    class Predictor(original):  # type: ignore[misc,valid-type]
        def __init__(self, model_path: Path, device: str):  # noqa: ARG002  (providers chosen above)
            options = ort.SessionOptions()
            options.log_severity_level = 3  # errors only: no provider chatter
            options.intra_op_num_threads = max(1, torch.get_num_threads())
            options.inter_op_num_threads = 1
            self.session = ort.InferenceSession(str(model_path), sess_options=options, providers=providers)
            self.input_name = self.session.get_inputs()[0].name

    taps_inference.ONNXPredictor = Predictor
    try:
        yield
    finally:
        taps_inference.ONNXPredictor = original


@contextlib.contextmanager
def _captured_warnings(name: str) -> Iterator[list[str]]:
    """The taps logger's messages, collected instead of printed."""
    logger = logging.getLogger(name)
    notes: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING:
                notes.append(record.getMessage().removeprefix("Warning: ").rstrip("."))

    handler, propagate = Collect(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield notes
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def on_t2w_grid(mask: Image, t2w: Image, case_id: str, where: Path | str) -> Image:
    """The model's mask on the T2W grid exactly: its own grid within :data:`GRID_TOLERANCE` of the
    T2W's takes the T2W's geometry as is; a grid that moved further (it should not) is resampled with
    nearest neighbours. A mask that does not overlap the T2W at all is a :class:`CaseError`."""
    if mask.geometry.same_as(t2w.geometry, GRID_TOLERANCE):
        return Image((mask.array > 0).astype(np.uint8), t2w.geometry)
    moved = resample_to(mask.with_array((mask.array > 0).astype(np.uint8)), t2w.geometry, "nearest")
    if not moved.array.any():
        raise CaseError(case_id, where, "the pretrained gland mask does not overlap the T2W image "
                        f"({'; '.join(mask.geometry.differences(t2w.geometry))})")
    return moved


def pretrained_gland(t2w: Image, case_id: str, where: Path | str, min_ml: float = 5.0, max_ml: float = 500.0,
                     device: str = "cpu", log: Callable[[str], None] = print) -> GlandResult:
    """Segment the whole prostate of one study from its T2W image with the pretrained model.

    Args:
        t2w: the study's T2W image (its grid is the grid of the result).
        case_id, where: the case and its T2W file, named by every error.
        min_ml, max_ml: a gland outside this volume stops the case (the zone model's check).
        device: adunet's device; the GPU is used only where torch and onnxruntime both have one.

    Raises:
        AdunetError: the extra is not installed (one line naming it).
        CaseError: no gland found, or an implausible one.
    """
    import time

    taps = require_taps()
    taps_device, providers = _providers(device)
    with tempfile.TemporaryDirectory(prefix="adunet_gland_") as tmp:
        source, target = Path(tmp) / f"{case_id}_t2w.nii.gz", Path(tmp) / f"{case_id}_gland.nii.gz"
        write_image(Image(t2w.array.astype(np.float32), t2w.geometry), source, compress=False)
        start = time.perf_counter()
        try:
            with _session_options(taps.inference, providers), _captured_warnings(taps.inference.__name__) as notes:
                written = taps.segment(source, target, checkpoint=None, device=taps_device, exact=True)
        except taps.inference.BlankMaskError:
            raise CaseError(case_id, where, "the pretrained gland model found no prostate in the T2W image") from None
        seconds = time.perf_counter() - start
        mask = read_image(written)
    gland = largest_gland_component(on_t2w_grid(mask, t2w, case_id, where))
    reason = implausible(gland, min_ml, max_ml)
    if reason:
        raise CaseError(case_id, where, reason.replace("predicted zone mask", "pretrained gland mask")
                        .replace("no PZ or TZ voxel", "no gland voxel"))
    ml = volume_ml(gland.array, gland.spacing)
    for note in notes:
        log(f"{case_id}: pretrained gland: {note}")
    return GlandResult(gland, ml, seconds, tuple(notes), describe())
