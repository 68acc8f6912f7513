"""The pretrained gland model (``lavlab-taps``, the extra ``gland``): mask sources, the missing extra in
one line, which model ``adunet predict`` picks, and a plausible gland on a real study (one inference)."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest

from adunet_lib.data.image import Geometry, Image, read_image, resample_to
from adunet_lib.errors import AdunetError, CaseError, ParamsError

LABELLED = "10795_1000811"  # a real study with picai_labels' whole-gland and zonal masks


def _image(array: np.ndarray, spacing=(0.5, 0.5, 3.0), origin=(0.0, 0.0, 0.0)) -> Image:
    return Image(array, Geometry(array.shape[::-1], spacing, origin, (1, 0, 0, 0, 1, 0, 0, 0, 1)))


def test_mask_sources_name_the_pretrained_gland(tmp_path):
    from adunet_lib.data.readers import open_dataset
    from adunet_lib.data.synthetic import synthesize_cohort
    from adunet_lib.zones.stage import PRETRAINED_SOURCES, cases_to_predict, check_mask_sources

    assert check_mask_sources({"internal": "files_then_pretrained", "external": "pretrained_gland"},
                              ["internal", "external"]) == {"internal": "files_then_pretrained",
                                                            "external": "pretrained_gland"}
    with pytest.raises(ParamsError, match="pretrained_gland"):
        check_mask_sources({"internal": "pretrained"}, ["internal"])
    data = open_dataset(synthesize_cohort(tmp_path / "d", cases=6, without_masks=3, show_progress=False))
    unmasked = {c.case_id for c in data if not c.has_gland_mask}
    chosen = cases_to_predict({"internal": data}, {"internal": "files_then_pretrained"}, PRETRAINED_SOURCES)
    assert {c.case_id for c in chosen["internal"]} == unmasked
    assert len(cases_to_predict({"internal": data}, {"internal": "pretrained_gland"}, PRETRAINED_SOURCES)["internal"]) == 6
    # the zone model predicts none of them
    assert cases_to_predict({"internal": data}, {"internal": "pretrained_gland"})["internal"] == []


def test_without_the_extra_one_line_names_it(monkeypatch, tmp_path):
    from adunet_lib.run_folder import RunContext
    from adunet_lib.zones import pretrained
    from adunet_lib.zones.model import choose_gland_model

    monkeypatch.setitem(sys.modules, "taps", None)  # `import taps` raises ImportError, as when not installed
    assert not pretrained.available()
    for call in (pretrained.require_taps,
                 lambda: pretrained.pretrained_gland(_image(np.ones((4, 8, 8), np.float32)), "c1", "c1_t2w.mha")):
        with pytest.raises(AdunetError) as err:
            call()
        message = str(err.value)
        assert 'pip install -e ".[gland]"' in message and "lavlab-taps" in message and "\n" not in message

    # a run without a zone model and without the extra: one line naming both ways out
    bare = RunContext(tmp_path / "bare", tmp_path / "figures")
    with pytest.raises(AdunetError) as err:
        choose_gland_model(bare, "auto")
    message = str(err.value)
    assert '".[gland]"' in message and "zone model" in message and "--gland" in message and "\n" not in message

    # a params file that asks for it is refused before any notebook runs
    from adunet_lib.runner import sense

    params = type("P", (), {"path": "p.yaml", "common": {}})()
    with pytest.raises(ParamsError, match=r'preprocessing.mask_source: external: .*\.\[gland\]'):
        sense._check_choices(params, {"preprocessing": {"mask_source": {"external": "pretrained_gland"}}})


def test_auto_takes_the_pretrained_gland_unless_the_run_has_a_real_zone_model(monkeypatch, tmp_path):
    from adunet_lib.fileio import write_json
    from adunet_lib.run_folder import RunContext
    from adunet_lib.zones import pretrained
    from adunet_lib.zones.model import choose_gland_model

    monkeypatch.setattr(pretrained, "available", lambda: True)
    ctx = RunContext(tmp_path / "run", tmp_path / "figures")
    assert choose_gland_model(ctx) == "pretrained"  # no zone model
    write_json(ctx.zone_record, {"settings": {"channels": ["t2w"]}, "training_data": ["internal"]})
    write_json(ctx.preprocessing_record, {"datasets": {"internal": {"synthetic": True}}})
    assert choose_gland_model(ctx) == "pretrained"  # a zone model trained on phantoms only (the demo)
    assert choose_gland_model(ctx, "run") == "run"
    write_json(ctx.zone_record, {"settings": {"channels": ["t2w"]}, "training_data": ["internal", "/data/prostatex"]})
    assert choose_gland_model(ctx) == "run"  # also trained on real studies: the run's own choice
    assert choose_gland_model(ctx, "pretrained") == "pretrained"
    with pytest.raises(AdunetError, match="--gland-model must be one of"):
        choose_gland_model(ctx, "taps")


def test_the_mask_comes_back_on_the_t2w_grid_exactly():
    from adunet_lib.zones.pretrained import on_t2w_grid

    t2w = _image(np.zeros((6, 20, 20), np.float32), origin=(10.0, -5.0, 2.0))
    mask = np.zeros(t2w.shape, np.uint8)
    mask[2:4, 5:15, 5:15] = 1
    # a NIfTI round trip moves the origin by float noise: the T2W's geometry is taken as is
    nearly = _image(mask, origin=(10.0 + 1e-6, -5.0, 2.0 - 1e-6))
    out = on_t2w_grid(nearly, t2w, "c1", "c1_t2w.mha")
    assert out.geometry == t2w.geometry and out.array.dtype == np.uint8
    np.testing.assert_array_equal(out.array, mask)
    # a grid one voxel away is resampled onto the T2W's (nearest neighbour)
    moved = on_t2w_grid(_image(mask, origin=(10.5, -5.0, 2.0)), t2w, "c1", "c1_t2w.mha")
    assert moved.geometry == t2w.geometry and moved.array[2:4, 5:15, 6:16].all() and not moved.array[:, :, 5].any()
    with pytest.raises(CaseError, match="does not overlap"):
        on_t2w_grid(_image(mask, origin=(500.0, 0.0, 0.0)), t2w, "c1", "c1_t2w.mha")


def test_the_zone_stage_crops_with_the_pretrained_gland_and_keeps_it(monkeypatch, tmp_path):
    """``files_then_pretrained``: the studies without a mask get the model's gland (stand-in here), on
    their T2W grid, kept while their T2W is unchanged; no zones; no zone model trained."""
    from adunet_lib.data.readers import open_dataset
    from adunet_lib.data.synthetic import synthesize_cohort
    from adunet_lib.run_folder import RunContext
    from adunet_lib.zones import pretrained
    from adunet_lib.zones.model import ZoneSettings
    from adunet_lib.zones.stage import run_zone_stage

    calls = []

    def stand_in(t2w, case_id, where, min_ml, max_ml, device, log):
        calls.append(case_id)
        mask = np.zeros(t2w.shape, np.uint8)
        z, y, x = (s // 2 for s in t2w.shape)
        mask[z - 2:z + 2, y - 8:y + 8, x - 8:x + 8] = 1
        gland = Image(mask, t2w.geometry)
        return pretrained.GlandResult(gland, 1.0, 0.1, ("segmentation touches the image border",), "stand-in")

    monkeypatch.setattr(pretrained, "require_taps", lambda: None)
    monkeypatch.setattr(pretrained, "pretrained_gland", stand_in)
    data = open_dataset(synthesize_cohort(tmp_path / "d", cases=6, without_masks=3, show_progress=False))
    unmasked = {c.case_id for c in data if not c.has_gland_mask}
    ctx = RunContext(tmp_path / "run", tmp_path / "figures")
    result = run_zone_stage(ctx, {"internal": data}, {"internal": "files_then_pretrained"}, ZoneSettings(),
                            show_progress=False, log=lambda _: None)
    assert sorted(calls) == sorted(unmasked)
    assert {c for c, o in result.mask_origins["internal"].items() if o == "pretrained_gland"} == unmasked
    assert not ctx.zone_record.exists()  # no zone model
    for case in result.datasets["internal"]:
        if case.case_id in unmasked:
            assert case.gland == ctx.pretrained_gland_mask(case.case_id) and case.zones is None
            t2w = read_image(case.path_of("t2w"))
            assert read_image(case.gland).geometry.same_as(t2w.geometry)
    again = run_zone_stage(ctx, {"internal": data}, {"internal": "pretrained_gland"}, ZoneSettings(),
                           show_progress=False, log=lambda _: None)
    assert len(calls) == 6  # the unmasked studies' glands were kept; the masked ones are new
    # every study has its own mask: gland Dice against it, no PZ/TZ Dice (the model has no zones)
    quality = again.quality
    assert set(quality["case_id"]) == {c.case_id for c in data if c.has_gland_mask}
    assert quality["dice_pz"].isna().all() and quality["dice_gland"].between(0, 1).all()
    assert (quality["role"] == "internal (pretrained gland)").all()


@pytest.fixture(scope="session")
def real_gland(realdata):
    """The pretrained gland of one labelled real study: the suite's one TAPS inference (~30-90 s on 2 cores)."""
    pytest.importorskip("taps", reason='needs the extra: pip install -e ".[gland]"')
    from adunet_lib.zones.pretrained import pretrained_gland

    pid = LABELLED.split("_")[0]
    t2w_file = realdata / "images" / pid / f"{LABELLED}_t2w.mha"
    t2w = read_image(t2w_file)
    return t2w, pretrained_gland(t2w, LABELLED, t2w_file, log=lambda _: None)


@pytest.mark.realdata
def test_the_pretrained_gland_of_a_real_study_is_plausible(real_gland, realdata):
    """Against picai_labels' whole gland (Bosma22b) and its zonal masks' union (HeviAI23): a plausible
    gland, not an exact number (figures/bench/pretrained_gland.txt has the measured Dice)."""
    from adunet_lib.zones.masks import dice

    t2w, result = real_gland
    assert result.mask.geometry == t2w.geometry and result.mask.array.dtype == np.uint8
    assert set(np.unique(result.mask.array)) == {0, 1}
    assert 15 <= result.ml <= 100  # a prostate, not a pelvis
    labels = realdata / "picai_labels" / "anatomical_delineations"
    for reference in ("whole_gland/AI/Bosma22b", "zonal_pz_tz/AI/HeviAI23"):
        mask = read_image(labels / reference / f"{LABELLED}.nii.gz")
        mask = resample_to(mask, t2w.geometry, "nearest")
        assert dice(result.mask.array > 0, mask.array > 0) >= 0.7, reference
    assert "lavlab-taps" in result.made_by


@pytest.mark.realdata
def test_predict_writes_the_pretrained_gland_and_says_so(real_gland, monkeypatch, tmp_path):
    """``predict_study_mask`` with ``pretrained``: ``<case>_gland.nii.gz`` on the T2W grid and a note naming
    the model (the model's call is the fixture's, reused: no second inference)."""
    from adunet_lib.data.case import Case, load_case
    from adunet_lib.run_folder import RunContext
    from adunet_lib.zones import pretrained
    from adunet_lib.zones.model import predict_study_mask

    t2w, result = real_gland
    monkeypatch.setattr(pretrained, "pretrained_gland", lambda *a, **k: dataclasses.replace(result))
    folder = tmp_path / "out"
    t2w_file = tmp_path / f"{LABELLED}_t2w.mha"
    from adunet_lib.data.image import write_image

    write_image(t2w, t2w_file)
    loaded = load_case(Case(case_id=LABELLED, images={"t2w": t2w_file}, expected={"t2w": t2w_file}), sequences=("t2w",))
    target, kind, used, note = predict_study_mask(RunContext(tmp_path / "run", tmp_path / "fig"), loaded, folder,
                                                  "pretrained", log=lambda _: None)
    assert (target.name, kind, used) == (f"{LABELLED}_gland.nii.gz", "gland", "pretrained")
    assert read_image(target).geometry.same_as(t2w.geometry) and "lavlab-taps" in note and "no PZ/TZ split" in note
