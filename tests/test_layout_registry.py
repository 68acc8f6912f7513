"""The dataset layout registry (#29 item 3): layouts are detected and listed from
``adunet_lib/data/layouts.py``, and one added by ARCHITECTURE.md's recipe — the toy ``flat`` layout in
``tests/plugins/adunet_flat_layout.py``, registered through ``ADUNET_LAYOUT_MODULES`` — is written,
detected, checked and listed with no other change to adunet."""

from __future__ import annotations

import argparse
import re
import sys

import pytest

from conftest import REPO

from adunet_lib.data import layouts
from adunet_lib.errors import AdunetError, DatasetError

TOY_MODULE = "adunet_flat_layout"
TOY_FILE = f"tests/plugins/{TOY_MODULE}.py"
BUILTIN = ["picai", "prostate158", "manifest"]


@pytest.fixture
def flat(monkeypatch):
    """The toy layout registered the recipe's way for one test; the registry is as before afterwards."""
    before = dict(layouts.LAYOUTS)
    monkeypatch.setenv(layouts.EXTRA_MODULES_VARIABLE, TOY_MODULE)
    yield "flat"
    layouts.LAYOUTS.clear()
    layouts.LAYOUTS.update(before)
    sys.modules.pop(TOY_MODULE, None)


def _run(capsys, *argv):
    from adunet_lib.cli import main

    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def _option(parser: argparse.ArgumentParser, command: str, dest: str) -> argparse.Action:
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return next(a for a in commands.choices[command]._actions if a.dest == dest)


def test_builtin_layouts_are_registered_in_todays_detection_order():
    from adunet_lib.data import synthetic

    assert layouts.available()[:3] == BUILTIN
    assert synthetic.LAYOUTS[:3] == tuple(BUILTIN)
    assert layouts.synthetic_default("internal") == "picai" and layouts.synthetic_default("external") == "prostate158"


def test_unknown_layouts_are_one_line_naming_the_registered_ones(tmp_path):
    with pytest.raises(DatasetError) as error:
        layouts.get("nifti_zoo")
    assert str(error.value) == "unknown layout 'nifti_zoo'; registered layouts: picai, prostate158, manifest"
    from adunet_lib.data.readers import open_dataset

    with pytest.raises(DatasetError) as error:
        open_dataset(tmp_path)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{tmp_path}: unknown dataset layout (expected a PI-CAI folder")
    assert message.endswith("registered layouts: picai, prostate158, manifest)")


def test_a_layout_added_by_the_recipe_is_written_detected_checked_and_listed(flat, capsys, tmp_path):
    from adunet_lib.cli import build_parser
    from adunet_lib.data import synthetic
    from adunet_lib.data.readers import open_dataset

    out = tmp_path / "flat_cohort"
    code, text, _ = _run(capsys, "synth", out, "--layout", "flat", "--cases", 2, "--seed", 1)
    assert code == 0 and f"in the flat layout to {out}" in text
    assert sorted(p.name for p in out.iterdir()) == ["flat000", "flat001", "synth.json"]

    dataset = open_dataset(out)
    assert dataset.layout == "flat" and dataset.case_ids == ["flat000", "flat001"]
    assert all(case.labeled and set(case.images) == {"t2w", "adc", "hbv"} for case in dataset)

    code, text, _ = _run(capsys, "check", out, "--quiet")
    lines = text.splitlines()
    assert code == 0 and lines[0] == f"read 2 case(s) from {out} (flat layout)" and lines[-1].startswith("ok: no errors")
    assert "not used" not in text  # the reader accounts for every file it wrote

    # every list of layouts names it: CLI choices and help, synthetic.LAYOUTS, the unknown-layout messages
    assert layouts.available() == [*BUILTIN, "flat"] and synthetic.LAYOUTS == (*BUILTIN, "flat")
    synth = _option(build_parser(), "synth", "layout")
    assert _option(build_parser(), "check", "data_dir").help.endswith("(layouts: picai, prostate158, manifest, flat)")
    assert synth.choices == [*BUILTIN, "flat"] and "flat (one folder per study)" in synth.help
    with pytest.raises(SystemExit):
        _run(capsys, "synth", tmp_path / "x", "--layout", "nifti_zoo")
    assert "'flat'" in capsys.readouterr().err
    with pytest.raises(DatasetError, match=r"registered layouts: picai, prostate158, manifest, flat$"):
        layouts.get("nifti_zoo")
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _run(capsys, "check", empty)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "a flat folder of <case>/t2w.nii.gz; registered layouts: picai, prostate158, manifest, flat)" in err


def test_the_toy_layout_lives_only_in_its_module():
    """Nothing in the package names the toy layout: registering it took its module and the variable."""
    named = [p.relative_to(REPO) for p in (REPO / "adunet_lib").rglob("*.py") if TOY_MODULE in p.read_text("utf-8")]
    assert not named and "flat" not in layouts.available()


def test_a_layout_module_that_cannot_be_imported_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv(layouts.EXTRA_MODULES_VARIABLE, "adunet_no_such_layout")
    with pytest.raises(AdunetError, match="ADUNET_LAYOUT_MODULES: cannot import layout module 'adunet_no_such_layout'"):
        layouts.available()
    code, _, err = _run(capsys, "check", ".")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "adunet_no_such_layout" in err


def test_architecture_md_recipe_names_only_what_the_toy_layout_needed(repo):
    """The recipe row "read a new dataset layout" names one file — the layout's module (the toy's as the
    example) — and the variable the toy was registered with; none of the files a layout once needed."""
    text = (repo / "ARCHITECTURE.md").read_text(encoding="utf-8")
    row = next((line for line in text.splitlines() if line.startswith("| read a new dataset layout |")), None)
    assert row, "ARCHITECTURE.md's 'Where to change what' has no row 'read a new dataset layout'"
    quoted = re.findall(r"`([^`]+)`", row)
    files = {q for q in quoted if re.search(r"\.(py|md|yaml|csv)$", q) or q.startswith(("adunet_lib/", "tests/"))}
    assert files == {TOY_FILE}, files
    assert (repo / TOY_FILE).is_file()
    assert layouts.EXTRA_MODULES_VARIABLE in quoted
    assert "@register_layout(\"<name>\")" in quoted
    for old in ("readers.py", "synthetic.py", "cli.py", "stage.py", "LAYOUTS"):
        assert not any(old in q for q in quoted), old


def test_the_synthetic_external_layout_is_checked_against_the_registry(flat, repo, tmp_path):
    from adunet_lib.errors import ParamsError
    from adunet_lib.runner.reproduce import plan

    path = tmp_path / "exp.yaml"
    path.write_text("preprocessing:\n  synth_external_layout: prostate_158\n", encoding="utf-8")
    with pytest.raises(ParamsError, match=r"synth_external_layout = 'prostate_158' must be a layout with a synthetic "
                                          r"writer: picai, prostate158, manifest, flat"):
        plan(path, root=repo)
    path.write_text("preprocessing:\n  synth_external_layout: flat\n", encoding="utf-8")
    plan(path, root=repo)
