"""The papermill runner: headless runs, failures that name their cell, params checked first."""

import json

import pytest

from adunet_lib.runner.reproduce import NotebookFailed, reproduce


def _params(tmp_path, extra=""):
    path = tmp_path / "tiny.yaml"
    path.write_text(f"""
common:
  run_dir: {tmp_path / 'runs' / 'tiny'}
  figure_dir: {tmp_path / 'figures' / 'tiny'}
  seed: 1
  interactive: false
preprocessing:
  synth_internal_cases: 4
  synth_external_cases: 2
  slice_size: 32
  show_cases: 1
{extra}""", encoding="utf-8")
    return path


@pytest.mark.slow
def test_notebook_01_runs_headless_and_writes_its_outputs(repo, smoke_series):
    """What `adunet reproduce --to 01` left of the shared smoke series (its snapshot after notebook 01)."""
    run, _, timings = smoke_series
    after = run.parent.parent / "after_01"
    assert "01_preprocessing" in timings
    first = after / "runs" / "smoke"
    executed = json.loads((first / "notebooks" / "01_preprocessing.ipynb").read_text(encoding="utf-8"))
    injected = [c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and "synth_internal_cases = 12" in "".join(injected[0]["source"])  # smoke.yaml's, not 24
    for name in ("cases.csv", "slices.csv"):
        assert (first / "preprocessed" / name).stat().st_size > 0
    for name in ("fig2_preprocessing.png", "viewer_preprocessing.png"):
        assert (after / "figures" / "smoke" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the committed notebook is untouched: no outputs were written into it
    source = json.loads((repo / "notebooks" / "01_preprocessing.ipynb").read_text(encoding="utf-8"))
    assert all(not c.get("outputs") for c in source["cells"] if c["cell_type"] == "code")
    record = json.loads((first / "reproduce.json").read_text(encoding="utf-8"))
    assert list(record) == ["01_preprocessing"] and record["01_preprocessing"]["status"] == "ok"


@pytest.mark.slow
def test_a_failing_notebook_names_the_cell_and_the_error(repo, tmp_path):
    path = _params(tmp_path)
    text = path.read_text(encoding="utf-8").replace("  seed: 1\n", f"  seed: 1\n  internal_data: {tmp_path / 'nowhere'}\n")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(NotebookFailed) as info:
        reproduce(path, stop="01", root=repo, log=lambda _: None, stream_output=False)
    message = str(info.value)
    assert "notebook 01_preprocessing failed in cell" in message
    assert "DatasetError" in message and "nowhere: dataset not found" in message
    assert "executed copy" in message


def test_cli_reports_params_errors_before_running_anything(repo, tmp_path, capsys):
    from adunet_lib.cli import main

    path = tmp_path / "bad.yaml"
    path.write_text(f"common:\n  run_dir: {tmp_path / 'r'}\npreprocessing:\n  slice_size: big\n", encoding="utf-8")
    assert main(["reproduce", str(path)]) == 2
    err = capsys.readouterr().err
    assert "key preprocessing.slice_size must be int" in err and "bad.yaml" in err
    assert not (tmp_path / "r").exists()


def test_a_params_file_kept_outside_the_repository_finds_the_notebooks(repo, tmp_path, monkeypatch):
    """Users keep their own params next to their data and call adunet from there."""
    from adunet_lib.runner.reproduce import plan

    monkeypatch.chdir(tmp_path)
    path = tmp_path / "mine.yaml"
    path.write_text("common:\n  run_dir: runs/mine\nevaluation:\n  n_bootstrap: 10\n", encoding="utf-8")
    run_dir, selected = plan(path, start="07")
    assert [nb.name for nb, _ in selected] == ["07_evaluation"] and selected[0][0].path.parent == repo / "notebooks"
    assert run_dir == repo / "runs" / "mine" and selected[0][1]["n_bootstrap"] == 10
