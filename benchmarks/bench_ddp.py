"""Data-parallel scaling of the reconstruction models: 1 process against N, the same cores, the same global batch.

Run on demand (not a test)::

    python benchmarks/bench_ddp.py                                  # CPU: 1 vs 2 processes (gloo)
    python benchmarks/bench_ddp.py --settings paper --models fpgan --size 64
    python benchmarks/bench_ddp.py --device cuda --nproc 1 2 4      # GPUs: one process per GPU (nccl)

Each row runs ``fit``'s data-parallel step (:mod:`adunet_lib.anomaly_models.distributed`: the global
batch split over the processes, gradients averaged at every optimiser step) under ``torchrun`` with
``--nproc_per_node N``, and prints training images per second (global batch × iterations / time,
after warm-up iterations) and the speed-up against 1 process. On the CPU the machine's cores are
shared out (``OMP_NUM_THREADS`` = cores / N), so the ratio says what splitting the same cores into
processes costs or gains; on GPUs each process has a GPU of its own, so it is the scaling.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))


def worker(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from adunet_lib.anomaly_models import distributed
    from adunet_lib.anomaly_models.data import BatchSampler, SliceData
    from adunet_lib.anomaly_models.phantoms import phantom_slices
    from adunet_lib.anomaly_models.registry import create, get

    device = distributed.init_from_env(args.device)
    rank, world = distributed.rank_world()
    spec = json.loads(args.spec)
    one = phantom_slices(64, size=spec["image_size"], seed=0)
    data = SliceData(np.repeat(one.images, spec["channels"], axis=1), one.labels, one.masks, one.lesions, one.index)
    distributed.check_batch(spec["batch_size"], world, args.model)
    torch.manual_seed(0)
    model = create(args.model, spec["channels"], spec["image_size"], spec["config"], device=device)
    model.configure(10**6, 10)
    sampler = BatchSampler(data, spec["batch_size"], balanced=get(args.model).uses_labels, seed=0)
    if world > 1:
        distributed.broadcast_state(model)
    model.train()
    with distributed.averaged_gradients(model.optimizers(), world):
        for i in range(args.warmup + args.iterations):
            if i == args.warmup:
                distributed.barrier(world)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                started = time.perf_counter()
            batch = sampler.next()
            if world > 1:
                batch = batch.rows(rank, world)
            model.train_step(batch.to(model.device))
            model.step += 1
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        distributed.barrier(world)
    seconds = time.perf_counter() - started
    if rank == 0:
        Path(args.result).write_text(json.dumps({"seconds": seconds, "world": world}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="demo", help="params file whose model settings to use (demo or paper)")
    parser.add_argument("--models", nargs="+", default=None, help="default: every model of the params file")
    parser.add_argument("--size", type=int, default=None, help="slice size (default: the params file's)")
    parser.add_argument("--batch", type=int, default=None, help="global batch (default: the params file's)")
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    import torch
    from bench_models import settings_of

    settings = settings_of(args.settings)
    cores = os.cpu_count() or 1
    gpus = torch.cuda.device_count() if args.device.startswith("cuda") else 0
    print(f"torch {torch.__version__}, device {args.device}, {cores} CPU cores, {gpus} GPU(s); "
          f"{args.settings} settings; {args.iterations} timed iterations after {args.warmup} warm-up")
    print(f"{'model':<12} {'size':>5} {'batch':>5} {'procs':>5} {'threads/proc':>12} {'images/s':>9} {'speed-up':>8}")
    for model in args.models or list(settings):
        spec = dict(settings[model])
        spec["image_size"] = args.size or spec["image_size"]
        spec["batch_size"] = args.batch or spec["batch_size"]
        base = None
        for n in args.nproc:
            threads = max(1, cores // n)
            with tempfile.TemporaryDirectory() as tmp:
                result = Path(tmp) / "result.json"
                cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
                       str(Path(__file__).resolve()), "--worker", "--model", model, "--spec", json.dumps(spec),
                       "--result", str(result), "--device", args.device, "--iterations", str(args.iterations),
                       "--warmup", str(args.warmup)]
                env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
                done = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if done.returncode or not result.is_file():
                    print(f"{model:<12} {spec['image_size']:>5} {spec['batch_size']:>5} {n:>5}  failed: "
                          f"{(done.stderr.strip().splitlines() or ['?'])[-1][:100]}")
                    continue
                seconds = json.loads(result.read_text())["seconds"]
            rate = spec["batch_size"] * args.iterations / seconds
            base = base or (rate if n == args.nproc[0] else None)
            ratio = f"{rate / base:.2f}×" if base else "—"
            print(f"{model:<12} {spec['image_size']:>5} {spec['batch_size']:>5} {n:>5} {threads:>12} {rate:>9.1f} "
                  f"{ratio:>8}", flush=True)


if __name__ == "__main__":
    main()
