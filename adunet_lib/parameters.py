"""Notebook parameters: one frozen dataclass per notebook, the single home of their names, types,
defaults, help and sense rules.

Everything else derives from the dataclass: the notebook's ``parameters`` cell is its rendering
(:func:`render_parameters_cell`, kept equal by ``python -m adunet_lib.runner.params --sync`` and a
test), ``adunet reproduce`` checks a params file's keys, types and values against it
(:mod:`adunet_lib.runner.params`, :mod:`adunet_lib.runner.sense`), and the notebook and ``adunet run``
give the same instance to the stage's entry point::

    # the notebook, after the rendered parameters cell (and papermill's injected one)
    params = MapsParams.from_namespace(globals())
    # adunet run PARAMS --stage 05, from the params file's common block + its anomaly_maps block
    params = MapsParams.from_params(values)
    stage.run(ctx, params)

A parameter is a field declared with :func:`param`: its default (the CPU demo's, ``params/demo.yaml``'s),
a one-line help (the comment in the notebook cell) and, optionally, what values make sense::

    blur_kernel: int = param(4, "Φ's kernel size in model-slice pixels", check=lambda v: v >= 1,
                             need="must be at least 1 pixel")

Annotations are kept as written (``from __future__ import annotations``): ``int``, ``float``, ``str``,
``bool``, ``list`` (or ``list[int]``), ``dict``, with ``| None`` — the types a params file (YAML) has.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from adunet_lib.errors import ParamsError

P = TypeVar("P", bound="NotebookParams")

#: The cell's two section lines; the first parameters of every notebook are :class:`NotebookParams`'.
COMMON_HEADER = "# --- common: every notebook declares these ---"
OWN_HEADER = ("# --- this notebook: defaults = params/demo.yaml (CPU demo); the paper's settings are in "
              "params/paper.yaml ---")


def param(default: Any, help: str, check: Callable[[Any], bool] | None = None, need: str = "") -> Any:
    """A notebook parameter: its default, its help line and (optionally) the rule its value must meet.

    Args:
        default: the value a notebook runs with when the params file does not set it (a list or dict
            is copied for each instance).
        help: one line, shown as the comment of the parameter in the notebook's cell (no ``=``:
            papermill would misread the line).
        check: ``value → bool``; a value it refuses stops ``adunet reproduce`` before anything runs.
        need: what ``check`` wants, e.g. ``"must be at least 1"`` (the end of the one-line error).
    """
    if "=" in help:
        raise ValueError(f"help {help!r}: no '=' in a parameter's help (papermill reads it as a second assignment)")
    metadata: dict[str, Any] = {"help": help}
    if check is not None:
        metadata["check"] = (check, need)
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def override(cls: type[NotebookParams], name: str, default: Any, help: str | None = None) -> Any:
    """Parameter ``name`` of ``cls`` with another default (and help) in a notebook's own subclass; its
    sense rule stays. The three training notebooks share :class:`TrainingParams
    <adunet_lib.anomaly_models.params.TrainingParams>` so, each with its own budget."""
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    check, need = field.metadata.get("check", (None, ""))
    return param(default, field.metadata["help"] if help is None else help, check, need)


@dataclasses.dataclass(frozen=True)
class Declared:
    """One parameter as its dataclass declares it."""

    name: str
    type_name: str
    default: Any
    help: str
    check: tuple[Callable[[Any], bool], str] | None = None


@dataclasses.dataclass(frozen=True)
class NotebookParams:
    """The parameters every notebook has: the params file's ``common`` block.

    A notebook's own class derives from this one and names its notebook in ``NOTEBOOK``.
    """

    #: the notebook's file name without extension, e.g. ``05_anomaly_maps``; its params block is the
    #: part after the number (``anomaly_maps``)
    NOTEBOOK: ClassVar[str] = ""

    run_dir: str = param("runs/demo", "run folder (relative paths are taken from the project root)")
    figure_dir: str = param("figures/demo", "where tables and figures of this params file go")
    internal_data: str = param("synthetic",
                               '"synthetic", a PI-CAI folder or a manifest .csv: training + validation')
    external_data: str = param("synthetic",
                               '"synthetic", a Prostate158 / PI-CAI folder, a manifest, or "none"')
    seed: int = param(0, "seeds training: model weights, batches, augmentation, nnU-Net",
                      check=lambda v: v >= 0, need="must be ≥ 0")
    data_seed: int = param(-1, "draws the synthetic cohort, the folds and the bootstrap (-1: the same as seed)",
                           check=lambda v: v >= -1, need="must be ≥ 0 (or -1: the same as seed)")
    device: str = param("cpu", "cpu, cuda, cuda:N or mps")
    interactive: bool = param(True, "widgets in JupyterLab; static figures when false (headless runs)")

    @classmethod
    def block(cls) -> str:
        """The params file's block for this notebook (``05_anomaly_maps`` → ``anomaly_maps``)."""
        return cls.NOTEBOOK.split("_", 1)[1] if "_" in cls.NOTEBOOK else cls.NOTEBOOK

    @classmethod
    def declared(cls) -> dict[str, Declared]:
        """Every parameter, in the cell's order: the common ones, then the notebook's own."""
        return {f.name: Declared(f.name, _type_name(f), _default(f), f.metadata.get("help", ""),
                                 f.metadata.get("check")) for f in dataclasses.fields(cls)}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {name: d.default for name, d in cls.declared().items()}

    @classmethod
    def from_params(cls: type[P], values: Mapping[str, Any]) -> P:
        """From a params file's ``common`` + block values (``adunet run``); missing keys keep their
        default. An unknown key or a wrong type is one :class:`ParamsError` line."""
        declared = cls.declared()
        unknown = [k for k in values if k not in declared]
        if unknown:
            raise ParamsError(f"unknown parameter(s) {', '.join(unknown)} (not parameters of notebook {cls.NOTEBOOK})")
        for key, value in values.items():
            if not type_ok(value, declared[key].type_name):
                raise ParamsError(f"parameter {key} of notebook {cls.NOTEBOOK} must be {declared[key].type_name}, "
                                  f"got {type(value).__name__} {value!r}")
        return cls(**values)

    @classmethod
    def from_namespace(cls: type[P], namespace: Mapping[str, Any]) -> P:
        """From a notebook's variables (``globals()``): what its parameters cell and papermill's
        injected cell set."""
        return cls.from_params({name: namespace[name] for name in cls.declared() if name in namespace})


def _type_name(field: dataclasses.Field) -> str:
    return field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise TypeError(f"parameter {field.name} has no default: every notebook parameter needs one")


def common_names() -> list[str]:
    """The parameters of the ``common`` block."""
    return [f.name for f in dataclasses.fields(NotebookParams)]


def literal(value: Any) -> str:
    """``value`` as a Python literal the way the cells spell it: double-quoted strings, lists for tuples."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"{value!r}: a parameter's default must be a literal (str, number, bool, None, list, dict)")


def render_parameters_cell(cls: type[NotebookParams]) -> str:
    """The source of the notebook's ``parameters`` cell: one ``name: type = default  # help`` line per
    field, the common ones first (what :func:`adunet_lib.runner.params.sync_notebooks` writes)."""
    module = cls.__module__.replace(".", "/") + ".py"
    lines = [f"# {cls.__name__} in {module}: change parameters there, then "
             "python -m adunet_lib.runner.params --sync", COMMON_HEADER]
    common = set(common_names())
    for name, d in cls.declared().items():
        if name not in common and OWN_HEADER not in lines:
            lines.append(OWN_HEADER)
        lines.append(f"{name}: {d.type_name} = {literal(d.default)}" + (f"  # {d.help}" if d.help else ""))
    return "\n".join(lines)


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


def sense_problem(cls: type[NotebookParams], values: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first of ``values`` (parameter → value) that its field's ``check`` refuses: (name, what it
    must be); ``None`` when every value makes sense."""
    for name, d in cls.declared().items():
        if d.check is None or name not in values:
            continue
        test, need = d.check
        try:
            ok = bool(test(values[name]))
        except TypeError:
            ok = False
        if not ok:
            return name, need
    return None
