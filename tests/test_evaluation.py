"""The evaluation path on hand-made detection maps with a known answer (PI-CAI metrics + statistics)."""

import numpy as np
import pytest

from adunet_lib.data.image import Geometry, Image, write_image
from adunet_lib.evaluation.picai import evaluate_maps
from adunet_lib.evaluation.statistics import paired_bootstrap

SHAPE = (4, 32, 32)


def _blob(z, y, x, value=1.0):
    a = np.zeros(SHAPE, np.float32)
    a[z, y:y + 5, x:x + 5] = value
    return a


@pytest.fixture
def golden(tmp_path):
    """Four patients. A: lesion found (0.9). B: healthy, false alarm (0.3). C: lesion missed, false
    alarm elsewhere (0.6). D: healthy, nothing. Patient AUROC = 1 (both positives outrank both
    negatives); lesion AP = 0.5 (the 0.9 hit gives recall 0.5 at precision 1; C's lesion is never found)."""
    geo = Geometry((32, 32, 4), (0.5, 0.5, 3.0), (0, 0, 0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    labels = {"A": _blob(1, 5, 5), "B": np.zeros(SHAPE, np.float32), "C": _blob(2, 20, 20), "D": np.zeros(SHAPE, np.float32)}
    dets = {"A": _blob(1, 5, 5, 0.9), "B": _blob(1, 10, 10, 0.3), "C": _blob(2, 2, 2, 0.6), "D": np.zeros(SHAPE, np.float32)}
    paths = {}
    for cid in labels:
        paths[cid] = (write_image(Image(dets[cid], geo), tmp_path / f"{cid}_detection_map.mha"),
                      write_image(Image(labels[cid].astype(np.uint8), geo), tmp_path / f"{cid}.nii.gz"))
    return paths


def test_golden_cases_give_the_known_picai_scores(golden):
    metrics = evaluate_maps({c: p[0] for c, p in golden.items()}, {c: p[1] for c, p in golden.items()})
    assert metrics.auroc == pytest.approx(1.0)
    assert metrics.AP == pytest.approx(0.5)
    assert metrics.score == pytest.approx(0.75)
    assert metrics.num_cases == 4


def test_a_worse_detector_scores_lower_and_the_paired_test_sees_it(golden):
    labels = {c: p[1] for c, p in golden.items()}
    good = evaluate_maps({c: p[0] for c, p in golden.items()}, labels)
    # swap the scores of a positive and a negative patient: AUROC drops
    swapped = {c: p[0] for c, p in golden.items()}
    swapped["B"], swapped["C"] = golden["B"][0], golden["C"][0]
    worse = evaluate_maps({"A": golden["A"][0], "B": _blob(1, 10, 10, 0.95), "C": golden["C"][0],
                           "D": golden["D"][0]}, labels)
    assert worse.auroc < good.auroc
    table, diff = paired_bootstrap({"baseline": good, "worse": worse, "same": good}, n_bootstrap=300, seed=1)
    for _, row in table.iterrows():
        for k in ("auroc", "ap", "score"):
            assert row[f"{k}_lo"] <= row[k] + 1e-9 <= row[f"{k}_hi"] + 2e-9
    same = diff[(diff["model"] == "same") & (diff["metric"] == "score")].iloc[0]
    assert same["delta"] == 0 and same["lo"] == 0 and same["hi"] == 0 and same["p_value"] == 1.0
    worse_auroc = diff[(diff["model"] == "worse") & (diff["metric"] == "auroc")].iloc[0]
    assert worse_auroc["delta"] < 0 and worse_auroc["hi"] <= 0


def test_missing_or_negative_detection_maps_are_refused(golden):
    labels = {c: p[1] for c, p in golden.items()}
    with pytest.raises(Exception, match="no detection map for case.*D"):
        evaluate_maps({c: p[0] for c, p in golden.items() if c != "D"}, labels)
    with pytest.raises(Exception, match="finite and ≥ 0"):
        evaluate_maps({c: -np.ones(SHAPE, np.float32) for c in labels}, labels)


def test_the_evaluated_sets_validation_pooled_out_of_fold_and_external():
    import pandas as pd

    from adunet_lib.evaluation.stage import evaluated_cases

    cases = pd.DataFrame({"set": ["internal"] * 5 + ["external"], "split": ["val", "val", "train", "train", "train", "test"],
                          "fold": [0, 0, 1, 1, 2, -1], "case_id": list("abcdex"),
                          "labeled": [True, True, True, False, True, True]})
    assert list(evaluated_cases(cases, "val")["case_id"]) == ["a", "b"]
    assert list(evaluated_cases(cases, "test")["case_id"]) == ["x"]
    # pooled out-of-fold: every trained fold's labelled held-out cases; nothing with one fold trained
    assert list(evaluated_cases(cases, "oof", folds=[0, 1])["case_id"]) == ["a", "b", "c"]
    assert evaluated_cases(cases, "oof", folds=[0]).empty
