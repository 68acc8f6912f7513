"""benchmarks/bench_parity.py's own plumbing: combining runs into one table and figure, and the messages a
user gets when the reference checkout is missing or does not import. (Training itself is a benchmark,
run on demand; its printouts are in figures/bench/.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCH = Path(__file__).parents[1] / "benchmarks"


def run_parity(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCH / "bench_parity.py"), *args], cwd=cwd, capture_output=True,
                          text=True, encoding="utf-8", timeout=300)


def curve_rows(setting_seed: int, auroc: float) -> pd.DataFrame:
    rows = []
    for iterations in (250, 1000):
        for set_name in ("validation", "external test"):
            rows.append({"implementation": "adunet", "seed": setting_seed, "iterations": iterations,
                         "train_minutes": iterations / 100, "set": set_name, "sequence": "ADC",
                         "map_auroc": auroc + iterations / 1e4, "image_auroc": 0.78, "lesion_removal": 0.01,
                         "lesion_edit": 0.0, "healthy_change": 0.02})
    return pd.DataFrame(rows)


def test_combine_summarises_runs_by_file_and_draws_the_curves(tmp_path):
    curve_rows(0, 0.40).to_csv(tmp_path / "brats_seed0.csv", index=False)
    curve_rows(1, 0.50).to_csv(tmp_path / "brats_seed1.csv", index=False)
    curve_rows(0, 0.60).to_csv(tmp_path / "paper.csv", index=False)
    # files of one setting add seeds: mean ± sd over them
    done = run_parity("--combine", "brats_seed0.csv", "brats_seed1.csv", "--out", "out/brats", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    table = (tmp_path / "out" / "brats.md").read_text(encoding="utf-8")
    assert "| adunet | 250 | validation | ADC | 0.475 ± 0.071 |" in table and "setting" not in table
    # --by-file: each file is a setting of its own, named by the file
    done = run_parity("--combine", "brats_seed0.csv", "paper.csv", "--by-file", "--out", "out/curve",
                      "--figure", "out/curve.png", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    table = (tmp_path / "out" / "curve.md").read_text(encoding="utf-8")
    assert "| setting | implementation | iterations |" in table
    assert "| paper | adunet | 1000 | external test | ADC | 0.700 ± 0.000 |" in table
    assert "| brats_seed0 | adunet | 250 | validation | ADC | 0.425 ± 0.000 |" in table
    assert len(pd.read_csv(tmp_path / "out" / "curve.csv")) == 8
    assert (tmp_path / "out" / "curve.png").stat().st_size > 10_000


def test_combine_names_a_missing_file_in_one_line(tmp_path):
    done = run_parity("--combine", "nowhere.csv", "--out", "out/curve", cwd=tmp_path)
    assert done.returncode != 0
    assert done.stderr.strip() == "--combine nowhere.csv: no such file"
    assert not (tmp_path / "out").exists()


def test_training_needs_a_run_and_params(tmp_path):
    done = run_parity("--model", "ddpm", cwd=tmp_path)
    assert done.returncode == 2
    assert "--run and --params are needed" in done.stderr


@pytest.mark.parametrize("content, message", [
    (None, "no guided_diffusion/gaussian_diffusion.py there"),
    ("def broken(:\n", "line 1 does not parse"),
])
def test_the_diffusion_reference_checkout_is_checked_before_training(tmp_path, content, message):
    checkout = tmp_path / "diffusion-anomaly"
    (checkout / "guided_diffusion").mkdir(parents=True)
    if content is not None:
        (checkout / "guided_diffusion" / "__init__.py").write_text("", encoding="utf-8")
        (checkout / "guided_diffusion" / "gaussian_diffusion.py").write_text(content, encoding="utf-8")
    code = (f"import sys; sys.path.insert(0, {str(BENCH)!r}); import reference_diffusion as r; "
            f"r.load_reference({str(checkout)!r}, 16)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"--reference {checkout}") and message in lines[0]


def test_each_adunet_setting_gets_its_verdict_against_the_reference(tmp_path):
    """Two adunet settings from two runs and the reference's rows from one of them: a verdict block per
    setting, each against the same reference rows; --names names the settings."""
    def rows(impl: str, auroc: float, removal: float) -> pd.DataFrame:
        frame = pd.concat([curve_rows(0, auroc), curve_rows(1, auroc + 0.01)], ignore_index=True)
        return frame.assign(implementation=impl, lesion_removal=removal + frame["seed"] * 0.01)

    pd.concat([rows("adunet", 0.40, 0.10), rows("reference", 0.40, 0.60)]).to_csv(tmp_path / "old.csv", index=False)
    rows("adunet", 0.70, 0.60).to_csv(tmp_path / "new.csv", index=False)
    done = run_parity("--model", "ddpm", "--combine", "old.csv", "new.csv", "--by-file", "--names",
                      "classifier_design=adunet", "classifier_design=wolleb", "--out", "out/parity", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    table = (tmp_path / "out" / "parity.md").read_text(encoding="utf-8")
    assert "| their code | reference | 1000 | external test | ADC |" in table  # a setting is adunet's
    old = table.split("(adunet, classifier_design=adunet − reference")[1].split("Verdict")[0]
    new = table.split("(adunet, classifier_design=wolleb − reference")[1]
    assert "- 1000 iterations, external test, ADC: map_auroc +0.000 (same); lesion_removal -0.500 (adunet worse)" in old
    assert "- 1000 iterations, external test, ADC: map_auroc +0.300 (adunet better); lesion_removal +0.000 (same)" in new
    # a name per file, or none
    done = run_parity("--combine", "old.csv", "new.csv", "--by-file", "--names", "one", cwd=tmp_path)
    assert done.returncode != 0 and done.stderr.strip() == "--names: one name per --combine file (2), with --by-file"


def test_swap_needs_the_diffusion_model_and_a_reference(tmp_path):
    done = run_parity("--swap", "--run", "r", "--params", "p.yaml", cwd=tmp_path)
    assert done.returncode == 2 and "--swap pairs the diffusion models' networks" in done.stderr


def test_held_cases_scores_the_same_fixed_draw_of_each_set(tiny_run):
    """--held-cases N: N cases of each held-out set, the same ones in every run (seed-independent), so a
    large run's checkpoints are scored on comparable cases; without it, every labelled held-out case."""
    sys.path.insert(0, str(BENCH))
    try:
        from bench_parity import HeldOut

        from adunet_lib.vocabulary import TEST, VAL
    finally:
        sys.path.remove(str(BENCH))
    ctx, tables = tiny_run
    cases = tables.cases
    everyone = HeldOut(ctx, cases)
    held = cases[cases["labeled"].astype(bool) & cases["split"].isin([VAL, TEST])]
    assert len(everyone.items) == len(held)
    one = HeldOut(ctx, cases, per_set=1)
    again = HeldOut(ctx, cases, per_set=1)
    assert sorted(item[0] for item in one.items) == sorted(held["split"].unique())
    for a, b in zip(one.items, again.items):
        assert a[0] == b[0] and np.array_equal(a[1], b[1])


def test_held_cases_below_one_is_refused_before_training(tmp_path):
    done = run_parity("--run", "r", "--params", "p.yaml", "--implementations", "adunet", "--held-cases", "0",
                      cwd=tmp_path)
    assert done.returncode == 2 and "--held-cases 0: score at least 1 case" in done.stderr
