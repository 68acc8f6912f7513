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
from adunet_lib.run_folder import RunContext
from adunet_lib.runner.params import Notebook, declared_parameters
from adunet_lib.runner.reproduce import plan

TRAINING = ("02", "03", "04")
MAPS = "05"
SEGMENTATION = "06"
UNITS = (*TRAINING, MAPS, SEGMENTATION)


def unit_values(params_path: str | Path, number: str, root: str | Path | None = None) -> tuple[Notebook, dict[str, Any]]:
    """Notebook ``number`` and every value it would run with (its declared defaults, then the params
    file's), checked as ``adunet reproduce`` checks them."""
    _, selected = plan(params_path, number, number, root)
    nb, values = selected[0]
    defaults = {k: d.default for k, d in declared_parameters(nb.path).items()}
    return nb, {**defaults, **values}


def _prepared(values: dict[str, Any]) -> RunContext:
    """The run folder, read-only; refused with one line while ``adunet reproduce`` holds it or before
    notebook 01 has run for it."""
    from adunet_lib.runner.lock import refuse_if_locked

    refuse_if_locked(values["run_dir"])
    ctx = RunContext(Path(values["run_dir"]), Path(values["figure_dir"]))
    if not ctx.cases_table.is_file():
        ctx.tables()  # its one-line error
    return ctx


@contextlib.contextmanager
def _context(values: dict[str, Any], device: str | None, pieces: list[str],
             log: Callable[[str], None]) -> Iterator[RunContext]:
    """The run folder's context, with the locks of the unit's ``pieces`` held for the block (under
    torchrun by process 0 alone, for all of them)."""
    from adunet_lib.anomaly_models import distributed

    from adunet_lib.runner.lock import unit_lock

    _prepared(values)  # before any lock file is written into the run folder
    mine = pieces if int(os.environ.get("RANK", "0")) == 0 else []
    with unit_lock(values["run_dir"], mine, log):
        device = distributed.init_from_env(device or values["device"])
        yield RunContext.create(values["run_dir"], values["figure_dir"], seed=values["seed"],
                                data_seed=values.get("data_seed", -1), device=device)


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
    nb, values = unit_values(params_path, stage, root)
    if stage in TRAINING:
        _train(nb, values, models, device, show_progress, log)
    elif stage == MAPS:
        _maps(values, models, shard, device, show_progress, log)
    else:
        _segmentation(values, variants, folds, device, log)


def _train(nb: Notebook, values: dict[str, Any], models: list[str] | None, device: str | None,
           show_progress: bool, log: Callable[[str], None]) -> None:
    from adunet_lib.anomaly_models import distributed, stage

    chosen = dict(values["models"])
    if models:
        unknown = [m for m in models if m not in chosen]
        if unknown:
            raise ParamsError(f"--model {', '.join(unknown)}: not among notebook {nb.name}'s models "
                              f"({', '.join(chosen) or 'none'})")
        chosen = {m: chosen[m] for m in models}
    if not chosen:
        raise ParamsError(f"notebook {nb.name} has no models to train in this params file")
    with _context(values, device, [f"train_{m}" for m in chosen], log) as ctx:
        _, slices = ctx.tables()
        settings = stage.settings_from(values["iterations"], values["batch_size"], values["checkpoint_every"],
                                       values["seed"])
        rank, world = distributed.rank_world()
        try:
            trained = stage.train_models(ctx, chosen, slices, values["channels"], values["modes"], settings,
                                         show_progress=show_progress and rank == 0)
        except BaseException:
            distributed.finish(clean=False)
            raise
        distributed.finish()
    if rank == 0:
        how = f" on {world} processes" if world > 1 else ""
        log(f"trained {', '.join(chosen)}{how}: {len(trained)} model folder(s) in {ctx.models_dir}")


def _maps(values: dict[str, Any], models: list[str] | None, shard: str | None, device: str | None,
          show_progress: bool, log: Callable[[str], None]) -> None:
    from adunet_lib.anomaly_maps.stage import generate_maps, map_models, parse_shard

    from adunet_lib.anomaly_models import distributed

    if distributed.launched():
        raise AdunetError("--stage 05 runs as one process per shard (--shard K/N), not under torchrun")
    part = parse_shard(shard) if shard is not None else None
    folder = _prepared(values)
    chosen = list(models or values["models"] or map_models(folder))
    if not chosen:
        raise AdunetError(f"{folder.models_dir}: no trained models yet: run notebooks 02–04 (or their units) first")
    suffix = f"_{part[0]}of{part[1]}" if part else ""
    with _context(values, device, [f"maps_{m}{suffix}" for m in chosen], log) as ctx:
        cases, _ = ctx.tables()
        done = generate_maps(ctx, chosen, cases, values["blur_kernel"], show_progress=show_progress, shard=part)
    made = int((~done["reused"]).sum()) if len(done) else 0
    which = f"shard {part[0]}/{part[1]}: " if part else ""
    log(f"{which}maps of {done['case_id'].nunique() if len(done) else 0} case(s) for {', '.join(chosen)} "
        f"({made} made, {len(done) - made} already there) in {ctx.map_dir(chosen[0]).parent}")


def _segmentation(values: dict[str, Any], variants: list[str] | None, folds: list[int] | None, device: str | None,
                  log: Callable[[str], None]) -> None:
    import dataclasses

    from adunet_lib.anomaly_models import distributed
    from adunet_lib.segmentation.stage import SegmentationSettings, train_folds

    if distributed.launched():
        raise AdunetError("--stage 06 runs nnU-Net's own multi-GPU training (segmentation.num_gpus), not under torchrun")
    known = {f.name for f in dataclasses.fields(SegmentationSettings)} - {"num_processes"}
    settings = SegmentationSettings.from_params(**{k: values[k] for k in known if k in values})
    from adunet_lib.vocabulary import table_variants

    known_variants = table_variants(values["variants"], values.get("oracle_row", False),
                                    (values["internal_data"], values["external_data"]))
    chosen = list(variants or known_variants)
    outside = [v for v in chosen if v not in known_variants]
    if outside:
        raise ParamsError(f"--variant {', '.join(outside)}: not among segmentation.variants "
                          f"({', '.join(known_variants)})")
    folds = list(folds or settings.folds)
    with _context(values, device, [f"nnunet_{v}_fold{k}" for v in chosen for k in folds], log) as ctx:
        cases, _ = ctx.tables()
        trained = 0
        for name in chosen:
            trained += train_folds(ctx, name, folds, cases, values["map_model"], settings, log)
    log(f"nnU-Net {', '.join(chosen)}, fold(s) {folds}: {trained} trained here, the rest "
        "already were")
