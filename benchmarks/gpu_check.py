"""GPU check, prepared: every model at the paper's settings on CUDA with AMP, and one nnU-Net iteration.

Run whenever a CUDA machine is available and quote its output::

    python benchmarks/gpu_check.py                             # models, bf16 AMP (about a minute)
    python benchmarks/gpu_check.py --speed mixed_precision channels_last fused_optimizer
    python benchmarks/gpu_check.py --run runs/paper            # + nnU-Net 3d_fullres on adU-Net(all)

It also runs ``bench_ddp.py`` on CUDA: data-parallel training through nccl on 1 and (where there are
2 GPUs) 2 processes.

For each registered model at ``params/paper.yaml``'s settings it trains a few iterations (each kind of
iteration once to warm up, then ``--iterations`` timed, weighted as in ``bench_models.py``) and prints
seconds per iteration and peak GPU memory (``torch.cuda.max_memory_allocated``), then the same for
translating 16 slices. With ``--run`` and nnU-Net installed, it also times nnU-Net training
iterations of the 3d_fullres configuration on the run's adU-Net(all) dataset — which must already be
planned and preprocessed there (notebook 06 does it); nnU-Net's outputs go to a temporary folder, the
run folder is only read. Without CUDA it says so in one line and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

#: the dataset of the adU-Net(all) variant: ``Dataset<id>_adunet_adunet_all`` (see run_folder.nnunet_dataset)
ALL_VARIANT_GLOB = "Dataset*_adunet_adunet_all"


def _cuda_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def check_model(name: str, setting: dict, speed: list[str], iterations: int) -> str:
    """One table row: training and translation of ``name`` at ``setting`` on CUDA."""
    from bench_models import iteration_kinds

    from adunet_lib.anomaly_models import create
    from adunet_lib.anomaly_models.base import SliceBatch

    torch.manual_seed(0)
    size, channels, batch_size = setting["image_size"], setting["channels"], setting["batch_size"]
    model = create(name, channels, size, {**setting["config"], **dict.fromkeys(speed, True)}, device="cuda")
    model.configure(total_iterations=10**6, epoch_length=100)
    labels = (torch.arange(batch_size) >= batch_size - batch_size // 2).long()
    batch = SliceBatch(torch.rand(batch_size, channels, size, size), labels,
                       torch.ones(batch_size, 1, size, size)).to("cuda")
    model.train()
    seconds = 0.0
    torch.cuda.reset_peak_memory_stats()
    for step, share, _ in iteration_kinds(model, setting["iterations"]):
        def run(step: int = step) -> None:
            model.step = step
            model.train_step(batch)

        run()  # warm-up (cuDNN autotuning, allocator)
        seconds += share * _cuda_time(run, iterations)
    train_peak = torch.cuda.max_memory_allocated() / 2**20
    x = torch.rand(16, channels, size, size)
    model.reconstruct(x[:2])
    torch.cuda.reset_peak_memory_stats()
    per_slice = _cuda_time(lambda: model.reconstruct(x), 1) / len(x)
    translate_peak = torch.cuda.max_memory_allocated() / 2**20
    precision = "bf16 autocast" if model.bf16 else "fp32"
    return (f"| {name} | {batch_size} × {channels} × {size}² | {precision} | {seconds:.3f} | {train_peak:.0f} "
            f"| {per_slice:.4f} | {translate_peak:.0f} |")


def check_models(speed: list[str], iterations: int) -> None:
    from bench_models import settings_of

    print("| model | input (batch × ch × side²) | precision | s/iteration | peak GPU MB (train) "
          "| translate s/slice | peak GPU MB (translate) |")
    print("|---|---|---|---|---|---|---|")
    for name, setting in settings_of("paper").items():
        print(check_model(name, setting, speed, iterations), flush=True)
        torch.cuda.empty_cache()


def check_nnunet(run_dir: Path, iterations: int) -> None:
    """nnU-Net 3d_fullres training iterations on the run's adU-Net(all) dataset (read-only use of the run)."""
    preprocessed = run_dir / "nnunet" / "preprocessed"
    found = sorted(preprocessed.glob(ALL_VARIANT_GLOB))
    if not found:
        print(f"nnU-Net: no {ALL_VARIANT_GLOB} under {preprocessed} (run notebook 06 first); skipped")
        return
    dataset = found[-1].name
    if not (found[-1] / "nnUNetPlans_3d_fullres").is_dir():
        print(f"nnU-Net: {dataset} is not preprocessed for 3d_fullres; skipped")
        return
    results = tempfile.mkdtemp(prefix="gpu_check_nnunet_")
    # nnunetv2 reads its folders from the environment when first imported
    os.environ.update({"nnUNet_raw": str(run_dir / "nnunet" / "raw"), "nnUNet_preprocessed": str(preprocessed),
                       "nnUNet_results": results})
    from nnunetv2.run.run_training import get_trainer_from_args

    trainer = get_trainer_from_args(dataset, "3d_fullres", 0, device=torch.device("cuda"))
    trainer.on_train_start()
    try:
        batch = next(trainer.dataloader_train)
        trainer.train_step(batch)  # warm-up
        torch.cuda.reset_peak_memory_stats()
        seconds = _cuda_time(lambda: trainer.train_step(next(trainer.dataloader_train)), iterations)
        peak = torch.cuda.max_memory_allocated() / 2**20
        patch = "×".join(str(p) for p in trainer.configuration_manager.patch_size)
        print(f"nnU-Net 3d_fullres on {dataset}: batch {trainer.batch_size}, patch {patch}: {seconds:.3f} s/iteration "
              f"(data loading included), peak GPU memory {peak:.0f} MB")
    finally:
        trainer.on_train_end()


def check_ddp() -> None:
    """Data-parallel training through the nccl backend (``bench_ddp.py`` under torchrun, one process per
    GPU, up to 2): images/s of the FP-GAN and the DDPM at demo settings."""
    import subprocess

    gpus = torch.cuda.device_count()
    nproc = ["1", "2"] if gpus >= 2 else ["1"]
    print(f"\nDDP (nccl) on {min(gpus, 2)} GPU(s):", flush=True)
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("bench_ddp.py")), "--device", "cuda",
                           "--models", "fpgan", "ddpm", "--nproc", *nproc], text=True)
    if done.returncode:
        print(f"DDP: failed (exit {done.returncode})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", nargs="*", default=["mixed_precision"],
                        choices=["channels_last", "mixed_precision", "fused_optimizer"],
                        help="speed options switched on (default: mixed_precision, i.e. bf16 AMP)")
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations per kind of iteration")
    parser.add_argument("--run", type=Path, default=None, help="a run folder with a preprocessed adU-Net(all) dataset")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device (torch {torch.__version__}); nothing to check")
        return
    torch.backends.cudnn.benchmark = True
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, CUDA {torch.version.cuda}; "
          f"speed options: {', '.join(args.speed) or 'none'}\n")
    check_models(args.speed, args.iterations)
    check_ddp()
    if args.run is not None:
        if importlib.util.find_spec("nnunetv2") is None:
            print("nnU-Net: nnunetv2 is not installed; skipped")
            return
        try:
            check_nnunet(args.run.resolve(), args.iterations)
        except Exception as exc:  # a check, not a pipeline: report and finish
            print(f"nnU-Net: failed ({type(exc).__name__}: {exc})")
            sys.exit(1)


if __name__ == "__main__":
    main()
