"""Which settings give a model maps that carry the lesion? A run's model retrained over seeds, scored per sequence.

Run on demand (not a test), on a run folder whose notebook 01 has finished::

    python benchmarks/bench_map_settings.py --run runs/demo --model fpgan --seeds 0 1 2 3 4
    python benchmarks/bench_map_settings.py --run runs/demo --model fpgan --set upsampling=resize \\
        --seeds 0 1 2 3 4 --figure /tmp/fpgan_upsampling.png
    python benchmarks/bench_map_settings.py --run runs/demo --model fpgan --channels per_sequence

The model is trained with ``fit`` — the notebooks' training loop — on the run's own training slices
(the anomaly cohort of ``slices.csv``, cropped mode), with the run's own hyperparameters and budget
(``RUN/params.json``: one 3-channel model or one per sequence, as the run's ``channels``), once per
seed; with ``--set KEY=VALUE …`` and/or ``--channels`` it is trained a second time per seed with those
hyperparameters changed, or per sequence instead of 3-channel (or the other way round). Each model then
translates the run's cropped external test and internal validation slices, and the benchmark prints, per
sequence:

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
* **edit**: per sequence, the mean |G(x) − x| on lesion voxels divided by that on healthy gland voxels:
  whether the model changes lesions more than healthy tissue at all (1 = no more; a map cannot beat
  chance by much without it).

For a model with a critic's domain classifier (the FP-GAN), a line per seed says what the classifier
has learnt: the AUROC of its lesion probability for the slice label on the training, validation and
external slices, for the slices themselves and for G(x). A classifier that only memorised its training
slices is at chance on the others, and its gradient teaches the generator nothing about lesions; a
G(x) that removes what the classifier sees brings its AUROC down to 0.5.

Before the seeds, what a domain classifier could use besides the lesion: for the training slices, per
sequence, the mean of the healthy gland voxels in lesion slices and in healthy slices, and how well that
mean alone tells the two apart (AUROC, 0.5 = not at all). Intensities are normalised per case (the run's
``intensity_reference``); with the gland's percentiles a lesion sets the case's scale.

Then one reference row per set: **the image itself** as the map (1 − x on T2W and ADC,
where csPCa is dark; x on DWI, where it is bright), inside the gland. A map that does not beat it tells
nnU-Net nothing that the image channel does not already hold.

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

from sklearn.metrics import roc_auc_score

from adunet_lib.anomaly_maps.maps import slice_maps
from adunet_lib.anomaly_maps.quality import voxel_quality
from adunet_lib.anomaly_models.data import SliceData, channels_of, cohort_slices, load_slices
from adunet_lib.anomaly_models.metrics import slice_metrics
from adunet_lib.anomaly_models.registry import get
from adunet_lib.anomaly_models.stage import model_sequences
from adunet_lib.anomaly_models.training import TrainSettings, fit
from adunet_lib.run_folder import RunContext
from adunet_lib.runner.params import load_params
from adunet_lib.vocabulary import CROPPED, EXTERNAL, INTERNAL, SEQUENCES, TEST, TRAIN, VAL

TARGET = 0.85  # #15: map AUROC in the gland on ADC and DWI


def parse_value(text: str) -> Any:
    """``KEY=VALUE``'s value as JSON where it parses (numbers, true, lists), else the plain string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def run_settings(run: Path, model: str, params_file: Path | None = None) -> dict[str, Any]:
    """The model's hyperparameters, budget, channels and the map kernel: as the run used them
    (``RUN/params.json``), or as ``params_file`` sets them (for a run made with ``--to 01``)."""
    if params_file is not None:
        blocks = load_params(params_file).blocks  # keyed by block (fixed_point_gan …)
    else:
        blocks = json.loads((run / "params.json").read_text(encoding="utf-8"))  # keyed by notebook (04_… )
    found = [b for b in blocks.values() if model in (b.get("models") or {})]
    if not found:
        raise SystemExit(f"{params_file or run}: the run trained no model {model!r} "
                         "(for a run made with --to 01, give --params with its params file)")
    block = found[0]
    maps = next((b for name, b in blocks.items() if name.endswith("anomaly_maps") and "blur_kernel" in b), None)
    if maps is None:
        raise SystemExit(f"{params_file or run}: no anomaly_maps.blur_kernel")
    return {"config": dict(block["models"][model] or {}), "channels": block.get("channels", "all"),
            "iterations": int(block["iterations"]), "batch_size": int(block["batch_size"]),
            "kernel": int(maps["blur_kernel"])}


def scores(data: SliceData, recon: np.ndarray, kernel: int) -> dict[str, float]:
    """Per sequence: map AUROC and AUPRC ÷ prevalence in the gland, healthy-slice SSIM, stripe ratio."""
    gland = data.masks[:, 0] > 0
    maps = slice_maps(data.images.transpose(1, 0, 2, 3), recon.transpose(1, 0, 2, 3), gland, kernel)
    lesion = data.lesions[:, 0][gland] > 0
    healthy = np.flatnonzero(data.labels == 0)
    in_lesion = data.lesions[:, 0] > 0
    sides = rim_masks(gland)
    rims = {side: rim & ~in_lesion for side, rim in sides.items()}
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
        out[f"{seq} edit"] = float(size[in_lesion].mean() / max(size[gland & ~in_lesion].mean(), 1e-12))
        others = np.mean([size[rims[side]].mean() for side in ("posterior", "left", "right")])
        out["band"] = max(out["band"], float(size[rims["anterior"]].mean() / max(others, 1e-12)))
    return out


#: The direction in which csPCa departs from healthy tissue, per sequence (PI-RADS v2.1: low T2W
#: signal, low ADC, high signal at high b-value).
LESION_SIGN = {"t2w": -1.0, "adc": -1.0, "hbv": 1.0}


def healthy_level(data: SliceData) -> dict[str, tuple[float, float, float]]:
    """Per sequence: mean healthy-gland intensity in lesion slices, in healthy slices, and the AUROC of
    that per-slice mean for the slice label (folded to ≥ 0.5: either direction is a shortcut)."""
    gland = data.masks[:, 0] > 0
    healthy = gland & ~(data.lesions[:, 0] > 0)
    rows = np.flatnonzero((data.labels >= 0) & healthy.reshape(len(data), -1).any(1))
    out = {}
    for c, seq in enumerate(SEQUENCES):
        level = np.array([data.images[i, c][healthy[i]].mean() for i in rows])
        lesion = data.labels[rows] == 1
        auroc = float(roc_auc_score(lesion, level))
        out[seq] = (float(level[lesion].mean()), float(level[~lesion].mean()), max(auroc, 1 - auroc))
    return out


def image_reference(data: SliceData) -> dict[str, float]:
    """Per sequence: the AUROC and AUPRC ÷ prevalence in the gland of the image itself as the map."""
    gland = data.masks[:, 0] > 0
    lesion = data.lesions[:, 0][gland] > 0
    out = {}
    for c, seq in enumerate(SEQUENCES):
        values = data.images[:, c][gland] if LESION_SIGN[seq] > 0 else 1.0 - data.images[:, c][gland]
        quality = voxel_quality(values, lesion, threshold=float("inf"))
        out |= {f"{seq} auroc": quality["auroc"], f"{seq} ap×": quality["auprc"] / lesion.mean()}
    return out


def rim_masks(region: np.ndarray) -> dict[str, np.ndarray]:
    """The pixels of ``region`` (``(n, S, S)``) whose neighbour on each side lies outside it."""
    outside = np.pad(~region, ((0, 0), (1, 1), (1, 1)), constant_values=True)
    return {"anterior": region & outside[:, :-2, 1:-1], "posterior": region & outside[:, 2:, 1:-1],
            "left": region & outside[:, 1:-1, :-2], "right": region & outside[:, 1:-1, 2:]}


def edits(s: dict[str, float]) -> str:
    """The per-sequence edit ratios of :func:`scores`, as ``t2w/adc/hbv``."""
    return "/".join(f"{s[f'{q} edit']:.1f}" for q in SEQUENCES)


def critic_skill(models: dict[str, Any], data: SliceData, recon: np.ndarray) -> dict[str, tuple[float, float]]:
    """Per model with a critic's domain classifier (keyed like ``models``): the AUROC of its lesion
    probability for the slice label, on the slices themselves and on ``recon`` (their G(x))."""
    labelled = data.labels >= 0
    out = {}
    for sequence, model in models.items():
        critic = getattr(model, "discriminator", None)
        if critic is None or len(set(data.labels[labelled])) < 2:
            continue
        channels = channels_of(sequence)
        auroc = []
        for images in (data.images, recon):
            x = torch.from_numpy(np.ascontiguousarray(images[labelled][:, channels])) * 2 - 1
            with torch.no_grad():
                p = torch.softmax(torch.cat([critic(x[i:i + 64])[1] for i in range(0, len(x), 64)]).float(), 1)[:, 1]
            auroc.append(float(roc_auc_score(data.labels[labelled], p.numpy())))
        out[sequence] = (auroc[0], auroc[1])
    return out


def reconstruct(models: dict[str, Any], data: SliceData, batch: int = 64) -> np.ndarray:
    """G(x) of every channel: one 3-channel model (``{"all": model}``) or one model per sequence."""
    out = []
    for sequence, model in models.items():
        images = data.images[:, channels_of(sequence)]
        with torch.no_grad():
            out.append(np.concatenate([model.reconstruct(torch.from_numpy(images[i:i + batch])).numpy()
                                       for i in range(0, len(data), batch)]))
    return np.concatenate(out, axis=1)


def train_models(name: str, ctx: RunContext, table, config: dict[str, Any], channels: str, settings: TrainSettings,
                 device: str) -> dict[str, Any]:
    """One 3-channel model (``channels="all"``) or one per sequence (``"per_sequence"``), keyed by sequence."""
    models = {}
    for sequence in model_sequences(channels):
        train = load_slices(ctx, table, sequence, CROPPED, splits=[TRAIN], sets=[INTERNAL])
        with tempfile.TemporaryDirectory() as out:
            models[sequence], _ = fit(name, train, out, settings, config, device=device, show_progress=False,
                                      log=lambda _: None)
    return models


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
    parser.add_argument("--params", type=Path, default=None,
                        help="the params file whose model settings to use (default: the run's own params.json)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="hyperparameters of a second setting, compared with the run's own")
    parser.add_argument("--channels", choices=["all", "per_sequence"], default=None,
                        help="the second setting: one 3-channel model or one per sequence (the paper)")
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
    own = run_settings(args.run, args.model, args.params)
    iterations = args.iterations or own["iterations"]
    settings = {"run's own": (own["config"], own["channels"])}
    if args.set or args.channels:
        changed = {k: parse_value(v) for k, v in (kv.split("=", 1) for kv in args.set)}
        label = [f"{k}={v}" for k, v in changed.items()] + ([f"channels {args.channels}"] if args.channels else [])
        settings[", ".join(label)] = (own["config"] | changed, args.channels or own["channels"])

    _, slices = ctx.tables()
    cls = get(args.model)
    table = cohort_slices(slices, cls.uses_labels)
    train = load_slices(ctx, table, "all", CROPPED, splits=[TRAIN], sets=[INTERNAL])
    sets = {"external": load_slices(ctx, slices, "all", CROPPED, splits=[TEST], sets=[EXTERNAL]),
            "validation": load_slices(ctx, slices, "all", CROPPED, splits=[VAL], sets=[INTERNAL])}
    print(f"{args.model} on {args.run}: {len(train)} training slices, {iterations} iterations × batch "
          f"{own['batch_size']}, kernel {own['kernel']}; scored on {len(sets['external'])} external and "
          f"{len(sets['validation'])} validation slices; seeds {args.seeds}")
    print("healthy gland level in training slices (lesion slices / healthy slices, AUROC for the slice label): "
          + "; ".join(f"{seq} {a:.3f} / {b:.3f}, {u:.2f}" for seq, (a, b, u) in healthy_level(train).items()))
    print(f"\n{'setting':<28} {'seed':>4} {'set':<10} " + " ".join(
        f"{s + ' ' + m:>12}" for s in SEQUENCES for m in ("auroc", "ap×")) + f" {'adc −rim':>8} {'ssim':>6} {'stripes':>8} {'band':>5} {'edit t/a/h':>14} {'s':>5}",
        flush=True)
    for name, data in sets.items():
        s = image_reference(data)
        print(f"{'image itself (no model)':<28} {'':>4} {name:<10} " + " ".join(
            f"{s[f'{q} auroc']:>12.3f} {s[f'{q} ap×']:>12.1f}" for q in SEQUENCES), flush=True)
    results: dict[str, list[dict[str, dict[str, float]]]] = {label: [] for label in settings}
    drawn = args.figure_seeds or args.seeds[:2]
    figure_recons: dict[tuple[int, str], np.ndarray] = {}
    for seed in args.seeds:
        for label, (config, channels) in settings.items():
            begin = time.perf_counter()
            model = train_models(args.model, ctx, table, config, channels,
                                 TrainSettings(iterations=iterations, batch_size=own["batch_size"],
                                               checkpoint_every=10**9, seed=seed), args.device)
            seconds = time.perf_counter() - begin
            per_set, recons = {}, {}
            for name, data in sets.items():
                recon = reconstruct(model, data)
                recons[name] = (data, recon)
                per_set[name] = scores(data, recon, own["kernel"])
                if name == "external" and seed in drawn:
                    figure_recons[seed, label] = recon
                s = per_set[name]
                print(f"{label[:28]:<28} {seed:>4} {name:<10} " + " ".join(
                    f"{s[f'{q} auroc']:>12.3f} {s[f'{q} ap×']:>12.1f}" for q in SEQUENCES)
                    + f" {s['adc auroc −rim']:>8.3f} {statistics.mean(s[f'{q} ssim'] for q in SEQUENCES):>6.3f}"
                    f" {s['hbv stripes']:>8.2f} {s['band']:>5.2f} {edits(s):>14} {seconds:>5.0f}", flush=True)
            results[label].append(per_set)
            if not any(hasattr(m, "discriminator") for m in model.values()):
                continue  # no critic: nothing more to print (and no need to reconstruct the training slices)
            skill = {name: critic_skill(model, data, recon)
                     for name, (data, recon) in {"training": (train, reconstruct(model, train)), **recons}.items()}
            for sequence in next(iter(skill.values()), {}):
                print(f"{'':<28} {seed:>4} critic's domain classifier ({sequence}), slice-label AUROC, slices / G(x): "
                      + "; ".join(f"{name} {v[sequence][0]:.2f} / {v[sequence][1]:.2f}" for name, v in skill.items()
                                  if sequence in v), flush=True)

    keys = [f"{q} auroc" for q in SEQUENCES] + ["adc auroc −rim", "adc ap×", "hbv ap×", "hbv stripes", "band",
                                                 "adc edit", "hbv edit"]
    print(f"\nover {len(args.seeds)} seeds: mean ± sd (min–max); ap× = AUPRC ÷ lesion prevalence; stripes of the "
          f"DWI change; band = anterior rim ÷ other rims; edit = |G(x) − x| on lesions ÷ on healthy gland; hits = seeds with ADC and DWI AUROC ≥ {TARGET}")
    print(f"{'setting':<28} {'set':<10} " + " ".join(f"{k:>21}" for k in keys) + f" {'hits':>6}")
    for label, rows in results.items():
        for name in sets:
            cells = []
            for key in keys:
                values = [r[name][key] for r in rows]
                digits = 1 if "ap×" in key else 2 if key.endswith(("stripes", "band", "edit")) else 3
                cells.append(f"{statistics.mean(values):.{digits}f} ± {statistics.pstdev(values):.{digits}f} "
                             f"({min(values):.{digits}f}–{max(values):.{digits}f})")
            hits = sum(r[name]["adc auroc"] >= TARGET and r[name]["hbv auroc"] >= TARGET for r in rows)
            print(f"{label[:28]:<28} {name:<10} " + " ".join(f"{c:>21}" for c in cells) + f" {hits:>2} of {len(rows)}")
    if args.figure:
        draw(args.figure, sets["external"], figure_recons, own["kernel"])
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
