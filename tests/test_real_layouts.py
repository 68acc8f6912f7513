"""Real dataset layouts, as they are: Prostate158 negatives without a tumour file, picai_labels' several
lesion sources, patients with several studies, published folds."""

import collections
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adunet_lib.data import load_case, open_dataset, read_picai
from adunet_lib.data.readers import read_manifest
from adunet_lib.data.synthetic import SOURCE_CYCLE, synthesize_cohort
from adunet_lib.errors import AdunetError
from adunet_lib.preprocessing.pipeline import assign_folds, folds_from_splits


@pytest.fixture(scope="module")
def picai(tmp_path_factory):
    return synthesize_cohort(tmp_path_factory.mktemp("layouts") / "picai", cases=12, seed=2, show_progress=False)


@pytest.fixture(scope="module")
def p158(tmp_path_factory):
    return synthesize_cohort(tmp_path_factory.mktemp("layouts") / "p158", cases=9, seed=2, site="external",
                             layout="prostate158", show_progress=False)


def test_picai_layout_has_patients_with_two_studies_and_every_label_source(picai):
    ds = open_dataset(picai)
    studies = collections.Counter(c.patient for c in ds.cases)
    assert max(studies.values()) == 2 and len(studies) < len(ds)
    marks = pd.read_csv(picai / "picai_labels" / "clinical_information" / "marksheet.csv", dtype=str)
    positives = {f"{r.patient_id}_{r.study_id}" for r in marks.itertuples() if r.case_csPCa == "YES"}
    sources = collections.Counter(c.lesion_source for c in ds.cases if c.case_id in positives)
    # the synthetic cohort's positives cycle through resampled, Pooch25, resampled, Bosma22a
    cycle = {"resampled": "human_expert/resampled", "Pooch25": "human_expert/Pooch25", "Bosma22a": "AI/Bosma22a"}
    expected = collections.Counter(cycle[SOURCE_CYCLE[k % len(SOURCE_CYCLE)]] for k in range(len(positives)))
    assert sources == expected and len(expected) == 3
    assert all(c.lesion_source == "human_expert/resampled" for c in ds.cases if c.case_id not in positives)
    assert all(c.labeled for c in ds.cases) and not ds.warnings


def test_lesion_sources_are_taken_in_the_order_given(picai):
    ai_first = read_picai(picai, lesion_sources=("AI/Bosma22a",))
    assert {c.lesion_source for c in ai_first.cases} == {"AI/Bosma22a"}
    # the AI's masks hold 1 = csPCa; the human ones ISUP grades; both binarise to the same lesion
    human = open_dataset(picai)
    case = next(c for c in human.cases if c.lesion_source == "human_expert/resampled" and c.cspca)
    np.testing.assert_array_equal(load_case(case).lesion.array, load_case(ai_first[case.case_id]).lesion.array)


def test_a_positive_without_any_mask_is_named_and_never_counted_negative(picai, tmp_path):
    root = Path(shutil.copytree(picai, tmp_path / "picai"))
    case = next(c for c in open_dataset(root).cases if c.lesion_source == "AI/Bosma22a")
    case.lesion.unlink()
    ds = open_dataset(root)
    again = ds[case.case_id]
    assert again.lesion is None and not again.labeled and again.cspca is True
    assert again.lesion_source == "none: marksheet says csPCa"
    assert len(ds.warnings) == 1 and case.case_id in ds.warnings[0] and "kept out of voxel-level" in ds.warnings[0]


def test_prostate158_negatives_are_labelled_cases_with_an_empty_mask(p158):
    ds = open_dataset(p158)
    assert ds.layout == "prostate158" and len(ds) == 9
    negatives = [c for c in ds.cases if c.lesion is None]
    positives = [c for c in ds.cases if c.lesion is not None]
    assert negatives and positives
    for case in negatives:
        loaded = load_case(case)
        assert case.labeled and case.cspca is False and loaded.cspca is False
        assert loaded.lesion is not None and loaded.lesion.geometry == loaded.t2w.geometry
        assert not loaded.lesion.array.any()
    for case in positives:
        assert case.lesion_source == "adc_tumor_reader1" and load_case(case).lesion.array.any()


def test_prostate158_csv_placeholder_for_no_tumour_means_negative(p158, tmp_path):
    root = Path(shutil.copytree(p158, tmp_path / "p158"))
    frame = pd.read_csv(root / "train.csv", dtype=str).fillna("")
    frame["adc_tumor_reader1"] = [cell or "empty.nii.gz" for cell in frame["adc_tumor_reader1"]]
    frame.to_csv(root / "train.csv", index=False)
    ds = open_dataset(root)
    placeholders = [c for c in ds.cases if c.case_id in set(frame["ID"]) and c.lesion is None]
    assert placeholders and all(c.labeled and c.cspca is False for c in placeholders)


def test_manifest_layout_reads_patients(tmp_path):
    manifest = synthesize_cohort(tmp_path / "m", cases=4, seed=1, layout="manifest", show_progress=False)
    ds = open_dataset(manifest)
    assert ds.layout == "manifest" and [c.patient for c in ds.cases] == ["patient000", "patient000",
                                                                         "patient001", "patient001"]


def test_folds_keep_a_patients_studies_together_and_stay_stratified():
    rng = np.random.default_rng(0)
    cases = []
    for p in range(30):
        for s in range(1 + (p % 4 == 0)):
            cases.append((f"{p}_{s}", bool(rng.random() < 0.3), str(p)))
    folds = assign_folds(cases, 5, seed=3)
    by_patient = collections.defaultdict(set)
    for cid, _, pid in cases:
        by_patient[pid].add(folds[cid])
    assert all(len(f) == 1 for f in by_patient.values())
    positive_patients = collections.Counter(folds[f"{p}_0"] for p in {pid for cid, c, pid in cases if c})
    assert max(positive_patients.values()) - min(positive_patients.values()) <= 1
    assert assign_folds(cases, 5, seed=3) == folds


def test_published_splits_are_used_and_checked(tmp_path):
    cases = [("1_a", "1"), ("1_b", "1"), ("2_a", "2"), ("3_a", "3")]
    good = tmp_path / "splits.json"
    good.write_text(json.dumps([{"train": ["3_a"], "val": ["1_a", "1_b", "2_a"]},
                                {"train": ["1_a", "1_b", "2_a"], "val": ["3_a"]}]), encoding="utf-8")
    assert folds_from_splits(good, cases) == {"1_a": 0, "1_b": 0, "2_a": 0, "3_a": 1}
    split_patient = tmp_path / "bad.json"
    split_patient.write_text(json.dumps([{"train": [], "val": ["1_a", "2_a"]}, {"train": [], "val": ["1_b", "3_a"]}]),
                             encoding="utf-8")
    with pytest.raises(AdunetError, match="bad.json: patient 1 has studies in several folds"):
        folds_from_splits(split_patient, cases)
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps([{"train": [], "val": ["1_a", "1_b"]}]), encoding="utf-8")
    with pytest.raises(AdunetError, match="missing.json: 2 internal case.*2_a"):
        folds_from_splits(missing, cases)
    not_splits = tmp_path / "x.json"
    not_splits.write_text('{"fold0": []}', encoding="utf-8")
    with pytest.raises(AdunetError, match="x.json: not nnU-Net's splits_final.json format"):
        folds_from_splits(not_splits, cases)


def test_real_picai_studies_record_their_label_source(realdata):
    ds = read_picai(realdata)
    assert ds["11373_1001396"].lesion_source == "human_expert/resampled"
    assert ds["10795_1000811"].lesion_source == "human_expert/resampled" and ds["10795_1000811"].cspca is False
    # no marksheet row and no mask: unknown, neither negative nor positive
    px = ds["px0218_0218"]
    assert px.lesion is None and px.cspca is None and not px.labeled and px.lesion_source == "none"
    assert {c.patient for c in ds.cases} == {"10795", "11373", "px0218"}


def test_the_papers_anomaly_cohort_is_n_healthy_patients_and_label_models_add_lesion_slices():
    from adunet_lib.anomaly_models.data import cases_seen, cohort_slices
    from adunet_lib.preprocessing.stage import anomaly_training_cases

    rows = []
    for p in range(12):
        for s in range(1 + (p % 3 == 0)):
            rows.append({"set": "internal", "split": "val" if p < 2 else "train", "case_id": f"{p}_{s}",
                         "patient_id": str(p), "cspca": p % 4 == 1, "labeled": p != 11})
    cases = pd.DataFrame(rows)
    chosen = anomaly_training_cases(cases, "paper", 3, seed=0)
    patients = {cid.split("_")[0] for cid in chosen}
    assert len(patients) == 3 and chosen == set(cases.loc[cases["patient_id"].isin(patients), "case_id"])
    train = cases[cases["split"] == "train"]
    healthy = set(train.loc[~train["cspca"] & train["labeled"], "patient_id"])
    assert patients <= healthy  # never a positive, unlabelled or validation patient
    assert anomaly_training_cases(cases, "paper", 3, seed=0) == chosen != anomaly_training_cases(cases, "paper", 3, 1)
    assert anomaly_training_cases(cases, "training_split", 3, 0) == set(train["case_id"])
    with pytest.raises(AdunetError, match="anomaly_cohort must be one of"):
        anomaly_training_cases(cases, "some", 3, 0)
    cases["anomaly_train"] = cases["case_id"].isin(chosen)
    inside = sorted(chosen)[0]
    outside = sorted(set(train.loc[train["patient_id"].isin(healthy), "case_id"]) - chosen)[0]
    slices = pd.DataFrame({"case_id": ["1_0", outside, "5_0", inside], "split": ["val", "train", "train", "train"],
                           "label": ["lesion", "healthy", "lesion", "healthy"]})
    slices["anomaly_train"] = slices["case_id"].isin(chosen)
    assert list(cohort_slices(slices, uses_labels=False)["case_id"]) == [inside]
    with_lesions = set(cohort_slices(slices, uses_labels=True)["case_id"])
    assert with_lesions == {inside, "5_0"}  # + lesion slices of positive training cases, never validation ones
    assert set(cases_seen(cases, uses_labels=False)) == chosen


def test_check_names_a_positive_without_mask_and_accepts_prostate158_negatives(picai, p158, tmp_path, capsys):
    from adunet_lib.cli import main

    assert main(["check", str(p158), "--quiet"]) == 0
    assert "no lesion label" not in capsys.readouterr().out
    root = Path(shutil.copytree(picai, tmp_path / "picai"))
    case = next(c for c in open_dataset(root).cases if c.lesion_source == "AI/Bosma22a")
    case.lesion.unlink()
    assert main(["check", str(root), "--quiet"]) == 0  # a warning, not an error
    out = capsys.readouterr().out
    assert f"warning: case {case.case_id}: the marksheet says csPCa but no lesion mask" in out


def test_leak_free_map_parts_keep_patients_together_and_refuse_impossible_counts():
    from adunet_lib.preprocessing.stage import map_parts

    cases = pd.DataFrame({"set": "internal", "split": ["train"] * 6 + ["val"],
                          "case_id": ["a1", "a2", "b", "c", "d", "e", "v"],
                          "patient_id": ["a", "a", "b", "c", "d", "e", "v"],
                          "cspca": [True, True, False, True, False, False, True]})
    parts = map_parts(cases, 2, seed=0)
    assert set(parts) == {"a1", "a2", "b", "c", "d", "e"} and parts["a1"] == parts["a2"]
    assert set(parts.values()) == {0, 1} and map_parts(cases, 0, 0) == {}
    with pytest.raises(AdunetError, match="leak_free_maps must be 0 .* 5 patients, not 9"):
        map_parts(cases, 9, 0)


def test_a_cspca_negative_study_with_a_pirads_4_lesion_is_not_healthy_for_the_paper_cohort(realdata):
    from adunet_lib.preprocessing.stage import anomaly_training_cases, healthy_patients

    ds = read_picai(realdata)
    negative = ds["10795_1000811"]  # csPCa NO, ISUP 1, two PI-RADS 4 lesions: visible, not healthy
    assert negative.cspca is False and negative.lesion_pirads == (4, 4) and negative.visible_lesion is True
    assert ds["11373_1001396"].lesion_pirads == (4,) and ds["px0218_0218"].lesion_pirads is None  # no marksheet row
    rows = [{"set": "internal", "split": "train", "case_id": c.case_id, "patient_id": c.patient, "cspca": c.cspca,
             "labeled": c.labeled, "lesion_slices": 0, "visible_lesion": c.visible_lesion} for c in ds.cases]
    # a csPCa-negative patient with nothing reported, and one whose marksheet has no PI-RADS column
    rows += [dict(rows[0], case_id="1_1", patient_id="1", visible_lesion=False),
             dict(rows[0], case_id="2_1", patient_id="2", visible_lesion=None),
             dict(rows[0], case_id="3_1", patient_id="3", visible_lesion=False, lesion_slices=2)]  # a drawn lesion
    cases = pd.DataFrame(rows)
    assert healthy_patients(cases) == (["1", "2"], ["2"])
    assert anomaly_training_cases(cases, "paper", 10, seed=0) == {"1_1", "2_1"}
    with pytest.raises(AdunetError, match="no training-split patient without csPCa and without a visible lesion"):
        anomaly_training_cases(cases[cases["patient_id"].isin(["10795", "11373", "3"])], "paper", 10, seed=0)


def test_the_synthetic_marksheet_carries_pirads_so_negative_phantoms_with_visible_mimics_exist(tmp_path):
    root = synthesize_cohort(tmp_path / "picai", cases=12, seed=0, show_progress=False)
    marks = pd.read_csv(root / "picai_labels" / "clinical_information" / "marksheet.csv", dtype=str,
                        keep_default_na=False)
    facts = json.loads((root / "synth.json").read_text(encoding="utf-8"))["cases"]
    ds = open_dataset(root)
    for row in marks.itertuples():
        case = ds[f"{row.patient_id}_{row.study_id}"]
        lesions = facts[case.case_id]["lesions"]
        # every csPCa lesion is reported (PI-RADS 3-5), then the conspicuous mimics as PI-RADS 3
        assert all(3 <= score <= 5 for score in case.lesion_pirads[:len(lesions)])
        assert len(case.lesion_pirads) >= len(lesions) and set(case.lesion_pirads[len(lesions):]) <= {3}
        assert (row.case_csPCa == "YES") == bool(lesions)
    negatives = [c for c in ds.cases if c.cspca is False]
    assert {c.visible_lesion for c in negatives} == {True, False}  # both kinds in the cohort


def test_a_manifest_pirads_column_is_read_as_the_marksheets_lesion_list(tmp_path):
    manifest = synthesize_cohort(tmp_path / "m", cases=2, seed=1, layout="manifest", show_progress=False)
    rows = manifest.read_text(encoding="utf-8").splitlines()
    rows = [rows[0] + ",pirads", rows[1] + ',"4,N/A"', rows[2] + ","]
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    cases = read_manifest(manifest).cases
    assert [c.lesion_pirads for c in cases] == [(4,), ()] and [c.visible_lesion for c in cases] == [True, False]
