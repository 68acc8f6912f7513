"""Calls into nnU-Net v2 with its environment variables set only for those calls.

Each call runs :mod:`._worker` in a child process whose environment points ``nnUNet_raw``,
``nnUNet_preprocessed`` and ``nnUNet_results`` into the run folder (``runs/<name>/nnunet/``); the
user never sets them, and the notebook kernel's environment is untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from adunet_lib.errors import AdunetError
from adunet_lib.nnunet_seam import (PLANNED, TRAINED, PlanRequest, PreprocessRequest, Request, TrainRequest,
                                    fold_folder)
from adunet_lib.progress import headless
from adunet_lib.run_folder import RunContext


def nnunet_env(ctx: RunContext, num_processes: int = 2) -> dict[str, str]:
    """The environment of an nnU-Net call: paths into the run folder, process counts for this machine."""
    env = dict(os.environ)
    env.update({
        "nnUNet_raw": str(ctx.nnunet_raw),
        "nnUNet_preprocessed": str(ctx.nnunet_preprocessed),
        "nnUNet_results": str(ctx.nnunet_results),
        "nnUNet_def_n_proc": str(num_processes),
        "PYTHONUNBUFFERED": "1",
        "PYTHONIOENCODING": "utf-8",  # nnU-Net's log lines reach us through a pipe, whatever the locale
    })
    if ctx.device == "cpu":
        env["nnUNet_compile"] = "false"
    env.setdefault("nnUNet_n_proc_DA", str(max(1, num_processes)))
    return env


def step_env(ctx: RunContext, command: str, num_processes: int) -> dict[str, str]:
    """Per-step overrides: on CPU, training augments in its own process (extra workers only compete
    for the same cores); the planner reads the same variable as a thread count, so it stays ≥ 1."""
    if ctx.device == "cpu":
        return {"nnUNet_n_proc_DA": "0" if command == "train" else str(max(1, num_processes))}
    return {}


def _die_with_parent() -> None:
    """Linux: the worker gets SIGKILL when the notebook kernel running it dies, so a killed run never
    leaves an orphan nnU-Net training on that a restarted run would race."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def call(ctx: RunContext, steps: Sequence[Request], log: Callable[[str], None] = print,
         num_processes: int = 2, label: str = "nnU-Net", scratch: Path | None = None) -> None:
    """Run worker steps (requests of :mod:`adunet_lib.nnunet_seam`) in one child process; stream its
    output; raise :class:`AdunetError` with its last line on failure.

    ``scratch``: where the step list and the worker's working directory go; by default the run's
    ``nnunet/`` folder (training), for ``adunet predict`` a folder outside the run, which it only reads.
    """
    if not steps:
        return
    if scratch is None:
        ctx.nnunet_raw.mkdir(parents=True, exist_ok=True)
        scratch = ctx.nnunet_dir
    scratch.mkdir(parents=True, exist_ok=True)
    # the steps file lives only while the worker runs: each request as JSON, with the env it runs under
    payload = [dict(step.to_json(), env=step_env(ctx, step.command, num_processes)) for step in steps]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, dir=scratch) as fh:
        json.dump(payload, fh)
        arg_file = fh.name
    tail: deque[str] = deque(maxlen=15)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "adunet_lib.segmentation._worker", arg_file],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace",
                                env=nnunet_env(ctx, num_processes), cwd=str(scratch),
                                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail.append(line)
            if line and _worth_showing(line):
                log(f"  [{label}] {line}")
        code = proc.wait()
    finally:
        Path(arg_file).unlink(missing_ok=True)
    if code != 0:
        refused = next((ln for ln in reversed(tail) if ln.startswith("refused: ")), None)
        if refused:  # a run-folder file that would run code: the worker's one line, whole
            raise AdunetError(refused[len("refused: "):])
        reason = next((ln for ln in reversed(tail) if ln.strip()), f"exit code {code}")
        raise AdunetError(f"{label} failed ({reason.strip()[:300]}); see the output above")


def training_steps(ctx: RunContext, dataset_id: int, dataset_name: str, settings: Any) -> list[Request]:
    """The plan, preprocess and train steps of a dataset still to do (a step's "done" file marks it finished).

    ``settings`` has ``configuration``, ``target_spacing``, ``folds``, ``num_processes``, ``seed``,
    ``batch_size`` and ``budget()`` (the segmentation and the zone model's settings both do).
    """
    steps: list[Request] = []
    spacing = tuple(settings.target_spacing) if settings.target_spacing else None
    if not (ctx.nnunet_preprocessed / dataset_name / PLANNED).is_file():
        steps.append(PlanRequest(dataset_id=dataset_id, num_processes=settings.num_processes, verify=True,
                                 target_spacing=spacing))
        steps.append(PreprocessRequest(dataset_id=dataset_id, configurations=(settings.configuration,),
                                       num_processes=settings.num_processes, target_spacing=spacing))
    mdir = ctx.nnunet_model_dir(dataset_name, settings.configuration)
    for fold in settings.folds:
        if not (mdir / fold_folder(fold) / TRAINED).is_file():
            steps.append(TrainRequest(dataset_id=dataset_id, configuration=settings.configuration, fold=fold,
                                      device=ctx.device, seed=settings.seed, batch_size=settings.batch_size,
                                      num_gpus=int(getattr(settings, "num_gpus", 1)),
                                      loss=getattr(settings, "loss", "dice_ce"), **settings.budget()))
    return steps


def _worth_showing(line: str) -> bool:
    # nnU-Net's own epoch lines are the progress a user wants; its banners and per-case chatter are not
    noise = ("#######", "Please cite", "If you use", "https://", "Using <class", "Trying to", "unpacking",
             "predicting ", "done with ", "sending off prediction", "There are ", "This is the configuration",
             "Using splits from")
    if headless() and line.startswith(noise):
        return False
    return True
