"""One dataclass per notebook is the home of its parameters: the notebook's cell, ``adunet run`` and
the params checks all derive from it, and the stages' entry points take it (#29, item 1)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import shutil

import pytest
import yaml

from adunet_lib.errors import ParamsError
from adunet_lib.parameters import NotebookParams, common_names, render_parameters_cell
from adunet_lib.runner import params as runner_params
from adunet_lib.runner.params import find_notebooks, notebook_classes, parameters_cell, stale_cells, sync_notebooks


def test_every_notebooks_parameters_cell_is_its_dataclass_rendered(repo):
    """In the .ipynb that papermill runs and in the paired .py alike; `--sync` would change nothing."""
    classes = notebook_classes()
    notebooks = find_notebooks(repo / "notebooks")
    assert [nb.name for nb in notebooks] == list(classes)
    for nb in notebooks:
        wanted = render_parameters_cell(classes[nb.name])
        assert parameters_cell(nb.path) == wanted, nb.name
        assert parameters_cell(nb.path.with_suffix(".py")) == wanted, nb.name
    assert stale_cells(repo / "notebooks") == []


def test_the_schema_comes_from_the_dataclass_not_from_parsing_the_notebook(tmp_path):
    """The regex parser of parameters cells is gone: a notebook's parameters are its dataclass's, even
    where no notebook file exists."""
    from adunet_lib.anomaly_maps.params import MapsParams

    source = inspect.getsource(runner_params)
    assert "literal_eval" not in source and "nbformat" not in source
    declared = runner_params.declared_parameters(tmp_path / "nowhere" / "05_anomaly_maps.ipynb")
    assert declared == MapsParams.declared()
    assert declared["blur_kernel"].type_name == "int" and declared["blur_kernel"].default == 4


def test_a_rendered_cell_holds_the_defaults_as_python_reads_them():
    import ast

    for cls in notebook_classes().values():
        lines = [line for line in render_parameters_cell(cls).splitlines() if not line.startswith("#")]
        assert len(lines) == len(cls.declared())
        for line, (name, declared) in zip(lines, cls.declared().items()):
            target = ast.parse(line).body[0]
            assert target.target.id == name and ast.literal_eval(target.value) == declared.default, line
        assert cls.from_params({}) == cls()  # the defaults are the cell's


def _renamed(cls: type[NotebookParams], old: str, new: str) -> type[NotebookParams]:
    """``cls`` with parameter ``old`` called ``new`` — what editing the dataclass's field name does."""
    fields = []
    for f in dataclasses.fields(cls):
        if f.name in common_names():
            continue
        default = ({"default": f.default} if f.default is not dataclasses.MISSING
                   else {"default_factory": f.default_factory})
        fields.append((new if f.name == old else f.name, f.type, dataclasses.field(metadata=f.metadata, **default)))
    return dataclasses.make_dataclass(cls.__name__, fields, bases=(NotebookParams,), frozen=True,
                                      namespace={"NOTEBOOK": cls.NOTEBOOK})


def _project(repo, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(repo / "notebooks", project / "notebooks")
    return project


def _params_file(tmp_path, run_dir, block: dict, name: str = "renamed") -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"common": {"run_dir": str(run_dir), "figure_dir": str(tmp_path / "figures"),
                                               "interactive": False},
                                    "anomaly_maps": block}), encoding="utf-8")
    return str(path)


def test_a_parameter_renamed_in_its_dataclass_reaches_the_notebook_the_check_and_the_unit(repo, tmp_path, tiny_run,
                                                                                           monkeypatch):
    """Rename ``blur_kernel`` in MapsParams: `--sync` writes the cell (.ipynb and .py), the params check
    takes the new name (and its sense rule) and refuses the old one, and ``adunet run --stage 05`` hands
    the renamed value to the stage's entry point — with no other file edited."""
    import jupytext

    from adunet_lib.anomaly_maps import stage
    from adunet_lib.anomaly_maps.params import MapsParams
    from adunet_lib.runner.reproduce import plan
    from adunet_lib.runner.units import run_unit

    renamed = _renamed(MapsParams, "blur_kernel", "map_blur_pixels")
    classes = notebook_classes() | {MapsParams.NOTEBOOK: renamed}
    monkeypatch.setattr(runner_params, "notebook_classes", lambda: classes)
    project = _project(repo, tmp_path)
    ctx, _ = tiny_run
    run_dir = shutil.copytree(ctx.run_dir, tmp_path / "run")
    new = _params_file(tmp_path, run_dir, {"map_blur_pixels": 3})

    # the notebook still declares the old name: refused before anything runs, naming the cure
    with pytest.raises(ParamsError, match=r"05_anomaly_maps.ipynb: its parameters cell is not MapsParams's.*--sync"):
        plan(new, root=project)
    written = sync_notebooks(project / "notebooks", classes, log=lambda _: None)
    notebook = project / "notebooks" / "05_anomaly_maps.ipynb"
    assert sorted(p.name for p in written) == ["05_anomaly_maps.ipynb", "05_anomaly_maps.py"]
    cell = parameters_cell(notebook)
    assert "\nmap_blur_pixels: int = 4  # Φ's kernel size" in cell and "blur_kernel" not in cell
    paired = jupytext.read(notebook.with_suffix(".py"))
    assert [c.source for c in paired.cells] == ["".join(c["source"]) for c in
                                                json.loads(notebook.read_text(encoding="utf-8"))["cells"]]
    assert stale_cells(project / "notebooks", classes) == []

    # the params check: the new name with its type and its sense rule; the old name is unknown
    _, selected = plan(new, root=project)
    assert dict(selected)[next(nb for nb, _ in selected if nb.name == "05_anomaly_maps")]["map_blur_pixels"] == 3
    with pytest.raises(ParamsError, match=r"old_name.yaml: unknown key anomaly_maps.blur_kernel \(not a parameter of "
                                          r"notebook 05_anomaly_maps\)"):
        plan(_params_file(tmp_path, run_dir, {"blur_kernel": 3}, "old_name"), root=project)
    with pytest.raises(ParamsError, match=r"anomaly_maps.map_blur_pixels must be int, got str"):
        plan(_params_file(tmp_path, run_dir, {"map_blur_pixels": "wide"}, "wrong_type"), root=project)
    with pytest.raises(ParamsError, match=r"anomaly_maps.map_blur_pixels = 0 must be at least 1 pixel"):
        plan(_params_file(tmp_path, run_dir, {"map_blur_pixels": 0}, "no_sense"), root=project)

    # the unit: the stage's entry point gets the dataclass with the renamed value
    import pandas as pd

    given = []

    def entry_point(ctx, params, models=None, shard=None, show_progress=True, log=print):
        given.append(params)
        return stage.MapSet(list(models), pd.DataFrame({"case_id": ["a"], "reused": [True]}), list(models))

    monkeypatch.setattr(stage, "run", entry_point)
    run_unit(new, "05", root=project, show_progress=False, log=lambda _: None)
    assert type(given[0]) is renamed and given[0].map_blur_pixels == 3 and not hasattr(given[0], "blur_kernel")


def test_the_maps_entry_point_reuses_the_maps_the_library_made(tiny_run):
    """Notebook 05's entry point keys its maps as before: the tiny run's maps (made by
    ``generate_maps`` with kernel 4) are found, none made again; Fig. 4 falls back to the run's models."""
    from adunet_lib.anomaly_maps import stage
    from adunet_lib.anomaly_maps.params import MapsParams

    ctx, _ = tiny_run
    said = []
    maps = stage.run(ctx, MapsParams(models=["dense_ae"]), show_progress=False, log=said.append)
    assert maps.models == ["dense_ae"] and maps.shown == ["dense_ae"] and said == ["maps from: ['dense_ae']"]
    assert len(maps.made) == 9 and maps.made["reused"].all()


def test_the_training_entry_point_resumes_a_model_the_library_trained(tiny_run, tmp_path):
    """Notebooks 02–04's entry point: the same settings as ``settings_from`` (the resolved config a
    model folder records), so the tiny run's model is loaded, not trained again; ``--model`` picks."""
    from adunet_lib.anomaly_models import stage
    from adunet_lib.anomaly_models.params import AutoencodersParams, DiffusionParams, FixedPointGANParams
    from adunet_lib.run_folder import RunContext

    ctx, _ = tiny_run
    copy = RunContext.create(shutil.copytree(ctx.run_dir, tmp_path / "run"), tmp_path / "figures", seed=0)
    params = AutoencodersParams(models={"dense_ae": {"filters": [8, 16], "latent_dim": 8}}, modes=["cropped"],
                                iterations=2, batch_size=4, checkpoint_every=1, seed=0)
    assert stage.train_settings(params) == stage.settings_from(2, 4, 1, 0)
    weights = copy.model_dir("dense_ae", "all", "cropped") / "model.pt"
    before = weights.read_bytes()
    trained = stage.run(copy, params, show_progress=False)
    assert list(trained["model"]) == ["dense_ae"] and weights.read_bytes() == before
    with pytest.raises(ParamsError, match="--model fpgan: not among notebook 02_autoencoders's models"):
        stage.chosen_models(params, ["fpgan"])
    # one entry point, three parameter sets: the defaults differ, the rules travel with the fields
    assert (AutoencodersParams().iterations, DiffusionParams().iterations, FixedPointGANParams().iterations) == (
        80, 120, 250)
    assert DiffusionParams.declared()["batch_size"].check[0](1) is False
    assert AutoencodersParams.declared()["batch_size"].check[0](1) is True


def test_segmentation_settings_from_the_dataclass_are_the_ones_the_notebook_and_unit_built(repo):
    """The variants' fingerprints are made of SegmentationSettings: built from the dataclass they equal
    what notebook 06 (13 keyword arguments) and the unit (the dataclass's fields) built before."""
    from adunet_lib.runner.params import load_params
    from adunet_lib.segmentation.params import SegmentationParams
    from adunet_lib.segmentation.stage import SegmentationSettings, chosen_variants, settings_for

    for name in ("demo", "smoke", "paper"):
        values = {"seed": 3, **load_params(repo / "params" / f"{name}.yaml").blocks["segmentation"]}
        params = SegmentationParams.from_params(values)
        merged = SegmentationParams().__dict__ | values
        known = {f.name for f in dataclasses.fields(SegmentationSettings)} - {"num_processes"}
        assert settings_for(params) == SegmentationSettings.from_params(**{k: merged[k] for k in known}), name
    with pytest.raises(ParamsError, match="--variant adunet_best: not among segmentation.variants"):
        chosen_variants(SegmentationParams(), ["adunet_best"])
    assert chosen_variants(SegmentationParams(), None)[-1] == "adunet_all_oracle"  # phantoms: the oracle row
    assert chosen_variants(SegmentationParams(internal_data="/data/picai"), None)[-1] == "adunet_all"


def test_the_sync_command_checks_and_writes(repo, tmp_path, capsys):
    project = _project(repo, tmp_path)
    assert runner_params.main(["--check", str(project / "notebooks")]) == 0
    py = project / "notebooks" / "07_evaluation.py"
    py.write_text(py.read_text(encoding="utf-8").replace("n_bootstrap: int = 500", "n_bootstrap: int = 50"),
                  encoding="utf-8")
    assert runner_params.main(["--check", str(project / "notebooks")]) == 1
    assert "07_evaluation.py: parameters cell differs" in capsys.readouterr().err
    assert runner_params.main(["--sync", str(project / "notebooks")]) == 0
    assert (project / "notebooks" / "07_evaluation.py").read_text(encoding="utf-8") == \
        (repo / "notebooks" / "07_evaluation.py").read_text(encoding="utf-8")


def test_a_help_with_an_equals_sign_is_refused_at_declaration():
    from adunet_lib.parameters import param

    with pytest.raises(ValueError, match="no '='"):
        param(1, "k = 2")
