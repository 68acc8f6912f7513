import pytest

from adunet_lib.errors import ParamsError
from adunet_lib.runner.params import find_notebooks, load_params, type_ok, validate
from adunet_lib.runner.reproduce import plan

COMMON_KEYS = {"run_dir", "figure_dir", "internal_data", "external_data", "seed", "device", "interactive"}


def _write(tmp_path, text):
    path = tmp_path / "exp.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_params_files_validate_against_the_notebooks(repo):
    notebooks = find_notebooks(repo / "notebooks")
    for name in ("demo", "smoke", "paper"):
        injected = validate(load_params(repo / "params" / f"{name}.yaml"), notebooks)
        assert set(injected) == {nb.name for nb in notebooks}


@pytest.mark.parametrize("name", ["demo", "smoke", "paper"])
def test_shipped_model_configs_are_hyperparameters_the_models_know(repo, name):
    """A typo in a model_config block would otherwise only surface hours into a run."""
    from adunet_lib.anomaly_models.registry import get

    blocks = {"diffusion": ["ddpm"], "fixed_point_gan": ["fpgan"]}
    params = load_params(repo / "params" / f"{name}.yaml")
    checked = 0
    for block, values in params.blocks.items():
        models = values.get("models", blocks.get(block, []))
        if "model_config" in values and block in ("autoencoders", "diffusion", "fixed_point_gan"):
            for model in models:
                config = get(model).resolve_config(dict(values["model_config"]))
                for key, value in values["model_config"].items():
                    got = getattr(config, key)
                    assert (list(got) if isinstance(got, tuple) else got) == value, (name, model, key)
                checked += 1
    assert checked or name == "smoke"


def test_opening_a_notebook_in_jupyterlab_continues_the_demo_run(repo):
    """Run interactively, a notebook uses its own defaults: they must be demo.yaml's, or a student who
    opens notebook 02 after the demo would retrain runs/demo's models with other settings."""
    from adunet_lib.runner.params import declared_parameters

    demo = load_params(repo / "params" / "demo.yaml")
    for nb in find_notebooks(repo / "notebooks"):
        declared = declared_parameters(nb.path)
        wanted = {k: v for k, v in demo.for_notebook(nb).items() if k not in ("interactive", "run_dir", "figure_dir")}
        assert {k: declared[k].default for k in wanted} == wanted, nb.name
        assert declared["run_dir"].default == "runs/demo" and declared["interactive"].default is True


def test_every_notebook_declares_the_common_keys(repo):
    from adunet_lib.runner.params import declared_parameters

    for nb in find_notebooks(repo / "notebooks"):
        assert COMMON_KEYS <= set(declared_parameters(nb.path)), nb.name


def test_unknown_key_is_named_with_its_block_and_file(repo, tmp_path):
    path = _write(tmp_path, "common:\n  seed: 1\npreprocessing:\n  slice_sise: 64\n")
    with pytest.raises(ParamsError, match=r"exp.yaml: unknown key preprocessing.slice_sise"):
        plan(path, root=repo)


def test_wrong_type_is_named(repo, tmp_path):
    path = _write(tmp_path, "common:\n  seed: one\n")
    with pytest.raises(ParamsError, match=r"key common.seed must be int, got str 'one'"):
        plan(path, root=repo)


def test_unknown_block_and_bad_range_are_refused(repo, tmp_path):
    with pytest.raises(ParamsError, match="unknown block.*preprocesing"):
        plan(_write(tmp_path, "preprocesing:\n  slice_size: 64\n"), root=repo)
    with pytest.raises(ParamsError, match="--to 42"):
        plan(_write(tmp_path, "common: {}\n"), stop="42", root=repo)


def test_paths_become_absolute_and_default_to_the_params_name(repo, tmp_path):
    run_dir, selected = plan(_write(tmp_path, "common:\n  seed: 2\n"), stop="01", root=repo)
    assert run_dir == repo / "runs" / "exp"
    nb, values = selected[0]
    assert values["figure_dir"] == str(repo / "figures" / "exp") and values["seed"] == 2
    assert "internal_data" not in values  # not in the file: the notebook's own default applies


@pytest.mark.parametrize("value,type_name,ok", [
    (3, "int", True), (3, "float", True), (3.5, "int", False), (True, "int", False), ("x", "str | None", True),
    (None, "str | None", True), ([1, 2], "list[int]", True), ([1, "a"], "list[int]", False), ("a", "list", False),
])
def test_type_rules(value, type_name, ok):
    assert type_ok(value, type_name) is ok
