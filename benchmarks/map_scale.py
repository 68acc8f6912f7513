"""How large are a run's anomaly maps inside lesions and on healthy gland, per split? Reads a finished
run (notebook 05 done) and prints, per map model × sequence × split: the median over studies of the mean
map value inside the lesion (studies with a lesion voxel in the gland), of the healthy gland's median
(the map's floor) and of its 90th percentile, and the lesion's excess over the floor.

    python benchmarks/map_scale.py --run runs/bench --out figures/bench/map_scale.md

nnU-Net takes the map channels as they are (``map_normalisation: noNorm``): maps whose floor or lesion
excess differs between the training split (what nnU-Net learns from) and the validation or external
studies (what it is scored on) hand nnU-Net a different channel there. Not a test: it reads a run folder. Reads the T2W-grid maps of ``maps/<model>/`` and the lesion
masks of the run's cases; the gland is the one notebook 01 cropped with.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from adunet_lib.data.image import read_image  # noqa: E402
from adunet_lib.preprocessing.pipeline import PreprocessedCase  # noqa: E402
from adunet_lib.progress import progress  # noqa: E402
from adunet_lib.report.figures import markdown_table  # noqa: E402
from adunet_lib.run_folder import RunContext  # noqa: E402
from adunet_lib.vocabulary import EVALUATED_SPLITS, SEQUENCE_DISPLAY, SEQUENCES, TRAIN  # noqa: E402

SPLIT_NAMES = {TRAIN: "training split", **EVALUATED_SPLITS}


def study_rows(ctx: RunContext, case: pd.Series, models: list[str]) -> list[dict]:
    """One row per model × sequence of one study: lesion mean (NaN without a lesion voxel), floor, p90."""
    pre = PreprocessedCase.from_run(ctx, case["set"], case["case_id"])
    gland = pre.gland_on_t2w().array > 0
    lesion_image = ctx.case_image(case["set"], case["case_id"], "lesion")
    lesion = gland & (lesion_image.array > 0) if lesion_image is not None else np.zeros_like(gland)
    healthy = gland & ~lesion
    rows = []
    for model in models:
        for seq in SEQUENCES:
            path = ctx.map_file(model, case["case_id"], seq)
            if not path.is_file():
                raise SystemExit(f"{case['case_id']}: no {model} map for {seq} ({path.name}); run notebook 05 first")
            values = read_image(path).array
            rows.append({"model": model, "sequence": SEQUENCE_DISPLAY[seq], "split": case["split"],
                         "case_id": case["case_id"],
                         "lesion": float(values[lesion].mean()) if lesion.any() else np.nan,
                         "floor": float(np.median(values[healthy])) if healthy.any() else np.nan,
                         "healthy_p90": float(np.percentile(values[healthy], 90)) if healthy.any() else np.nan})
    return rows


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    order = [s for s in SPLIT_NAMES if s in set(frame["split"])]
    grouped = frame.groupby(["model", "sequence", "split"], sort=False)
    table = grouped.agg(studies=("case_id", "nunique"), with_lesion=("lesion", "count"), lesion=("lesion", "median"),
                        floor=("floor", "median"), healthy_p90=("healthy_p90", "median")).reset_index()
    table["lesion_excess"] = table["lesion"] - table["floor"]
    table["split"] = pd.Categorical(table["split"], order, ordered=True)
    table = table.sort_values(["model", "sequence", "split"])
    table["split"] = table["split"].map(SPLIT_NAMES)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a run folder whose notebook 05 has finished")
    parser.add_argument("--models", nargs="*", help="map models (default: every model with maps in the run)")
    parser.add_argument("--cases", type=int, default=None,
                        help="the first N studies of each split (default: every study)")
    parser.add_argument("--out", help="write the table as markdown here")
    args = parser.parse_args()
    if args.cases is not None and args.cases < 1:
        parser.error(f"--cases {args.cases}: read at least 1 study of each split (or leave it out: every study)")
    ctx = RunContext(Path(args.run), Path(args.run) / "figures")
    cases, _ = ctx.tables()
    maps_root = ctx.run_dir / "maps"
    found = sorted(p.name for p in maps_root.iterdir() if p.is_dir()) if maps_root.is_dir() else []
    models = args.models or found
    if not models:
        parser.error(f"{args.run}: no maps (maps/<model>/); run notebook 05 first")
    if args.cases:
        cases = cases.groupby("split", sort=False).head(args.cases)
    rows = []
    for _, case in progress(list(cases.iterrows()), desc="studies", unit="study"):
        rows += study_rows(ctx, case, models)
    table = summarise(pd.DataFrame(rows))
    text = markdown_table(table, floatfmt=".4f")
    command = " ".join(["python benchmarks/map_scale.py", *[a if "/" not in a or a.startswith(("runs/", "figures/"))
                                                             else "<path>" for a in sys.argv[1:]]])
    header = (f"# Map scale per site\n\n`{command}`\n\nMedian over studies: `lesion` the mean map value inside the "
              "lesion (studies with a lesion voxel in the gland), `floor` the healthy gland's median, `healthy_p90` "
              "its 90th percentile; `lesion_excess` = lesion − floor.\n\n")
    print(text)
    if args.out:
        Path(args.out).write_text(header + text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
