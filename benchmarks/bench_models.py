"""How close every registered model trains and translates to this machine's own limit.

Run on demand (not a test)::

    python benchmarks/bench_models.py --quick                    # a few minutes on 2 CPU cores
    python benchmarks/bench_models.py                            # every model, paper + demo settings
    python benchmarks/bench_models.py --models fpgan --settings paper --speed mixed_precision
    python benchmarks/bench_models.py --device cuda --speed mixed_precision channels_last

For each model at the settings of ``params/paper.yaml`` and ``params/demo.yaml`` (networks, slice
size, batch size, channels: 1 for ``per_sequence``, 3 for ``all``) it prints seconds per training
iteration, FLOPs per iteration, the achieved GFLOP/s and what that is of the machine's own
dense-matmul rate (fp32, or bf16 for a model running in bf16), measured in the same run (a ratio
that carries across machines); then the same for translation (``reconstruct``) per slice, and the peak memory of both.

* FLOPs: ``torch.utils.flop_counter.FlopCounterMode`` over a whole iteration — forward, backward and
  the FP-GAN's double backward (matmuls and convolutions; the optimisers' element-wise work is not
  counted).
* Iterations of different kinds are weighted as a training run mixes them: the FP-GAN's critic-only
  iterations and the one in ``n_critic`` that also updates the generator; the DDPM's iterations with
  and without the classifier (``classifier_iterations`` of the block's ``iterations``).
* Each kind is run once untimed (warm-up, FLOPs counted), then timed ``--repeats`` times (median).
* Translation is timed on ``--slices`` slices (2 for the DDPM); the DDPM's DDIM loop is run with 2
  steps and scaled to its ``ddim_steps`` (the cost is linear in them), marked ``*``.
* Peak memory: on the CPU the resident set's rise above what the process held before the phase
  (weights and optimiser states excluded; freed heap memory is handed back to the system first, so
  that earlier rows do not hide it), sampled every 2 ms; on CUDA ``max_memory_allocated``.
* The matmul rate is measured again before each row, so a machine whose load changes during the run
  still gives each row the right ratio.
* ``--speed`` switches the models' speed options on (``channels_last``, ``mixed_precision``,
  ``fused_optimizer``, and the FP-GAN's ``critic_gemm``, which reaches the FP-GAN only); with
  ``mixed_precision`` the bf16 matmul rate is measured too.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _common import add_torch_options, start
from torch.utils.flop_counter import FlopCounterMode

from adunet_lib.anomaly_models import available, create
from adunet_lib.anomaly_models.base import SliceBatch, speed_switches
from adunet_lib.anomaly_models.registry import get
from adunet_lib.runner.rehearsal import PeakMemory, iteration_kinds, models_at_size  # noqa: F401 (gpu_check, bench_plan_costs)

REPO = Path(__file__).resolve().parents[1]
#: every speed switch of a registered model (the shared SpeedOptions and model-specific ones)
SPEED_OPTIONS = tuple(dict.fromkeys(o for m in available() for o in speed_switches(get(m).Config)))
#: DDIM steps actually run when timing the DDPM's translation (scaled to its ddim_steps)
DDIM_PROBE_STEPS = 2


def settings_of(params_name: str) -> dict[str, dict[str, Any]]:
    """{model: {config, image_size, batch_size, channels, iterations}} from ``params/<name>.yaml``."""
    return {m.name: {"config": dict(m.config), "image_size": m.image_size, "batch_size": m.batch_size,
                     "channels": m.channels, "iterations": m.iterations}
            for m in models_at_size(REPO / "params" / f"{params_name}.yaml")}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


class _GlobalOnly:
    """Stands in for ``FlopCounterMode``'s module tracker, whose backward hooks make ``autograd.grad``
    on a leaf fail (the FP-GAN's gradient penalty); FLOPs are then counted under "Global" only."""

    parents = frozenset({"Global"})

    def __enter__(self) -> _GlobalOnly:
        return self

    def __exit__(self, *exc) -> None:
        return None


def _flops(fn: Callable[[], Any]) -> int:
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _GlobalOnly()
    with counter:
        fn()
    return counter.get_total_flops()


def matmul_rate(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048) -> float:
    """GFLOP/s of an ``n × n`` dense matmul: the machine's practical limit for this dtype."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)
    repeats = 20 if device.type == "cuda" else 5
    return 2 * n ** 3 / _timed(lambda: torch.mm(a, b), device, repeats) / 1e9


def bench_model(name: str, setting: dict[str, Any], speed: dict[str, bool], device: str, repeats: int,
                slices: int) -> dict[str, Any]:
    """One row of the table: training and translation cost of ``name`` at ``setting``."""
    torch.manual_seed(0)
    size, channels, batch_size = setting["image_size"], setting["channels"], setting["batch_size"]
    own = speed_switches(get(name).Config)  # a model-specific switch reaches that model only
    model = create(name, channels, size, {**setting["config"], **{k: v for k, v in speed.items() if k in own}},
                   device=device)
    dev = model.device
    model.configure(total_iterations=10**6, epoch_length=100)
    labels = (torch.arange(batch_size) >= batch_size - batch_size // 2).long()
    batch = SliceBatch(torch.rand(batch_size, channels, size, size), labels,
                       torch.ones(batch_size, 1, size, size)).to(dev)
    model.train()

    def iteration(step: int) -> Callable[[], Any]:
        def run() -> None:
            model.step = step
            model.train_step(batch)
        return run

    seconds = flops = 0.0
    peak = 0
    kinds = iteration_kinds(model, setting["iterations"])
    for step, share, _ in kinds:
        flops += share * _flops(iteration(step))  # also the warm-up
        with PeakMemory(dev) as memory:
            seconds += share * _timed(iteration(step), dev, repeats)
        peak = max(peak, memory.peak)

    n = 2 if name == "ddpm" else slices
    x = torch.rand(n, channels, size, size)
    scale = 1.0
    if hasattr(model.config, "ddim_steps") and model.config.ddim_steps > DDIM_PROBE_STEPS:
        scale = model.config.ddim_steps / DDIM_PROBE_STEPS
        model.config.ddim_steps = DDIM_PROBE_STEPS
    inf_flops = _flops(lambda: model.reconstruct(x)) * scale / n
    with PeakMemory(dev) as memory:
        inf_seconds = _timed(lambda: model.reconstruct(x), dev, repeats) * scale / n
    return {"seconds": seconds, "flops": flops, "peak": peak, "kinds": "/".join(k for _, _, k in kinds if k),
            "inf_seconds": inf_seconds, "inf_flops": inf_flops, "inf_peak": memory.peak,
            "extrapolated": scale != 1.0, "bf16": model.bf16,
            "params": sum(p.numel() for net in model.networks().values() for p in net.parameters())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="one timed repeat, 8 translated slices, and no DDPM at the paper's settings")
    parser.add_argument("--models", nargs="+", default=None, help="registered models (default: all in the params)")
    parser.add_argument("--settings", nargs="+", choices=["paper", "demo"], default=["paper", "demo"])
    parser.add_argument("--speed", nargs="*", choices=SPEED_OPTIONS, default=[],
                        help="speed options switched on for every model")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per iteration kind (default 2)")
    parser.add_argument("--slices", type=int, default=None, help="slices translated (default 16)")
    add_torch_options(parser)
    args = parser.parse_args()
    start(args)
    repeats = args.repeats or (1 if args.quick else 2)
    slices = args.slices or (8 if args.quick else 16)
    device = torch.device(args.device)
    speed = dict.fromkeys(args.speed, True)

    fp32 = matmul_rate(device)
    limits = f"fp32 dense matmul (2048²): {fp32:.0f} GFLOP/s"
    if "mixed_precision" in speed:
        limits += f"; bf16: {matmul_rate(device, torch.bfloat16):.0f} GFLOP/s"
    print(f"{limits} (measured again before each row: 'matmul' column); "
          f"speed options: {', '.join(args.speed) or 'none (plain fp32)'}\n")
    print("| model | setting | input (batch × ch × side²) | s/iteration | GFLOP/iteration | GFLOP/s "
          "| matmul GFLOP/s | of matmul | train peak MB | translate s/slice | GFLOP/slice | GFLOP/s | of matmul "
          "| translate peak MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    names = args.models or [m for m in available() if m in settings_of("paper")]
    for setting_name in args.settings:
        settings = settings_of(setting_name)
        for name in names:
            if name not in settings:
                continue
            if args.quick and setting_name == "paper" and name == "ddpm":
                print(f"| {name} | {setting_name} | (skipped with --quick: minutes per iteration on a CPU) |")
                continue
            get(name)  # a clear error for an unknown name before minutes of work
            s = settings[name]
            r = bench_model(name, s, speed, args.device, repeats, slices)
            rate, inf_rate = r["flops"] / r["seconds"] / 1e9, r["inf_flops"] / r["inf_seconds"] / 1e9
            # the matmul rate now, in the precision the model ran in
            limit = matmul_rate(device, torch.bfloat16 if r["bf16"] else torch.float32)
            label = f"{setting_name}{' (bf16)' if r['bf16'] else ''}"
            mix = f" ({r['kinds']})" if r["kinds"] else ""
            star = "*" if r["extrapolated"] else ""
            print(f"| {name} | {label} | {s['batch_size']} × {s['channels']} × {s['image_size']}² "
                  f"| {r['seconds']:.3f}{mix} | {r['flops'] / 1e9:.1f} | {rate:.0f} | {limit:.0f} | {rate / limit:.0%} "
                  f"| {r['peak'] / 2**20:.0f} | {r['inf_seconds']:.4f}{star} | {r['inf_flops'] / 1e9:.2f}{star} "
                  f"| {inf_rate:.0f} | {inf_rate / limit:.0%} | {r['inf_peak'] / 2**20:.0f} |", flush=True)
    print("\n* the DDPM's translation was run with 2 DDIM steps and scaled to its ddim_steps")


if __name__ == "__main__":
    main()
