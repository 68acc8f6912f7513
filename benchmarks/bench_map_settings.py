"""Which settings give a model maps that carry the lesion? A run's model retrained over seeds, scored per sequence.

Run on demand (not a test), on a run folder whose notebook 01 has finished::

    python benchmarks/bench_map_settings.py --run runs/demo --model fpgan --seeds 0 1 2 3 4
    python benchmarks/bench_map_settings.py --run runs/demo --model fpgan --set upsampling=resize \\
        --seeds 0 1 2 3 4 --figure /tmp/fpgan_upsampling.png

The model is trained with ``fit`` — the notebooks' training loop — on the run's own training slices
(the anomaly cohort of ``slices.csv``, cropped mode), with the run's own hyperparameters and budget
(``RUN/params.json``), once per seed; with ``--set KEY=VALUE …`` it is trained a second time per seed
with those hyperparameters changed. Each model then translates the run's cropped external test and
internal validation slices, and the benchmark prints, per sequence:

* **AUROC** of the anomaly map Φ(|x − G(x)|) (the run's blur kernel) inside the gland against the lesion
  voxels, pooled over every slice of the set — notebook 05's ``map_quality.csv`` measured on the slice
  grid instead of the original T2W grid;
* **AUPRC ÷ prevalence**: how many times better than a map that knows nothing (#15 asks for ≥ 5×);
* **SSIM** of healthy slices inside the gland (Table I's measure);
* **stripes**: for the change G(x) − x, the mean absolute difference between horizontal neighbours
  divided by that between vertical neighbours. About 0.7 on these glands; a period-2 column pattern
  (the transposed convolutions' stripes in Figs. 3 and 4) drives it above 1.
* **band**: the anterior-edge band of #15 — the mean |G(x) − x| on the gland's anterior rim (gland
  pixels whose neighbour above lies outside the gland; anterior is up in these slices) divided by that
  on its posterior, left and right rims, healthy voxels only, the largest over the sequences. Every rim
  is partial volume with the tissue outside the gland and changes more than the interior; about 1 when
  the anterior rim is treated like the others.
* **ADC AUROC without the rim**: the ADC map's AUROC when the change on the gland's rim (its pixels
  with a neighbour outside) is set to 0 before Φ — whether the rims are what hides the lesions.

Then, per setting, mean ± standard deviation and the range over the seeds, and how many seeds reach
AUROC ≥ 0.85 on ADC and DWI. ``--figure`` draws, for the seeds of ``--figure-seeds`` (the first two by
default), the two external slices with the largest lesions: the original and each setting's
reconstruction and map.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import add_torch_options, start

from adunet_lib.anomaly_maps.maps import slice_maps
from adunet_lib.anomaly_maps.quality import voxel_quality
from adunet_lib.anomaly_models.data import SliceData, cohort_slices, load_slices
from adunet_lib.anomaly_models.metrics import slice_metrics
from adunet_lib.anomaly_models.registry import get
from adunet_lib.anomaly_models.training import TrainSettings, fit
from adunet_lib.run_folder import RunContext
from adunet_lib.vocabulary import CROPPED, EXTERNAL, INTERNAL, SEQUENCES, TEST, TRAIN, VAL

TARGET = 0.85  # #15: map AUROC in the gland on ADC and DWI


def parse_value(text: str) -> Any:
    """``KEY=VALUE``'s value as JSON where it parses (numbers, true, lists), else the plain string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def run_settings(run: Path, model: str) -> dict[str, Any]:
    """The model's hyperparameters, budget, channels and the map kernel, as the run used them."""
    params = json.loads((run / "params.json").read_text(encoding="utf-8"))
    blocks = [b for b in params.values() if model in (b.get("models") or {})]
    if not blocks:
        raise SystemExit(f"{run}: the run trained no model {model!r}")
    block = blocks[0]
    if block.get("channels") != "all":
        raise SystemExit(f"{run}: {model} was trained per sequence; this benchmark compares 3-channel models only")
    return {"config": dict(block["models"][model] or {}), "iterations": int(block["iterations"]),
            "batch_size": int(block["batch_size"]), "kernel": int(params["05_anomaly_maps"]["blur_kernel"])}


def scores(data: SliceData, recon: np.ndarray, kernel: int) -> dict[str, float]:
    """Per sequence: map AUROC and AUPRC ÷ prevalence in the gland, healthy-slice SSIM, stripe ratio."""
    gland = data.masks[:, 0] > 0
    maps = slice_maps(data.images.transpose(1, 0, 2, 3), recon.transpose(1, 0, 2, 3), gland, kernel)
    lesion = data.lesions[:, 0][gland] > 0
    healthy = np.flatnonzero(data.labels == 0)
    sides = rim_masks(gland)
    rims = {side: rim & ~(data.lesions[:, 0] > 0) for side, rim in sides.items()}
    core = gland & ~np.any(list(sides.values()), axis=0)
    rimless = slice_maps(data.images[:, 1:2].transpose(1, 0, 2, 3),
                         np.where(core[:, None], recon[:, 1:2], data.images[:, 1:2]).transpose(1, 0, 2, 3), gland, kernel)
    out = {"band": 0.0, "adc auroc −rim": voxel_quality(rimless[0][gland], lesion, threshold=float("inf"))["auroc"]}
    for c, seq in enumerate(SEQUENCES):
        quality = voxel_quality(maps[c][gland], lesion, threshold=float("inf"))
        change = recon[:, c] - data.images[:, c]
        across = np.abs(np.diff(change, axis=-1)).mean()
        along = np.abs(np.diff(change, axis=-2)).mean()
        out |= {f"{seq} auroc": quality["auroc"], f"{seq} ap×": quality["auprc"] / lesion.mean(),
                f"{seq} ssim": statistics.mean(slice_metrics(data.images[i, c], recon[i, c], data.masks[i, 0])[0]
                                               for i in healthy),
                f"{seq} stripes": float(across / max(along, 1e-12))}
        size = np.abs(change)
        others = np.mean([size[rims[side]].mean() for side in ("posterior", "left", "right")])
        out["band"] = max(out["band"], float(size[rims["anterior"]].mean() / max(others, 1e-12)))
    return out


def rim_masks(region: np.ndarray) -> dict[str, np.ndarray]:
    """The pixels of ``region`` (``(n, S, S)``) whose neighbour on each side lies outside it."""
    outside = np.pad(~region, ((0, 0), (1, 1), (1, 1)), constant_values=True)
    return {"anterior": region & outside[:, :-2, 1:-1], "posterior": region & outside[:, 2:, 1:-1],
            "left": region & outside[:, 1:-1, :-2], "right": region & outside[:, 1:-1, 2:]}


def reconstruct(model, data: SliceData, batch: int = 64) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([model.reconstruct(torch.from_numpy(data.images[i:i + batch])).numpy()
                               for i in range(0, len(data), batch)])


def draw(path: Path, data: SliceData, recons: dict[tuple[int, str], np.ndarray], kernel: int, n_slices: int = 2) -> None:
    """Original, then each setting's G(x) and map, per seed (``recons`` keyed by (seed, setting)), for
    the external slices with the largest lesions."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = (data.lesions[:, 0] > 0).reshape(len(data), -1).sum(1).astype(np.int64)
    shown = [int(i) for i in np.argsort(-sizes)[:n_slices] if sizes[i] > 0]
    gland = data.masks[:, 0] > 0
    maps = {k: slice_maps(data.images.transpose(1, 0, 2, 3), r.transpose(1, 0, 2, 3), gland, kernel)
            for k, r in recons.items()}
    seeds = list(dict.fromkeys(seed for seed, _ in recons))  # in the order drawn
    labels = list(dict.fromkeys(label for _, label in recons))
    cols = 1 + 2 * len(labels)
    rows = [(seed, i, c, seq) for seed in seeds for i in shown for c, seq in enumerate(SEQUENCES)]
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.8 * cols, 1.9 * len(rows)), squeeze=False)
    for row, (seed, i, c, seq) in zip(axes, rows):
        row[0].imshow(data.images[i, c], cmap="gray", vmin=0, vmax=1)
        row[0].contour(data.lesions[i, 0] > 0, levels=[0.5], colors="r", linewidths=0.6)
        where = data.index.iloc[i]
        row[0].set_title(f"{where['case_id']} z={where['z']} {seq}", fontsize=7)
        for k, label in enumerate(labels):
            row[1 + 2 * k].imshow(recons[seed, label][i, c], cmap="gray", vmin=0, vmax=1)
            row[1 + 2 * k].set_title(f"seed {seed} G(x): {label}", fontsize=7)
            row[2 + 2 * k].imshow(maps[seed, label][c, i], cmap="inferno", vmin=0, vmax=0.3)
            row[2 + 2 * k].set_title(f"seed {seed} map: {label}", fontsize=7)
        for ax in row:
            ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path, help="a run folder whose notebook 01 has finished")
    parser.add_argument("--model", default="fpgan")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="hyperparameters of a second setting, compared with the run's own")
    parser.add_argument("--iterations", type=int, default=None, help="budget (default: the run's)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--figure", type=Path, default=None)
    parser.add_argument("--figure-seeds", nargs="+", type=int, default=None, help="seeds drawn (default: the first two)")
    add_torch_options(parser)
    args = parser.parse_args()
    ctx = RunContext(args.run.resolve(), Path(tempfile.gettempdir()))
    if not (args.run / "params.json").is_file() or not ctx.slices_table.is_file():
        parser.error(f"--run {args.run}: not a run folder whose notebook 01 has finished "
                     f"(no params.json or {ctx.slices_table.relative_to(ctx.run_dir)})")
    bad = [kv for kv in args.set if "=" not in kv]
    if bad:
        parser.error(f"--set {bad[0]}: expected KEY=VALUE")
    start(args)
    own = run_settings(args.run, args.model)
    iterations = args.iterations or own["iterations"]
    settings = {"run's own": own["config"]}
    if args.set:
        changed = {k: parse_value(v) for k, v in (kv.split("=", 1) for kv in args.set)}
        settings[", ".join(f"{k}={v}" for k, v in changed.items())] = own["config"] | changed

    _, slices = ctx.tables()
    cls = get(args.model)
    train = load_slices(ctx, cohort_slices(slices, cls.uses_labels), "all", CROPPED, splits=[TRAIN], sets=[INTERNAL])
    sets = {"external": load_slices(ctx, slices, "all", CROPPED, splits=[TEST], sets=[EXTERNAL]),
            "validation": load_slices(ctx, slices, "all", CROPPED, splits=[VAL], sets=[INTERNAL])}
    print(f"{args.model} on {args.run}: {len(train)} training slices, {iterations} iterations × batch "
          f"{own['batch_size']}, kernel {own['kernel']}; scored on {len(sets['external'])} external and "
          f"{len(sets['validation'])} validation slices; seeds {args.seeds}")
    print(f"\n{'setting':<28} {'seed':>4} {'set':<10} " + " ".join(
        f"{s + ' ' + m:>12}" for s in SEQUENCES for m in ("auroc", "ap×")) + f" {'adc −rim':>8} {'ssim':>6} {'stripes':>8} {'band':>5} {'s':>5}",
        flush=True)
    results: dict[str, list[dict[str, dict[str, float]]]] = {label: [] for label in settings}
    drawn = args.figure_seeds or args.seeds[:2]
    figure_recons: dict[tuple[int, str], np.ndarray] = {}
    for seed in args.seeds:
        for label, config in settings.items():
            with tempfile.TemporaryDirectory() as out:
                begin = time.perf_counter()
                model, _ = fit(args.model, train, out, TrainSettings(iterations=iterations, batch_size=own["batch_size"],
                                                                     checkpoint_every=10**9, seed=seed),
                               config, device=args.device, show_progress=False, log=lambda _: None)
                seconds = time.perf_counter() - begin
            per_set = {}
            for name, data in sets.items():
                recon = reconstruct(model, data)
                per_set[name] = scores(data, recon, own["kernel"])
                if name == "external" and seed in drawn:
                    figure_recons[seed, label] = recon
                s = per_set[name]
                print(f"{label[:28]:<28} {seed:>4} {name:<10} " + " ".join(
                    f"{s[f'{q} auroc']:>12.3f} {s[f'{q} ap×']:>12.1f}" for q in SEQUENCES)
                    + f" {s['adc auroc −rim']:>8.3f} {statistics.mean(s[f'{q} ssim'] for q in SEQUENCES):>6.3f}"
                    f" {s['hbv stripes']:>8.2f} {s['band']:>5.2f} {seconds:>5.0f}", flush=True)
            results[label].append(per_set)

    keys = [f"{q} auroc" for q in SEQUENCES] + ["adc auroc −rim", "adc ap×", "hbv ap×", "hbv stripes", "band"]
    print(f"\nover {len(args.seeds)} seeds: mean ± sd (min–max); ap× = AUPRC ÷ lesion prevalence; stripes of the "
          f"DWI change; band = anterior rim ÷ other rims; hits = seeds with ADC and DWI AUROC ≥ {TARGET}")
    print(f"{'setting':<28} {'set':<10} " + " ".join(f"{k:>21}" for k in keys) + f" {'hits':>6}")
    for label, rows in results.items():
        for name in sets:
            cells = []
            for key in keys:
                values = [r[name][key] for r in rows]
                digits = 1 if "ap×" in key else 2 if key.endswith(("stripes", "band")) else 3
                cells.append(f"{statistics.mean(values):.{digits}f} ± {statistics.pstdev(values):.{digits}f} "
                             f"({min(values):.{digits}f}–{max(values):.{digits}f})")
            hits = sum(r[name]["adc auroc"] >= TARGET and r[name]["hbv auroc"] >= TARGET for r in rows)
            print(f"{label[:28]:<28} {name:<10} " + " ".join(f"{c:>21}" for c in cells) + f" {hits:>2} of {len(rows)}")
    if args.figure:
        draw(args.figure, sets["external"], figure_recons, own["kernel"])
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
