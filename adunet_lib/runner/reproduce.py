"""``adunet reproduce``: run the notebook series headless with papermill, in order.

Executed copies go to ``runs/<params-name>/notebooks/``; the committed notebooks are never touched.
The run stops at the first failing notebook and names its failing cell.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adunet_lib.errors import AdunetError, ParamsError
from adunet_lib.fileio import write_json
from adunet_lib.run_folder import RunContext, check_output_folders, project_root, resolve
from adunet_lib.runner.lock import run_lock
from adunet_lib.runner.params import Notebook, find_notebooks, load_params, validate
from adunet_lib.runner.sense import check_sense

KERNEL_NAME = "python3"  # ipykernel's built-in spec: exists in every fresh venv
PATH_SUFFIXES = ("_dir", "_data", "_path")


class _QuietPapermill(logging.Filter):
    """Keep the notebooks' own output; drop papermill's per-cell bookkeeping lines."""

    NOISE = ("Executing Cell", "Ending Cell", "Executing notebook with kernel", "Input Notebook:",
             "Output Notebook:", "Working directory:", "Executing notebook", "Parameters:")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage().strip()
        return bool(message) and not message.startswith(self.NOISE)


class NotebookFailed(AdunetError):
    """A notebook raised: names the notebook, the cell and the error."""


def _absolute_paths(values: dict[str, Any], root: Path) -> dict[str, Any]:
    out = dict(values)
    for key, value in values.items():
        if key.endswith(PATH_SUFFIXES) and isinstance(value, str) and value not in ("", "synthetic", "none"):
            out[key] = str(resolve(value, root))
    return out


def plan(params_path: str | Path, start: str | None = None, stop: str | None = None,
         root: str | Path | None = None) -> tuple[Path, list[tuple[Notebook, dict[str, Any]]]]:
    """Check the params against the notebooks and return (run folder, [(notebook, parameters)])."""
    params = load_params(params_path)
    if root is None:
        # the params file's own project, else the one we are standing in, else the installed checkout
        starts = (Path(params_path).resolve().parent, Path.cwd(), Path(__file__).resolve().parents[2])
        root = next((r for r in map(project_root, starts) if (r / "notebooks").is_dir()), None)
        if root is None:
            raise AdunetError(f"{params_path}: no notebooks/ folder above it, here or in the adunet installation; "
                              "run from the adunet repository")
    root = Path(root)
    notebooks = find_notebooks(root / "notebooks")
    numbers = [nb.number for nb in notebooks]
    for flag, value in (("--from", start), ("--to", stop)):
        if value is not None and value.zfill(2) not in numbers:
            raise ParamsError(f"{flag} {value}: no notebook with that number (have {', '.join(numbers)})")
    start = (start or numbers[0]).zfill(2)
    stop = (stop or numbers[-1]).zfill(2)
    injected = validate(params, notebooks)
    check_sense(params, notebooks, injected)
    common = dict(params.common)
    common.setdefault("run_dir", f"runs/{params.name}")
    common.setdefault("figure_dir", f"figures/{params.name}")
    check_output_folders(common["run_dir"], common["figure_dir"],
                         (common.get("internal_data"), common.get("external_data")), root)
    selected = []
    for nb in notebooks:
        if start <= nb.number <= stop:
            values = _absolute_paths({**common, **injected[nb.name]}, root)
            values["run_dir"] = str(resolve(common["run_dir"], root))
            values["figure_dir"] = str(resolve(common["figure_dir"], root))
            selected.append((nb, values))
    if not selected:
        raise ParamsError(f"no notebooks between {start} and {stop}")
    return resolve(common["run_dir"], root), selected


def _failure_message(nb: Notebook, output: Path, exc: Exception) -> str:
    cell = getattr(exc, "exec_count", None)
    source = (getattr(exc, "source", "") or "").strip().splitlines()
    first = source[0][:80] if source else ""
    ename, evalue = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
    evalue = (evalue or "").strip().splitlines()[0] if evalue else ""
    return (f"notebook {nb.name} failed in cell [{cell}] `{first}`: {ename}: {evalue} "
            f"(executed copy: {output})")


def reproduce(params_path: str | Path, start: str | None = None, stop: str | None = None,
              root: str | Path | None = None, log: Callable[[str], None] = print,
              stream_output: bool = True) -> dict[str, float]:
    """Run notebooks ``start``..``stop`` of the series with the params of ``params_path``.

    Returns:
        notebook name → wall time in seconds.

    Raises:
        ParamsError: before anything runs, for unknown keys / wrong types / bad ranges.
        NotebookFailed: naming the notebook, cell and error, after writing the executed copy.
        RunLocked: another run holds the run folder (see :mod:`.lock`).
        Interrupted: Ctrl-C; finished work is kept and the same command resumes.
    """
    run_dir, selected = plan(params_path, start, stop, root)
    with run_lock(run_dir, log):
        return _run(run_dir, selected, log, stream_output)


class Interrupted(AdunetError):
    """Ctrl-C (or SIGTERM) during a run: what finished is kept, a rerun resumes."""


def _interrupted(exc: BaseException) -> bool:
    """Did this papermill/nbclient failure come from an interrupt rather than from the notebook's code?"""
    if isinstance(exc, KeyboardInterrupt):
        return True
    name = type(exc).__name__
    return name == "DeadKernelError" or getattr(exc, "ename", "") == "KeyboardInterrupt"


def _run(run_dir: Path, selected: list[tuple[Notebook, dict[str, Any]]], log: Callable[[str], None],
         stream_output: bool) -> dict[str, float]:
    import papermill

    run = RunContext(run_dir, Path(selected[0][1]["figure_dir"]))
    out_dir = run.notebooks_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    # kernels inherit the environment: headless plotting, text progress bars
    os.environ["MPLBACKEND"] = "Agg"
    os.environ["ADUNET_HEADLESS"] = "1"
    if stream_output:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("    %(message)s"))
        handler.addFilter(_QuietPapermill())
        pm_logger = logging.getLogger("papermill")
        pm_logger.handlers[:] = [handler]
        pm_logger.setLevel(logging.INFO)
        pm_logger.propagate = False
    timings: dict[str, float] = {}
    # what each notebook was given, for the run summary (merged: --from / --to runs keep the rest)
    params_path_json = run.params_record
    given = json.loads(params_path_json.read_text(encoding="utf-8")) if params_path_json.is_file() else {}
    given.update({nb.name: values for nb, values in selected})
    write_json(params_path_json, given)
    record_path = run.reproduce_record
    record = json.loads(record_path.read_text(encoding="utf-8")) if record_path.is_file() else {}
    total = time.perf_counter()
    for i, (nb, values) in enumerate(selected, 1):
        output = out_dir / nb.path.name
        log(f"[{i}/{len(selected)}] {nb.name} …")
        t0 = time.perf_counter()
        try:
            papermill.execute_notebook(str(nb.path), str(output), parameters=values, kernel_name=KERNEL_NAME,
                                       cwd=str(nb.path.parent), progress_bar=False, log_output=stream_output,
                                       # the kernel's own start-up warnings are not the user's business
                                       extra_arguments=["--IPKernelApp.log_level=CRITICAL"])
        except BaseException as exc:
            interrupted = _interrupted(exc)
            if not interrupted and not isinstance(exc, papermill.PapermillExecutionError):
                raise
            record[nb.name] = {"status": "interrupted" if interrupted else "failed",
                               "seconds": round(time.perf_counter() - t0, 1)}
            write_json(record_path, record)
            if interrupted:
                # nbclient's cell task is left holding the DeadKernelError; when it is collected, asyncio
                # would log "Task exception was never retrieved" with a traceback — not news to the user
                logging.getLogger("asyncio").disabled = True
                raise Interrupted(f"interrupted in notebook {nb.name}; what finished is kept — rerun the same "
                                  f"command to resume") from None
            raise NotebookFailed(_failure_message(nb, output, exc)) from None
        seconds = time.perf_counter() - t0
        timings[nb.name] = seconds
        record[nb.name] = {"status": "ok", "seconds": round(seconds, 1)}
        write_json(record_path, record)
        log(f"[{i}/{len(selected)}] {nb.name} done in {seconds:.0f} s")
    log(f"all {len(selected)} notebook(s) done in {time.perf_counter() - total:.0f} s; executed copies in {out_dir}")
    return timings
