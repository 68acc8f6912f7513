"""benchmarks/map_scale.py: the map's size inside lesions and on healthy gland, per model and split."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

BENCH = Path(__file__).parents[1] / "benchmarks"


def test_map_scale_reads_each_studys_lesion_and_healthy_gland(tiny_run):
    sys.path.insert(0, str(BENCH))
    try:
        from map_scale import study_rows, summarise
    finally:
        sys.path.remove(str(BENCH))
    from adunet_lib.data.image import read_image
    from adunet_lib.preprocessing.pipeline import PreprocessedCase

    ctx, tables = tiny_run
    rows = [r for _, case in tables.cases.iterrows() for r in study_rows(ctx, case, ["dense_ae"])]
    assert len(rows) == 3 * len(tables.cases)  # a row per study and sequence
    # one study with a lesion inside its gland: its row is that lesion's mean map value
    for _, case in tables.cases.iterrows():
        lesion = ctx.case_image(case["set"], case["case_id"], "lesion")
        gland = PreprocessedCase.from_run(ctx, case["set"], case["case_id"]).gland_on_t2w().array > 0
        if lesion is not None and (inside := gland & (lesion.array > 0)).any():
            adc = read_image(ctx.map_file("dense_ae", case["case_id"], "adc")).array
            row = next(r for r in rows if r["case_id"] == case["case_id"] and r["sequence"] == "ADC")
            assert np.isclose(row["lesion"], adc[inside].mean())
            assert np.isclose(row["floor"], np.median(adc[gland & ~inside]))
            break
    else:
        raise AssertionError("the tiny run has no study with a lesion in its gland")
    table = summarise(pd.DataFrame(rows))
    assert set(table["split"]) == {"training split", "validation", "external test"}
    assert np.allclose(table["lesion_excess"], table["lesion"] - table["floor"], equal_nan=True)
    # a model the run has no maps of: one line naming the study and the file, non-zero exit
    done = subprocess.run([sys.executable, str(BENCH / "map_scale.py"), "--run", str(ctx.run_dir), "--models",
                           "nosuchmodel"], capture_output=True, text=True, encoding="utf-8", timeout=300)
    first = tables.cases["case_id"].iloc[0]
    assert done.returncode != 0 and f"{first}: no nosuchmodel map for t2w" in done.stderr
    assert "Traceback" not in done.stderr
