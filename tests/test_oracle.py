"""The phantoms' lesion-free twins, the oracle model and the edit statistics (#26).

A phantom knows what its pseudo-healthy image should be. These tests hold the generator, the run
folder and the maps stage to that: the twin differs from its study only where a lesion reaches, it is
never part of the dataset a reader opens, the oracle's maps find every lesion, and lesion removal /
healthy change say how far a model's G(x) is from it.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt

from conftest import REALDATA, smoke_params


def _case_with_lesion(site: str = "internal"):
    from adunet_lib.data.synthetic import SITES, synthesize_case

    for index in range(20):
        data = synthesize_case(index, 0, SITES[site])
        if data["isup"] >= 2:
            return data
    raise AssertionError("no phantom with a lesion in 20 draws")


def test_a_twin_differs_from_its_study_only_near_the_lesion_and_the_lesion_goes():
    data = _case_with_lesion()
    lesion = data["lesion"].array > 0
    t2w, twin = data["t2w"].array.astype(float), data["twin"]["t2w"].array.astype(float)
    differs = t2w != twin
    assert differs.any()
    # same bias field and noise draws: every voxel that differs lies near the lesion (its soft edge
    # reaches past the delineation by about a radius), nowhere else in the field of view
    spacing = data["t2w"].geometry.spacing[::-1]  # (z, y, x) of the array
    distance_mm = distance_transform_edt(~lesion, sampling=spacing)
    assert distance_mm[differs].max() < 15.0
    assert differs.mean() < 0.02
    # the lesion is dark on T2W and ADC, bright on high-b DWI; its twin is not
    assert t2w[lesion].mean() < 0.9 * twin[lesion].mean()
    for seq, brighter in (("adc", False), ("hbv", True)):
        x, t = data[seq].array.astype(float), data["twin"][seq].array.astype(float)
        assert (x.sum() > t.sum()) == brighter, seq


def test_a_study_without_lesion_is_its_own_twin():
    from adunet_lib.data.synthetic import SITES, synthesize_case

    for index in range(20):
        data = synthesize_case(index, 0, SITES["external"])
        if data["isup"] == 0:
            for seq in ("t2w", "adc", "hbv"):
                np.testing.assert_array_equal(data[seq].array, data["twin"][seq].array)
            return
    raise AssertionError("no phantom without lesion in 20 draws")


def test_twins_live_beside_the_dataset_not_in_it(tiny_run):
    from adunet_lib.data.check import check_dataset
    from adunet_lib.vocabulary import SETS

    ctx, tables = tiny_run
    for set_name in SETS:
        ids = set(tables.cases.loc[tables.cases["set"] == set_name, "case_id"])
        assert {p.name for p in ctx.twins_dir(set_name).iterdir() if p.is_dir()} == ids
        assert {p.stem for p in ctx.twins_dir(set_name).glob("*.npz")} == ids
        # the dataset a reader opens has no twin in it: `adunet check` finds nothing it does not use
        findings = check_dataset(ctx.synthetic_data(set_name))
        assert not [f for f in findings if "twin" in str(f)]
        assert not any("twin" in str(p) for p in ctx.synthetic_data(set_name).rglob("*"))


def test_the_oracle_removes_every_lesion_and_its_maps_find_them(tiny_run):
    from adunet_lib.anomaly_maps.stage import generate_maps, map_models, map_quality
    from adunet_lib.data.image import read_image
    from adunet_lib.vocabulary import ORACLE

    ctx, tables = tiny_run
    assert map_models(ctx) == ["dense_ae", ORACLE]
    generate_maps(ctx, ["dense_ae", ORACLE], tables.cases, kernel_size=4, show_progress=False)
    quality = map_quality(ctx, ["dense_ae", ORACLE], tables.cases, show_progress=False)
    gland = quality[quality["zone"] == "gland"].set_index(["model", "sequence", "set"])
    oracle, model = gland.loc[ORACLE], gland.loc["dense_ae"]
    assert np.allclose(oracle["lesion_removal"], 1.0)
    assert (oracle["auroc"] > 0.95).all() and (oracle["auroc"] > model["auroc"]).all()
    # a barely trained autoencoder changes the healthy gland far more than the twin does
    assert (model["healthy_change"] > 3 * oracle["healthy_change"]).all()
    negatives = tables.cases[~tables.cases["cspca"].fillna(False).astype(bool) & tables.cases["labeled"]]
    case_id = negatives["case_id"].iloc[0]
    assert not read_image(ctx.map_file(ORACLE, case_id, "adc")).array.any()


def test_the_oracle_names_the_case_that_has_no_twin(tiny_run):
    import dataclasses

    from adunet_lib.anomaly_models.inference import pseudo_healthy
    from adunet_lib.errors import AdunetError
    from adunet_lib.preprocessing.pipeline import PreprocessedCase
    from adunet_lib.vocabulary import ORACLE

    ctx, tables = tiny_run
    row = tables.cases.iloc[0]
    pre = dataclasses.replace(PreprocessedCase.from_run(ctx, row["set"], row["case_id"]), case_id="real_0001")
    with pytest.raises(AdunetError, match="case real_0001: the oracle needs the phantom's lesion-free twin"):
        pseudo_healthy(ctx, ORACLE, pre)


def test_the_oracle_row_is_added_for_phantoms_only():
    from adunet_lib.vocabulary import ORACLE_VARIANTS, table_variants

    paper = ["baseline", "adunet_all"]
    assert table_variants(paper, True, ("synthetic", "synthetic")) == paper + list(ORACLE_VARIANTS)
    assert table_variants(paper, True, ("synthetic", "none")) == paper + list(ORACLE_VARIANTS)
    assert table_variants(paper, True, ("data/picai", "synthetic")) == paper
    assert table_variants(paper, False, ("synthetic", "synthetic")) == paper


def test_asking_for_oracle_maps_on_real_data_is_refused_before_anything_runs(tmp_path, capsys):
    import yaml

    from adunet_lib.cli import main

    data_dir = REALDATA if REALDATA.is_dir() else tmp_path / "picai"
    data_dir.mkdir(parents=True, exist_ok=True)
    params = smoke_params(tmp_path)
    data = yaml.safe_load(params.read_text(encoding="utf-8"))
    data["common"]["internal_data"] = str(data_dir)
    data["segmentation"]["variants"] = ["baseline", "adunet_all_oracle"]
    params.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert main(["reproduce", str(params)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "adunet_all_oracle needs the oracle's maps, which only synthetic cohorts have" in err[0]
    assert str(params) in err[0]
    assert not (tmp_path / "runs").exists()
