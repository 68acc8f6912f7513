"""The paper's sizes with tiny budgets: every network a params file builds, one step each, and one
nnU-Net training step + prediction at the configuration it names, on real geometry — so that a shape,
memory or configuration bug of a GPU-days run (``params/paper.yaml``) shows in minutes, not at hour 30.

    adunet rehearse params/paper.yaml [--studies ../shared/realdata/picai] [--device cpu|cuda] [--out CSV]

What it runs, per reconstruction model of the params file (its block's ``models``, at the block's
``slice_size``, channels — 1 for ``per_sequence`` — and the model's own hyperparameters, untouched):
every kind of training iteration the model mixes in a run (the FP-GAN's critic-only and critic +
generator iterations, the DDPM's iterations with and without its classifier) at a batch of
``batch_size`` slices (default 2, not the block's: the sizes of the networks are what is rehearsed),
then one translation (the DDPM's guided DDIM loop with one step), each checked for finite losses and
an output of the input's shape. And for nnU-Net, the segmentation block's ``configuration``
(3d_fullres in paper.yaml) planned by nnU-Net on real studies with adU-Net(all)'s six channels: one
training iteration (and one validation iteration) of the planned network, whose patch is cut to the
smallest its pooling allows (``rehearsal_patch``; nnU-Net's patch does not change its network), then a
prediction of a study that was not trained on, checked to land on that study's own T2W grid.

What it does not do: run the series (notebooks 01–07) at paper sizes. That is ``adunet reproduce`` on
a GPU; one 3d_fullres iteration at the planned patch takes minutes on a 2-core CPU
(``figures/paper-rehearsal/cost_per_iteration.csv``), and ``adunet plan`` says what the full run costs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import json
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adunet_lib.errors import AdunetError

#: the params blocks that train reconstruction models (notebooks 02–04)
MODEL_BLOCKS = ("autoencoders", "diffusion", "fixed_point_gan")
#: DDIM steps the rehearsal's DDPM translation runs (the network is the same at any step count)
REHEARSAL_DDIM_STEPS = 1
#: nnU-Net channel names of adU-Net(all)'s dataset: the three sequences (ADC normalised as "CT", as
#: PI-CAI's baseline does) and three anomaly maps on one shared scale
ALL_CHANNELS = ("T2W", "CT", "HBV", "noNorm", "noNorm", "noNorm")


@dataclasses.dataclass(frozen=True)
class ModelAtSize:
    """A reconstruction model as a params file trains it."""

    block: str
    name: str
    config: dict[str, Any]
    image_size: int
    channels: int
    batch_size: int
    iterations: int


def models_at_size(params_file: str | Path) -> list[ModelAtSize]:
    """Every reconstruction model of ``params_file`` with the sizes it trains at."""
    from adunet_lib.runner.params import load_params

    blocks = load_params(params_file).blocks
    size = int(blocks.get("preprocessing", {}).get("slice_size", 64))
    out = []
    for block in MODEL_BLOCKS:
        b = blocks.get(block, {})
        channels = 1 if b.get("channels", "per_sequence") == "per_sequence" else 3
        for name, config in (b.get("models") or {}).items():
            out.append(ModelAtSize(block, name, dict(config or {}), size, channels, int(b.get("batch_size", 8)),
                                   int(b.get("iterations", 1))))
    return out


def iteration_kinds(model: Any, iterations: int) -> list[tuple[int, float, str]]:
    """(step counter, share of a training run, label) for each kind of iteration ``model`` mixes in a run
    of ``iterations``: the FP-GAN's critic-only and critic + generator steps, the DDPM's steps with and
    without its classifier; one kind for the others."""
    c = model.config
    if model.name == "fpgan" and getattr(c, "n_critic", 1) > 1:
        return [(0, (c.n_critic - 1) / c.n_critic, "critic"), (c.n_critic - 1, 1 / c.n_critic, "critic+G")]
    if model.name == "ddpm" and 0 < getattr(c, "classifier_iterations", 0) < iterations:
        share = c.classifier_iterations / iterations
        return [(0, share, "+classifier"), (c.classifier_iterations, 1 - share, "DDPM only")]
    return [(0, 1.0, "")]


class PeakMemory:
    """Peak memory of a phase: CUDA's allocator peak, or the resident set's rise sampled by a thread."""

    def __init__(self, device: Any):
        self.device = device
        self.peak = 0

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:  # not Linux: the process's peak so far (kilobytes on Linux, bytes on macOS)
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    @staticmethod
    def _trim() -> None:
        """Hand freed heap memory back to the system (glibc), so the phase's own rise is visible."""
        libc = ctypes.util.find_library("c")
        if libc:
            trim = getattr(ctypes.CDLL(libc), "malloc_trim", None)
            if trim is not None:
                trim(0)

    def __enter__(self) -> PeakMemory:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return self
        self._trim()
        self._base = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._rss() - self._base)

    def __exit__(self, *exc) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._rss() - self._base)


def _synced(device: Any, fn: Callable[[], Any]) -> tuple[Any, float]:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def rehearse_model(m: ModelAtSize, device: str = "cpu", batch_size: int = 2,
                   ddim_steps: int = REHEARSAL_DDIM_STEPS) -> dict[str, Any]:
    """One training iteration of each kind and one translation of ``m`` at its sizes; a row of the
    rehearsal. Raises :class:`AdunetError` naming the model when a loss is not finite or the
    translation does not come back in the input's shape."""
    import torch

    from adunet_lib.anomaly_models import create
    from adunet_lib.anomaly_models.base import SliceBatch

    torch.manual_seed(0)
    size, channels = m.image_size, m.channels
    try:
        model = create(m.name, channels, size, dict(m.config), device=device)
    except Exception as exc:
        raise AdunetError(f"{m.block}/{m.name}: cannot build at {size}² × {channels} ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    dev = model.device
    model.configure(total_iterations=m.iterations, epoch_length=max(1, m.iterations // 100))
    half = batch_size // 2
    labels = (torch.arange(batch_size) >= batch_size - half).long()  # healthy and lesion slices, as a run mixes them
    batch = SliceBatch(torch.rand(batch_size, channels, size, size), labels,
                       torch.ones(batch_size, 1, size, size)).to(dev)
    model.train()
    seconds, peak, kinds = 0.0, 0, []
    for step, share, kind in iteration_kinds(model, m.iterations):
        model.step = step
        with PeakMemory(dev) as memory:
            losses, took = _synced(dev, lambda: model.train_step(batch))
        bad = {k: v for k, v in (losses or {}).items() if not math.isfinite(float(v))}
        if bad:
            raise AdunetError(f"{m.block}/{m.name}: training iteration ({kind or 'the only kind'}) gave "
                              f"non-finite losses {bad} at {size}² × {channels}")
        seconds += share * took
        peak = max(peak, memory.peak)
        kinds.append(kind)
    params = sum(p.numel() for net in model.networks().values() for p in net.parameters())
    if hasattr(model.config, "ddim_steps"):
        model.config.ddim_steps = min(int(model.config.ddim_steps), ddim_steps)
    x = torch.rand(1, channels, size, size)
    with PeakMemory(dev) as memory:
        out, translate_s = _synced(dev, lambda: model.reconstruct(x))
    if tuple(out.shape) != tuple(x.shape) or not bool(torch.isfinite(out).all()):
        raise AdunetError(f"{m.block}/{m.name}: translation of a {tuple(x.shape)} slice gave "
                          f"{'shape ' + str(tuple(out.shape)) if tuple(out.shape) != tuple(x.shape) else 'non-finite values'}")
    return {"stage": m.block, "item": m.name, "input": f"{batch_size}x{channels}x{size}x{size}",
            "params_m": round(params / 1e6, 3), "kinds": "/".join(k for k in kinds if k),
            "seconds_per_iteration": round(seconds, 3), "peak_mb": round(peak / 2**20),
            "translate_s_per_slice": round(translate_s, 3), "translate_peak_mb": round(memory.peak / 2**20),
            "note": f"paper batch {m.batch_size}; DDIM loop cut to {ddim_steps} step(s)" if hasattr(model.config, "ddim_steps")
            else f"paper batch {m.batch_size}"}


def rehearsal_patch(patch: Sequence[int], strides: Sequence[Sequence[int]]) -> list[int]:
    """The smallest patch nnU-Net's planned network trains on: per axis twice the product of its pooling
    strides (every encoder stage halves a whole number of voxels, and instance norm needs more than one
    voxel at the bottleneck), never more than the planned patch."""
    per_axis = [2 * math.prod(int(s[d]) for s in strides) for d in range(len(patch))]
    return [min(int(p), max(1, n)) for p, n in zip(patch, per_axis)]


def _middle_slices(image: Any, n: int) -> Any:
    """The middle ``n`` slices of ``image``, on the same grid otherwise (SimpleITK moves the origin)."""
    from adunet_lib.data.image import Image

    depth = image.geometry.size[2]
    if n <= 0 or n >= depth:
        return image
    start = (depth - n) // 2
    return Image.from_sitk(image.to_sitk()[:, :, start:start + n])


def _write_study(case: Any, folder: Path, n_channels: int, label: bool, slices: int = 0) -> list[Path]:
    """A study as nnU-Net channels on its T2W grid (ADC and DWI resampled onto it; channels past the
    three sequences repeat them: a map's values do not change the network); its gland as the label.
    ``slices`` > 0: only the T2W grid's middle ``slices`` slices."""
    from adunet_lib.data.image import read_image, resample_to, write_image
    from adunet_lib.nnunet_seam import IMAGES_TR, LABELS_TR, channel_file, label_file

    t2w = _middle_slices(read_image(case.images["t2w"]), slices)
    grid = t2w.geometry
    sequences = [t2w] + [resample_to(read_image(case.images[s]), grid) for s in ("adc", "hbv")]
    files = []
    for k in range(n_channels):
        files.append(write_image(sequences[k % 3], folder / IMAGES_TR / channel_file(case.case_id, k)))
    if label:
        mask = resample_to(read_image(case.gland if case.gland is not None else case.zones), grid, "nearest")
        write_image(mask.with_array((np.asarray(mask.array) > 0).astype(np.uint8)),
                    folder / LABELS_TR / label_file(case.case_id))
    return files


def rehearse_nnunet(studies: str | Path, work: str | Path, configuration: str = "3d_fullres", device: str = "cpu",
                    log: Callable[[str], None] = print, predict_slices: int = 0) -> dict[str, Any]:
    """nnU-Net's ``configuration`` as nnU-Net plans it for the real studies in ``studies`` (any layout
    adunet reads; at least two with a gland or zone mask, one more to predict, else the second one) with
    adU-Net(all)'s six channels: plan, preprocess, one training and one validation iteration of fold 0 at
    :func:`rehearsal_patch`, and a prediction of the held-out study without mirroring, checked to be on
    its own T2W grid (``predict_slices`` > 0: the grid of its middle slices only, for a quicker check).
    ``work`` is a scratch folder (a run folder of its own). A row of the rehearsal."""
    from adunet_lib.data.image import read_geometry
    from adunet_lib.data.readers import open_dataset
    from adunet_lib.fileio import read_json
    from adunet_lib.nnunet_seam import (IMAGES_TR, LABELS_TR, PlanRequest, PredictRequest, PreprocessRequest, TrainRequest, fold_folder,
                                        label_file, plans_file, write_dataset_json, write_splits)
    from adunet_lib.run_folder import RunContext
    from adunet_lib.segmentation.nnunet import call

    cases = sorted(open_dataset(studies).cases, key=lambda c: c.case_id)
    masked = [c for c in cases if c.gland is not None or c.zones is not None]
    if len(masked) < 2:
        raise AdunetError(f"{studies}: the nnU-Net rehearsal needs two studies with a gland or zone mask "
                          f"(found {len(masked)} of {len(cases)})")
    train_case, val_case = masked[:2]
    held_out = next((c for c in cases if c not in masked), val_case)
    work = Path(work)
    ctx = RunContext.create(work / "run", work / "figures", seed=0, device=device, inputs=(studies,))
    dataset_id, name = 999, "Dataset999_rehearsal"
    raw = ctx.nnunet_raw / name
    for sub in (IMAGES_TR, LABELS_TR):
        (raw / sub).mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for case in (train_case, val_case):
        _write_study(case, raw, len(ALL_CHANNELS), label=True)
    write_dataset_json(raw, {str(k): c for k, c in enumerate(ALL_CHANNELS)}, {"background": 0, "lesion": 1}, 2,
                       "adunet rehearsal: real studies, their gland as the label")
    call(ctx, [PlanRequest(dataset_id=dataset_id, num_processes=1, verify=True),
               PreprocessRequest(dataset_id=dataset_id, configurations=(configuration,), num_processes=1)],
         log=log, num_processes=1, label="nnU-Net rehearsal")
    preprocessed = ctx.nnunet_preprocessed / name
    write_splits(preprocessed, [{"train": [train_case.case_id], "val": [val_case.case_id]}])
    planned = read_json(preprocessed / plans_file())["configurations"][configuration]
    arch = planned["architecture"]["arch_kwargs"]
    patch = rehearsal_patch(planned["patch_size"], arch["strides"])
    prepared = time.perf_counter()
    call(ctx, [TrainRequest(dataset_id=dataset_id, configuration=configuration, fold=0, device=device, seed=0,
                            epochs=1, iterations_per_epoch=1, val_iterations_per_epoch=1, batch_size=None,
                            patch_size=tuple(patch))], log=log, num_processes=1, label="nnU-Net rehearsal")
    trained = time.perf_counter()
    scratch = work / "predict"
    held_files = _write_study(held_out, scratch / "input", len(ALL_CHANNELS), label=False, slices=predict_slices)
    model_dir = ctx.nnunet_model_dir(name, configuration)
    call(ctx, [PredictRequest(model_dir=str(model_dir), folds=(0,), inputs={held_out.case_id: tuple(map(str, held_files))},
                              output_dir=str(scratch / "output"), device=device, mirroring=False,
                              save_probabilities=False, checkpoint="final", tile_step_size=1.0)],
         log=log, num_processes=1, label="nnU-Net rehearsal", scratch=scratch)
    predicted = time.perf_counter()
    out = scratch / "output" / label_file(held_out.case_id)
    if not out.is_file():
        raise AdunetError(f"{held_out.case_id}: the rehearsal's prediction wrote no {out.name}")
    got, want = read_geometry(out), read_geometry(held_files[0])
    if not got.same_as(want):
        raise AdunetError(f"{held_out.case_id}: the prediction is not on the study's T2W grid "
                          f"({'; '.join(got.differences(want))})")
    checkpoint = json.dumps(sorted(p.name for p in (model_dir / fold_folder(0)).glob("*.pth")))
    return {"stage": "segmentation", "item": f"nnunet_{configuration}_adunet_all",
            "input": f"{planned['batch_size']}x{len(ALL_CHANNELS)}x" + "x".join(map(str, patch)),
            "planned_patch": "x".join(map(str, planned["patch_size"])),
            "spacing_mm": "x".join(f"{s:.3g}" for s in planned["spacing"]), "rehearsed_patch": "x".join(map(str, patch)),
            "plan_preprocess_s": round(prepared - started, 1), "train_s": round(trained - prepared, 1),
            "predict_s": round(predicted - trained, 1), "predicted_case": held_out.case_id,
            "predicted_slices": got.size[2],
            "predicted_grid": "x".join(map(str, got.size)), "checkpoints": checkpoint}


def rehearse_command(params_file: str | Path, studies: str | Path | None, out: str | Path | None, device: str = "cpu",
                     batch_size: int = 2, nnunet: bool = True, predict_slices: int = 0,
                     log: Callable[[str], None] = print) -> Path:
    """``adunet rehearse``: every row above, printed as it finishes and written to ``out`` (CSV; default
    ``runs/<params>-rehearsal/rehearsal.csv``). The first failure stops it with one line naming the network."""
    import csv
    import shutil
    import tempfile

    from adunet_lib.fileio import atomic_path
    from adunet_lib.run_folder import project_root
    from adunet_lib.runner.params import load_params

    params = load_params(params_file)
    out = Path(out) if out else project_root() / "runs" / f"{params.name}-rehearsal" / "rehearsal.csv"
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise AdunetError(f"--device {device}: no CUDA device here (torch {torch.__version__})")
    if nnunet and studies is None:
        raise AdunetError("the nnU-Net rehearsal needs real studies: --studies FOLDER (or --no-nnunet)")
    rows = []
    models = models_at_size(params.path)
    log(f"rehearsing {len(models)} reconstruction network(s) of {params.path.name} at their sizes, batch {batch_size}, "
        f"on {device}")
    for m in models:
        row = rehearse_model(m, device=device, batch_size=batch_size)
        rows.append(row)
        log(f"  {m.block}/{m.name}: {row['input']}, {row['params_m']} M parameters, {row['seconds_per_iteration']} s "
            f"per iteration, peak {row['peak_mb']} MB; translation {row['translate_s_per_slice']} s per slice")
    if nnunet:
        configuration = str(params.blocks.get("segmentation", {}).get("configuration", "3d_fullres"))
        work = Path(tempfile.mkdtemp(prefix="adunet-rehearsal-"))
        try:
            log(f"rehearsing nnU-Net {configuration} as nnU-Net plans it for {studies}")
            row = rehearse_nnunet(studies, work, configuration, device=device, log=lambda line: None,
                                  predict_slices=predict_slices)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        rows.append(row)
        log(f"  nnU-Net {configuration}: planned patch {row['planned_patch']} at {row['spacing_mm']} mm, rehearsed "
            f"{row['rehearsed_patch']}; plan + preprocess {row['plan_preprocess_s']} s, one training epoch "
            f"{row['train_s']} s, prediction of {row['predicted_case']} ({row['predicted_slices']} slices) {row['predict_s']} s")
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(rows)
    log(f"rehearsal passed: {len(rows)} row(s) in {out}")
    return out
