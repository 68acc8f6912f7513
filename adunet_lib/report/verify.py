"""``adunet verify``: is a regenerated figures folder the committed one, within training noise, or not?

Every table of a run (:data:`TABLES`) is read cell by cell: a cell is a (row, column) pair whose row
is named by the table's text columns (model, sequence, set …) and whose value is a number. Two
folders are compared per table:

* **identical** — every cell equal (to 1e-12) and the same rows and columns;
* **within spread** — every differing cell differs from the reference by no more than the spread the
  reference folder commits for it (``spread.csv``: the same cell over several training seeds). The
  allowance (:data:`SD_MULTIPLE`) is the larger of the seeds' min–max range for that cell and
  6 × its sd, where the sd is never taken below the typical (median) sd of its column in that table: five
  seeds give a noisy sd per cell (one seed pair may happen to agree), while a column's cells move alike. A
  cell with no spread of its own (a row the spread's runs did not have) is judged by its column's
  typical sd. Another CPU or thread count runs other kernels, so its floats drift as another seed's do;
  six sd of that drift keeps a few thousand cells from failing by chance (under normal noise a cell passes
  with probability 1 − 2·10⁻⁵) while a changed method that moves a column beyond its seed noise fails.
  Counts that no seed moves (cases, positives) keep a spread of zero: they must match exactly.
* **outside spread** — a cell differs by more (or has no spread to be judged by), or rows are missing.

Figures (PNG) are drawn from these tables, so they are compared through them, not pixel by pixel.
:func:`seed_spread` writes ``spread.csv`` from several runs of one params file with different seeds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from adunet_lib.errors import AdunetError
from adunet_lib.fileio import atomic_path

#: The tables a run writes into its figure folder (``zones.csv`` only when masks were predicted).
TABLES = ("table1.csv", "table2.csv", "map_quality.csv", "zones.csv")
SPREAD = "spread.csv"
#: Columns that describe a row rather than measure it, although they hold numbers (the paper's values
#: beside ours). Counts (cases, positives, slices, voxels) are cells: with another seed the synthetic
#: cohort itself changes, and a row must still meet its counterpart.
KEY_NUMBERS = {"paper SSIM", "paper PSNR (dB)"}
EXACT = 1e-12
#: How many (column-floored) seed sds a cell may move; see the module docstring.
SD_MULTIPLE = 6.0


def cells(path: str | Path) -> dict[tuple[str, str], float]:
    """``{(row key, column): value}`` of a table (row key: its text columns joined by `` | ``)."""
    frame = pd.read_csv(path)
    numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and c not in KEY_NUMBERS]
    keys = [c for c in frame.columns if c not in numeric]
    out: dict[tuple[str, str], float] = {}
    seen: dict[str, int] = {}
    for _, row in frame.iterrows():
        key = " | ".join(str(row[k]) for k in keys)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:  # rows with equal text keep their order
            key = f"{key} #{seen[key]}"
        for column in numeric:
            out[(key, column)] = float(row[column])
    return out


def seed_spread(folders: Iterable[str | Path], out: str | Path) -> pd.DataFrame:
    """Mean, sd, min and max of every cell over the figure folders of runs with different seeds."""
    folders = [Path(f) for f in folders]
    if len(folders) < 2:
        raise AdunetError("a spread needs the figure folders of at least 2 seeds")
    rows = []
    for table in TABLES:
        runs = [cells(f / table) for f in folders if (f / table).is_file()]
        if len(runs) < 2:
            continue
        for cell in sorted(set().union(*runs)):
            values = [r[cell] for r in runs if cell in r and not math.isnan(r[cell])]
            if not values:
                continue
            s = pd.Series(values)
            rows.append({"table": table, "row": cell[0], "column": cell[1], "n": len(values), "mean": s.mean(),
                         "sd": s.std(ddof=1) if len(values) > 1 else 0.0, "min": s.min(), "max": s.max()})
    frame = pd.DataFrame(rows)
    with atomic_path(out) as tmp:
        frame.to_csv(tmp, index=False)
    return frame


@dataclasses.dataclass(frozen=True)
class Verdict:
    table: str
    verdict: str  # identical | within spread | outside spread | missing
    differing: int = 0
    outside: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.verdict == "identical":
            return f"{self.table}: identical"
        if self.verdict == "within spread":
            return f"{self.table}: within spread ({self.differing} cell(s) differ, all within the committed seed spread)"
        shown = "; ".join(self.outside[:5]) + (f"; … {len(self.outside) - 5} more" if len(self.outside) > 5 else "")
        return f"{self.table}: {self.verdict} — {shown}"


def _typical_sd(spread: dict[tuple[str, str, str], tuple[float, float]]) -> dict[tuple[str, str], float]:
    """(table, column) → the median sd of that column's cells in the spread."""
    by_column: dict[tuple[str, str], list[float]] = {}
    for (table, _, column), (sd, _) in spread.items():
        if not math.isnan(sd):
            by_column.setdefault((table, column), []).append(sd)
    return {key: float(pd.Series(values).median()) for key, values in by_column.items()}


def _allowance(spread: dict[tuple[str, str, str], tuple[float, float]], typical: dict[tuple[str, str], float],
               table: str, cell: tuple[str, str]) -> float | None:
    floor = typical.get((table, cell[1]))
    found = spread.get((table, *cell))
    if found is None:
        return None if floor is None else SD_MULTIPLE * floor
    sd, width = found
    return max(SD_MULTIPLE * max(sd, floor or 0.0), width)


def verify(candidate: str | Path, reference: str | Path, spread_file: str | Path | None = None) -> list[Verdict]:
    """Compare every table of ``candidate`` with ``reference`` (see the module docstring)."""
    candidate, reference = Path(candidate), Path(reference)
    for folder in (candidate, reference):
        if not folder.is_dir():
            raise AdunetError(f"{folder}: not a figures folder")
    spread_path = Path(spread_file) if spread_file else reference / SPREAD
    spread: dict[tuple[str, str, str], tuple[float, float]] = {}
    if spread_path.is_file():
        frame = pd.read_csv(spread_path, keep_default_na=False, dtype={"row": str, "column": str})
        spread = {(r.table, r.row, r.column): (float(r.sd), float(r.max) - float(r.min)) for r in frame.itertuples()}
    typical = _typical_sd(spread)
    verdicts = []
    for table in TABLES:
        have, want = candidate / table, reference / table
        if not want.is_file():
            continue
        if not have.is_file():
            verdicts.append(Verdict(table, "missing", outside=(f"{have} was not written",)))
            continue
        a, b = cells(have), cells(want)
        outside = [f"row {k[0]!r} column {k[1]!r} missing" for k in sorted(set(b) - set(a))]
        outside += [f"row {k[0]!r} column {k[1]!r} is new" for k in sorted(set(a) - set(b))]
        differing = 0
        for cell in sorted(set(a) & set(b)):
            x, y = a[cell], b[cell]
            if (math.isnan(x) and math.isnan(y)) or abs(x - y) <= EXACT:
                continue
            differing += 1
            allowed = _allowance(spread, typical, table, cell)
            if allowed is None or math.isnan(x) or math.isnan(y) or abs(x - y) > allowed + EXACT:
                why = "no spread committed" if allowed is None else f"allowed ±{allowed:.4g}"
                outside.append(f"{cell[0]} / {cell[1]}: {x:.4g} vs {y:.4g} ({why})")
        verdict = "outside spread" if outside else ("within spread" if differing else "identical")
        verdicts.append(Verdict(table, verdict, differing, tuple(outside)))
    if not verdicts:
        raise AdunetError(f"{reference}: no tables ({', '.join(TABLES)}) to compare with")
    return verdicts
