"""Data-parallel training of any registered model over several processes (``torchrun``).

    torchrun --nproc_per_node 4 -m adunet_lib run params/paper.yaml --stage 04

``torchrun`` starts the processes and sets ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``;
:func:`init_from_env` joins them in one process group — ``nccl`` on GPUs (process *k* on
``cuda:LOCAL_RANK``), ``gloo`` on CPU — and :func:`~adunet_lib.anomaly_models.training.fit` then:

* draws the same seeded global batch in every process (:class:`~.data.BatchSampler`, one stream
  whatever the number of processes) and gives process *k* the rows ``k, k+W, k+2W, …`` of it, so that
  ``batch_size`` stays the global batch of the params file (the paper's 16 on 1 GPU or on 8);
* averages the gradients over the processes before **every optimiser step** — whichever optimiser
  (a GAN's critic and generator, the DDPM and its classifier), as many steps as the model takes;
* lets process 0 alone write checkpoints, the loss history, TensorBoard and the progress bar;
  a checkpoint holds nothing that depends on the number of processes, so a run resumes from it with
  any number (a 1-process checkpoint on 4 GPUs, and back).

Why not ``nn.parallel.DistributedDataParallel`` around each network: the models run their own
backward passes, several per step, and the Fixed-Point GAN's gradient penalty differentiates through
a gradient (``create_graph=True``), which DDP's reducer does not support. Averaging at the optimiser
step is the same arithmetic as DDP's (mean of the processes' gradients), without its overlap of
communication and backward — the price is one all-reduce per optimiser step, small next to the
convolutions at the paper's sizes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch

from adunet_lib.errors import AdunetError


def launched() -> bool:
    """Started by ``torchrun`` (or another launcher that sets ``WORLD_SIZE``) with more than one process?"""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: str) -> str:
    """Join the launcher's process group (once); returns the device this process trains on.

    ``nccl`` when ``device`` is CUDA (each process on ``cuda:LOCAL_RANK``), ``gloo`` otherwise.
    Without a launcher (one process) nothing happens and ``device`` is returned as given.
    """
    if not launched():
        return device
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        if torch.cuda.device_count() <= local:
            raise AdunetError(f"process {local} of {os.environ['WORLD_SIZE']} has no GPU of its own "
                              f"({torch.cuda.device_count()} visible): start fewer processes per node")
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return device


def rank_world() -> tuple[int, int]:
    """(this process's rank, number of processes); (0, 1) without a process group."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def check_batch(batch_size: int, world: int, name: str) -> None:
    """The global batch must split evenly, with a healthy and a lesion row for every process."""
    if world > 1 and (batch_size % world or batch_size < 2 * world):
        raise AdunetError(f"{name}: batch_size {batch_size} does not split over {world} processes (it must be a "
                          f"multiple of {world} and at least {2 * world}); change batch_size or --nproc_per_node")


def broadcast_state(model: Any) -> None:
    """Every network's parameters and buffers as process 0 has them (identical starts, and the
    normalisation statistics of process 0 — what DDP's ``broadcast_buffers`` does)."""
    import torch.distributed as dist

    for net in model.networks().values():
        for tensor in list(net.parameters()) + list(net.buffers()):
            dist.broadcast(tensor.data, src=0)


@contextlib.contextmanager
def averaged_gradients(optimizers: dict[str, torch.optim.Optimizer], world: int) -> Iterator[None]:
    """Inside the block, each optimiser's ``step()`` first replaces its gradients by their mean over the
    processes (one all-reduce of the flattened gradients per step)."""
    if world <= 1:
        yield
        return
    import torch.distributed as dist

    def average(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= world
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    handles = [opt.register_step_pre_hook(average) for opt in optimizers.values()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def average_losses(losses: dict[str, float], world: int) -> dict[str, float]:
    """The processes' losses averaged (what process 0 logs); every process gets the same numbers."""
    if world <= 1 or not losses:
        return losses
    import torch.distributed as dist

    keys = sorted(losses)
    values = torch.tensor([float(losses[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(values)
    values /= world
    averaged = dict(zip(keys, values.tolist()))
    return {k: averaged[k] for k in losses}


def finish(clean: bool = True) -> None:
    """Leave the process group (before the process exits, as torch asks).

    ``clean`` (the work ended without an error): every process first waits at a barrier, so that none
    tears its connections down while another is still using them (teardown races are a known source
    of a rank aborting with "terminate called without an active exception" after the work is done,
    which a cluster would report as a failed job). After an error there is no barrier: the other
    processes may be gone.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if clean and dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def reseed(seed: int, step: int, rank: int) -> None:
    """Processes other than 0 draw their own noise (diffusion timesteps, GAN targets): a stream of their
    own, fixed by the seed, the step and the rank (so a resumed run continues reproducibly)."""
    if rank > 0:
        torch.manual_seed((int(seed) * 1_000_003 + int(step) * 7919 + rank) % (2**63))
