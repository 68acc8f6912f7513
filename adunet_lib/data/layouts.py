"""The dataset layout registry, beside the model registry: a dict of :class:`Layout` objects filled by a
decorator.

A layout is one module: a reader that returns a :class:`~adunet_lib.data.readers.Dataset`, a synthetic
writer (so ``adunet synth --layout`` and the tests can make a cohort in it), and a
:class:`Layout` subclass decorated with ``@register_layout("<name>")`` that says how to recognise a
dataset in it (:meth:`Layout.detect`). Its module goes in :data:`BUILTIN_MODULES` — or, for a layout
kept outside this package, in the environment variable ``ADUNET_LAYOUT_MODULES`` (comma-separated).
Then :func:`~adunet_lib.data.readers.open_dataset` detects it, ``adunet check`` reads it,
``adunet synth --layout`` writes it and every list of layouts (CLI choices and help, the
unknown-layout message, :data:`adunet_lib.data.synthetic.LAYOUTS`) names it; nothing else changes.

This module is light (no image libraries): ``adunet --help`` lists the layouts from it. A layout's
module should import its reader's and writer's heavy dependencies inside :meth:`Layout.read` and
:meth:`Layout.writer` for the same reason.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from adunet_lib.errors import AdunetError, DatasetError

if TYPE_CHECKING:
    from adunet_lib.data.readers import Dataset

LAYOUTS: dict[str, Layout] = {}

#: Modules whose import registers the built-in layouts (the "one registry line" per layout module).
BUILTIN_MODULES = ("adunet_lib.data.builtin_layouts",)

#: Environment variable naming extra layout modules (layouts kept outside this package).
EXTRA_MODULES_VARIABLE = "ADUNET_LAYOUT_MODULES"


class SyntheticWriter(Protocol):
    """What :meth:`Layout.writer` returns: :func:`~adunet_lib.data.synthetic.synthesize_cohort` calls
    ``write(i, study)`` for each synthetic study (``study``: ``t2w``, ``adc``, ``hbv``, ``zones`` and
    ``lesion`` as :class:`~adunet_lib.data.image.Image` — T2W, zones and lesion (values = ISUP) on the T2W
    grid, ADC/hbv on their own —, ``isup`` (the study's highest; ≥ 2 is csPCa), ``facts`` and
    ``no_masks`` (write no anatomical mask)); it writes the study in the layout and returns its case
    id. ``finish()`` writes what lists the studies (CSVs, marksheets) once all are written."""

    def write(self, i: int, study: dict[str, Any]) -> str: ...

    def finish(self) -> None: ...


class Layout:
    """One dataset layout. Subclass it, fill in the class attributes and methods, and decorate the class
    with ``@register_layout("<name>")`` (which sets :attr:`name` and registers one instance)."""

    name: ClassVar[str] = ""
    #: How the unknown-layout message and ``adunet check --help`` name a dataset in this layout
    #: ("a PI-CAI folder with images/").
    looks_like: ClassVar[str] = ""
    #: A few words for ``adunet synth --layout``'s help ("train/valid/test.csv, negatives without tumour file").
    summary: ClassVar[str] = ""
    #: The sets (``internal``, ``external``) whose synthetic cohort is written in this layout unless the
    #: params say otherwise (notebook 01's ``synth_external_layout``).
    synthetic_default_for: ClassVar[tuple[str, ...]] = ()
    #: What :func:`~adunet_lib.data.readers.open_dataset` opens in a synthetic cohort's folder:
    #: ``""`` the folder itself, else a file in it (the manifest layout: ``manifest.csv``).
    synthetic_entry: ClassVar[str] = ""

    def detect(self, path: Path) -> bool:
        """Is ``path`` (a folder or a file; it exists) a dataset in this layout? Fast: looks, reads no image.
        Layouts are tried in registration order, the built-in ones first."""
        raise NotImplementedError

    def read(self, path: Path, site: str | None = None, lesion_sources: tuple[str, ...] | None = None) -> Dataset:
        """The dataset at ``path`` (the layout's reader). ``site``: the cases' site (None: the layout's
        default); ``lesion_sources``: label sources in order of preference, for layouts that have
        several (PI-CAI's picai_labels; None: the layout's default; others ignore it)."""
        raise NotImplementedError

    def writer(self, out: Path, config: Any) -> SyntheticWriter:
        """A :class:`SyntheticWriter` of a synthetic cohort under ``out`` (``config``: the site's
        :class:`~adunet_lib.data.synthetic.SynthConfig`). A layout without one cannot be synthesised."""
        raise NotImplementedError

    @property
    def writes_synthetic(self) -> bool:
        """Has this layout a synthetic writer (can ``adunet synth --layout`` write it)?"""
        return type(self).writer is not Layout.writer


def register_layout(name: str):
    """Class decorator: ``@register_layout("picai")`` registers one instance of the :class:`Layout`
    subclass under ``name``."""

    def wrap(cls: type[Layout]) -> type[Layout]:
        if not (isinstance(cls, type) and issubclass(cls, Layout)):
            raise TypeError(f"@register_layout({name!r}) decorates a Layout subclass, not {cls!r}")
        if name in LAYOUTS and type(LAYOUTS[name]) is not cls:
            raise ValueError(f"layout name {name!r} is already registered by {type(LAYOUTS[name]).__qualname__}")
        cls.name = name
        LAYOUTS[name] = cls()
        return cls

    return wrap


def _load_builtins() -> None:
    extra = [m.strip() for m in os.environ.get(EXTRA_MODULES_VARIABLE, "").split(",") if m.strip()]
    for module in (*BUILTIN_MODULES, *extra):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            if module in BUILTIN_MODULES:
                raise
            raise AdunetError(f"{EXTRA_MODULES_VARIABLE}: cannot import layout module {module!r} ({exc})") from None


def available() -> list[str]:
    """Names of all registered layouts, in registration order (the built-in ones first)."""
    _load_builtins()
    return list(LAYOUTS)


def synthetic_layouts() -> list[str]:
    """Names of the registered layouts that ``adunet synth --layout`` can write."""
    return [name for name in available() if LAYOUTS[name].writes_synthetic]


def get(name: str) -> Layout:
    """The registered layout ``name``; an unknown name is a one-line :class:`DatasetError` listing the registered ones."""
    _load_builtins()
    if name not in LAYOUTS:
        raise DatasetError(f"unknown layout {name!r}; registered layouts: {', '.join(LAYOUTS)}")
    return LAYOUTS[name]


def synthetic_default(set_name: str) -> str:
    """The layout a synthetic cohort of ``set_name`` (``internal``, ``external``) is written in by default."""
    for name in available():
        if set_name in LAYOUTS[name].synthetic_default_for:
            return name
    raise DatasetError(f"no registered layout is the synthetic default for the {set_name} set")


def expected() -> str:
    """What a dataset may look like, every registered layout's :attr:`Layout.looks_like` in order."""
    phrases = [LAYOUTS[name].looks_like or f"a {name} dataset" for name in available()]
    return phrases[0] if len(phrases) == 1 else f"{', '.join(phrases[:-1])} or {phrases[-1]}"


def detect(path: Path) -> Layout:
    """The first registered layout (in registration order) that recognises ``path`` (which exists);
    none: a one-line :class:`DatasetError` saying what was expected and listing the registered layouts."""
    for name in available():
        if LAYOUTS[name].detect(path):
            return LAYOUTS[name]
    raise DatasetError(f"{path}: unknown dataset layout (expected {expected()}; registered layouts: "
                       f"{', '.join(LAYOUTS)})")
