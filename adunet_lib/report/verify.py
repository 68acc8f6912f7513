"""``adunet verify``: is a regenerated figures folder the committed one, within training noise, or not?

Every table of a run (:data:`TABLES`) is read cell by cell: a cell is a (row, column) pair whose row
is named by the table's text columns (model, sequence, set …) and whose value is a number. Two
folders are compared per table:

* **identical** — every cell equal (to 1e-12) and the same rows and columns;
* **within spread** — every differing cell differs from the reference by no more than the spread the
  reference folder commits for it (``spread.csv``: the same cell over several training seeds). The
  allowance is the larger of the seeds' min–max range for that cell and :data:`SD_MULTIPLE` × its sd,
  where the sd is never taken below its column's floor: the median sd of the cells of that column (in
  that table) that move at all. Five seeds give a noisy sd per cell (a few seeds may happen to agree),
  while a column's cells move alike; and a count that a predicted mask decides (Table I's slices, a crop
  box's size in whole voxels) may agree over the seeds in one row although it moves in others — another
  thread count moves the zone model's masks by a voxel, and its count by one step. A cell with no spread
  of its own (a row the spread's runs did not have) is judged by its column's floor. Another CPU or
  thread count runs other kernels, so its floats drift as another seed's do. Counts that no seed moves
  anywhere in their column (cases, positives) have a floor of zero: they must match exactly.
  The multiple is calibrated, not guessed: ``benchmarks/verify_calibration.py`` holds each seed out in
  turn (a held-out seed must pass against the others' spread), checks a rerun with another thread count
  (must pass) and a run with a changed setting (must fail); its printout is committed beside the spread
  (``verify_calibration.txt``).
* **outside spread** — a cell differs by more (or has no spread to be judged by), or rows are missing.

Figures (PNG) are drawn from these tables, so they are compared through them, not pixel by pixel.
:func:`seed_spread` writes ``spread.csv`` from several runs of one params file with different seeds.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

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
SD_MULTIPLE = 10.0


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
            rows.append({"table": table, "row": cell[0], "column": cell[1], "seeds": len(runs), "n": len(values),
                         "mean": s.mean(),
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
    rows_chosen: tuple[str, ...] = ()  # rows present on one side only, as they are in some seeds only

    def __str__(self) -> str:
        if self.verdict == "identical":
            return f"{self.table}: identical"
        if self.verdict == "within spread":
            chosen = (f"; {len(self.rows_chosen)} row(s) the seeds choose differently, e.g. {self.rows_chosen[0]}"
                      if self.rows_chosen else "")
            return (f"{self.table}: within spread ({self.differing} cell(s) differ, all within the committed seed "
                    f"spread{chosen})")
        shown = "; ".join(self.outside[:5]) + (f"; … {len(self.outside) - 5} more" if len(self.outside) > 5 else "")
        return f"{self.table}: {self.verdict} — {shown}"


@dataclasses.dataclass(frozen=True)
class Spread:
    """A committed seed spread, read for judging: per cell its sd and min–max width, per column its floor."""

    cells: dict[tuple[str, str, str], tuple[float, float]]  # (table, row, column) → (sd, max − min)
    floors: dict[tuple[str, str], float]  # (table, column) → median sd of the column's cells that move
    means: dict[tuple[str, str, str], float] = dataclasses.field(default_factory=dict)
    counts: dict[tuple[str, str, str], int] = dataclasses.field(default_factory=dict)  # seeds that had the cell
    seeds: int = 0  # how many seeds the spread is over

    @classmethod
    def read(cls, path: Path | None) -> Spread:
        cells: dict[tuple[str, str, str], tuple[float, float]] = {}
        means: dict[tuple[str, str, str], float] = {}
        counts: dict[tuple[str, str, str], int] = {}
        seeds = 0
        if path is not None and path.is_file():
            frame = pd.read_csv(path, keep_default_na=False, dtype={"row": str, "column": str})
            for r in frame.itertuples():
                key = (r.table, r.row, r.column)
                cells[key] = (float(r.sd), float(r.max) - float(r.min))
                means[key], counts[key] = float(r.mean), int(r.n)
                seeds = max(seeds, int(getattr(r, "seeds", 0) or 0), int(r.n))  # older spreads: the largest n
        moving: dict[tuple[str, str], list[float]] = {}
        for (table, _, column), (sd, _) in cells.items():
            if not math.isnan(sd) and sd > 0:
                moving.setdefault((table, column), []).append(sd)
        return cls(cells, {key: float(pd.Series(values).median()) for key, values in moving.items()}, means, counts,
                   seeds)

    def in_some_seeds_only(self, table: str, row: str, columns: Iterable[str]) -> bool:
        """Did some of the spread's seeds have this row and others not (Table I's pick of the best model per
        sequence, a zone model's held-out cases)? Then its presence is itself training noise."""
        n = [self.counts.get((table, row, c), 0) for c in columns]
        return bool(n) and 0 < max(n) < self.seeds

    def scale(self, table: str, cell: tuple[str, str]) -> tuple[float, float] | None:
        """(width, sd) a differing cell is judged by: its seeds' min–max width (0 for a row the spread lacks)
        and its sd floored at its column's; None when neither the cell nor its column has a spread."""
        floor = self.floors.get((table, cell[1]), 0.0)
        found = self.cells.get((table, *cell))
        if found is None:
            return None if (table, cell[1]) not in self.floors else (0.0, floor)
        sd, width = found
        return width, max(0.0 if math.isnan(sd) else sd, floor)

    def allowance(self, table: str, cell: tuple[str, str], multiple: float = SD_MULTIPLE) -> float | None:
        found = self.scale(table, cell)
        return None if found is None else max(found[0], multiple * found[1])


class Comparison(NamedTuple):
    table: str
    outside: list[str]
    differing: int
    needed: float  # the smallest sd multiple at which every cell would be inside (inf: missing, no spread)
    missing: bool = False
    rows_chosen: tuple[str, ...] = ()
    rows_unseen: int = 0  # rows on one side only that no seed (or every seed) had: a category no seed chose


def _judge(spread: Spread, table: str, cell: tuple[str, str], x: float, y: float, multiple: float,
           against: str = "") -> tuple[str | None, float]:
    """A differing cell ``x`` against ``y`` (the reference's value, or the seeds' mean for a row the
    reference lacks): why it is outside (None when inside) and the sd multiple it needs."""
    found, allowed = spread.scale(table, cell), spread.allowance(table, cell, multiple)
    if found is None or math.isnan(x) or math.isnan(y):
        needed = math.inf
    elif abs(x - y) > found[0] + EXACT:
        needed = abs(x - y) / found[1] if found[1] > 0 else math.inf
    else:
        needed = 0.0
    if allowed is None or math.isnan(x) or math.isnan(y) or abs(x - y) > allowed + EXACT:
        why = "no spread committed" if allowed is None else f"allowed ±{allowed:.4g}"
        return f"{cell[0]} / {cell[1]}: {x:.4g} vs {against}{y:.4g} ({why})", needed
    return None, needed


def _compare(candidate: Path, reference: Path, spread: Spread, multiple: float) -> list[Comparison]:
    """Every table present in ``reference``, cell by cell."""
    out = []
    for table in TABLES:
        have, want = candidate / table, reference / table
        if not want.is_file():
            continue
        if not have.is_file():
            out.append(Comparison(table, [f"{have} was not written"], 0, math.inf, missing=True))
            continue
        a, b = cells(have), cells(want)
        outside: list[str] = []
        chosen: list[str] = []
        differing = unseen = 0
        needed = 0.0
        for side, only, present in (("missing", set(b) - set(a), b), ("is new", set(a) - set(b), a)):
            for row in sorted({k[0] for k in only}):
                columns = [k[1] for k in only if k[0] == row]
                if not spread.in_some_seeds_only(table, row, columns):
                    outside += [f"row {row!r} column {c!r} {side}" for c in columns]
                    unseen += 1
                    continue
                chosen.append(f"{row!r} {'only in the reference' if side == 'missing' else 'only here'} "
                              f"(as in {max(spread.counts.get((table, row, c), 0) for c in columns)} of "
                              f"{spread.seeds} seeds)")
                if side == "missing":
                    continue
                for column in columns:  # a row the reference lacks: judged against the seeds that had it
                    x, mean = present[(row, column)], spread.means.get((table, row, column), math.nan)
                    if math.isnan(x) and math.isnan(mean):
                        continue
                    differing += 1
                    why, need = _judge(spread, table, (row, column), x, mean, multiple, "the seeds' mean ")
                    outside += [why] if why else []
                    needed = max(needed, need)
        for cell in sorted(set(a) & set(b)):
            x, y = a[cell], b[cell]
            if (math.isnan(x) and math.isnan(y)) or abs(x - y) <= EXACT:
                continue
            differing += 1
            why, need = _judge(spread, table, cell, x, y, multiple)
            outside += [why] if why else []
            needed = max(needed, need)
        out.append(Comparison(table, outside, differing, needed, rows_chosen=tuple(chosen), rows_unseen=unseen))
    return out


def comparisons(candidate: str | Path, reference: str | Path, spread_file: str | Path) -> list[Comparison]:
    """Per table: the cells outside, the smallest multiple of the sd at which its cells would verify (0: within
    the seeds' range or identical; inf: a table missing, or a cell with no spread) and the rows that no seed of
    the spread shares (a category no seed chose) — for calibrating :data:`SD_MULTIPLE`
    (``benchmarks/verify_calibration.py``)."""
    return _compare(Path(candidate), Path(reference), Spread.read(Path(spread_file)), SD_MULTIPLE)


def needed_multiples(candidate: str | Path, reference: str | Path, spread_file: str | Path) -> dict[str, float]:
    """Per table: the sd multiple its cells need (see :func:`comparisons`)."""
    return {c.table: c.needed for c in comparisons(candidate, reference, spread_file)}


def verify(candidate: str | Path, reference: str | Path, spread_file: str | Path | None = None,
           multiple: float = SD_MULTIPLE) -> list[Verdict]:
    """Compare every table of ``candidate`` with ``reference`` (see the module docstring)."""
    candidate, reference = Path(candidate), Path(reference)
    for folder in (candidate, reference):
        if not folder.is_dir():
            raise AdunetError(f"{folder}: not a figures folder")
    spread = Spread.read(Path(spread_file) if spread_file else reference / SPREAD)
    verdicts = []
    for c in _compare(candidate, reference, spread, multiple):
        verdict = ("missing" if c.missing else "outside spread" if c.outside
                   else "within spread" if c.differing else "identical")
        verdicts.append(Verdict(c.table, verdict, c.differing, tuple(c.outside), c.rows_chosen))
    if not verdicts:
        raise AdunetError(f"{reference}: no tables ({', '.join(TABLES)}) to compare with")
    return verdicts
