"""The demo (or any params file) with several seeds: how much every table cell moves with training noise.

    python benchmarks/seed_spread.py params/demo.yaml --seeds 0 1 2 3 4 [--out figures/demo/spread.csv]

Each seed runs the whole series in a scratch folder (``runs/spread/<name>_seed<k>/``; a rerun keeps
seeds that finished, with their own wall times, and resumes the others; delete a seed's folder to redo it).
The spread of every cell of table1/table2/map_quality/zones over the seeds goes into
the first seed's figure folder as ``spread.csv``, its ``summary.md`` is redone with the spread, and that
folder then replaces ``--out`` (default: the params file's own figure folder, e.g. figures/demo, which
is therefore seed 0's run), where ``adunet verify`` finds the spread.
It prints the wall time per seed and the spread of the Table II headline (external adU-Net(all) −
baseline). The bootstrap CIs in table2 measure case sampling; this measures training noise: the
cohort, the folds and the bootstrap stay drawn by one ``data_seed`` (the params file's, or its seed),
and only the training ``seed`` changes. ``--vary-data`` draws them anew per seed as well.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import pandas as pd
import yaml

from adunet_lib.report.verify import SPREAD, seed_spread
from adunet_lib.run_folder import project_root
from adunet_lib.runner.params import find_notebooks, relocated
from adunet_lib.runner.reproduce import reproduce


def _finished(run_dir: Path, root: Path) -> bool:
    """Has every notebook of the series finished in this run folder (its reproduce record says so)?"""
    run_dir = run_dir if run_dir.is_absolute() else root / run_dir
    record = run_dir / "reproduce.json"
    if not record.is_file():
        return False
    done = json.loads(record.read_text(encoding="utf-8"))
    names = [nb.name for nb in find_notebooks(root / "notebooks")]
    return bool(names) and all(done.get(n, {}).get("status") == "ok" for n in names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("params")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--vary-data", action="store_true",
                        help="draw the synthetic cohort, folds and bootstrap anew with each seed too")
    parser.add_argument("--scratch", default=None, help="where the seed runs go (default runs/spread)")
    parser.add_argument("--out", default=None, help="figure folder to publish the first seed's figures and spread.csv "
                                                    "in (default: the params file's own, e.g. figures/demo)")
    args = parser.parse_args()
    root = project_root()
    params = Path(args.params)
    base = yaml.safe_load(params.read_text(encoding="utf-8"))
    scratch = Path(args.scratch or root / "runs" / "spread")
    common = base.get("common", {})
    data_seed = common.get("data_seed", -1)
    data_seed = data_seed if data_seed >= 0 else common.get("seed", 0)
    folders, paths = [], []
    for seed in args.seeds:
        folder = scratch / f"{params.stem}_seed{seed}"
        path = relocated(params, folder)
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        data["common"]["seed"] = seed
        data["common"]["data_seed"] = seed if args.vary_data else data_seed
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        if _finished(Path(data["common"]["run_dir"]), root):
            # rerunning a finished seed would redo nothing but overwrite its record's wall times with cached ones
            print(f"seed {seed}: finished earlier, kept (delete {folder} to run it again)", flush=True)
        else:
            started = time.perf_counter()
            reproduce(path, stream_output=False, log=lambda _: None)
            print(f"seed {seed}: {(time.perf_counter() - started) / 60:.1f} min", flush=True)
        folders.append(folder / "figures" / params.stem)
        paths.append(path)
    # the first seed's figure folder is the reference: it gets spread.csv, and its notebook 07 reruns so
    # that summary.md gives the headline with the spread; then it replaces the params' own figure folder
    reference = folders[0]
    spread = seed_spread(folders, reference / SPREAD)
    reproduce(paths[0], start="07", stream_output=False, log=lambda _: None)
    figure_dir = Path(base.get("common", {}).get("figure_dir", f"figures/{params.stem}"))
    target = Path(args.out) if args.out else (figure_dir if figure_dir.is_absolute() else root / figure_dir)
    shutil.copytree(reference, target, dirs_exist_ok=True)
    print(f"wrote {target / SPREAD} ({len(spread)} cells over {len(folders)} seeds); {target} is seed {args.seeds[0]}'s")
    headline = spread[(spread["table"] == "table2.csv") & spread["row"].str.startswith("adU-Net(all")
                      & spread["row"].str.contains("external") & spread["column"].isin(["score", "delta_score"])]
    with pd.option_context("display.width", 160):
        print(headline[["row", "column", "n", "mean", "sd", "min", "max"]].to_string(index=False))


if __name__ == "__main__":
    main()
