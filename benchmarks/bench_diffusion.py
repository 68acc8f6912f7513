"""How long the guided diffusion model (``ddpm``) takes to train and to reconstruct, on this machine.

Run on demand (not a test)::

    python benchmarks/bench_diffusion.py                 # demo setting (64²) only, ~1 minute on 2 CPU cores
    python benchmarks/bench_diffusion.py --setting paper  # the paper's networks at 128² (slow on a CPU)
    python benchmarks/bench_diffusion.py --setting all --device cuda

For each setting it prints the seconds per training iteration (one balanced batch: the DDPM step on
its healthy half plus the classifier step on all of it) and the seconds a guided reconstruction of 16
slices takes for several ``ddim_steps`` at L = 500: the full 500-step DDIM of Wolleb et al. and "fast
guided diffusion" with 50, 20 and 10 steps. A reconstruction costs ``ddim_steps`` × (two ε-network
calls + one classifier gradient), so the per-call times are measured and multiplied out; runs whose
estimate fits in ``--measure-up-to`` seconds are also timed end to end, as a check of that model.
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import add_torch_options, start

from adunet_lib.anomaly_models import create
from adunet_lib.anomaly_models.base import SliceBatch
from adunet_lib.anomaly_models.diffusion.sampling import classifier_gradient

SETTINGS = {
    # the registered defaults: guided-diffusion's 128² U-Net (128 channels first, attention at 16×16)
    "paper": {"image_size": 128, "config": {}, "ddim_steps": (500, 50, 20, 10), "repeats": 1},
    # the demo recommendation for a 1–2 minute CPU budget per sequence: 4 narrow levels (attention
    # only in MONAI's bottleneck, at 8×8), a 10× learning rate for ~100 iterations, classifier on t < L
    "demo": {"image_size": 64, "ddim_steps": (50, 20, 10, 5), "repeats": 3,
             "config": {"channels": (16, 32, 64, 64), "attention_resolutions": (), "num_res_blocks": 1,
                        "num_head_channels": 32, "norm_num_groups": 16, "classifier_channels": (16, 32, 64, 64),
                        "classifier_attention_resolutions": (), "classifier_num_res_blocks": 1, "lr": 1e-3,
                        "classifier_lr": 1e-3, "classifier_max_t": 500, "ddim_steps": 5}},
}
SLICES = 16


def _seconds(fn, repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn``; after one warm-up call when timing it more than once."""
    if repeats > 1:
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def bench(name: str, channels: int, batch_size: int, repeats: int | None, measure_up_to: float,
          device: str) -> None:
    setting = SETTINGS[name]
    repeats = repeats or setting["repeats"]
    size = setting["image_size"]
    model = create("ddpm", channels, size, setting["config"], device=device)
    dev = model.device
    params = {k: sum(p.numel() for p in v.parameters()) / 1e6 for k, v in model.networks().items()}
    print(f"\n== {name}: {size}², {channels} channel(s), U-Net {params['unet']:.1f}M / classifier "
          f"{params['classifier']:.1f}M parameters, channels {model.config.channels}")

    model.configure(total_iterations=1000, epoch_length=100)
    labels = torch.arange(batch_size) >= batch_size - batch_size // 2
    batch = SliceBatch(torch.rand(batch_size, channels, size, size), labels.long(),
                       torch.ones(batch_size, 1, size, size)).to(dev)
    model.train()
    train = _seconds(lambda: model.train_step(batch), repeats, dev)
    print(f"training: {train:.3f} s/iteration (batch {batch_size}: DDPM on {int((~labels).sum())} healthy, "
          f"classifier on {batch_size})")

    x = torch.rand(SLICES, channels, size, size, device=dev) * 2 - 1
    t = torch.full((SLICES,), 250, device=dev)
    model.unet.eval()
    model.classifier.eval()
    with torch.no_grad():
        eps_call = _seconds(lambda: model.unet(x, t), repeats, dev)
    grad_call = _seconds(lambda: classifier_gradient(model.classifier, x, t), repeats, dev)
    per_step = 2 * eps_call + grad_call
    print(f"per {SLICES} slices: ε-network call {eps_call:.3f} s, classifier gradient {grad_call:.3f} s "
          f"→ {per_step:.3f} s per DDIM step (encode + guided decode)")

    print(f"guided reconstruction of {SLICES} slices at L = {model.config.noise_level}, "
          f"s = {model.config.guidance_scale:g}:")
    images = torch.rand(SLICES, channels, size, size)
    for steps in setting["ddim_steps"]:
        estimate = steps * per_step
        line = f"  ddim_steps {steps:4d}: estimated {estimate:9.1f} s"
        if estimate <= measure_up_to:
            model.config.ddim_steps = steps
            start = time.perf_counter()
            model.reconstruct(images)
            line += f", measured {time.perf_counter() - start:7.1f} s"
        print(line + f"  ({estimate / SLICES * 150:8.1f} s per 150 slices)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=[*SETTINGS, "all"], default="demo")
    parser.add_argument("--channels", type=int, default=1, help="sequences per slice (1, or 3 for 'all')")
    parser.add_argument("--batch-size", type=int, default=16, help="balanced training batch")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per measurement (median); default 3, 1 for the paper setting")
    parser.add_argument("--measure-up-to", type=float, default=120.0,
                        help="also time reconstructions end to end when their estimate is below this (s)")
    add_torch_options(parser)
    args = parser.parse_args()
    start(args)
    for name in SETTINGS if args.setting == "all" else [args.setting]:
        bench(name, args.channels, args.batch_size, args.repeats, args.measure_up_to, args.device)


if __name__ == "__main__":
    main()
