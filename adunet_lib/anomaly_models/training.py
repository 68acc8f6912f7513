"""Seeded, resumable training for every registered model.

``fit`` writes into one model folder (``runs/<name>/models/<model>/<seq>/``)::

    model.pt        final checkpoint (weights + resolved config); its presence means "done"
    checkpoint.pt   latest checkpoint, every ``checkpoint_every`` iterations (resume point)
    losses.csv      loss history (one row per ``log_every`` iterations)
    tb/             TensorBoard scalars

A run killed at any point restarts from ``checkpoint.pt`` and — because batch sampling and torch's
RNG are restored too — ends with exactly the weights of an uninterrupted run with the same seed.

Started by ``torchrun`` with several processes, ``fit`` trains data-parallel (see
:mod:`.distributed`): the global batch split over the processes, gradients averaged at every
optimiser step, process 0 alone writing; checkpoints resume with any number of processes.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from adunet_lib.anomaly_models.base import ReconstructionModel
from adunet_lib.anomaly_models.checkpoint import read_checkpoint, save_checkpoint
from adunet_lib.anomaly_models import distributed
from adunet_lib.anomaly_models.data import BatchSampler, SliceData, training_slices
from adunet_lib.anomaly_models.registry import create, get
from adunet_lib.cache import fingerprint
from adunet_lib.errors import AdunetError
from adunet_lib.fileio import atomic_path
from adunet_lib.progress import progress


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """The training budget and bookkeeping (model hyperparameters live in the model's Config).

    Attributes:
        iterations: optimisation steps (the paper: AE as reported, DDPM 400k, FP-GAN 200k).
        batch_size: slices per step (FP-GAN: 16; the diffusion classifier: 10).
        checkpoint_every: iterations between resume points.
        log_every: iterations between loss records.
        seed: seeds weight initialisation and batch sampling.
        healthy_from: which slices count as healthy for healthy-only models
            (``negative_cases`` as in the paper, or ``healthy_slices``).
    """

    iterations: int
    batch_size: int = 16
    checkpoint_every: int = 100
    log_every: int = 10
    seed: int = 0
    healthy_from: str = "negative_cases"


def _changes(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """What differs between the recorded and the wanted training (for the "training again" message)."""
    if saved.get("fingerprint") == wanted["fingerprint"]:
        return []
    keys = sorted((set(saved) | set(wanted)) - {"seconds", "fingerprint"})
    return [f"{k}: {saved.get(k)!r} → {wanted.get(k)!r}" for k in keys if saved.get(k) != wanted.get(k)] or [
        "inputs changed"]


def fit(name: str, data: SliceData, out_dir: str | Path, settings: TrainSettings, model_config: dict | None = None,
        device: str = "cpu", show_progress: bool = True, stop_after: int | None = None,
        log=print) -> tuple[ReconstructionModel, pd.DataFrame]:
    """Train model ``name`` on ``data`` (or load it when ``out_dir/model.pt`` has the same settings).

    Args:
        name: a registered model.
        data: the training split's slices (selection for healthy-only models happens here).
        out_dir: the model folder.
        settings: budget, batch size, seed.
        model_config: hyperparameter overrides of the model's ``Config``.
        stop_after: stop after this many iterations *of this call* without finishing (simulates an
            interruption; the checkpoint written on the way out is the resume point).

    Returns:
        (the trained model, loss history).
    """
    out_dir = Path(out_dir)
    rank, world = distributed.rank_world()
    distributed.check_batch(settings.batch_size, world, name)
    if rank:
        log = _silent
    cls = get(name)
    train = training_slices(data, cls.uses_labels, settings.healthy_from)
    in_channels, image_size = int(train.images.shape[1]), int(train.images.shape[-1])
    resolved = {"model": dict(cls.resolve_config(model_config).__dict__), "training": dataclasses.asdict(settings),
                "in_channels": in_channels, "image_size": image_size, "train_slices": len(train), "data": data.key}
    resolved["fingerprint"] = fingerprint(resolved)
    final, latest, losses_path = out_dir / "model.pt", out_dir / "checkpoint.pt", out_dir / "losses.csv"

    torch.manual_seed(settings.seed)
    model = create(name, in_channels, image_size, model_config, device=device)
    epoch_length = max(1, math.ceil(len(train) / settings.batch_size))
    model.configure(settings.iterations, epoch_length)
    sampler = BatchSampler(train, settings.batch_size, balanced=cls.uses_labels, seed=settings.seed,
                           flip=cls.flip_augmentation)
    history: list[dict[str, Any]] = []

    for path in (final, latest):
        if not path.is_file():
            continue
        payload = read_checkpoint(path)
        changed = _changes(payload["training"], resolved)
        if changed:
            log(f"{out_dir}: settings changed ({'; '.join(changed[:3])}): training again from scratch")
            break
        model.load_state_dict(payload["state"])
        if path == final:
            return model, _read_history(losses_path)
        torch.set_rng_state(payload["rng"]["torch"])
        sampler.set_state(payload["rng"]["sampler"])
        history = _read_history(losses_path).query("iteration <= @model.step").to_dict("records")
        log(f"{out_dir.name}: resuming {name} at iteration {model.step}/{settings.iterations}")
        break

    if world > 1:  # one start for all processes; each its own noise from here on
        distributed.broadcast_state(model)
        distributed.reseed(settings.seed, model.step, rank)
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out_dir / "tb"), purge_step=model.step or None) if rank == 0 else None
    model.train()
    bar = progress(total=settings.iterations, initial=model.step, desc=f"{name} {out_dir.name}", unit="it",
                   enabled=show_progress and rank == 0)
    t0 = time.perf_counter()
    try:
        with distributed.averaged_gradients(model.optimizers(), world):
            stopped = _loop(name, model, sampler, settings, resolved, history, out_dir, writer, bar, stop_after,
                            rank, world)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    if stopped:
        return model, pd.DataFrame(history)
    if rank == 0:
        _write_history(losses_path, history)
        save_checkpoint(final, model, resolved | {"seconds": round(time.perf_counter() - t0, 1), "processes": world},
                        {"sampler": sampler.get_state()})
        latest.unlink(missing_ok=True)
    distributed.barrier(world)  # model.pt is on disk before any process moves on
    return model, pd.DataFrame(history)


def _silent(_: str) -> None:
    pass


def _loop(name: str, model: ReconstructionModel, sampler: BatchSampler, settings: TrainSettings,
          resolved: dict[str, Any], history: list[dict[str, Any]], out_dir: Path, writer: Any, bar: Any,
          stop_after: int | None, rank: int, world: int) -> bool:
    """The iterations of :func:`fit`; True when stopped early by ``stop_after`` (checkpoint written)."""
    latest, losses_path = out_dir / "checkpoint.pt", out_dir / "losses.csv"
    done_here = 0
    while model.step < settings.iterations:
        batch = sampler.next()
        if world > 1:
            batch = batch.rows(rank, world)
        losses = model.train_step(batch.to(model.device))
        model.step += 1
        done_here += 1
        bar.update(1)
        if model.step % settings.log_every == 0 or model.step == settings.iterations:
            losses = distributed.average_losses(losses, world)
            bad = [k for k, v in losses.items() if not np.isfinite(v)]
            if bad:
                raise AdunetError(f"{name} ({out_dir}): loss {', '.join(bad)} is not finite at iteration "
                                  f"{model.step}; lower the learning rate")
            history.append({"iteration": model.step, **losses})
            if writer is not None:
                for k, v in losses.items():
                    writer.add_scalar(f"loss/{k}", v, model.step)
            bar.set_postfix({k: f"{v:.4g}" for k, v in list(losses.items())[:3]})
        last = model.step == settings.iterations
        interrupted = stop_after is not None and done_here >= stop_after
        if ((model.step % settings.checkpoint_every == 0 and not last) or (interrupted and not last)) and rank == 0:
            _write_history(losses_path, history)
            save_checkpoint(latest, model, resolved, {"sampler": sampler.get_state()})
        if interrupted and not last:
            distributed.barrier(world)
            return True
    return False


def _read_history(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.is_file() else pd.DataFrame({"iteration": []})


def _write_history(path: Path, history: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False)
