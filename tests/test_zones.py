"""The zone stage: PZ/TZ masks from an nnU-Net zone model when a data set's masks are to be predicted."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from adunet_lib.data.image import Geometry, Image, read_image, write_image
from adunet_lib.errors import CaseError, ParamsError


def _mask(array: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> Image:
    return Image(array.astype(np.uint8), Geometry(array.shape[::-1], spacing, (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1)))


def test_post_processing_keeps_the_largest_gland_component_with_its_zones():
    from adunet_lib.zones.masks import largest_gland_component

    a = np.zeros((4, 20, 20), np.uint8)
    a[1:3, 2:10, 2:10] = 2
    a[1:3, 2:4, 2:10] = 1  # PZ touching the TZ: one gland
    a[0, 15:17, 15:17] = 1  # a stray blob
    out = largest_gland_component(_mask(a)).array
    assert out[0, 15:17, 15:17].sum() == 0
    assert (out[1:3, 2:4, 2:10] == 1).all() and (out[1:3, 4:10, 2:10] == 2).all()


@pytest.mark.parametrize("voxels, reason", [(0, "empty"), (2, "outside the plausible"), (50_000, "outside the plausible")])
def test_an_empty_or_implausible_prediction_stops_its_case_with_one_line(tmp_path, voxels, reason):
    from adunet_lib.zones.model import ZoneSettings, finish_mask

    t2w = _mask(np.zeros((10, 100, 100)), spacing=(1.0, 1.0, 3.0))  # 3 µl voxels
    labels = np.zeros(t2w.shape, np.uint8)
    labels.reshape(-1)[:voxels] = 2
    raw = write_image(Image(labels, t2w.geometry), tmp_path / "case7.mha")
    with pytest.raises(CaseError) as err:
        finish_mask(raw, t2w, "case7", "data/case7_t2w.mha", ZoneSettings(min_gland_ml=5, max_gland_ml=100))
    message = str(err.value)
    assert message.startswith("case case7: data/case7_t2w.mha: the predicted") and reason in message
    assert "\n" not in message


def test_mask_sources_and_zone_settings_are_checked():
    from adunet_lib.zones.model import ZoneSettings
    from adunet_lib.zones.stage import check_mask_sources

    assert check_mask_sources({"external": "predicted"}, ["internal", "external"]) == {"internal": "files",
                                                                                        "external": "predicted"}
    with pytest.raises(ParamsError, match="files_then_predicted"):
        check_mask_sources({"internal": "predict"}, ["internal"])
    with pytest.raises(ParamsError, match="unknown set"):
        check_mask_sources({"test": "files"}, ["internal"])
    with pytest.raises(ParamsError, match="unknown key"):
        ZoneSettings.from_params({"epoch": 3})
    with pytest.raises(ParamsError, match="folds"):
        ZoneSettings.from_params({"n_folds": 2, "folds": [2]})
    with pytest.raises(ParamsError, match="t2w"):
        ZoneSettings.from_params({"channels": ["adc"]})
    assert ZoneSettings.from_params({"epochs": 0, "target_spacing": []}).budget()["epochs"] == 1000  # 0 = nnU-Net's


def test_files_then_predicted_predicts_only_studies_without_a_mask(tmp_path):
    from adunet_lib.data.readers import open_dataset
    from adunet_lib.data.synthetic import synthesize_cohort
    from adunet_lib.zones.stage import cases_to_predict

    data = open_dataset(synthesize_cohort(tmp_path / "d", cases=6, without_masks=3, show_progress=False))
    unmasked = {c.case_id for c in data if not c.has_gland_mask}
    assert len(unmasked) == 2  # every third study, like the real px0218, has no anatomical mask
    chosen = cases_to_predict({"internal": data}, {"internal": "files_then_predicted"})
    assert {c.case_id for c in chosen["internal"]} == unmasked
    assert len(cases_to_predict({"internal": data}, {"internal": "predicted"})["internal"]) == 6
    assert cases_to_predict({"internal": data}, {"internal": "files"})["internal"] == []


@pytest.mark.slow
def test_the_series_crops_with_predicted_zones_where_asked(smoke_series):
    """Smoke params: internal ``files_then_predicted`` (two studies have no masks), external
    ``predicted`` (the paper). Every predicted mask is on its case's T2W grid and is what the crop used."""
    run, figures, _ = smoke_series
    cases = pd.read_csv(run / "preprocessed" / "cases.csv", dtype={"case_id": str})
    record = json.loads((run / "zones" / "zones.json").read_text(encoding="utf-8"))
    internal, external = cases[cases["set"] == "internal"], cases[cases["set"] == "external"]
    assert (external["mask_source"] == "predicted").all() and len(external) == 4
    predicted_internal = set(internal.loc[internal["mask_source"] == "predicted", "case_id"])
    assert len(predicted_internal) == 2 and (internal["mask_source"] != "predicted").sum() == 10
    assert set(record["cases"]) == predicted_internal | set(external["case_id"])
    assert record["folds"] == [0, 1] and record["training_cases"] >= 10
    for _, row in cases.iterrows():
        used = read_image(run / "cases" / row["set"] / row["case_id"] / "zones.mha")
        t2w = read_image(run / "cases" / row["set"] / row["case_id"] / "t2w.mha")
        assert used.geometry == t2w.geometry
        if row["mask_source"] == "predicted":
            mask = read_image(run / "zones" / f"{row['case_id']}.nii.gz")
            assert mask.geometry.same_as(t2w.geometry)
            np.testing.assert_array_equal(mask.array, used.array)  # the crop used the predicted mask
            assert set(np.unique(mask.array)) <= {0, 1, 2} and (mask.array > 0).any()
            assert record["cases"][row["case_id"]]["made_by"].startswith("folds [0, 1]")
    # a case with its own mask keeps it: no prediction was made for it
    assert not any((run / "zones" / f"{cid}.nii.gz").exists() for cid in internal.loc[internal["mask_source"] == "files", "case_id"])

    quality = pd.read_csv(figures / "zones.csv", dtype={"case_id": str})
    assert set(quality.loc[quality["role"] == "external", "case_id"]) == set(external["case_id"])
    held = quality[quality["role"].str.startswith("held-out fold")]
    assert len(held) == record["training_cases"]  # both folds trained: every training case held out once
    for column in ("dice_pz", "dice_tz", "dice_gland"):
        assert quality[column].between(0, 1).all()
    assert (quality["box_shift_mm"] >= 0).all()
    assert quality.loc[quality["role"] == "external", "dice_gland"].mean() > 0.5  # the phantom zones are learnt
    summary = (figures / "summary.md").read_text(encoding="utf-8")
    assert "zone model (`Dataset400_adunet_zones`" in summary and "internal crop masks: files 10, predicted 2" in summary


@pytest.mark.slow
def test_zones_without_masks_on_the_real_px0218_study(smoke_series, realdata, tmp_path):
    """The real ProstateX study px0218 has no mask at all: ``adunet zones`` predicts its zones with the run's
    zone model, on px0218's own T2W grid, and leaves nothing else. (``adunet predict`` on px0218 is
    test_predict_on_px0218_through_the_pretrained_gland's; through the zone model, on a phantom study,
    tests/test_series.py's.)"""
    run, _, _ = smoke_series
    t2w_file = realdata / "images" / "px0218" / "px0218_0218_t2w.mha"
    alone = tmp_path / "zones_only"
    only = subprocess.run([sys.executable, "-m", "adunet_lib.cli", "zones", str(t2w_file), "--run", str(run), "--out",
                           str(alone)], capture_output=True, text=True, encoding="utf-8", errors="replace")
    assert only.returncode == 0, only.stderr[-2000:]
    t2w = read_image(t2w_file)
    zones = read_image(alone / "px0218_0218_zones.nii.gz")
    assert zones.geometry.same_as(t2w.geometry) and set(np.unique(zones.array)) <= {0, 1, 2}
    gland_ml = (zones.array > 0).sum() * np.prod(t2w.spacing) / 1000
    assert 5 <= gland_ml <= 500
    # no scratch left behind; the hidden record of which study each output name belongs to
    assert sorted(p.name for p in alone.iterdir()) == [".adunet_outputs.json", "px0218_0218_zones.nii.gz"]


@pytest.mark.slow
def test_an_implausible_predicted_gland_is_one_line_and_leaves_nothing(smoke_series, realdata, tmp_path):
    """The same zone model with a plausible range no gland meets: one line naming the case and file, exit 2."""
    run, _, _ = smoke_series
    strict = tmp_path / "strict_run"
    (strict / "zones").mkdir(parents=True)
    (strict / "nnunet").symlink_to(run / "nnunet")
    record = json.loads((run / "zones" / "zones.json").read_text(encoding="utf-8"))
    record["settings"]["min_gland_ml"], record["settings"]["max_gland_ml"] = 900, 1000
    (strict / "zones" / "zones.json").write_text(json.dumps(record), encoding="utf-8")
    t2w = realdata / "images" / "px0218" / "px0218_0218_t2w.mha"
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "adunet_lib.cli", "zones", str(t2w), "--run", str(strict), "--out", str(out)],
                          capture_output=True, text=True, encoding="utf-8", errors="replace")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(f"adunet zones: error: case px0218_0218: {t2w}: the predicted gland is ")
    assert "outside the plausible 900-1000 ml" in lines[-1] and "Traceback" not in done.stderr
    assert not out.exists()  # no mask, no scratch, not even the folder it made

    # a run without a zone model says what to do instead
    bare = tmp_path / "bare_run"
    bare.mkdir()
    none = subprocess.run([sys.executable, "-m", "adunet_lib.cli", "zones", str(t2w), "--run", str(bare), "--out", str(out),
                           "--gland-model", "run"], capture_output=True, text=True, encoding="utf-8", errors="replace")
    assert none.returncode == 2 and "has no zone model" in none.stderr and "--gland" in none.stderr
    assert '".[gland]"' in none.stderr  # and the pretrained gland model, the other way out


def test_a_zone_training_set_without_zonal_masks_is_refused(tmp_path):
    from adunet_lib.data.synthetic import synthesize_cohort
    from adunet_lib.errors import AdunetError
    from adunet_lib.preprocessing.stage import open_extra

    path = synthesize_cohort(tmp_path / "d", cases=2, without_masks=1, show_progress=False)
    with pytest.raises(AdunetError, match="no case with a zonal"):
        open_extra(str(path))



@pytest.mark.slow
@pytest.mark.realdata
def test_predict_on_px0218_through_the_pretrained_gland(smoke_series, realdata, tmp_path, monkeypatch, capsys):
    """No mask, ``--gland-model pretrained``: a detection map on px0218's T2W grid, the gland beside it, and
    the JSON says which gland was used. The suite runs the real model once (tests/test_pretrained_gland.py,
    on a labelled study); here a stand-in gland (a 40 × 40 × 30 mm box at the image centre) takes its
    place, and benchmarks/bench_pretrained_gland.py --predict RUN runs this with the real model."""
    from adunet_lib.cli import main
    from adunet_lib.zones import pretrained

    def stand_in(t2w, case_id, where, min_ml, max_ml, device, log):
        mask = np.zeros(t2w.shape, np.uint8)
        half = [int(round(mm / 2 / s)) for mm, s in zip((30, 40, 40), t2w.spacing[::-1])]
        centre = [n // 2 for n in t2w.shape]
        mask[tuple(slice(c - h, c + h) for c, h in zip(centre, half))] = 1
        return pretrained.GlandResult(Image(mask, t2w.geometry), 48.0, 1.0, (), "pretrained gland (lavlab-taps stand-in)")

    monkeypatch.setattr(pretrained, "pretrained_gland", stand_in)
    run, _, _ = smoke_series
    folder = realdata / "images" / "px0218"
    images = [str(folder / f"px0218_0218_{s}.mha") for s in ("t2w", "adc", "hbv")]
    out = tmp_path / "px0218"
    code = main(["predict", *images, "--run", str(run), "--out", str(out), "--gland-model", "pretrained"])
    assert code == 0, capsys.readouterr().err[-2000:]
    t2w = read_image(images[0])
    detection = read_image(out / "px0218_0218_detection_map.mha")
    gland = read_image(out / "px0218_0218_gland.nii.gz")
    assert detection.geometry == t2w.geometry and gland.geometry.same_as(t2w.geometry)  # NIfTI: float noise
    record = json.loads((out / "px0218_0218_prediction.json").read_text(encoding="utf-8"))
    assert record["gland_model"] == "pretrained" and "lavlab-taps" in record["zones"]
    assert record["zone_mask"].endswith("_gland.nii.gz") and not (out / "px0218_0218_zones.nii.gz").exists()


def test_the_zone_models_held_out_cases_follow_data_seed_not_the_training_seed(tmp_path, monkeypatch):
    """A seed spread holds the cohort and the folds by ``data_seed`` (#28): another training ``seed`` must not
    move which studies the zone model holds out, or the spread's zones.csv compares other cases per seed."""
    from adunet_lib.data.readers import open_dataset
    from adunet_lib.data.synthetic import synthesize_cohort
    from adunet_lib.run_folder import RunContext
    from adunet_lib.zones import stage as zone_stage
    from adunet_lib.zones.model import ZoneSettings

    data = open_dataset(synthesize_cohort(tmp_path / "d", cases=9, without_masks=3, show_progress=False))

    class Exported(Exception):
        pass

    def held_out(seed: int, fold_seed: int | None) -> set[str]:
        seen = {}

        def export(ctx, name, train, folds, settings, show_progress):
            seen.update(folds)
            raise Exported

        monkeypatch.setattr(zone_stage, "_export_training", export)
        ctx = RunContext.create(tmp_path / f"run_{seed}_{fold_seed}", tmp_path / "figures", seed=seed)
        settings = ZoneSettings.from_params({"n_folds": 3, "folds": [0]}, seed, fold_seed)
        with pytest.raises(Exported):
            zone_stage.run_zone_stage(ctx, {"internal": data}, {"internal": "files_then_predicted"}, settings,
                                      show_progress=False)
        return {case for case, fold in seen.items() if fold == 0}

    reference = held_out(0, 0)
    assert reference and held_out(1, 0) == reference == held_out(2, 0)
    assert any(held_out(k, k) != reference for k in (1, 2, 3))  # drawn by the fold seed, not fixed
