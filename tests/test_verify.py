"""``adunet verify``: identical / within spread / outside spread, table by table, with the cells named."""

from __future__ import annotations

import shutil

import pandas as pd

from adunet_lib.cli import main
from adunet_lib.report.verify import SD_MULTIPLE, SPREAD, needed_multiples, seed_spread, verify

ROWS = [("nnU-Net baseline", "baseline", "test"), ("adU-Net(all bpMRI)", "adunet_all", "test")]


def figures(folder, scores, cases=12, delta=False):
    folder.mkdir(parents=True)
    frame = pd.DataFrame([{"Model": m, "model": k, "set": s, "cases": float(cases), "score": v, "auroc": v + 0.1}
                          for (m, k, s), v in zip(ROWS, scores)])
    if delta:  # Table II's paired difference to the baseline (none on the baseline's own row)
        frame["delta_score"] = [float("nan")] + [v - scores[0] for v in scores[1:]]
    frame.to_csv(folder / "table2.csv", index=False)
    pd.DataFrame({"model": ["fpgan", "fpgan"], "sequence": ["adc", "hbv"], "voxels": [10, 10],
                  "auroc": [0.7, 0.8]}).to_csv(folder / "map_quality.csv", index=False)
    return folder


def test_identical_within_and_outside_the_committed_spread(tmp_path, capsys):
    seeds = [figures(tmp_path / f"seed{k}", [0.70 + 0.01 * k, 0.75 - 0.01 * k]) for k in range(5)]
    reference = seeds[0]
    spread = seed_spread(seeds, reference / SPREAD)
    row = spread[(spread["row"] == "adU-Net(all bpMRI) | adunet_all | test") & (spread["column"] == "score")]
    assert row["n"].item() == 5 and abs(row["sd"].item() - 0.0158) < 1e-3 and abs(row["max"].item() - 0.75) < 1e-12

    same = shutil.copytree(reference, tmp_path / "same")
    assert [v.verdict for v in verify(same, reference)] == ["identical", "identical"]

    near = figures(tmp_path / "near", [0.72, 0.73])  # moved by less than the seeds do
    assert [v.verdict for v in verify(near, reference)] == ["within spread", "identical"]

    far = figures(tmp_path / "far", [0.70, 0.95])  # adU-Net's score far outside its seed range
    verdicts = verify(far, reference)
    assert [v.verdict for v in verdicts] == ["outside spread", "identical"]
    assert any("adU-Net(all bpMRI)" in o and "score: 0.95 vs 0.75" in o for o in verdicts[0].outside)

    assert main(["verify", str(far), str(reference)]) == 1
    out = capsys.readouterr().out
    assert "table2.csv: outside spread — adU-Net(all bpMRI) | adunet_all | test / auroc: 1.05 vs 0.85" in out
    assert "adunet_all | test / score: 0.95 vs 0.75 (allowed ±0.1581)" in out  # 10 sd of the five seeds
    assert "NOT reproduced: 1 of 2 table(s)" in out
    assert main(["verify", str(near), str(reference)]) == 0
    assert "reproduced: 2 of 2" in capsys.readouterr().out


def test_a_changed_cohort_or_a_missing_table_is_outside(tmp_path):
    reference = figures(tmp_path / "ref", [0.7, 0.75])
    seed_spread([reference, figures(tmp_path / "s1", [0.71, 0.74])], reference / SPREAD)
    fewer = figures(tmp_path / "fewer", [0.7, 0.75], cases=11)  # another cohort: a count the seeds never moved
    verdict = verify(fewer, reference)[0]
    assert verdict.verdict == "outside spread" and any("/ cases: 11 vs 12 (allowed ±0)" in o for o in verdict.outside)
    (fewer / "map_quality.csv").unlink()
    assert verify(fewer, reference)[1].verdict == "missing"


def test_without_a_spread_any_difference_is_outside(tmp_path):
    reference = figures(tmp_path / "ref", [0.7, 0.75])
    other = figures(tmp_path / "other", [0.7, 0.7500001])
    assert "no spread committed" in verify(other, reference)[0].outside[0]


def test_the_summary_gives_the_headline_with_its_seed_spread(tmp_path):
    from adunet_lib.report.summary import spread_lines

    seeds = [figures(tmp_path / f"seed{k}", [0.70 + 0.01 * k, 0.75 - 0.01 * k], delta=True) for k in range(3)]
    lines = spread_lines(seed_spread(seeds, tmp_path / SPREAD))
    assert lines[0].startswith("Over 3 seeds")
    assert "- test, nnU-Net baseline score: 0.710 ± 0.010 (min 0.700, max 0.720)" in lines
    assert "- test, adU-Net(all bpMRI) score: 0.740 ± 0.010 (min 0.730, max 0.750)" in lines
    # every variant's difference to the baseline, not only the best one's (#28)
    assert "- test, adU-Net(all bpMRI) minus the baseline: +0.030 ± 0.020 (min +0.010, max +0.050)" in lines
    assert "case sampling" in lines[-1] and "training noise" in lines[-1]


def test_a_cell_judged_by_its_column_when_its_own_seeds_happen_to_agree(tmp_path):
    """Five seeds may give one cell a spread of zero while its column moves; another CPU's drift in that cell
    is judged by its column's moving cells, and a row the spread never saw by its column too (#28)."""
    seeds = [figures(tmp_path / f"seed{k}", [0.70 + 0.01 * k, 0.75]) for k in range(5)]  # adU-Net's cell never moves
    reference = seeds[0]
    seed_spread(seeds, reference / SPREAD)
    drift = figures(tmp_path / "drift", [0.70, 0.79])  # 0.04: within 10 × the baseline cell's sd (0.0158)
    assert verify(drift, reference)[0].verdict == "within spread"
    broken = figures(tmp_path / "broken", [0.70, 0.95])  # 0.20: beyond it
    assert verify(broken, reference)[0].verdict == "outside spread"
    # a new row (an oracle row the spread's runs did not have): judged by its column, not refused outright
    frame = pd.read_csv(reference / "table2.csv")
    extra = frame.iloc[[1]].assign(Model="adU-Net(all), oracle maps", model="adunet_all_oracle", score=0.9)
    pd.concat([frame, extra]).to_csv(reference / "table2.csv", index=False)
    moved = tmp_path / "moved"
    shutil.copytree(reference, moved)
    table = pd.read_csv(moved / "table2.csv")
    table.loc[table["model"] == "adunet_all_oracle", "score"] = 0.905
    table.to_csv(moved / "table2.csv", index=False)
    assert verify(moved, reference)[0].verdict == "within spread"
    table.loc[table["model"] == "adunet_all_oracle", "score"] = 0.70
    table.to_csv(moved / "table2.csv", index=False)
    assert verify(moved, reference)[0].verdict == "outside spread"


def table1(folder, slices):
    """Table I's slice counts: the training rows count file masks' slices, the test rows predicted masks'."""
    folder.mkdir(parents=True)
    pd.DataFrame({"block": ["Cropped images", "Test results", "Test results"], "method": ["FP GAN"] * 3,
                  "modality": ["ADC", "ADC", "DWI"], "slices": slices,
                  "SSIM": [0.9, 0.8, 0.85]}).to_csv(folder / "table1.csv", index=False)
    return folder


def test_a_count_a_predicted_mask_decides_may_move_a_step_one_no_seed_moves_may_not(tmp_path):
    """Another thread count moves the zone model's masks by a voxel: a crop gains a slice in a row whose
    seeds all agreed. Its column moves in other rows, so one slice is noise; a column that no seed moves
    anywhere (the training crops' file masks, cases, positives) must still match exactly (#28)."""
    seeds = [table1(tmp_path / f"seed{k}", [75, 100 + k % 2, 98]) for k in range(5)]
    reference = seeds[0]
    seed_spread(seeds, reference / SPREAD)
    assert verify(table1(tmp_path / "threads1", [75, 100, 99]), reference)[0].verdict == "within spread"
    verdict = verify(table1(tmp_path / "refit", [75, 100, 105]), reference)[0]  # 7 slices: not a voxel's worth
    assert verdict.verdict == "outside spread" and "DWI" in verdict.outside[0] and "105 vs 98" in verdict.outside[0]
    # how far each was, in the column's sd (what benchmarks/verify_calibration.py prints)
    one_step = needed_multiples(tmp_path / "threads1", reference, reference / SPREAD)["table1.csv"]
    seven_steps = needed_multiples(tmp_path / "refit", reference, reference / SPREAD)["table1.csv"]
    assert 0 < one_step < SD_MULTIPLE < seven_steps
    # a column that no seed moves in any row allows nothing
    still = [table1(tmp_path / f"still{k}", [75, 100, 98]) for k in range(3)]
    seed_spread(still, still[0] / SPREAD)
    verdict = verify(table1(tmp_path / "one_more", [75, 101, 98]), still[0])[0]
    assert verdict.verdict == "outside spread" and "(allowed ±0)" in verdict.outside[0]


def picks(folder, method, ssim):
    """Table I's test block: the model it picks per sequence (its best on validation) and that model's SSIM."""
    folder.mkdir(parents=True)
    pd.DataFrame({"block": ["Test results"] * 2, "method": [method] * 2, "modality": ["ADC", "DWI"],
                  "SSIM": [ssim, ssim + 0.01]}).to_csv(folder / "table1.csv", index=False)
    return folder


def test_the_model_table_i_picks_is_a_category_the_seeds_may_choose_differently(tmp_path, capsys):
    """Seeds pick the FP-GAN or the diffusion model as Table I's best (#28): another pick is within spread when
    the seeds made it too, judged against those seeds' values, and named; a pick no seed made is not."""
    seeds = [picks(tmp_path / f"seed{k}", "FP GAN" if k < 2 else "Diffusion Model", 0.95 + 0.002 * k) for k in range(4)]
    reference = seeds[0]
    seed_spread(seeds, reference / SPREAD)
    verdict = verify(picks(tmp_path / "other_pick", "Diffusion Model", 0.957), reference)[0]
    assert verdict.verdict == "within spread" and len(verdict.rows_chosen) == 4
    assert "seeds choose differently" in str(verdict) and "2 of 4 seeds" in str(verdict)
    far = verify(picks(tmp_path / "far", "Diffusion Model", 0.70), reference)[0]
    assert far.verdict == "outside spread" and "vs the seeds' mean" in far.outside[0]
    never = verify(picks(tmp_path / "never", "Vanilla AE", 0.95), reference)[0]
    assert never.verdict == "outside spread" and any("Vanilla AE" in o and "is new" in o for o in never.outside)
