"""Params files: a ``common`` block plus one block per notebook, checked before anything runs.

A params file (``params/<name>.yaml``)::

    common:            # given to every notebook
      run_dir: runs/demo
      seed: 0
    preprocessing:     # given to notebooks/01_preprocessing.ipynb only
      slice_size: 64

A block is named after its notebook without the number (``01_preprocessing`` → ``preprocessing``).
Every key must be a parameter of the notebook's dataclass (:func:`notebook_classes`: one
:class:`~adunet_lib.parameters.NotebookParams` per notebook, the single home of its parameters), with
a compatible type — papermill itself only logs "unknown parameter" and carries on, which silently runs
the wrong experiment. The notebook's ``parameters`` cell is the dataclass rendered
(:func:`~adunet_lib.parameters.render_parameters_cell`); :func:`sync_notebooks` rewrites it, in the
``.ipynb`` and its paired ``.py``, after a parameter changed::

    python -m adunet_lib.runner.params --sync     # or --check: exit 1 naming each stale cell
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from adunet_lib.errors import ParamsError
from adunet_lib.parameters import Declared, NotebookParams, render_parameters_cell, type_ok

__all__ = ["Declared", "Notebook", "Params", "declared_parameters", "find_notebooks", "load_params",
           "notebook_classes", "params_class", "parameters_cell", "sync_notebooks", "type_ok", "validate"]

NOTEBOOK_PATTERN = re.compile(r"^(?P<number>\d\d)_(?P<block>[a-z0-9_]+)\.ipynb$")
COMMON = "common"


@dataclasses.dataclass(frozen=True)
class Notebook:
    number: str
    block: str
    path: Path

    @property
    def name(self) -> str:
        return self.path.stem


@dataclasses.dataclass(frozen=True)
class Params:
    name: str
    path: Path
    common: dict[str, Any]
    blocks: dict[str, dict[str, Any]]

    def for_notebook(self, notebook: Notebook) -> dict[str, Any]:
        return {**self.common, **self.blocks.get(notebook.block, {})}


def find_notebooks(folder: str | Path) -> list[Notebook]:
    """The numbered notebooks ``NN_<block>.ipynb`` of ``folder``, in order."""
    folder = Path(folder)
    found = []
    for path in sorted(folder.glob("*.ipynb")):
        match = NOTEBOOK_PATTERN.match(path.name)
        if match:
            found.append(Notebook(match["number"], match["block"], path))
    if not found:
        raise ParamsError(f"{folder}: no numbered notebooks (NN_name.ipynb) found")
    return found


def load_params(path: str | Path) -> Params:
    """Read a params YAML file (no checks against notebooks yet; see :func:`validate`)."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of blocks (common, preprocessing, …)")
    blocks = {}
    for key, value in data.items():
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ParamsError(f"{path}: block {key!r} must be a mapping of parameters")
        blocks[str(key)] = value
    common = blocks.pop(COMMON, {})
    return Params(name=path.stem, path=path, common=common, blocks=blocks)


def notebook_classes() -> dict[str, type[NotebookParams]]:
    """Notebook name → the dataclass of its parameters (imported here, not at start-up: the training
    notebooks' module brings torch)."""
    from adunet_lib.anomaly_maps.params import MapsParams
    from adunet_lib.anomaly_models.params import AutoencodersParams, DiffusionParams, FixedPointGANParams
    from adunet_lib.evaluation.params import EvaluationParams
    from adunet_lib.preprocessing.params import PreprocessingParams
    from adunet_lib.segmentation.params import SegmentationParams

    return {cls.NOTEBOOK: cls for cls in (PreprocessingParams, AutoencodersParams, DiffusionParams,
                                          FixedPointGANParams, MapsParams, SegmentationParams, EvaluationParams)}


def params_class(notebook: Notebook | Path | str) -> type[NotebookParams]:
    """The parameters dataclass of a notebook (a :class:`Notebook`, its path or its name)."""
    name = notebook.name if isinstance(notebook, Notebook) else Path(notebook).stem
    classes = notebook_classes()
    if name not in classes:
        raise ParamsError(f"notebook {name} has no parameters dataclass; add one to "
                          f"adunet_lib.runner.params.notebook_classes (have {', '.join(classes)})")
    return classes[name]


def declared_parameters(notebook: Notebook | Path | str) -> dict[str, Declared]:
    """The parameters of a notebook, as its dataclass declares them (name → type, default, help)."""
    return params_class(notebook).declared()


_PY_CELL = re.compile(r"^# %%.*\btags=\[.*\"parameters\".*\]")


def parameters_cell(path: str | Path) -> str:
    """The source of the cell tagged ``parameters`` of a notebook (``.ipynb``) or of its paired
    ``.py`` (jupytext percent format)."""
    path = Path(path)
    if path.suffix == ".py":
        lines = path.read_text(encoding="utf-8").splitlines()
        start, stop = _py_cell_span(path, lines)
        return "\n".join(lines[start:stop]).strip("\n")
    cells = [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"]
             if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ParamsError(f"{path}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    source = cells[0]["source"]
    return "".join(source) if isinstance(source, list) else source


def _py_cell_span(path: Path, lines: list[str]) -> tuple[int, int]:
    """Lines [start, stop) of the parameters cell's body in a percent-format ``.py``."""
    marks = [i for i, line in enumerate(lines) if _PY_CELL.match(line)]
    if len(marks) != 1:
        raise ParamsError(f"{path}: expected exactly one '# %% tags=[\"parameters\"]' cell, found {len(marks)}")
    stop = next((i for i in range(marks[0] + 1, len(lines)) if lines[i].startswith("# %%")), len(lines))
    return marks[0] + 1, stop


def stale_cells(folder: str | Path, classes: dict[str, type[NotebookParams]] | None = None) -> list[Path]:
    """The notebooks (``.ipynb`` and ``.py``) of ``folder`` whose parameters cell is not their
    dataclass's rendering."""
    classes = notebook_classes() if classes is None else classes
    stale = []
    for nb in find_notebooks(folder):
        wanted = render_parameters_cell(classes[nb.name]) if nb.name in classes else None
        for path in (nb.path, nb.path.with_suffix(".py")):
            if wanted is not None and path.is_file() and parameters_cell(path) != wanted:
                stale.append(path)
    return stale


def sync_notebooks(folder: str | Path, classes: dict[str, type[NotebookParams]] | None = None,
                   log: Callable[[str], None] = print) -> list[Path]:
    """Write each notebook's parameters cell from its dataclass, in the ``.ipynb`` and the paired
    ``.py`` alike (the rest of both files is kept byte for byte). Returns the files rewritten."""
    classes = notebook_classes() if classes is None else classes
    written = []
    for path in stale_cells(folder, classes):
        text = render_parameters_cell(classes[path.stem])
        if path.suffix == ".py":
            lines = path.read_text(encoding="utf-8").splitlines()
            start, stop = _py_cell_span(path, lines)
            tail = lines[stop:]
            lines[start:] = text.splitlines() + ([""] if tail else []) + tail
            path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        else:
            notebook = json.loads(path.read_text(encoding="utf-8"))
            cell = next(c for c in notebook["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
            cell["source"] = text.splitlines(keepends=True)
            path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        log(f"{path}: parameters cell written from {classes[path.stem].__name__}")
        written.append(path)
    return written


def validate(params: Params, notebooks: list[Notebook]) -> dict[str, dict[str, Any]]:
    """Check every key of every block against the notebooks' declarations.

    Returns:
        notebook name → the parameters to inject.

    Raises:
        ParamsError: naming the key, the block and the file.
    """
    by_block = {nb.block: nb for nb in notebooks}
    unknown_blocks = sorted(set(params.blocks) - set(by_block))
    if unknown_blocks:
        raise ParamsError(f"{params.path}: unknown block(s) {', '.join(unknown_blocks)}; "
                          f"blocks are 'common' and {', '.join(by_block)}")
    result = {}
    for nb in notebooks:
        cls = params_class(nb)
        if parameters_cell(nb.path) != render_parameters_cell(cls):
            raise ParamsError(f"{nb.path}: its parameters cell is not {cls.__name__}'s ({cls.__module__}); "
                              "run python -m adunet_lib.runner.params --sync")
        declared = cls.declared()
        for block_name, block in ((COMMON, params.common), (nb.block, params.blocks.get(nb.block, {}))):
            for key, value in block.items():
                if key not in declared:
                    raise ParamsError(f"{params.path}: unknown key {block_name}.{key} "
                                      f"(not a parameter of notebook {nb.name})")
                if not type_ok(value, declared[key].type_name):
                    raise ParamsError(f"{params.path}: key {block_name}.{key} must be {declared[key].type_name}, "
                                      f"got {type(value).__name__} {value!r}")
        result[nb.name] = params.for_notebook(nb)
    return result


def relocated(params_path: str | Path, folder: str | Path) -> Path:
    """A copy of a params file whose run and figure folders live in ``folder`` (``runs/<name>``,
    ``figures/<name>``), written as ``folder/<name>.yaml``: the same job, without touching the
    repository's own ``runs/`` and ``figures/`` (benchmarks, tests, a second try next to the first)."""
    params_path, folder = Path(params_path), Path(folder)
    data = yaml.safe_load(params_path.read_text(encoding="utf-8")) or {}
    name = params_path.stem
    data.setdefault(COMMON, {}).update(run_dir=str(folder / "runs" / name), figure_dir=str(folder / "figures" / name))
    out = folder / f"{name}.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m adunet_lib.runner.params --sync|--check [NOTEBOOKS_FOLDER]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m adunet_lib.runner.params",
                                     description="Keep each notebook's parameters cell equal to its dataclass.")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--sync", action="store_true", help="rewrite the cells that differ (.ipynb and .py)")
    what.add_argument("--check", action="store_true", help="exit 1 naming each cell that differs")
    parser.add_argument("folder", nargs="?", default=str(Path(__file__).resolve().parents[2] / "notebooks"))
    args = parser.parse_args(argv)
    if args.sync:
        written = sync_notebooks(args.folder)
        print(f"{len(written)} file(s) rewritten" if written else "every parameters cell is up to date")
        return 0
    stale = stale_cells(args.folder)
    for path in stale:
        print(f"{path}: parameters cell differs from its dataclass; run python -m adunet_lib.runner.params --sync",
              file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
