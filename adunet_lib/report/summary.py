"""``figures/<name>/summary.md``: what was run, on what, with which budgets, what came out, and caveats."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from adunet_lib.fileio import write_text
from adunet_lib.run_folder import RunContext

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


def write_summary(ctx: RunContext, params_name: str, table2: pd.DataFrame, cases: pd.DataFrame,
                  table1: pd.DataFrame | None = None, extra_caveats: list[str] | None = None) -> Path:
    """Compose and write ``summary.md`` from the run folder's records and the final tables."""
    params = _read_json(ctx.params_record) or {}
    timings = _read_json(ctx.reproduce_record) or {}
    pre = _read_json(ctx.preprocessing_record) or {}
    seg = _read_json(ctx.segmentation_record) or {}
    common = next(iter(params.values()), {}) if params else {}
    synthetic = [k for k in ("internal_data", "external_data") if common.get(k, "synthetic") == "synthetic"]

    counts = cases.assign(pos=cases["cspca"].fillna(False).astype(bool)).groupby("set").agg(
        cases=("case_id", "count"), csPCa=("pos", "sum"), site=("site", "first"))
    data_lines = [f"- {s}: {int(r['cases'])} cases ({int(r['csPCa'])} with csPCa), site `{r['site']}`"
                  for s, r in counts.iterrows()]

    headline = []
    for set_name, block in table2.groupby("set", sort=False):
        base = block[block["model"] == "baseline"]
        others = block[block["model"] != "baseline"].sort_values("score", ascending=False)
        if base.empty or others.empty:
            continue
        b, o = base.iloc[0], others.iloc[0]
        headline.append(
            f"On the {set_name} set ({int(b['cases'])} cases), the nnU-Net baseline scores {b['score']:.3f} "
            f"[{b['score_lo']:.3f}, {b['score_hi']:.3f}] (AUROC {b['auroc']:.3f}, AP {b['ap']:.3f}); the best variant, "
            f"{o['Model']}, scores {o['score']:.3f} [{o['score_lo']:.3f}, {o['score_hi']:.3f}], a difference of "
            f"{o['delta_score']:+.3f} [{o['delta_score_lo']:+.3f}, {o['delta_score_hi']:+.3f}] (paired bootstrap "
            f"p = {o['p_vs_baseline']:.2f}). The paper reports baseline {PAPER.get(set_name, {}).get('baseline', float('nan')):.3f} "
            f"vs {PAPER.get(set_name, {}).get('best', ('', float('nan')))[0]} "
            f"{PAPER.get(set_name, {}).get('best', ('', float('nan')))[1]:.3f} on real PI-CAI / Prostate158.")

    caveats = []
    if synthetic:
        caveats.append("The data are **synthetic phantoms** (`adunet synth`), not patients: the numbers show that the "
                       "pipeline works end to end, not how adU-Net performs clinically.")
    caveats.append("Training budgets are set by the params file; when they are far below the paper's (DDPM 400k, "
                   "FP-GAN 200k iterations, nnU-Net 1000 epochs × 250 iterations, 5 folds), models are under-trained "
                   "and differences between variants mostly reflect noise.")
    caveats.append("With few cases, confidence intervals are wide; a difference whose CI covers 0 is not evidence of "
                   "an effect.")
    caveats += extra_caveats or []

    seconds = {k: v.get("seconds") for k, v in timings.items() if isinstance(v, dict)}
    lines = [f"# Run summary — `{params_name}`", "",
             "## Headline", "", *(headline or ["(no comparison available)"]), "",
             "## Data", "", *data_lines,
             f"- internal cases in {pre.get('n_folds', '?')} stratified folds; fold 0 = validation split",
             *[f"- {name}: {info['cases']} case(s) read in the {info['layout']} layout"
               for name, info in pre.get("datasets", {}).items() if isinstance(info, dict)],
             *[f"- skipped: {message}" for _, message in pre.get("skipped", [])], "",
             "## Settings", "",
             f"- seed {common.get('seed', '?')}, device `{common.get('device', '?')}`",
             f"- preprocessing: {pre.get('preprocess', {})}",
             "- reconstruction models (every model trained in the run: "
             f"{', '.join(ctx.trained_models()) or 'none'}):", *["  " + ln for ln in _model_budgets(ctx)],
             f"- nnU-Net: {seg or '(not recorded)'}", ""]
    if table1 is not None and len(table1):
        best = table1[table1["block"] == "Test results"]
        if len(best):
            lines += ["## Reconstruction (Table I)", "",
                      f"Best model on cropped validation images: **{best['method'].iloc[0]}**; on the held-out test "
                      "set SSIM " + ", ".join(f"{r['modality']} {r['SSIM']:.3f}" for _, r in best.iterrows()) + ".", ""]
    lines += ["## Caveats", "", *[f"- {c}" for c in caveats], ""]
    if seconds:
        total = sum(v for v in seconds.values() if v)
        lines += ["## Wall time per notebook", "", *[f"- {k}: {v:.0f} s" for k, v in seconds.items() if v],
                  f"- total: {total / 60:.1f} min", ""]
    lines += ["## Files", "", "table1.csv/.md, fig3_reconstructions.png, fig4_anomaly_maps.png, map_quality.csv, "
              "table2.csv/.md, roc_pr_<set>.png, forest_<set>.png — in this folder.", ""]
    return write_text(ctx.figure_dir / "summary.md", "\n".join(lines))
