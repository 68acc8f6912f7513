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
    """A single-map variant (the smoke series trains the baseline and adU-Net(all)) through real nnU-Net,
    with PI-CAI's baseline's choices ``loss: focal_ce`` and ``checkpoint: best``: the fold trains with the
    focal loss, and predicting needs only ``checkpoint_best.pth``. (``lesion_threshold: dynamic`` is left
    out: on this one-epoch model's near-uniform softmax it takes up to 134 s a case.)"""
    from adunet_lib.evaluation.stage import evaluate_all
    from adunet_lib.segmentation.stage import SegmentationSettings, run_all, train_folds

    ctx, tables = tiny_run
    settings = SegmentationSettings(configuration="2d", target_spacing=(3.0, 2.0, 2.0), epochs=1,
                                    iterations_per_epoch=2, val_iterations_per_epoch=1, folds=(0,), mirroring=False,
                                    loss="focal_ce", checkpoint="best")
    log = []
    assert train_folds(ctx, "adunet_adc", [0], tables.cases, "dense_ae", settings, log=log.append) == 1
    assert any("Epoch 0" in line for line in log)  # nnU-Net's own training output is shown
    fold = next(ctx.nnunet_results.glob("*adunet_adc/nnUNetTrainer__nnUNetPlans__2d/fold_0"))
    assert (fold / "adunet_trained.json").is_file()
    assert "FocalAndCrossEntropy" in (fold / "debug.json").read_text(encoding="utf-8")
    (fold / "checkpoint_final.pth").unlink()  # what predicts now can only be the best epoch's weights
    timings = run_all(ctx, ["adunet_adc"], tables.cases, "dense_ae", settings, log=lambda _: None)
    assert list(timings["variant"]) == ["adunet_adc"]
    for split, ids in (("val", tables.cases.query("split == 'val'")["case_id"]),
                       ("test", tables.cases.query("split == 'test'")["case_id"])):
        for cid in ids:
            det = read_image(ctx.detection_map("adunet_adc", split, cid))
            t2w = read_image(ctx.case_file(tables.cases.set_index("case_id").loc[cid, "set"], cid, "t2w"))
            assert det.geometry == t2w.geometry and det.array.min() >= 0
    # a second run finds everything done and runs no nnU-Net step
    again = run_all(ctx, ["adunet_adc"], tables.cases, "dense_ae", settings, log=lambda _: None)
    assert (again["steps"] == 0).all()
    results = evaluate_all(ctx, ["adunet_adc"], tables.cases, show_progress=False)
    for per_model in results.values():
        for metrics in per_model.values():
            assert 0 <= metrics.auroc <= 1 and 0 <= metrics.AP <= 1


def test_picais_loss_is_half_focal_half_cross_entropy_and_skips_the_ignore_label():
    import math

    import torch

    from adunet_lib.segmentation.losses import FocalAndCrossEntropy

    logits = torch.zeros(1, 2, 2, 2)  # p = 0.5 for both classes everywhere: CE = ln 2, focal = 0.25 ln 2
    target = torch.tensor([[[[0.0, 1.0], [1.0, 2.0]]]])  # nnU-Net's (B, 1, …) float labels; 2 = ignore
    loss = FocalAndCrossEntropy(ignore_label=2)(logits, target)
    assert float(loss) == pytest.approx(0.5 * math.log(2) + 0.5 * 0.25 * math.log(2))
    confident = torch.tensor([[[[4.0]], [[-4.0]]]])  # class 0 at p ≈ 0.9997: the focal term all but vanishes
    ce = float(FocalAndCrossEntropy(weight_focal=0.0)(confident, torch.zeros(1, 1, 1, 1)))
    focal = float(FocalAndCrossEntropy(weight_focal=1.0)(confident, torch.zeros(1, 1, 1, 1)))
    assert focal < 1e-6 * ce


def test_the_worker_gives_nnunets_trainer_picais_loss_with_its_deep_supervision_weights():
    from types import SimpleNamespace

    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

    from adunet_lib.segmentation._worker import _focal_and_ce_loss
    from adunet_lib.segmentation.losses import FocalAndCrossEntropy

    trainer = SimpleNamespace(label_manager=SimpleNamespace(has_regions=False, ignore_label=None), is_ddp=False,
                              enable_deep_supervision=True, _get_deep_supervision_scales=lambda: [1, 0.5, 0.25])
    loss = _focal_and_ce_loss(trainer)
    assert isinstance(loss, DeepSupervisionWrapper) and isinstance(loss.loss, FocalAndCrossEntropy)
    assert list(loss.weight_factors) == pytest.approx([2 / 3, 1 / 3, 0.0])  # nnU-Net's: halving, lowest unused


def test_picais_dynamic_lesion_candidates_keep_at_most_five_where_dynamic_fast_keeps_every_blob():
    import numpy as np

    from adunet_lib.segmentation.detection import detection_map

    probability = np.zeros((8, 40, 40), np.float32)
    for k in range(7):  # seven separate blobs, peaks 0.90 … 0.66 (all above dynamic-fast's cut at 0.9 / 2.5)
        probability[2:6, 4 + 5 * k:7 + 5 * k, 10:14] = 0.9 - 0.04 * k
    fast, dynamic = detection_map(probability), detection_map(probability, "dynamic")
    assert len(np.unique(fast[fast > 0])) == 7 and len(np.unique(dynamic[dynamic > 0])) == 5
    assert fast.max() == dynamic.max() == np.float32(0.9)
    with pytest.raises(ValueError, match="lesion threshold must be one of dynamic-fast, dynamic, not 'static'"):
        detection_map(probability, "static")


def test_paper_settings_for_the_segmentation_are_checked_by_name():
    from adunet_lib.errors import ParamsError
    from adunet_lib.segmentation.stage import SegmentationSettings

    settings = SegmentationSettings.from_params(loss="focal_ce", checkpoint="best", lesion_threshold="dynamic")
    assert (settings.loss, settings.checkpoint, settings.lesion_threshold) == ("focal_ce", "best", "dynamic")
    with pytest.raises(ParamsError, match="segmentation checkpoint must be one of final, best, not 'model_best'"):
        SegmentationSettings(checkpoint="model_best")
