"""``adunet submit PARAMS --executor slurm|local``: the series as jobs with dependencies, through submitit.

The jobs are the units of :mod:`.units`, each an ``adunet`` command line, in this graph::

    prepare (notebook 01)
      ├─ train <model> (02–04, one job per model; torchrun over --gpus GPUs when > 1)
      │    └─ maps shard k/N (05) ── maps (05: the set completed) ── nnU-Net <variant> fold k (06, with maps)
      └─ nnU-Net baseline fold k (06: needs no maps, starts right after notebook 01)
    assemble (adunet reproduce --from 02: tables, figures, what no unit made, evaluation), after all

``slurm`` submits every job at once with ``--dependency=afterok:…`` and returns (``squeue`` shows
them); ``local`` runs the same graph as processes on this machine — at most ``--parallel`` at a time,
each started when the jobs it depends on have finished — and waits. submitit keeps each job's
submission and log in ``<run>/jobs/`` (``<job id>_0_log.err`` …). A failed job stops the local graph with one line naming
it and its log; on SLURM its dependants never start (``afterok``).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adunet_lib.errors import AdunetError, ParamsError
from adunet_lib.run_folder import RunContext
from adunet_lib.runner.units import unit_params

EXECUTORS = ("slurm", "local")


@dataclasses.dataclass
class Job:
    """One unit: a name, its command line, what it waits for, and what it needs."""

    name: str
    command: list[str]
    after: list[str] = dataclasses.field(default_factory=list)
    gpus: int = 0


def job_graph(params_path: str | Path, shards: int = 2, gpus: int = 0, root: str | Path | None = None,
              prepared: bool = False) -> list[Job]:
    """The jobs of the series for ``params_path`` in an order where each comes after what it waits for;
    ``prepared``: notebook 01 has run already (no "prepare" job)."""
    if shards < 1:
        raise ParamsError(f"--shards {shards}: must be at least 1")
    params = str(Path(params_path).resolve())
    adunet = [sys.executable, "-m", "adunet_lib"]
    jobs = [] if prepared else [Job("prepare", [*adunet, "reproduce", params, "--to", "01"], gpus=min(gpus, 1))]
    first = [] if prepared else ["prepare"]
    trainers = []
    for stage in ("02", "03", "04"):
        _, training = unit_params(params, stage, root)
        for model in training.models:
            unit = ["run", params, "--stage", stage, "--model", model]
            command = [*adunet, *unit] if gpus <= 1 else [
                sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
                "-m", "adunet_lib", *unit]
            trainers.append(Job(f"train_{model}", command, first, gpus))
    jobs += trainers
    maps = [Job(f"maps_{k}of{shards}", [*adunet, "run", params, "--stage", "05", "--shard", f"{k}/{shards}"],
                [t.name for t in trainers], min(gpus, 1)) for k in range(1, shards + 1)]
    # the shards' maps made into one map set (makes what no shard made; writes the set's record)
    complete = Job("maps", [*adunet, "run", params, "--stage", "05"], [m.name for m in maps], min(gpus, 1))
    jobs += [*maps, complete]
    _, seg = unit_params(params, "06", root)
    from adunet_lib.vocabulary import variant

    segmenters = []
    for name in seg.table_variants():
        for fold in seg.folds:
            after = [complete.name] if variant(name).maps else first
            segmenters.append(Job(f"nnunet_{name}_fold{fold}", [*adunet, "run", params, "--stage", "06", "--variant",
                                                                 name, "--fold", str(fold)], after,
                                  max(1, seg.num_gpus) if gpus else 0))
    jobs += segmenters
    everything = [j.name for j in jobs]
    jobs.append(Job("assemble", [*adunet, "reproduce", params, "--from", "02"], everything, min(gpus, 1)))
    return jobs


def submit(params_path: str | Path, executor: str = "local", shards: int = 2, gpus: int = 0, parallel: int = 1,
           partition: str | None = None, time_min: int = 60 * 24, cpus: int | None = None,
           root: str | Path | None = None, log: Callable[[str], None] = print, poll_s: float = 1.0,
           start: str = "01") -> list[str]:
    """Submit (``slurm``) or run (``local``) the series' jobs; returns the job ids. ``start="02"``: notebook
    01 has run (e.g. interactively), the graph begins with the model training."""
    if executor not in EXECUTORS:
        raise ParamsError(f"--executor {executor}: use one of {', '.join(EXECUTORS)}")
    import importlib.util

    if importlib.util.find_spec("submitit") is None:
        raise AdunetError('adunet submit needs submitit: pip install -e ".[cluster]"')
    if str(start).zfill(2) not in ("01", "02"):
        raise ParamsError(f"--from {start}: the graph starts at 01 or, once notebook 01 has run, at 02")
    jobs = job_graph(params_path, shards, gpus, root, prepared=str(start).zfill(2) == "02")
    _, common = unit_params(params_path, "01", root)
    run = RunContext(Path(common.run_dir), Path(common.figure_dir))
    if str(start).zfill(2) == "02" and not run.cases_table.is_file():
        raise AdunetError(f"--from 02: notebook 01 has not run for {params_path} (no {run.cases_table}); start at 01")
    start_job = starter(run.jobs_dir, executor, str(Path(root) if root else Path.cwd()), time_min, cpus, partition)
    if executor == "slurm":
        ids: dict[str, str] = {}
        for job in jobs:
            handle = start_job(job, [ids[a] for a in job.after])
            ids[job.name] = str(handle.job_id)
            log(f"submitted {job.name}: job {handle.job_id}" + (f" (after {len(job.after)})" if job.after else ""))
        return list(ids.values())
    return run_local(jobs, start_job, max(1, parallel), log, poll_s)


def starter(folder: Path, executor: str, cwd: str, time_min: int = 60 * 24, cpus: int | None = None,
            partition: str | None = None) -> Callable[[Job, list[str]], Any]:
    """A function that submits one job (after the given job ids, on SLURM) and returns submitit's handle."""
    import submitit

    folder.mkdir(parents=True, exist_ok=True)
    make = submitit.AutoExecutor(folder=str(folder), cluster=executor)  # <id>_0_log.out|err, <id>_submitted.pkl …

    def start(job: Job, after_ids: list[str]) -> Any:
        options: dict[str, Any] = {"name": f"adunet_{job.name}", "timeout_min": time_min, "tasks_per_node": 1,
                                   "nodes": 1}
        if job.gpus:
            options["gpus_per_node"] = job.gpus
        if cpus:
            options["cpus_per_task"] = cpus
        if executor == "slurm":
            if partition:
                options["slurm_partition"] = partition
            if after_ids:
                options["slurm_additional_parameters"] = {"dependency": "afterok:" + ":".join(after_ids)}
        make.update_parameters(**options)
        return make.submit(submitit.helpers.CommandFunction(job.command, cwd=cwd, verbose=True))

    return start


def run_local(jobs: list[Job], start: Callable[[Job, list[str]], Any], parallel: int, log: Callable[[str], None],
               poll_s: float) -> list[str]:
    """The graph on this machine: start what is ready (up to ``parallel`` at once), in graph order."""
    waiting = list(jobs)
    running: dict[str, tuple[Job, Any, float]] = {}
    finished: set[str] = set()
    ids = []
    total = time.perf_counter()
    try:
        while waiting or running:
            ready = [j for j in waiting if set(j.after) <= finished]
            if not ready and not running:
                names = sorted({a for j in waiting for a in j.after} - finished)
                raise AdunetError(f"jobs {', '.join(j.name for j in waiting)} wait for {', '.join(names)}, which "
                                  "no job of the graph makes")
            for job in ready[:max(0, parallel - len(running))]:
                waiting.remove(job)
                handle = start(job, [])
                running[job.name] = (job, handle, time.perf_counter())
                ids.append(str(handle.job_id))
                log(f"started {job.name} (job {handle.job_id})")
            for name, (job, handle, t0) in list(running.items()):
                if not handle.done():
                    continue
                del running[name]
                if handle.exception() is not None:
                    raise AdunetError(f"job {name} failed: {_last_line(handle)}; log: {handle.paths.stderr}")
                finished.add(name)
                log(f"finished {name} in {time.perf_counter() - t0:.0f} s")
            if (waiting or running) and not any(h.done() for _, h, _ in running.values()):
                time.sleep(poll_s)
    except BaseException:
        for _, handle, _ in running.values():
            handle.cancel(check=False)
        raise
    log(f"all {len(jobs)} jobs done in {time.perf_counter() - total:.0f} s")
    return ids


def _last_line(handle: Any) -> str:
    """The failed command's own last words (its one-line error), else submitit's."""
    try:
        text = Path(handle.paths.stderr).read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    mine = [ln for ln in text.splitlines() if ln.startswith("adunet ")]
    if mine:
        return mine[-1].strip()
    exc = handle.exception()
    return (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:300]
