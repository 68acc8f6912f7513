import json

import numpy as np

from adunet_lib.data import load_case, open_dataset
from adunet_lib.data.synthetic import synthesize_case, SITES
from adunet_lib.data.image import resample_to


def _contrasts(cohort):
    """Per lesion case: mean lesion / mean surrounding-gland intensity, per sequence (T2W grid)."""
    out = {"t2w": [], "adc": [], "hbv": []}
    for case in open_dataset(cohort):
        loaded = load_case(case)
        lesion = loaded.lesion.array > 0
        if not lesion.any():
            continue
        ring = (loaded.zones.array > 0) & ~lesion
        for seq in out:
            vol = resample_to(loaded.images[seq], loaded.t2w.geometry).array if seq != "t2w" else loaded.t2w.array
            out[seq].append(vol[lesion].mean() / vol[ring].mean())
    return {k: np.array(v) for k, v in out.items()}


def test_lesions_are_dark_on_t2w_and_adc_and_bright_on_hbv(synth_internal):
    c = _contrasts(synth_internal)
    assert len(c["t2w"]) >= 2
    assert np.median(c["t2w"]) < 0.95
    assert np.median(c["adc"]) < 0.9
    assert np.median(c["hbv"]) > 1.2


def test_lesions_are_not_trivially_separable():
    """Contrast varies per lesion, and benign mimics darken T2W in every case."""
    contrasts, mimics = [], 0
    for i in range(12):
        facts = synthesize_case(i, 5, SITES["internal"])["facts"]
        contrasts += [les["contrast"] for les in facts["lesions"]]
        mimics += len(facts["mimics"])
    assert min(contrasts) < 0.55 < max(contrasts)
    assert mimics >= 12


def test_t2w_and_adc_live_on_different_grids(synth_internal):
    loaded = load_case(open_dataset(synth_internal).cases[0])
    t2w, adc = loaded.t2w.geometry, loaded.images["adc"].geometry
    assert adc.spacing[0] > 3 * t2w.spacing[0]
    assert not np.allclose(adc.origin, t2w.origin, atol=0.5)
    assert t2w.direction != (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # oblique, like real scans


def test_external_site_differs_from_internal(synth_internal, synth_external):
    internal = load_case(open_dataset(synth_internal).cases[0])
    external = load_case(open_dataset(synth_external).cases[0])
    assert external.t2w.spacing != internal.t2w.spacing
    ratio = np.median(external.t2w.array[external.gland.array > 0]) / np.median(internal.t2w.array[internal.gland.array > 0])
    assert ratio > 1.5  # different intensity scale
    meta = json.loads((synth_external / "synth.json").read_text(encoding="utf-8"))
    assert meta["settings"]["config"]["b_value"] != SITES["internal"].b_value


def test_cohort_has_negative_cases_and_mostly_pz_lesions():
    facts = [synthesize_case(i, 1, SITES["internal"])["facts"] for i in range(40)]
    negatives = sum(not f["lesions"] for f in facts)
    zones = [les["zone"] for f in facts for les in f["lesions"]]
    assert 8 <= negatives <= 32
    assert zones.count("pz") > zones.count("tz")


def test_generation_is_deterministic_per_case():
    a = synthesize_case(4, 9, SITES["internal"])
    b = synthesize_case(4, 9, SITES["internal"])
    c = synthesize_case(4, 10, SITES["internal"])
    np.testing.assert_array_equal(a["t2w"].array, b["t2w"].array)
    assert not np.array_equal(a["t2w"].array, c["t2w"].array)


def test_cli_synth_writes_a_cohort(tmp_path):
    from adunet_lib.cli import main

    assert main(["synth", str(tmp_path / "c"), "--cases", "2", "--seed", "1", "--site", "external"]) == 0
    ds = open_dataset(tmp_path / "c")
    assert len(ds) == 2 and all(c.site for c in ds)
