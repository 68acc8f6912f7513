"""Fixed-Point GAN: adunet's ``fpgan`` and the official solver trained side by side on a run's slices, scored alike.

Run on demand (not a test), after notebook 01 of a phantom run (one with lesion-free twins)::

    python benchmarks/bench_parity.py --run runs/demo --params params/demo.yaml \
        --reference ~/Fixed-Point-GAN --iterations 250 --seeds 0 1 2 --out figures/bench/parity
    python benchmarks/bench_parity.py --run runs/demo --params params/demo.yaml --implementations adunet \
        --iterations 125 250 500 1000 2000 4000 --lambda-id 0.1 --seeds 0 1 --out figures/bench/curve_brats

Both implementations get the same slices (the run's FP-GAN training cohort: ``cohort_slices`` +
``training_slices``, as notebook 04 trains), the same batches (adunet's seeded, healthy/lesion-balanced
``BatchSampler`` with its flips), the same widths, learning rates, λ's, ``n_critic`` and seed. What
differs is the implementation: adunet's ``FixedPointGAN.train_step`` against the official networks
(``model.py`` of the checkout given with ``--reference``, imported, never copied) trained by the official
solver's algorithm (``reference_fpgan.ReferenceStep``), with its step-wise learning-rate decay (every 1000
iterations in the last ``1 − decay_from`` of the budget) where adunet decays linearly.

``--iterations`` lists checkpoints of one training per seed (log-spaced for a learning curve; the
budget is the largest, and the learning rate decays relative to it). At each checkpoint every held-out
labelled case (validation, external test) is reconstructed to healthy, and per set and sequence:

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
from adunet_lib.anomaly_models.data import BatchSampler, cohort_slices, load_slices, training_slices
from adunet_lib.anomaly_models.oracle import edit_scores, edit_sums, twin_stack
from adunet_lib.preprocessing.pipeline import PreprocessedCase
from adunet_lib.run_folder import RunContext
from adunet_lib.vocabulary import CROPPED, INTERNAL, SEQUENCE_DISPLAY, SEQUENCES, TEST, TRAIN, VAL

#: lesions are dark on T2W and ADC, bright on high-b DWI: the sign that makes the image itself a map
LESION_SIGN = {"t2w": -1.0, "adc": -1.0, "hbv": 1.0}


def fpgan_block(params: Path) -> tuple[dict, int]:
    """(the fpgan hyperparameters, batch size) of a params file's ``fixed_point_gan`` block."""
    data = yaml.safe_load(params.read_text(encoding="utf-8"))
    block = data.get("fixed_point_gan", {})
    return dict((block.get("models") or {}).get("fpgan") or {}), int(block.get("batch_size", 16))


class HeldOut:
    """Every held-out labelled case's cropped slices, gland, lesion and twin, for scoring G(x)."""

    def __init__(self, ctx: RunContext, cases: pd.DataFrame):
        chosen = cases[cases["labeled"].astype(bool) & cases["split"].isin([VAL, TEST])]
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

    def score(self, reconstruct, kernel: int) -> list[dict]:
        """Rows per set and sequence for ``reconstruct`` ((N, 3, S, S) in [0, 1] → the same)."""
        pooled: dict[str, dict[str, list]] = {}
        for split, images, twin, gland, lesion in self.items:
            with torch.no_grad():
                rec = reconstruct(np.ascontiguousarray(images.transpose(1, 0, 2, 3)))
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
                 kernel: int, device: str) -> list[dict]:
    torch.manual_seed(seed)
    model = create("fpgan", 3, int(train.images.shape[-1]), config, device=device)
    model.configure(total, max(1, math.ceil(len(train) / batch)))
    sampler = BatchSampler(train, batch, balanced=True, seed=seed, flip=model.flip_augmentation)
    model.train()
    rows, seconds = [], 0.0
    for step in range(1, total + 1):
        begin = time.perf_counter()
        model.train_step(sampler.next().to(model.device))
        model.step += 1
        seconds += time.perf_counter() - begin
        if step in checkpoints:
            # reconstruct() puts the networks in eval mode; train() below switches back
            recon = lambda x: model.reconstruct(torch.from_numpy(x)).numpy()  # noqa: E731
            rows += [{"iterations": step, "train_minutes": seconds / 60, **r} for r in held.score(recon, kernel)]
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


def summarise(frame: pd.DataFrame) -> str:
    keys = ["implementation", "iterations", "set", "sequence"]
    values = ["map_auroc", "image_auroc", "lesion_removal", "healthy_change", "train_minutes"]
    grouped = frame.groupby(keys, sort=False)[values]
    mean, sd = grouped.mean(), grouped.std(ddof=1).fillna(0.0)
    lines = ["| " + " | ".join(keys + values + ["seeds"]) + " |", "|" + "---|" * (len(keys) + len(values) + 1)]
    counts = frame.groupby(keys, sort=False)["seed"].nunique()
    for key in mean.index:
        cells = [f"{mean.loc[key, v]:.3f} ± {sd.loc[key, v]:.3f}" for v in values]
        lines.append("| " + " | ".join([str(k) for k in key] + cells + [str(counts.loc[key])]) + " |")
    impls = list(frame["implementation"].unique())
    if len(impls) == 2:
        lines += ["", "Verdict per budget, set and sequence (adunet − reference, map AUROC and lesion removal; "
                  "'same' when the difference of the means is within 2 sd of the seeds' spread of either):", ""]
        for (iters, set_name, seq), block in frame.groupby(["iterations", "set", "sequence"], sort=False):
            parts = []
            for metric in ("map_auroc", "lesion_removal"):
                a = block.loc[block["implementation"] == impls[0], metric]
                b = block.loc[block["implementation"] == impls[1], metric]
                diff = a.mean() - b.mean()
                spread = 2 * max(a.std(ddof=1) if len(a) > 1 else 0.0, b.std(ddof=1) if len(b) > 1 else 0.0)
                word = "same" if abs(diff) <= spread else ("adunet better" if diff > 0 else "adunet worse")
                parts.append(f"{metric} {diff:+.3f} ({word})")
            lines.append(f"- {iters} iterations, {set_name}, {seq}: " + "; ".join(parts))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a phantom run folder after notebook 01 (e.g. runs/demo)")
    parser.add_argument("--params", required=True, help="the params file whose fixed_point_gan block to train")
    parser.add_argument("--reference", help="a checkout of the official Fixed-Point GAN (github.com/mahfuzmohammad/Fixed-Point-GAN)")
    parser.add_argument("--implementations", nargs="+", default=["adunet", "reference"], choices=["adunet", "reference"])
    parser.add_argument("--iterations", nargs="+", type=int, default=[250])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--lambda-id", type=float, help="override λ_id (the official BRATS recipe: 0.1)")
    parser.add_argument("--kernel", type=int, default=4, help="Φ's box filter in model-slice pixels (demo: 4)")
    parser.add_argument("--speed", nargs="*", default=[], help="adunet speed switches (e.g. critic_gemm fused_optimizer)")
    parser.add_argument("--out", help="write OUT.csv and OUT.md")
    add_torch_options(parser)
    args = parser.parse_args()
    if "reference" in args.implementations and not args.reference:
        parser.error("--reference CHECKOUT is needed to train the official solver (or --implementations adunet)")
    start(args)
    ctx = RunContext(Path(args.run), Path(args.run) / "figures")
    cases, slices = ctx.tables()
    config, batch = fpgan_block(Path(args.params))
    if args.lambda_id is not None:
        config["lambda_id"] = args.lambda_id
    config.update({o: True for o in args.speed})
    rows_used = cohort_slices(slices, uses_labels=True)
    data = load_slices(ctx, rows_used, "all", CROPPED, splits=[TRAIN], sets=[INTERNAL])
    train = training_slices(data, uses_labels=True)
    held = HeldOut(ctx, cases)
    checkpoints = sorted(set(args.iterations))
    total = checkpoints[-1]
    print(f"{len(train)} training slices ({int((train.labels == 1).sum())} with lesions), {len(held.items)} held-out "
          f"cases; fpgan {config}, batch {batch}; checkpoints {checkpoints}")
    rows = []
    for seed in args.seeds:
        for impl in args.implementations:
            begin = time.perf_counter()
            if impl == "adunet":
                got = train_adunet(train, config, batch, seed, total, checkpoints, held, args.kernel, args.device)
            else:
                got = train_reference(args.reference, train, {k: v for k, v in config.items() if k not in args.speed},
                                      batch, seed, total, checkpoints, held, args.kernel, args.device)
            rows += [{"implementation": impl, "seed": seed, **r} for r in got]
            print(f"seed {seed} {impl}: {time.perf_counter() - begin:.0f} s")
    frame = pd.DataFrame(rows)
    text = summarise(frame)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.round(5).to_csv(out.parent / f"{out.name}.csv", index=False)
        command = " ".join(["python benchmarks/bench_parity.py", *[a if "/" not in a or a.startswith(("params/", "figures/"))
                                                                    else "<path>" for a in sys.argv[1:]]])
        (out.parent / f"{out.name}.md").write_text(f"# Fixed-Point GAN: adunet vs the official solver\n\n`{command}`\n\n"
                                          f"{len(train)} training slices; fpgan {config}; batch {batch}.\n\n{text}\n",
                                          encoding="utf-8")


if __name__ == "__main__":
    main()
