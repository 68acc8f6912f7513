"""The whole notebook series, headless, on params/smoke.yaml: every table and figure is produced."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO

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
        assert list(block["Model"]) == ["nnU-Net baseline", "adU-Net(all bpMRI)", "adU-Net(all), oracle maps"], set_name
    for k in ("auroc", "ap", "score"):
        assert table2[k].between(0, 1).all(), k
        assert (table2[f"{k}_lo"] <= table2[k] + 1e-9).all() and (table2[k] <= table2[f"{k}_hi"] + 1e-9).all(), k
    assert set(table2["set"]) == {"validation", "external test"}
    table1 = pd.read_csv(figures / "table1.csv")
    assert set(table1["block"]) == {"Full images", "Cropped images", "Test results"}
    assert table1["SSIM"].between(-1, 1).all() and (table1["PSNR (dB)"] > 0).all()
    # phantoms: how far each model's G(x) is from the lesion-free twin, and the oracle (G(x) = the twin)
    assert {"lesion removal", "healthy |G(x) − x|"} <= set(table1.columns)
    quality = pd.read_csv(figures / "map_quality.csv")
    assert {"auroc", "auprc", "dice", "zone", "sequence", "model", "lesion_removal", "healthy_change"} <= set(
        quality.columns)
    oracle = quality[(quality["model"] == "oracle") & (quality["zone"] == "gland")]
    assert len(oracle) == 9 and np.allclose(oracle["lesion_removal"], 1.0) and (oracle["auroc"] > 0.9).all()
    # the maps nnU-Net learns from (training split) are scored beside those it is tested on
    assert set(quality["set"]) == {"training", "validation", "test"}
    for name in FIGURES:
        data = (figures / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
    summary = (figures / "summary.md").read_text(encoding="utf-8")
    assert "## Headline" in summary and "synthetic phantoms" in summary
    # what made the numbers, and nothing of the machine's folders (#16)
    assert "- packages: adunet " in summary and "torch.use_deterministic_algorithms" in summary
    for folder in {str(run.parent.parent), str(Path.home()), str(REPO)}:
        assert folder not in summary, folder
    assert (figures / "table2.md").read_text(encoding="utf-8").count("**") >= 6  # best per column marked
    # the run folder follows the contract
    assert sorted(p.name for p in (run / "predictions").iterdir()) == sorted(
        ["baseline", "adunet_all", "adunet_all_oracle"])  # smoke.yaml's variants + the oracle row
    assert "Headroom on the external test set: with the oracle's maps" in summary
    assert "lesion-voxel AUROC of its maps in the gland (map_quality.csv): training T2W" in summary
    assert list((run / "maps" / "fpgan").glob("*_adc_anomaly.mha"))


def _external_study(run):
    """One external-test study of the smoke run (Prostate158 layout), as a user would hand it to ``adunet predict``."""
    from adunet_lib.data.readers import open_dataset

    return open_dataset(run / "data" / "external").cases[0]


@pytest.mark.slow
def test_predict_reproduces_the_runs_own_detection_map_for_a_study(smoke_series, tmp_path):
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np

    from adunet_lib.data.image import read_image

    run, _, _ = smoke_series
    case = _external_study(run)
    out = tmp_path / "pred"
    # no mask given: the run's zone model predicts the zones, as it did for this (external, "predicted") case
    cmd = [sys.executable, "-m", "adunet_lib.cli", "predict", str(case.images["t2w"]), str(case.images["adc"]),
           str(case.images["hbv"]), "--run", str(run), "--out", str(out), "--case-id", case.case_id]
    # a colleague's run folder, shared read-only: predict only reads it (nothing in it changes)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    modes = {p: p.stat().st_mode for p in [run, *run.rglob("*")]}
    try:
        for p in modes:
            p.chmod(modes[p] & ~0o222)
        done = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace")
    finally:
        for p, mode in modes.items():
            p.chmod(mode)
    assert done.returncode == 0, done.stderr[-2000:]
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before
    assert case.case_id in done.stdout and "csPCa likelihood" in done.stdout
    detection = read_image(out / f"{case.case_id}_detection_map.mha")
    t2w = read_image(case.images["t2w"])
    assert detection.geometry == t2w.geometry
    # the same study went through notebooks 05–06 as part of the run: predict must give the same answer
    own = read_image(next((run / "predictions" / "adunet_all").rglob(f"{case.case_id}_detection_map.mha")))
    np.testing.assert_allclose(detection.array, own.array, atol=1e-4)
    record = json.loads((out / f"{case.case_id}_prediction.json").read_text(encoding="utf-8"))
    assert record["variant"] == "adunet_all" and abs(record["case_score"] - float(own.array.max())) < 1e-4
    assert record["zones"].startswith("predicted by the run's zone model")
    np.testing.assert_array_equal(read_image(out / f"{case.case_id}_zones.nii.gz").array,
                                  read_image(run / "zones" / f"{case.case_id}.nii.gz").array)
    assert (out / f"{case.case_id}_overview.png").read_bytes()[:4] == b"\x89PNG"
    assert len(list(out.glob(f"{case.case_id}_*_anomaly.mha"))) == 3

    # refusing to write next to the inputs, and an unfinished run, are one-line errors with exit 2
    same = subprocess.run([*cmd[:-4], "--out", str(case.images["t2w"].parent), "--case-id", case.case_id],
                          capture_output=True, text=True, encoding="utf-8", errors="replace")
    assert same.returncode == 2 and "lies inside the input data" in same.stderr and len(same.stderr.strip().splitlines()) == 1
    # another study whose files have the same names may not overwrite this one's outputs
    other = tmp_path / "other_study"
    other.mkdir()
    for s in ("t2w", "adc", "hbv"):
        shutil.copy2(case.images[s], other / Path(case.images[s]).name)
    clash = subprocess.run([*cmd[:1 + cmd.index("predict")], *(str(other / Path(case.images[s]).name) for s in ("t2w", "adc", "hbv")),
                            *cmd[cmd.index("--run"):]], capture_output=True, text=True, encoding="utf-8", errors="replace")
    assert clash.returncode == 2 and len(clash.stderr.strip().splitlines()) == 1, clash.stderr
    assert f"already holds outputs of study {case.case_id} made from {Path(case.images['t2w']).resolve()}" in clash.stderr
    empty = subprocess.run([*cmd[:cmd.index("--run")], "--run", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")],
                           capture_output=True, text=True, encoding="utf-8", errors="replace")
    assert empty.returncode == 2 and "not a finished run" in empty.stderr


@pytest.mark.slow
def test_the_series_counts_every_case_of_real_layouts(smoke_series):
    """Internal set in the PI-CAI layout (patients with two studies, several label sources), external set in
    the Prostate158 layout (negatives have no tumour file): every case counted, patients never split."""
    import json

    from adunet_lib.data.readers import open_dataset

    run, figures, _ = smoke_series
    cases = pd.read_csv(run / "preprocessed" / "cases.csv", dtype={"case_id": str, "patient_id": str})
    external = open_dataset(run / "data" / "external")
    assert external.layout == "prostate158"
    ext = cases[cases["set"] == "external"]
    assert sorted(ext["case_id"]) == sorted(external.case_ids) and ext["labeled"].all()
    negatives = [c.case_id for c in external.cases if c.lesion is None]
    assert negatives and set(negatives) <= set(ext["case_id"])
    table2 = pd.read_csv(figures / "table2.csv")
    ext_rows = table2[table2["set"] == "external test"]
    assert (ext_rows["cases"] == len(external)).all()
    assert (ext_rows["positives"] == len(external) - len(negatives)).all()
    # internal: PI-CAI layout, folds by patient, label sources as the reader found them
    internal = open_dataset(run / "data" / "internal")
    inner = cases[cases["set"] == "internal"]
    assert inner.groupby("patient_id")["fold"].nunique().max() == 1
    assert inner["patient_id"].nunique() < len(inner)  # a patient with two studies is in the cohort
    assert inner.set_index("case_id")["lesion_source"].to_dict() == {c.case_id: c.lesion_source for c in internal}
    assert inner["lesion_source"].nunique() == 3
    summary = (figures / "summary.md").read_text(encoding="utf-8")
    for source, n in inner["lesion_source"].value_counts().items():
        assert f"{source} {n}" in summary
    # the split nnU-Net trained with is the run's splits.json
    splits = json.loads((run / "splits.json").read_text(encoding="utf-8"))
    used = sorted(p for p in (run / "nnunet" / "preprocessed").glob("Dataset*/splits_final.json")
                  if not p.parent.name.endswith("_zones"))  # the zone model has folds of its own
    assert len(used) == 3 and all(json.loads(p.read_text(encoding="utf-8")) == splits for p in used)
    fold0 = set(inner.loc[inner["fold"] == 0, "case_id"])
    assert set(splits[0]["val"]) == fold0 & set(inner.loc[inner["labeled"], "case_id"])
    assert {p.name.split("_detection")[0] for p in (run / "predictions" / "baseline" / "val").iterdir()} == set(splits[0]["val"])


@pytest.mark.slow
def test_held_out_maps_come_from_the_models_that_made_the_training_maps(smoke_series):
    """With leak-free maps nnU-Net learns from the part models' maps; a validation or external study's map is
    the mean of those same models' maps (not the full model's, a channel of another scale), and the record
    says so."""
    import json

    import numpy as np

    from adunet_lib.anomaly_maps.maps import model_maps
    from adunet_lib.anomaly_models.registry import trained_models
    from adunet_lib.data.image import read_image
    from adunet_lib.preprocessing.pipeline import PreprocessedCase
    from adunet_lib.run_folder import RunContext

    run, figures, _ = smoke_series
    ctx = RunContext(run, figures)
    cases, _ = ctx.tables()
    model = trained_models(ctx)[0]
    record = json.loads(ctx.map_record(model).read_text(encoding="utf-8"))
    assert record["held_out_maps"] == "parts"
    kernel = record["kernel_size"]
    for split in ("val", "test", "train"):
        row = cases[cases["split"] == split].iloc[0]
        pre = PreprocessedCase.from_run(ctx, row["set"], row["case_id"])
        written = {s: read_image(ctx.map_file(model, row["case_id"], s)).array for s in ("t2w", "adc", "hbv")}
        makers = [int(row["map_part"])] if split == "train" else [0, 1]
        expected, _ = model_maps(ctx, model, pre, kernel, makers)
        full, _ = model_maps(ctx, model, pre, kernel, [None])
        for seq, array in written.items():
            assert np.allclose(array, expected[seq].array, atol=1e-6), (split, seq)
        assert any(not np.allclose(array, full[seq].array, atol=1e-4) for seq, array in written.items()), split
    assert "mean of those part models' maps" in (figures / "summary.md").read_text(encoding="utf-8")


@pytest.mark.slow
def test_leak_free_maps_come_from_models_blind_to_the_case(smoke_series):
    """params/smoke.yaml asks for leak-free maps in 2 parts: each training case's maps come from a model
    trained without its part, and every map set records it."""
    import json

    from adunet_lib.anomaly_models.registry import trained_models
    from adunet_lib.run_folder import RunContext

    run, figures, _ = smoke_series
    ctx = RunContext(run, figures)
    cases, slices = ctx.tables()
    train = cases[(cases["set"] == "internal") & (cases["split"] == "train")]
    assert sorted(train["map_part"].unique()) == [0, 1] and (cases.loc[cases["split"] != "train", "map_part"] == -1).all()
    assert train.groupby("patient_id")["map_part"].nunique().max() == 1
    for model in trained_models(ctx):
        record = json.loads(ctx.map_record(model).read_text(encoding="utf-8"))
        assert record["leak_free"] is True and record["seen_by_model"] == [], model
        for part in (0, 1):
            assert ctx.model_checkpoints(model, "cropped", part), (model, part)
            # the part model never trained on its part's cases
            losses = ctx.model_dir(model, "all", "cropped", part) / "model.pt"
            from adunet_lib.anomaly_models.checkpoint import read_checkpoint

            n_slices = read_checkpoint(losses)["training"]["train_slices"]
            assert n_slices < read_checkpoint(ctx.model_checkpoint(model, "all"))["training"]["train_slices"]
    assert "leak-free" in (figures / "summary.md").read_text(encoding="utf-8")
