"""``adunet check``: validate a dataset and list every problem per case and file."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adunet_lib.data.case import (SEQUENCES, Case, LesionOutsideGlandWarning, check_overlap, load_lesion,
                                  load_sequence, load_zones, missing_mask_error, warn_lesion_outside_gland)
from adunet_lib.data.readers import open_dataset
from adunet_lib.progress import progress
from adunet_lib.errors import AdunetError, CaseError


@dataclasses.dataclass(frozen=True)
class Finding:
    """One problem: ``error`` makes ``adunet check`` fail, ``warning`` is reported only."""

    level: str
    case_id: str
    path: str | None
    message: str

    def __str__(self) -> str:
        where = f"case {self.case_id}" + (f": {self.path}" if self.path else "")
        return f"{self.level}: {where}: {self.message}"


def _attempt(findings: list[Finding], fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except CaseError as exc:
        findings.append(Finding("error", exc.case_id, exc.path, exc.message))
        return None


def check_case(case: Case) -> list[Finding]:
    """Every problem of one case (not just the first), file by file."""
    findings: list[Finding] = []
    images = {seq: _attempt(findings, lambda s=seq: load_sequence(case, s)) for seq in SEQUENCES}
    t2w = images["t2w"]
    if t2w is None:
        return findings  # labels and overlaps are judged against the T2W grid
    for seq in ("adc", "hbv"):
        if images[seq] is not None:
            _attempt(findings, lambda s=seq: check_overlap(case, s, images[s], t2w))
    lesion = _attempt(findings, lambda: load_lesion(case, t2w))
    masks = _attempt(findings, lambda: load_zones(case, t2w))
    gland = masks[1] if masks else None
    if not case.has_gland_mask:
        exc = missing_mask_error(case)
        findings.append(Finding("warning", case.case_id, exc.path, exc.message))
    if not case.labeled:
        why = ("the marksheet says csPCa but no lesion mask was found in any label source: kept out of voxel-level "
               "training and evaluation" if case.cspca else "no lesion label: usable for inference only")
        findings.append(Finding("warning", case.case_id, None, why))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_lesion_outside_gland(case, lesion, gland)
    for w in caught:
        if issubclass(w.category, LesionOutsideGlandWarning):
            findings.append(Finding("warning", case.case_id, str(case.lesion), str(w.message).split(": ", 2)[-1]))
    return findings


def check_dataset(path: str | Path, show_progress: bool = False) -> list[Finding]:
    """Open the dataset at ``path`` (any supported layout) and check every case.

    Raises:
        AdunetError: when the dataset itself cannot be opened (unknown layout, duplicate ids, …).
    """
    dataset = open_dataset(path)
    if not dataset.cases:
        raise AdunetError(f"{path}: no cases found")
    findings: list[Finding] = []
    for case in progress(dataset.cases, desc="check", unit="case", enabled=show_progress):
        findings.extend(check_case(case))
    return findings
