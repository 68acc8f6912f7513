"""nnU-Net v2 datasets and a real (tiny) nnU-Net train + predict on CPU."""

import json

import pytest

from adunet_lib.data.image import read_image
from adunet_lib.run_folder import nnunet_dataset_name
from adunet_lib.segmentation.export import export_variant, write_splits
from adunet_lib.vocabulary import VARIANTS


def test_channels_are_normalised_as_the_picai_baseline_does_and_maps_not_at_all():
    from nnunetv2.preprocessing.normalization.map_channel_name_to_normalization import get_normalization_scheme

    names = VARIANTS["adunet_all"].channel_names()
    schemes = [get_normalization_scheme(names[str(i)]).__name__ for i in range(6)]
    # T2W and hbv per case (z-score); ADC named "CT": one dataset-wide normalisation (picai_prep's choice)
    assert schemes[:3] == ["ZScoreNormalization", "CTNormalization", "ZScoreNormalization"]
    assert schemes[3:] == ["NoNormalization"] * 3
    zscored = VARIANTS["adunet_adc"].channel_names("zscore")
    assert get_normalization_scheme(zscored["3"]).__name__ == "ZScoreNormalization"
    assert len(VARIANTS["baseline"].channel_names()) == 3


def test_exported_dataset_passes_nnunets_own_integrity_check(tiny_run):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    ctx, tables = tiny_run
    name = nnunet_dataset_name(599, "adunet_all")
    folder = export_variant(ctx, VARIANTS["adunet_all"], name, tables.cases, "dense_ae")
    verify_dataset_integrity(str(folder), num_processes=1)  # raises on any problem
    meta = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    internal = tables.cases[tables.cases["set"] == "internal"]
    assert meta["numTraining"] == len(internal) and len(meta["channel_names"]) == 6
    case = internal["case_id"].iloc[0]
    t2w = read_image(folder / "imagesTr" / f"{case}_0000.mha")
    adc_map = read_image(folder / "imagesTr" / f"{case}_0004.mha")
    assert adc_map.geometry.same_as(t2w.geometry, tol=1e-4)
    splits = json.loads(write_splits(ctx, name).read_text(encoding="utf-8"))
    val0 = set(internal.loc[internal["split"] == "val", "case_id"])
    assert set(splits[0]["val"]) == val0 and not val0 & set(splits[0]["train"])
    # the split nnU-Net gets is the run's own splits.json, in nnU-Net's format
    assert splits == json.loads(ctx.splits.read_text(encoding="utf-8"))
    assert all(set(fold) == {"train", "val"} for fold in splits)


@pytest.mark.slow
def test_tiny_nnunet_train_and_predict_on_cpu(tiny_run):
    from adunet_lib.evaluation.stage import evaluate_all
    from adunet_lib.segmentation.stage import SegmentationSettings, run_all

    ctx, tables = tiny_run
    settings = SegmentationSettings(configuration="2d", target_spacing=(3.0, 2.0, 2.0), epochs=1,
                                    iterations_per_epoch=2, val_iterations_per_epoch=1, folds=(0,), mirroring=False)
    log = []
    timings = run_all(ctx, ["baseline", "adunet_adc"], tables.cases, "dense_ae", settings, log=log.append)
    assert list(timings["variant"]) == ["baseline", "adunet_adc"]
    assert any("Epoch 0" in line for line in log)  # nnU-Net's own training output is shown
    for variant in ("baseline", "adunet_adc"):
        assert len(list(ctx.nnunet_results.glob(f"*{variant}/nnUNetTrainer__nnUNetPlans__2d/fold_0/adunet_trained.json"))) == 1
        for split, ids in (("val", tables.cases.query("split == 'val'")["case_id"]),
                           ("test", tables.cases.query("split == 'test'")["case_id"])):
            for cid in ids:
                det = read_image(ctx.detection_map(variant, split, cid))
                t2w = read_image(ctx.case_file(tables.cases.set_index("case_id").loc[cid, "set"], cid, "t2w"))
                assert det.geometry == t2w.geometry and det.array.min() >= 0
    # a second run finds everything done and runs no nnU-Net step
    again = run_all(ctx, ["baseline", "adunet_adc"], tables.cases, "dense_ae", settings, log=lambda _: None)
    assert (again["steps"] == 0).all()
    results = evaluate_all(ctx, ["baseline", "adunet_adc"], tables.cases, show_progress=False)
    for per_model in results.values():
        for metrics in per_model.values():
            assert 0 <= metrics.auroc <= 1 and 0 <= metrics.AP <= 1
