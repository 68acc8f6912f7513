"""Is ``adunet verify``'s tolerance right? Held-out seeds and benign reruns must pass, changed settings must fail.

    python benchmarks/verify_calibration.py runs/spread/demo_seed{0,1,2,3,4}/figures/demo \\
        --benign threads1=runs/threads1/figures/demo --changed fpgan_100_iterations=runs/changed/figures/demo \\
        [--out figures/demo/verify_calibration.txt]

The positional folders are the figure folders of one params file run with different training seeds (as
``benchmarks/seed_spread.py`` leaves them); the first is the reference, as ``figures/demo`` is seed 0's.

* **Leave one seed out**: each seed in turn is the candidate, the spread is taken over the others and the
  reference is the first of the others. Another seed is the strongest benign change there is (every
  weight, batch and augmentation differs), so a rule that fails a held-out seed would fail an honest
  rerun on another CPU.
* **Benign** runs (``NAME=FOLDER``): the reference's own seed with floats changed for a known harmless
  reason (another thread count, another CPU), judged against the spread over every seed.
* **Changed** runs: a method setting changed (fewer iterations, another kernel …); these must fail.

For each, per table, the smallest multiple of the column-floored sd at which the table would verify
(0: every differing cell inside its seeds' min–max range; inf: a row or table missing) and the verdict at
the rule's multiple (:data:`adunet_lib.report.verify.SD_MULTIPLE`). The rule separates the two when the
largest multiple a held-out seed or benign run needs is below it and the smallest a changed run needs is
above it.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

from adunet_lib.fileio import atomic_path
from adunet_lib.report.verify import SD_MULTIPLE, SPREAD, TABLES, comparisons, seed_spread


def _row(name: str, candidate: Path, reference: Path, spread: Path) -> tuple[str, float, int]:
    found = comparisons(candidate, reference, spread)
    needed = {c.table: c.needed for c in found}
    unseen = {c.table: c.rows_unseen for c in found}
    worst = max(needed.values()) if needed else math.inf
    rows = sum(unseen.values())
    cells = "  ".join(f"{needed.get(t, float('nan')):>11.2f}" for t in TABLES)
    verdict = "reproduced" if worst <= SD_MULTIPLE and not rows else "NOT reproduced"
    named = ", ".join(f"{t.removesuffix('.csv')} {n}" for t, n in unseen.items() if n)
    return f"{name:<28}{cells}  {worst:>7.2f}  {rows:>5}  {verdict}{f' (unseen rows: {named})' if named else ''}", worst, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seeds", nargs="+", help="figure folders of one params file over training seeds")
    parser.add_argument("--benign", nargs="*", default=[], metavar="NAME=FOLDER")
    parser.add_argument("--changed", nargs="*", default=[], metavar="NAME=FOLDER")
    parser.add_argument("--out", help="also write the printout here")
    args = parser.parse_args()
    seeds = [Path(s) for s in args.seeds]
    if len(seeds) < 3:
        sys.exit("verify_calibration: leave-one-out needs at least 3 seeds")
    lines = [f"adunet verify's rule: a differing cell passes within the larger of its seeds' min-max range and "
             f"{SD_MULTIPLE:g} sd (the sd floored at the median sd of its column's moving cells).",
             "Per table: the smallest multiple of that sd at which the table's cells verify (0: inside the range);",
             "rows*: rows on one side only that no seed of the spread shares (a category, such as Table I's pick",
             "of the best model, that none of those seeds chose): these fail whatever the multiple.", "",
             f"{'candidate':<28}" + "".join(f"{t.removesuffix('.csv'):>13}" for t in TABLES) + "     max  rows*  verdict"]
    held_out, benign, changed = [], [], []
    unseen_held_out: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        lines.append(f"-- leave one seed out (spread over the other {len(seeds) - 1}; seed folders in the order given)")
        for i, candidate in enumerate(seeds):
            others = [s for j, s in enumerate(seeds) if j != i]
            spread = Path(tmp) / f"spread_without_{i}.csv"
            seed_spread(others, spread)
            line, worst, rows = _row(f"seed folder {i} vs {0 if i else 1}", candidate, others[0], spread)
            lines.append(line)
            held_out.append(worst)
            unseen_held_out.append(rows)
        spread = Path(tmp) / SPREAD
        seed_spread(seeds, spread)
        for label, items, into in (("benign", args.benign, benign), ("changed setting", args.changed, changed)):
            if items:
                lines.append(f"-- {label} (spread over all {len(seeds)} seeds, reference: the first)")
            for item in items:
                name, _, folder = item.partition("=")
                line, worst, rows = _row(name, Path(folder), seeds[0], spread)
                lines.append(line)
                into.append(math.inf if rows else worst)
    passed = sum(1 for worst, rows in zip(held_out, unseen_held_out) if worst <= SD_MULTIPLE and not rows)
    lines += ["", f"held-out seeds that verify against the others' spread at {SD_MULTIPLE:g} sd: {passed} of {len(seeds)}; "
              f"their cells need {', '.join(f'{w:.2f}' for w in held_out)}; "
              f"{sum(1 for r in unseen_held_out if r)} of {len(seeds)} have a category no other seed chose"]
    if benign:
        lines.append(f"benign runs: the largest multiple needed is {max(benign):.2f}")
    if changed:
        lines.append(f"changed settings: the smallest multiple needed is {min(changed):.2f}")
    if benign and changed:
        separates = max(benign) <= SD_MULTIPLE < min(changed)
        lines.append(f"the rule's multiple {SD_MULTIPLE:g} {'separates' if separates else 'does NOT separate'} "
                     "the benign runs from the changed settings")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        with atomic_path(args.out) as path:
            Path(path).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
