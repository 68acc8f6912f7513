"""The explicit model registry: a dict filled by a decorator.

Adding a model takes one file (a :class:`~.base.ReconstructionModel` subclass decorated with
``@register("my_model")``) and one line: its module in :data:`BUILTIN_MODULES`. The contract test
(``tests/anomaly_models/test_contract.py``) then covers it without new tests.
"""

from __future__ import annotations

import importlib
from typing import Any

from adunet_lib.anomaly_models.base import ReconstructionModel

MODELS: dict[str, type[ReconstructionModel]] = {}

#: Modules whose import registers the built-in models (the "one registry line" per model).
BUILTIN_MODULES = (
    "adunet_lib.anomaly_models.autoencoder.model",
    "adunet_lib.anomaly_models.diffusion.model",
    "adunet_lib.anomaly_models.fpgan.model",
)


def register(name: str):
    """Class decorator: ``@register("fpgan")`` adds the class to :data:`MODELS` under ``name``."""

    def wrap(cls: type[ReconstructionModel]) -> type[ReconstructionModel]:
        if name in MODELS and MODELS[name] is not cls:
            raise ValueError(f"model name {name!r} is already registered by {MODELS[name].__qualname__}")
        cls.name = name
        MODELS[name] = cls
        return cls

    return wrap


def _load_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)


def available() -> list[str]:
    """Names of all registered models."""
    _load_builtins()
    return sorted(MODELS)


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
