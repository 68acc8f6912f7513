"""Do the speed options change what the models learn? Map quality and SSIM with them off and on, over seeds.

Run on demand (not a test)::

    python benchmarks/bench_speed_quality.py                       # every model, 3 seeds, ~15 min on 2 CPU cores
    python benchmarks/bench_speed_quality.py --models fpgan --seeds 0 1 2 3 4
    python benchmarks/bench_speed_quality.py --speed mixed_precision channels_last fused_optimizer

Every registered model with the speed options is trained with ``fit`` — the notebooks' training loop —
at the demo's settings (``params/demo.yaml``: networks, iterations, batch size) on 64² one-channel
phantom slices (``anomaly_models/phantoms.py``: textured glands, every other slice with a dark lesion),
once with the options off (fp32) and once with ``--speed`` on, for each seed. Then, on held-out
phantoms:

* **voxel AUROC** of the anomaly map Φ(|x − G(x)|) (kernel 8 at 128², so 4 at 64², as the demo) inside
  the gland against the lesion voxels, pooled over every slice — what notebook 05's ``map_quality``
  measures on the cohort;
* **SSIM** of the reconstruction of healthy slices inside the gland — Table I's measure.

Prints each metric per seed, its mean ± standard deviation and median with the options off and on,
and how many seeds failed (map AUROC < 0.75: the GAN or the DDPM did not learn to remove lesions at
this short budget — a property of the budget that a few seeds cannot pin to the options). "within
seed noise" means the two means differ by less than twice the larger seed standard deviation.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch
from _common import add_torch_options, start
from bench_models import SPEED_OPTIONS, settings_of

from adunet_lib.anomaly_maps.maps import slice_maps
from adunet_lib.anomaly_maps.quality import voxel_quality
from adunet_lib.anomaly_models import available
from adunet_lib.anomaly_models.base import speed_switches
from adunet_lib.anomaly_models.metrics import slice_metrics
from adunet_lib.anomaly_models.phantoms import phantom_slices
from adunet_lib.anomaly_models.registry import get
from adunet_lib.anomaly_models.training import TrainSettings, fit

SIZE = 64
KERNEL = 4  # the paper's 8 at 128²
FAILED = 0.75  # a map AUROC below this: the model did not learn to remove the phantom's lesions


def evaluate(model, test) -> tuple[float, float]:
    """(voxel AUROC in the gland, mean SSIM of healthy slices in the gland) on the held-out phantoms."""
    return map_scores(test, model.reconstruct(torch.from_numpy(test.images)).numpy())


def map_scores(test, recon: np.ndarray) -> tuple[float, float]:
    """:func:`evaluate` for reconstructions ``recon`` (``(n, 1, S, S)``) of the phantoms ``test``."""
    gland = test.masks[:, 0] > 0
    maps = slice_maps(test.images.transpose(1, 0, 2, 3), recon.transpose(1, 0, 2, 3), gland, KERNEL)[0]
    auroc = voxel_quality(maps[gland], test.lesions[:, 0][gland] > 0, threshold=float("inf"))["auroc"]
    healthy = np.flatnonzero(test.labels == 0)
    ssim = statistics.mean(slice_metrics(test.images[i, 0], recon[i, 0], test.masks[i, 0])[0] for i in healthy)
    return auroc, ssim


def train_and_score(name: str, setting: dict, options: tuple[str, ...], seed: int, device: str) -> tuple[float, float, float]:
    own = speed_switches(get(name).Config)  # a model-specific switch (critic_gemm) reaches its model only
    config = {**setting["config"], **{o: True for o in options if o in own}}
    train, test = phantom_slices(128, SIZE, seed=100 + seed), phantom_slices(48, SIZE, seed=999)
    with tempfile.TemporaryDirectory() as out:
        begin = time.perf_counter()
        model, _ = fit(name, train, out, TrainSettings(iterations=setting["iterations"], batch_size=setting["batch_size"],
                                                       checkpoint_every=10**9, seed=seed, healthy_from="healthy_slices"),
                       config, device=device, show_progress=False, log=lambda _: None)
        seconds = time.perf_counter() - begin
    auroc, ssim = evaluate(model, test)
    return auroc, ssim, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    models = [m for m in available() if speed_switches(get(m).Config) and m in settings_of("demo")]
    parser.add_argument("--models", nargs="+", default=models, choices=models)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--speed", nargs="+", default=["mixed_precision", "fused_optimizer", "critic_gemm"],
                        choices=SPEED_OPTIONS)
    add_torch_options(parser)
    args = parser.parse_args()
    start(args)
    demo = settings_of("demo")
    print(f"speed options compared: {' + '.join(args.speed)} against none; demo settings at {SIZE}², "
          f"128 training / 48 held-out phantom slices, seeds {args.seeds}")
    print(f"\n{'model':<11} {'options':<8} {'seed':>4} {'AUROC':>7} {'SSIM':>7} {'train s':>8}", flush=True)
    summary = []
    for name in args.models:
        results = {}
        for label, options in (("off", ()), ("on", tuple(args.speed))):
            rows = []
            for seed in args.seeds:
                auroc, ssim, seconds = train_and_score(name, demo[name], options, seed, args.device)
                rows.append((auroc, ssim, seconds))
                print(f"{name:<11} {label:<8} {seed:>4} {auroc:>7.3f} {ssim:>7.3f} {seconds:>8.1f}", flush=True)
            results[label] = rows
        summary.append((name, results))
    print(f"\n{'model':<11} {'metric':<6} {'off: mean ± sd':>16} {'on: mean ± sd':>16} {'median off/on':>14} "
          f"{'on − off':>9} {'verdict':>20} {'train time on/off':>18}")
    for name, results in summary:
        times = [statistics.mean(r[2] for r in results[k]) for k in ("off", "on")]
        for k, metric in enumerate(("AUROC", "SSIM")):
            off, on = ([r[k] for r in results[label]] for label in ("off", "on"))
            sd = max(statistics.pstdev(off), statistics.pstdev(on))
            diff = statistics.mean(on) - statistics.mean(off)
            verdict = "within seed noise" if abs(diff) <= 2 * sd else "OUTSIDE seed noise"
            print(f"{name:<11} {metric:<6} {statistics.mean(off):>9.3f} ± {statistics.pstdev(off):.3f} "
                  f"{statistics.mean(on):>9.3f} ± {statistics.pstdev(on):.3f} "
                  f"{statistics.median(off):>7.3f}/{statistics.median(on):.3f} {diff:>+9.3f} {verdict:>20} "
                  f"{times[1] / times[0]:>17.2f}×")
        fails = [sum(r[0] < FAILED for r in results[label]) for label in ("off", "on")]
        print(f"{name:<11} seeds whose map AUROC < {FAILED} (did not learn to remove lesions): "
              f"off {fails[0]} of {len(args.seeds)}, on {fails[1]} of {len(args.seeds)}")


if __name__ == "__main__":
    main()
