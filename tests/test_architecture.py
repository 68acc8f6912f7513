"""The redesign's promises: one owner of the run folder, stages that do not import each other,
models that join by name, and a run folder that is self-contained after notebook 01."""

import ast
import re

import pandas as pd
import pytest

from conftest import DUMMY_MODEL, REPO

LIB = REPO / "adunet_lib"


def _imports(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_no_stage_imports_another_stage():
    stages = sorted(LIB.glob("*/stage.py"))
    assert len(stages) == 6  # 01 (zones, preprocessing), 02–04 (models), 05, 06, 07
    offenders = []
    for path in [*stages, LIB / "predict.py", LIB / "report" / "summary.py"]:
        own = f"adunet_lib.{path.parent.name}.stage"
        offenders += [f"{path.relative_to(REPO)} imports {m}" for m in _imports(path)
                      if m.endswith(".stage") and m.startswith("adunet_lib.") and m != own]
    assert not offenders, offenders


def test_architecture_md_shows_the_run_folder_layout_module(repo):
    from adunet_lib.run_folder import LAYOUT

    text = (repo / "ARCHITECTURE.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```text\n(runs/<name>/\n.*?)```", text, flags=re.S)
    assert blocks, "ARCHITECTURE.md has no ```text block starting with runs/<name>/"
    assert blocks[0] == LAYOUT


def test_run_folder_paths_are_written_in_one_module():
    """Stages ask the run folder; they do not spell its sub-folders themselves."""
    spelled = re.compile(r'''/\s*f?["'](preprocessed|models|maps|nnunet|predictions|cases|raw|results|softmax|records|stamps|splits\.json|mapset\.json|params\.json|reproduce\.json)\b''')
    offenders = []
    for path in LIB.rglob("*.py"):
        if path.name in ("run_folder.py", "_worker.py"):
            continue
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if spelled.search(line) and "/" in line:
                offenders.append(f"{path.relative_to(REPO)}:{i}: {line.strip()}")
    assert not offenders, offenders


def test_nnunet_names_come_from_nnunet():
    from nnunetv2.utilities.dataset_name_id_conversion import convert_dataset_name_to_id

    from adunet_lib.run_folder import RunContext, nnunet_dataset_name

    ctx = RunContext(REPO / "runs" / "x", REPO / "figures" / "x")
    dataset_id, name = ctx.nnunet_dataset("adunet_adc", 500)
    assert (dataset_id, name) == (502, "Dataset502_adunet_adunet_adc") == (convert_dataset_name_to_id(name), name)
    assert ctx.nnunet_model_dir(name, "2d").name == "nnUNetTrainer__nnUNetPlans__2d"
    assert nnunet_dataset_name(7, "baseline") == "Dataset007_adunet_baseline"


def test_a_new_variant_never_renumbers_another_variants_dataset(monkeypatch):
    """nnU-Net keeps trained models under the dataset's id: listing a new variant before the others (as the
    oracle row was added) must leave every other variant's dataset where it was (#29)."""
    from adunet_lib import vocabulary
    from adunet_lib.run_folder import RunContext

    ctx = RunContext(REPO / "runs" / "x", REPO / "figures" / "x")
    before = {name: ctx.nnunet_dataset(name, 500) for name in vocabulary.VARIANTS}
    new = vocabulary.Variant("adunet_t2w_dwi", "adU-Net(T2W+DWI)", ("t2w", "hbv"), dataset_offset=6)
    monkeypatch.setattr(vocabulary, "VARIANTS", {new.name: new, **vocabulary.VARIANTS})
    after = {name: ctx.nnunet_dataset(name, 500) for name in before}
    assert after == before and ctx.nnunet_dataset(new.name, 500)[0] == 506
    assert len({i for i, _ in before.values()}) == len(before)  # no two variants share a dataset


@pytest.mark.slow
def test_the_run_folder_holds_what_the_layout_lists_and_nothing_else(smoke_series):
    from adunet_lib.run_folder import LAYOUT

    run, _, _ = smoke_series
    entries = [line.split()[0].split("/")[0] for line in LAYOUT.splitlines()[1:]]
    # hidden entries (the run lock) exist only while a run holds the folder: gone after it
    listed = {e.split(".")[0] for e in entries if not e.startswith(".")}
    assert not any((run / e).exists() for e in entries if e.startswith("."))
    present = {p.name.split(".")[0] for p in run.iterdir()}
    # jobs/ only where adunet submit ran the series (tests/test_reproducibility.py's rerun)
    assert present <= listed and listed - present <= {"jobs"}, (present ^ listed)


@pytest.mark.slow
def test_a_fifth_model_added_the_readme_way_is_trained_tabled_drawn_and_mapped(smoke_series):
    """The dummy model lives outside the package (tests/plugins); params name it in notebook 02's block."""
    from adunet_lib.anomaly_models.registry import trained_models
    from adunet_lib.anomaly_models.stage import figure3, figure3_slices
    from adunet_lib.run_folder import RunContext

    run, figures, _ = smoke_series
    ctx = RunContext(run, figures)
    assert trained_models(ctx) == ["dense_ae", "spatial_ae", "ddpm", "fpgan", DUMMY_MODEL]
    table1 = pd.read_csv(figures / "table1.csv")
    dummy = table1[table1["method"] == "Dummy Smoother"]
    assert set(dummy["block"]) == {"Full images", "Cropped images"} and len(dummy) == 6
    assert dummy["SSIM"].between(-1, 1).all()
    assert (figures / f"losses_{DUMMY_MODEL}.png").read_bytes()[:4] == b"\x89PNG"
    cases, slices = ctx.tables()
    fig = figure3(ctx, None, figure3_slices(ctx, slices, 2))  # what notebook 04 draws
    titles = {ax.get_title() for ax in fig.axes}
    assert {"Vanilla AE", "Spatial AE", "Diffusion Model", "FP GAN", "Dummy Smoother"} <= titles
    assert all(ctx.map_file(DUMMY_MODEL, cid, "adc").is_file() for cid in cases["case_id"])
    quality = pd.read_csv(figures / "map_quality.csv")
    # every trained model, and the oracle (G(x) = the phantoms' lesion-free twin) beside them
    assert set(quality["model"]) == {"dense_ae", "spatial_ae", "ddpm", "fpgan", DUMMY_MODEL, "oracle"}


@pytest.mark.slow
def test_notebooks_02_to_07_finished_with_the_source_data_moved_away(smoke_series):
    """The shared smoke series moved its data folder away after notebook 01 (see conftest)."""
    from adunet_lib.data.image import read_image
    from adunet_lib.preprocessing.pipeline import PreprocessedCase
    from adunet_lib.run_folder import RunContext

    run, figures, timings = smoke_series
    ctx = RunContext(run, figures)
    assert len(timings) == 7
    cases, _ = ctx.tables()
    for _, row in cases.iterrows():
        folder = run / "cases" / row["set"] / row["case_id"]
        assert {p.name for p in folder.iterdir()} >= {"t2w.mha", "adc.mha", "hbv.mha", "gland.mha"}
        assert (folder / "lesion.mha").is_file() == bool(row["labeled"])
        # the copies keep the T2W grid exactly (double precision), so maps and detections line up
        t2w = read_image(folder / "t2w.mha").geometry
        assert t2w == PreprocessedCase.from_run(ctx, row["set"], row["case_id"]).t2w_geometry
    assert (figures / "table2.csv").is_file()
