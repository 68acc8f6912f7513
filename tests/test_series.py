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
    summary = (figures / "summary.md").read_text()
    assert "## Headline" in summary and "synthetic phantoms" in summary
    assert (figures / "table2.md").read_text().count("**") >= 6  # best per column marked
    # the run folder follows the contract
    assert sorted(p.name for p in (run / "predictions").iterdir()) == sorted(
        ["baseline", "adunet_t2w", "adunet_adc", "adunet_dwi", "adunet_all"])
    assert list((run / "maps" / "fpgan").glob("*_adc_anomaly.mha"))
