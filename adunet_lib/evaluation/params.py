"""Notebook 07's parameters (``evaluation`` block): see :mod:`adunet_lib.parameters`."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from adunet_lib.parameters import NotebookParams, param


@dataclasses.dataclass(frozen=True)
class EvaluationParams(NotebookParams):
    """PI-CAI metrics with bootstrap CIs (Table II), curves and the run summary."""

    NOTEBOOK: ClassVar[str] = "07_evaluation"

    n_bootstrap: int = param(500, "bootstrap replicates for CIs and paired tests (paper.yaml: 2000)",
                             check=lambda v: v >= 1, need="must be at least 1")
    params_name: str = param("", 'shown in the summary; "" → the run folder\'s name')
