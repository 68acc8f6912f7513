"""What one iteration of every paper-size network costs: the cost source of ``adunet plan``.

Run on demand (not a test; about 15–30 min on 2 CPU cores, most of it the DDPM and nnU-Net)::

    nice -n 19 python benchmarks/bench_plan_costs.py            # writes figures/paper-rehearsal/cost_per_iteration.csv
    python benchmarks/bench_plan_costs.py --no-nnunet-time      # nnU-Net FLOPs only (meta device), no CPU timing

Rows (``item``):

* ``train:<model>`` for every reconstruction model of ``params/paper.yaml`` at its sizes (128² slices,
  the paper widths, the block's batch size, 1 channel for ``per_sequence``) — measured by
  ``bench_models.bench_model``: GFLOP per training iteration (forward + backward, ``FlopCounterMode``;
  the DDPM's iterations with and without its classifier and the FP-GAN's critic-only and generator
  iterations weighted as a run mixes them), median CPU seconds of ``--repeats`` iterations, the peak
  resident-set rise (activations; weights and optimiser states not included) and the parameter count.
* ``translate:<model>``: the same per slice of a map (``reconstruct``); the DDPM's guided DDIM loop is
  run with 2 steps and scaled to paper.yaml's ``ddim_steps`` (each step: the U-Net twice and the
  classifier's gradient once).
* ``nnunet_train:<dataset>`` for nnU-Net 3d_fullres as nnU-Net plans it for the real studies in
  ``../shared/realdata`` (``bench_predict.plan_nnunet``): ``zones`` (1 channel, 3 labels: the zone model),
  ``baseline`` (3 channels), ``adunet_all`` (6 channels); GFLOP per training iteration at the planned
  batch and patch with deep supervision, counted on the meta device; for ``adunet_all`` only (the others
  differ in the first convolution) the CPU seconds and peak of one iteration at batch 1, without warm-up,
  scaled to the planned batch (a full iteration takes minutes here).
* ``nnunet_predict:<dataset>``: GFLOP to predict one study with one fold: sliding-window tiles (step 0.5)
  over the study at the planned spacing × one forward pass, × 8 with mirroring (``mirroring`` column).

Every row carries the machine's fp32 dense-matmul rate (2048², ``bench_models.matmul_rate``) measured just
before it (``matmul_gflops``) and the best of the run (``matmul_best_gflops``); ``efficiency`` = achieved
GFLOP/s ÷ the best (on a shared machine the rate before a row can be depressed by other work); ``cpu``,
``torch`` and ``threads`` say where it ran, and ``measured`` how (no machine paths).
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import add_torch_options, start
from bench_models import _flops, bench_model, matmul_rate, settings_of

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "figures" / "paper-rehearsal" / "cost_per_iteration.csv"
STUDIES = REPO.parent / "shared" / "realdata" / "picai" / "images"
COLUMNS = ["item", "kind", "model", "input", "params_m", "gflop", "unit", "cpu_s", "peak_mb", "matmul_gflops",
           "efficiency", "matmul_best_gflops", "patch", "spacing_mm", "tiles", "mirroring", "voxels", "measured", "cpu", "torch",
           "threads"]
#: nnU-Net datasets planned: name → (input channels, labels)
NNUNET = {"zones": (1, 3), "baseline": (3, 2), "adunet_all": (6, 2)}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, str]:
    return {"cpu": cpu_name(), "torch": torch.__version__, "threads": str(torch.get_num_threads())}


def model_rows(repeats: int, slices: int, models: list[str] | None) -> list[dict]:
    rows = []
    for name, setting in settings_of("paper").items():
        if models and name not in models:
            continue
        reps = 1 if name == "ddpm" else repeats
        rate = matmul_rate(torch.device("cpu"))
        r = bench_model(name, setting, {}, "cpu", reps, slices)
        shape = f"{setting['batch_size']}x{setting['channels']}x{setting['image_size']}x{setting['image_size']}"
        kinds = f" ({r['kinds']} weighted)" if r["kinds"] else ""
        common = {"model": name, "params_m": f"{r['params'] / 1e6:.3f}", "matmul_gflops": f"{rate:.1f}", **machine()}
        rows.append({**common, "item": f"train:{name}", "kind": "train", "input": shape,
                     "gflop": f"{r['flops'] / 1e9:.2f}", "unit": "iteration", "cpu_s": f"{r['seconds']:.3f}",
                     "peak_mb": f"{r['peak'] / 2**20:.0f}",
                     "efficiency": f"{r['flops'] / r['seconds'] / 1e9 / rate:.3f}",
                     "measured": f"CPU fp32, median of {reps} iteration(s) per kind{kinds}; FLOPs of one"})
        n = 2 if name == "ddpm" else slices
        scaled = " (2 DDIM steps run, scaled to ddim_steps)" if r["extrapolated"] else ""
        rows.append({**common, "item": f"translate:{name}", "kind": "translate",
                     "input": f"{n}x{setting['channels']}x{setting['image_size']}x{setting['image_size']}",
                     "gflop": f"{r['inf_flops'] / 1e9:.3f}", "unit": "slice", "cpu_s": f"{r['inf_seconds']:.4f}",
                     "peak_mb": f"{r['inf_peak'] / 2**20:.0f}",
                     "efficiency": f"{r['inf_flops'] / r['inf_seconds'] / 1e9 / rate:.3f}",
                     "measured": f"CPU fp32, median of {reps} run(s) over {n} slices{scaled}"})
        print(f"{name}: {r['flops'] / 1e9:.1f} GFLOP/iteration, {r['seconds']:.2f} s", flush=True)
    return rows


def _network(config, channels: int, labels: int, deep_supervision: bool) -> torch.nn.Module:
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    return get_network_from_plans(config.network_arch_class_name, config.network_arch_init_kwargs,
                                  config.network_arch_init_kwargs_req_import, channels, labels,
                                  deep_supervision=deep_supervision)


def _train_iteration(net: torch.nn.Module, x: torch.Tensor) -> None:
    outputs = net(x)
    loss = sum(o.float().mean() for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs]))
    loss.backward()


def nnunet_rows(time_it: bool) -> list[dict]:
    """3d_fullres as nnU-Net plans it for the real studies: training and prediction FLOPs, one CPU iteration."""
    import SimpleITK as sitk
    from bench_predict import plan_nnunet
    from nnunetv2.inference.sliding_window_prediction import compute_steps_for_sliding_window

    studies = sorted(p for p in STUDIES.iterdir() if p.is_dir())
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for k, (name, (channels, labels)) in enumerate(NNUNET.items()):
            plans, config, _, inputs = plan_nnunet(studies, Path(work), channels, labels, 980 + k, f"Plan_{name}")
            patch, spacing, batch = list(config.patch_size), list(config.spacing), int(config.batch_size)
            # the studies at the planned spacing: median shape (z, y, x), and the sliding-window tiles over it
            shapes = []
            for files in inputs:
                image = sitk.ReadImage(files[0])
                size, sp = image.GetSize()[::-1], image.GetSpacing()[::-1]
                shapes.append([max(p, round(n * s / t)) for n, s, t, p in zip(size, sp, spacing, patch)])
            shape = [int(statistics.median(s[d] for s in shapes)) for d in range(3)]
            tiles = math.prod(len(s) for s in compute_steps_for_sliding_window(shape, patch, 0.5))
            with torch.device("meta"):
                net = _network(config, channels, labels, True)
                x = torch.empty(batch, channels, *patch)
                train_flops = _flops(lambda: _train_iteration(net, x))
                infer = _network(config, channels, labels, False).eval()
                one = torch.empty(1, channels, *patch)
                with torch.no_grad():
                    tile_flops = _flops(lambda: infer(one))
            params = sum(p.numel() for p in net.parameters())
            seconds, peak, how = "", "", "FLOPs on the meta device; not timed"
            rate = matmul_rate(torch.device("cpu"))
            if time_it and name == "adunet_all":
                from bench_models import PeakMemory, _timed

                # one sample of the batch, timed once (minutes on 2 cores), scaled to the planned batch
                cpu_net = _network(config, channels, labels, True)
                xc = torch.rand(1, channels, *patch)
                with PeakMemory(torch.device("cpu")) as memory:
                    s = _timed(lambda: _train_iteration(cpu_net, xc), torch.device("cpu"), 1) * batch
                seconds, peak = f"{s:.2f}", f"{memory.peak / 2**20 * batch:.0f}"
                how = (f"FLOPs on the meta device; CPU fp32 seconds and peak of 1 iteration at batch 1 (no warm-up, "
                       f"no data loading) x {batch}")
                del cpu_net, xc
            common = {"model": f"nnunet_3d_fullres_{name}", "params_m": f"{params / 1e6:.3f}",
                      "matmul_gflops": f"{rate:.1f}", "patch": "x".join(map(str, patch)),
                      "spacing_mm": "x".join(f"{s:.3g}" for s in spacing), **machine()}
            rows.append({**common, "item": f"nnunet_train:{name}", "kind": "nnunet_train",
                         "input": f"{batch}x{channels}x" + "x".join(map(str, patch)),
                         "gflop": f"{train_flops / 1e9:.2f}", "unit": "iteration", "cpu_s": seconds, "peak_mb": peak,
                         "efficiency": f"{train_flops / float(seconds) / 1e9 / rate:.3f}" if seconds else "",
                         "voxels": str(math.prod(shape)), "measured": how})
            rows.append({**common, "item": f"nnunet_predict:{name}", "kind": "nnunet_predict",
                         "input": f"1x{channels}x" + "x".join(map(str, shape)),
                         "gflop": f"{tile_flops * tiles * 8 / 1e9:.2f}", "unit": "study per fold", "cpu_s": "",
                         "peak_mb": "", "efficiency": "", "tiles": str(tiles), "mirroring": "8",
                         "voxels": str(math.prod(shape)),
                         "measured": f"FLOPs on the meta device: {tiles} tile(s) × 8 mirrored passes; not timed"})
            print(f"nnU-Net {name}: patch {patch} batch {batch}, {train_flops / 1e9:.0f} GFLOP/iteration"
                  f"{', ' + seconds + ' s' if seconds else ''}", flush=True)
    return rows


def finish(rows: list[dict]) -> list[dict]:
    """``efficiency`` against the best matmul rate of the whole run (``matmul_best_gflops``): on a shared
    machine the rate measured just before a row can be depressed by other work (then a row would seem
    to beat the machine's limit)."""
    best = max(float(r["matmul_gflops"]) for r in rows)
    for r in rows:
        r["matmul_best_gflops"] = f"{best:.1f}"
        if r.get("cpu_s"):
            r["efficiency"] = f"{float(r['gflop']) / float(r['cpu_s']) / best:.3f}"
    return rows


def write(rows: list[dict], out: Path) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in COLUMNS})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(buffer.getvalue(), encoding="utf-8")
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--repeats", type=int, default=2, help="timed iterations per kind (the DDPM: 1)")
    parser.add_argument("--slices", type=int, default=8, help="slices translated (the DDPM: 2)")
    parser.add_argument("--models", nargs="+", default=None, help="only these reconstruction models")
    parser.add_argument("--no-nnunet", action="store_true", help="no nnU-Net rows")
    parser.add_argument("--no-nnunet-time", action="store_true", help="nnU-Net FLOPs only, not timed on the CPU")
    add_torch_options(parser)
    args = parser.parse_args()
    start(args)
    t0 = time.perf_counter()
    rows = []
    if not args.no_nnunet:
        if not STUDIES.is_dir():
            sys.exit(f"bench_plan_costs: no real studies in {STUDIES} (nnU-Net plans them); use --no-nnunet")
        rows += nnunet_rows(not args.no_nnunet_time)
        write(rows, args.out)
    rows += model_rows(args.repeats, args.slices, args.models)
    text = write(finish(rows), args.out)
    print(f"\n{text}\nwrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out} "
          f"in {time.perf_counter() - t0:.0f} s (load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
