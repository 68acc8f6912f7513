"""The explicit model registry: a dict filled by a decorator.

Adding a model takes one file (a :class:`~.base.ReconstructionModel` subclass decorated with
``@register("my_model")``) and one line: its module in :data:`BUILTIN_MODULES` — or, for a model
kept outside this package, its module name in the environment variable ``ADUNET_MODEL_MODULES``
(comma-separated). The contract test (``tests/anomaly_models/test_contract.py``) then covers it
without new tests, and naming it in a params file trains, tables, draws and maps it.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from adunet_lib.anomaly_models.base import ReconstructionModel
from adunet_lib.vocabulary import CROPPED, ORACLE, ORACLE_DISPLAY

if TYPE_CHECKING:
    from adunet_lib.run_folder import RunContext

MODELS: dict[str, type[ReconstructionModel]] = {}

#: Modules whose import registers the built-in models (the "one registry line" per model).
BUILTIN_MODULES = (
    "adunet_lib.anomaly_models.autoencoder.model",
    "adunet_lib.anomaly_models.diffusion.model",
    "adunet_lib.anomaly_models.fpgan.model",
)


#: Environment variable naming extra model modules (models kept outside this package).
EXTRA_MODULES_VARIABLE = "ADUNET_MODEL_MODULES"


def register(name: str, display_name: str | None = None):
    """Class decorator: ``@register("fpgan", "FP GAN")`` adds the class to :data:`MODELS` under ``name``;
    ``display_name`` is how tables and figures call it (default: the class's, else ``name``)."""

    def wrap(cls: type[ReconstructionModel]) -> type[ReconstructionModel]:
        if name == ORACLE:
            raise ValueError(f"model name {ORACLE!r} is reserved for the phantoms' lesion-free twin")
        if name in MODELS and MODELS[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered by {MODELS[name].__qualname__}")
        cls.name = name
        cls.display_name = display_name or cls.__dict__.get("display_name") or name
        MODELS[name] = cls
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
            from adunet_lib.errors import AdunetError

            raise AdunetError(f"{EXTRA_MODULES_VARIABLE}: cannot import model module {module!r} ({exc})") from None


def available() -> list[str]:
    """Names of all registered models, in registration order (the paper's models first)."""
    _load_builtins()
    return list(MODELS)


def trained_models(ctx: RunContext, mode: str = CROPPED) -> list[str]:
    """Models of the run with a complete set of checkpoints for ``mode``, in registry order: the list
    that Table I, Fig. 3, the maps and map quality use."""
    if not ctx.models_dir.is_dir():
        return []
    present = {p.name for p in ctx.models_dir.iterdir() if p.is_dir()}
    return [m for m in available() if m in present and ctx.model_checkpoints(m, mode)]


def display_name(name: str) -> str:
    """How tables and figures name model ``name`` (unknown names are shown as they are)."""
    if name == ORACLE:
        return ORACLE_DISPLAY
    _load_builtins()
    return MODELS[name].display_name if name in MODELS else name


def get(name: str) -> type[ReconstructionModel]:
    _load_builtins()
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(MODELS))}")
    return MODELS[name]


def create(name: str, in_channels: int, image_size: int, config: Any = None,
           device: str = "cpu") -> ReconstructionModel:
    """Instantiate a registered model.

    Example:
        >>> model = create("dense_ae", in_channels=1, image_size=64)  # doctest: +SKIP
    """
    return get(name)(in_channels=in_channels, image_size=image_size, config=config, device=device)
