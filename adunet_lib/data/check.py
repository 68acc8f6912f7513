"""``adunet check``: validate a dataset and list every problem per case and file."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adunet_lib.data.case import (SEQUENCES, Case, LesionOutsideGlandWarning, check_overlap, check_slices,
                                  load_lesion, load_sequence, load_zones, missing_mask_error,
                                  warn_lesion_outside_gland)
from adunet_lib.data.readers import Dataset, open_dataset
from adunet_lib.progress import progress
from adunet_lib.errors import AdunetError, CaseError


#: Unused files listed per reason before the rest are counted in one line: PI-CAI ships coronal and
#: sagittal T2W for each of its 1,500 studies, and a partial download of its images leaves thousands
#: of picai_labels masks without a study.
MAX_LISTED = 10


@dataclasses.dataclass(frozen=True)
class Finding:
    """One problem: ``error`` makes ``adunet check`` fail, ``warning`` is reported only (``--strict``
    makes it an error), ``note`` (a file not used) is reported only. ``case_id`` is '' for a finding
    about the dataset rather than one case."""

    level: str
    case_id: str
    path: str | None
    message: str

    def __str__(self) -> str:
        where = [f"case {self.case_id}"] if self.case_id else []
        where += [self.path] if self.path else []
        return f"{self.level}: {': '.join([*where, self.message])}"


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
    _attempt(findings, lambda: check_slices(case, t2w))
    for seq in ("adc", "hbv"):
        if images[seq] is not None:
            _attempt(findings, lambda s=seq: check_overlap(case, s, images[s], t2w))
    lesion = _attempt(findings, lambda: load_lesion(case, t2w))
    if case.empty_cspca_cell and case.cspca is None and lesion is not None:
        decided = ("but the lesion label ({}) has a lesion: treated as csPCa-positive (the label wins)"
                   if lesion.array.any() else
                   "and the lesion label ({}) has no lesion: treated as csPCa-negative (from the label)")
        findings.append(Finding("warning", case.case_id, case.empty_cspca_cell,
                                "the csPCa cell is empty " + decided.format(case.lesion)))
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


def unused_notes(dataset: Dataset) -> list[Finding]:
    """A note for every file or folder under the dataset's root that its reader does not use, with
    why (at most :data:`MAX_LISTED` per reason, then one line counting the rest), and one line
    counting the hidden files and folders; first the reader's remarks on how it read the set."""
    notes, listed = [Finding("note", "", str(dataset.root), remark) for remark in dataset.remarks], Counter()
    for entry in dataset.unused:
        listed[entry.why] += 1
        if listed[entry.why] <= MAX_LISTED:
            path = f"{entry.path}{os.sep}" if entry.files else str(entry.path)
            count = f" ({entry.files} files)" if entry.files else ""
            notes.append(Finding("note", "", path, f"not used{count}: {entry.why}"))
    notes += [Finding("note", "", str(dataset.root), f"{n - MAX_LISTED} more file(s) or folder(s) not used: {why}")
              for why, n in listed.items() if n > MAX_LISTED]
    if dataset.hidden:
        names = ", ".join(str(p.relative_to(dataset.root)) for p in dataset.hidden[:3])
        more = ", …" if len(dataset.hidden) > 3 else ""
        notes.append(Finding("note", "", str(dataset.root),
                             f"{len(dataset.hidden)} hidden file(s) or folder(s) not read ({names}{more})"))
    return notes


def check_dataset(path: str | Path | Dataset, show_progress: bool = False) -> list[Finding]:
    """Check every case of a dataset — the one at ``path`` (any supported layout) or one already
    opened — after a note for every file under its root that is not used (:func:`unused_notes`).

    Raises:
        AdunetError: when the dataset itself cannot be opened (unknown layout, duplicate ids, a
            malformed marksheet row, a symbolic link out of the dataset, …).
    """
    dataset = path if isinstance(path, Dataset) else open_dataset(path)
    if not dataset.cases:
        raise AdunetError(f"{dataset.root if isinstance(path, Dataset) else path}: no cases found")
    findings = unused_notes(dataset)
    for case in progress(dataset.cases, desc="check", unit="case", enabled=show_progress):
        findings.extend(check_case(case))
    return findings
