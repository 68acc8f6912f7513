import pytest

from adunet_lib.errors import ParamsError
from adunet_lib.runner.params import find_notebooks, load_params, type_ok, validate
from adunet_lib.runner.reproduce import plan

COMMON_KEYS = {"run_dir", "figure_dir", "internal_data", "external_data", "seed", "data_seed", "device", "interactive"}


def _write(tmp_path, text):
    path = tmp_path / "exp.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_params_files_validate_against_the_notebooks(repo):
    notebooks = find_notebooks(repo / "notebooks")
    for name in ("demo", "smoke", "paper", "bench"):
        injected = validate(load_params(repo / "params" / f"{name}.yaml"), notebooks)
        assert set(injected) == {nb.name for nb in notebooks}


@pytest.mark.parametrize("name", ["demo", "smoke", "paper"])
def test_shipped_model_configs_are_hyperparameters_the_models_know(repo, name):
    """A typo in a model's hyperparameters would otherwise only surface hours into a run."""
    from adunet_lib.anomaly_models.registry import get

    params = load_params(repo / "params" / f"{name}.yaml")
    trained = {}
    for block in ("autoencoders", "diffusion", "fixed_point_gan"):
        for model, hyper in params.blocks[block]["models"].items():
            config = get(model).resolve_config(dict(hyper or {}))
            for key, value in (hyper or {}).items():
                got = getattr(config, key)
                assert (list(got) if isinstance(got, tuple) else got) == value, (name, model, key)
            trained[model] = block
    # the paper's four models are trained by every shipped params file, each in its notebook
    assert trained == {"dense_ae": "autoencoders", "spatial_ae": "autoencoders", "ddpm": "diffusion",
                       "fpgan": "fixed_point_gan"}


def test_an_unregistered_model_in_params_is_one_line_naming_it(tmp_path):
    from adunet_lib.anomaly_models.stage import check_models

    with pytest.raises(ParamsError, match="unknown model.*vae_x.*registered: dense_ae"):
        check_models({"dense_ae": {}, "vae_x": {}})


def test_a_parameter_two_notebooks_declare_has_one_default(repo):
    """Declared once or checked equal: the common block is declared by every notebook with one type and
    default; a per-notebook budget may repeat a name; what 06 and 07 share (variants, map model) is
    declared by 06 alone and read by 07 from the run."""
    from adunet_lib.runner.params import declared_parameters

    owners: dict[str, dict[str, tuple]] = {}
    for nb in find_notebooks(repo / "notebooks"):
        for key, decl in declared_parameters(nb.path).items():
            owners.setdefault(key, {})[nb.name] = (decl.type_name, decl.default)
    for key in COMMON_KEYS:
        assert len(set(owners[key].values())) == 1, (key, owners[key])
    shared = {k for k, v in owners.items() if len(v) > 1} - COMMON_KEYS
    assert shared <= {"channels", "modes", "iterations", "batch_size", "checkpoint_every", "models"}, shared
    assert list(owners["variants"]) == ["06_segmentation"] and list(owners["map_model"]) == ["06_segmentation"]


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


def test_papermill_parses_every_parameter_line(repo):
    """papermill's own parser must read every declared parameter: a line it cannot parse (e.g. an "=" in
    the comment) makes every run warn "Passed unknown parameter" for a key that is in fact declared."""
    import nbformat
    from papermill.translators import PythonTranslator

    from adunet_lib.runner.params import declared_parameters

    for nb in find_notebooks(repo / "notebooks"):
        cell = next(c for c in nbformat.read(str(nb.path), 4).cells if "parameters" in c.metadata.get("tags", []))
        parsed = {p.name for p in PythonTranslator.inspect(cell)}
        assert parsed == set(declared_parameters(nb.path)), (nb.name, set(declared_parameters(nb.path)) - parsed)


def test_paper_yaml_settings_from_the_paper_and_the_reference_code_reach_the_models(repo):
    """#27: the classifier's batch 10 and attention at 16 (the paper), Baur's bottlenecks, PI-CAI's
    lesion candidates; Wolleb's class-conditional DDPM (measured better or equal); nnU-Net's own loss and
    checkpoint (PI-CAI's are offered, not chosen); the demo and smoke files keep the settings their figures
    were made with."""
    from torch import nn

    from adunet_lib.anomaly_models import create
    from adunet_lib.anomaly_models.registry import get
    from adunet_lib.segmentation.stage import SegmentationSettings

    paper = load_params(repo / "params" / "paper.yaml").blocks
    assert paper["diffusion"]["batch_size"] == 10
    ddpm = get("ddpm").resolve_config(dict(paper["diffusion"]["models"]["ddpm"]))
    assert tuple(ddpm.classifier_attention_resolutions) == (16,) == tuple(ddpm.attention_resolutions)
    assert ddpm.class_conditional is True  # Wolleb's, chosen by figures/bench/ddpm_class_conditional.txt
    assert ddpm.classifier_design == "wolleb"  # Wolleb's classifier, chosen by figures/bench/parity_ddpm.md
    for name in ("dense_ae", "spatial_ae"):
        hyper = dict(paper["autoencoders"]["models"][name])
        assert hyper["bottleneck_design"] == "baur"
        net = create(name, 1, paper["preprocessing"]["slice_size"], hyper).net
        widths = [m.out_channels for m in net.bottleneck.modules() if isinstance(m, nn.Conv2d)]
        assert widths == ([16, 128] if name == "dense_ae" else [])  # Baur: 128 → 16 → 128; spatial keeps 128
    segmentation = SegmentationSettings.from_params(**{k: paper["segmentation"][k] for k in
                                                       ("loss", "checkpoint", "lesion_threshold")})
    assert (segmentation.loss, segmentation.checkpoint, segmentation.lesion_threshold) == ("dice_ce", "final", "dynamic")
    for name in ("demo", "smoke"):
        blocks = load_params(repo / "params" / f"{name}.yaml").blocks
        assert not {"loss", "checkpoint", "lesion_threshold"} & set(blocks["segmentation"])  # notebook defaults
        for model, hyper in blocks["autoencoders"]["models"].items():
            assert get(model).resolve_config(dict(hyper or {})).bottleneck_design == "adunet"
        demo_ddpm = get("ddpm").resolve_config(dict(blocks["diffusion"]["models"]["ddpm"]))
        assert demo_ddpm.class_conditional is False and demo_ddpm.classifier_design == "adunet"
