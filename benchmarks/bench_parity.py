"""adunet's models and the reference code trained side by side on a run's slices, scored alike.

Run on demand (not a test), after notebook 01 of a phantom run (one with lesion-free twins)::

    python benchmarks/bench_parity.py --run runs/demo --params params/demo.yaml \
        --reference ~/Fixed-Point-GAN --iterations 250 --seeds 0 1 2 --out figures/bench/parity
    python benchmarks/bench_parity.py --run runs/demo --params params/demo.yaml --implementations adunet \
        --iterations 125 250 500 1000 2000 4000 --lambda-id 0.1 --seeds 0 1 --out figures/bench/curve_brats
    python benchmarks/bench_parity.py --run runs/demo --params params/demo.yaml --implementations adunet \
        --sequence adc --iterations 250 1000 10000 --lambda-id 0.1 --seeds 0 --out /tmp/curve_adc
    python benchmarks/bench_parity.py --model ddpm --run runs/demo --params params/demo.yaml \
        --reference ~/diffusion-anomaly --set class_conditional=true --iterations 120 1200 --seeds 0 1 \
        --out figures/bench/parity_ddpm

``--model fpgan`` (the default): the Fixed-Point GAN, against the official solver. ``--model ddpm``: the
guided diffusion model, against Wolleb et al.'s code (``benchmarks/reference_diffusion.py``: their
networks, loss and classifier-guided DDIM translation, imported from a checkout of
github.com/JuliaWolleb/diffusion-anomaly); ``--swap`` trains both side by side and translates with each
pairing of one code's noise predictor and either code's classifier (rows named by the pairing), to find
which network makes a difference. ``--sequence`` trains one model on that sequence alone, as
the paper does (adunet only; the official FP-GAN generator is built for 3 channels); the default is
the demo's one 3-channel model. ``--set KEY=VALUE`` changes a hyperparameter of the params file's
block for both implementations.

Fixed-Point GAN. Both implementations get the same slices (the run's FP-GAN training cohort: ``cohort_slices`` +
``training_slices``, as notebook 04 trains), the same batches (adunet's seeded, healthy/lesion-balanced
``BatchSampler`` with its flips), the same widths, learning rates, λ's, ``n_critic`` and seed. What
differs is the implementation: adunet's ``FixedPointGAN.train_step`` against the official networks
(``model.py`` of the checkout given with ``--reference``, imported, never copied) trained by the official
solver's algorithm (``reference_fpgan.ReferenceStep``), with its step-wise learning-rate decay (every 1000
iterations in the last ``1 − decay_from`` of the budget) where adunet decays linearly.

Diffusion model: the same slices (the run's cohort for a label-using model, as notebook 03 trains), the
same batches (without flips, as both codes train), widths, learning rates and seeds; adunet's
``GuidedDiffusion.train_step`` against the reference's ``training_losses`` and classifier step, and
adunet's DDIM translation against the reference's ``ddim_sample_loop_known`` at the same noise level and
number of DDIM steps (see ``reference_diffusion``).

``--iterations`` lists checkpoints of one training per seed (log-spaced for a learning curve; the
budget is the largest, and the learning rate decays relative to it). At each checkpoint every held-out
labelled case (validation, external test; ``--held-cases N``: a fixed draw of N per set, for a large run
such as runs/bench) is reconstructed to healthy, and per set and sequence:

- ``map_auroc``: voxel AUROC of the anomaly map Φ(|x − G(x)|) (box filter of ``--kernel`` pixels, 0 outside
  the gland) for lesion vs other gland voxels, on the model slices (not resampled to the T2W grid);
- ``image_auroc``: the same for the image itself (dark T2W and ADC lesions, bright DWI): a map that does
  not beat it carries nothing a segmenter lacks;
- ``lesion_removal`` and ``healthy_change`` against each study's twin (see ``adunet_lib.anomaly_models.oracle``).

Printed and written (``--out PREFIX``: ``PREFIX.csv`` rows per implementation × iterations × seed × set ×
sequence, ``PREFIX.md`` means ± sd over seeds and, with both implementations, a verdict per budget).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from _common import add_torch_options, start

from adunet_lib.anomaly_maps.maps import slice_maps
from adunet_lib.anomaly_maps.quality import voxel_quality
from adunet_lib.anomaly_models import create
from adunet_lib.anomaly_models.base import SliceBatch
from adunet_lib.anomaly_models.data import BatchSampler, cohort_slices, load_slices, training_slices
from adunet_lib.anomaly_models.oracle import edit_scores, edit_sums, twin_stack
from adunet_lib.preprocessing.pipeline import PreprocessedCase
from adunet_lib.run_folder import RunContext
from adunet_lib.vocabulary import CROPPED, INTERNAL, SEQUENCE_DISPLAY, SEQUENCES, TEST, TRAIN, VAL

#: lesions are dark on T2W and ADC, bright on high-b DWI: the sign that makes the image itself a map
LESION_SIGN = {"t2w": -1.0, "adc": -1.0, "hbv": 1.0}


#: the params block each model is configured in
BLOCK = {"fpgan": "fixed_point_gan", "ddpm": "diffusion"}


def model_block(params: Path, model: str = "fpgan") -> tuple[dict, int]:
    """(the model's hyperparameters, batch size) of a params file's block for ``model``."""
    data = yaml.safe_load(params.read_text(encoding="utf-8"))
    block = data.get(BLOCK[model], {})
    return dict((block.get("models") or {}).get(model) or {}), int(block.get("batch_size", 16))


def parse_settings(items: list[str]) -> dict:
    """``KEY=VALUE`` strings → a dict, each value read as YAML (``true``, ``0.1``, ``[16, 32]``)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            sys.exit(f"--set {item}: expected KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value)
    return out


def channel_subset(batch: SliceBatch, channels: list[int]) -> SliceBatch:
    """The batch with only ``channels`` of its images (a per-sequence model's input)."""
    if len(channels) == batch.images.shape[1]:
        return batch
    return SliceBatch(batch.images[:, channels].contiguous(), batch.labels, batch.masks)


class HeldOut:
    """Every held-out labelled case's cropped slices, gland, lesion and twin, for scoring G(x); with
    ``per_set``, that many cases of each set (validation, external test), drawn with a fixed seed so
    every run and seed scores the same ones."""

    def __init__(self, ctx: RunContext, cases: pd.DataFrame, per_set: int | None = None):
        chosen = cases[cases["labeled"].astype(bool) & cases["split"].isin([VAL, TEST])]
        if per_set is not None:
            chosen = pd.concat(group.sample(n=min(per_set, len(group)), random_state=0).sort_values("case_id")
                               for _, group in chosen.groupby("split", sort=True))
        self.items = []
        for _, row in chosen.iterrows():
            pre = PreprocessedCase.from_run(ctx, row["set"], row["case_id"])
            st = pre.stack(CROPPED)
            keep = st.gland_slices()
            twin = twin_stack(ctx, pre)
            if twin is None:
                sys.exit(f"{ctx.run_dir}: case {row['case_id']} has no lesion-free twin; run notebook 01 of a "
                         "phantom run (synthetic data) with this adunet")
            self.items.append((row["split"], st.images[:, keep], twin[:, keep], st.gland[keep], st.lesion[keep]))

    def score(self, reconstruct, kernel: int, channels: list[int] | None = None) -> list[dict]:
        """Rows per set and sequence for ``reconstruct`` ((N, C, S, S) in [0, 1] → the same) of the
        sequences ``channels`` (all three by default); the other sequences are left as they are and not
        scored."""
        channels = list(range(len(SEQUENCES))) if channels is None else channels
        pooled: dict[str, dict[str, list]] = {}
        for split, images, twin, gland, lesion in self.items:
            stack = np.ascontiguousarray(images.transpose(1, 0, 2, 3))
            with torch.no_grad():
                out = reconstruct(np.ascontiguousarray(stack[:, channels]))
            rec = stack.copy()
            rec[:, channels] = out
            rec = rec.transpose(1, 0, 2, 3) * (gland[None] > 0)
            maps = slice_maps(images, rec, gland, kernel)
            inside = gland > 0
            entry = pooled.setdefault(split, {"maps": [], "images": [], "lesion": [], "sums": []})
            entry["maps"].append(maps[:, inside])
            entry["images"].append(images[:, inside])
            entry["lesion"].append(lesion[inside] > 0)
            entry["sums"].append(edit_sums(images, rec, twin, gland, lesion, gland.astype(np.uint8)))
        rows = []
        for split, entry in pooled.items():
            truth = np.concatenate(entry["lesion"])
            maps, images = np.concatenate(entry["maps"], axis=1), np.concatenate(entry["images"], axis=1)
            for c, seq in enumerate(SEQUENCES):
                if c not in channels:
                    continue
                rows.append({"set": "validation" if split == VAL else "external test", "sequence": SEQUENCE_DISPLAY[seq],
                             "map_auroc": voxel_quality(maps[c], truth, threshold=math.inf)["auroc"],
                             "image_auroc": voxel_quality(LESION_SIGN[seq] * images[c], truth,
                                                          threshold=math.inf)["auroc"],
                             **edit_scores(s[seq]["gland"] for s in entry["sums"])})
        return rows


def official_decay(step, total: int, decay_from: float, update_every: int = 1000) -> float:
    """The official solver's learning-rate factor after ``step`` iterations: down by 1/decay_iters every
    ``update_every`` iterations once past ``total − decay_iters``."""
    decay_iters = max(1, int(round(total * (1 - decay_from))))
    steps = sum(1 for i in range(update_every, step + 1, update_every) if i > total - decay_iters)
    return max(0.0, 1.0 - steps * update_every / decay_iters) if steps else 1.0


def train_adunet(train, config: dict, batch: int, seed: int, total: int, checkpoints: list[int], held: HeldOut,
                 kernel: int, device: str, model_name: str = "fpgan", channels: list[int] | None = None) -> list[dict]:
    channels = list(range(len(SEQUENCES))) if channels is None else channels
    torch.manual_seed(seed)
    model = create(model_name, len(channels), int(train.images.shape[-1]), config, device=device)
    model.configure(total, max(1, math.ceil(len(train) / batch)))
    sampler = BatchSampler(train, batch, balanced=True, seed=seed, flip=model.flip_augmentation)
    model.train()
    rows, seconds = [], 0.0
    for step in range(1, total + 1):
        begin = time.perf_counter()
        model.train_step(channel_subset(sampler.next(), channels).to(model.device))
        model.step += 1
        seconds += time.perf_counter() - begin
        if step in checkpoints:
            # reconstruct() puts the networks in eval mode; train() below switches back
            recon = lambda x: model.reconstruct(torch.from_numpy(x)).numpy()  # noqa: E731
            rows += [{"iterations": step, "train_minutes": seconds / 60, **r}
                     for r in held.score(recon, kernel, channels)]
            model.train()
    return rows


def train_reference(checkout: str, train, config: dict, batch: int, seed: int, total: int, checkpoints: list[int],
                    held: HeldOut, kernel: int, device: str) -> list[dict]:
    from reference_fpgan import ReferenceStep

    defaults = create("fpgan", 3, 64, config, device="meta").config  # the resolved hyperparameters
    torch.manual_seed(seed)
    ref = ReferenceStep(checkout, int(train.images.shape[-1]), batch, torch.device(device), conv_dim=defaults.conv_dim,
                        n_res_blocks=defaults.n_res_blocks, d_layers=defaults.d_layers, n_critic=defaults.n_critic,
                        lambda_cls=defaults.lambda_cls, lambda_rec=defaults.lambda_rec, lambda_id=defaults.lambda_id,
                        lambda_gp=defaults.lambda_gp)
    for opt, lr in ((ref.g_opt, defaults.g_lr), (ref.d_opt, defaults.d_lr)):
        for group in opt.param_groups:
            group["lr"], group["betas"] = lr, (defaults.beta1, defaults.beta2)
    sampler = BatchSampler(train, batch, balanced=True, seed=seed, flip=True)
    healthy = torch.zeros(1, dtype=torch.long)
    rows, seconds = [], 0.0
    for step in range(1, total + 1):
        begin = time.perf_counter()
        b = sampler.next()
        ref.x = b.images.to(device) * 2 - 1
        ref.labels = b.labels.to(device).long()
        ref.step()
        factor = official_decay(step, total, defaults.decay_from)
        for opt, lr in ((ref.g_opt, defaults.g_lr), (ref.d_opt, defaults.d_lr)):
            for group in opt.param_groups:
                group["lr"] = lr * factor
        seconds += time.perf_counter() - begin
        if step in checkpoints:
            # the official code never switches G to eval mode (its instance norm would then use running
            # statistics): it translates with per-image statistics, as adunet's generator always does

            def recon(x: np.ndarray) -> np.ndarray:
                x = torch.from_numpy(x).to(device) * 2 - 1
                c = torch.nn.functional.one_hot(healthy.expand(len(x)), ref.c_dim).float().to(device)
                return ((torch.tanh(x + ref.G(x, c)) + 1) / 2).cpu().numpy()

            rows += [{"iterations": step, "train_minutes": seconds / 60, **r} for r in held.score(recon, kernel)]
    return rows


TITLE = {"fpgan": "Fixed-Point GAN: adunet vs the official solver",
         "ddpm": "Guided diffusion: adunet vs Wolleb et al.'s code"}


def summarise(frame: pd.DataFrame) -> str:
    keys = (["setting"] if "setting" in frame and frame["setting"].nunique() > 1 else []) + \
        ["implementation", "iterations", "set", "sequence"]
    values = [v for v in ("map_auroc", "image_auroc", "lesion_removal", "healthy_change", "train_minutes") if v in frame]
    grouped = frame.groupby(keys, sort=False)[values]
    mean, sd = grouped.mean(), grouped.std(ddof=1).fillna(0.0)
    lines = ["| " + " | ".join(keys + values + ["seeds"]) + " |", "|" + "---|" * (len(keys) + len(values) + 1)]
    counts = frame.groupby(keys, sort=False)["seed"].nunique()
    for key in mean.index:
        cells = [f"{mean.loc[key, v]:.3f} ± {sd.loc[key, v]:.3f}" for v in values]
        lines.append("| " + " | ".join([str(k) for k in key] + cells + [str(counts.loc[key])]) + " |")
    impls = list(frame["implementation"].unique())
    if set(impls) == {"adunet", "reference"}:
        # each adunet setting against the reference's rows (of whichever run has them)
        reference = frame[frame["implementation"] == "reference"]
        ours = frame[frame["implementation"] == "adunet"]
        settings = list(ours["setting"].unique()) if "setting" in keys else [None]
        for setting in settings:
            mine = ours if setting is None else ours[ours["setting"] == setting]
            named = "" if setting is None else f", {setting}"
            lines += ["", f"Verdict per budget, set and sequence (adunet{named} − reference, map AUROC and lesion "
                      "removal; 'same' when the difference of the means is within 2 sd of the seeds' spread of either):",
                      ""]
            for (iters, set_name, seq), block in mine.groupby(["iterations", "set", "sequence"], sort=False):
                other = reference[(reference["iterations"] == iters) & (reference["set"] == set_name)
                                  & (reference["sequence"] == seq)]
                if other.empty:
                    continue
                parts = []
                for metric in ("map_auroc", "lesion_removal"):
                    a, b = block[metric], other[metric]
                    diff = a.mean() - b.mean()
                    spread = 2 * max(a.std(ddof=1) if len(a) > 1 else 0.0, b.std(ddof=1) if len(b) > 1 else 0.0)
                    word = "same" if abs(diff) <= spread else ("adunet better" if diff > 0 else "adunet worse")
                    parts.append(f"{metric} {diff:+.3f} ({word})")
                lines.append(f"- {iters} iterations, {set_name}, {seq}: " + "; ".join(parts))
    return "\n".join(lines)


def draw_curves(frame: pd.DataFrame, path: Path, title: str) -> None:
    """Map AUROC against iterations (log scale) per set and sequence: a line per implementation (the mean
    over seeds, a dot per seed), the image itself (dashed) and 0.85 (dotted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    sets = [s for s in ("validation", "external test") if s in set(frame["set"])]
    seqs = [SEQUENCE_DISPLAY[q] for q in SEQUENCES if SEQUENCE_DISPLAY[q] in set(frame["sequence"])]
    fig, axes = plt.subplots(len(sets), len(seqs), figsize=(3.6 * len(seqs), 3.0 * len(sets)), squeeze=False,
                             sharex=True, sharey=True)
    colours = {"adunet": "tab:blue", "reference": "tab:orange"}
    # a line per implementation (and setting, where the rows hold several), one colour for it in every panel
    lines = ["implementation"] + (["setting"] if "setting" in frame and frame["setting"].nunique() > 1 else [])
    palette = {key: f"C{k}" for k, key in enumerate(frame[lines].drop_duplicates().itertuples(index=False, name=None))}
    for i, set_name in enumerate(sets):
        for j, seq in enumerate(seqs):
            ax = axes[i][j]
            block = frame[(frame["set"] == set_name) & (frame["sequence"] == seq)]
            for key, rows in block.groupby(lines, sort=False):
                key = key if isinstance(key, tuple) else (key,)
                colour = colours.get(key[0]) if len(lines) == 1 else palette[key]
                mean = rows.groupby("iterations")["map_auroc"].mean()
                ax.plot(mean.index, mean.values, "-o", ms=3, color=colour, label=" ".join(map(str, key)))
                ax.scatter(rows["iterations"], rows["map_auroc"], s=8, alpha=0.4, color=colour)
            if len(block):
                ax.axhline(float(block["image_auroc"].iloc[0]), ls="--", color="grey", lw=1, label="image itself")
            ax.axhline(0.85, ls=":", color="black", lw=1, label="0.85")
            ax.axhline(0.5, ls="-", color="lightgrey", lw=0.8)
            ax.set_xscale("log")
            ticks = sorted(frame["iterations"].unique())
            ax.set_xticks(ticks, [f"{t:g}" if t < 1000 else f"{t / 1000:g}k" for t in ticks], fontsize=7)
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_ylim(0.2, 1.0)
            ax.set_title(f"{seq}, {set_name}", fontsize=9)
            if i == len(sets) - 1:
                ax.set_xlabel("iterations")
            if j == 0:
                ax.set_ylabel("map AUROC (lesion voxels)")
    handles = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.legend(handles.values(), handles.keys(), fontsize=7, loc="lower center", ncol=min(len(handles), 4))
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a phantom run folder after notebook 01 (e.g. runs/demo)")
    parser.add_argument("--params", help="the params file whose block for --model to train")
    parser.add_argument("--model", default="fpgan", choices=sorted(BLOCK))
    parser.add_argument("--reference", help="a checkout of the reference code: the official Fixed-Point GAN "
                        "(github.com/mahfuzmohammad/Fixed-Point-GAN) for fpgan, Wolleb et al.'s "
                        "(github.com/JuliaWolleb/diffusion-anomaly) for ddpm")
    parser.add_argument("--sequence", choices=list(SEQUENCES), help="one model on this sequence alone (the paper's "
                        "layout; adunet only); default: one model on all three")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="change a hyperparameter")
    parser.add_argument("--swap", action="store_true", help="ddpm: train adunet's and the reference's networks side "
                        "by side and translate with every pairing of noise predictor and classifier (which network "
                        "makes the difference)")
    parser.add_argument("--implementations", nargs="+", default=["adunet", "reference"], choices=["adunet", "reference"])
    parser.add_argument("--iterations", nargs="+", type=int, default=[250])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--lambda-id", type=float, help="override λ_id (the official BRATS recipe: 0.1)")
    parser.add_argument("--held-cases", type=int, metavar="N", help="score N held-out cases of each set (a fixed "
                        "draw) instead of all: a large run's checkpoints in minutes (default: every case)")
    parser.add_argument("--kernel", type=int, default=4, help="Φ's box filter in model-slice pixels (demo: 4)")
    parser.add_argument("--speed", nargs="*", default=[], help="adunet speed switches (e.g. critic_gemm fused_optimizer)")
    parser.add_argument("--out", help="write OUT.csv and OUT.md")
    parser.add_argument("--figure", help="draw the map AUROC learning curves to this PNG")
    parser.add_argument("--label", help="a name for this run's setting (a 'setting' column)")
    parser.add_argument("--by-file", action="store_true", help="with --combine: each file is a setting of its own, "
                        "named by the file (where its rows name none); without it, files add seeds")
    parser.add_argument("--names", nargs="+", help="with --by-file: the settings' names, one per file (default: "
                        "the file names)")
    parser.add_argument("--combine", nargs="+", metavar="CSV", help="no training: summarise (and draw) the rows of "
                        "earlier runs' OUT.csv files together (e.g. one run per seed or per sequence)")
    add_torch_options(parser)
    args = parser.parse_args()
    if args.combine:
        combine(args)
        return
    if not args.run or not args.params:
        parser.error("--run and --params are needed to train (or --combine CSV … to summarise earlier runs)")
    if args.swap and (args.model != "ddpm" or not args.reference):
        parser.error("--swap pairs the diffusion models' networks: it needs --model ddpm and --reference CHECKOUT")
    if "reference" in args.implementations and not args.reference:
        parser.error("--reference CHECKOUT is needed to train the reference code (or --implementations adunet)")
    if "reference" in args.implementations and args.sequence and args.model == "fpgan":
        parser.error("--sequence: the official Fixed-Point GAN's generator takes 3 channels; use "
                     "--implementations adunet")
    if args.held_cases is not None and args.held_cases < 1:
        parser.error(f"--held-cases {args.held_cases}: score at least 1 case of each set (or leave it out: every case)")
    start(args)
    ctx = RunContext(Path(args.run), Path(args.run) / "figures")
    cases, slices = ctx.tables()
    config, batch = model_block(Path(args.params), args.model)
    config.update(parse_settings(args.set))
    if args.lambda_id is not None:
        config["lambda_id"] = args.lambda_id
    config.update({o: True for o in args.speed})
    channels = [list(SEQUENCES).index(args.sequence)] if args.sequence else list(range(len(SEQUENCES)))
    rows_used = cohort_slices(slices, uses_labels=True)
    data = load_slices(ctx, rows_used, "all", CROPPED, splits=[TRAIN], sets=[INTERNAL])
    train = training_slices(data, uses_labels=True)
    held = HeldOut(ctx, cases, args.held_cases)
    checkpoints = sorted(set(args.iterations))
    total = checkpoints[-1]
    seqs = [SEQUENCE_DISPLAY[SEQUENCES[c]] for c in channels]
    print(f"{len(train)} training slices ({int((train.labels == 1).sum())} with lesions), {len(held.items)} held-out "
          f"cases; {args.model} {config} on {'/'.join(seqs)}, batch {batch}; checkpoints {checkpoints}")
    rows = []
    for seed in args.seeds:
        if args.swap:
            from reference_diffusion import train_swapped

            begin = time.perf_counter()
            got = train_swapped(args.reference, train, config, batch, seed, total, checkpoints, held, args.kernel,
                                args.device, channels)
            rows += [{**({"setting": args.label} if args.label else {}), "implementation": r.pop("pairing"),
                      "seed": seed, **r} for r in got]
            print(f"seed {seed} swapped pairings: {time.perf_counter() - begin:.0f} s")
            continue
        for impl in args.implementations:
            begin = time.perf_counter()
            if impl == "adunet":
                got = train_adunet(train, config, batch, seed, total, checkpoints, held, args.kernel, args.device,
                                   args.model, channels)
            elif args.model == "ddpm":
                from reference_diffusion import train_reference_ddpm

                got = train_reference_ddpm(args.reference, train, {k: v for k, v in config.items() if k not in args.speed},
                                           batch, seed, total, checkpoints, held, args.kernel, args.device, channels)
            else:
                got = train_reference(args.reference, train, {k: v for k, v in config.items() if k not in args.speed},
                                      batch, seed, total, checkpoints, held, args.kernel, args.device)
            rows += [{**({"setting": args.label} if args.label else {}), "implementation": impl, "seed": seed, **r}
                     for r in got]
            print(f"seed {seed} {impl}: {time.perf_counter() - begin:.0f} s")
    frame = pd.DataFrame(rows)
    text = summarise(frame)
    print(text)
    if args.figure:
        draw_curves(frame, Path(args.figure), f"{TITLE[args.model]}: {args.model} on {'/'.join(seqs)}")
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.round(5).to_csv(out.parent / f"{out.name}.csv", index=False)
        command = " ".join(["python benchmarks/bench_parity.py", *[a if "/" not in a or a.startswith(("params/", "figures/"))
                                                                    else "<path>" for a in sys.argv[1:]]])
        (out.parent / f"{out.name}.md").write_text(f"# {TITLE[args.model]}\n\n`{command}`\n\n"
                                          f"{len(train)} training slices; {args.model} {config} on {'/'.join(seqs)}; "
                                          f"batch {batch}.\n\n{text}\n", encoding="utf-8")


def combine(args: argparse.Namespace) -> None:
    """``--combine``: the rows of earlier runs' CSVs, summarised (and drawn) together."""
    frames = []
    if args.names and (not args.by_file or len(args.names) != len(args.combine)):
        sys.exit(f"--names: one name per --combine file ({len(args.combine)}), with --by-file")
    for k, name in enumerate(args.combine):
        path = Path(name)
        if not path.is_file():
            sys.exit(f"--combine {name}: no such file")
        rows = pd.read_csv(path)
        if args.by_file and "setting" not in rows:
            rows.insert(0, "setting", args.names[k] if args.names else path.stem)
            # a setting is adunet's; the reference code is the same in every file
            rows.loc[rows["implementation"] == "reference", "setting"] = "their code"
        frames.append(rows)
    frame = pd.concat(frames, ignore_index=True)
    text = summarise(frame)
    print(text)
    if args.figure:
        draw_curves(frame, Path(args.figure), TITLE[args.model])
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out.parent / f"{out.name}.csv", index=False)
        sources = ", ".join(Path(n).name for n in args.combine)
        (out.parent / f"{out.name}.md").write_text(
            f"# {TITLE[args.model]}\n\nRows of {len(args.combine)} run(s) of `benchmarks/bench_parity.py` ({sources}), "
            f"summarised with `--combine`.\n\n{text}\n", encoding="utf-8")


if __name__ == "__main__":
    main()
