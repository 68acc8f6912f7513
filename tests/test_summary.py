"""summary.md says true things: which evaluated rows use maps from a model that saw their cases, and
how many patients qualify for the paper's healthy cohort."""

from __future__ import annotations

from adunet_lib.cache import recorded
from adunet_lib.report.summary import _map_lines


def test_the_rows_whose_maps_come_from_a_model_that_saw_the_case_are_named(tiny_run):
    ctx, tables = tiny_run  # one dense AE trained on the training split, leak_free_maps off
    cases = tables.cases
    pre = recorded(ctx.preprocessing_record)
    n_train = int((cases["split"] == "train").sum())
    every = {"validation", "pooled out-of-fold", "external test"}
    lines = _map_lines(ctx, pre, cases, every)
    assert not any("qualify" in ln for ln in lines)  # the training_split cohort needs no healthy count
    line = next(ln for ln in lines if ln.startswith("- maps of `dense_ae`"))
    assert (f"made by a model that saw the case for {n_train} of the {len(cases)} cases (validation 0, training split "
            f"{n_train} of {n_train}, external 0)") in line
    assert ("so the *pooled out-of-fold* rows of Table II use maps from a model that saw those cases "
            "(`leak_free_maps` 0; k ≥ 2 cross-fits them)") in line
    # without a pooled out-of-fold row (one nnU-Net fold), no evaluated row holds a training-split case
    line = next(ln for ln in _map_lines(ctx, pre, cases, {"validation", "external test"}) if "dense_ae" in ln)
    assert "no evaluated row of Table II uses a map from a model that saw its case" in line and "*" not in line


def test_the_paper_cohort_says_how_many_patients_qualify(tiny_run):
    ctx, tables = tiny_run
    pre = {"anomaly_cohort": {"kind": "paper", "patients": 2, "cases": 2, "healthy_patients": 3,
                              "healthy_without_pirads": 1}}
    lines = _map_lines(ctx, pre, tables.cases)
    assert lines[1] == ("- 3 training-split patient(s) qualify as without visible abnormality (every study "
                        "csPCa-negative, no lesion in its mask, no reported lesion of PI-RADS ≥ 3); for 1 of them the "
                        "data record no PI-RADS, so they qualify by csPCa alone")
