"""Guided diffusion in few calls: anomaly-map quality against network calls per slice.

Run on demand (not a test)::

    python benchmarks/bench_diffusion_calls.py                      # ~20 min on 2 CPU cores
    python benchmarks/bench_diffusion_calls.py --iterations 2000 --slices 32 --out figures/bench

One DDPM with its classifier (the demo's networks, ``params/demo.yaml``) is trained with ``fit`` on
64² one-channel phantom slices (``anomaly_models/phantoms.py``; the classifier sees t < 750 so that
every noise level below is covered). Held-out phantoms (half with a lesion) are then translated with
Wolleb et al.'s method — DDIM-encode to noise level L, classifier-guided DDIM decode with scale s —
for every combination of

* DDIM steps 5, 10, 25, 50, 100, 250, 500 (each way; at most L),
* L = 250, 500, 750 (s = 100), and s = 10, 30, 100, 300 at L = 500 with 10 and 50 steps,

and each is scored as notebook 05 scores maps: voxel AUROC of Φ(|x − G(x)|) (kernel 4 at 64², the
paper's 8 at 128²) inside the gland against the lesion voxels, and the SSIM of healthy slices
inside the gland (Table I's measure). A translation costs, per slice and per step, one ε-network call
to encode, one to decode and one classifier gradient (a forward and a backward pass): "network calls
per slice" = 3 × steps (2 × steps when s = 0).

The reference is Wolleb et al.'s setting: L = 500, s = 100, all 500 steps. Printed: one row per
setting, then the cheapest setting with ≤ 50 calls per slice whose AUROC is within 0.01 of the
reference or better (or that there is none), and the cheapest whose healthy-slice SSIM is within 0.01
as well. Written: ``<out>/diffusion_calls.csv`` and ``.png``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from _common import add_torch_options, start
from bench_models import settings_of
from bench_speed_quality import SIZE, map_scores

from adunet_lib.anomaly_models.phantoms import phantom_slices
from adunet_lib.anomaly_models.training import TrainSettings, fit

REPO = Path(__file__).resolve().parents[1]
STEPS = (5, 10, 25, 50, 100, 250, 500)
LEVELS = (250, 500, 750)
SCALES = (10.0, 30.0, 100.0, 300.0)
REFERENCE = (500, 500, 100.0)  # (L, steps, s): Wolleb et al.
BUDGET = 50  # calls per slice


def score(model, test, level: int, steps: int, scale: float) -> dict:
    c = model.config
    c.noise_level, c.ddim_steps, c.guidance_scale = level, steps, scale
    begin = time.perf_counter()
    recon = model.reconstruct(torch.from_numpy(test.images)).numpy()
    seconds = time.perf_counter() - begin
    auroc, ssim = map_scores(test, recon)  # as bench_speed_quality.py scores them
    calls = (3 if scale > 0 else 2) * steps
    return {"noise_level": level, "ddim_steps": steps, "guidance_scale": scale, "calls_per_slice": calls,
            "auroc": auroc, "ssim_healthy": ssim, "seconds_per_slice": seconds / len(test.images)}


def grid() -> list[tuple[int, int, float]]:
    settings = [(level, steps, 100.0) for level in LEVELS for steps in STEPS if steps <= level]
    settings += [(500, steps, s) for s in SCALES if s != 100.0 for steps in (10, 50)]
    return settings


def plot(table: pd.DataFrame, out: Path, reference: pd.Series) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, metric, label in ((axes[0], "auroc", "voxel AUROC of the map (gland)"),
                              (axes[1], "ssim_healthy", "SSIM, healthy slices (gland)")):
        for level in LEVELS:
            rows = table[(table.noise_level == level) & (table.guidance_scale == 100.0)]
            ax.plot(rows.calls_per_slice, rows[metric], "o-", label=f"L = {level}, s = 100")
        others = table[table.guidance_scale != 100.0]
        for (scale, rows), colour in zip(others.groupby("guidance_scale"), ("tab:purple", "tab:brown", "tab:pink")):
            ax.scatter(rows.calls_per_slice, rows[metric], marker="x", color=colour, label=f"L = 500, s = {scale:g}")
        ax.axhline(reference[metric], color="grey", lw=0.8, ls="--", label="reference (Wolleb: 500 steps)")
        if metric == "auroc":
            ax.axhspan(reference[metric] - 0.01, reference[metric] + 0.01, color="grey", alpha=0.15)
        ax.axvline(BUDGET * 1.0, color="red", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_xlabel("network calls per slice (log)")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=7)
    fig.suptitle("Guided DDIM on phantoms: map quality against calls (red: 50 calls)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def summarise(table: pd.DataFrame, out: Path) -> None:
    """Print the reference and the cheapest settings that match it; draw ``out/diffusion_calls.png``."""
    ref = table[(table.noise_level == REFERENCE[0]) & (table.ddim_steps == REFERENCE[1])
                & (table.guidance_scale == REFERENCE[2])].iloc[0]
    plot(table, out / "diffusion_calls.png", ref)

    def name(row: pd.Series) -> str:
        return (f"L {int(row.noise_level)}, {int(row.ddim_steps)} steps, s {row.guidance_scale:g}: "
                f"{int(row.calls_per_slice)} calls, AUROC {row.auroc:.3f}, SSIM {row.ssim_healthy:.3f} "
                f"({ref.calls_per_slice / row.calls_per_slice:.0f}× fewer calls)")

    print(f"\nreference (Wolleb: L 500, 500 steps, s 100; {int(ref.calls_per_slice)} calls): AUROC {ref.auroc:.3f}, "
          f"SSIM {ref.ssim_healthy:.3f}")
    by_cost = table.sort_values(["calls_per_slice", "auroc"], ascending=[True, False])
    auroc_ok = by_cost[by_cost.auroc >= ref.auroc - 0.01]
    cheap = auroc_ok[auroc_ok.calls_per_slice <= BUDGET]
    print(f"cheapest with ≤ {BUDGET} calls within 0.01 AUROC (or better): "
          + (name(cheap.iloc[0]) if len(cheap) else "none"))
    both = auroc_ok[auroc_ok.ssim_healthy >= ref.ssim_healthy - 0.01]
    print("cheapest within 0.01 AUROC (or better) whose healthy SSIM is also within 0.01: "
          + (name(both.iloc[0]) if len(both) else "none"))
    print(f"written: {out / 'diffusion_calls.csv'}, {out / 'diffusion_calls.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=600, help="DDPM training iterations (demo: 120)")
    parser.add_argument("--slices", type=int, default=16, help="held-out phantom slices (half with a lesion)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "figures" / "bench")
    parser.add_argument("--table", type=Path, default=None,
                        help="summarise and plot an earlier run's diffusion_calls.csv (into --out) instead of running")
    add_torch_options(parser)
    args = parser.parse_args()
    if args.table:
        args.out.mkdir(parents=True, exist_ok=True)
        return summarise(pd.read_csv(args.table), args.out)
    start(args)
    demo = settings_of("demo")["ddpm"]
    config = {**demo["config"], "classifier_max_t": max(LEVELS)}
    train, test = phantom_slices(256, SIZE, seed=100 + args.seed), phantom_slices(args.slices, SIZE, seed=999)
    with tempfile.TemporaryDirectory() as folder:
        begin = time.perf_counter()
        model, _ = fit("ddpm", train, folder, TrainSettings(iterations=args.iterations, batch_size=demo["batch_size"],
                                                            checkpoint_every=10**9, seed=args.seed),
                       config, device=args.device, show_progress=False, log=lambda _: None)
    print(f"DDPM (demo networks) trained on {len(train.images)} phantom slices at {SIZE}², {args.iterations} "
          f"iterations, seed {args.seed}: {time.perf_counter() - begin:.0f} s; {args.slices} held-out slices\n")
    print(f"{'L':>4} {'steps':>5} {'s':>5} {'calls':>6} {'AUROC':>6} {'SSIM':>6} {'s/slice':>8}", flush=True)
    rows = []
    for level, steps, scale in grid():
        torch.manual_seed(args.seed)
        row = score(model, test, level, steps, scale)
        rows.append(row)
        print(f"{level:>4} {steps:>5} {scale:>5g} {row['calls_per_slice']:>6} {row['auroc']:>6.3f} "
              f"{row['ssim_healthy']:>6.3f} {row['seconds_per_slice']:>8.3f}", flush=True)
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "diffusion_calls.csv", index=False, float_format="%.4f")
    summarise(table, args.out)


if __name__ == "__main__":
    main()
