"""Same machine, same seed, same numbers — and ``adunet verify`` tells a broken rerun from noise (#16)."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys

import pytest
import yaml

from adunet_lib.cli import main
from adunet_lib.report.verify import SPREAD, TABLES, seed_spread
from conftest import REPO, series_params


@pytest.mark.slow
@pytest.mark.heavy  # about 400 s on 2 cores: python -m pytest -m heavy
def test_a_killed_rerun_as_cluster_jobs_restarts_to_byte_identical_tables_and_verify_tells_a_broken_one(
        smoke_series, tmp_path, capsys):
    """Notebooks 02–07 run a second time, from notebook 01's outputs, in another folder — this time as the
    jobs `adunet submit --executor local` makes of them (#13): one process per model, two map shards, one
    nnU-Net unit per variant and fold, two at a time, then the notebooks assemble. The run is killed at a
    random moment (the whole process group: runner, jobs, kernels, nnU-Net workers), and the same command
    then finishes it. Every table comes out byte for byte as the shared run's, which ran the notebooks
    alone, in turn, uninterrupted (#16)."""
    from adunet_lib.runner.reproduce import reproduce

    run, figures, timings = smoke_series
    snapshot = run.parent.parent / "after_01"
    shutil.copytree(snapshot / "runs", tmp_path / "runs")
    shutil.copytree(snapshot / "figures", tmp_path / "figures")
    params = series_params(tmp_path)
    cmd = [sys.executable, "-m", "adunet_lib.cli", "submit", str(params), "--executor", "local", "--from", "02",
           "--parallel", "2"]
    total = sum(seconds for name, seconds in timings.items() if not name.startswith("01"))
    delay = random.Random(os.getpid()).uniform(0.15, 0.75) * total
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, encoding="utf-8", errors="replace")
    assert rerun.returncode == 0, f"killed after {delay:.0f} s: " + rerun.stderr[-2000:]
    said = rerun.stdout + rerun.stderr
    assert "started nnunet_adunet_all_fold0" in said and "finished assemble" in said and "all 12 jobs done" in said
    assert "started nnunet_adunet_all_oracle_fold0" in said  # the phantoms' headroom row, a unit like any other
    copy = tmp_path / "runs" / "smoke"
    ids = re.findall(r"started \S+ \(job (\S+)\)", said)
    assert len(ids) == 12 and all((copy / "jobs" / f"{i}_0_log.err").is_file() for i in ids)  # each job's own log
    assert all(json.loads((copy / "maps" / m / "mapset.json").read_text(encoding="utf-8"))["complete"] is True
               for m in ("fpgan", "ddpm"))
    again = tmp_path / "figures" / "smoke"
    written = [t for t in TABLES if (figures / t).is_file()]
    assert {"table1.csv", "table2.csv", "map_quality.csv"} <= set(written)
    for table in written:
        assert (again / table).read_bytes() == (figures / table).read_bytes(), f"{table} (killed after {delay:.0f} s)"
    assert main(["verify", str(again), str(figures)]) == 0
    out = capsys.readouterr().out
    assert all(f"{t}: identical" in out for t in written), out

    # a deliberately broken rerun (another bootstrap): outside a spread of zero width, with the cells named
    spread = tmp_path / SPREAD
    seed_spread([figures, again], spread)
    data = yaml.safe_load(params.read_text(encoding="utf-8"))
    data["evaluation"]["n_bootstrap"] = 37
    params.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    reproduce(params, start="07", root=REPO, log=lambda _: None, stream_output=False)
    assert main(["verify", str(again), str(figures), "--spread", str(spread)]) == 1
    out = capsys.readouterr().out
    assert "table2.csv: outside spread — " in out and "(allowed ±0)" in out and "table1.csv: identical" in out
    assert "NOT reproduced" in out


def test_data_seed_holds_the_cohort_while_seed_varies_training(tmp_path):
    """A seed spread must measure training noise alone: with ``data_seed`` fixed, another ``seed`` draws
    the same synthetic cohort; with ``data_seed: -1`` the seed draws the cohort too (one seed for all)."""
    from adunet_lib.preprocessing.stage import resolve_datasets
    from adunet_lib.run_folder import RunContext

    def cohort(name: str, seed: int, data_seed: int) -> dict[str, bytes]:
        ctx = RunContext.create(tmp_path / name / "run", tmp_path / name / "figures", seed=seed, data_seed=data_seed)
        assert ctx.data_seed == (seed if data_seed < 0 else data_seed)
        ds = resolve_datasets(ctx, {"internal": "synthetic"}, {"internal": 2}, show_progress=False)["internal"]
        return {f"{c.case_id}/{s}": open(c.images[s], "rb").read() for c in ds for s in ("t2w", "adc")}

    reference = cohort("a", seed=0, data_seed=0)
    assert cohort("b", seed=1, data_seed=0) == reference
    assert cohort("c", seed=1, data_seed=-1) != reference
