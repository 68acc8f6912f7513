"""Runs nnU-Net v2 steps in a child process: ``python -m adunet_lib.segmentation._worker STEPS.json``.

``STEPS.json`` is a list of requests (:mod:`adunet_lib.nnunet_seam`: ``{"command": "plan" | "preprocess" |
"train" | "predict", <field>: …}``, each with the ``env`` it runs under), run in order in one process
(nnU-Net's import and start-up are paid once per variant, not once per step). Every request is parsed
by the seam's classes before anything runs; a malformed one stops the worker with one line.

A child process keeps nnU-Net's environment variables (``nnUNet_raw`` …, set by :mod:`.nnunet`
only for this process), its multiprocessing pools (spawned workers re-import the main module — hence
the ``__main__`` guard) and its memory out of the notebook kernel.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import sys
import time
import types
from pathlib import Path

from adunet_lib.fileio import write_json
from adunet_lib.nnunet_seam import (DATASET_JSON, NNUNET_PLANS, PLANNED, TRAINED, PlanRequest, PredictRequest,
                                    PreprocessRequest, Request, RequestError, TrainRequest, checkpoint_file,
                                    plans_file, request_from_json)
from adunet_lib.segmentation.safe_load import UnsafeFileError, install


def _seed(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _fingerprint_extractor():
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor

    class SampledFingerprintExtractor(DatasetFingerprintExtractor):
        """nnU-Net's fingerprint with 1e5 instead of 1e8 sampled foreground voxels for the intensity
        statistics (only CT normalisation uses them): 45 s → 4 s on a small dataset, same mean."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.num_foreground_voxels_for_intensitystats = int(os.environ.get("ADUNET_FP_VOXELS", "100000"))

    return SampledFingerprintExtractor


def _spacing(spacing: tuple[float, ...] | None) -> list[float] | None:
    return list(spacing) if spacing else None  # as JSON gave it before requests were typed


def plan(args: PlanRequest) -> None:
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprint_dataset,
                                                                      plan_experiment_dataset)
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
    from nnunetv2.paths import nnUNet_raw
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    dataset_id, n_proc = args.dataset_id, args.num_processes
    if args.verify:
        verify_dataset_integrity(str(Path(str(nnUNet_raw)) / convert_id_to_dataset_name(dataset_id)), n_proc)
        print("verify_dataset_integrity: ok", flush=True)
    extract_fingerprint_dataset(dataset_id, _fingerprint_extractor(), num_processes=n_proc, clean=True,
                                verbose=False, show_progress_bar=False)
    plan_experiment_dataset(dataset_id, overwrite_target_spacing=_spacing(args.target_spacing))


def preprocess(args: PreprocessRequest) -> None:
    from nnunetv2.experiment_planning.plan_and_preprocess_api import preprocess_dataset
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    configurations = list(args.configurations)
    preprocess_dataset(args.dataset_id, NNUNET_PLANS, tuple(configurations),
                       tuple([args.num_processes] * len(configurations)), verbose=False, show_progress_bar=False)
    write_json(Path(str(nnUNet_preprocessed)) / convert_id_to_dataset_name(args.dataset_id) / PLANNED,
               {"configurations": configurations, "target_spacing": _spacing(args.target_spacing)})


def train(args: TrainRequest) -> None:
    """One fold; with ``num_gpus`` > 1 data-parallel over that many GPUs, the way nnU-Net's own
    ``nnUNetv2_train -num_gpus`` does it (one spawned process per GPU in an nccl process group; the
    trainer splits the batch), with this worker's budget, seeding and resume in every process."""
    gpus = args.num_gpus or 1
    if gpus <= 1:
        _train(args, 0, 1)
        return
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:  # a free port for the process group's rendezvous on this machine
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ["MASTER_PORT"] = str(port)
    mp.spawn(_train_ddp, args=(args, gpus), nprocs=gpus, join=True)


def _train_ddp(rank: int, args: TrainRequest, world: int) -> None:
    import torch
    import torch.distributed as dist

    install()  # a spawned process starts fresh: the allow-list again before nnU-Net loads anything
    dist.init_process_group("nccl", rank=rank, world_size=world)
    torch.cuda.set_device(rank)
    try:
        _train(dataclasses.replace(args, device="cuda"), rank, world)
    finally:
        dist.destroy_process_group()


def _train(args: TrainRequest, rank: int, world: int) -> None:
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.dataset_name_id_conversion import convert_id_to_dataset_name

    _seed(args.seed)
    base = Path(str(nnUNet_preprocessed)) / convert_id_to_dataset_name(args.dataset_id)
    plans = load_json(str(base / plans_file()))
    if args.batch_size:
        # a smaller batch than nnU-Net's plan: the budget knob of CPU demos (the plan stays on disk as is)
        plans["configurations"][args.configuration]["batch_size"] = args.batch_size
    if args.patch_size:
        # a smaller patch than the plan's: the rehearsal's cut (the network, planned from the patch, stays;
        # the trainer, its checkpoint's plans and so prediction use the smaller patch)
        plans["configurations"][args.configuration]["patch_size"] = list(args.patch_size)
    dataset_json = load_json(str(base / DATASET_JSON))
    device = torch.device(args.device)

    def make(resume: bool) -> nnUNetTrainer:
        # the standard trainer, budget set on the instance: checkpoints say "nnUNetTrainer", so plain
        # nnUNetv2_predict can use them and nothing needs registering
        trainer = nnUNetTrainer(dict(plans, continue_training=resume), args.configuration, args.fold,
                                dataset_json, device=device)
        trainer.num_epochs = args.epochs
        trainer.num_iterations_per_epoch = args.iterations_per_epoch
        trainer.num_val_iterations_per_epoch = args.val_iterations_per_epoch
        trainer.save_every = 1  # a resume point after every epoch
        if args.loss == "focal_ce":
            # PI-CAI's loss on the standard trainer (its checkpoints still say nnUNetTrainer, so
            # predicting needs nothing registered): nnU-Net builds the loss when training starts
            trainer._build_loss = types.MethodType(_focal_and_ce_loss, trainer)
        return trainer

    def reseed_each_epoch(trainer: nnUNetTrainer) -> None:
        # nnU-Net seeds nothing; re-seeding at every epoch start makes a run resumed from an epoch's
        # checkpoint draw exactly the batches and augmentations of an uninterrupted run
        original = trainer.on_epoch_start

        def on_epoch_start() -> None:
            _seed(args.seed * 100003 + trainer.current_epoch + 1_000_003 * rank)  # each GPU its own batches
            original()

        trainer.on_epoch_start = on_epoch_start

    probe = make(False)
    out = Path(probe.output_folder)
    if (out / TRAINED).is_file():
        if rank == 0:
            print(f"{out}: already trained", flush=True)
        return
    latest = out / checkpoint_file("latest")
    trainer = probe
    if latest.is_file():
        try:
            resumed = make(True)
            resumed.load_checkpoint(str(latest))
            trainer = resumed
            print(f"resuming nnU-Net training at epoch {trainer.current_epoch}", flush=True)
        except UnsafeFileError:
            raise
        except Exception as exc:  # a checkpoint cut short by a kill: start this fold again
            print(f"{latest} is unreadable ({type(exc).__name__}); training fold from scratch", flush=True)
            latest.unlink()
    reseed_each_epoch(trainer)
    trainer.run_training()
    if rank == 0:
        write_json(out / TRAINED, {"epochs": trainer.num_epochs, "iterations_per_epoch": trainer.num_iterations_per_epoch,
                                   "num_gpus": world})


def _focal_and_ce_loss(trainer):
    """PI-CAI's baseline loss for ``trainer``, deep supervision weighted as nnU-Net weights its own."""
    import numpy as np
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

    from adunet_lib.segmentation.losses import FocalAndCrossEntropy

    if trainer.label_manager.has_regions:
        raise ValueError("the focal_ce loss needs class labels, not nnU-Net regions")
    loss = FocalAndCrossEntropy(ignore_label=trainer.label_manager.ignore_label)
    if not trainer.enable_deep_supervision:
        return loss
    weights = np.array([1 / (2 ** i) for i in range(len(trainer._get_deep_supervision_scales()))])
    weights[-1] = 1e-6 if trainer.is_ddp else 0  # nnU-Net's own choice: DDP needs every output used
    return DeepSupervisionWrapper(loss, weights / weights.sum())


def predict(args: PredictRequest) -> None:
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=float(args.tile_step_size), use_gaussian=True,
                                use_mirroring=args.mirroring, perform_everything_on_device=args.device != "cpu",
                                device=torch.device(args.device), verbose=False, verbose_preprocessing=False,
                                allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(args.model_dir, use_folds=args.folds,
                                                   checkpoint_name=checkpoint_file(args.checkpoint))
    out = Path(args.output_dir)
    inputs = args.inputs  # case id → channel files
    # the file that marks a case done: the probabilities, or the label map when only labels are kept
    probabilities = args.save_probabilities
    todo = [cid for cid in sorted(inputs) if not (out / args.done_file(cid)).is_file()]
    if not todo:
        return
    # nnU-Net writes in place; predict into a scratch folder and move each finished case into
    # ``out`` so an interrupted prediction never leaves a half-written .npz that looks done
    scratch = out / ".partial"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    for cid in todo:
        predictor.predict_from_files_sequential([list(inputs[cid])], [str(scratch / cid)], save_probabilities=probabilities,
                                                overwrite=True)
        for produced in sorted(scratch.glob(f"{cid}.*"), key=lambda p: p.name == args.done_file(cid)):
            os.replace(produced, out / produced.name)  # the "done" mark moves last
    shutil.rmtree(scratch, ignore_errors=True)


COMMANDS = {"plan": plan, "preprocess": preprocess, "train": train, "predict": predict}


def read_steps(steps_file: str) -> list[tuple[dict[str, str], Request]]:
    """(env, request) per step of a steps file; :class:`RequestError` when one is malformed."""
    try:
        raw = json.loads(Path(steps_file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RequestError(f"{steps_file}: unreadable ({exc})") from None
    if not isinstance(raw, list):
        raise RequestError(f"{steps_file}: not a list of nnU-Net requests")
    steps = []
    for step in raw:
        env = step.pop("env", {}) if isinstance(step, dict) else {}
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise RequestError(f"env must map names to text, not {env!r}")
        steps.append((env, request_from_json(step)))
    return steps


def main(steps_file: str) -> None:
    steps = read_steps(steps_file)  # all of them, before anything runs
    install()  # before nnU-Net is imported: its checkpoints and pickles load with an allow-list only
    for env, request in steps:
        # nnU-Net reads these at call time; the planner also uses the augmentation-worker count as a
        # torch thread count, so it must be >= 1 there
        os.environ.update(env)
        print(f"--- {request.command} ---", flush=True)
        started = time.perf_counter()
        COMMANDS[request.command](request)
        print(f"--- {request.command} done in {time.perf_counter() - started:.0f} s ---", flush=True)


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except UnsafeFileError as exc:  # the last line is what the caller reports: keep it the message
        print(f"refused: {exc}", flush=True)
        sys.exit(3)
    except RequestError as exc:  # one line, as above
        print(f"bad nnU-Net request: {exc}", flush=True)
        sys.exit(2)
