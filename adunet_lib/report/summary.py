"""``figures/<name>/summary.md``: what was run, on what, with which budgets, what came out, and caveats."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from adunet_lib.fileio import write_text
from adunet_lib.report.verify import SPREAD
from adunet_lib.run_folder import RunContext
from adunet_lib.vocabulary import (ANOMALY_COHORTS, EVALUATED_MEANING, EVALUATED_SPLITS, OOF, ORACLE_VARIANTS,
                                   SEQUENCE_DISPLAY, SEQUENCES, TEST, TRAIN, VAL)

PAPER = {"external test": {"baseline": 0.6049, "best": ("adU-Net(all bpMRI)", 0.6181)},
         "validation": {"baseline": 0.6157, "best": ("adU-Net(all bpMRI)", 0.6150)}}


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _model_budgets(ctx: RunContext) -> list[str]:
    from adunet_lib.anomaly_models.checkpoint import read_checkpoint

    lines = []
    for ckpt in sorted(ctx.models_dir.glob("*/*/model.pt")):
        payload = read_checkpoint(ckpt)
        train = payload["training"]
        cfg = payload["config"]
        size = {k: cfg[k] for k in ("conv_dim", "n_res_blocks", "channels", "filters", "ddim_steps", "noise_level",
                                    "guidance_scale") if k in cfg}
        lines.append(f"- `{ckpt.parent.parent.name}/{ckpt.parent.name}`: {train['training']['iterations']} iterations × "
                     f"batch {train['training']['batch_size']} on {train['train_slices']} slices of "
                     f"{cfg['image_size']}² ({cfg['in_channels']} channel(s)); {size}; "
                     f"{train.get('seconds', float('nan')):.0f} s")
    return lines


def _data_lines(pre: dict, cases: pd.DataFrame, table2: pd.DataFrame, zone_lines: list[str]) -> list[str]:
    """Cases, patients and labels per set, lesion-mask sources, folds, what each evaluated set means."""
    counts = cases.assign(pos=cases["cspca"].fillna(False).astype(bool)).groupby("set", sort=False).agg(
        cases=("case_id", "count"), patients=("patient_id", "nunique"), csPCa=("pos", "sum"),
        labeled=("labeled", "sum"), site=("site", "first"))
    lines = [f"- {s}: {int(r['cases'])} cases of {int(r['patients'])} patients ({int(r['csPCa'])} with csPCa, "
             f"{int(r['labeled'])} with a voxel-level reference), site `{r['site']}`" for s, r in counts.iterrows()]
    for set_name, block in cases.groupby("set", sort=False):
        sources = block["lesion_source"].fillna("none").value_counts()
        lines.append(f"- {set_name} lesion masks by source: " + ", ".join(f"{name} {int(n)}" for name, n in sources.items()))
    lines += [f"- warning: {w}" for w in pre.get("warnings", [])]
    lines += [f"- {name}: {info['cases']} case(s) read in the {info['layout']} layout"
              + "".join(f"; {remark}" for remark in info.get("remarks", []))
              for name, info in pre.get("datasets", {}).items() if isinstance(info, dict)]
    lines += [f"- skipped: {message}" for _, message in pre.get("skipped", [])]
    lines.append(f"- internal cases in {pre.get('n_folds', '?')} folds by patient, stratified by csPCa"
                 + (f" (published splits `{Path(pre['splits_file']).name}`)" if pre.get("splits_file") else "")
                 + "; fold 0 = validation split")
    lines += zone_lines
    lines += ["", "What the evaluated sets mean:"]
    lines += [f"- *{name}*: {EVALUATED_MEANING[split]}" for split, name in EVALUATED_SPLITS.items()
              if name in set(table2["set"])]
    return lines


def _zone_lines(ctx: RunContext, cases: pd.DataFrame) -> list[str]:
    """Where the crop masks came from and, when a zone model made some, how good it is (zones.csv)."""
    if "mask_source" not in cases:
        return []
    lines = [f"- {set_name} crop masks: " + ", ".join(f"{name} {int(n)}" for name, n in block["mask_source"].value_counts().items())
             for set_name, block in cases.groupby("set", sort=False)]
    record = _read_json(ctx.zone_record) or {}
    quality_file = ctx.figure("zones.csv")
    summary = pd.DataFrame(columns=["role"])
    if quality_file.is_file():
        from adunet_lib.zones.masks import quality_summary

        summary = quality_summary(pd.read_csv(quality_file)) if quality_file.stat().st_size else summary
        summary = summary if "role" in summary else pd.DataFrame(columns=["role"])
    pretrained_rows = summary["role"].astype(str).str.endswith("(pretrained gland)")
    if record.get("settings") and quality_file.is_file():
        parts = [f"{r['role']} (n={int(r['cases'])}): Dice PZ {r['dice_pz']:.2f}, TZ {r['dice_tz']:.2f}, "
                 f"gland {r['dice_gland']:.2f}, crop box moves {r['box_shift_mm_median']:.1f} mm (median), "
                 f"{r['box_shift_mm_max']:.1f} mm (max)" for _, r in summary[~pretrained_rows].iterrows()]
        settings = record["settings"]
        lines.append(f"- zone model (`{record.get('dataset')}`, nnU-Net {settings.get('configuration')}, folds "
                     f"{settings.get('folds')} of {settings.get('n_folds')}, {record.get('training_cases')} training "
                     f"cases): " + "; ".join(parts) + " — zones.csv")
    glands = (_read_json(ctx.pretrained_gland_record) or {}).get("cases", {})
    if glands:
        made_by = sorted({str(c.get("made_by")) for c in glands.values()})
        parts = [f"{r['role']} (n={int(r['cases'])}): Dice gland {r['dice_gland']:.2f}, crop box moves "
                 f"{r['box_shift_mm_median']:.1f} mm (median), {r['box_shift_mm_max']:.1f} mm (max)"
                 for _, r in summary[pretrained_rows].iterrows()]
        lines.append(f"- {', '.join(made_by)}: {len(glands)} case(s), whole gland without PZ/TZ (absent from map "
                     "quality's PZ/TZ rows)" + ("; " + "; ".join(parts) + " — zones.csv" if parts else ""))
    return lines


def _map_lines(ctx: RunContext, pre: dict, cases: pd.DataFrame, evaluated: set[str] | None = None) -> list[str]:
    """Which cohort trained the reconstruction models, and whether a case's map came from a model that
    saw it — counted per split from the map set's record, and said of each evaluated row that holds one."""
    from adunet_lib.anomaly_models.registry import trained_models

    cohort = pre.get("anomaly_cohort", {})
    kind = cohort.get("kind", "training_split")
    lines = [f"- reconstruction models trained on the `{kind}` cohort ({cohort.get('cases', '?')} cases of "
             f"{cohort.get('patients', '?')} patients): {ANOMALY_COHORTS.get(kind, '')}"]
    if kind == "paper" and "healthy_patients" in cohort:
        unrecorded = cohort.get("healthy_without_pirads", 0)
        lines.append(f"- {cohort['healthy_patients']} training-split patient(s) qualify as without visible abnormality "
                     "(every study csPCa-negative, no lesion in its mask, no reported lesion of PI-RADS ≥ 3)"
                     + (f"; for {unrecorded} of them the data record no PI-RADS, so they qualify by csPCa alone"
                        if unrecorded else ""))
    evaluated = set(EVALUATED_SPLITS.values()) if evaluated is None else evaluated
    for model in trained_models(ctx):
        record = _read_json(ctx.map_record(model)) or {}
        if not record:
            continue
        seen = cases["case_id"].isin(set(record.get("seen_by_model", [])))
        by_split = {split: int((seen & (cases["split"] == split)).sum()) for split in (VAL, TRAIN, TEST)}
        counts = (f"validation {by_split[VAL]}, training split {by_split[TRAIN]} of "
                  f"{int((cases['split'] == TRAIN).sum())}, external {by_split[TEST]}")
        leaky = [EVALUATED_SPLITS[VAL]] * bool(by_split[VAL]) + [EVALUATED_SPLITS[TEST]] * bool(by_split[TEST])
        # the pooled out-of-fold rows hold training-split cases: nnU-Net's own fold never saw them, its map input did
        leaky += [EVALUATED_SPLITS[OOF]] * bool(by_split[TRAIN] or by_split[VAL])
        leaky = [name for name in leaky if name in evaluated]
        if leaky:
            verdict = ("so the *" + "* and *".join(leaky) + "* rows of Table II use maps from a model that saw those "
                       "cases" + ("" if record.get("leak_free") else " (`leak_free_maps` 0; k ≥ 2 cross-fits them)"))
        else:
            verdict = "no evaluated row of Table II uses a map from a model that saw its case"
        held_out = {"parts": "; every other case's map is the mean of those part models' maps (the channel nnU-Net "
                             "learned from)",
                    "full": "; every other case's map comes from the model trained on every part (`held_out_maps: "
                            "full`: a channel of another scale than the one nnU-Net learned from)"}
        how = ("leak-free: each training-split case's map comes from a cross-fitted model that never saw it"
               + held_out.get(record.get("held_out_maps"), "")
               if record.get("leak_free") else "training-split maps, which nnU-Net learns from, come from a model "
               "that saw those cases")
        lines.append(f"- maps of `{model}`: made by a model that saw the case for {int(seen.sum())} of the "
                     f"{len(cases)} cases ({counts}); {verdict}; {how}")
        lines += _map_gap_line(ctx, model)
    return lines


def _map_gap_line(ctx: RunContext, model: str) -> list[str]:
    """How well ``model``'s maps find lesion voxels (gland AUROC per sequence, map_quality.csv) on the training
    split, where nnU-Net learns what a map channel is worth, against the sets it is evaluated on."""
    path = ctx.figure("map_quality.csv")
    if not path.is_file():
        return []
    quality = pd.read_csv(path)
    rows = quality[(quality["model"] == model) & (quality["zone"] == "gland")]
    sets = [s for s in ("training", EVALUATED_SPLITS[VAL], "test") if s in set(rows["set"])]
    if "training" not in sets or len(sets) < 2:
        return []
    parts = []
    for name in sets:
        block = rows[rows["set"] == name].set_index("sequence")["auroc"]
        parts.append(f"{name} " + ", ".join(f"{SEQUENCE_DISPLAY[q]} {block[q]:.2f}" for q in SEQUENCES
                                            if q in block and pd.notna(block[q])))
    return ["  - lesion-voxel AUROC of its maps in the gland (map_quality.csv): " + "; ".join(parts)
            + " — nnU-Net learns what a map is worth on the first and is scored on the others"]


def _headline(table2: pd.DataFrame) -> list[str]:
    lines = []
    for set_name, block in table2.groupby("set", sort=False):
        base = block[block["model"] == "baseline"]
        oracle = block[block["model"].isin(ORACLE_VARIANTS)]
        others = block[(block["model"] != "baseline") & ~block["model"].isin(ORACLE_VARIANTS)].sort_values(
            "score", ascending=False)
        if base.empty or others.empty:
            continue
        b, o = base.iloc[0], others.iloc[0]
        paper = PAPER.get(set_name, {})
        reported = (f" The paper reports baseline {paper['baseline']:.3f} vs {paper['best'][0]} {paper['best'][1]:.3f} "
                    "on real PI-CAI / Prostate158." if paper else "")
        lines.append(
            f"On the {set_name} set ({int(b['cases'])} cases), the nnU-Net baseline scores {b['score']:.3f} "
            f"[{b['score_lo']:.3f}, {b['score_hi']:.3f}] (AUROC {b['auroc']:.3f}, AP {b['ap']:.3f}); the best variant, "
            f"{o['Model']}, scores {o['score']:.3f} [{o['score_lo']:.3f}, {o['score_hi']:.3f}], a difference of "
            f"{o['delta_score']:+.3f} [{o['delta_score_lo']:+.3f}, {o['delta_score_hi']:+.3f}] (paired bootstrap "
            f"p = {o['p_vs_baseline']:.2f})." + reported)
        for _, r in oracle.iterrows():  # phantoms: what perfect pseudo-healthy maps give at this nnU-Net budget
            lines.append(f"Headroom on the {set_name} set: with the oracle's maps (each phantom's lesion-free twin as "
                         f"G(x)), {r['Model']} scores {r['score']:.3f} [{r['score_lo']:.3f}, {r['score_hi']:.3f}], "
                         f"{r['delta_score']:+.3f} [{r['delta_score_lo']:+.3f}, {r['delta_score_hi']:+.3f}] vs the "
                         "baseline: the most any reconstruction model's maps could add here.")
    return lines


def _caveats(synthetic: bool, extra: list[str] | None) -> list[str]:
    caveats = []
    if synthetic:
        caveats.append("The data are **synthetic phantoms** (`adunet synth`), not patients: the numbers show that the "
                       "pipeline works end to end, not how adU-Net performs clinically.")
    caveats.append("Training budgets are set by the params file; when they are far below the paper's (DDPM 400k, "
                   "FP-GAN 200k iterations, nnU-Net 1000 epochs × 250 iterations, 5 folds), models are under-trained "
                   "and differences between variants mostly reflect noise.")
    caveats.append("With few cases, confidence intervals are wide; a difference whose CI covers 0 is not evidence of "
                   "an effect.")
    return caveats + (extra or [])


def machine_lines() -> list[str]:
    """What made the numbers, for a reader comparing a rerun: package versions, CPU, threads and
    PyTorch's determinism switches (no paths of the machine that made them)."""
    import importlib.metadata as md
    import platform

    import torch

    versions = []
    for package in ("adunet", "torch", "nnunetv2", "numpy", "SimpleITK", "picai_eval", "papermill"):
        try:
            versions.append(f"{package} {md.version(package)}")
        except md.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo", encoding="utf-8")
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return [f"- packages: {', '.join(versions)}; Python {platform.python_version()}",
            f"- CPU: {cpu}; {torch.get_num_threads()} PyTorch thread(s); GPU: {gpu}",
            f"- determinism: torch.use_deterministic_algorithms {torch.are_deterministic_algorithms_enabled()}, "
            f"cudnn.deterministic {torch.backends.cudnn.deterministic}, cudnn.benchmark {torch.backends.cudnn.benchmark}"]


def spread_lines(spread: pd.DataFrame) -> list[str]:
    """The Table II headline over the committed training seeds (``spread.csv``): per set, the baseline's
    and adU-Net(all)'s score, then every variant's difference to the baseline (single-map variants and
    the oracle row included), as mean ± sd (min, max) and in how many seeds it is positive."""
    t2 = spread[(spread["table"] == "table2.csv") & spread["column"].isin(["score", "delta_score"])]
    rows = []
    for _, r in t2.iterrows():
        parts = str(r["row"]).split(" | ")
        if len(parts) < 3:
            continue
        display, variant_name, set_name = parts[0], parts[1], parts[2]
        if r["column"] == "score" and variant_name not in ("baseline", "adunet_all"):
            continue
        if r["column"] == "delta_score" and variant_name == "baseline":
            continue
        delta = r["column"] == "delta_score"
        what = "minus the baseline" if delta else "score"
        sign = "+" if delta else ""
        order = (set_name != "validation", delta, variant_name != "baseline", variant_name != "adunet_all",
                 variant_name)
        rows.append((order, f"- {set_name}, {display} {what}: {r['mean']:{sign}.3f} ± {r['sd']:.3f} "
                            f"(min {r['min']:{sign}.3f}, max {r['max']:{sign}.3f})"))
    if not rows:
        return []
    return [f"Over {int(t2['n'].max())} seeds (`spread.csv` holds every table cell), (AUROC + AP)/2 — each "
            "variant's difference to the baseline, not only the best variant's:",
            *[line for _, line in sorted(rows)],
            "The bootstrap CIs above measure case sampling (which cases happen to be in the set); this spread "
            "measures training noise: what the training `seed` changes (initialisation, batches, augmentation, "
            "nnU-Net), with the cohort, the folds and the bootstrap held by one `data_seed` "
            "(`benchmarks/seed_spread.py`). A rerun elsewhere should land inside it: "
            "`adunet verify NEW_FIGURES REFERENCE` checks every cell."]


def _spread_section(path: Path) -> list[str]:
    if not path.is_file():
        return []
    lines = spread_lines(pd.read_csv(path, keep_default_na=False, dtype={"row": str, "column": str}))
    return ["### Seed spread", "", *lines, ""] if lines else []


def write_summary(ctx: RunContext, params_name: str, table2: pd.DataFrame, cases: pd.DataFrame,
                  table1: pd.DataFrame | None = None, extra_caveats: list[str] | None = None) -> Path:
    """Compose and write ``summary.md`` from the run folder's records and the final tables."""
    from adunet_lib.anomaly_models.registry import trained_models

    params = _read_json(ctx.params_record) or {}
    timings = _read_json(ctx.reproduce_record) or {}
    pre = _read_json(ctx.preprocessing_record) or {}
    seg = _read_json(ctx.segmentation_record) or {}
    common = next(iter(params.values()), {}) if params else {}
    synthetic = any(common.get(k, "synthetic") == "synthetic" for k in ("internal_data", "external_data"))
    lines = [f"# Run summary — `{params_name}`", "",
             "## Headline", "", *(_headline(table2) or ["(no comparison available)"]), "",
             *_spread_section(ctx.figure_dir / SPREAD),
             "## Data", "", *_data_lines(pre, cases, table2, _zone_lines(ctx, cases)), "",
             "## Settings", "",
             f"- seed {common.get('seed', '?')}, device `{common.get('device', '?')}`",
             f"- preprocessing: {pre.get('preprocess', {})}", *_map_lines(ctx, pre, cases, set(table2["set"])),
             "- reconstruction models (every model trained in the run: "
             f"{', '.join(trained_models(ctx)) or 'none'}):", *["  " + ln for ln in _model_budgets(ctx)],
             f"- nnU-Net: {seg or '(not recorded)'}", ""]
    if table1 is not None and len(table1):
        best = table1[table1["block"] == "Test results"]
        if len(best):
            lines += ["## Reconstruction (Table I)", "",
                      f"Best model on cropped validation images: **{best['method'].iloc[0]}**; on the held-out test "
                      "set SSIM " + ", ".join(f"{r['modality']} {r['SSIM']:.3f}" for _, r in best.iterrows()) + ".", ""]
    lines += ["## Caveats", "", *[f"- {c}" for c in _caveats(synthetic, extra_caveats)], ""]
    seconds = {k: v.get("seconds") for k, v in timings.items() if isinstance(v, dict) and v.get("seconds")}
    if seconds:
        lines += ["## Wall time per notebook", "", *[f"- {k}: {v:.0f} s" for k, v in seconds.items()],
                  f"- total: {sum(seconds.values()) / 60:.1f} min", ""]
    lines += ["## Machine", "", *machine_lines(), ""]
    lines += ["## Files", "", "table1.csv/.md, fig3_reconstructions.png, fig4_anomaly_maps.png, map_quality.csv, "
              "table2.csv/.md, roc_pr_<set>.png, forest_<set>.png, zones.csv (when masks were predicted) — in this folder.", ""]
    return write_text(ctx.figure_dir / "summary.md", "\n".join(lines))
