"""One unit of the series in a process of its own: ``adunet run PARAMS --stage NN``.

The units that dominate paper-scale time run outside the notebooks, each from the command line,
with the same library functions the notebooks call and the same params file:

* ``--stage 02|03|04`` trains the notebook's reconstruction models (``--model`` picks one). Started by
  ``torchrun --nproc_per_node N -m adunet_lib run …`` it trains data-parallel over N processes
  (:mod:`adunet_lib.anomaly_models.distributed`).
* ``--stage 05 --shard K/N`` makes the anomaly maps of every N-th case (from the K-th).
* ``--stage 06 --variant V --fold K`` trains nnU-Net fold K of variant V (default: every variant and
  fold of the params file, in turn); notebook 06 then only predicts.

They write into the run folder exactly where the notebooks look, and the notebooks reuse what is
finished: ``adunet reproduce`` (or JupyterLab) afterwards only assembles tables and figures. A unit
never holds the run lock (several run side by side); it holds a lock for each piece of work it does
(a model, a map shard, a variant's fold: :func:`adunet_lib.runner.lock.unit_lock`), so the same piece
started twice at once is refused with one line, and ``adunet reproduce`` waits for no unit: it refuses
while one runs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from adunet_lib.errors import AdunetError, ParamsError
from adunet_lib.parameters import NotebookParams
from adunet_lib.run_folder import RunContext
from adunet_lib.runner.params import Notebook, params_class
from adunet_lib.runner.reproduce import plan

TRAINING = ("02", "03", "04")
MAPS = "05"
SEGMENTATION = "06"
UNITS = (*TRAINING, MAPS, SEGMENTATION)


def unit_params(params_path: str | Path, number: str, root: str | Path | None = None) -> tuple[Notebook, Any]:
    """Notebook ``number`` and its parameters (its dataclass, from the params file's common block and
    the notebook's), checked as ``adunet reproduce`` checks them."""
    _, selected = plan(params_path, number, number, root)
    nb, values = selected[0]
    return nb, params_class(nb).from_params(values)


def _prepared(params: NotebookParams) -> RunContext:
    """The run folder, read-only; refused with one line while ``adunet reproduce`` holds it or before
    notebook 01 has run for it."""
    from adunet_lib.runner.lock import refuse_if_locked

    refuse_if_locked(params.run_dir)
    ctx = RunContext(Path(params.run_dir), Path(params.figure_dir))
    if not ctx.cases_table.is_file():
        ctx.tables()  # its one-line error
    return ctx


@contextlib.contextmanager
def _context(params: NotebookParams, device: str | None, pieces: list[str],
             log: Callable[[str], None]) -> Iterator[RunContext]:
    """The run folder's context, with the locks of the unit's ``pieces`` held for the block (under
    torchrun by process 0 alone, for all of them)."""
    from adunet_lib.anomaly_models import distributed

    from adunet_lib.runner.lock import unit_lock

    _prepared(params)  # before any lock file is written into the run folder
    mine = pieces if int(os.environ.get("RANK", "0")) == 0 else []
    with unit_lock(params.run_dir, mine, log):
        device = distributed.init_from_env(device or params.device)
        yield RunContext.create(params.run_dir, params.figure_dir, seed=params.seed, data_seed=params.data_seed,
                                device=device)


def run_unit(params_path: str | Path, stage: str, models: list[str] | None = None, shard: str | None = None,
             device: str | None = None, root: str | Path | None = None, show_progress: bool = True,
             log: Callable[[str], None] = print, variants: list[str] | None = None,
             folds: list[int] | None = None) -> None:
    """Run one unit (see the module docstring); one-line errors for what does not fit."""
    stage = str(stage).zfill(2)
    if stage not in UNITS:
        raise ParamsError(f"--stage {stage}: units are {', '.join(TRAINING)} (model training, torchrun-able), "
                          f"{MAPS} (maps, --shard K/N) and {SEGMENTATION} (nnU-Net, --variant V --fold K); the rest "
                          "runs with adunet reproduce --from/--to")
    if shard is not None and stage != MAPS:
        raise ParamsError(f"--shard is for --stage {MAPS} (maps); training spreads over processes with torchrun")
    if (variants or folds) and stage != SEGMENTATION:
        raise ParamsError(f"--variant and --fold are for --stage {SEGMENTATION} (nnU-Net)")
    if models and stage == SEGMENTATION:
        raise ParamsError("--model is for --stage 02–05; nnU-Net units take --variant and --fold")
    nb, params = unit_params(params_path, stage, root)
    if stage in TRAINING:
        _train(nb, params, models, device, show_progress, log)
    elif stage == MAPS:
        _maps(params, models, shard, device, show_progress, log)
    else:
        _segmentation(params, variants, folds, device, log)


def _train(nb: Notebook, params: Any, models: list[str] | None, device: str | None,
           show_progress: bool, log: Callable[[str], None]) -> None:
    from adunet_lib.anomaly_models import distributed, stage

    chosen = stage.chosen_models(params, models)
    if not chosen:
        raise ParamsError(f"notebook {nb.name} has no models to train in this params file")
    with _context(params, device, [f"train_{m}" for m in chosen], log) as ctx:
        rank, world = distributed.rank_world()
        try:
            trained = stage.run(ctx, params, list(chosen), show_progress=show_progress and rank == 0)
        except BaseException:
            distributed.finish(clean=False)
            raise
        distributed.finish()
    if rank == 0:
        how = f" on {world} processes" if world > 1 else ""
        log(f"trained {', '.join(chosen)}{how}: {len(trained)} model folder(s) in {ctx.models_dir}")


def _maps(params: Any, models: list[str] | None, shard: str | None, device: str | None,
          show_progress: bool, log: Callable[[str], None]) -> None:
    from adunet_lib.anomaly_maps import stage

    from adunet_lib.anomaly_models import distributed

    if distributed.launched():
        raise AdunetError("--stage 05 runs as one process per shard (--shard K/N), not under torchrun")
    part = stage.parse_shard(shard) if shard is not None else None
    chosen = stage.chosen_models(_prepared(params), params, models)
    suffix = f"_{part[0]}of{part[1]}" if part else ""
    with _context(params, device, [f"maps_{m}{suffix}" for m in chosen], log) as ctx:
        done = stage.run(ctx, params, chosen, shard=part, show_progress=show_progress, log=lambda _: None).made
    made = int((~done["reused"]).sum()) if len(done) else 0
    which = f"shard {part[0]}/{part[1]}: " if part else ""
    log(f"{which}maps of {done['case_id'].nunique() if len(done) else 0} case(s) for {', '.join(chosen)} "
        f"({made} made, {len(done) - made} already there) in {ctx.map_dir(chosen[0]).parent}")


def _segmentation(params: Any, variants: list[str] | None, folds: list[int] | None, device: str | None,
                  log: Callable[[str], None]) -> None:
    from adunet_lib.anomaly_models import distributed
    from adunet_lib.segmentation import stage

    if distributed.launched():
        raise AdunetError("--stage 06 runs nnU-Net's own multi-GPU training (segmentation.num_gpus), not under torchrun")
    chosen = stage.chosen_variants(params, variants)
    folds = list(folds or stage.settings_for(params).folds)
    with _context(params, device, [f"nnunet_{v}_fold{k}" for v in chosen for k in folds], log) as ctx:
        trained = stage.run(ctx, params, chosen, folds, train_only=True, log=log)
    log(f"nnU-Net {', '.join(chosen)}, fold(s) {folds}: {int(trained['trained'].sum())} trained here, the rest "
        "already were")
