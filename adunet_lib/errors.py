"""Errors a user sees: one line that names the case and the file."""

from __future__ import annotations

from pathlib import Path


class AdunetError(Exception):
    """Base class of every error adunet raises on purpose (bad input, bad params).

    The CLI prints ``str(error)`` as one line and exits non-zero; notebooks let it propagate so
    papermill reports the same message.
    """


class CaseError(AdunetError):
    """A problem with one case of a dataset.

    Example:
        >>> str(CaseError("10795_1000811", "images/10795/10795_1000811_hbv.mha", "missing sequence hbv"))
        'case 10795_1000811: images/10795/10795_1000811_hbv.mha: missing sequence hbv'
    """

    def __init__(self, case_id: str, path: str | Path | None, message: str):
        self.case_id = case_id
        self.path = None if path is None else str(path)
        self.message = message
        where = f"case {case_id}" + (f": {self.path}" if self.path else "")
        super().__init__(f"{where}: {message}")


class ParamsError(AdunetError):
    """A problem with a params file (unknown key, wrong type, bad value)."""


class DatasetError(AdunetError):
    """A problem with a dataset as a whole (unknown layout, duplicate case ids, escaping paths)."""
