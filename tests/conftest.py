"""Shared fixtures: tiny synthetic cohorts on disk, the real shared studies, small images."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
REALDATA = REPO.parent / "shared" / "realdata" / "picai"

# A fifth reconstruction model, registered the README's way from outside the package: every test of
# the session (the contract tests, and the notebook kernels of the shared smoke series) sees it.
PLUGINS = Path(__file__).resolve().parent / "plugins"
DUMMY_MODEL = "dummy_smoother"
sys.path.insert(0, str(PLUGINS))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PLUGINS), os.environ.get("PYTHONPATH")]))
os.environ["ADUNET_MODEL_MODULES"] = "adunet_dummy_model"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def realdata() -> Path:
    if not (REALDATA / "images").is_dir():
        pytest.skip("../shared/realdata/picai not present")
    return REALDATA


@pytest.fixture(scope="session")
def synth_internal(tmp_path_factory) -> Path:
    """Six synthetic internal cases (PI-CAI layout), written once per test session."""
    from adunet_lib.data.synthetic import synthesize_cohort

    return synthesize_cohort(tmp_path_factory.mktemp("synth") / "internal", cases=6, seed=3, site="internal",
                             show_progress=False)


@pytest.fixture(scope="session")
def synth_external(tmp_path_factory) -> Path:
    from adunet_lib.data.synthetic import synthesize_cohort

    return synthesize_cohort(tmp_path_factory.mktemp("synth") / "external", cases=3, seed=3, site="external",
                             show_progress=False)


@pytest.fixture
def cohort_copy(synth_internal, tmp_path) -> Path:
    """A private copy of the synthetic cohort that a test may break."""
    return Path(shutil.copytree(synth_internal, tmp_path / "cohort"))


@pytest.fixture
def realdata_copy(realdata, tmp_path) -> Path:
    """A private, writable copy of the real studies (for corrupting)."""
    out = Path(shutil.copytree(realdata, tmp_path / "picai"))
    for p in out.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    return out


def make_image(shape=(6, 20, 24), spacing=(0.5, 0.6, 3.0), origin=(-10.0, 5.0, 2.5), tilt_deg=7.0, dtype=np.float32,
               seed=0):
    """A small random image with an oblique direction and anisotropic spacing."""
    from adunet_lib.data.image import Geometry, Image

    a = np.deg2rad(tilt_deg)
    direction = (1, 0, 0, 0, np.cos(a), -np.sin(a), 0, np.sin(a), np.cos(a))
    rng = np.random.default_rng(seed)
    array = (rng.random(shape) * 100).astype(dtype)
    return Image(array, Geometry((shape[2], shape[1], shape[0]), spacing, origin, direction))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A complete little run folder up to anomaly maps: 6 internal + 3 external synthetic cases,
    preprocessed at 32², a 2-step dense AE, its maps. (nnU-Net tests build on it.)"""
    from adunet_lib.anomaly_maps.stage import generate_maps
    from adunet_lib.anomaly_models import stage as model_stage
    from adunet_lib.preprocessing import stage
    from adunet_lib.preprocessing.pipeline import PreprocessConfig
    from adunet_lib.run_folder import RunContext

    root = tmp_path_factory.mktemp("tiny_run")
    ctx = RunContext.create(root / "run", root / "figures", seed=0)
    datasets = stage.resolve_datasets(ctx, {"internal": "synthetic", "external": "synthetic"},
                                      {"internal": 6, "external": 3}, show_progress=False)
    tables = stage.preprocess_sets(ctx, datasets, PreprocessConfig(slice_size=32), n_folds=2, show_progress=False)
    settings = model_stage.settings_from(2, 4, 1, 0)
    model_stage.train_models(ctx, {"dense_ae": {"filters": (8, 16), "latent_dim": 8}}, tables.slices, "all",
                             ["cropped"], settings, show_progress=False)
    generate_maps(ctx, ["dense_ae"], tables.cases, kernel_size=4, show_progress=False)
    return ctx, tables


def smoke_params(folder: Path, name: str = "smoke") -> Path:
    """params/smoke.yaml with its run and figure folders moved into ``folder``."""
    from adunet_lib.runner.params import relocated

    return relocated(REPO / "params" / f"{name}.yaml", folder)


def series_params(folder: Path) -> Path:
    """params/smoke.yaml, relocated into ``folder``, with the dummy fifth model named in notebook 02's
    block — the only change a user makes to train, table, draw and map a new model."""
    import yaml

    path = smoke_params(folder)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["autoencoders"]["models"][DUMMY_MODEL] = {"width": 4}
    if REALDATA.is_dir():
        # the real ProstateX studies' zonal masks also train the zone model (as the paper's was trained on
        # ProstateX), so the run can predict zones for a real study without masks (px0218)
        data["preprocessing"]["zone_training_data"] = [str(REALDATA)]
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def smoke_series(tmp_path_factory):
    """The whole notebook series on params/smoke.yaml (+ the dummy model), shared by every test that
    needs a finished run. After notebook 01 the source data folder is moved away: notebooks 02–07
    must finish from the run folder alone."""
    from adunet_lib.runner.reproduce import reproduce

    folder = tmp_path_factory.mktemp("smoke_series")
    params = series_params(folder)
    run = folder / "runs" / "smoke"
    timings = reproduce(params, stop="01", root=REPO, log=lambda _: None, stream_output=False)
    # the run as notebook 01 left it: the reproducibility test reruns 02–07 from it
    shutil.copytree(run, folder / "after_01" / "runs" / "smoke")
    shutil.copytree(folder / "figures" / "smoke", folder / "after_01" / "figures" / "smoke")
    away = folder / "data_moved_away"
    (run / "data").rename(away)
    try:
        timings |= reproduce(params, start="02", root=REPO, log=lambda _: None, stream_output=False)
    finally:
        away.rename(run / "data")
    return run, folder / "figures" / "smoke", timings
