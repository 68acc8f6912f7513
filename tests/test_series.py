"""The whole notebook series, headless, on params/smoke.yaml: every table and figure is produced."""

import pandas as pd
import pytest

FIGURES = ["fig2_preprocessing.png", "fig3_reconstructions.png", "fig4_anomaly_maps.png", "roc_pr_validation.png",
           "roc_pr_test.png", "forest_validation.png", "forest_test.png", "viewer_preprocessing.png",
           "viewer_anomaly_maps.png", "viewer_evaluation.png"]


@pytest.mark.slow
def test_the_smoke_series_writes_every_table_and_figure(smoke_series):
    run, figures, timings = smoke_series
    assert list(timings) == ["01_preprocessing", "02_autoencoders", "03_diffusion", "04_fixed_point_gan",
                             "05_anomaly_maps", "06_segmentation", "07_evaluation"]
    table2 = pd.read_csv(figures / "table2.csv")
    for set_name, block in table2.groupby("set"):
        assert list(block["Model"]) == ["nnU-Net baseline", "adU-Net(T2W)", "adU-Net(ADC)", "adU-Net(DWI)",
                                        "adU-Net(all bpMRI)"], set_name
    for k in ("auroc", "ap", "score"):
        assert table2[k].between(0, 1).all(), k
        assert (table2[f"{k}_lo"] <= table2[k] + 1e-9).all() and (table2[k] <= table2[f"{k}_hi"] + 1e-9).all(), k
    assert set(table2["set"]) == {"validation", "external test"}
    table1 = pd.read_csv(figures / "table1.csv")
    assert set(table1["block"]) == {"Full images", "Cropped images", "Test results"}
    assert table1["SSIM"].between(-1, 1).all() and (table1["PSNR (dB)"] > 0).all()
    quality = pd.read_csv(figures / "map_quality.csv")
    assert {"auroc", "auprc", "dice", "zone", "sequence", "model"} <= set(quality.columns)
    for name in FIGURES:
        data = (figures / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
    summary = (figures / "summary.md").read_text(encoding="utf-8")
    assert "## Headline" in summary and "synthetic phantoms" in summary
    assert (figures / "table2.md").read_text(encoding="utf-8").count("**") >= 6  # best per column marked
    # the run folder follows the contract
    assert sorted(p.name for p in (run / "predictions").iterdir()) == sorted(
        ["baseline", "adunet_t2w", "adunet_adc", "adunet_dwi", "adunet_all"])
    assert list((run / "maps" / "fpgan").glob("*_adc_anomaly.mha"))


def _external_study(run):
    """One external-test study of the smoke run, as the files a user would hand to ``adunet predict``."""
    from adunet_lib.data.readers import read_picai

    return read_picai(run / "data" / "external").cases[0]


@pytest.mark.slow
def test_predict_reproduces_the_runs_own_detection_map_for_a_study(smoke_series, tmp_path):
    import json
    import subprocess
    import sys

    import numpy as np

    from adunet_lib.data.image import read_image

    run, _, _ = smoke_series
    case = _external_study(run)
    mask = ["--zones", str(case.zones)] if case.zones else ["--gland", str(case.gland)]
    out = tmp_path / "pred"
    cmd = [sys.executable, "-m", "adunet_lib.cli", "predict", str(case.images["t2w"]), str(case.images["adc"]),
           str(case.images["hbv"]), *mask, "--run", str(run), "--out", str(out), "--case-id", case.case_id]
    done = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace")
    assert done.returncode == 0, done.stderr[-2000:]
    assert case.case_id in done.stdout and "csPCa likelihood" in done.stdout
    detection = read_image(out / f"{case.case_id}_detection_map.mha")
    t2w = read_image(case.images["t2w"])
    assert detection.geometry == t2w.geometry
    # the same study went through notebooks 05–06 as part of the run: predict must give the same answer
    own = read_image(next((run / "predictions" / "adunet_all").rglob(f"{case.case_id}_detection_map.mha")))
    np.testing.assert_allclose(detection.array, own.array, atol=1e-4)
    record = json.loads((out / f"{case.case_id}_prediction.json").read_text(encoding="utf-8"))
    assert record["variant"] == "adunet_all" and abs(record["case_score"] - float(own.array.max())) < 1e-4
    assert (out / f"{case.case_id}_overview.png").read_bytes()[:4] == b"\x89PNG"
    assert len(list(out.glob(f"{case.case_id}_*_anomaly.mha"))) == 3

    # refusing to write next to the inputs, and an unfinished run, are one-line errors with exit 2
    same = subprocess.run([*cmd[:-4], "--out", str(case.images["t2w"].parent), "--case-id", case.case_id],
                          capture_output=True, text=True, encoding="utf-8", errors="replace")
    assert same.returncode == 2 and "holds the inputs" in same.stderr and len(same.stderr.strip().splitlines()) == 1
    empty = subprocess.run([*cmd[:cmd.index("--run")], "--run", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")],
                           capture_output=True, text=True, encoding="utf-8", errors="replace")
    assert empty.returncode == 2 and "not a finished run" in empty.stderr
