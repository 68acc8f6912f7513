"""Params files: a ``common`` block plus one block per notebook, checked before anything runs.

A params file (``params/<name>.yaml``)::

    common:            # given to every notebook
      run_dir: runs/demo
      seed: 0
    preprocessing:     # given to notebooks/01_preprocessing.ipynb only
      slice_size: 64

A block is named after its notebook without the number (``01_preprocessing`` → ``preprocessing``).
Every key must be declared in the notebook's ``parameters`` cell, with a compatible type — papermill
itself only logs "unknown parameter" and carries on, which silently runs the wrong experiment.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path
from typing import Any

import yaml

from adunet_lib.errors import ParamsError

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
class Declared:
    """A parameter as declared in a notebook's parameters cell: ``name: type = default  # help``."""

    name: str
    type_name: str
    default: Any
    help: str


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


def declared_parameters(notebook: Path) -> dict[str, Declared]:
    """Parameters declared in the notebook's cell tagged ``parameters``."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ParamsError(f"{notebook}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    out: dict[str, Declared] = {}
    for line in cells[0].source.splitlines():
        match = re.match(r"^(?P<name>[A-Za-z_]\w*)\s*:\s*(?P<type>[^=]+?)\s*=\s*(?P<value>.+?)\s*(#\s*(?P<help>.*))?$",
                         line)
        if not match:
            continue
        try:
            default = ast.literal_eval(match["value"])
        except (ValueError, SyntaxError):
            raise ParamsError(f"{notebook}: parameter {match['name']} must have a literal default") from None
        out[match["name"]] = Declared(match["name"], match["type"].strip(), default, (match["help"] or "").strip())
    return out


_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "list": (list,), "dict": (dict,),
}


def type_ok(value: Any, type_name: str) -> bool:
    """Does ``value`` (from YAML) fit the annotation ``type_name`` (``int``, ``str | None``, ``list[int]`` …)?"""
    for option in (t.strip() for t in type_name.split("|")):
        if option == "None":
            if value is None:
                return True
            continue
        base = option.split("[")[0].strip()
        allowed = _TYPES.get(base)
        if allowed is None:
            return True  # an annotation we do not model: accept
        if isinstance(value, bool) and bool not in allowed:
            continue  # YAML true/false is not a number
        if isinstance(value, allowed):
            if base == "list" and "[" in option:
                inner = option[option.index("[") + 1: option.rindex("]")]
                if not all(type_ok(v, inner) for v in value):
                    continue
            return True
    return False


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
        declared = declared_parameters(nb.path)
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
