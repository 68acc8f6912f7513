"""How long the Fixed-Point GAN (``fpgan``) takes to train and to translate, on this machine.

Run on demand (not a test)::

    python benchmarks/bench_fpgan.py                        # demo setting (64²), ~20 s on 2 CPU cores
    python benchmarks/bench_fpgan.py --setting all          # + the paper's networks at 64² and 128² (minutes)
    python benchmarks/bench_fpgan.py --quality 120          # + train the demo setting for 2 min on phantoms
    python benchmarks/bench_fpgan.py --setting all --device cuda
    python benchmarks/bench_fpgan.py --setting paper64 paper128 --channels 3 \
        --reference ~/Fixed-Point-GAN --speed mixed_precision fused_optimizer critic_gemm   # vs the official code

``--reference CHECKOUT`` also times the official Fixed-Point GAN's training iteration (its own
networks from ``CHECKOUT/model.py``, its solver's algorithm: see ``reference_fpgan.py``) at the same
size, batch and thread count, in the same run, and prints adunet's throughput as a multiple of it.
``--speed`` switches adunet's speed options on (``channels_last``, ``mixed_precision``,
``fused_optimizer``, the FP-GAN's ``critic_gemm``); each row with options is printed next to the plain
fp32 row.

Training alternates ``n_critic`` critic-only iterations with one that also updates the generator, so
the seconds per iteration are timed over whole cycles of ``n_critic`` iterations and averaged; the
two kinds of iteration are also shown apart. Translation is ``reconstruct`` of 16 slices (one
generator pass, every slice sent to the healthy domain).

``--quality SECONDS`` trains the demo setting with :func:`~adunet_lib.anomaly_models.training.fit`
for about that long on synthetic phantoms (textured discs; half the slices with a dark lesion blob)
and prints what the anomaly map ``|x − G(x)|`` looks like on held-out phantoms: the mean residual in
the gland of healthy slices (the identity should keep it near 0) and the mean residual inside lesions
against the rest of the gland on lesion slices.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from _common import add_torch_options, start

from adunet_lib.anomaly_models import create
from adunet_lib.anomaly_models.base import SliceBatch, speed_switches
from adunet_lib.anomaly_models.fpgan.model import FPGANConfig
from adunet_lib.anomaly_models.phantoms import phantom_slices

SETTINGS = {
    # the registered defaults (Siddiquee et al. / StarGAN): conv_dim 64, 6 residual blocks, 6 critic layers
    "paper64": {"image_size": 64, "config": {}, "batch_size": 16, "cycles": 1},
    "paper128": {"image_size": 128, "config": {}, "batch_size": 16, "cycles": 1},
    # the demo recommendation at 64²: narrow networks, batch 8, a 10× learning rate and a critic that
    # leads by 2 (~130 iterations a minute on one core). On phantoms the identity is learnt within a
    # minute (healthy residual ≈ 0.005–0.012); lesion removal needs 200+ iterations and even then came
    # on in only 3 of 6 runs (seeds × 200–370 iterations) — a GAN needs far longer than a demo budget
    "demo": {"image_size": 64, "batch_size": 8, "cycles": 3,
             "config": {"conv_dim": 16, "n_res_blocks": 2, "d_layers": 4, "g_lr": 1e-3, "d_lr": 1e-3,
                        "n_critic": 2, "decay_from": 0.8}},
}
SLICES = 16


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(name: str, channels: int, batch_size: int | None, cycles: int | None, device: str,
          speed: tuple[str, ...] = ()) -> float:
    """Print and return adunet's seconds per training iteration for ``name`` with the ``speed`` options on."""
    setting = SETTINGS[name]
    cycles = cycles or setting["cycles"]
    batch_size = batch_size or setting["batch_size"]
    size = setting["image_size"]
    model = create("fpgan", channels, size, {**setting["config"], **{option: True for option in speed}}, device=device)
    dev = model.device
    c = model.config
    params = {k: sum(p.numel() for p in v.parameters()) / 1e6 for k, v in model.networks().items()}
    options = ", ".join(speed) + (f" (bf16: {'on' if model.bf16 else 'not native here, fp32'})"
                                  if "mixed_precision" in speed else "") if speed else "none (fp32)"
    print(f"\n== {name}: {size}², {channels} channel(s), conv_dim {c.conv_dim}, {c.n_res_blocks} residual blocks, "
          f"{c.d_layers} critic layers, n_critic {c.n_critic}; generator {params['generator']:.2f}M / "
          f"discriminator {params['discriminator']:.2f}M parameters; speed options: {options}")

    model.configure(total_iterations=10**6, epoch_length=100)
    labels = (torch.arange(batch_size) >= batch_size - batch_size // 2).long()
    batch = SliceBatch(torch.rand(batch_size, channels, size, size), labels,
                       torch.ones(batch_size, 1, size, size)).to(dev)
    model.train()
    per_step: list[tuple[bool, float]] = []
    for cycle in range(cycles + 1):  # the first cycle warms up
        for _ in range(c.n_critic):
            generator_update = (model.step + 1) % c.n_critic == 0
            _sync(dev)
            start = time.perf_counter()
            model.train_step(batch)
            _sync(dev)
            if cycle:
                per_step.append((generator_update, time.perf_counter() - start))
            model.step += 1
    d_only = [t for g, t in per_step if not g]
    with_g = [t for g, t in per_step if g]
    mean = sum(t for _, t in per_step) / len(per_step)
    detail = f"critic-only {np.median(d_only):.3f} s, " if d_only else ""
    print(f"training: {mean:.3f} s/iteration (batch {batch_size}; {detail}"
          f"critic + generator {np.median(with_g):.3f} s) → {mean * 1000 / 60:.1f} min per 1000 iterations")

    images = torch.rand(SLICES, channels, size, size)
    model.reconstruct(images)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        model.reconstruct(images)
        times.append(time.perf_counter() - start)
    print(f"translation of {SLICES} slices: {sorted(times)[1]:.3f} s")
    return mean


def reference(checkout: str, name: str, channels: int, batch_size: int | None, cycles: int | None,
              device: str) -> float:
    """Print and return the official code's seconds per training iteration at ``name``'s size and batch."""
    from reference_fpgan import ReferenceStep

    setting = SETTINGS[name]
    step = ReferenceStep(checkout, setting["image_size"], batch_size or setting["batch_size"], torch.device(device))
    g, d = step.parameters_m()
    seconds = step.seconds_per_iteration(cycles or setting["cycles"])
    print(f"official Fixed-Point GAN ({checkout}; generator {g:.2f}M / discriminator {d:.2f}M parameters): "
          f"{seconds:.3f} s/iteration over whole cycles of {step.n_critic}")
    return seconds


def quality(seconds: float, channels: int, batch_size: int | None, seed: int, device: str) -> None:
    from adunet_lib.anomaly_models.training import TrainSettings, fit

    if channels != 1:
        print("\n(--quality uses one-channel phantoms)")
    setting = SETTINGS["demo"]
    batch_size = batch_size or setting["batch_size"]
    size = setting["image_size"]
    probe = create("fpgan", 1, size, setting["config"], device=device)
    probe.configure(10**6, 100)
    batch = phantom_slices(batch_size, size, seed=99).batch(np.arange(batch_size)).to(probe.device)
    start = time.perf_counter()
    for _ in range(probe.config.n_critic):
        probe.train_step(batch)
        probe.step += 1
    per_iteration = (time.perf_counter() - start) / probe.config.n_critic
    iterations = max(probe.config.n_critic, int(seconds / per_iteration))
    print(f"\n== quality: demo setting, {iterations} iterations (~{seconds:.0f} s at {per_iteration:.3f} s/iteration) "
          f"on 64 phantom slices, batch {batch_size}")
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        model, _ = fit("fpgan", phantom_slices(64, size, seed=0), out,
                       TrainSettings(iterations=iterations, batch_size=batch_size, checkpoint_every=10**9, seed=seed),
                       setting["config"], device=device, show_progress=False, log=lambda _: None)
        print(f"trained in {time.perf_counter() - start:.0f} s")
    test = phantom_slices(32, size, seed=1)
    x = torch.from_numpy(test.images)
    residual = (x - model.reconstruct(x)).abs().numpy()
    gland, lesion, healthy = test.masks > 0, test.lesions > 0, test.labels == 0
    identity = residual[healthy][gland[healthy]].mean()
    inside = residual[~healthy][lesion[~healthy]].mean()
    around = residual[~healthy][gland[~healthy] & ~lesion[~healthy]].mean()
    print(f"held-out phantoms: healthy slices |x − G(x)| in the gland {identity:.4f} (gland ≈ 0.6); lesion slices: "
          f"inside the lesion {inside:.4f} (lesion contrast ≈ 0.4), rest of the gland {around:.4f} → "
          f"ratio {inside / around:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", nargs="+", choices=[*SETTINGS, "all"], default=["demo"])
    parser.add_argument("--channels", type=int, default=1, help="sequences per slice (1, or 3 for 'all')")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="balanced training batch; default 16 (the paper's) for the paper settings, 8 for the demo")
    parser.add_argument("--cycles", type=int, default=None,
                        help="timed cycles of n_critic iterations; default 3 for the demo, 1 for the paper settings")
    parser.add_argument("--quality", type=float, default=0.0, metavar="SECONDS",
                        help="also train the demo setting for about this long on phantoms and report its maps")
    parser.add_argument("--seed", type=int, default=0, help="training seed for --quality")
    parser.add_argument("--reference", metavar="CHECKOUT", default=None,
                        help="a checkout of the official Fixed-Point GAN code: time its training iteration too")
    parser.add_argument("--speed", nargs="*", default=[], choices=speed_switches(FPGANConfig),
                        help="speed options to switch on (a row without them is printed first)")
    add_torch_options(parser)
    args = parser.parse_args()
    names = list(SETTINGS) if "all" in args.setting else args.setting
    if args.reference:  # before minutes of timing: a wrong checkout or setting is one line now
        from reference_fpgan import load_networks

        load_networks(args.reference)
        if args.channels != 3 or any(SETTINGS[n]["config"] for n in names):
            parser.error("--reference compares the paper settings at 3 channels (the official generator "
                         "takes 3): use --setting paper64 paper128 --channels 3")
    start(args)
    rows = []
    for name in names:
        plain = bench(name, args.channels, args.batch_size, args.cycles, args.device)
        fast = bench(name, args.channels, args.batch_size, args.cycles, args.device, tuple(args.speed)) if args.speed else None
        ref = reference(args.reference, name, args.channels, args.batch_size, args.cycles, args.device) \
            if args.reference else None
        rows.append((name, plain, fast, ref))
    if any(ref for *_, ref in rows):
        print(f"\n{'setting':<10} {'official s/it':>13} {'adunet fp32':>12} {'×official':>9} "
              f"{'adunet ' + '+'.join(args.speed) if args.speed else '':>34} {'×official' if args.speed else '':>9}")
        for name, plain, fast, ref in rows:
            line = f"{name:<10} {ref:>13.3f} {plain:>12.3f} {ref / plain:>8.2f}×"
            if fast:
                line += f" {fast:>34.3f} {ref / fast:>8.2f}×"
            print(line)
    if args.quality > 0:
        quality(args.quality, args.channels, args.batch_size, args.seed, args.device)


if __name__ == "__main__":
    main()
