"""``adunet plan``: one row per job of ``adunet submit``'s graph, hours that scale as the jobs parallelise,
totals that add up, one-line errors; and the committed cost file covers every model of paper.yaml."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from adunet_lib.cli import main
from adunet_lib.runner.plan import COST_FILE, GPU_EFFICIENCY, make_plan, read_costs

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "params" / "paper.yaml"
MODELS = ("dense_ae", "spatial_ae", "ddpm", "fpgan")


def fake_costs(path: Path) -> Path:
    """A small cost table with round numbers: every item the plan of paper.yaml looks up."""
    rows = []
    for k, model in enumerate(MODELS, 1):
        rows.append({"item": f"train:{model}", "gflop": 100 * k, "cpu_s": 2 * k, "peak_mb": 500, "params_m": 10})
        rows.append({"item": f"translate:{model}", "gflop": k, "cpu_s": 0.1 * k, "peak_mb": 100, "params_m": 10})
    for name in ("zones", "baseline", "adunet_all"):
        timed = name == "adunet_all"
        rows.append({"item": f"nnunet_train:{name}", "gflop": 5000, "cpu_s": 200 if timed else "",
                     "peak_mb": 8000 if timed else "", "params_m": 45, "voxels": 2801664})
        rows.append({"item": f"nnunet_predict:{name}", "gflop": 60000, "params_m": 45, "voxels": 2801664,
                     "mirroring": 8})
    columns = ["item", "gflop", "cpu_s", "peak_mb", "params_m", "voxels", "mirroring"]
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def costs(tmp_path_factory) -> Path:
    return fake_costs(tmp_path_factory.mktemp("plan") / "costs.csv")


@pytest.fixture(scope="module")
def plans(costs):
    return {n: make_plan(PAPER, "h100", n, costs) for n in (1, 8)}


def test_a_row_per_job_of_the_submit_graph(plans, tmp_path):
    from adunet_lib.runner.plan import _planning_copy
    from adunet_lib.runner.submit import job_graph

    copy, _ = _planning_copy(PAPER, tmp_path)
    names = [j.name for j in job_graph(copy, shards=2, gpus=8, root=REPO)]  # the names do not depend on --gpus
    for plan in plans.values():
        assert [r.job for r in plan.rows] == names
    assert names[0] == "prepare" and names[-1] == "assemble"
    assert {f"train_{m}" for m in MODELS} <= set(names)
    assert sum(n.startswith("nnunet_") for n in names) == 25  # 5 variants × 5 folds


def test_hours_scale_with_gpus_data_parallel_and_by_fold(plans):
    one, eight = ({r.job: r for r in plans[n].rows} for n in (1, 8))
    for model in MODELS:
        job = f"train_{model}"
        assert eight[job].gpus == 8 and one[job].gpus == 1
        assert eight[job].hours == pytest.approx(one[job].hours / 8, rel=1e-6)
        assert eight[job].gpu_hours == pytest.approx(one[job].gpu_hours, rel=1e-6)
    fold = "nnunet_adunet_all_fold0"
    assert eight[fold].hours == pytest.approx(one[fold].hours) and eight[fold].gpus == 1
    # the 25 nnU-Net folds run side by side on 8 GPUs: the wall time falls, the GPU-hours do not
    assert plans[8].wall_hours < plans[1].wall_hours / 2
    assert plans[8].gpu_hours == pytest.approx(plans[1].gpu_hours, rel=1e-6)
    # on one GPU nothing runs side by side: the wall time is the sum of the jobs
    assert plans[1].wall_hours == pytest.approx(sum(r.hours for r in plans[1].rows), rel=1e-6)
    folds = [r for r in plans[8].rows if r.job.startswith("nnunet_")]
    assert len({round(r.start, 6) for r in folds}) < len(folds)  # some folds start together


def test_gpu_hours_follow_the_flops_and_the_stated_efficiency(plans):
    dense = next(r for r in plans[1].rows if r.job == "train_dense_ae")
    runs, iterations = 6, 3000  # 3 sequences × 2 modes, paper.yaml's 3000 iterations, fake 100 GFLOP each
    assert dense.hours == pytest.approx(runs * iterations * 100e9 / (495e12 * GPU_EFFICIENCY) / 3600, rel=1e-6)
    assert "extrapolated" in dense.basis


def test_totals_are_the_sums_of_the_rows(plans, capsys, costs):
    for plan in plans.values():
        assert plan.gpu_hours == pytest.approx(sum(r.gpu_hours for r in plan.rows))
        assert plan.disk_gb == pytest.approx(sum(r.disk_gb for r in plan.rows))
        assert plan.critical_path[-1] == "assemble" and plan.critical_path[0] == "prepare"
    assert main(["plan", str(PAPER), "--gpus", "8", "--costs", str(costs), "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert "| nnunet_baseline_fold4 |" in out and "| **total** |" in out
    assert "critical path: prepare →" in out and f"{GPU_EFFICIENCY:.0%}" in out and "ASSUMED" in out


def test_cpu_uses_the_measured_seconds(costs):
    plan = make_plan(PAPER, "cpu", 1, costs)
    rows = {r.job: r for r in plan.rows}
    assert rows["train_fpgan"].hours == pytest.approx(6 * 200_000 * 8 / 3600)  # fake 8 s/iteration
    assert rows["train_fpgan"].basis.startswith("measured")
    assert "extrapolated" in rows["prepare"].basis  # the zone network was not timed: FLOPs at the timed rate


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_an_unknown_gpu_is_one_line(capsys, costs):
    assert main(["plan", str(PAPER), "--gpu", "v100", "--costs", str(costs)]) != 0
    line = one_error_line(capsys)
    assert "--gpu v100" in line and "h100" in line


def test_a_missing_costs_file_is_one_line_naming_it(capsys, tmp_path):
    missing = tmp_path / "nowhere.csv"
    assert main(["plan", str(PAPER), "--costs", str(missing)]) != 0
    assert str(missing) in one_error_line(capsys)


def test_the_committed_cost_file_parses_and_has_every_paper_model():
    costs = read_costs(REPO / COST_FILE)
    for model in MODELS:
        for kind in ("train", "translate"):
            row = costs[f"{kind}:{model}"]
            assert row.gflop > 0 and row.cpu_s and row.cpu_s > 0 and row.params_m > 0
    for name in ("zones", "baseline", "adunet_all"):
        assert costs[f"nnunet_train:{name}"].gflop > 0 and costs[f"nnunet_predict:{name}"].gflop > 0
    with (REPO / COST_FILE).open(encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert all(r["cpu"] and r["torch"] and r["threads"] and r["matmul_gflops"] for r in table)
    text = (REPO / COST_FILE).read_text(encoding="utf-8")
    assert "/home/" not in text and "/work/" not in text and "/tmp/" not in text
